//! One stream of a shared HTTP/2 upstream connection: its guard, which counts it out (and closes the connection at its last stream when due), and the connection's retirement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use super::{CLOSE_AT_IDLE, CLOSED, COUNT, H2Shared, clock};

/// One stream of a shared HTTP/2 connection, held until the response
/// ends, with its sequence number on the connection (from 0, in the order
/// streams were taken) and the number of the connection's run of
/// refusals it was opened in (`H2Shared::runs`), and whether its response
/// head came (counted out of `H2Shared::awaiting`).
pub struct StreamGuard(
    pub(super) Arc<H2Shared>,
    pub(super) u64,
    pub(super) u64,
    pub(super) AtomicBool,
);

/// The connection that refused a request while another had room: the
/// request's next send skips it ([`crate::upstream::pool::Pool::find`]).
/// Not the connection itself: held, it keeps none open.
pub struct Refuser(Weak<H2Shared>);

/// The low half of `H2Shared::runs`: the streams opened in the run still open.
const IN_RUN: u64 = u32::MAX as u64;

/// The number of the run of refusals (`H2Shared::runs`) a stream taken
/// now is opened in, the stream counted in it if one is under way (an odd
/// number). With none (a connection that never refused, the hot path) a
/// load alone: every stream's take and drop were a read-modify-write of
/// `runs` under the pool lock. A run begun between the load and the take
/// counts the stream as opened before it ([`StreamGuard::shielded`]),
/// which leans toward sparing the connection, as that count does anyway.
pub(super) fn run_of_new(shared: &H2Shared) -> u64 {
    let run = shared.runs.load(Ordering::Acquire) >> 32;
    if run.is_multiple_of(2) {
        return run;
    }
    // If that run ended meanwhile, the stream is counted in the even one
    // after it, whose count the next run clears, never counted out (`Drop`).
    shared.runs.fetch_add(1, Ordering::AcqRel) >> 32
}

impl super::H2 {
    /// Whether `stream` is one of its streams.
    pub fn carries(&self, stream: &StreamGuard) -> bool {
        Arc::ptr_eq(&self.shared, &stream.0)
    }

    /// Whether it is the connection `refuser` names.
    pub fn is(&self, refuser: &Refuser) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.shared), refuser.0.as_ptr())
    }

    /// Closed now if it carries no stream and is not closed already:
    /// whether it was. A stream taken meanwhile keeps it open (unlike
    /// [`Self::close_when_idle`], which marks it to close at its last).
    pub fn close_if_idle(&self) -> bool {
        let closed = self
            .shared
            .streams
            .compare_exchange(0, CLOSED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if closed {
            self.shared.kill.kill();
        }
        closed
    }

    /// When its last stream ended (or it was made), on [`clock`]'s scale.
    pub fn idle_since(&self) -> u64 {
        self.shared.idle_since.load(Ordering::Acquire)
    }

    /// Whether it takes a new stream now, as [`Self::try_stream`] would.
    pub fn has_room(&self) -> bool {
        let n = self.shared.streams.load(Ordering::Acquire);
        self.usable()
            && n & CLOSED == 0
            && n & COUNT < self.shared.max_streams.load(Ordering::Acquire)
    }
}

impl StreamGuard {
    /// Stream `seq` of `shared`, opened in run `run`, awaiting its head.
    pub(super) fn new(shared: Arc<H2Shared>, seq: u64, run: u64) -> StreamGuard {
        shared.awaiting.fetch_add(1, Ordering::AcqRel);
        StreamGuard(shared, seq, run, AtomicBool::new(false))
    }

    /// The TLS error the stream's connection failed on, if it did.
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        self.0.kill.tls_error()
    }

    /// The stream's connection, for a request refused on it to skip.
    pub fn refuser(&self) -> Refuser {
        Refuser(Arc::downgrade(&self.0))
    }

    /// The connection went silent under this stream (no response head
    /// within `request_timeout`, no body for `read_timeout`, no answer to
    /// an active check within its `timeout`): it takes no
    /// new stream, and closes when its other streams have ended. A node
    /// that vanished without a reset (a black-holed pod IP) leaves such a
    /// connection open, and every request shared onto it would wait out
    /// `request_timeout` until the kernel gives up, about 15 minutes later.
    /// A backend that is merely slow costs one new connection per timeout.
    pub fn retire(&self) {
        if !self.0.retired.swap(true, Ordering::AcqRel) {
            tracing::debug!("upstream h2 connection retired: a request on it went unanswered");
        }
    }

    /// The server shut the connection down before this stream (`GOAWAY`):
    /// retired as by [`Self::retire`], so the new connection its request
    /// is sent again on (or the next request's) takes the requests that
    /// follow.
    pub fn retire_refused(&self) {
        if !self.0.retired.swap(true, Ordering::AcqRel) {
            tracing::debug!("upstream h2 connection retired: it left a request unprocessed");
        }
    }

    /// A response head came on this stream: the connection serves. If
    /// the stream was opened after the last refusal, the connection takes
    /// new streams again, and its refusals are forgotten. A response on a
    /// stream opened before it says nothing of that: a server draining a
    /// connection refuses every new stream while it finishes the old ones.
    /// Any response used to forget them, so each old stream finished bought
    /// such a connection one more refused request.
    pub fn answered(&self) {
        self.0.answered.fetch_add(1, Ordering::AcqRel);
        if !self.3.swap(true, Ordering::AcqRel) {
            self.0.awaiting.fetch_sub(1, Ordering::AcqRel);
        }
        if self.1 >= self.0.refused_at.load(Ordering::Acquire) {
            self.0.refusals.store(0, Ordering::Release);
            self.next_run(1);
        }
    }

    /// The server left a request on it unprocessed (`REFUSED_STREAM`,
    /// past a `GOAWAY`'s last stream id, handed back unwritten): whether
    /// that is a step in the endpoint's run of such attempts
    /// (`Health::unprocessed`), which it is once per connection at most,
    /// and only on one that never served a response. A connection that
    /// served and then refuses or says `GOAWAY` is draining gracefully
    /// (a server's keep-alive limit, a reload, a pod's drain): each of
    /// its streams in flight, all failed at once, used to be a step, and a
    /// burst of them ejected a healthy endpoint. An endpoint refusing
    /// every stream still takes a step with each new connection.
    pub fn unprocessed_step(&self) -> bool {
        self.0.answered.load(Ordering::Acquire) == 0 && !self.0.stepped.swap(true, Ordering::AcqRel)
    }

    /// Begins a run of refusals (`odd` 0) unless one lasts, or ends the
    /// one that lasts (`odd` 1). A new run counts none of the streams
    /// open as its own: they were opened before it.
    fn next_run(&self, odd: u64) {
        let _ = self
            .0
            .runs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                ((w >> 32) % 2 == odd).then_some(((w >> 32) + 1) << 32)
            });
    }

    /// Whether a stream opened before the connection's run of refusals
    /// began (before its first refusal since it last took new streams) is
    /// still open, other than this one. Both counts move apart, each
    /// toward too many such streams, never too few: a stream is counted
    /// open before it is counted in the run, and out of the run before
    /// it is counted out.
    fn shielded(&self) -> bool {
        let w = self.0.runs.load(Ordering::Acquire);
        let before = self.0.open_streams().saturating_sub((w & IN_RUN) as usize);
        before > usize::from(self.2 != w >> 32)
    }

    /// The server refused this stream (`REFUSED_STREAM`): retired as by
    /// [`Self::retire_refused`] only if the connection never served a
    /// response, or on a second refusal with no response in between on a
    /// stream opened after the first ([`Self::answered`]). A
    /// server refusing every stream on a connection it keeps open (a
    /// process stuck on it) had that connection stay first in the pool:
    /// each request refused on it and sent again on a new connection of
    /// its own, one dial more per request. But one refusal on a connection
    /// that serves the streams beside it (a server shedding one stream
    /// under load) retired it too: a new connection for the requests that
    /// followed, and the old one closed under those still on it.
    ///
    /// Whether the connection still takes new streams (not retired, by
    /// this refusal or before it): the refused request may then go again
    /// on any connection, this one included.
    ///
    /// `stay`: no server slot is free for a new connection
    /// (`max_connections_per_server`), and no other pooled connection has
    /// room for a stream: the refused requests can go nowhere else. A
    /// refusal then does not count toward a second while a stream opened
    /// before the connection's first refusal (since it last took new
    /// streams) is still open beside it, whether the request was sent
    /// before or not: retired, the connection kept its slot (the only one,
    /// with a limit of 1) until that stream ended, and the refused
    /// requests' next sends, and every request after them, waited out
    /// `connect_timeout` for the connection limit's `504`. Streams opened
    /// since that first refusal do not spare it: a server stuck on the
    /// connection refuses them too, and with requests coming at once each
    /// refusal saw the others (and their resends) open, so none counted,
    /// and every request was refused three times, `502`. With another
    /// connection's room, or a slot free, every refusal counts.
    pub fn refused(&self, stay: bool) -> bool {
        let opened = self.0.opened.load(Ordering::Acquire);
        self.0.refused_at.fetch_max(opened, Ordering::AcqRel);
        self.next_run(0);
        let refusals = match stay && self.shielded() {
            true => self.0.refusals.load(Ordering::Acquire),
            false => self.0.refusals.fetch_add(1, Ordering::AcqRel) + 1,
        };
        if self.0.answered.load(Ordering::Acquire) == 0 || refusals >= 2 {
            self.retire_refused();
        }
        !self.0.retired.load(Ordering::Acquire)
    }

    /// Whether another stream of its connection still waits for its
    /// response head: one of them may yet be refused, count, and retire
    /// the connection (its slot then freed), as a burst of requests refused
    /// by a stuck connection is. Streams that have their heads (an SSE or
    /// gRPC stream, a download) hold the connection for as long as they last.
    pub fn others_awaiting(&self) -> bool {
        let own = usize::from(!self.3.load(Ordering::Acquire));
        self.0.awaiting.load(Ordering::Acquire) > own
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // The last stream of a connection retired, or to close when idle,
        // closes it in the same step as it counts itself out: a request
        // taking a stream in between would have it cut by the close.
        // The mark to close when idle is in the word counted down, so the
        // compare-and-swap that counts the last stream out sees it, or
        // `close_when_idle` sees this stream still counted and leaves the
        // close to this drop. Retirement is marked by a stream's holder
        // before that stream lets go: its own drop comes after.
        // Out of its run of refusals first (`Self::shielded`), if it was
        // counted in one (an odd run: `run_of_new`).
        if !self.3.load(Ordering::Acquire) {
            self.0.awaiting.fetch_sub(1, Ordering::AcqRel);
        }
        let run = self.2;
        if run % 2 == 1 {
            let _ = self
                .0
                .runs
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    (w >> 32 == run).then_some(w - 1)
                });
        }
        let mut close = false;
        let before = self
            .0
            .streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                close = n & COUNT == 1
                    && (n & CLOSE_AT_IDLE != 0 || self.0.retired.load(Ordering::Acquire));
                Some(if close { CLOSED } else { n - 1 })
            })
            .expect("always counted out")
            & COUNT;
        // It was full: a request may be waiting for a stream (every slot
        // of `max_connections_per_server` taken, or every dial running).
        if before >= self.0.max_streams.load(Ordering::Acquire) {
            self.0.wakes.freed();
        }
        if before > 1 {
            return;
        }
        self.0.idle_since.store(clock(), Ordering::Release);
        // Closed, not left to a graceful GOAWAY: a silent peer may never
        // read it, and the connection holds a server slot until it closes.
        if close {
            self.0.kill.kill();
        } else {
            // Idle now: past `max_idle_connections` the longest idle
            // closes, and a resend waiting for a server slot may take its.
            self.0.wakes.h2_went_idle();
        }
    }
}

/// Retires the stream's connection if the attempt is dropped because
/// `request_timeout` ended it (`timed_out`), not because the client left.
pub struct Unanswered<'a> {
    pub stream: &'a StreamGuard,
    pub timed_out: &'a AtomicBool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.timed_out.load(Ordering::Acquire) {
            self.stream.retire();
        }
    }
}
