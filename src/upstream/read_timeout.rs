//! `read_timeout`: the longest wait for the next piece of an upstream response body, after which the response is cut.
//!
//! `request_timeout` ends at the response head. Without a bound after it, a
//! backend that hangs in the middle of a body leaves the client waiting for
//! ever and holds the upstream connection (nginx's `proxy_read_timeout`,
//! default 60 s, bounds each read the same way). The timer is armed only
//! when the body has to wait: a body that arrives with its head, as most
//! do, costs no timer at all. It is the upstream's silence only while the
//! request owes it nothing: a response that waits while the client pauses
//! its own request body (a call whose response streams as its request
//! does, gRPC's bidirectional shape) is not cut, nor one whose upstream
//! still takes that body; the client's pause is `body_read_timeout`'s to
//! bound (nginx runs `proxy_read_timeout` only once the request is sent),
//! though a call it cuts after the response, too, was silent for
//! `read_timeout` is counted as the upstream's stall as well when a piece
//! of the request went to the upstream after the response's last piece
//! (the upstream owed the answer to it).
//! A body the upstream breaks instead (a bad chunk, a close or a reset
//! before its end) is logged and counted here too, unless the client's own
//! request body broke first, or the shutdown cut it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use crate::proxy::body::{BodySent, Fault};
use crate::proxy::forward::BoxError;

/// One upstream's `read_timeout`, shared by its response bodies.
pub struct ReadTimeout {
    pub timeout: Duration,
    /// For the log line and the metric.
    pub upstream: Arc<str>,
}

/// One response body's wait for its next piece.
pub struct ReadTimer {
    limit: Arc<ReadTimeout>,
    /// Armed at the first wait; reset only after progress.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A frame arrived since the timer was last set.
    progress: bool,
    /// Pieces of the request's own body handed on when the timer was set.
    moved: u64,
    /// When the body last had to wait after a piece (or at all): the
    /// upstream has owed the next piece since.
    quiet_since: Option<Instant>,
    /// Pieces of the request's own body handed on at `quiet_since` (kept,
    /// unlike `moved`, which the wait's restarts move on): more since, and
    /// the upstream owes the answer to a piece it was given.
    quiet_moved: u64,
}

impl ReadTimer {
    pub fn new(limit: Arc<ReadTimeout>) -> ReadTimer {
        ReadTimer {
            limit,
            sleep: None,
            progress: false,
            moved: 0,
            quiet_since: None,
            quiet_moved: 0,
        }
    }

    /// The upstream's name, for the logs.
    pub fn upstream(&self) -> &Arc<str> {
        &self.limit.upstream
    }

    /// A piece of the body arrived.
    pub fn progress(&mut self) {
        self.progress = true;
    }

    /// The body failed with `e`: the response is cut, as after a stall.
    /// If the upstream broke it (a bad chunk size, a close before its
    /// length, a reset), that is logged and counted by its cause as a
    /// failed request is. If the client broke its own request body
    /// first (`client`: it stalled, went over `max_body_bytes`, sent
    /// trailers refused), hyper abandoned the upstream request for it:
    /// the client's fault, at debug as [`crate::proxy::body_answers::client_fault`]
    /// logs it, never counted against the upstream. Unless the client
    /// stalled (`body_read_timeout`) while the response, too, had been
    /// silent for `read_timeout` or more, and a piece of `request` went
    /// to the upstream after the response's last one (a ping-pong call
    /// whose upstream hangs while the client waits for the answer to
    /// that piece before sending more): both sides' fault, at warn,
    /// counted as the upstream's `read_timeout`. With no piece moved
    /// since, the upstream owes nothing (it answered all it got, as a
    /// healthy bidirectional backend waiting for its client does): the
    /// client's alone. `true` then: the upstream went silent, its
    /// connection is suspect. Once the shutdown cuts what still runs
    /// ([`crate::proxy::drain::cutting`]), at debug and counted nowhere:
    /// a worker dropping the upstream connection's task first broke the
    /// body ("broken pipe"), the shutdown's doing, not the upstream's.
    pub fn body_failed(&self, e: &hyper::Error, request: &BodySent) -> bool {
        let upstream = &self.limit.upstream;
        let error = crate::proxy::conn::causes(e);
        if crate::proxy::drain::cutting() {
            debug!(upstream = %upstream, error, "upstream response body cut by the shutdown");
            return false;
        }
        let timeout = self.limit.timeout;
        let silent = self.quiet_since.map(|since| since.elapsed());
        let owed = request.moved() != self.quiet_moved;
        match (request.fault(), silent) {
            (Some(Fault::Stalled), Some(silent)) if silent >= timeout && owed => {
                crate::metrics::upstream_error(upstream, "read_timeout");
                warn!(upstream = %upstream, reason = "read_timeout", timeout = ?timeout, upstream_silent_for = ?silent, "upstream response cut: both sides silent (the client owed its request body past body_read_timeout, the upstream its response past read_timeout)");
                true
            }
            (Some(fault), _) => {
                debug!(upstream = %upstream, ?fault, error, "upstream response cut: the client's request body failed");
                false
            }
            (None, _) => {
                let (reason, _, _) = crate::proxy::failure::diagnose_request(e);
                crate::metrics::upstream_error(upstream, reason);
                warn!(upstream = %upstream, reason, error, "upstream response body failed");
                false
            }
        }
    }

    /// The body has nothing yet: wait at most `read_timeout` from the last
    /// progress. `Err` once that has passed (logged and counted here).
    ///
    /// `request`: the request's own body. When the time is up but a piece
    /// of it was handed on meanwhile, or the client owes the next one,
    /// the upstream was not silent of its own accord: the wait starts
    /// again from now. So a response is cut between one and two
    /// `read_timeout`s after the last piece of either moved, and never
    /// while the client is the one that owes the next piece (its own
    /// `body_read_timeout` runs then). Looked at only when the time is
    /// up: a body moving costs nothing here.
    pub fn poll_wait(&mut self, cx: &mut Context<'_>, request: &BodySent) -> Result<(), BoxError> {
        let timeout = self.limit.timeout;
        match &mut self.sleep {
            None => {
                self.sleep = Some(Box::pin(tokio::time::sleep(timeout)));
                self.moved = request.moved();
                self.quiet_since = Some(Instant::now());
                self.quiet_moved = self.moved;
            }
            Some(s) if self.progress => {
                let now = Instant::now();
                s.as_mut().reset(now + timeout);
                self.moved = request.moved();
                self.quiet_since = Some(now);
                self.quiet_moved = self.moved;
            }
            Some(_) => {}
        }
        self.progress = false;
        let sleep = self.sleep.as_mut().expect("armed above");
        while let Poll::Ready(()) = sleep.as_mut().poll(cx) {
            let moved = request.moved();
            if moved == self.moved && !request.waiting() {
                let upstream = &self.limit.upstream;
                crate::metrics::upstream_error(upstream, "read_timeout");
                warn!(upstream = %upstream, reason = "read_timeout", timeout = ?timeout, "upstream response stalled");
                return Err(
                    format!("read_timeout: no data from the upstream for {timeout:?}").into(),
                );
            }
            // Polled again by the loop: the new deadline wakes this task.
            self.moved = moved;
            sleep.as_mut().reset(Instant::now() + timeout);
        }
        Ok(())
    }
}
