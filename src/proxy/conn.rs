//! One client connection's activity for the idle and header timeouts; the driver that applies them is `driver.rs`.
//!
//! hyper's own HTTP/1 header timer starts whenever it waits for a request
//! head, including the quiet gap between keep-alive requests, so it would
//! close idle keep-alive connections after `header_read_timeout`. nginx
//! separates the two: `keepalive_timeout` until the first byte of the next
//! request, `client_header_timeout` from there until the head is complete.
//! [`Activity`] gives the connection driver what it needs to do the same.
//!
//! The driver is never woken by a request starting or ending (that would
//! poll the whole connection again, twice per request): it sleeps until
//! the earliest time any deadline could fall due given what it saw, and
//! at that time looks again ([`Activity::check_at`]). With keep-alive off
//! (`idle_timeout: 0s`) the idle deadline falls due as the last request in
//! flight ends, so there that end wakes it ([`Activity::without_keep_alive`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::proxy::cancels::Cancels;

mod driver;
mod ends;
pub(crate) mod frames;
pub(crate) use driver::causes;
pub use driver::{Driver, Ended, Outcome};
#[cfg(test)]
use ends::{ENDS_WINDOW, IN_LINE, after_head_end, step};
use ends::{HEAD_END, UNKNOWN, after_head, line_ends, walk};

const NONE: u64 = u64::MAX;
// `Activity::look`'s states.
const IDLE: u8 = 0;
const LOOK: u8 = 1;
const UNREAD: u8 = 2;
const NOTHING: u8 = 3;
/// `head_ms` after a request whose body was left unread (dropped before
/// its end): no head is being read, and the reads that come now are
/// hyper's drain of that body's tail (below [`NONE`], so a head begun is
/// `head_ms < DRAIN`). hyper drains in one go what is there of the rest
/// (none, one read or several, all ready: it takes what its buffer holds
/// first, and a tail longer than a read in as many reads as it takes), and
/// gives up at the first read that would wait (closing the connection
/// after the response). So every read is the tail's until one waits
/// ([`Activity::read_waits`]); after that, hyper has either drained it
/// and waits for a head, or reads no more.
const DRAIN: u64 = u64::MAX - 1;

/// Why a connection's watchdog closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Nothing in flight and no request started for `idle_timeout`.
    Idle,
    /// A request head started and was not complete within `header_read_timeout`.
    HeaderRead,
}

impl Expiry {
    pub fn reason(self) -> &'static str {
        match self {
            Expiry::Idle => "idle_timeout",
            Expiry::HeaderRead => "header_read_timeout",
        }
    }
}

/// Requests in flight and when the connection last changed state.
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `started` when the last request ended (or 0).
    last_ms: AtomicU64,
    /// Milliseconds since `started` when the first byte of a request head
    /// arrived on an idle connection; `NONE` while no head is being read,
    /// `DRAIN` while none is and reads are an unread body's tail.
    head_ms: AtomicU64,
    /// Requests begun: heads parsed, HTTP/2 streams the service took (a
    /// header block h2 refused itself is none). Whether any began (a
    /// connection the client closes without one is counted), and whether
    /// one began in the driver's look. Written by the connection's task.
    begun: AtomicU64,
    /// The last request came with a body (which may not have been read to
    /// its end): closing must linger.
    body: AtomicBool,
    /// Bytes arrived while the last request was in flight: its body, or a
    /// pipelined request hyper holds unread. Closing must linger.
    pipelined: AtomicBool,
    /// Bytes of a request head arrived since the last head was parsed
    /// (HTTP/1): a head timing out now was begun, not merely awaited.
    heard: AtomicBool,
    /// HTTP/2: the frames read so far, walked (`frames`): whether a header
    /// block is part way in. Written by the connection's task alone.
    frames: AtomicU64,
    /// HTTP/2: the stream ids the walk of `frames` keeps (the last header
    /// block ended). Written by the connection's task alone.
    frame_ids: AtomicU64,
    /// HTTP/2: our frames written so far, walked (`frames::walk_out`),
    /// and the stream id of the one whose header is written. Written by
    /// the connection's task alone.
    out_frames: AtomicU64,
    out_id: AtomicU32,
    /// HTTP/2: the streams whose response our frames began and did not
    /// end yet (END_STREAM not written, no RST_STREAM either way): h2
    /// may hold their end for the client's flow-control window, or
    /// behind other frames. Locked by the connection's task as a response
    /// begins or ends, and by the driver at a close.
    open: Mutex<frames::Open>,
    /// The driver closed the connection at once, with nothing begun
    /// (`driver::unbegun`): HTTP/2 sends `GOAWAY` before the close.
    at_once: AtomicBool,
    /// The driver, about to close at once, asked the stream to
    /// look at its socket for bytes not read yet (`LOOK`), and what the
    /// look found (`UNREAD`, `NOTHING`); `IDLE` otherwise.
    look: AtomicU8,
    /// HTTP/1: a head's byte was read during the look's poll: one other
    /// than CR and LF (not the empty lines hyper skips before a head), or
    /// any going on from a head begun before it.
    look_read_head: AtomicBool,
    /// The reads of HTTP/1 bytes the looks handed hyper, counted.
    #[cfg(test)]
    look_reads: AtomicU64,
    /// HTTP/1.1: the driver looked for bytes unread at a close from
    /// outside before the first request: any request served from then on
    /// is the connection's last, its response says `Connection: close`
    /// (SPEC §1), also one answered within the look's own poll, before
    /// hyper's graceful close could be asked for. Read by the services as
    /// a request comes (`Activity::answers_last`).
    answers_last: AtomicBool,
    /// Where the bytes that may be heads end (one of `IN_LINE`..`HEAD_END`):
    /// anything but `HEAD_END` means bytes of a head not yet complete were
    /// read, which hyper holds in its buffer when they came behind a
    /// request (in the read that brought its head, or while it ran). Bytes
    /// read while a request with a body runs are its body as far as its
    /// declared length goes (`left`), and all of it when it has none.
    ends: AtomicU8,
    /// Bytes read since the end of the first head seen after the last
    /// request began (`UNKNOWN`: none seen), never more than truly follow
    /// it: whether hyper holds more than a body of declared length
    /// ([`Activity::begin_with`]). Written by the connection's task alone.
    after_head: AtomicU64,
    /// Bytes of the last request's body of declared length still to be
    /// read (`UNKNOWN`: its length or where it began is not known; then
    /// every byte behind it is its, as far as can be told here). Never
    /// fewer than truly are: a byte past it is the next head's.
    left: AtomicU64,
    /// A body of unknown length (chunked) began in its head's read, which
    /// did not end at a head's end: `ends` tells of what follows the body
    /// once the body is read to its end with no read since, not before.
    held: AtomicBool,
    /// How many CRs and LFs the bytes walked (`ends`) end with.
    line_ends: AtomicU64,
    /// Writes to the client that took bytes, counted: a graceful close
    /// with nothing in flight may still be sending what hyper (or h2)
    /// holds of the last response after its body ended, and is not forced
    /// while that moves.
    writes: AtomicU64,
    /// HTTP/2: the last write to the client was a flush that completed
    /// (`crate::proxy::written`).
    flushed: AtomicBool,
    /// Requests answered and cancelled: too many cancelled close it.
    cancels: Cancels,
    /// HTTP/2, closing gracefully: the client has had the `GOAWAY`'s PING
    /// long enough to answer it, and new streams are refused
    /// (`REFUSED_STREAM`) rather than served. Set by the driver.
    refusing: AtomicBool,
    /// Keep-alive off: told when no request is left in flight.
    idle_again: Option<Notify>,
}

impl Activity {
    /// `head_pending`: a request is expected from the start (the first
    /// request shares `header_read_timeout` with the handshake).
    pub fn new(started: Instant, head_pending: bool) -> Arc<Activity> {
        Self::made(started, head_pending, None)
    }

    /// As [`Activity::new`], for a connection without keep-alive
    /// (`idle_timeout: 0s`): the end of its last request in flight wakes
    /// the driver, which closes it then ([`Activity::idle_again`]).
    pub fn without_keep_alive(started: Instant, head_pending: bool) -> Arc<Activity> {
        Self::made(started, head_pending, Some(Notify::new()))
    }

    fn made(started: Instant, head_pending: bool, idle_again: Option<Notify>) -> Arc<Activity> {
        Arc::new(Activity {
            started,
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            head_ms: AtomicU64::new(if head_pending { 0 } else { NONE }),
            begun: AtomicU64::new(0),
            body: AtomicBool::new(false),
            pipelined: AtomicBool::new(false),
            heard: AtomicBool::new(false),
            frames: AtomicU64::new(frames::START),
            frame_ids: AtomicU64::new(0),
            out_frames: AtomicU64::new(0),
            out_id: AtomicU32::new(0),
            open: Mutex::new(frames::Open::default()),
            at_once: AtomicBool::new(false),
            look: AtomicU8::new(IDLE),
            look_read_head: AtomicBool::new(false),
            #[cfg(test)]
            look_reads: AtomicU64::new(0),
            answers_last: AtomicBool::new(false),
            ends: AtomicU8::new(HEAD_END),
            after_head: AtomicU64::new(UNKNOWN),
            left: AtomicU64::new(0),
            held: AtomicBool::new(false),
            line_ends: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            flushed: AtomicBool::new(false),
            cancels: Cancels::default(),
            refusing: AtomicBool::new(false),
            idle_again,
        })
    }

    /// Done when no request is left in flight, on a connection without
    /// keep-alive; never on another.
    async fn idle_again(&self) {
        match &self.idle_again {
            Some(told) => told.notified().await,
            None => std::future::pending().await,
        }
    }

    /// A write to the client took bytes. One writer (the connection's
    /// stream), so a load and a store, not a locked add.
    pub(crate) fn wrote(&self) {
        let n = self.writes.load(Ordering::Relaxed);
        self.writes.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// The write count, to tell whether the client is still taking bytes.
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Bytes may wait unflushed: a write was made, or a poll of the
    /// connection begins (after which [`Activity::all_written`] tells of
    /// that poll's writes alone). HTTP/2 reads this from its connection's
    /// task, the one task that writes.
    pub fn not_flushed(&self) {
        self.flushed.store(false, Ordering::Relaxed);
    }

    /// A flush of the client's stream completed (`true`), or waits or failed.
    pub(crate) fn flushed(&self, done: bool) {
        self.flushed.store(done, Ordering::Relaxed);
    }

    /// The last write since [`Activity::not_flushed`] was a completed flush:
    /// all the connection had to send is on the socket.
    pub fn all_written(&self) -> bool {
        self.flushed.load(Ordering::Relaxed)
    }

    /// New streams are refused from now on (HTTP/2, closing gracefully).
    pub(crate) fn refuse_new_streams(&self) {
        self.refusing.store(true, Ordering::Relaxed);
    }

    /// Whether a new stream is to be refused, not served.
    pub fn refuses(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A request head was parsed: until its response body ends (and its
    /// body is read, `crate::proxy::body::begin`), the connection is busy.
    /// Dropping the guard ends the request. `body`: the request has a body
    /// (hyper's `is_end_stream()` is false).
    pub fn begin(self: &Arc<Self>, body: bool) -> InFlight {
        self.begin_with(body, None)
    }

    /// As [`Activity::begin`], `length`: the body's declared length, if any
    /// (`Content-Length`): half a head read past it is timed from the
    /// request's end, as behind a request without a body.
    pub fn begin_with(self: &Arc<Self>, body: bool, length: Option<u64>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        // Written by the connection's task alone (the service runs in its
        // poll, h1 and h2): a plain add, not a locked read-modify-write,
        // on every request.
        let begun = self.begun.load(Ordering::Relaxed);
        self.begun.store(begun + 1, Ordering::Relaxed);
        self.body.store(body, Ordering::Relaxed);
        self.pipelined.store(false, Ordering::Relaxed);
        self.heard.store(false, Ordering::Relaxed);
        self.head_ms.store(NONE, Ordering::SeqCst);
        // What followed this head, if known; the next one's end is unseen.
        let after = self.after_head.load(Ordering::Relaxed);
        if after != UNKNOWN {
            self.after_head.store(UNKNOWN, Ordering::Relaxed);
        }
        if body {
            // Where the body ends is known once it is read (`held`).
            let ends = self.ends.load(Ordering::Relaxed);
            self.held
                .store(length.is_none() && ends != HEAD_END, Ordering::Relaxed);
            match length {
                // More than the body came: what follows it is a next head,
                // and `ends` says where it ends, unless it is only line
                // ends (walked after the body's bytes, not a head's).
                Some(n) if after != UNKNOWN && after > n => {
                    if after - n <= self.line_ends.load(Ordering::Relaxed) {
                        self.ends.store(HEAD_END, Ordering::Relaxed);
                    }
                    self.left.store(0, Ordering::Relaxed);
                }
                // The body, or part of it: no next head yet.
                Some(n) => {
                    self.ends.store(HEAD_END, Ordering::Relaxed);
                    let left = if after == UNKNOWN { UNKNOWN } else { n - after };
                    self.left.store(left, Ordering::Relaxed);
                }
                None => self.left.store(UNKNOWN, Ordering::Relaxed),
            }
        } else {
            // An earlier body's `held` is not this request's: left set (a
            // body its reader never reported read, as the admin API's), no
            // half head behind this request would be timed.
            self.held.store(false, Ordering::Relaxed);
        }
        InFlight(self.clone())
    }

    /// Bytes arrived (HTTP/2): their frames walked for a header block
    /// begun, and for the client's RST_STREAM: its stream is over (a
    /// `NO_ERROR` one rewritten as `CANCEL`, [`frames::walk`]).
    pub(crate) fn received_frames(&self, bytes: &mut [u8]) {
        let (state, ids) = frames::walk(
            self.frames.load(Ordering::Relaxed),
            self.frame_ids.load(Ordering::Relaxed),
            bytes,
            |id| self.open_streams().apply(frames::Stream::Reset(id)),
        );
        self.frames.store(state, Ordering::Relaxed);
        self.frame_ids.store(ids, Ordering::Relaxed);
    }

    /// Bytes were written (HTTP/2): our frames walked for the streams
    /// they begin and end. The lock is taken at those frames alone (a
    /// few per response), not at every write.
    pub(crate) fn sent_frames(&self, bytes: &[u8]) {
        let (state, id) = frames::walk_out(
            self.out_frames.load(Ordering::Relaxed),
            self.out_id.load(Ordering::Relaxed),
            bytes,
            |step| self.open_streams().apply(step),
        );
        self.out_frames.store(state, Ordering::Relaxed);
        self.out_id.store(id, Ordering::Relaxed);
    }

    fn open_streams(&self) -> std::sync::MutexGuard<'_, frames::Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// HTTP/2: what the streams had to send may not all be on the socket:
    /// a response begun has not had its end written (END_STREAM, on its
    /// last DATA frame or its trailers: h2 holds it for the client's
    /// flow-control window, or behind other frames), or the last write
    /// was not a completed flush. A stream reset, by the client or by
    /// us, has nothing left to send, its response head included when h2
    /// writes that after the client's reset was read ([`frames::Stream::Reset`]).
    fn unsent(&self) -> bool {
        !self.open_streams().is_empty() || !self.all_written()
    }

    /// HTTP/2: the `GOAWAY` (`NO_ERROR`) for a close at once, if the
    /// driver made one: its last stream id is that of the last header
    /// block ended (0 before the first request). `None` when the close
    /// was not at once, or when a frame of ours may be part written (the
    /// last write was not a completed flush): the frame would land in
    /// its middle.
    pub(crate) fn goaway(&self) -> Option<[u8; 17]> {
        (self.at_once.load(Ordering::Relaxed) && self.all_written())
            .then(|| frames::goaway(frames::last_block(self.frame_ids.load(Ordering::Relaxed))))
    }

    /// The driver closes the connection at once (see [`Activity::goaway`]).
    pub(crate) fn closed_at_once(&self) {
        self.at_once.store(true, Ordering::Relaxed);
    }

    /// Whether the driver closed the connection at once, with nothing
    /// begun ([`Activity::closed_at_once`]): `ClientIo` closes it fully.
    pub(crate) fn is_closed_at_once(&self) -> bool {
        self.at_once.load(Ordering::Relaxed)
    }

    /// The stream is to look at its socket for bytes the client
    /// sent that are not read yet, at its next read that waits
    /// ([`Activity::looking`]); the driver polls the connection then.
    pub(crate) fn look_for_unread(&self) {
        self.look.store(LOOK, Ordering::Relaxed);
    }

    /// Whether a look for unread bytes is asked for.
    pub(crate) fn looking(&self) -> bool {
        self.look.load(Ordering::Relaxed) == LOOK
    }

    /// What the look found: bytes on the socket not read yet (`unread`).
    pub(crate) fn looked(&self, unread: bool) {
        self.look
            .store(if unread { UNREAD } else { NOTHING }, Ordering::Relaxed);
    }

    /// A look is asked for, or made and its answer not taken yet: the
    /// stream reads no more than the look found (`ClientIo`).
    pub(crate) fn in_look(&self) -> bool {
        self.look.load(Ordering::Relaxed) != IDLE
    }

    /// The look asked for found bytes not read yet; `false` when it found
    /// none or was not made (no read waited). The look is over.
    pub(crate) fn found_unread(&self) -> bool {
        self.look.swap(IDLE, Ordering::Relaxed) == UNREAD
    }

    /// HTTP/1: `bytes` were read; during a look (asked for, made, its
    /// answer not taken yet), note whether they hold a head's byte: not
    /// CR or LF alone, unless they go on from a head begun (walked to
    /// `ends`, not yet with them), whose line ends they are.
    pub(crate) fn read_in_look(&self, bytes: &[u8]) {
        if self.look.load(Ordering::Relaxed) != IDLE {
            #[cfg(test)]
            self.look_reads.fetch_add(1, Ordering::Relaxed);
            if self.head_byte_at(bytes).is_some() {
                self.look_read_head.store(true, Ordering::Relaxed);
            }
        }
    }

    /// HTTP/1: where in `bytes`, read next, a head's first byte is: the
    /// first byte not CR or LF, or the very first when a head has begun
    /// (a line end goes on from it). A run of CR and LF leaves the walk
    /// where it was before a head (`HEAD_END`), so what this says of a
    /// read holds for each part of it.
    pub(crate) fn head_byte_at(&self, bytes: &[u8]) -> Option<usize> {
        if self.ends.load(Ordering::Relaxed) != HEAD_END {
            return (!bytes.is_empty()).then_some(0);
        }
        bytes.iter().position(|b| !matches!(b, b'\r' | b'\n'))
    }

    /// HTTP/1: the look's poll read a byte of a head ([`Activity::read_in_look`]);
    /// cleared.
    pub(crate) fn look_read_head(&self) -> bool {
        self.look_read_head.swap(false, Ordering::Relaxed)
    }

    /// HTTP/1.1: the driver, about to look for bytes unread at a close
    /// from outside (no request yet), makes the request they may begin
    /// the last: set before the look's poll, in which hyper may read that
    /// request and write its answer.
    pub(crate) fn answer_last(&self) {
        self.answers_last.store(true, Ordering::Relaxed);
    }

    /// HTTP/1.1: a request that comes now is the connection's last: its
    /// response must say `Connection: close`, after which hyper closes
    /// the connection. Read by the service as it takes the request: the
    /// driver sets it, if at all, before the first.
    pub fn answers_last(&self) -> bool {
        self.answers_last.load(Ordering::Relaxed)
    }

    /// HTTP/1: the look under way has read a byte of a head; left set
    /// (the stream reads no more in the look: `ClientIo::read_in_look`).
    pub(crate) fn head_in_look(&self) -> bool {
        self.look_read_head.load(Ordering::Relaxed)
    }

    /// HTTP/2: no stream in flight and a header block begun, not ended: a
    /// request part way in, the only one (see `frames`). Not while the end
    /// of a response is still to be written ([`Activity::unsent`]): its
    /// stream has not ended, and SPEC §1 sends it.
    pub(crate) fn block_begun(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0 && self.in_header_block() && !self.unsent()
    }

    /// HTTP/2: a header block begun, not ended, whatever else is under
    /// way: the client's next frame must be its CONTINUATION.
    pub(crate) fn in_header_block(&self) -> bool {
        frames::block_begun(self.frames.load(Ordering::Relaxed))
    }

    /// HTTP/2: the client is part way into a frame (its header, whatever
    /// its type, or its payload) or into the preface: what it sends next
    /// is that frame's rest.
    pub(crate) fn mid_frame(&self) -> bool {
        !frames::at_boundary(self.frames.load(Ordering::Relaxed))
    }

    /// HTTP/2: a header block ended, a stream begun, whether the service
    /// took it ([`Activity::asked`]) or h2 answered it itself (a header
    /// list over `max_header_bytes`: 431; a malformed one: reset).
    pub(crate) fn block_ended(&self) -> bool {
        frames::last_block(self.frame_ids.load(Ordering::Relaxed)) != 0
    }

    /// Bytes arrived (HTTP/1): on an idle connection they start a head;
    /// behind a request they may be the start of the next one. Behind a
    /// request with a body, and in the reads after that body was left
    /// unread (hyper's drain of it, until one waits: [`DRAIN`]), they are
    /// its body, up to its declared length when it has one.
    pub(crate) fn received(&self, mut bytes: &[u8]) {
        let busy = self.in_flight.load(Ordering::SeqCst) > 0;
        if busy {
            self.pipelined.store(true, Ordering::Relaxed);
        }
        let head = self.head_ms.load(Ordering::SeqCst);
        let past_body = (busy && self.body.load(Ordering::Relaxed)) || head == DRAIN;
        if past_body {
            let left = self.left.load(Ordering::Relaxed);
            match usize::try_from(left) {
                Ok(n) if n < bytes.len() => {
                    // The body ends in this read: the rest is a next head's.
                    self.left.store(0, Ordering::Relaxed);
                    bytes = &bytes[n..];
                }
                _ => {
                    if left != UNKNOWN {
                        self.left
                            .store(left - bytes.len() as u64, Ordering::Relaxed);
                    } else {
                        // A read behind a body of unknown length: the
                        // head's read did not hold all of it, or nothing
                        // here tells (SPEC: it counts as the body).
                        self.held.store(false, Ordering::Relaxed);
                        self.ends.store(HEAD_END, Ordering::Relaxed);
                    }
                    return;
                }
            }
        }
        let from = self.ends.load(Ordering::Relaxed);
        let at = walk(from, bytes);
        self.ends.store(at, Ordering::Relaxed);
        let run = line_ends(self.line_ends.load(Ordering::Relaxed), bytes);
        self.line_ends.store(run, Ordering::Relaxed);
        // A head's end is looked for while hyper waits for a head (nothing
        // but a head's start in its buffer) and where a body ended in the
        // read (a head starts there), not behind a request without a body
        // (a tunnel's reads would be walked).
        let after = self.after_head.load(Ordering::Relaxed);
        let after = after_head(after, from, at, bytes, !busy || past_body);
        self.after_head.store(after, Ordering::Relaxed);
        if busy {
            return;
        }
        self.heard.store(true, Ordering::Relaxed);
        if head >= DRAIN {
            self.head_ms.store(self.now_ms(), Ordering::SeqCst);
        }
    }

    /// A read found nothing to read (HTTP/1): hyper's drain of an unread
    /// body, if one was due, is over ([`DRAIN`]); a read from now on may
    /// start a head. One load on a read that waits, nothing more unless a
    /// drain was due.
    pub(crate) fn read_waits(&self) {
        if self.head_ms.load(Ordering::SeqCst) == DRAIN {
            // Not over a head a request's end set meanwhile.
            let _ = self
                .head_ms
                .compare_exchange(DRAIN, NONE, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// The request's body was dropped before its end (an upstream that
    /// failed before taking it, a request refused or answered without
    /// it): the reads until one waits are its tail ([`DRAIN`]). Called
    /// while the request is in flight (by its body's hold). A body of
    /// declared length that hyper already holds whole (none of it `left`
    /// to read) leaves nothing to drain: the next read is a head's.
    fn unread(&self) {
        if self.held.load(Ordering::Relaxed) {
            // Whether the body ended in the head's read is not known.
            self.held.store(false, Ordering::Relaxed);
            self.ends.store(HEAD_END, Ordering::Relaxed);
        }
        if self.left.load(Ordering::Relaxed) != 0 {
            self.head_ms.store(DRAIN, Ordering::SeqCst);
        }
    }

    /// A request head has begun arriving and has not been parsed (HTTP/1):
    /// for how long, or `None` (no byte of one yet, or a request in flight).
    pub fn head_begun(&self) -> Option<Duration> {
        let head = self.head_ms.load(Ordering::SeqCst);
        (self.heard.load(Ordering::Relaxed) && head < DRAIN).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(head))
        })
    }

    /// Between requests, nothing of the client's left unread as far as
    /// HTTP knows: no request in flight, no head begun, the last request
    /// had no body and nothing arrived while it was in flight. (A
    /// connection that never had a request is not settled: its head may be
    /// on the way. A request pipelined in the very read that brought the
    /// last head is not seen: hyper's buffer is its own.)
    pub(crate) fn settled(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
            && self.head_ms.load(Ordering::SeqCst) == NONE
            && !self.body.load(Ordering::Relaxed)
            && !self.pipelined.load(Ordering::Relaxed)
    }

    /// When the connection expires if nothing changes, and why; `None`
    /// while a request is in flight.
    pub fn deadline(&self, header_read: Duration, idle: Duration) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let head = self.head_ms.load(Ordering::SeqCst);
        if head < DRAIN {
            return Some((
                self.started + Duration::from_millis(head) + header_read,
                Expiry::HeaderRead,
            ));
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::SeqCst));
        Some((self.started + last + idle, Expiry::Idle))
    }

    /// When the driver must look again, seen at `now`: the deadline itself
    /// when it is known, else the earliest one a change from now on could
    /// set. A request starting only removes a deadline; one ending sets
    /// `now + idle` or later; a head starting sets `now + header_read` or
    /// later; so sleeping until the earliest of those misses nothing. An
    /// `idle` of zero is not slept for (that would be now, again and again,
    /// for as long as a request runs): the request's end wakes the driver
    /// ([`Activity::without_keep_alive`]). `closing`: only a stalled head
    /// still counts.
    pub fn check_at(
        &self,
        now: Instant,
        header_read: Duration,
        idle: Duration,
        closing: bool,
    ) -> Instant {
        match self.deadline(header_read, idle) {
            Some((at, Expiry::HeaderRead)) => at,
            Some((at, Expiry::Idle)) if !closing => at.min(now + header_read),
            Some((_, Expiry::Idle)) => now + header_read,
            None if closing || idle.is_zero() => now + header_read,
            None => now + header_read.min(idle),
        }
    }

    /// Since when no request has been in flight (the last one ended, or
    /// the connection began): the client's turn to send since then. `None`
    /// while a request is in flight. The admin listener evicts by it
    /// (src/admin/slots.rs).
    pub fn quiet_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.started + Duration::from_millis(self.last_ms.load(Ordering::SeqCst)))
    }

    /// Whether any request began on this connection.
    pub fn asked(&self) -> bool {
        self.begun() > 0
    }

    /// How many requests began on this connection (HTTP/2: streams the
    /// service took), for whether one began meanwhile.
    pub(crate) fn begun(&self) -> u64 {
        self.begun.load(Ordering::Relaxed)
    }
}

/// One request in flight; dropped when its response body is done.
pub struct InFlight(Arc<Activity>);

impl InFlight {
    pub fn cancels(&self) -> &Cancels {
        &self.0.cancels
    }

    /// One more hold on the same request: it runs until every hold is dropped.
    pub fn also(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.0.clone())
    }

    /// The request's body was dropped before its end: hyper drains its
    /// tail after the response (`crate::proxy::body::BodyInFlight`).
    pub(crate) fn body_unread(&self) {
        self.0.unread();
    }

    /// The request's body was read to its end (`crate::proxy::body::BodyInFlight::through`):
    /// one of unknown length that came whole in its head's read (`held`)
    /// leaves what `ends` says.
    pub(crate) fn body_read(&self) {
        self.0.held.store(false, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.now_ms();
        a.last_ms.store(now, Ordering::SeqCst);
        // Part of the next head came behind this request and waits in
        // hyper's buffer: that head began, at the latest now, and is held
        // to header_read_timeout (nginx reads a pipelined request under
        // client_header_timeout), not left idle for idle_timeout.
        if a.ends.load(Ordering::Relaxed) != HEAD_END && !a.held.load(Ordering::Relaxed) {
            a.heard.store(true, Ordering::Relaxed);
            a.head_ms.store(now, Ordering::SeqCst);
        }
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(told) = &a.idle_again
        {
            told.notify_one();
        }
    }
}

/// A response body that keeps its request counted as in flight until
/// hyper has finished sending it (or dropped it).
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, in_flight: InFlight) -> TrackedBody<B> {
        TrackedBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
