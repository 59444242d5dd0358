//! Upgrade tunnels: which `Upgrade` tokens are tunnelled, and the bounded byte copy after a `101`.
//!
//! Only the tokens in [`TUNNELLED`] are tunnelled. Any other `Upgrade`
//! (notably `h2c`, which would carry requests past routing and header
//! hygiene) is treated as RFC 9110 §7.8 allows a server to: ignored. The
//! `Upgrade` and `Connection` headers are stripped as hop-by-hop and the
//! request is forwarded as an ordinary one (nginx's default; Envoy does the
//! same for `h2c`).
//!
//! A `websocket` upgrade is tunnelled only as a WebSocket handshake: its
//! request with a valid `Sec-WebSocket-Key` and `-Version` (otherwise a
//! `400`), its `101` with the key's `Sec-WebSocket-Accept` (otherwise a
//! `502`), [`crate::proxy::websocket`].
//!
//! A tunnel ends as soon as either side closes, once what that side sent
//! has been passed on and the other side's writing shut down
//! ([`crate::proxy::relay`]; nginx's "upgraded done"): a half-open tunnel
//! would hold its upstream connection (and its server slot) for as long as
//! the other side stays silent. A write either way that waits the
//! listener's `send_timeout` ends it too (a side that stopped reading).
//!
//! A tunnel keeps the client connection's slot (`max_connections`, the
//! active-connection gauge, the shutdown drain) until it ends, and ends
//! after `limits.tunnel_idle_timeout` without a byte in either direction
//! and none read waiting to be written (a slow reader's wait is
//! `send_timeout`'s), or, as its connection would, at `max_connection_lifetime` once the
//! listener's material has rotated ([`crate::proxy::lifetime`]), or when
//! changed admission rules refuse its client: the listener's (as its
//! connection's, and its host's entry's when another than the
//! connection's) or, the routes changed, its route's `allow` and
//! `allow_from`, checked per request and so never again for a tunnel
//! otherwise ([`crate::proxy::readmit::Routed`]).
//!
//! The request's access-log line goes with the tunnel and is written when
//! it ends, however it ends (nginx logs an upgraded connection when it
//! closes): `101`, the bytes relayed each way, the whole tunnel's duration
//! ([`crate::access_log::tunnel`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, Version, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use crate::access_log::tunnel::TunnelLine;
use crate::config::Limits;
use crate::proxy::lifetime::Woken;
use crate::proxy::lifetime::{Lifetime, Over};
use crate::proxy::on_read::OnRead;
use crate::proxy::readmit::Routed;
use crate::proxy::relay::{Closed, Rewound, SendBound, relay};
use crate::proxy::websocket::Accept;
use crate::upstream::io::UpstreamIo;

/// `Upgrade` tokens hotproxy tunnels (compared case-insensitively). The
/// extension point for more protocols: each must be one whose bytes after
/// the `101` need no routing or header rewriting by the proxy, and a
/// handshake of its own checked as [`crate::proxy::websocket`] checks
/// WebSocket's.
pub const TUNNELLED: &[&str] = &["websocket"];

/// Whether a request asks for an upgrade hotproxy tunnels: HTTP/1.1,
/// `Connection: upgrade`, and an `Upgrade` token in [`TUNNELLED`].
pub fn is_tunnelled(version: Version, headers: &HeaderMap) -> bool {
    // The common request: no Upgrade at all (and h2 never tunnels here).
    if version != Version::HTTP_11 || !headers.contains_key(header::UPGRADE) {
        return false;
    }
    let connection_upgrade = headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    connection_upgrade && !tunnelled_tokens(headers).is_empty()
}

/// Whether a `101` switched to a protocol hotproxy tunnels, answering the
/// request's handshake: with the `Sec-WebSocket-Accept` of its key
/// ([`crate::proxy::websocket`]).
pub fn switched_to_tunnelled(headers: &HeaderMap, accept: &Accept) -> bool {
    accept.answered_in(headers) && switched_to_one_tunnelled(headers)
}

/// Whether a `101`'s `Upgrade` names one protocol, one hotproxy tunnels.
fn switched_to_one_tunnelled(headers: &HeaderMap) -> bool {
    let tokens = tunnelled_tokens(headers);
    // One protocol only: the upstream picks, it does not list.
    tokens.len() == 1
        && headers.get_all(header::UPGRADE).iter().count() == 1
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').count() == 1)
}

/// Keep only the tunnelled tokens in a request's `Upgrade`, so the
/// upstream cannot pick another protocol (`h2c, websocket`).
pub fn restrict_upgrade(headers: &mut HeaderMap) {
    let kept = tunnelled_tokens(headers).join(", ");
    headers.remove(header::UPGRADE);
    if let Ok(v) = HeaderValue::from_str(&kept) {
        headers.insert(header::UPGRADE, v);
    }
}

/// The `Upgrade` tokens that are in [`TUNNELLED`], as sent.
fn tunnelled_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| {
            // A token may carry a version (RFC 9110 §7.8: protocol/version).
            let name = t.split('/').next().unwrap_or("");
            TUNNELLED.iter().any(|p| name.eq_ignore_ascii_case(p))
        })
        .map(str::to_owned)
        .collect()
}

/// What ends a tunnel besides either side closing.
#[derive(Clone)]
pub struct TunnelLimits {
    /// `tunnel_idle_timeout`: no byte either way this long.
    pub idle: Duration,
    /// The listener's `send_timeout`, for writes to the upstream too
    /// (writes to the client have it from their connection's stream).
    pub send: Duration,
    /// The client connection's `max_connection_lifetime`.
    pub lifetime: Lifetime,
    /// The listener's `removed`: removed or re-bound by a reload, its
    /// tunnels end (at shutdown they drain with the rest).
    pub removed: tokio::sync::watch::Receiver<bool>,
}

impl TunnelLimits {
    pub fn new(
        limits: &Limits,
        lifetime: Lifetime,
        removed: tokio::sync::watch::Receiver<bool>,
    ) -> TunnelLimits {
        TunnelLimits {
            idle: limits.tunnel_idle_timeout,
            send: limits.send_timeout,
            lifetime,
            removed,
        }
    }

    /// Whether a tunnel begun now would be cut as it begins: the listener
    /// removed (or bound elsewhere) by a reload, or the connection's
    /// lifetime over. Its upgrade is refused before it is forwarded.
    pub fn ends_at_once(&self) -> bool {
        *self.removed.borrow() || self.lifetime.clone().over().now_or_never().is_some()
    }
}

/// Copy bytes both ways between the client and the upstream once both
/// sides have switched protocols. `hold` (the client connection's slot) is
/// released when the tunnel ends; `line` (with the access log on) is
/// submitted just before. `routed` ends it when changed routes no longer
/// let its client through.
pub fn spawn<H: Send + 'static>(
    listener: Arc<str>,
    client: OnUpgrade,
    upstream: OnUpgrade,
    limits: TunnelLimits,
    routed: Routed,
    hold: H,
    line: Option<TunnelLine>,
) {
    tokio::spawn(async move {
        let _hold = hold;
        let relayed = line.as_ref().map_or_else(Arc::default, TunnelLine::relayed);
        // Dropped (submitted) when this task ends: after the streams
        // below, before `_hold`, so a shutdown that waits for the slot
        // finds the line queued; and so, dropped with the runtime, is the
        // line of a tunnel cut when `shutdown_grace` ends.
        let _line = line;
        let idle_timeout = limits.idle;
        // Polled only when their own wake-up came, not at every chunk
        // copied (`lifetime::Woken`).
        let lifetime_over = Woken::new(limits.lifetime.over());
        tokio::pin!(lifetime_over);
        let route_refused = Woken::new(routed.refused());
        tokio::pin!(route_refused);
        let mut removed_rx = limits.removed.clone();
        let removed = Woken::new(removed_rx.wait_for(|r| *r));
        tokio::pin!(removed);
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                debug!(listener = %listener, error = %e, "upgrade failed");
                return;
            }
        };
        let clock = Arc::new(Clock::new());
        // Each side counts what was written to it for the access log
        // (written, not read from the other: what a cut tunnel still held
        // was never sent); either side's reads and writes wind the idle
        // clock, and what was read and not yet written keeps it from
        // running out (`Clock`).
        let mut client = {
            let (read, wrote, written) = (clock.clone(), clock.clone(), relayed.clone());
            OnRead::both(
                TokioIo::new(client),
                move |n| read.read(n),
                move |n| {
                    wrote.wrote(n);
                    written.written(n);
                },
            )
        };
        // Its own connection's stream, reached below the upgrade: what
        // rustls writes to the socket counts as progress (`SendBound`).
        // Always one (`upstream::conn::upgrade_conn`).
        let upstream = match upstream.downcast::<UpstreamIo>() {
            Ok(parts) => Rewound::new(parts.read_buf, TokioIo::new(parts.io)),
            Err(_) => {
                debug!(listener = %listener, "upgrade failed: not an upstream connection");
                return;
            }
        };
        // The upstream has no send timeout of its own (its timeouts are
        // for reading): the listener's bounds the tunnel's both ways.
        let upstream = SendBound::new(
            upstream,
            limits.send,
            "send_timeout: the upstream stopped reading",
        );
        let mut upstream = {
            let (read, wrote) = (clock.clone(), clock.clone());
            OnRead::both(
                upstream,
                move |n| read.read(n),
                move |n| {
                    wrote.wrote(n);
                    relayed.to_upstream(n);
                },
            )
        };
        let copy = async {
            let closed = relay(&mut client, &mut upstream).await;
            if let Ok(Closed::A) = closed {
                // The client closed first and the upstream has been told:
                // our close_notify answers the client's (as nginx closes
                // an upgraded connection), bounded by send_timeout.
                let _ = client.shutdown().await;
            }
            closed
        };
        tokio::pin!(copy);
        loop {
            let quiet_until = clock.quiet_until(idle_timeout);
            tokio::select! {
                closed = &mut copy => {
                    match closed {
                        Ok(Closed::A) => debug!(listener = %listener, reason = "client_closed", "tunnel closed"),
                        Ok(Closed::B) => debug!(listener = %listener, reason = "upstream_closed", "tunnel closed"),
                        Err(e) => debug!(listener = %listener, reason = "error", error = %e, "tunnel closed"),
                    }
                    return;
                }
                over = &mut lifetime_over => {
                    debug!(listener = %listener, reason = over.reason(), "tunnel closed");
                    return;
                }
                () = &mut route_refused => {
                    // A rules change, as the listener's rules changing is.
                    debug!(listener = %listener, reason = Over::Revoked.reason(), "tunnel closed");
                    return;
                }
                _ = &mut removed => {
                    debug!(listener = %listener, reason = "listener_removed", "tunnel closed");
                    return;
                }
                _ = tokio::time::sleep_until(quiet_until.into()) => {
                    if clock.quiet_until(idle_timeout) <= Instant::now() {
                        debug!(listener = %listener, reason = "tunnel_idle_timeout", "tunnel closed");
                        return;
                    }
                }
            }
        }
    });
}

/// When a byte last crossed the tunnel, either way, and how many were
/// read from one side and not yet written to the other. A tunnel holding
/// such bytes is not idle: it waits for a side that reads slowly, which
/// `send_timeout` bounds. The copy reads a side only once it has written
/// what it read before, so a client taking a stream slowly but steadily
/// can leave both sides unread for longer than `tunnel_idle_timeout`
/// while bytes still reach it; read alone, the clock closed such a tunnel
/// as idle. The hooks and the check run on the tunnel's one task.
struct Clock {
    started: Instant,
    last_ms: AtomicU64,
    held: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `n` bytes read from either side, to be written to the other.
    fn read(&self, n: usize) {
        self.held.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    /// `n` bytes written to either side.
    fn wrote(&self, n: usize) {
        // Saturating: a write never takes more than was read, but an
        // underflow must not read as bytes held for ever.
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| {
                Some(h.saturating_sub(n as u64))
            });
        self.touch();
    }

    fn touch(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the tunnel is idle if nothing moves: `idle` after the last
    /// byte, or, while bytes are held, not before `idle` from now (looked
    /// at again then).
    fn quiet_until(&self, idle: Duration) -> Instant {
        if self.held.load(Ordering::Relaxed) > 0 {
            return Instant::now() + idle;
        }
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// websocket is tunnelled in any case and token position; h2c and others are not.
    #[test]
    fn only_listed_tokens_are_tunnelled() {
        let ws = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(is_tunnelled(Version::HTTP_11, &ws));
        assert!(!is_tunnelled(Version::HTTP_2, &ws));
        assert!(!is_tunnelled(Version::HTTP_10, &ws));
        for other in ["h2c", "TLS/1.2", "foo, bar"] {
            let h = headers(&[("connection", "upgrade"), ("upgrade", other)]);
            assert!(!is_tunnelled(Version::HTTP_11, &h), "{other}");
        }
        let no_connection = headers(&[("upgrade", "websocket")]);
        assert!(!is_tunnelled(Version::HTTP_11, &no_connection));
        let mut both = headers(&[("connection", "upgrade"), ("upgrade", "h2c, websocket")]);
        assert!(is_tunnelled(Version::HTTP_11, &both));
        restrict_upgrade(&mut both);
        assert_eq!(both["upgrade"], "websocket");
        assert!(switched_to_one_tunnelled(&headers(&[(
            "upgrade",
            "websocket"
        )])));
        assert!(!switched_to_one_tunnelled(&headers(&[("upgrade", "h2c")])));
        assert!(!switched_to_one_tunnelled(&headers(&[(
            "upgrade",
            "websocket, h2c"
        )])));
    }
}
