//! The attempts of one request: the endpoint each goes to, another one when the last lost nothing, and what each outcome counts for.
//!
//! Each request picks its endpoint ([`Members`]: balance, passive health).
//! When it fails where sending it again is safe (a failed connect, a
//! request never written, one an HTTP/2 upstream left unprocessed, or an
//! idempotent request with no whole response head) it is sent to another
//! endpoint (for an HTTP/2 one, instead of a new connection), up to
//! `retries.attempts` times within `request_timeout`. Only requests
//! without a body, or with one read whole before forwarding
//! ([`crate::proxy::buffer`]), are replayed: a streamed body is never
//! buffered to be sent twice. A retry picks from the upstream's endpoints
//! as they are then, which re-resolution may have changed since the
//! request began (one it added may take a retry of a request that began
//! on the only endpoint); whether one would take it (else an HTTP/2
//! request left unprocessed goes again to its own endpoint) is asked of
//! the same set. A retry goes only while the upstream's retry budget has
//! room ([`crate::proxy::budget`]); else the request fails as if its
//! attempts were spent. For an HTTP/2 request left unprocessed the retry,
//! its budget slot and its endpoint, is taken as it is decided: it goes
//! elsewhere or to its own endpoint, never nowhere.
//! Each attempt on its endpoint is
//! [`crate::proxy::forward`]'s.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use tracing::{debug, warn};

use crate::access_log::MAX_ATTEMPTS_LOGGED;
use crate::metrics::{METRICS, UpstreamLabels};
use crate::proxy::body::{BodyFault, ClientBody};
use crate::proxy::budget::Slot;
use crate::proxy::edge::{Abandoned, UpstreamAddr};
use crate::proxy::failure::{
    Failure, alpn_refused, diagnose, local_resources, never_processed, waited,
};
use crate::proxy::forward::{ResponseBody, Upstream, error_response, switch_checked};
use crate::proxy::framing;
use crate::upstream::conn::DialError;
use crate::upstream::endpoint::Endpoint;
use crate::upstream::members::{InFlight, Members};
use crate::upstream::pipe;

/// What the attempts of one request share.
pub(super) struct Attempt<'a> {
    /// The endpoint of the latest attempt, for the logs.
    pub last: &'a Latest,
    /// Set when `request_timeout` ends the attempt in flight.
    pub timed_out: &'a AtomicBool,
    /// The request's deadline (`request_timeout`): no wait for a
    /// connection lasts past it.
    pub until: tokio::time::Instant,
}

/// A retry's endpoint: its position in the set picked from, and its
/// request in flight counted there.
type Retry = (usize, InFlight);

/// An upgrade's response, and its request's count in flight for its body:
/// a `101`'s goes in its extensions instead, for the listener to hand to
/// the tunnel, which holds it until it ends (an HTTP/1.1 `101`'s body is
/// dropped as its head is written).
fn upgrade_counted(
    mut resp: Response<Incoming>,
    in_flight: InFlight,
) -> (Response<Incoming>, Option<InFlight>) {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return (resp, Some(in_flight));
    }
    resp.extensions_mut().insert(Arc::new(in_flight));
    (resp, None)
}

/// A retry to another endpoint taken at once, when an attempt over HTTP/2
/// came back unprocessed and [`crate::proxy::forward`] asks whether
/// another endpoint takes it rather than a new connection to its own.
struct Reserved<'a> {
    /// The retry budget's slot; none when the request's own is kept (its
    /// attempt was a retry: one given back and taken again).
    slot: Option<Slot<'a>>,
    /// The set picked from, when not the failed attempt's.
    moved: Option<Arc<Members>>,
    next: Retry,
    /// Positions tried in the set picked from, the failed one's included.
    tried: Vec<usize>,
}

/// Where a request's latest attempt went, and the earlier ones: for its
/// logs, and for passive health when `request_timeout` ends it.
#[derive(Default)]
pub(super) struct Latest {
    /// The endpoint's position in `moved`'s set, or else in the set the
    /// request started with.
    i: AtomicUsize,
    /// Locked only at a retry, and when the request is done.
    moved: Mutex<Moved>,
}

/// What a request's retries changed in its [`Latest`].
#[derive(Default)]
struct Moved {
    /// The set a retry picked from when re-resolution had replaced the
    /// request's first one.
    set: Option<Arc<Members>>,
    /// The endpoints of the attempts before the latest, in order: for the
    /// access log's `upstream_attempts`. Empty, never allocated, until a
    /// retry; at most [`MAX_ATTEMPTS_LOGGED`] less one (the latest).
    earlier: Vec<Arc<str>>,
    /// When the latest attempt, a retry, began (None: no retry yet).
    began: Option<tokio::time::Instant>,
}

impl Latest {
    fn picked(&self, i: usize) {
        self.i.store(i, Ordering::Relaxed);
    }

    /// The attempt on `from` failed and the request goes to member `i`
    /// of `moved`, when that set (the upstream's then) is not the one the
    /// request began with, or else of the set it was on.
    fn retried(&self, from: &Endpoint, moved: &Option<Arc<Members>>, i: usize) {
        let mut m = self.moved.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded whatever `retries.attempts` says: of a request that
        // made more attempts, the log names the first ones and the last.
        if m.earlier.len() < MAX_ATTEMPTS_LOGGED - 1 {
            m.earlier.push(from.dialled_url.clone());
        }
        m.began = Some(tokio::time::Instant::now());
        if let Some(now) = moved {
            m.set = Some(now.clone());
            self.picked(i);
        }
    }

    /// When the latest attempt began, if it is a retry.
    fn retry_began(&self) -> Option<tokio::time::Instant> {
        self.moved.lock().unwrap_or_else(|p| p.into_inner()).began
    }

    /// The set and position of the latest attempt yet.
    pub fn so_far(&self, first: &Arc<Members>) -> (Arc<Members>, usize) {
        let moved = self.moved.lock().unwrap_or_else(|p| p.into_inner());
        let set = moved.set.clone().unwrap_or_else(|| first.clone());
        (set, self.i.load(Ordering::Relaxed))
    }

    /// The set and position of the latest attempt, once they are all
    /// done, and the endpoints of those before it (see [`logged`]).
    pub fn done(self, first: Arc<Members>) -> (Arc<Members>, usize, Vec<Arc<str>>) {
        let moved = self.moved.into_inner().unwrap_or_else(|p| p.into_inner());
        (
            moved.set.unwrap_or(first),
            self.i.into_inner(),
            moved.earlier,
        )
    }
}

/// The access log's endpoints of a request whose latest attempt went to
/// `last`, after attempts on `earlier`: `upstream_addr`, and each
/// attempt's (`upstream_attempts`) only when there was more than one.
pub(super) fn logged(last: &Endpoint, mut earlier: Vec<Arc<str>>) -> UpstreamAddr {
    let addr = last.dialled_url.clone();
    if earlier.is_empty() {
        return UpstreamAddr(addr, None);
    }
    earlier.push(addr.clone());
    UpstreamAddr(addr, Some(earlier.into_boxed_slice()))
}

/// A `short` retry's dial (see [`Upstream::short_dial`]) that the
/// request's deadline `until` cut short: it had only what the earlier
/// attempts left of `request_timeout`, no verdict on its endpoint
/// (`DialError::Timeout` past `until`: the dial's own bound is
/// `connect_timeout` or `until`, whichever ends first). A retry that began
/// with a first attempt's dial's time is judged as a first attempt's dial is.
fn cut_short(short: bool, failure: &Failure, until: tokio::time::Instant) -> bool {
    short
        && matches!(failure, Failure::Dial(DialError::Timeout))
        && tokio::time::Instant::now() >= until
}

/// The attempts of a request while in flight: dropped armed (the request's
/// future dropped with them, its client gone), it tells `abandoned` the
/// endpoint of the latest attempt.
pub(super) struct InFlightAt<'a> {
    pub last: &'a Latest,
    pub members: &'a Arc<Members>,
    pub abandoned: &'a Abandoned,
    pub armed: bool,
}

impl Drop for InFlightAt<'_> {
    fn drop(&mut self) {
        if self.armed {
            let (set, i) = self.last.so_far(self.members);
            let earlier = self
                .last
                .moved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .earlier
                .clone();
            self.abandoned.at(logged(&set.members[i].endpoint, earlier));
        }
    }
}

impl Upstream {
    /// Send `req` to endpoints picked per attempt; to another one when the
    /// failed attempt lost nothing (see the module doc).
    pub(super) async fn send_balanced(
        &self,
        members: &Members,
        mut req: Request<ClientBody>,
        path: PathAndQuery,
        attempt: Attempt<'_>,
        body_fault: &BodyFault,
    ) -> Result<Response<ResponseBody>, Failure> {
        let Attempt {
            last,
            timed_out,
            until,
        } = attempt;
        // Allocated only when a retry happens: positions in `set`.
        let mut tried: Vec<usize> = Vec::new();
        let mut retried = 0;
        // The set a retry picked from, when it was not `members`.
        let mut newer: Option<Arc<Members>> = None;
        // With the retry budget's slot while the attempt is a retry.
        let mut picked = (
            members
                .pick(&[])
                .expect("an endpoint: the set is not empty"),
            None::<Slot<'_>>,
        );
        loop {
            let set = newer.as_deref().unwrap_or(members);
            let ((i, in_flight), retrying) = picked;
            // Taken by the response's body: counted until it ends.
            let mut in_flight = Some(in_flight);
            last.picked(i);
            let endpoint = &set.members[i].endpoint;
            // Whether another endpoint may take the request is judged at
            // its failure, by the endpoints then (`retry_pick`): one
            // re-resolution adds meanwhile may, also beside a request's
            // only endpoint. Judged by `set` here, a request that began on
            // a name's one address was never retried. A copy of the
            // request is kept while a retry is allowed at all.
            let may_retry = retried < self.config.retries;
            // Asked at a failure only: health moves, and asking costs a
            // look at every member's. A retry the budget would refuse is
            // none: an HTTP/2 request left unprocessed goes again to its
            // own endpoint, as when no other would take it. The retry is
            // taken as it is decided, its budget slot and endpoint both:
            // read there and taken after, another request's retry could
            // take the last slot (or eject the endpoint) in between, and
            // this one, resent nowhere, failed with a 502 it never caused.
            let own = retrying.is_some();
            let reserved = Mutex::new(None);
            let elsewhere = || {
                let mut reserved = reserved.lock().unwrap_or_else(|p| p.into_inner());
                if reserved.is_none() && may_retry {
                    *reserved = self.reserve(set, &tried, i, own);
                }
                reserved.is_some()
            };
            let step = AtomicBool::new(false);
            let (failure, again) = match self
                .send(
                    endpoint,
                    req,
                    path.clone(),
                    may_retry,
                    &elsewhere,
                    timed_out,
                    &step,
                    until,
                    false,
                    &mut in_flight,
                )
                .await
            {
                Ok(resp) => {
                    self.answered(set, i, switch_checked(&resp, None));
                    return Ok(resp);
                }
                // The client broke its own body: not the endpoint's fault,
                // and nothing to send again.
                Err((failure, _)) if body_fault.cause().is_some() => return Err(failure),
                Err(failed) => failed,
            };
            if cut_short(self.short_dial(last, until), &failure, until) {
                set.answered(i, StatusCode::GATEWAY_TIMEOUT.as_u16());
            } else {
                self.answered_failure(set, i, &failure, step.load(Ordering::Acquire));
            }
            // Past the request's deadline nothing more is sent (the
            // attempt ended there, waiting for a connection); nor once
            // the shutdown's grace ended, which cut it (`drain::cutting`).
            let cut = crate::proxy::drain::cutting();
            let Some(again) =
                again.filter(|_| may_retry && !cut && tokio::time::Instant::now() < until)
            else {
                return Err(failure);
            };
            let reserved = reserved.into_inner().unwrap_or_else(|p| p.into_inner());
            let (slot, moved, next) = match reserved {
                // Taken when the attempt failed: the request's own slot
                // kept, or a new one.
                Some(r) => {
                    let Some(slot) = r.slot.or(retrying) else {
                        return Err(failure);
                    };
                    tried = r.tried;
                    (slot, r.moved, r.next)
                }
                None => {
                    // The retry that failed is in flight no more.
                    drop(retrying);
                    let Some(slot) = self.retry_slot(set, &tried, i) else {
                        return Err(failure);
                    };
                    tried.push(i);
                    let Some((moved, next)) = self.retry_pick(set, &mut tried) else {
                        return Err(failure);
                    };
                    (slot, moved, next)
                }
            };
            retried += 1;
            last.retried(endpoint, &moved, next.0);
            self.retrying(endpoint, &failure);
            req = again;
            picked = (next, Some(slot));
            newer = moved.or(newer);
        }
    }

    /// A retry's endpoint, picked from the upstream's endpoints now:
    /// re-resolution may have replaced `set`, the one the failed attempt
    /// picked from, since. A retry from `set` went to an address dropped
    /// meanwhile (a pod leaving, its pool drained), and never to one added.
    /// `tried` (positions in `set`) becomes the positions of the same
    /// endpoints in the set picked from, returned when that is not `set`.
    /// None when the endpoints in service are all tried: a retry never goes
    /// to one out of service while another is in.
    fn retry_pick(
        &self,
        set: &Members,
        tried: &mut Vec<usize>,
    ) -> Option<(Option<Arc<Members>>, Retry)> {
        let now = self.members.load_full();
        if std::ptr::eq(&*now, set) {
            return Some((None, set.pick(tried)?));
        }
        *tried = now.tried_of(set, tried);
        let (i, in_flight) = now.pick(tried)?;
        Some((Some(now), (i, in_flight)))
    }

    /// The retry of a request left unprocessed on member `i` of `set`
    /// (having tried `tried` there), taken whole if another endpoint would
    /// take it and the budget has room: its slot (`own`: the request's
    /// own, held by its failed attempt, is kept) and its endpoint. None:
    /// the request goes again to its own endpoint; no overflow is counted,
    /// as none fails.
    fn reserve(&self, set: &Members, tried: &[usize], i: usize, own: bool) -> Option<Reserved<'_>> {
        if !self.elsewhere(set, tried, i) {
            return None;
        }
        let slot = if own {
            // Given back and taken again: nothing to take from another.
            if !self.budget_open(true) {
                return None;
            }
            None
        } else {
            let requests = self.members.load().in_flight();
            Some(self.budget.admit(self.config.retry_budget, requests)?)
        };
        let mut tried = tried.to_vec();
        tried.push(i);
        let (moved, next) = self.retry_pick(set, &mut tried)?;
        Some(Reserved {
            slot,
            moved,
            next,
            tried,
        })
    }

    /// Whether a retry of a request that failed on member `i` of `set`
    /// (having tried `tried` there) would find another endpoint, asked of
    /// the set [`Upstream::retry_pick`] picks from: the upstream's now.
    /// Asked of `set`, an endpoint re-resolution had dropped meanwhile
    /// counted: an HTTP/2 stream refused was not sent again on a new
    /// connection to its endpoint, and the retry found none (a `502` for a
    /// request never processed).
    fn elsewhere(&self, set: &Members, tried: &[usize], i: usize) -> bool {
        let now = self.members.load();
        if std::ptr::eq(&**now, set) {
            return set.another(tried, i);
        }
        now.another_after(set, tried, i)
    }

    /// The retry budget's slot for a retry of a request that failed on
    /// member `i` of `set` (having tried `tried` there); none when the
    /// budget is full, counted when another endpoint would have taken it.
    fn retry_slot(&self, set: &Members, tried: &[usize], i: usize) -> Option<Slot<'_>> {
        let requests = self.members.load().in_flight();
        let slot = self.budget.admit(self.config.retry_budget, requests);
        if slot.is_none() && self.elsewhere(set, tried, i) {
            debug!(upstream = %self.name, "retry refused: the retry budget is spent");
            METRICS
                .upstream_retry_overflow
                .get_or_create(&UpstreamLabels {
                    upstream: self.name.to_string(),
                })
                .inc();
        }
        slot
    }

    /// Whether the retry budget would let a retry go now, the request
    /// holding a slot of it when `own`.
    fn budget_open(&self, own: bool) -> bool {
        let requests = self.members.load().in_flight();
        self.budget.open(self.config.retry_budget, requests, own)
    }

    /// A failed attempt is sent to another endpoint: said, counted as a
    /// retry, and its failure counted with its reason as a last attempt's
    /// is: a retry hid why an endpoint kept failing. Not a request an
    /// HTTP/2 upstream left unprocessed, or its connection handed back
    /// unsent: sent again to its own endpoint instead (no other one to
    /// take it), it is a resend, no error. Nor
    /// one that got another request's dial's cause: that dial counted,
    /// once (a hundred waiting for it counted a hundred).
    fn retrying(&self, endpoint: &Endpoint, failure: &Failure) {
        let (reason, _, _) = diagnose(failure);
        debug!(upstream = %self.name, server = %endpoint.dialled_url, reason, "retrying on another endpoint");
        if !never_processed(failure) && !waited(failure) {
            crate::metrics::upstream_error(&self.name, reason);
        }
        METRICS
            .upstream_retries
            .get_or_create(&UpstreamLabels {
                upstream: self.name.to_string(),
            })
            .inc();
    }

    /// Passive health and per-endpoint counts for an answered request
    /// (`status` as [`switch_checked`] has it).
    pub(super) fn answered(&self, members: &Members, i: usize, status: StatusCode) {
        if matches!(status.as_u16(), 502..=504) {
            members.failure(i, "status");
        } else {
            members.success(i);
        }
        members.answered(i, status.as_u16());
    }

    /// Passive health and per-endpoint counts for a failed request. A full
    /// connection limit says nothing about the endpoint's health; nor does
    /// a request an HTTP/2 upstream left unprocessed (`REFUSED_STREAM`, or
    /// past a `GOAWAY`'s last stream id: a server shutting a connection
    /// down gracefully) or handed back unsent by its connection (that
    /// `GOAWAY` read as the request was handed over; over HTTP/1.1, a
    /// reused one closed while idle: `failure::h1_spent`), as when it is resent
    /// to the same endpoint: five of those ejected an endpoint that had
    /// done nothing wrong. Only more than `consecutive_failures` of those
    /// in a row, none served between, count ([`Members::unprocessed`]): an
    /// endpoint refusing every stream was never ejected. Each is a `step`
    /// of that run only on a connection that never served a response, once
    /// per connection (`StreamGuard::unprocessed_step`): a server draining
    /// a connection with many streams in flight (its keep-alive limit, a
    /// reload) failed them all at once, and ejected itself. Nor does a
    /// connect the proxy could not make for want of its own descriptors
    /// (`local_resources`): a flood of clients ejected every endpoint. Nor
    /// a request that got another's dial's cause: that dial counted, once.
    /// Nor one the shutdown cut ([`crate::proxy::drain::cutting`]): its
    /// upstream connection's task dropped first, its `499` line is the
    /// record; every pod termination ejected endpoints.
    pub(super) fn answered_failure(
        &self,
        members: &Members,
        i: usize,
        failure: &Failure,
        step: bool,
    ) {
        if crate::proxy::drain::cutting() {
            return;
        }
        let (reason, _, status) = diagnose(failure);
        if matches!(reason, "connection_limit" | "local_resources") || waited(failure) {
            // No verdict on the endpoint.
        } else if never_processed(failure) {
            // Past a run of them, an endpoint that processes nothing.
            if step {
                members.unprocessed(i, reason);
            }
        } else {
            members.failure(i, reason);
        }
        members.answered(i, status.as_u16());
    }

    /// An upgrade's failed attempt on member `i` of `members` (the latest
    /// in `last`), for passive health and per-endpoint counts, as
    /// [`Upstream::upgrade_answered`] has it, but for a retry's dial the
    /// request's deadline `until` cut short ([`cut_short`]): its `504` is
    /// counted, and no failure, as in [`Upstream::send_balanced`].
    pub(super) fn upgrade_failed(
        &self,
        members: &Members,
        i: usize,
        failure: &Failure,
        last: &Latest,
        until: tokio::time::Instant,
    ) {
        if cut_short(self.short_dial(last, until), failure, until) {
            members.answered(i, StatusCode::GATEWAY_TIMEOUT.as_u16());
        } else {
            self.upgrade_answered(members, i, failure);
        }
    }

    /// An upgrade's failed attempt, as [`Upstream::answered_failure`] has
    /// it, but a dial refused for its ALPN ([`alpn_refused`]: an
    /// HTTP/2-only endpoint, where no upgrade can be made) is counted as
    /// answered only, not as the endpoint's failure.
    fn upgrade_answered(&self, members: &Members, i: usize, failure: &Failure) {
        if alpn_refused(failure) {
            members.answered(i, diagnose(failure).2.as_u16());
        } else {
            // An upgrade goes over HTTP/1.1: no stream left unprocessed.
            self.answered_failure(members, i, failure, false);
        }
    }

    /// Whether the latest attempt in `last` is a retry that began with
    /// less than `request_timeout` less `connect_timeout`, or less than
    /// half of `request_timeout`, left before the request's deadline
    /// `until`: less than a first attempt has for its response after a
    /// dial that took all of `connect_timeout`. The half: with
    /// `request_timeout` no longer than `connect_timeout` no retry was
    /// short, and one reaching its endpoint with milliseconds left was
    /// blamed for its timeout. Such a
    /// retry had only what the earlier attempts left: `request_timeout`
    /// ending it is no verdict on its endpoint. One that began with more
    /// (sent at once after a refused connect) had a first attempt's time,
    /// and is judged as one: excused for being a retry, a hung endpoint
    /// behind a dead one was never ejected.
    pub(super) fn short_retry(&self, last: &Latest, until: tokio::time::Instant) -> bool {
        let whole = self.config.request_timeout;
        let enough = whole - self.config.connect_timeout.min(whole / 2);
        last.retry_began()
            .is_some_and(|began| until.saturating_duration_since(began) < enough)
    }

    /// Whether the latest attempt in `last`, a retry, began with less than
    /// a first attempt's dial has before the request's deadline `until`:
    /// all of `connect_timeout`, with a `request_timeout` longer than it;
    /// or else short by [`Upstream::short_retry`]'s measure (which, with
    /// `request_timeout` no longer than `connect_timeout`, is half of it).
    /// Judged by the response wait's measure alone, a retry that began
    /// with less than `connect_timeout` but more than half of a
    /// `request_timeout` under twice `connect_timeout` had its dial
    /// charged when the deadline cut it short: an endpoint with a slow
    /// handshake, well within `connect_timeout`, was ejected for what the
    /// earlier attempts had spent of the client's time. Not `less than
    /// min(connect_timeout, request_timeout)`: with `request_timeout` no
    /// longer than `connect_timeout` every retry would be short, and a
    /// black-holed endpoint behind a refusing one never ejected.
    fn short_dial(&self, last: &Latest, until: tokio::time::Instant) -> bool {
        let connect = self.config.connect_timeout;
        let dial_short = self.config.request_timeout > connect
            && last
                .retry_began()
                .is_some_and(|began| until.saturating_duration_since(began) < connect);
        dial_short || self.short_retry(last, until)
    }

    /// `request_timeout` ended the attempt on member `i` of `members`:
    /// `504`. A timeout is the endpoint's failure for passive health, as a
    /// reset or a 504 from it is (nginx's max_fails counts timeouts too); a
    /// hung endpoint is ejected like a dead one. Only when it had the time
    /// to answer: a `short` retry had what the earlier attempts left
    /// ([`Upstream::short_retry`]).
    pub(super) fn timed_out(
        &self,
        members: &Members,
        i: usize,
        short: bool,
    ) -> Response<ResponseBody> {
        let error = if short {
            "no response within what earlier attempts left of request_timeout"
        } else {
            members.failure(i, "timeout");
            "no response within request_timeout"
        };
        members.answered(i, StatusCode::GATEWAY_TIMEOUT.as_u16());
        crate::metrics::upstream_error(&self.name, "timeout");
        let server = &members.members[i].endpoint.dialled_url;
        warn!(upstream = %self.name, %server, reason = "timeout", error, "upstream request failed");
        error_response(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
    }

    /// An `Upgrade` request, on a new HTTP/1.1 connection of its own.
    /// A connect that fails is tried on another endpoint, as for any
    /// request (SPEC: Retries); once sent, an upgrade is never repeated.
    /// `last` ends as the endpoint of the last attempt.
    pub(super) async fn send_upgrade(
        &self,
        members: &Members,
        mut req: Request<ClientBody>,
        path: PathAndQuery,
        last: &Latest,
        until: tokio::time::Instant,
    ) -> Result<(Response<Incoming>, Option<InFlight>), Failure> {
        let mut tried: Vec<usize> = Vec::new();
        let mut retried = 0;
        let mut newer: Option<Arc<Members>> = None;
        // With the retry budget's slot while the attempt is a retry.
        let mut picked = (
            members
                .pick(&[])
                .expect("an endpoint: the set is not empty"),
            None::<Slot<'_>>,
        );
        loop {
            let set = newer.as_deref().unwrap_or(members);
            let ((i, in_flight), retrying) = picked;
            last.picked(i);
            let endpoint = &set.members[i].endpoint;
            let failure = match endpoint.upgrade_connection(until).await {
                Ok((mut send, head, task)) => {
                    // The connection's task sends the body, also after
                    // the response head: an upstream that then takes no
                    // more of it has it cut (`pipe::watch`, once the
                    // response is over: at once for a `101`).
                    let sent = req.body().sent();
                    sent.sent_by(task);
                    *req.uri_mut() = Uri::from(path);
                    crate::proxy::hop::name_te(req.headers_mut());
                    // As on any HTTP/1.1 attempt (`Upstream::send`): hyper
                    // frames a GET body of unknown length as none, and the
                    // body of an upgrade request was dropped unseen.
                    if req.body().unknown_length() {
                        req.headers_mut().insert(
                            header::TRANSFER_ENCODING,
                            HeaderValue::from_static("chunked"),
                        );
                    }
                    // 1xx responses before the answer are bounded as on
                    // any HTTP/1.1 connection (`H1::send`): counted until
                    // the head is in.
                    let counted = head.count();
                    // Refused as any response is (`Upstream::send`). No
                    // answer goes on to hold the body's task to be cut
                    // (`LeasedBody`), and the connection, its request in
                    // flight, does not close with `send`: cut here at once,
                    // or the task kept writing the client's body into a
                    // socket nobody read, the client's connection held
                    // after its `502`.
                    let failure = match send.send_request(req).await {
                        Ok(resp) => match framing::refused(&resp) {
                            Some(why) => Failure::Framing(why),
                            None => return Ok(upgrade_counted(resp, in_flight)),
                        },
                        Err(e) => Failure::Request(e),
                    };
                    drop(counted);
                    pipe::watch(sent, (), &self.name, pipe::Response::Failed);
                    return Err(failure);
                }
                Err(e) => Failure::Dial(e),
            };
            // Not once the shutdown's grace ended (`drain::cutting`): a
            // by-name dial whose lookup the blocking pool's shutdown
            // cancelled is cut, not sent to another endpoint.
            let more = !local_resources(&failure)
                && retried < self.config.retries
                && tokio::time::Instant::now() < until
                && !crate::proxy::drain::cutting();
            drop(retrying);
            let slot = more.then(|| self.retry_slot(set, &tried, i)).flatten();
            tried.push(i);
            retried += 1;
            let next = slot.is_some().then(|| self.retry_pick(set, &mut tried));
            let Some((moved, next)) = next.flatten() else {
                return Err(failure);
            };
            last.retried(endpoint, &moved, next.0);
            self.upgrade_answered(set, i, &failure);
            self.retrying(endpoint, &failure);
            picked = (next, slot);
            newer = moved.or(newer);
        }
    }
}
