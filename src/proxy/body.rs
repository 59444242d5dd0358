//! The client's request body on its way upstream: whether the client broke it, stalled it or sent too much (`max_body_bytes`), and whether it is through.
//!
//! When a forwarded request fails, hyper's error alone does not say which
//! side caused it: a malformed chunked body from the client and a reset from
//! the upstream both surface from the upstream client's `request()`. The
//! body the upstream client reads is this wrapper, so the forwarder knows
//! for certain that the client's body failed (a client error, 400) rather
//! than the upstream (502). It also says when the upstream client has read
//! it to its end ([`BodySent`]): an upstream may answer before it has the
//! whole body, and until the body is through its connection is still busy.
//! So is the client's connection ([`BodyInFlight`]): bytes it sends then are
//! the body, not a next request. An HTTP/2 upstream connection sends it from
//! a task of hyper's, kept with it to be cut ([`crate::upstream::pipe`]).
//! A body for another `certs` entry's host is cut with its request
//! ([`crate::proxy::host_cut`], [`Fault::Cut`]), after its response too.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use std::error::Error as _;

use bytes::Bytes;
use http::{HeaderMap, Request};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::proxy::conn::{Activity, InFlight};
use crate::proxy::forward::BoxError;
use crate::proxy::host_cut::HostWatch;
use crate::upstream::pipe;

/// Begin `req` on its connection's `activity`; the guard ends it with its
/// response. A request with a body carries one more hold on it (an
/// extension, [`BodyInFlight`]) to the body sent upstream: an upstream may
/// answer before it has the whole body and go on reading it (HTTP/2, or a
/// connection of its own), and what the client sends after the response
/// ended is still this request's body, not a next head under
/// `header_read_timeout` (SPEC: bytes that arrive while a request with a
/// body runs count as its body).
pub fn begin(activity: &Arc<Activity>, req: &mut Request<Incoming>) -> InFlight {
    let body = !req.body().is_end_stream();
    let in_flight = activity.begin_with(body, req.body().size_hint().exact());
    if body {
        req.extensions_mut().insert(BodyInFlight {
            hold: in_flight.also(),
            tells: true,
            watch: None,
        });
    }
    in_flight
}

/// A request's body still to be read: its connection is busy until this
/// is dropped, or the body read to its end or failed. Dropped before
/// that (not [`BodyInFlight::through`]), the body is left unread: hyper
/// drains its tail, and those reads are the body's, not a next head's
/// (`crate::proxy::conn`'s `DRAIN`).
pub struct BodyInFlight {
    hold: InFlight,
    /// This copy says so when dropped unread (the original; a clone only holds).
    tells: bool,
    /// A request for another `certs` entry's host: the body is cut with it
    /// ([`crate::proxy::host_cut`]). The original's only.
    watch: Option<HostWatch>,
}

impl BodyInFlight {
    /// The body was read to its end: nothing is left to drain, and what
    /// came behind it in its head's read is a next head's.
    pub fn through(mut self) {
        self.tells = false;
        self.hold.body_read();
    }

    /// The body failed (hyper reads no more of it): nothing is left to
    /// drain, and where it ended is not known.
    pub fn failed(mut self) {
        self.tells = false;
    }

    /// The body is cut when `watch` fires, until read to its end.
    pub fn watched(&mut self, watch: HostWatch) {
        self.watch = Some(watch);
    }

    /// [`BodyInFlight::through`], for a hold that may be missing.
    pub fn done(reading: Option<BodyInFlight>) {
        if let Some(r) = reading {
            r.through();
        }
    }
}

/// Each copy holds the request (an extension must be `Clone`; one shared
/// would take an allocation per request).
impl Clone for BodyInFlight {
    fn clone(&self) -> BodyInFlight {
        BodyInFlight {
            hold: self.hold.also(),
            tells: false,
            watch: None,
        }
    }
}

impl Drop for BodyInFlight {
    fn drop(&mut self) {
        if self.tells {
            self.hold.body_unread();
        }
    }
}

/// A client request body that records why reading it failed.
pub struct ClientBody {
    /// The client's connection kept busy while this body is read. First:
    /// fields drop in order, and dropped unread it must say so before
    /// `source` lets hyper (maybe on another thread) drain the rest.
    reading: Option<BodyInFlight>,
    source: Source,
    /// `None` for a request without a body.
    state: Option<Arc<State>>,
    /// The access log's count of body bytes read (when it is on).
    counted: Option<crate::proxy::edge::BytesIn>,
    /// `body_read_timeout` and `max_body_bytes`, for a body with content
    /// (boxed: a body is moved several times, and most requests have none).
    limits: Option<Box<BodyLimits>>,
    /// The names the request's `Connection` nominated: its trailers lose
    /// them (none, most requests: no allocation).
    nominated: Vec<http::HeaderName>,
}

/// Where the body's bytes come from.
enum Source {
    /// None at all (a request replayed from its head alone).
    Empty,
    /// Read whole before an upstream was chosen ([`crate::proxy::buffer`])
    /// (boxed, as `limits` is).
    Whole(Box<Whole>),
    /// Straight from the client, as it arrives.
    Streamed(Incoming),
}

/// A request body kept to send again ([`ClientBody::kept`]): none, or
/// one read whole and its `body_read_timeout`.
pub struct KeptBody(Option<(Whole, Duration)>);

impl KeptBody {
    /// The body again, as [`ClientBody::replica`] gives it.
    pub fn body(self) -> ClientBody {
        match self.0 {
            None => ClientBody::empty(),
            Some((Whole { data, trailers }, limit)) => {
                ClientBody::whole(data.unwrap_or_default(), trailers, limit).0
            }
        }
    }
}

/// A body read whole: the data and trailers still to send.
#[derive(Clone)]
struct Whole {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

/// Why the client's body failed.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Malformed (a bad chunk, an HTTP/2 stream error): hyper's description.
    Malformed(String),
    /// No byte of it within `body_read_timeout`.
    Stalled,
    /// More than `max_body_bytes` of it.
    TooLarge,
    /// The client went away part way (its HTTP/1.1 connection closed or
    /// reset, its HTTP/2 stream or connection reset): a client gone before
    /// its response, `499`, not a malformed body.
    Gone,
    /// Cut by hotproxy: the request was for another `certs` entry's host,
    /// whose entry no longer admits the client ([`crate::proxy::host_cut`]).
    Cut,
}

/// The error the upstream client sees when the client stalls its body.
#[derive(Debug, thiserror::Error)]
#[error("no byte of the request body within body_read_timeout")]
pub struct BodyStalled;

/// The error the upstream client sees when the body is cut for its host
/// ([`Fault::Cut`]).
#[derive(Debug, thiserror::Error)]
#[error("admission_rules_changed: the host's entry no longer admits the client")]
pub struct BodyCut;

/// The error the upstream client sees when the body outgrows `max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is over max_body_bytes")]
pub struct BodyTooLarge;

/// What the forwarder and the upstream connection learn of a body.
struct State {
    failed: OnceLock<Fault>,
    /// Read to its end by the upstream client.
    read: AtomicBool,
    /// The last read found nothing: the client owes the next piece.
    waiting: AtomicBool,
    /// Pieces handed on: whether the body moves at all.
    moved: AtomicU64,
    /// The [`ClientBody`] is dropped: whoever sent it is done with it.
    gone: AtomicBool,
    /// hyper's task sending it to an HTTP/2 upstream, when it has one.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// `body_read_timeout`: also the longest the body may stand still
    /// after the response ([`crate::upstream::pipe::watch`]).
    limit: Duration,
}

impl State {
    fn new(limit: Duration) -> Arc<State> {
        Arc::new(State {
            failed: OnceLock::new(),
            read: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            moved: AtomicU64::new(0),
            gone: AtomicBool::new(false),
            task: Mutex::new(None),
            limit,
        })
    }

    /// The client owes the next piece: its own timer runs.
    fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) && !self.read.load(Ordering::Relaxed)
    }
}

/// The forwarder's side of [`ClientBody`]: did the client's body fail, and why?
pub struct BodyFault(Option<Arc<State>>);

impl BodyFault {
    /// The client's body error, if reading it failed.
    pub fn cause(&self) -> Option<&Fault> {
        self.0.as_ref().and_then(|s| s.failed.get())
    }

    /// Whether the body is waiting on the client right now (its last read
    /// found nothing), rather than on the upstream to take more.
    pub fn waiting(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.waiting())
    }
}

/// The upstream connection's side of [`ClientBody`]: has its request's
/// body been read to its end (or had none)? Does it still move? Did the
/// client break it? (The default: no body.)
#[derive(Default)]
pub struct BodySent(Option<Arc<State>>);

impl BodySent {
    pub fn done(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|s| s.read.load(Ordering::Relaxed))
    }

    /// The client's fault, if reading its body failed: set before the
    /// upstream client sees the error, so before the response it abandons
    /// fails.
    pub fn fault(&self) -> Option<&Fault> {
        self.0.as_ref().and_then(|s| s.failed.get())
    }

    /// `task`, spawned by hyper, sends this body (unless it is dropped
    /// already: then `task` is another of hyper's).
    pub(crate) fn sent_by(&self, task: tokio::task::JoinHandle<()>) {
        if let Some(s) = &self.0
            && !s.gone.load(Ordering::Relaxed)
        {
            *s.task.lock().expect("body task lock") = Some(task);
        }
    }

    /// The task sending this body, taken, and its `body_read_timeout`.
    pub(crate) fn task(&self) -> Option<(tokio::task::JoinHandle<()>, Duration)> {
        let s = self.0.as_ref()?;
        let task = s.task.lock().expect("body task lock").take()?;
        Some((task, s.limit))
    }

    /// Pieces handed on so far.
    pub(crate) fn moved(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |s| s.moved.load(Ordering::Relaxed))
    }

    /// The client owes the next piece (its `body_read_timeout` runs in
    /// the body's reads), rather than the upstream taking no more.
    pub(crate) fn waiting(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.waiting())
    }
}

impl ClientBody {
    /// Wrap `inner`, a body the client must keep sending at least every
    /// `read_timeout`, of at most `max_bytes` bytes (`0`: no limit; a
    /// declared length over it was refused before). A request without a
    /// body (most GETs) cannot fail and costs no allocation.
    pub fn new(inner: Incoming, read_timeout: Duration, max_bytes: u64) -> (ClientBody, BodyFault) {
        let state = (!inner.is_end_stream()).then(|| State::new(read_timeout));
        let fault = BodyFault(state.clone());
        let limits = state
            .is_some()
            .then(|| Box::new(BodyLimits::new(read_timeout, max_bytes)));
        (
            ClientBody {
                source: Source::Streamed(inner),
                state,
                counted: None,
                limits,
                reading: None,
                nominated: Vec::new(),
            },
            fault,
        )
    }

    /// No body: a bodyless request sent again on a fresh connection.
    pub fn empty() -> ClientBody {
        ClientBody {
            source: Source::Empty,
            state: None,
            counted: None,
            limits: None,
            reading: None,
            nominated: Vec::new(),
        }
    }

    /// A body already read whole: it cannot fail, and can be sent again
    /// (`read_timeout`: `body_read_timeout`, see `State`'s `limit`).
    pub fn whole(
        data: Bytes,
        trailers: Option<HeaderMap>,
        read_timeout: Duration,
    ) -> (ClientBody, BodyFault) {
        let state = State::new(read_timeout);
        if data.is_empty() && trailers.is_none() {
            // Nothing to send: hyper never polls it, and it is through.
            state.read.store(true, Ordering::Relaxed);
        }
        let fault = BodyFault(Some(state.clone()));
        let data = (!data.is_empty()).then_some(data);
        let body = ClientBody {
            source: Source::Whole(Box::new(Whole { data, trailers })),
            state: Some(state),
            counted: None,
            limits: None,
            reading: None,
            nominated: Vec::new(),
        };
        (body, fault)
    }

    /// Whether [`ClientBody::replica`] has a copy to give.
    pub fn can_replay(&self) -> bool {
        match &self.source {
            Source::Empty | Source::Whole(..) => true,
            Source::Streamed(inner) => inner.is_end_stream(),
        }
    }

    /// The same body again, for a request that may be sent twice: `None`
    /// for a body streamed from the client (it cannot be read twice).
    /// Taken before the first send.
    pub fn replica(&self) -> Option<ClientBody> {
        self.kept().map(KeptBody::body)
    }

    /// What makes [`ClientBody::replica`] later, taken before the first
    /// send: a body read whole shares its bytes (no copy, no allocation).
    pub fn kept(&self) -> Option<KeptBody> {
        match &self.source {
            Source::Empty => Some(KeptBody(None)),
            Source::Streamed(inner) if inner.is_end_stream() => Some(KeptBody(None)),
            Source::Streamed(_) => None,
            Source::Whole(whole) => {
                let limit = self.state.as_ref().map_or(Duration::ZERO, |s| s.limit);
                Some(KeptBody(Some(((**whole).clone(), limit))))
            }
        }
    }

    /// Whether the body has content of no declared length (HTTP/1.1
    /// chunked, HTTP/2 without `content-length`): a bodyless request, or
    /// one with a length, answers `false` with no more than a look.
    pub fn unknown_length(&self) -> bool {
        !self.is_end_stream() && self.size_hint().exact().is_none()
    }

    /// Whether this body has been read to its end, asked later.
    pub fn sent(&self) -> BodySent {
        BodySent(self.state.clone())
    }

    /// Trailer fields named in the request's `Connection` are removed:
    /// at once from a body read whole (its replicas with it), as they come
    /// from one streamed.
    pub fn nominated(mut self, names: Vec<http::HeaderName>) -> ClientBody {
        if let Source::Whole(whole) = &mut self.source
            && let Some(t) = &mut whole.trailers
        {
            crate::proxy::trailers::remove_named(t, &names);
        }
        self.nominated = names;
        self
    }

    /// Add the bytes read to `counter` (the access log's `bytes_in`).
    pub fn counted(mut self, counter: Option<crate::proxy::edge::BytesIn>) -> ClientBody {
        self.counted = counter;
        self
    }

    /// Keep the client's connection busy until this body is through.
    pub fn reading(mut self, reading: Option<BodyInFlight>) -> ClientBody {
        self.reading = reading;
        self
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        // hyper's HTTP/2 client polls a body in its connection's task
        // before it spawns the task that sends the rest.
        if let Some(state) = &this.state
            && pipe::inline()
        {
            pipe::polled(BodySent(Some(state.clone())));
        }
        let inner = match &mut this.source {
            Source::Streamed(inner) => inner,
            Source::Empty => return Poll::Ready(None),
            Source::Whole(whole) => {
                let frame = match (whole.data.take(), whole.trailers.take()) {
                    (Some(data), t) => {
                        whole.trailers = t;
                        Frame::data(data)
                    }
                    (None, Some(t)) => Frame::trailers(t),
                    (None, None) => return Poll::Ready(None),
                };
                // Its data given, the body is through as far as a
                // connection is concerned: with a Content-Length (a whole
                // body has one) hyper asks for nothing more, trailers
                // included.
                if let Some(state) = &this.state {
                    state.read.store(true, Ordering::Relaxed);
                    moved(state);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
        };
        // Watched for its host's entry: cut at the watch's deadline,
        // however long the upstream would go on taking it (an early
        // answer's). Left unread, it is drained or its connection closed.
        if let Some(watch) = this.reading.as_ref().and_then(|r| r.watch.as_ref())
            && watch.body_cut(cx)
        {
            if let Some(state) = &this.state {
                let _ = state.failed.set(Fault::Cut);
            }
            return Poll::Ready(Some(Err(BodyCut.into())));
        }
        let mut polled = Pin::new(&mut *inner).poll_frame(cx);
        let Some(state) = &this.state else {
            return polled.map_err(Into::into);
        };
        // Every client body with content passes here, also one read whole
        // first.
        if let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(t) = frame.trailers_mut()
            && let Err(e) = crate::proxy::trailers::clean_request(t)
        {
            let _ = state.failed.set(Fault::Malformed(e.to_string()));
            return Poll::Ready(Some(Err(e.into())));
        }
        if !this.nominated.is_empty()
            && let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(t) = frame.trailers_mut()
        {
            crate::proxy::trailers::remove_named(t, &this.nominated);
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            if let Some(c) = &this.counted {
                c.add(data.len());
            }
            if let Some(limits) = &mut this.limits
                && !limits.take(data.len())
            {
                let _ = state.failed.set(Fault::TooLarge);
                return Poll::Ready(Some(Err(BodyTooLarge.into())));
            }
        }
        state.waiting.store(polled.is_pending(), Ordering::Relaxed);
        match &polled {
            // Set before the upstream client sees the error, so the
            // forwarder reads it once `request()` has failed.
            Poll::Ready(Some(Err(e))) => {
                let fault = if went_away(e) {
                    Fault::Gone
                } else {
                    Fault::Malformed(e.source().map_or_else(|| e.to_string(), |s| s.to_string()))
                };
                let _ = state.failed.set(fault);
                if let Some(r) = this.reading.take() {
                    r.failed();
                }
            }
            Poll::Ready(None) => {
                state.read.store(true, Ordering::Relaxed);
                BodyInFlight::done(this.reading.take());
            }
            // Trailers are the last frame: hyper does not ask again, so
            // waiting for `None` would leave the connection unpooled.
            Poll::Ready(Some(Ok(f))) if f.is_trailers() || inner.is_end_stream() => {
                state.read.store(true, Ordering::Relaxed);
                BodyInFlight::done(this.reading.take());
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Pending => {
                if let Some(limits) = &mut this.limits
                    && limits.expired(cx)
                {
                    let _ = state.failed.set(Fault::Stalled);
                    return Poll::Ready(Some(Err(BodyStalled.into())));
                }
                return Poll::Pending;
            }
        }
        if let Some(limits) = &mut this.limits {
            limits.progressed();
        }
        moved(state);
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Empty => true,
            Source::Whole(whole) => whole.data.is_none() && whole.trailers.is_none(),
            Source::Streamed(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Empty => SizeHint::with_exact(0),
            Source::Whole(whole) => {
                SizeHint::with_exact(whole.data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Source::Streamed(inner) => inner.size_hint(),
        }
    }
}

/// Whether reading a client's body failed because the client went away,
/// not because what it sent was malformed: its HTTP/1.1 connection ended
/// (closed before the body was complete, or reset), or its peer reset the
/// HTTP/2 stream or ended the connection. An error hyper or h2 found in
/// the bytes themselves (a bad chunk, more DATA than `content-length`: a
/// reset h2 sends itself) is not.
fn went_away(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_remote() && (h2.is_reset() || h2.is_go_away()) || h2.is_io();
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return crate::proxy::failure::cut_off(io);
        }
        source = s.source();
    }
    false
}

/// Whoever sends the body is done with it (hyper's task for an HTTP/2
/// upstream has ended, or dropped it).
impl Drop for ClientBody {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            state.gone.store(true, Ordering::Relaxed);
        }
    }
}

/// One more piece handed on (one writer, the body's reader: a load and a
/// store, not a locked add).
fn moved(state: &State) {
    let n = state.moved.load(Ordering::Relaxed);
    state.moved.store(n.wrapping_add(1), Ordering::Relaxed);
}

/// One body's `body_read_timeout` and `max_body_bytes`, in one box.
///
/// The timeout is started when a read finds nothing and restarted by the
/// next read that finds something. The sleep is made once per body and
/// reset after progress, so a body arriving in many pieces costs no timer
/// per piece.
struct BodyLimits {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A piece arrived since the sleep was last set.
    progressed: bool,
    /// Bytes the body may still bring (`u64::MAX`: no limit).
    left: u64,
}

impl BodyLimits {
    fn new(limit: Duration, max_bytes: u64) -> BodyLimits {
        BodyLimits {
            limit,
            sleep: None,
            progressed: true,
            left: if max_bytes == 0 { u64::MAX } else { max_bytes },
        }
    }

    /// Count `n` more bytes; false once the body is over its limit.
    fn take(&mut self, n: usize) -> bool {
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }

    fn progressed(&mut self) {
        self.progressed = true;
    }

    /// The client owes the next piece: has it owed it for `limit`?
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.progressed {
            let deadline = Instant::now() + self.limit;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.progressed = false;
        }
        let sleep = self.sleep.as_mut().expect("set above");
        sleep.as_mut().poll(cx).is_ready()
    }
}
