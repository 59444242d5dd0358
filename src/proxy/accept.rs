//! Accepting connections: each peer by its own address family, and a failed `accept()` (EMFILE, ENFILE, ENOBUFS) backs off instead of spinning.
//!
//! When the process is out of file descriptors the pending connection stays
//! in the kernel backlog and `accept()` fails again at once; retrying
//! immediately burns a core and starves every other task on the runtime.
//! Like nginx (which disables accept events for 500 ms), each failure
//! sleeps, doubling from [`MIN_BACKOFF`] to [`MAX_BACKOFF`], and is counted in
//! `hotproxy_accept_errors_total{listener}`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::metrics;

/// The first pause after a failed accept; every failure sleeps at least this long.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between attempts while failures continue.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts on one socket, backing off after failures.
pub struct Acceptor {
    listener: String,
    backoff: Duration,
}

impl Acceptor {
    pub fn new(listener: &str) -> Acceptor {
        Acceptor {
            listener: listener.to_owned(),
            backoff: MIN_BACKOFF,
        }
    }

    /// The next connection and its peer. Failures are logged (once per run
    /// of failures), counted and slept on; they never end the loop.
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
                    self.backoff = MIN_BACKOFF;
                    return (
                        stream,
                        SocketAddr::new(peer.ip().to_canonical(), peer.port()),
                    );
                }
                Err(e) => {
                    metrics::accept_error(&self.listener);
                    let retry_in_ms = self.backoff.as_millis() as u64;
                    // The first failure of a run at WARN, the rest (at most
                    // one a second once backed off) at DEBUG.
                    if self.backoff == MIN_BACKOFF {
                        warn!(listener = %self.listener, error = %e, retry_in_ms, "accept failed; backing off");
                    } else {
                        debug!(listener = %self.listener, error = %e, retry_in_ms, "accept failed; backing off");
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
