//! Accepting connections: each peer by its own address family, and a failed `accept()` (EMFILE, ENFILE, ENOBUFS) backs off instead of spinning.
//!
//! When the process is out of file descriptors the pending connection stays
//! in the kernel backlog and `accept()` fails again at once; retrying
//! immediately burns a core and starves every other task on the runtime.
//! Like nginx (which disables accept events for 500 ms), each failure
//! sleeps, doubling from [`MIN_BACKOFF`] to [`MAX_BACKOFF`], and is counted in
//! `hotproxy_accept_errors_total{listener}`.
//!
//! At the limit with connections churning, each freed descriptor lets one
//! accept succeed and the next fails. A success therefore does not end a
//! run of failures: only [`RUN_GAP`] without one does, so the pause keeps
//! growing and each listener fails at most about once a second. The WARN is
//! rate-limited per process ([`WARN_EVERY`], with the count of failures
//! logged only at DEBUG since the last), as every listener shares the one
//! descriptor table and fails together.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::identity::gate::RateLimit;
use crate::metrics;

/// The first pause after a failed accept; every failure sleeps at least this long.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between attempts while failures continue.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A failure this long after the previous one's retry starts a new run
/// (pausing [`MIN_BACKOFF`] again); successes in between do not.
pub const RUN_GAP: Duration = Duration::from_secs(1);
/// At most one accept-failure WARN per this span, per process.
pub const WARN_EVERY: Duration = Duration::from_secs(5);

static WARNED: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(WARN_EVERY));
/// Failures logged at DEBUG since the last WARN, reported with the next one.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Accepts on one socket, backing off after failures.
pub struct Acceptor {
    listener: String,
    backoff: Duration,
    /// When the last failure's pause ended (its retry), for [`RUN_GAP`].
    last_retry: Option<Instant>,
}

impl Acceptor {
    pub fn new(listener: &str) -> Acceptor {
        Acceptor {
            listener: listener.to_owned(),
            backoff: MIN_BACKOFF,
            last_retry: None,
        }
    }

    /// The next connection and its peer. Failures are logged (at WARN at
    /// most once per [`WARN_EVERY`] per process), counted and slept on; they
    /// never end the loop.
    ///
    /// An IPv4 client of a dual-stack socket (`bind: "[::]:8443"`) arrives
    /// as `::ffff:10.1.2.3`; it is returned as `10.1.2.3`, as Envoy reports
    /// it, so `X-Forwarded-For`, the access log and every CIDR rule
    /// (`allow_from`, `trusted_proxies`, `proxy_protocol.from`) see the
    /// address the client has.
    pub async fn accept(&mut self, socket: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match socket.accept().await {
                Ok((stream, peer)) => {
                    return (
                        stream,
                        SocketAddr::new(peer.ip().to_canonical(), peer.port()),
                    );
                }
                Err(e) => self.back_off(&e).await,
            }
        }
    }

    /// After a failed `accept()`: log and count it, and sleep the pause.
    /// Also for a socket accepted on without this (the queue of a socket
    /// given up, `serve_queue`).
    pub async fn back_off(&mut self, e: &std::io::Error) {
        metrics::accept_error(&self.listener);
        // A success between failures does not reset the pause
        // (at the limit each freed descriptor brings one); a
        // quiet RUN_GAP does.
        if self.last_retry.is_none_or(|t| t.elapsed() >= RUN_GAP) {
            self.backoff = MIN_BACKOFF;
        }
        let retry_in_ms = self.backoff.as_millis() as u64;
        if WARNED.first_in_window(String::new()) {
            let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
            warn!(listener = %self.listener, error = %e, retry_in_ms, suppressed, "accept failed; backing off");
        } else {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            debug!(listener = %self.listener, error = %e, retry_in_ms, "accept failed; backing off");
        }
        tokio::time::sleep(self.backoff).await;
        self.last_retry = Some(Instant::now());
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}
