//! An endpoint: one upstream server address with its pool, its slots, and the leases requests take.
//!
//! A request leases a connection ([`Endpoint::checkout`]) and, for
//! HTTP/1.1, keeps driving it through its response body ([`LeasedBody`]);
//! when the body ends the connection goes back to the pool. The upstreams
//! issue's endpoints (one per resolved address) are this type.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http2;
use tokio::time::Instant;

use crate::config::UpstreamConfig;
use crate::proxy::body::{BodySent, ClientBody};
use crate::proxy::forward::BoxError;
use crate::proxy::slots::{ConnectionLimit, Slots};
use crate::upstream::conn::{
    DialCause, DialError, Dialer, Dialled, H1, H2, Refuser, StreamGuard, UpgradeConn, upgrade_conn,
};
use crate::upstream::members::InFlight;
use crate::upstream::pipe;
use crate::upstream::pool::{DialWait, Found, Pool, Want};
use crate::upstream::read_timeout::{ReadTimeout, ReadTimer};

mod early;
use early::Early;

/// One server of an upstream, as its requests are addressed.
pub struct Endpoint {
    /// The URL as configured: with the address, which server's endpoint
    /// this is.
    pub url: Arc<str>,
    /// `url` with the address dialled in place of a name resolved to it
    /// (`https://10.0.0.5:8443`), as the logs and the access log's
    /// `upstream_addr` name the endpoint: every address of a headless
    /// Service's name had the same URL there. `url` itself for a server
    /// given by IP, or a name dialled as such.
    pub dialled_url: Arc<str>,
    pub scheme: Scheme,
    pub authority: Authority,
    host: String,
    port: u16,
    dialer: Dialer,
    slots: Slots,
    /// The one connection an active check may open past `slots` when
    /// every one of them is taken (see [`Endpoint::checkout`]).
    check_slot: Slots,
    /// `max_connections_per_server: 1`: a connection's slot is every slot,
    /// and one that keeps it keeps any new connection out.
    one_slot: bool,
    pub pool: Pool,
}

/// A connection leased to one request.
pub enum Lease {
    H1(Box<H1>),
    H2 {
        send: http2::SendRequest<ClientBody>,
        stream: StreamGuard,
        /// Dialled for this request, not shared from the pool: one that
        /// closes on the request says the endpoint may have failed on it,
        /// as a new HTTP/1.1 connection does ([`H1::reused`]).
        new: bool,
    },
}

/// `url` with `host` in place of its own host, where they differ (a name
/// resolved to the address `host`).
fn dialled_url(url: &str, host: &str) -> Arc<str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    // A configured IPv6 host is bracketed: an address, never resolved.
    let end = rest.find([':', '/']).unwrap_or(rest.len());
    if rest.starts_with('[') || &rest[..end] == host {
        return url.into();
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{scheme}://{host}{}", &rest[end..]).into()
}

/// `host:port` as an endpoint's requests are addressed (an IPv6 address
/// bracketed); `None` for a host no authority can hold, which a server URL
/// is refused for at configuration time ([`Endpoint::new`] cannot take it).
pub fn authority(host: &str, port: u16) -> Option<Authority> {
    let text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    text.parse().ok()
}

impl Endpoint {
    pub fn new(
        url: String,
        https: bool,
        host: String,
        port: u16,
        dialer: Dialer,
        // `max_connections_per_server`, `max_idle_connections`, `idle_timeout`.
        limits: &UpstreamConfig,
    ) -> Option<Endpoint> {
        Some(Endpoint {
            authority: authority(&host, port)?,
            dialled_url: dialled_url(&url, &host),
            url: url.into(),
            scheme: if https { Scheme::HTTPS } else { Scheme::HTTP },
            host,
            port,
            dialer,
            slots: Slots::new(limits.max_connections_per_server),
            check_slot: Slots::new(1),
            one_slot: limits.max_connections_per_server == 1,
            pool: Pool::new(limits.max_idle_connections, limits.idle_timeout),
        })
    }

    /// Whether a new connection may be dialled now: a server slot
    /// (`max_connections_per_server`) is free.
    pub fn slot_free(&self) -> bool {
        self.slots.free()
    }

    /// `stream` was refused (`REFUSED_STREAM`): whether its connection
    /// still takes new streams ([`StreamGuard::refused`], told to stay
    /// when no slot is free and no other pooled connection has room,
    /// [`Pool::room_beside`]); and, when another had room, that connection
    /// for the request's next send to skip ([`Pool::find`]), retired or
    /// not. Sent on any connection, the request went back to it (the
    /// first in the pool with room), which refused it again: retired, its
    /// next send wanted a new connection, and waited out `connect_timeout`
    /// for a slot (the refusing connection kept its own while its long
    /// streams lasted) for the limit's `504`, the other's room unused.
    /// Third, whether it holds the slot a new connection would need for as
    /// long as its long streams last: it serves, was told to stay, and no
    /// other stream on it waits for its head ([`StreamGuard::others_awaiting`]).
    /// A request it refused once more than it may be sent again on any
    /// connection then goes to no new one: it waited out `connect_timeout`
    /// for the connection limit's `504`, which named the wrong cause; it
    /// gets the refusal's `502` at once (or another endpoint takes it).
    /// Never for a `check`: it dials one of its own past the limit
    /// (`check_slot`); held, it failed at its third refusal, and an
    /// endpoint that answered on every other connection was taken out.
    /// Only with one slot (`one_slot`): with more, another may be about to
    /// come free (a connection draining after a `GOAWAY`, a dial under way
    /// whose connection goes idle, a tunnel closing), and the request that
    /// waited for it got a `200`; held, it got the `502` at once.
    pub fn refused(&self, stream: &StreamGuard, check: bool) -> (bool, Option<Refuser>, bool) {
        let beside = self.pool.room_beside(stream);
        let stay = !beside && !self.slot_free();
        let serving = stream.refused(stay);
        let held = self.one_slot && !check && serving && stay && !stream.others_awaiting();
        (serving, beside.then(|| stream.refuser()), held)
    }

    fn https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// A connection for one request: a stream on a shared h2 connection,
    /// an idle h1 one still open, or a new one. Waiting for a dial slot or a
    /// server slot is bounded by `connect_timeout` and by the request's own
    /// deadline `until`. Past it, a wait for a server slot is the
    /// connection limit's 504, which says nothing about the endpoint's
    /// health: a busy endpoint is not a failing one. A wait for a dial in
    /// progress is that dial's: the request gets the cause of the dial it
    /// waited for when that failed (as Envoy fails the requests pending on
    /// a connection attempt), `connect_timeout` if it was still in progress,
    /// neither a failure of the endpoint's (the dial is the one verdict).
    /// Both used to be the connection limit's, though no slot was waited
    /// for: operators raised `max_connections_per_server` for a dead
    /// endpoint whose waiters timed out while one after another of them
    /// dialled in turn, one `connect_timeout` each. A dial then gets a whole `connect_timeout` of its own
    /// from when it starts, as HAProxy's `timeout connect` follows its
    /// `timeout queue`: with what was left of one counted from the start,
    /// requests queued behind slow handshakes timed out, blamed on the
    /// endpoint. `want`: a retry never takes a pooled connection; a retry
    /// or a check never waits behind other dials. A check that finds every
    /// server slot taken does not wait for one either: it dials a connection
    /// of its own past the limit (one per endpoint at a time, closed after
    /// the check, never pooled), as Envoy's health checker keeps outside the
    /// circuit breakers. Requests that hold every slot, each waiting out
    /// `request_timeout` on an endpoint that answers nothing, skipped every
    /// check, and the endpoint was never taken out of service. `earlier`:
    /// what the request's sends before this one leave to it ([`Earlier`]).
    pub async fn checkout(
        &self,
        want: Want,
        earlier: &mut Earlier,
        until: tokio::time::Instant,
    ) -> Result<Lease, DialError> {
        let fresh = want.fresh();
        let deadline = (tokio::time::Instant::now() + self.dialer.connect_timeout).min(until);
        // Woken from a wait: a stream found then is passed on.
        let mut waited = false;
        // It waited for a server slot, or for other dials only, before any
        // dial of its own.
        let mut queued_for_slot = false;
        let mut queued_for_dial = false;
        // A server slot waited for, kept until a dial token is had too (or
        // given back with a pooled connection found meanwhile); and
        // whether it is the check's own, past the limit.
        let mut held: Option<(Option<tokio::sync::OwnedSemaphorePermit>, bool)> = None;
        let skip = earlier.skip.take();
        loop {
            match self.pool.find(want, skip.as_ref()) {
                Found::H1(mut c) => {
                    if c.ready().await {
                        return Ok(Lease::H1(c));
                    }
                    // Closed while idle (the upstream's keep-alive
                    // timeout): dropped, its slot freed; try the next.
                }
                Found::H2(c, guard) => {
                    if waited {
                        self.pool.pass_on();
                    }
                    return Ok(Lease::H2 {
                        send: c.send,
                        stream: guard,
                        new: false,
                    });
                }
                Found::Wait(ticket) => match self.pool.wait_for_dials(ticket, deadline).await {
                    DialWait::Changed => {
                        waited = true;
                        queued_for_dial = true;
                    }
                    DialWait::Failed(cause) => return Err(DialError::Waited(cause)),
                    DialWait::Deadline => return Err(dial_in_progress()),
                },
                Found::Dial(token) => {
                    // `own`: the check's connection past the limit. Only
                    // with that one taken too (rare: it closes with its
                    // check) does a check wait for a slot like a request.
                    let (taken, own) = match held.take() {
                        Some((slot, own)) => (Ok(slot), own),
                        None => match self.slots.try_take() {
                            Err(_) if want.check() => (self.check_slot.try_take(), true),
                            taken => (taken, false),
                        },
                    };
                    let slot = match taken {
                        Ok(slot) => slot,
                        Err(_) => {
                            // Every slot taken: wait for one, or for a
                            // connection handed back (which serves first).
                            // The slot, once had, is kept and the pool
                            // asked again: the token was given up, and the
                            // dial must keep to the dial bound like any.
                            token.abandon();
                            // A retry, which never takes a pooled
                            // connection, takes an idle one's slot first
                            // (closed for it): none is given back
                            // otherwise before `idle_timeout`, and the
                            // retry waited out `connect_timeout` for the
                            // connection limit's 504 (every slot held by
                            // idle connections, the one it failed on
                            // freed to a request waiting for it).
                            if want == Want::Fresh
                                && let Some(idle) = self.pool.take_oldest_idle()
                            {
                                // Closed already: its slot is free now.
                                held = idle.into_slot().map(|slot| (Some(slot), false));
                                continue;
                            }
                            // It waits now, and only now says so: marked
                            // before that look, a retry that took an idle
                            // connection's slot at once, its dial then cut
                            // short by `request_timeout`, was answered as
                            // the connection limit, a wait it never had.
                            // A resend is marked in `idle_slot`, where it
                            // waits: an idle HTTP/2 connection's slot may
                            // be had there at once.
                            if want != Want::Fresh {
                                self.busy(&mut earlier.said_busy);
                                queued_for_slot = true;
                            }
                            if want == Want::CheckAgain {
                                // Its own connection (likely the one that
                                // left it unprocessed) closes: either slot.
                                held = Some(tokio::select! {
                                    slot = self.slots.acquire(deadline) => (slot?, false),
                                    slot = self.check_slot.acquire(deadline) => (slot?, true),
                                });
                            } else if fresh {
                                // A retry never takes a pooled connection,
                                // so it is not woken as requests are by a
                                // connection handed back: it would take the
                                // wake-up meant for a request that can use
                                // it, which then waits out its deadline.
                                // An idle pooled connection gives its slot
                                // first ([`Endpoint::idle_slot`]): the retry
                                // waited out `connect_timeout` for the
                                // connection limit's 504 (every slot held by
                                // idle connections, the one it failed on
                                // freed to a request waiting for it).
                                let said = &mut earlier.said_busy;
                                let idle = self.idle_slot(deadline, &mut queued_for_slot, said);
                                if let IdleSlot::Slot(slot) = idle.await? {
                                    held = Some((slot, false));
                                }
                            } else {
                                tokio::select! {
                                    slot = self.slots.acquire(deadline) => held = Some((slot?, false)),
                                    _ = self.pool.changed() => waited = true,
                                }
                            }
                            continue;
                        }
                    };
                    // Boxed: dialling is the cold path, and its future
                    // (TCP connect, TLS handshake) would otherwise make
                    // every request's future kilobytes larger, copied each
                    // time hyper moves it.
                    let full = tokio::time::Instant::now() + self.dialer.connect_timeout;
                    let leased = Box::pin(self.connect(slot, full.min(until), own)).await;
                    // `request_timeout` cut short: no verdict on the endpoint.
                    let cut = until < full && matches!(leased, Err(DialError::Timeout));
                    match &leased {
                        // The proxy's own resources: the waiters try theirs.
                        Err(DialError::LocalResources(_)) => drop(token),
                        Err(e) if !cut => token.failed(waiters_cause(e)),
                        _ => drop(token),
                    }
                    return match leased {
                        // `request_timeout` ended a dial it cut short after
                        // the request had waited: the request's time was
                        // spent queueing, which says nothing of the
                        // endpoint (as a wait it ends is the limit's 504,
                        // or a dial's in progress).
                        Err(DialError::Timeout) if cut && queued_for_slot => {
                            Err(ConnectionLimit.into())
                        }
                        Err(DialError::Timeout) if cut && queued_for_dial => {
                            Err(dial_in_progress())
                        }
                        leased => leased,
                    };
                }
            }
        }
    }

    /// Dial, handshake, and lease the new connection (a new h2 one is
    /// also shared through the pool, unless `own`: a check's connection
    /// past the limit, which nothing else may use and which closes when
    /// the check lets go of it).
    async fn connect(
        &self,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
        deadline: tokio::time::Instant,
        own: bool,
    ) -> Result<Lease, DialError> {
        let generation = self.pool.generation();
        let d: Dialled = self
            .dialer
            .dial(&self.host, self.port, self.https(), slot, deadline, false)
            .await?;
        self.pool.learned(d.h2);
        if d.h2 {
            let c = H2::handshake(
                d,
                generation,
                self.dialer.h2_keepalive,
                self.dialer.h2_stream_window,
                self.pool.wakes(),
            )
            .await?;
            // Shared (and used) once the server's SETTINGS say how many
            // streams it takes; until then others wait for this dial.
            c.settings_within(deadline).await?;
            let guard = c.first_stream()?;
            if !own {
                self.pool.add_h2(c.clone());
            }
            return Ok(Lease::H2 {
                send: c.send,
                stream: guard,
                new: true,
            });
        }
        let mut c = H1::handshake(d, generation).await?;
        c.unpooled = own;
        Ok(Lease::H1(Box::new(c)))
    }

    /// A new HTTP/1.1-only connection for an `Upgrade` request (never
    /// pooled: it becomes the tunnel). It holds a slot like any other, and
    /// waits for one and dials as [`Endpoint::checkout`] does, within the
    /// request's deadline `until` too: `until` ending the wait, or a dial
    /// after it, is the connection limit's 504, no failure of the
    /// endpoint's. The wait used to be bounded by `connect_timeout` alone:
    /// behind open tunnels it outlasted a shorter `request_timeout`, whose
    /// timeout answered `upstream timed out` and counted it against the
    /// endpoint, and a few such upgrades ejected a busy, healthy one.
    ///
    /// As a request sent again on a new connection does, it takes the slot
    /// of an idle pooled connection (closed for it) when none is free, at
    /// once or when one goes idle while it waits: idle connections give
    /// their slots back only at `idle_timeout`, and an upgrade behind them
    /// (the one connection `max_connections_per_server: 1` allows, used by
    /// an ordinary request a moment before) waited out `connect_timeout`
    /// for the connection limit's 504.
    pub async fn upgrade_connection(&self, until: Instant) -> Result<UpgradeConn, DialError> {
        let queue = (Instant::now() + self.dialer.connect_timeout).min(until);
        let (mut queued, mut said) = (false, false);
        let slot = loop {
            if let Ok(slot) = self.slots.try_take() {
                break slot;
            }
            if let IdleSlot::Slot(slot) = self.idle_slot(queue, &mut queued, &mut said).await? {
                break slot;
            }
        };
        // A whole connect_timeout after the wait for a slot, as for requests.
        let full = Instant::now() + self.dialer.connect_timeout;
        let by = full.min(until);
        match (self.dialer)
            .dial(&self.host, self.port, self.https(), slot, by, true)
            .await
        {
            Err(DialError::Timeout) if queued && until < full => Err(ConnectionLimit.into()),
            dialled => upgrade_conn(dialled?).await,
        }
    }

    /// Logged once per request, as it starts to wait for a slot (`said`:
    /// it did, in this send or one before it).
    fn busy(&self, said: &mut bool) {
        if std::mem::replace(said, true) {
            return;
        }
        tracing::debug!(server = %self.dialled_url, "every connection to the server is busy (max_connections_per_server): waiting for one");
    }

    /// Every server slot taken, for a request that can take no pooled
    /// connection itself (one sent again on a new connection, an `Upgrade`
    /// request): the slot of the oldest idle HTTP/1.1 connection, closed
    /// for it; none is given back otherwise before `idle_timeout`. Else
    /// that of an idle HTTP/2 connection, closed for it likewise, once its
    /// socket is closed (until `deadline`, the connection limit). Else it
    /// waits until `deadline` for a slot (`queued` set, and logged unless
    /// `said`), or for a
    /// connection gone idle meanwhile (a wake-up of its own,
    /// [`crate::upstream::pool::Pool::went_idle`]), whose slot it then
    /// takes as above when it looks again. Woken by a slot freed alone, it
    /// missed a busy connection handed back idle, which frees its slot
    /// only at `idle_timeout`: the whole `connect_timeout`, then the
    /// connection limit's 504.
    async fn idle_slot(
        &self,
        deadline: Instant,
        queued: &mut bool,
        said: &mut bool,
    ) -> Result<IdleSlot, ConnectionLimit> {
        // Registered before it looks: a connection that goes idle after
        // the look wakes it, or another waiter (one each; a wake-up it
        // got and leaves unused is passed on when this is dropped, as
        // tokio's `Notified` does). Registered after, two going idle in
        // between were one stored wake-up, and of two requests in that
        // gap one waited for a slot the other connection kept until
        // `idle_timeout`.
        let went_idle = self.pool.went_idle();
        tokio::pin!(went_idle);
        went_idle.as_mut().enable();
        if let Some(idle) = self.pool.take_oldest_idle() {
            // `None`: it had closed already, its slot freed then.
            return Ok(match idle.into_slot() {
                Some(slot) => IdleSlot::Slot(Some(slot)),
                None => IdleSlot::Again,
            });
        }
        // Its slot for this request, not freed to whoever waits: a wake-up
        // before it came found none free yet, and closed a second one. Only
        // once its socket is closed: the new connection would be one past
        // the limit while it is open.
        if let Some(closing) = self.pool.close_an_idle_h2() {
            return match tokio::time::timeout_at(deadline, closing).await {
                Ok(Ok(slot)) => Ok(IdleSlot::Slot(Some(slot))),
                // Its task was dropped, and its slot freed with it.
                Ok(Err(_)) => Ok(IdleSlot::Again),
                Err(_) => Err(ConnectionLimit),
            };
        }
        self.busy(said);
        *queued = true;
        tokio::select! {
            slot = self.slots.acquire(deadline) => Ok(IdleSlot::Slot(slot?)),
            () = went_idle => Ok(IdleSlot::Again),
        }
    }
}

/// What a request's sends to an endpoint before this one leave to it
/// ([`Endpoint::checkout`]).
#[derive(Default)]
pub struct Earlier {
    /// A shared connection this send does not take ([`Endpoint::refused`]).
    pub skip: Option<Refuser>,
    /// One of them waited for a server slot, and said so: said once per
    /// request (SPEC), not once per send (a GET that waited for the slot,
    /// was refused on the connection it got, and waited again for its
    /// resend's was logged as waiting twice).
    said_busy: bool,
}

/// What [`Endpoint::idle_slot`] got.
enum IdleSlot {
    /// A server slot: an idle pooled connection's (closed for it), or one
    /// freed while it waited.
    Slot(Option<tokio::sync::OwnedSemaphorePermit>),
    /// Nothing yet; look again: the idle connection taken had closed
    /// already (its slot freed then), or one went idle while it waited.
    Again,
}

/// A failed dial's cause as the requests that waited for it report it.
fn waiters_cause(e: &DialError) -> DialCause {
    let (reason, description, status) = crate::proxy::failure::diagnose_dial(e);
    DialCause {
        reason,
        description: format!("{description} (a dial this request waited for)"),
        status,
    }
}

/// A request whose time ran out waiting for a dial still in progress:
/// its connect timed out, as that dial's will if it gets no further.
fn dial_in_progress() -> DialError {
    DialError::Waited(Arc::new(DialCause {
        reason: "connect_timeout",
        description: "connect timed out waiting for a connection being dialled".into(),
        status: http::StatusCode::GATEWAY_TIMEOUT,
    }))
}

/// An upstream response body that keeps its HTTP/1.1 connection running
/// (in the client connection's task) and hands it back to the pool when
/// the body has ended; or that holds its HTTP/2 stream until then, and
/// after it while the request's body is still sent ([`pipe::watch`]).
pub struct LeasedBody {
    body: Incoming,
    h1: Option<(Box<H1>, Arc<Endpoint>)>,
    h2: Option<StreamGuard>,
    /// The request's own body: whether it is through, and whether the
    /// client broke it (then a failed response is the client's doing).
    sent: BodySent,
    ended: bool,
    /// Ended by an error (`read_timeout`, the upstream's): the request's
    /// body, if still sent, is cut at once ([`pipe::watch`]).
    failed: bool,
    read: ReadTimer,
    /// What came with the head, read before the response was handed on
    /// ([`LeasedBody::read_early`]), and an error held back for one poll.
    early: Early,
    /// Its request counted in flight on its endpoint until it is dropped.
    _in_flight: Option<InFlight>,
}

impl LeasedBody {
    /// `sent`: whether the request's own body is through (an upstream may
    /// answer first); `in_flight`: counted until the body is over ([`InFlight`]).
    pub fn h1(
        body: Incoming,
        c: Box<H1>,
        endpoint: &Arc<Endpoint>,
        sent: BodySent,
        read: &Arc<ReadTimeout>,
        in_flight: Option<InFlight>,
    ) -> LeasedBody {
        LeasedBody {
            body,
            h1: Some((c, endpoint.clone())),
            h2: None,
            sent,
            ended: false,
            failed: false,
            read: ReadTimer::new(read.clone()),
            early: Early::default(),
            _in_flight: in_flight,
        }
    }

    /// A body whose connection runs in a task of its own (an `Upgrade`
    /// request's, answered without a switch): only `read_timeout`, the
    /// trailer cleaning and the request body's faults apply.
    pub fn unpooled(
        body: Incoming,
        sent: BodySent,
        read: &Arc<ReadTimeout>,
        in_flight: Option<InFlight>,
    ) -> LeasedBody {
        LeasedBody {
            body,
            h1: None,
            h2: None,
            sent,
            ended: false,
            failed: false,
            read: ReadTimer::new(read.clone()),
            early: Early::default(),
            _in_flight: in_flight,
        }
    }

    /// Whether this response is refused (a `101` nobody asked for,
    /// answered `502`): then when it is dropped the request's body, if
    /// still sent, is cut at once, as after a failed one
    /// ([`pipe::Response::Failed`]).
    pub fn refused(mut self, refused: bool) -> LeasedBody {
        self.failed |= refused;
        self
    }

    /// `sent`: the request's own body, still sent after the response
    /// when the upstream answered first.
    pub fn h2(
        body: Incoming,
        stream: StreamGuard,
        sent: BodySent,
        read: &Arc<ReadTimeout>,
        in_flight: Option<InFlight>,
    ) -> LeasedBody {
        LeasedBody {
            body,
            h1: None,
            h2: Some(stream),
            sent,
            ended: false,
            failed: false,
            read: ReadTimer::new(read.clone()),
            early: Early::default(),
            _in_flight: in_flight,
        }
    }
}

impl LeasedBody {
    /// The next frame from the upstream. `early`: read before the response
    /// is handed on ([`LeasedBody::read_early`]), where a failure is the
    /// request's (a 502), not logged here as a body's.
    fn poll_upstream(
        &mut self,
        cx: &mut Context<'_>,
        early: bool,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self;
        let mut polled = Poll::Pending;
        match &mut this.h1 {
            None => polled = Pin::new(&mut this.body).poll_frame(cx),
            Some((c, _)) => {
                // The body's bytes arrive only while the connection is
                // polled. Bytes it has handed over already are taken
                // without driving it (an idle connection polled looks at
                // its socket once more); while the request's body is
                // still sent the connection goes first, as that is where
                // the request's body moves.
                if this.sent.done() {
                    polled = Pin::new(&mut this.body).poll_frame(cx);
                }
                if polled.is_pending() {
                    c.poll_conn(cx);
                    polled = Pin::new(&mut this.body).poll_frame(cx);
                }
            }
        }
        match &mut polled {
            Poll::Pending => {
                if let Err(e) = this.read.poll_wait(cx, &this.sent) {
                    if let Some(stream) = &this.h2 {
                        stream.retire();
                    }
                    this.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(e))) => {
                // hyper abandons the upstream request when the client's
                // body fails (stalled, over max_body_bytes, broken): what
                // that does to the response is not the upstream's fault.
                if !this.failed
                    && !early
                    && this.read.body_failed(e, &this.sent)
                    && let Some(stream) = &this.h2
                {
                    // Silent as in a stall: retired as after one.
                    stream.retire();
                }
                this.failed = true;
            }
            Poll::Ready(Some(frame)) => {
                if let Ok(frame) = frame
                    && let Some(t) = frame.trailers_mut()
                {
                    crate::proxy::trailers::clean_response(t);
                    // The last frame: hyper does not ask for the end after
                    // trailers, so this is where the body ends.
                    this.ended = true;
                }
                this.read.progress();
            }
        }
        polled.map_err(Into::into)
    }
}

impl Body for LeasedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(held) = this.early.next() {
            return Poll::Ready(Some(held));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        match this.poll_upstream(cx, false) {
            // hyper's HTTP/1.1 server drops what it has not written yet
            // when a body fails: a failure in the poll that got the bytes
            // before it (or the head) would leave the client none of them,
            // even no status line. Held back once, the bytes are flushed
            // first; the client sees the response cut after them.
            Poll::Ready(Some(Err(e))) => {
                this.early.hold_back(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            polled => polled,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.early.is_empty() && (self.ended || self.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.early.size_hint(self.body.size_hint())
    }
}

impl Drop for LeasedBody {
    fn drop(&mut self) {
        let unpooled = self.h1.is_none() && self.h2.is_none();
        // A body read to its end leaves the connection reusable, once the
        // request's own body is through too. Otherwise it closes with the
        // drop: a response cut short (the client went away), or one the
        // upstream sent before the request's body was in, or before it
        // read all of it (hyper holds its tail, `HeadWait::unflushed`).
        // Pooled, that connection would hold the next request behind a
        // client that may never send the rest, or an upstream that may
        // never read it.
        if let Some((c, endpoint)) = self.h1.take()
            && (self.ended || self.body.is_end_stream())
            && self.sent.done()
            && !c.head.unflushed()
        {
            endpoint.pool.put(c);
        }
        // An HTTP/2 stream is open until the request's body is through
        // too; one the upstream stops taking is cut, and one whose
        // response failed at once.
        let response = match self.failed {
            true => pipe::Response::Failed,
            false => pipe::Response::Over,
        };
        if let Some(stream) = self.h2.take() {
            let sent = std::mem::take(&mut self.sent);
            pipe::watch(sent, stream, self.read.upstream(), response);
        } else if unpooled {
            // An `Upgrade` request's own connection sends its body from
            // its task, also after a `101` (the switch waits for the
            // body's end): cut alike, or an upstream that answered and
            // stopped reading held the client's connection (and a tunnel
            // not yet begun) past every timeout.
            let sent = std::mem::take(&mut self.sent);
            pipe::watch(sent, (), self.read.upstream(), response);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
