//! The listener handshake: the ClientHello read first, a name no pair answers counted once per handshake, then the config; which pair was served is noted.
//!
//! A client asking for a name no pair answers gets the default pair, and
//! with TLS 1.3 it may refuse it only after the server's side of the
//! handshake is done, so the ClientHello is the one place the server sees
//! a name mismatch (`hotproxy_tls_sni_default_total`). It is counted here,
//! on the first ClientHello of the connection, and not in the certificate
//! resolver: rustls asks the resolver once per ClientHello, so a handshake
//! with a HelloRetryRequest (the client's key share is for a group the
//! server does not pick first) asked it twice and was counted twice.

use std::sync::{Arc, OnceLock};

use rustls::ServerConfig;
use rustls::server::Acceptor;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::tls::per_name::PerName;
use crate::tls::sent::Counted;
use crate::tls::server::SniResolver;

/// A finished listener handshake.
pub struct Accepted {
    /// Over its socket counting what is written (`ClientIo`'s send timeout).
    pub tls: TlsStream<Counted<TcpStream>>,
    /// With per-entry client auth, the position of the entry whose config
    /// it shook hands under.
    pub entry: Option<usize>,
    /// The position of the pair the config's resolver served (one of
    /// several for the name: the first the client can use).
    pub served: Option<usize>,
}

/// A failed listener handshake: why, and the connection if the failure
/// came after the ClientHello (its alert already sent, as far as the
/// socket took it).
pub struct Refused {
    pub error: std::io::Error,
    pub stream: Option<TcpStream>,
}

/// Read the ClientHello, note a name `resolver` does not answer, and
/// finish the handshake with `config`, or with the config of the entry the
/// SNI selects when the listener has per-entry client auth. The hello's
/// SNI is put in `sni_seen` as soon as it is read: the access-log line of
/// a handshake that fails or times out after it names it.
pub async fn accept(
    listener: &str,
    resolver: &SniResolver,
    config: &Arc<ServerConfig>,
    per_name: Option<&PerName>,
    stream: TcpStream,
    sni_seen: &OnceLock<Arc<str>>,
) -> Result<Accepted, Refused> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), Counted::new(stream))
        .await
        .map_err(|error| Refused {
            error,
            stream: None,
        })?;
    let at = {
        let hello = start.client_hello();
        let sni = hello.server_name();
        if let Some(name) = sni {
            let _ = sni_seen.set(Arc::from(name));
        }
        note_sni(listener, resolver, sni);
        // No SNI, or a name no entry answers, selects the default (first)
        // entry, exactly as certificate selection does. Of several entries
        // for the name (or, so selected, for one of the default's names),
        // the first: all have its client_auth (`shadowed`), whichever of
        // them the resolver serves.
        per_name.map(|p| p.resolver.position_or_default(sni))
    };
    let config = match (per_name, at) {
        (Some(p), Some(at)) => p.configs[at].clone(),
        _ => config.clone(),
    };
    // The certificate is chosen as rustls takes the ClientHello, before
    // `into_stream` returns.
    let (handshake, served) =
        crate::tls::server::noting_choice(|| start.into_stream(config).into_fallible());
    match handshake.await {
        Ok(tls) => Ok(Accepted {
            tls,
            entry: at,
            served,
        }),
        Err((error, stream)) => Err(Refused {
            error,
            stream: Some(stream.into_inner()),
        }),
    }
}

/// At most one "SNI matched no certificate" line per this many seconds
/// (any client can send any name).
const SNI_LOG_EVERY_SECS: u64 = 10;

/// Counts (and logs, rate-limited) a ClientHello whose SNI no pair answers.
fn note_sni(listener: &str, resolver: &SniResolver, sni: Option<&str>) {
    let Some(name) = sni.filter(|name| !resolver.answers(name)) else {
        return;
    };
    crate::metrics::sni_default(listener);
    if let Some(suppressed) = sni_log_due() {
        // rustls has checked it is a DNS name; still the client's text,
        // so a `&str` value: quoted in the text format, as any such value.
        tracing::info!(listener = %listener, sni = name, suppressed, "SNI matched no certificate; served the listener's default certificate");
    }
}

/// `Some(lines suppressed since the last one)` when an SNI-miss line may
/// be logged now.
fn sni_log_due() -> Option<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let next = NEXT.load(Ordering::Relaxed);
    if now >= next
        && NEXT
            .compare_exchange(
                next,
                now + SNI_LOG_EVERY_SECS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        Some(SUPPRESSED.swap(0, Ordering::Relaxed))
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        None
    }
}
