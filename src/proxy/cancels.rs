//! Requests an HTTP/2 client cancels before their answer, counted per connection: the bound that ends a rapid reset (CVE-2023-44487).
//!
//! h2's own guard counts only streams reset while they wait for hyper to
//! accept them (at most 20 at a time). A client that resets each stream
//! just after hyper took it, once its request has gone upstream, is never
//! counted there, and a reset stream frees its place under the 100-stream
//! limit at once: one connection could start requests upstream as fast as
//! it can send frames, each of them abandoned (and logged `499`). As
//! Envoy does with premature resets (`premature_reset_total_stream_count`,
//! 500, "more than half"), a connection whose client has cancelled at
//! least half of its requests, counted from 500 requests (so at the 250th
//! cancellation at the earliest), is closed at once: everything it still
//! has in flight upstream is let go with it. A browser that navigates away
//! from a few requests, or a gRPC client whose deadlines cut some calls,
//! stays far from it. Only a request handed to an endpoint counts as
//! answered: one hotproxy answers itself (a `404` for a host no route
//! serves, a `400`, `403`, `413` or `421`, a `400` for a small body that
//! broke while it was read whole, before any endpoint) costs the client a
//! few bytes and the upstream nothing, and counted, a client asking for a
//! few more of them than the upstream requests it resets would never be
//! closed.
//! As Envoy's, only a request cancelled within
//! [`PREMATURE_WITHIN`] of its start counts as cancelled: one the client
//! gave up on after waiting longer (a long poll it cancels on its own
//! timeout, a deadline on a slow backend) counts only among the ended, as
//! an answered one does, so a client that cancels all of its long polls is
//! never closed.
//!
//! hyper offers no way to end an HTTP/2 connection with `GOAWAY`
//! `ENHANCE_YOUR_CALM` (its graceful shutdown sends `NO_ERROR` and keeps
//! taking streams until the client acknowledges it), so the connection is
//! closed without one: the client sees its TLS stream end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::warn;

use crate::metrics;
use crate::proxy::conn::InFlight;

/// Requests ended on a connection before its cancellations are weighed
/// against them (Envoy's `premature_reset_total_stream_count`).
pub const COUNTED_FROM: u64 = 500;

/// A request cancelled sooner than this after it began counts as
/// cancelled (Envoy's `premature_reset_min_stream_lifetime_seconds`
/// default). A rapid reset is cheap to the client only while its requests
/// are cancelled at once: one that holds each request this long before
/// resetting it can start at most 100 a second on a connection (the stream
/// limit), and a client that gives up on its own deadline on long polls or
/// slow answers (a gRPC or browser client) is not an attacker, so its
/// cancellations must not close the connection and end its other streams.
pub const PREMATURE_WITHIN: Duration = Duration::from_secs(1);

/// One connection's requests: those answered (forwarded upstream), those
/// its client cancelled first (within [`PREMATURE_WITHIN`], and later),
/// and whether the cancellations went over the bound.
#[derive(Default)]
pub struct Cancels {
    /// Forwarded upstream and answered: answered by hotproxy itself, a
    /// request is not counted.
    answered: AtomicU64,
    cancelled: AtomicU64,
    /// Cancelled after [`PREMATURE_WITHIN`]: ended, not counted cancelled.
    cancelled_late: AtomicU64,
    over: AtomicBool,
    /// Told once, when the cancellations go over the bound.
    told: Notify,
}

impl Cancels {
    fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }

    fn cancelled_late(&self) {
        self.cancelled_late.fetch_add(1, Ordering::Relaxed);
    }

    fn cancelled(&self) {
        let cancelled = self.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        let ended = cancelled
            + self.answered.load(Ordering::Relaxed)
            + self.cancelled_late.load(Ordering::Relaxed);
        if too_many(cancelled, ended) && !self.over.swap(true, Ordering::Relaxed) {
            // A permit if the driver is not waiting at this moment.
            self.told.notify_one();
        }
    }
}

/// Whether `cancelled` requests out of `ended` are over the bound: at
/// least half, and at least half of [`COUNTED_FROM`].
fn too_many(cancelled: u64, ended: u64) -> bool {
    cancelled.saturating_mul(2) >= ended.max(COUNTED_FROM)
}

/// Ready once the client of the connection (`listener`, `peer`) has
/// cancelled too many requests, said once in a warning and counted in
/// `hotproxy_http2_rapid_reset_closed_total`: the connection's driver then
/// drops hyper's connection, which ends every stream and drops its
/// request's future, the upstream request with it. Only an HTTP/2 connection
/// gets there: an HTTP/1.1 request is cancelled by closing its connection,
/// and the admin listener's requests are not counted.
pub async fn cut(cancels: &Cancels, listener: &str, peer: SocketAddr) {
    cancels.told.notified().await;
    let cancelled = cancels.cancelled.load(Ordering::Relaxed);
    let answered = cancels.answered.load(Ordering::Relaxed);
    let cancelled_late = cancels.cancelled_late.load(Ordering::Relaxed);
    warn!(listener = %listener, peer = %peer, cancelled, answered, cancelled_late, "client cancelled most of its requests before their answer (HTTP/2 rapid reset); closing connection");
    metrics::rapid_reset_closed(listener);
}

/// A request on its way to its answer. Dropped first (hyper dropped the
/// request's future: the client reset its stream, or the connection
/// ended), it counts as cancelled if that came within
/// [`PREMATURE_WITHIN`] of its start. Answered, it counts as answered only
/// if it was forwarded upstream.
pub struct Unanswered {
    in_flight: Option<InFlight>,
    started: Instant,
    forwarded: bool,
}

impl Unanswered {
    /// The request `in_flight`, begun now (hyper has handed it over).
    pub fn new(in_flight: InFlight) -> Unanswered {
        Unanswered {
            in_flight: Some(in_flight),
            started: Instant::now(),
            forwarded: false,
        }
    }

    /// The request is handed to an endpoint (a small body read whole
    /// first has arrived): its answer, whatever it is (the upstream's, or
    /// hotproxy's when the upstream or a streamed body fails), counts.
    pub fn forwarded(&mut self) {
        self.forwarded = true;
    }

    /// The answer came: the request stays in flight while its body is sent.
    /// Once only. Borrowed, not taken: the guard stays where it was made
    /// (a request's future), not moved on each request to be consumed.
    pub fn answered(&mut self) -> InFlight {
        let in_flight = self.in_flight.take().expect("taken only here or on drop");
        if self.forwarded {
            in_flight.cancels().answered();
        }
        in_flight
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            if self.started.elapsed() < PREMATURE_WITHIN {
                in_flight.cancels().cancelled();
            } else {
                in_flight.cancels().cancelled_late();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Half of 500 at the earliest, then half of all; a few in many never.
    #[test]
    fn the_bound_is_half_counted_from_500() {
        assert!(!too_many(249, 249));
        assert!(too_many(250, 250));
        assert!(!too_many(249, 499));
        assert!(too_many(300, 600));
        assert!(!too_many(300, 601));
        assert!(!too_many(10, 200));
    }
}
