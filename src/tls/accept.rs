//! The listener handshake: the ClientHello read first, a name no pair answers counted once per handshake, then the config (one session ticket for a client resuming); which pair was served is noted.
//!
//! A client asking for a name no pair answers gets the default pair, and
//! with TLS 1.3 it may refuse it only after the server's side of the
//! handshake is done, so the ClientHello is the one place the server sees
//! a name mismatch (`hotproxy_tls_sni_default_total`). It is counted here,
//! on the first ClientHello of the connection, and not in the certificate
//! resolver: rustls asks the resolver once per ClientHello, so a handshake
//! with a HelloRetryRequest (the client's key share is for a group the
//! server does not pick first) asked it twice and was counted twice.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::server::Acceptor;
use rustls::{NamedGroup, ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use crate::tls::per_name::PerName;
use crate::tls::sent::Counted;
use crate::tls::server::SniResolver;
use crate::tls::session_cache::retrying;

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
    let start = LazyConfigAcceptor::new(Acceptor::default(), Hello::new(Counted::new(stream)))
        .await
        .map_err(|error| Refused {
            error,
            stream: None,
        })?;
    let Hello { inner, seen } = start.io;
    let start = StartHandshake::from_parts(start.accepted, inner);
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
    let retry = may_retry(&config, start.client_hello().named_groups(), &seen);
    let resuming = offers_psk(&seen);
    // The copy goes now, not at the handshake's end.
    drop(seen);
    let config = if resuming { one_ticket(config) } else { config };
    let config = if retry { retrying(config) } else { config };
    // The certificate is chosen as rustls takes the ClientHello, before
    // `into_stream_with` returns; a TLS 1.3 resumption's tickets keep its
    // session's birth (`session_cache::keep_tls13_birth`, and `retrying`
    // after a HelloRetryRequest).
    let (handshake, served) = crate::tls::server::noting_choice(|| {
        start
            .into_stream_with(config, crate::tls::session_cache::keep_tls13_birth)
            .into_fallible()
    });
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
/// and listener (any client can send any name).
const SNI_LOG_EVERY_SECS: u64 = 10;

/// Counts (and logs, rate-limited) a ClientHello whose SNI no pair answers.
fn note_sni(listener: &str, resolver: &SniResolver, sni: Option<&str>) {
    let Some(name) = sni.filter(|name| !resolver.answers(name)) else {
        return;
    };
    crate::metrics::sni_default(listener);
    if let Some(suppressed) = sni_log_due(listener) {
        // rustls has checked it is a DNS name; still the client's text,
        // so a `&str` value: quoted in the text format, as any such value.
        tracing::info!(listener = %listener, sni = name, suppressed, "SNI matched no certificate; served the listener's default certificate");
    }
}

/// `Some(lines suppressed since the last one)` when an SNI-miss line of
/// `listener` may be logged now. Each listener has its own limit: its line
/// names it, so another listener's misses must not be suppressed (and
/// counted) under it.
fn sni_log_due(listener: &str) -> Option<u64> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex, PoisonError};
    use std::time::{SystemTime, UNIX_EPOCH};
    /// By listener: when its next line may be logged (seconds since the
    /// epoch), and its lines suppressed since its last.
    type Limits = HashMap<Box<str>, (u64, u64)>;
    static LIMITS: LazyLock<Mutex<Limits>> = LazyLock::new(Default::default);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut limits = LIMITS.lock().unwrap_or_else(PoisonError::into_inner);
    if !limits.contains_key(listener) {
        limits.insert(listener.into(), (0, 0));
    }
    let (next, suppressed) = limits.get_mut(listener)?;
    if now >= *next {
        *next = now + SNI_LOG_EVERY_SECS;
        Some(std::mem::take(suppressed))
    } else {
        *suppressed += 1;
        None
    }
}

/// `config` sending one TLS 1.3 session ticket instead of its several: for
/// a client offering a session to resume, which has one ticket fewer after
/// this handshake and gets this one in its place (OpenSSL's, so nginx's,
/// one ticket after a resumption). A ticket costs a sealing and a record;
/// a client opening several connections at once fills its store from its
/// full handshakes, which keep rustls's two.
fn one_ticket(config: Arc<ServerConfig>) -> Arc<ServerConfig> {
    if config.send_tls13_tickets <= 1 {
        return config;
    }
    let mut one = (*config).clone();
    one.send_tls13_tickets = 1;
    Arc::new(one)
}

/// At most this much of what the client sends first is kept to look at:
/// one TLS record, which a ClientHello fills only with many key shares.
const HELLO_BYTES: usize = 5 + (1 << 14);

/// The socket while the ClientHello is read, keeping a copy of what it
/// reads (up to [`HELLO_BYTES`]): rustls's `ClientHello` does not tell
/// whether the client offers a session to resume.
struct Hello<S> {
    inner: S,
    seen: Vec<u8>,
}

impl<S> Hello<S> {
    fn new(inner: S) -> Hello<S> {
        Hello {
            inner,
            seen: Vec::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Hello<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        let mut at = 0;
        // The record header first (5 bytes), then the rest of that one
        // record (its length said there), never more: reserved exactly,
        // so a 16 KiB record costs 16 KiB, not a doubled 32.
        while at < new.len() {
            let want = match this.seen.get(3..5) {
                Some(len) => 5 + usize::from(u16::from_be_bytes([len[0], len[1]])),
                None => 5,
            }
            .min(HELLO_BYTES);
            let room = want.saturating_sub(this.seen.len());
            if room == 0 {
                break;
            }
            let take = &new[at..new.len().min(at + room)];
            this.seen.reserve_exact(take.len());
            this.seen.extend_from_slice(take);
            at += take.len();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Hello<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether `bytes`, the first a client sent, hold a ClientHello in its
/// first record offering a session to resume (a `pre_shared_key`
/// extension, RFC 8446 §4.2.11). Anything else, a ClientHello split
/// across records among it, reads as no.
fn offers_psk(bytes: &[u8]) -> bool {
    const PRE_SHARED_KEY: u16 = 41;
    matches!(hello_extension(bytes, PRE_SHARED_KEY), Ok(Some(_)))
}

/// Whether rustls may answer the ClientHello in `bytes` (the first a
/// client sent) with a HelloRetryRequest under `config`: the group it
/// picks, the first of the client's `groups` that `config` has for TLS
/// 1.3, has no key share in it (RFC 8446 §4.2.8). A ClientHello not whole
/// in its first record may.
fn may_retry(config: &ServerConfig, groups: Option<&[NamedGroup]>, bytes: &[u8]) -> bool {
    const KEY_SHARE: u16 = 51;
    let ours = &config.crypto_provider().kx_groups;
    let picked = groups.unwrap_or_default().iter().find(|group| {
        ours.iter()
            .any(|kx| kx.name() == **group && kx.usable_for_version(ProtocolVersion::TLSv1_3))
    });
    let Some(&picked) = picked else {
        return false;
    };
    let Ok(shares) = hello_extension(bytes, KEY_SHARE) else {
        return true;
    };
    // No key shares: no TLS 1.3 (rustls refuses a TLS 1.3 hello without).
    let Some(mut shares) = shares else {
        return false;
    };
    let mut listed = || -> Option<bool> {
        let len = usize::from(u16::from_be_bytes(*shares.split_first_chunk::<2>()?.0));
        shares = shares.get(2..2 + len)?;
        while let Some((head, rest)) = shares.split_first_chunk::<4>() {
            let group = u16::from_be_bytes([head[0], head[1]]);
            if NamedGroup::from(group) == picked {
                return Some(true);
            }
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            shares = rest.get(len..)?;
        }
        Some(false)
    };
    listed() != Some(true)
}

/// The extension of type `kind` of the ClientHello in the first record of
/// `bytes`: `Ok(None)` if it has none, `Err(())` if no whole ClientHello
/// is there (one split across records, or anything else).
fn hello_extension(bytes: &[u8], kind: u16) -> Result<Option<&[u8]>, ()> {
    const HANDSHAKE: u8 = 22;
    const CLIENT_HELLO: u8 = 1;
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(head)
    }
    fn len(b: &mut &[u8], width: usize) -> Option<usize> {
        Some(
            take(b, width)?
                .iter()
                .fold(0, |n, &x| n << 8 | usize::from(x)),
        )
    }
    let found = || -> Option<Option<&[u8]>> {
        let mut b = bytes;
        let header = take(&mut b, 3)?;
        if header[0] != HANDSHAKE {
            return None;
        }
        let record = len(&mut b, 2)?;
        let mut b = take(&mut b, record)?;
        if take(&mut b, 1)?[0] != CLIENT_HELLO {
            return None;
        }
        let body = len(&mut b, 3)?;
        let mut b = take(&mut b, body)?;
        take(&mut b, 2 + 32)?; // legacy_version, random
        for width in [1, 2, 1] {
            // session ID, cipher suites, compression methods
            let n = len(&mut b, width)?;
            take(&mut b, n)?;
        }
        let n = len(&mut b, 2)?;
        let mut exts = take(&mut b, n)?;
        while !exts.is_empty() {
            let found = len(&mut exts, 2)? == usize::from(kind);
            let n = len(&mut exts, 2)?;
            let data = take(&mut exts, n)?;
            if found {
                return Some(Some(data));
            }
        }
        Some(None)
    };
    found().ok_or(())
}

#[cfg(test)]
mod tests {
    use super::{Hello, may_retry, offers_psk};

    /// A ClientHello record with these extensions (type, data).
    fn hello(exts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut e = Vec::new();
        for (kind, data) in exts {
            e.extend_from_slice(&kind.to_be_bytes());
            e.extend_from_slice(&(data.len() as u16).to_be_bytes());
            e.extend_from_slice(data);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[32]);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(e.len() as u16).to_be_bytes());
        body.extend_from_slice(&e);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn a_pre_shared_key_extension_is_an_offer_to_resume() {
        assert!(offers_psk(&hello(&[
            (0, b"abc"),
            (45, &[1, 1]),
            (41, &[0; 40])
        ])));
        assert!(!offers_psk(&hello(&[(0, b"abc"), (45, &[1, 1])])));
        assert!(!offers_psk(&hello(&[])));
        // Cut short anywhere, or not a handshake: no.
        let full = hello(&[(0, b"abc"), (41, &[0; 40])]);
        for n in 0..full.len() {
            assert!(!offers_psk(&full[..n]), "{n}");
        }
        let mut alert = full.clone();
        alert[0] = 21;
        assert!(!offers_psk(&alert));
    }

    /// rustls retries when the group it picks (the client's first that the
    /// listener has) has no key share; so read here, whatever other
    /// shares come, and a hello cut short may retry.
    #[test]
    fn a_retry_is_foreseen_when_the_picked_group_has_no_key_share() {
        use rustls::NamedGroup::{FFDHE2048, X25519, secp256r1};
        let provider = crate::tls::provider::get();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(std::sync::Arc::new(
                rustls::server::ResolvesServerCertUsingSni::new(),
            ));
        // The key_share extension of these groups' shares (4 bytes each).
        let shares = |groups: &[u16]| {
            let mut entries = Vec::new();
            for g in groups {
                entries.extend_from_slice(&g.to_be_bytes());
                entries.extend_from_slice(&[0, 4, 1, 2, 3, 4]);
            }
            let mut ext = (entries.len() as u16).to_be_bytes().to_vec();
            ext.extend_from_slice(&entries);
            hello(&[(51, &ext)])
        };
        let retry =
            |groups: &[rustls::NamedGroup], hello: &[u8]| may_retry(&config, Some(groups), hello);
        let (x25519, p256) = (u16::from(X25519), u16::from(secp256r1));
        assert!(!retry(&[X25519, secp256r1], &shares(&[x25519])));
        assert!(!retry(&[X25519, secp256r1], &shares(&[p256, x25519])));
        assert!(retry(&[X25519, secp256r1], &shares(&[p256])));
        assert!(retry(&[X25519, secp256r1], &shares(&[])));
        // A group the listener lacks is not picked.
        assert!(!retry(&[FFDHE2048, secp256r1], &shares(&[p256])));
        // No key shares (TLS 1.2), no group in common: no retry.
        assert!(!retry(&[X25519], &hello(&[(0, b"abc")])));
        assert!(!retry(&[FFDHE2048], &shares(&[])));
        assert!(!may_retry(&config, None, &shares(&[])));
        // Cut short: it may.
        let whole = shares(&[x25519]);
        assert!(retry(&[X25519], &whole[..whole.len() - 1]));
    }

    /// What the client sends after its first record is not kept, nor
    /// room for it: a client sending a 100-byte record and then 16 KiB
    /// more costs its connection 105 bytes of copy, not 32 KiB.
    #[tokio::test]
    async fn only_the_first_record_is_kept() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut sent = vec![22, 3, 1, 0, 100];
        sent.extend_from_slice(&[1; 100 + 16 * 1024]);
        client.write_all(&sent).await.unwrap();
        drop(client);
        let mut hello = Hello::new(server);
        let mut buf = [0; 4096];
        while hello.read(&mut buf).await.unwrap() > 0 {}
        assert_eq!(hello.seen, sent[..105]);
        assert!(hello.seen.capacity() <= 4096, "{}", hello.seen.capacity());
    }
}
