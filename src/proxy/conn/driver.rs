//! The driver: runs one hyper connection to its end, closing it at its idle and header-read deadlines, at shutdown and when its lifetime is over.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use tokio::sync::watch;
use tracing::debug;

use super::{Activity, Expiry};
use crate::proxy::cancels;
use crate::proxy::lifetime::{Over, Woken};
use crate::proxy::stall::Stalls;
use crate::proxy::written::{CloseOnDrop, Polled};

/// Runs one hyper connection to its end, applying the idle and
/// header-read timeouts, graceful shutdown, and one more reason to close
/// gracefully (`max_connection_lifetime` on listeners).
pub struct Driver<'a> {
    /// The listener's name, for logs (`admin` for the admin listener).
    pub name: &'a str,
    pub peer: SocketAddr,
    pub activity: &'a Activity,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Process shutdown (the admin listener), or the listener's `closing`.
    pub shutdown: watch::Receiver<bool>,
    /// How long requests in flight may still run once `shutdown` or
    /// `also_close` has closed the connection gracefully; then it is cut.
    pub also_close_grace: Duration,
    /// The process's shutdown signal (`None` on the admin listener, whose
    /// `shutdown` is it). It closes a connection on which no request
    /// has begun at once: hyper's graceful close would wait for its first
    /// request (a connection is not idle before one), up to
    /// `header_read_timeout`, and the drain with it. One that has had a
    /// request it closes gracefully, as `shutdown` does.
    pub process: Option<watch::Receiver<bool>>,
    /// Accepted once its listener was removed (from the queue of the
    /// socket it gave up), with keep-alive off: `shutdown` does not close
    /// it before its first request, which hyper would drop unread, but
    /// after it, as its last (HTTP/1.1), or gracefully as soon as it has
    /// begun (HTTP/2: the streams opened by then are served to their
    /// end); the cut after `also_close_grace` and
    /// `header_read_timeout` bound it as any other. `process` closes it
    /// (the process is ending).
    pub answer_first: bool,
    /// Whether its listener's socket was handed over (a rename, a port
    /// swap: another listener serves its address on), read as `shutdown`
    /// comes: one with no request yet is then a client of an address that
    /// never stopped serving (its request may come a round trip after its
    /// handshake), its first request answered as its last, as with
    /// `answer_first`, not closed at once. `None` off the TLS and
    /// redirect listeners.
    pub handed_over: Option<&'a (dyn Fn() -> bool + Sync)>,
    /// The admin listener's (HTTP/1.1, no `process`): `shutdown` (the
    /// process's) finding no request begun does not close the connection
    /// at once but makes its first request its last (`Connection:
    /// close`, after which hyper closes it), as `answer_first` does,
    /// without hyper's graceful close (which, with nothing read yet,
    /// closes at once): a probe whose connection was accepted before
    /// SIGTERM and whose request comes after it is answered, as one
    /// accepted during the drain is (`shutdown` set already at its
    /// first poll), where a close at once failed kubelet's liveness
    /// probe. Bounded as any: its first request is due within
    /// `header_read_timeout` of the accept, and the cut after
    /// `also_close_grace` holds. No look: whatever the bytes at the
    /// signal began, one request is answered. One that has had a
    /// request closes gracefully, as on any listener.
    pub answer_unbegun: bool,
    /// HTTP/2: the response bodies to hold to `send_timeout` (src/proxy/stall.rs).
    pub stalls: Option<(&'a Stalls, Duration)>,
    /// A closing connection with nothing in flight that has taken no
    /// bytes for this long is closed (as a write it leaves waiting fails),
    /// and one still closing twice this long after the close began.
    pub send_timeout: Duration,
}

/// How a connection ended.
pub struct Outcome<E> {
    pub by: Ended,
    /// What hyper's connection ended with: on HTTP/1 a head it failed to
    /// parse (and answered itself, src/proxy/refused_head.rs), a broken
    /// stream, a protocol error.
    pub error: Option<E>,
    /// The deadline the driver closed it for, if any.
    pub expired: Option<Expiry>,
}

/// Who ended a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client closed it (or broke it) while we were not closing it.
    ByClient,
    /// We closed it: a timeout, shutdown, or `also_close`.
    ByUs,
}

impl Driver<'_> {
    /// Run `conn` to its end. `also_close` yields why its lifetime is
    /// over, each reason as it comes: closed as at shutdown at the first,
    /// and on HTTP/2, at [`Over::Revoked`] (its client no longer admitted;
    /// also once closing for another), every stream opened after it
    /// refused at once.
    pub async fn run<F, E>(
        mut self,
        conn: F,
        graceful: impl Fn(Pin<&mut F>),
        also_close: impl Stream<Item = Over>,
    ) -> Outcome<E>
    where
        F: Future<Output = Result<(), E>>,
        E: std::error::Error,
    {
        let (name, peer) = (self.name, self.peer);
        tokio::pin!(conn);
        // HTTP/2: a body's failure waits on the connection's writes.
        let written = self.stalls.map(|(s, _)| &s.written);
        let _close = CloseOnDrop(written);
        if let Some(w) = written {
            std::future::poll_fn(|cx| {
                w.driver_is(cx.waker());
                Poll::Ready(())
            })
            .await;
        }
        // Polled only when their own wake-up came (`lifetime::Woken`):
        // they almost never fire, and the task wakes at every request.
        let also_close = Woken::new(also_close);
        tokio::pin!(also_close);
        // What `wait_for` returns borrows the channel (a lock): dropped
        // here, not held over the branch's look at the connection.
        let closing_rx = &mut self.shutdown;
        let shutdown = Woken::new(async move { drop(closing_rx.wait_for(|s| *s).await) });
        tokio::pin!(shutdown);
        let (mut answer_first, activity) = (self.answer_first, self.activity);
        let handed_over = self.handed_over;
        let mut process = self.process.take();
        // Set once `quit`, `shutdown`, `also_close` are done: a finished
        // future is not polled again.
        let (mut quit_done, mut shutdown_done, mut also_done) = (false, false, false);
        let h2 = self.stalls.is_some();
        let quit = Woken::new(async {
            match &mut process {
                Some(process) => drop(process.wait_for(|s| *s).await),
                None => std::future::pending().await,
            }
        });
        tokio::pin!(quit);
        let cut = Woken::new(cancels::cut(&self.activity.cancels, name, peer));
        tokio::pin!(cut);
        let mut closing = false;
        let (header_read, idle) = (self.header_read_timeout, self.idle_timeout);
        let start = Instant::now();
        let mut check = self.activity.check_at(start, header_read, idle, closing);
        let mut next_look = self.stalls.map(|(_, send)| start + Stalls::interval(send));
        if let Some(at) = next_look {
            check = check.min(at);
        }
        // Closing gracefully since: an HTTP/2 stream cut for send_timeout
        // never ends, so a close with nothing in flight is forced after
        // header_read_timeout, unless the client is still taking the last
        // response: hyper (h2) holds what it has not written yet after the
        // body ended, and dropping the connection would drop that tail. It
        // is forced once the client has taken nothing for send_timeout, as
        // seen by the looks (at most header_read_timeout apart while
        // closing): `quiet` is since when, and the write count then.
        // Every write counts, PING answers too, so a client that keeps
        // pinging (or answers hyper's keep-alive PINGs) would hold the close
        // open for good: it is also forced `drain` after it began, whatever
        // crosses (Envoy's drain_timeout). Twice send_timeout: h2 holds at
        // most 32 KiB of a stream (STREAM_SEND_BUFFER), and a client taking
        // 16 KiB per send_timeout, the slowest the stall cut lets through
        // (src/proxy/stall.rs), has drained that by then.
        let mut closing_at = None;
        let mut quiet = (start, self.activity.writes());
        let drain = header_read.max(self.send_timeout.saturating_mul(2));
        // HTTP/2, closing gracefully: when all the connection had to write
        // was first seen on the socket since the close began, the PING
        // sent with the `GOAWAY` with it (a slow reader with DATA queued
        // ahead of it has not had it yet): seen by the first poll of the
        // connection after the close began that ends with its writes
        // flushed (`Turn::PingOut`), not at a later look, which would add
        // up to header_read_timeout. header_read_timeout later the client
        // has had time to answer it: h2 would go on taking its new
        // streams until it does, so they are refused (REFUSED_STREAM,
        // retryable elsewhere) and the streams in flight served.
        let mut ping_out: Option<Instant> = None;
        // `also_close` cuts what is still in flight after its grace.
        let mut cut_at: Option<Instant> = None;
        let mut expired = None;
        // Woken too: a pending `Sleep` polled refreshes its waker (about
        // 120 instructions), and the task wakes two or three times a
        // request; the timer's own wake-up marks it due. Every `reset`
        // marks it due as well. Polled whatever the connection's poll
        // spent of tokio's budget (`Deadline`).
        let sleep = Woken::new(Deadline::new(tokio::time::sleep_until(check.into())));
        tokio::pin!(sleep);
        // What is in flight is cut at `at` (the timer brought forward to
        // it), and hyper's graceful close begun if it has not been and
        // `graceful` allows: the three ways a close from outside starts.
        macro_rules! cut_by {
            ($now:expr, $at:expr, $graceful:expr) => {{
                // The earliest cut of the closes begun.
                let at: Instant = cut_at.map_or($at, |c| c.min($at));
                cut_at = Some(at);
                let due = sleep.inner().deadline().into_std().min(at);
                sleep.as_mut().inner_mut().reset(due.into());
                if !closing && $graceful {
                    closing = true;
                    closing_at = Some($now);
                    graceful(conn.as_mut());
                }
            }};
        }
        // The connection's end: how it came, and why.
        macro_rules! ended {
            ($res:expr) => {{
                let error = $res.err();
                if let Some(e) = &error {
                    debug!(listener = %name, peer = %peer, error = %causes(e), "connection ended with error");
                }
                // Also a request the look's poll answered as the last
                // (`Activity::answers_last`), hyper closing after it in
                // that very poll.
                let by = if closing || (activity.answers_last() && activity.asked()) {
                    Ended::ByUs
                } else {
                    Ended::ByClient
                };
                return Outcome { by, error, expired };
            }};
        }
        // The look itself: one poll of the connection reading what the
        // socket held at the signal, no more (see `at_once`).
        macro_rules! look {
            () => {{
                self.activity.look_for_unread();
                let mut polled = Polled {
                    conn: conn.as_mut(),
                    written,
                    activity: self.activity,
                };
                if let Poll::Ready(res) =
                    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut polled).poll(cx))).await
                {
                    ended!(res)
                }
                self.activity.found_unread();
            }};
        }
        // `unbegun`, for a close from outside. Nothing begun as far as
        // hyper has read: the client may have sent its request (an
        // HTTP/1.1 head, HTTP/2 frames) before the signal, on the socket
        // still, unread (the runtime has not polled for I/O since it
        // came, or h2 was writing). The stream looks (`FIONREAD`) in one
        // poll of the connection made now (`Activity::look_for_unread`)
        // and reads what it found there in that poll (no more: only what
        // came before the signal; not the socket itself, which another
        // worker's reactor may have found readable since, until the
        // driver has decided), and hyper with it, so the driver
        // decides on what those bytes began: nothing (HTTP/2 frames that
        // start no stream, HTTP/1.1 empty lines, a record still arriving)
        // closes at once as before. HTTP/2: a stream begun is served, the
        // close graceful, and every stream opened after it refused
        // (`REFUSED_STREAM`), as SPEC §1 drops a request completed after
        // the signal. HTTP/1.1: a head begun (a byte not CR or LF, or
        // any going on from a head begun before) makes
        // the close graceful, for that one request alone, and the
        // graceful close's bounds hold (the first request's
        // header_read_timeout, the checks above, the cut). That request
        // is the connection's last (`Activity::answer_last`, asked before
        // the poll: hyper may read it whole and answer it in that poll,
        // before its graceful close can be asked for): its response says
        // `Connection: close`, and nothing behind it is read. A later
        // close from outside does not look again (`head_kept`).
        // Whether an earlier look found a first HTTP/1.1 head begun, its
        // request kept, still to be read. Not `Activity::answers_last`:
        // a hand-over makes the first request the last with no look (see
        // `handed`), and a later signal must still look, or a request
        // on the socket unread at it is dropped by hyper's graceful close.
        let mut head_kept = false;
        macro_rules! at_once {
            () => {{
                match unbegun(self.activity, h2) {
                    // Found so at an earlier signal: still to be read.
                    Some(_) if !h2 && head_kept => None,
                    Some(why) => {
                        // Whether the look's poll began a request: the
                        // first, or (HTTP/2) a stream the service took;
                        // not a header block h2 refused itself (malformed,
                        // over the stream limit), which also ends a block.
                        let before = self.activity.begun();
                        if !h2 {
                            self.activity.answer_last();
                        }
                        look!();
                        let head = self.activity.look_read_head();
                        let began = self.activity.begun() != before;
                        match unbegun(self.activity, h2) {
                            // HTTP/2: what the look's poll read began
                            // streams (served), and any opened from now on,
                            // after the signal, is refused. Whatever the
                            // look found: that poll may have read
                            // plaintext rustls held already, the count
                            // then 0.
                            None if h2 && began => {
                                debug!(listener = %name, peer = %peer, "bytes unread at the close began a request; closing gracefully, refusing new streams");
                                self.activity.refuse_new_streams();
                                None
                            }
                            // HTTP/2, no stream opened: what the look read
                            // was answered (a PING, or a GOAWAY for a frame
                            // other than the CONTINUATION due), and the
                            // answer is not all out (a client not reading),
                            // which alone keeps `unbegun` from saying so:
                            // at once, as before the look.
                            None if h2 => Some(why),
                            // HTTP/1.1: the look's poll read a head's
                            // byte (not the empty lines hyper skips).
                            Some(_) if !h2 && head => {
                                debug!(listener = %name, peer = %peer, "bytes unread at the close began a request; closing gracefully");
                                head_kept = true;
                                None
                            }
                            // Nothing found, or HTTP/2 frames that began
                            // no request (WINDOW_UPDATE, PING, SETTINGS,
                            // half a header block): at once.
                            when => when,
                        }
                    }
                    when => when,
                }
            }};
        }
        loop {
            tokio::select! {
                // The close signals first: polled only when their own
                // wake-up came (`Woken`), one load each otherwise. One set
                // already is looked at before the connection is polled
                // again: that poll, the look not asked for, reads the
                // socket as far as hyper's buffer goes, whatever came
                // after the signal too (the runtime found the socket
                // readable: on a multi-threaded one, another worker's
                // reactor, at any time), and hyper begins the requests it
                // holds, each then served as one begun before the signal
                // (SPEC §1: bytes sent after it decide nothing). A request
                // already read (with the handshake's last flight, say)
                // is read by the look, which takes what rustls holds, and
                // begun there.
                biased;
                // Shutting down, or the listener is gone: what is still in
                // flight after the grace is cut (at shutdown the process has
                // ended by then). Also on a connection already closing for
                // idleness or `also_close`: its graceful close waits on the
                // client (h2 takes new streams until the client
                // acknowledges the GOAWAY's PING), so only the cut bounds it.
                () = shutdown.as_mut(), if !shutdown_done => {
                    shutdown_done = true;
                    // Nothing begun, and not one from a removed listener's
                    // queue: closed at once, as at shutdown (`quit`), not
                    // left to hyper's graceful close, which may wait for a
                    // first request and serve it under the removed
                    // listener's routes and rules. The log line is
                    // `quit`'s: on the admin listener, with no `quit`,
                    // this is the process's signal.
                    // The admin listener's, nothing begun: answered
                    // once, its last (`answer_unbegun`).
                    let first = self.answer_unbegun && !h2 && unbegun(activity, h2).is_some();
                    // Handed over with no request yet: answered first, from
                    // here as one from the queue is (HTTP/1.1 its last:
                    // keep-alive is on; HTTP/2 closing once a stream began).
                    // Nothing looked at: the process's signal still looks
                    // (not `head_kept`), closing it at once if nothing came.
                    let handed = !answer_first && !activity.asked() && handed_over.is_some_and(|h| h());
                    if first {
                        debug!(listener = %name, peer = %peer, "shutting down: its first request is answered, its last");
                        activity.answer_last();
                    } else if handed {
                        debug!(listener = %name, peer = %peer, "listener handed over: its first request is answered, its last");
                        answer_first = true;
                        if !h2 {
                            activity.answer_last();
                        }
                    } else if !answer_first && let Some(when) = at_once!() {
                        debug!(listener = %name, peer = %peer, "closing connection: shutting down {when}");
                        self.activity.closed_at_once();
                        return Outcome { by: Ended::ByUs, error: None, expired };
                    }
                    let now = Instant::now();
                    cut_by!(now, now + self.also_close_grace, !answer_first && !first);
                }
                // The process's shutdown: at once with nothing begun,
                // gracefully after. Also on a connection its listener's
                // `closing` (set at shutdown too, maybe seen first) already
                // closes gracefully: that close would wait for a first
                // request.
                () = quit.as_mut(), if !quit_done => {
                    quit_done = true;
                    if let Some(when) = at_once!() {
                        debug!(listener = %name, peer = %peer, "closing connection: shutting down {when}");
                        self.activity.closed_at_once();
                        return Outcome { by: Ended::ByUs, error: None, expired };
                    }
                    let now = Instant::now();
                    cut_by!(now, now + self.also_close_grace, true);
                }
                // Its lifetime is over (rotated-out material, admission
                // rules changed): at once with nothing begun, as at
                // shutdown. hyper's graceful close would serve a first
                // HTTP/1.1 head already part read (it closes only with
                // its read buffer empty), and on HTTP/2 accept streams
                // until its PING is answered: a revoked client's request.
                // Again at a revocation while closing for its lifetime.
                over = also_close.next(), if !also_done => {
                    // Done after its last: a finished stream is not polled again.
                    let Some(over) = over else {
                        also_done = true;
                        continue;
                    };
                    if let Some(when) = at_once!() {
                        debug!(listener = %name, peer = %peer, "closing connection at once: {when}");
                        self.activity.closed_at_once();
                        return Outcome { by: Ended::ByUs, error: None, expired };
                    }
                    // HTTP/2 with a request had, its client no longer
                    // admitted (not a change that closes every connection,
                    // `Over::ClosesAll`, which ends a client still
                    // admitted too: the PING wait, as at a removal):
                    // revoked at once (SPEC §2), not once the
                    // GOAWAY's PING has gone unanswered for
                    // header_read_timeout (a client never answering it
                    // had its new streams served until then). The streams
                    // in flight, and those the bytes unread at the signal
                    // began (the look, as at a close with nothing begun),
                    // are served; every stream opened after is refused.
                    if h2 && over == Over::Revoked && !self.activity.refuses() {
                        look!();
                        debug!(listener = %name, peer = %peer, "no longer admitted; refusing new streams");
                        self.activity.refuse_new_streams();
                    }
                    let now = Instant::now();
                    cut_by!(now, now + self.also_close_grace, true);
                }
                // The connection, then the rest, wake-ups too.
                turn = turn(
                    Polled { conn: conn.as_mut(), written, activity: self.activity },
                    h2 && closing_at.is_some() && ping_out.is_none(),
                ) => match turn {
                    Turn::Ended(res) => ended!(res),
                    // The PING is out: new streams are refused
                    // header_read_timeout from now (a look then).
                    Turn::PingOut => {
                        let now = Instant::now();
                        ping_out = Some(now);
                        let due = sleep.inner().deadline().into_std().min(now + header_read);
                        sleep.as_mut().inner_mut().reset(due.into());
                        continue;
                    }
                },
                () = cut.as_mut() => return Outcome { by: Ended::ByUs, error: None, expired },
                // Keep-alive off: the last request ended, the idle deadline is now.
                () = self.activity.idle_again() => sleep.as_mut().inner_mut().reset(Instant::now().into()),
                () = sleep.as_mut() => {
                    let now = Instant::now();
                    if let (Some((stalls, send)), Some(at)) = (self.stalls, next_look)
                        && now >= at
                    {
                        let (cut, let_go) = stalls.look();
                        if cut > 0 {
                            debug!(listener = %name, peer = %peer, reason = "send_timeout", streams = cut, "response stalled, stream cut");
                        }
                        if let_go > 0 {
                            debug!(listener = %name, peer = %peer, reason = "upstream_body", streams = let_go, "broken stream reset without waiting longer for its writes");
                        }
                        next_look = Some(now + Stalls::interval(send));
                    }
                    if cut_at.is_some_and(|at| now >= at) {
                        debug!(listener = %name, peer = %peer, "graceful close timed out with a request in flight; closing connection");
                        return Outcome { by: Ended::ByUs, error: None, expired };
                    }
                    if ping_out.is_some_and(|at| now >= at + header_read) && !self.activity.refuses() {
                        debug!(listener = %name, peer = %peer, "closing connection: PING unanswered; refusing new streams");
                        self.activity.refuse_new_streams();
                    }
                    let writes = self.activity.writes();
                    if writes != quiet.1 {
                        quiet = (now, writes);
                    }
                    if closing_at.is_some_and(|at: Instant| {
                        now >= at + header_read
                            && (now >= quiet.0 + self.send_timeout || now >= at + drain)
                    }) && self.activity.deadline(header_read, idle).is_some()
                    {
                        debug!(listener = %name, peer = %peer, "graceful close timed out; closing connection");
                        return Outcome { by: Ended::ByUs, error: None, expired };
                    }
                    let due = self
                        .activity
                        .deadline(header_read, idle)
                        .filter(|(at, why)| *at <= now && (!closing || *why == Expiry::HeaderRead));
                    if let Some((_, why)) = due {
                        debug!(listener = %name, peer = %peer, reason = why.reason(), "closing connection");
                        expired = Some(why);
                        match why {
                            // Half a head after header_read_timeout: nothing to finish.
                            Expiry::HeaderRead => return Outcome { by: Ended::ByUs, error: None, expired },
                            Expiry::Idle => {
                                closing = true;
                                closing_at = Some(now);
                                graceful(conn.as_mut());
                            }
                        }
                    }
                    let mut next = self.activity.check_at(now, header_read, idle, closing);
                    // Only while still ahead: once past, with a request
                    // still in flight, the regular checks look again.
                    if let Some(at) = closing_at
                        .map(|at| (at + header_read).max(quiet.0 + self.send_timeout).min(at + drain))
                        && at > now
                    {
                        next = next.min(at);
                    }
                    if let Some(at) = cut_at {
                        next = next.min(at);
                    }
                    // Until refusing: a look when the refusal is due.
                    if let Some(at) = ping_out
                        && !self.activity.refuses()
                    {
                        next = next.min(at + header_read);
                    }
                    if let Some(at) = next_look {
                        next = next.min(at);
                    }
                    sleep.as_mut().inner_mut().reset(next.into());
                }
                // One from a removed listener's queue, on HTTP/2: its
                // graceful close begins as soon as its first stream has,
                // not once no stream is left open (keep-alive off), which
                // a client always keeping one open never gets to: the
                // streams in flight are served to their end, and new ones
                // refused as on any closing connection. Looked at on every
                // wake-up of the task, and the conn, polled first in the
                // same pass, begins that stream.
                () = std::future::poll_fn(|_| {
                    if activity.asked() { Poll::Ready(()) } else { Poll::Pending }
                }), if answer_first && h2 && shutdown_done && !closing => {
                    let now = Instant::now();
                    cut_by!(now, now + self.also_close_grace, true);
                }
            }
        }
    }
}

/// What a poll of the connection came to: its end, or (HTTP/2, closing
/// gracefully, the PING awaited) all it had to write on the socket, the
/// `GOAWAY`'s PING with it.
enum Turn<T> {
    Ended(T),
    PingOut,
}

/// Poll `conn` to its end; with `ping_awaited`, done also when a poll that
/// leaves it pending ends with its writes flushed ([`Activity::all_written`]).
fn turn<F: Future>(
    mut conn: Polled<'_, F>,
    ping_awaited: bool,
) -> impl Future<Output = Turn<F::Output>> {
    std::future::poll_fn(move |cx| match Pin::new(&mut conn).poll(cx) {
        Poll::Ready(out) => Poll::Ready(Turn::Ended(out)),
        Poll::Pending if ping_awaited && conn.activity.all_written() => Poll::Ready(Turn::PingOut),
        Poll::Pending => Poll::Pending,
    })
}

pin_project_lite::pin_project! {
    /// The driver's timer, polled outside tokio's cooperative budget. The
    /// connection is polled before it: a client whose bytes never stop
    /// coming (HTTP/2 frames hyper takes without an answer, thousands to a
    /// TLS record) has that poll read its socket until the budget is
    /// spent (128 reads of 4 KiB, rustls's), and a `Sleep` polled after
    /// it is refused (`Pending`, the task woken again) however long its
    /// deadline has passed: header_read_timeout, idle_timeout, the
    /// `send_timeout` looks, the forced end of a graceful close and the
    /// cut after the grace never came while the flood lasted (15 s, 80 MB
    /// in the test). tokio's own `timeout` polls its delay so when its
    /// future spent the budget. Costs nothing a request: `Woken` polls it
    /// only when it is due (its own wake-up, a reset), and then a budget
    /// swapped and put back around the poll. The connection is still
    /// polled first, and still yields: only the timer's poll is free.
    struct Deadline {
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl Deadline {
    fn new(sleep: tokio::time::Sleep) -> Deadline {
        Deadline { sleep }
    }

    fn deadline(&self) -> tokio::time::Instant {
        self.sleep.deadline()
    }

    fn reset(self: Pin<&mut Self>, at: tokio::time::Instant) {
        self.project().sleep.reset(at);
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut sleep = self.project().sleep;
        let mut unbudgeted =
            tokio::task::coop::unconstrained(std::future::poll_fn(|cx| sleep.as_mut().poll(cx)));
        Pin::new(&mut unbudgeted).poll(cx)
    }
}

/// Why a connection closing is closed at once rather than gracefully,
/// or `None`: it has nothing begun to finish. No request yet: hyper's
/// graceful close would still wait for one (a connection is not idle
/// before its first), up to header_read_timeout, and serve it. HTTP/2
/// (`h2`) part way into a header block with no stream in flight: its
/// request has not come, and it may send no other frame until it has,
/// so it would never answer the GOAWAY's PING that hyper's graceful
/// close waits for. Such a close of an HTTP/2 connection sends a `GOAWAY`
/// of its own ([`Activity::goaway`], written by `ClientIo` as it closes).
fn unbegun(activity: &Activity, h2: bool) -> Option<&'static str> {
    if !activity.asked() {
        Some("before its first request")
    } else if h2 && activity.block_begun() {
        Some("before its next request")
    } else {
        None
    }
}

/// An error with its causes ("error writing a body to connection:
/// send_timeout: the client stopped reading"): hyper's own message alone
/// does not say why.
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod look_tests;
#[cfg(test)]
mod readable_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unsent_tests;
