//! Forwarding one request over an endpoint's pool: balancing, retry when nothing was lost, timeouts.
//!
//! Each configured server is an [`Endpoint`] with its own pool
//! ([`crate::upstream`]). New connections load the upstream's
//! `ClientConfig` snapshot once each, so a rotated client certificate or CA
//! is used from the next connection on; `drain_on_rotation` additionally
//! closes the idle connections made with the old material.
//!
//! A request that fails on a pooled connection is sent once more, on a new
//! connection, when that cannot repeat anything: the request was never
//! written; an HTTP/2 upstream left it unprocessed (`REFUSED_STREAM`, or
//! past a `GOAWAY`'s last stream id: a server shutting down) and its body
//! can be sent twice (none, or read whole); or the reused connection
//! closed before a whole response head and the request is idempotent with
//! such a body (an upstream closing an idle keep-alive connection just as
//! it is reused). An HTTP/2 request that new connection left unprocessed
//! too goes once more, on another (two at most: `resends`). One refused (`REFUSED_STREAM`)
//! on a connection that still takes streams goes on any connection instead, that one
//! included (twice at most, thrice with room on another and no slot free; then on new
//! ones, unless it holds their slot: `Endpoint::refused`), five sends in all, over HTTP/2 and
//! HTTP/1.1 connections alike. Each is counted (`hotproxy_upstream_resends_total`) and is no
//! retry: `retries.attempts: 0` leaves it on.
//!
//! Which endpoint each attempt goes to, and when another one is tried, is
//! [`crate::proxy::attempts`]'.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use rustls::ClientConfig;
use tracing::{debug, warn};

use crate::config::UpstreamConfig;
use crate::identity::Identity;
use crate::metrics;
use crate::proxy::attempts::{Attempt, InFlightAt, Latest};
use crate::proxy::body::{BodyInFlight, ClientBody, Fault};
// The listener answers a declared length over the limit with it too.
pub use crate::proxy::body_answers::client_fault;
use crate::proxy::budget::Budget;
use crate::proxy::buffer;
use crate::proxy::edge::{Abandoned, BytesIn};
use crate::proxy::failure::{
    Failure, answer, closed_before_response, copy_of, diagnose, dispatch_gone, early, h1_again,
    h1_spent, idempotent, refused_stream, replayable, unprocessed,
};
use crate::proxy::headers::{Message, rewrite_request_headers, strip_hop_by_hop};
use crate::proxy::kept::{Fields, Kept};
use crate::proxy::resends::Resends;
use crate::proxy::websocket::Accept;
use crate::proxy::{framing, padding};
use crate::upstream::conn::{DialError, Dialer, MAX_RESPONSE_FIELDS, Unanswered};
use crate::upstream::endpoint::{Earlier, Endpoint, Lease, LeasedBody};
use crate::upstream::resolve::Resolution;
use crate::upstream::{members::Members, pipe, pool::Want, read_timeout::ReadTimeout};

pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A response body's error: hyper's, or a cut (`read_timeout`, `send_timeout`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the forwarder needs to know about the client connection.
pub struct RequestContext {
    pub listener: Arc<str>,
    /// When it changes (a PROXY header), set `client_ip` again.
    pub client_addr: SocketAddr,
    /// A verified client certificate (only for verifying client-auth modes).
    pub client_cert: Option<Arc<Identity>>,
    pub tls_sni: Option<Arc<str>>,
    /// The pairs the connection's listener (or entry) served it from:
    /// with `served`, else `tls_sni`, which certificate it got (XFCC's `By`).
    pub served_from: Arc<crate::tls::server::SniResolver>,
    /// The position in `served_from` of the pair its handshake chose
    /// (`None`: not known; the one `tls_sni` selects first).
    pub served: Option<usize>,
    /// The client is one of the listener's `trusted_proxies`: its
    /// forwarding headers are kept and extended (issue 16).
    pub trusted_proxy: bool,
    /// `TLSv1.3` / `TLSv1.2`, for the access log.
    pub tls_version: Option<&'static str>,
    /// Whether the handshake resumed an earlier session.
    pub resumed: bool,
    /// With per-entry client auth: the listener's entries as its handshake
    /// saw them (not their configs and verifiers) and the position of the
    /// entry this connection's SNI selected.
    pub entry: Option<(Arc<crate::tls::per_name::Entries>, usize)>,
    /// `limits.body_read_timeout`: the longest a request body may pause.
    pub body_read_timeout: std::time::Duration,
    /// `limits.body_buffer_bytes`: bodies of a declared length up to this
    /// are read whole before an upstream is chosen ([`crate::proxy::buffer`]).
    pub body_buffer_bytes: usize,
    /// `limits.max_body_bytes` (0: no limit), unless the route sets its own.
    pub max_body_bytes: u64,
    /// `client_addr`'s IP as an `X-Forwarded-For` element
    /// ([`crate::proxy::headers::client_ip_value`]), formatted once per connection rather than per
    /// request.
    pub client_ip: HeaderValue,
    /// The `Host` last made from an HTTP/2 request's `:authority`, shared
    /// by the connection's next requests ([`crate::proxy::request::prepare`]).
    pub hosts: crate::proxy::request::HostMemo,
}

/// One configured upstream: its endpoints and TLS snapshot.
pub struct Upstream {
    pub name: Arc<str>,
    pub config: UpstreamConfig,
    /// `read_timeout`, handed to each response body.
    read: Arc<ReadTimeout>,
    /// The snapshot new connections handshake with; swapped by the reloader.
    tls: Arc<ArcSwap<ClientConfig>>,
    /// The endpoints now; replaced when a re-resolution changes them
    /// (a request in flight keeps the set it started with; its retries
    /// pick from the set current then).
    pub(super) members: ArcSwap<Members>,
    pub(super) resolution: Resolution,
    /// Its background tasks (re-resolution, active checks) run.
    pub(super) started: AtomicBool,
    /// Its retries to other endpoints in flight, shared with the upstream
    /// an edit replaces: `retries.budget_percent` bounds them together.
    pub(super) budget: Budget,
}

impl Upstream {
    /// The upstream of `config`; `previous`, the running upstream it
    /// replaces after an edit, lends its endpoints' health where their
    /// address stays, its names' last addresses for a failed lookup, and
    /// its retries in flight (the retry budget's count).
    pub fn new(
        config: UpstreamConfig,
        tls: Arc<ClientConfig>,
        previous: Option<&Upstream>,
    ) -> Arc<Upstream> {
        let tls = Arc::new(ArcSwap::new(tls));
        let dialer = Dialer {
            tls: tls.clone(),
            server_name: config.tls.server_name.clone().map(Arc::from),
            connect_timeout: config.connect_timeout,
            h2_keepalive: config.http2_keepalive,
            h2_stream_window: config.http2_stream_window_bytes,
        };
        let name: Arc<str> = config.name.as_str().into();
        let resolution = Resolution::new(name.clone(), config.clone(), dialer);
        let members = resolution.initial(previous.map(|p| (&p.resolution, p.members.load_full())));
        let read = Arc::new(ReadTimeout {
            timeout: config.read_timeout,
            upstream: name.clone(),
        });
        Arc::new(Upstream {
            name,
            read,
            config,
            tls,
            members: ArcSwap::from_pointee(members),
            resolution,
            started: AtomicBool::new(false),
            budget: previous.map(|p| p.budget.clone()).unwrap_or_default(),
        })
    }

    /// New upstream connections use `tls` from now on; with
    /// `drain_on_rotation` the idle pooled connections made with the old
    /// material are closed (busy ones when their requests end).
    pub fn set_tls(&self, tls: Arc<ClientConfig>) {
        self.tls.store(tls);
        if self.config.tls.drain_on_rotation {
            for m in &self.members.load().members {
                m.endpoint.pool.drain();
            }
            debug!(upstream = %self.name, "pooled connections drained after rotation");
        }
    }

    /// Forward one request and return the upstream's response, or a
    /// 502/504 describing why there is none. `max_body`: the route's
    /// `max_body_bytes` (0: no limit); a declared length over it was
    /// answered `413` before. `in_flight` is told once the request is
    /// handed to an endpoint, not for an answer given before. `accept`: the
    /// request is an upgrade hotproxy tunnels (`tunnel::is_tunnelled`, read
    /// by the caller) whose `101` must carry it (`proxy::websocket`); any
    /// other `Upgrade` is stripped as hop-by-hop, the request forwarded as
    /// an ordinary one. `abandoned` is told the
    /// endpoint of the attempt in flight if the request's future is
    /// dropped (the client gone), for its `499` line, and whether the
    /// response head came from the upstream.
    pub async fn forward(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        ctx: &RequestContext,
        max_body: u64,
        in_flight: &mut crate::proxy::cancels::Unanswered,
        accept: Option<&Accept>,
        abandoned: &Abandoned,
    ) -> Response<ResponseBody> {
        let upgrade = accept.is_some();
        if self.members.load().is_empty() {
            metrics::upstream_error(&self.name, "no_servers");
            return error_response(StatusCode::BAD_GATEWAY, "upstream has no servers");
        }
        let h2_client = req.version() == Version::HTTP_2;
        rewrite_request_headers(req.headers_mut(), ctx, h2_client, upgrade);
        if upgrade {
            crate::proxy::tunnel::restrict_upgrade(req.headers_mut());
        }
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // HTTP/1.1 is what both an h1 and an h2 upstream connection take.
        *req.version_mut() = Version::HTTP_11;

        let (mut parts, body) = req.into_parts();
        // The access log counts the request body's bytes as they are read.
        let counted = parts.extensions.remove::<BytesIn>();
        // Read whole, the body is through before any answer; streamed, it
        // holds the client's connection until it is.
        let reading = parts.extensions.remove::<BodyInFlight>();
        // Trailer fields the request's `Connection` named go as its head's.
        let named = crate::proxy::trailers::Nominated::take(&mut parts.extensions);
        let (body, body_fault) = if !upgrade && buffer::wanted(&body, ctx.body_buffer_bytes) {
            // Boxed: only requests with a small body wait here, and the
            // read would grow every request's future.
            let read = Box::pin(buffer::read_whole(body, ctx.body_read_timeout, counted));
            // Bounded by `request_timeout` too (its clock read only here), so
            // a client trickling it within `body_read_timeout` each time is cut.
            match tokio::time::timeout(self.config.request_timeout, read).await {
                // `Expect` went with the rewrite: the body goes whole.
                Ok(Ok(whole)) => {
                    // Read to its end: nothing is left for hyper to drain.
                    BodyInFlight::done(reading);
                    whole
                }
                Ok(Err(fault)) => return client_fault(ctx, &self.name, &fault, h2_client),
                Err(_) => return client_fault(ctx, &self.name, &Fault::Stalled, h2_client),
            }
        } else {
            let (body, fault) = ClientBody::new(body, ctx.body_read_timeout, max_body);
            (body.counted(counted).reading(reading), fault)
        };
        let req = Request::from_parts(parts, body.nominated(named));
        // The upstream's `request_timeout` runs from here, once a body read
        // whole is in (Envoy's route timeout starts once the request is
        // whole, nginx's `proxy_read_timeout` once it is sent): counted from the
        // request, a client that took 59.9 s over its 10 bytes left the
        // endpoint 100 ms, and its `504` was counted against it, a crowd
        // of such clients ejecting healthy endpoints.
        let deadline = tokio::time::Instant::now() + self.config.request_timeout;
        // Once the body is in: re-resolution may have dropped an address
        // while a client trickled it (nginx picks after buffering too). It
        // keeps the last good addresses: never none here.
        let members = self.members.load_full();
        // Only from here does its answer count against the client's
        // cancellations: a body read whole that broke or stalled was
        // answered above, without an endpoint (SPEC §6, rapid reset).
        in_flight.forwarded();
        // The endpoint of the latest attempt, for the logs.
        let last = Latest::default();
        // Set when `request_timeout` ends the attempt in flight, before it
        // is dropped: its HTTP/2 connection is retired (`Unanswered`).
        let timed_out = AtomicBool::new(false);
        let (result, waiting) = {
            // Dropped armed only with the attempt in flight: says its
            // endpoint to the `499` line.
            let mut in_flight = InFlightAt {
                last: &last,
                members: &members,
                abandoned,
                armed: true,
            };
            // The attempt in flight: its request is still copied in once
            // (a memcpy per request, profiled); this shape measured about
            // 1 % fewer instructions than `let` then `pin!`, through the
            // compiler's inlining elsewhere, not through a saved copy.
            let mut sent = std::pin::pin!(async {
                if upgrade {
                    let sent = req.body().sent();
                    // Boxed: rare, and its dial would grow every request's future.
                    let r = Box::pin(self.send_upgrade(&members, req, path, &last, deadline)).await;
                    let (set, i) = last.so_far(&members);
                    // A switch to a protocol not asked for, which the
                    // listener answers 502: the body it may still send is
                    // cut at once when the listener drops the response.
                    let refused =
                        matches!(&r, Ok((h, _)) if switch_checked(h, accept) != h.status());
                    match &r {
                        Ok((resp, _)) => self.answered(&set, i, switch_checked(resp, accept)),
                        Err(_) if body_fault.cause().is_some() => {}
                        Err(e) => self.upgrade_failed(&set, i, e, &last, deadline),
                    }
                    // Answered without a switch (a 200, 403 or 426 with a
                    // body): bounded by read_timeout like any response body.
                    let read = &self.read;
                    r.map(|(r, count)| {
                        r.map(|b| {
                            let body = LeasedBody::unpooled(b, sent, read, count);
                            body.refused(refused).boxed()
                        })
                    })
                } else {
                    let attempt = Attempt {
                        last: &last,
                        timed_out: &timed_out,
                        until: deadline,
                    };
                    self.send_balanced(&members, req, path, attempt, &body_fault)
                        .await
                }
            });
            let r = tokio::time::timeout_at(deadline, sent.as_mut()).await;
            in_flight.armed = false;
            // A slow client body (read once: the arms below see the same) is not the
            // connection's silence, nor is the end of a short retry.
            let waiting = r.is_err() && body_fault.waiting();
            if r.is_err() && !waiting && !self.short_retry(&last, deadline) {
                timed_out.store(true, Ordering::Release);
            }
            (r, waiting)
            // The attempt in flight is dropped here, seeing `timed_out`.
        };
        let (members, i, earlier) = last.done(members);
        let endpoint = &members.members[i].endpoint;
        let answered = matches!(result, Ok(Ok(_)));
        let mut resp = match result {
            Ok(Ok(resp)) => resp,
            // The client's body broke (bad chunk, h2 stream error) or
            // stalled: its fault, not the upstream's. Any client can do
            // this, so debug.
            Ok(Err(_)) if let Some(fault) = body_fault.cause() => {
                return sent_to(
                    client_fault(ctx, &self.name, fault, h2_client),
                    endpoint,
                    earlier,
                );
            }
            Ok(Err(e)) => self.failed(endpoint, &e),
            // Still waiting for the client's body: a slow client, not a hung
            // endpoint; counted, any client ejected endpoints stalling uploads.
            Err(_) if waiting => {
                let stalled = client_fault(ctx, &self.name, &Fault::Stalled, h2_client);
                return sent_to(stalled, endpoint, earlier);
            }
            Err(_) => self.timed_out(&members, i, !timed_out.load(Ordering::Acquire)),
        };
        // The access log names the endpoint of the latest attempt (and
        // of each earlier one, of a request retried).
        resp = sent_to(resp, endpoint, earlier);
        // Only a head the upstream sent has an upstream time (and is sent
        // on at the shutdown's cut); our own 502/504 for a failed or
        // timed-out attempt has neither.
        if answered {
            abandoned.head_came();
        }
        framing::unsent_length(resp.status(), resp.headers_mut());
        // hotproxy's own version (RFC 9110 §6.2): hyper's server wrote an
        // HTTP/1.0 backend's, and closed an HTTP/1.1 client's connection.
        *resp.version_mut() = Version::HTTP_11;
        // The listener checks the switch and runs the tunnel
        // (proxy::tunnel): Upgrade stays, with `Connection: upgrade`; the
        // backend's other hop-by-hop fields go, as from any response.
        if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            strip_hop_by_hop(resp.headers_mut(), true, Message::Response);
            return resp;
        }
        let named = strip_hop_by_hop(resp.headers_mut(), false, Message::Response);
        crate::proxy::trailers::lose_nominated(resp, named)
    }

    /// Send `req` on a leased connection; once more on a new connection
    /// when the first attempt provably lost nothing, and over HTTP/2 once
    /// again when that one left it unprocessed too (see the module doc).
    /// On failure the request comes back when sending it elsewhere is safe
    /// (`may_retry`: `retries` allow another attempt, so a copy of a
    /// request that can be replayed is worth keeping: re-resolution may add
    /// an endpoint while it is in flight; `elsewhere`: another endpoint
    /// takes it, asked at most once, the caller taking that retry as it
    /// answers). `check`: an
    /// active check, which never waits behind other dials. `step`: set when
    /// the failure is a request left unprocessed that counts as a step in
    /// the endpoint's run of them (`StreamGuard::unprocessed_step`).
    /// `count`: the request in flight, taken by the response's body.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        mut req: Request<ClientBody>,
        path: PathAndQuery,
        may_retry: bool,
        elsewhere: &(dyn Fn() -> bool + Sync),
        timed_out: &AtomicBool,
        step: &AtomicBool,
        until: tokio::time::Instant,
        check: bool,
        count: &mut Option<crate::upstream::members::InFlight>,
    ) -> Result<Response<ResponseBody>, (Failure, Option<Request<ClientBody>>)> {
        // Sends again (`Resends`) on a new connection, and on any (that one
        // included) of a request refused where it still serves: a new one
        // only waited out `connect_timeout` for the slot the pooled ones
        // kept, the limit's `504`. `fresh`: this send is on a new one;
        // `earlier`: what the sends before it leave to it (`Earlier`).
        let (mut resends, mut fresh) = (Resends::default(), false);
        let mut earlier = Earlier::default();
        loop {
            // A check sent again dials as a check does: past the slot
            // limit if need be (`Want::CheckAgain`).
            let want = match (fresh, check) {
                (true, true) => Want::CheckAgain,
                (true, false) => Want::Fresh,
                (false, true) => Want::Check,
                (false, false) => Want::Any,
            };
            let lease = match endpoint.checkout(want, &mut earlier, until).await {
                Ok(lease) => lease,
                // Out of descriptors here: another endpoint fails alike.
                Err(e @ DialError::LocalResources(_)) => return Err((Failure::Dial(e), None)),
                // Never sent: it may go anywhere else.
                Err(e) => return Err((Failure::Dial(e), Some(req))),
            };
            let (err, copy, reused) = match lease {
                Lease::H1(mut c) => {
                    // Origin form: the path alone (RFC 9112 §3.2.1).
                    *req.uri_mut() = Uri::from(path.clone());
                    let fields = Fields::of(req.headers());
                    let same = !stand_in_host(&mut req, endpoint, fields.host) && !fields.te;
                    fields.name_te(req.headers_mut());
                    // Kept only where a replay may be needed: an idempotent
                    // request whose body can be sent twice (none, or read
                    // whole), on a reused connection the sends again allow,
                    // or on any another endpoint may take it. On a reused
                    // one any other, for none of it reaching the socket.
                    let reused = c.reused();
                    let again = !fresh && reused && resends.on_new(false);
                    let fields = same.then_some(fields.bytes);
                    let copy = ((may_retry || again) && replayable(&req))
                        .then(|| Kept::of(&req, fields))
                        .or_else(|| Kept::unwritten(&req, reused, fields));
                    // hyper's HTTP/1.1 client frames a GET or HEAD body of
                    // unknown length as none: the upstream got a bare GET
                    // and the connection, the body unsent, was closed. Told
                    // `chunked` it sends it so, as it does other methods'.
                    if req.body().unknown_length() {
                        req.headers_mut().insert(
                            header::TRANSFER_ENCODING,
                            HeaderValue::from_static("chunked"),
                        );
                    }
                    let sent = req.body().sent();
                    match c.send(req).await {
                        // Not forwarded, and its connection (whose next
                        // bytes may be this body's rest) closed, not pooled.
                        Ok(resp) if let Some(why) = framing::refused(&resp) => {
                            drop((resp, c));
                            return Err((Failure::Framing(why), None));
                        }
                        Ok(resp) => {
                            let (head, b) = resp.into_parts();
                            let mut b =
                                LeasedBody::h1(b, c, endpoint, sent, &self.read, count.take());
                            return early(&mut b).await.map(|()| answer(head, b));
                        }
                        Err(e) => (e, copy.and_then(|k| k.request(&c, &path)), reused),
                    }
                }
                Lease::H2 {
                    mut send,
                    stream,
                    new,
                } => {
                    // A stand-in from an earlier attempt on another
                    // endpoint must not name that one in `:authority`.
                    let host = req.headers().contains_key(header::HOST);
                    stand_in_host(&mut req, endpoint, host);
                    *req.uri_mut() = absolute(endpoint, &path, req.headers());
                    // Framing an HTTP/1.1 attempt that never sent it added.
                    if req.body().unknown_length() {
                        req.headers_mut().remove(header::TRANSFER_ENCODING);
                    }
                    // A refused stream makes any request safe again, if its
                    // body can be sent twice: kept for another endpoint, or
                    // a new connection to this one (a shared connection is
                    // a reused one).
                    let more = may_retry || resends.more();
                    let copy = (more && req.body().can_replay()).then(|| copy_of(&req));
                    // `:authority` alone carries it on the wire, as Envoy
                    // sends it: nginx answers a `host` field beside it 400
                    // ("client sent duplicate host header"). Taken off after
                    // the copy, which another attempt may send over HTTP/1.1.
                    let host = req.headers_mut().remove(header::HOST);
                    // An HTTP/1.1 attempt's `te` (`hop::name_te`), replayed.
                    req.headers_mut().remove(header::CONNECTION);
                    let unanswered = Unanswered {
                        stream: &stream,
                        timed_out,
                    };
                    let body = req.body().sent();
                    let sent = send.try_send_request(req).await;
                    // Answered (or failed): no longer the connection's silence.
                    std::mem::forget(unanswered);
                    if sent.is_ok() {
                        stream.answered();
                    }
                    match sent {
                        // hyper's HTTP/1.1 parser holds a response to this
                        // many fields; its HTTP/2 client does not count.
                        // Any body still sent is cut (pipe::Response).
                        Ok(resp) if resp.headers().len() > MAX_RESPONSE_FIELDS => {
                            pipe::watch(body, stream, &self.name, pipe::Response::Failed);
                            return Err((Failure::TooManyFields, None));
                        }
                        Ok(resp) if let Some(why) = framing::refused(&resp) => {
                            pipe::watch(body, stream, &self.name, pipe::Response::Failed);
                            return Err((Failure::Framing(why), None));
                        }
                        Ok(resp) => {
                            let (head, b) = padding::trimmed_head(resp).into_parts();
                            let mut body =
                                LeasedBody::h2(b, stream, body, &self.read, count.take());
                            return early(&mut body).await.map(|()| answer(head, body));
                        }
                        Err(mut e) => {
                            // Sent again, and whether to this endpoint too.
                            let unsent = e.take_message();
                            let never_written = unsent.is_some();
                            let (mut serving, mut beside, mut held) = (false, None, false);
                            let (again, here) = match unsent {
                                Some(mut unsent) => {
                                    if let Some(host) = host {
                                        unsent.headers_mut().insert(header::HOST, host);
                                    }
                                    (Some(unsent), true)
                                }
                                // Its connection takes no new request
                                // after a GOAWAY, nor after a refusal unless
                                // it serves others (`StreamGuard::refused`).
                                None if unprocessed(e.error()) => {
                                    if refused_stream(e.error()) {
                                        (serving, beside, held) = endpoint.refused(&stream, check);
                                    } else {
                                        stream.retire_refused();
                                    }
                                    (copy, true)
                                }
                                // A new connection closed on this very
                                // request: the endpoint may have failed on
                                // it. Not this one again; another may take
                                // it, as over HTTP/1.1.
                                // Dropped by a connection a GOAWAY ended
                                // while its stream waited to open: alike.
                                None => {
                                    let closed = closed_before_response(e.error())
                                        || dispatch_gone(e.error(), send.is_closed());
                                    (copy.filter(|c| idempotent(c.method()) && closed), !new)
                                }
                            };
                            let e = e.into_error();
                            // A connection that failed on TLS (our client certificate
                            // refused) is the cause, whatever hyper says of the request it
                            // dropped ("operation was canceled", "dispatch task is gone");
                            // a new connection to the same endpoint fails alike.
                            let tls = stream.tls_error().cloned();
                            // Thrice with room on another, no slot free (the limit's `504`).
                            let room = beside.is_some() && !endpoint.slot_free();
                            let on_any = resends.on_any(serving, beside.is_some(), room);
                            match again {
                                // Another endpoint takes it (send_balanced); with none, a new
                                // connection to this one, twice at most: the endpoint may be
                                // restarting, and a new connection to a pod on its way down may
                                // leave it unprocessed too (`Resends`); none while the refusing
                                // one holds its slot, save a check's own past the limit.
                                Some(again)
                                    if here
                                        && tls.is_none()
                                        && (on_any || resends.on_new(held))
                                        && !elsewhere() =>
                                {
                                    let what = if on_any {
                                        "request not processed; retrying on any connection"
                                    } else {
                                        "request not processed; retrying on a new connection"
                                    };
                                    self.resending(endpoint, check, &e, what);
                                    req = again;
                                    resends.count(on_any);
                                    fresh = !on_any;
                                    earlier.skip = beside.filter(|_| on_any);
                                    continue;
                                }
                                again => {
                                    // Never written: the endpoint never saw it (its `GOAWAY`
                                    // read as the request was handed over), no failure of its.
                                    // A check's is active health's to judge.
                                    let left = !check
                                        && tls.is_none()
                                        && (never_written || unprocessed(&e));
                                    step.store(
                                        left && stream.unprocessed_step(),
                                        Ordering::Release,
                                    );
                                    let failure = match tls {
                                        Some(tls) => Failure::ConnectionTls(tls),
                                        None if never_written => Failure::Unsent(e),
                                        None => Failure::Request(e),
                                    };
                                    return Err((failure, again));
                                }
                            }
                        }
                    }
                }
            };
            // Within the budget an HTTP/2 send keeps to (`Resends`): an
            // endpoint whose connections come up HTTP/2 and HTTP/1.1 (a
            // balancer before mixed pods) had a request its HTTP/2 ones
            // refused four times sent on an idle HTTP/1.1 one, closed
            // before the head, and once more on a new one: a sixth send.
            // Spent, one a reused connection hands back unwritten is no
            // failure of the endpoint's (`h1_spent`).
            if fresh || !resends.on_new(false) {
                return Err(h1_spent(err, copy, reused));
            }
            let (again, err, what) = h1_again(err, copy, reused)?;
            req = again;
            self.resending(endpoint, check, &err, what);
            resends.count(false);
            fresh = true;
        }
    }

    /// A request is sent again on a new connection to the same endpoint
    /// (see the module doc): said, and counted unless it is a `check`.
    fn resending(&self, endpoint: &Endpoint, check: bool, error: &hyper::Error, what: &str) {
        debug!(upstream = %self.name, server = %endpoint.dialled_url, %error, "{what}");
        if !check {
            metrics::upstream_resend(&self.name);
        }
    }

    /// Map a failure to 502/504, count it and log its cause once, unless the shutdown cut it (`drain::cutting`).
    fn failed(&self, endpoint: &Endpoint, e: &Failure) -> Response<ResponseBody> {
        let (reason, description, status) = diagnose(e);
        if !crate::proxy::drain::cutting() {
            metrics::upstream_error(&self.name, reason);
            warn!(upstream = %self.name, server = %endpoint.dialled_url, reason, error = %description, "upstream request failed");
        }
        let msg = match (reason, status) {
            ("connection_limit", _) => "no upstream connection free",
            ("local_resources", _) => "proxy out of resources to connect upstream",
            (_, StatusCode::GATEWAY_TIMEOUT) => "upstream timed out",
            _ => "upstream unavailable",
        };
        error_response(status, msg)
    }
}

/// The status an answer counts as for the endpoint: a `101` to a request
/// that asked for no upgrade (`accept` `None`), to a protocol other than
/// the one tunnelled, or without the request key's `Sec-WebSocket-Accept`,
/// is refused before the client sees it (502, `protocol`), so it is the
/// endpoint's 502 and a failure for passive health, as any malformed
/// answer is; it used to count as a success and as a `101`.
pub(super) fn switch_checked<B>(resp: &Response<B>, accept: Option<&Accept>) -> StatusCode {
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS
        && !accept.is_some_and(|a| crate::proxy::tunnel::switched_to_tunnelled(resp.headers(), a))
    {
        return StatusCode::BAD_GATEWAY;
    }
    status
}

/// Marks a `Host` hotproxy wrote in for a request that came without one,
/// so a retry on another endpoint names that endpoint instead.
#[derive(Clone, Copy)]
pub struct StandInHost;

/// An HTTP/1.1 request must carry `Host` (RFC 9112 §3.2), and backends
/// (nginx, Go, Tomcat, Node) answer 400 without one. A client's HTTP/1.0
/// request, or an HTTP/2 one with neither `:authority` nor `host`, has
/// none to route on: the endpoint's address stands in, as nginx sends
/// `$proxy_host`, in `Host` and so (through [`absolute`]) in an HTTP/2
/// upstream's `:authority`. `host`: it has a `Host`; true when one is written.
fn stand_in_host(req: &mut Request<ClientBody>, endpoint: &Endpoint, host: bool) -> bool {
    if host && req.extensions().get::<StandInHost>().is_none() {
        return false;
    }
    let Ok(host) = http::HeaderValue::from_str(endpoint.authority.as_str()) else {
        return false;
    };
    req.headers_mut().insert(http::header::HOST, host);
    req.extensions_mut().insert(StandInHost);
    true
}

/// `scheme://authority/path` for an HTTP/2 upstream (its pseudo-headers).
///
/// One authority per request (RFC 9113 §8.3.1): `:authority` is the routed
/// authority, which `request::prepare` left in `Host`, so an upstream that
/// routes on `:authority` sees what the client asked for; `Host` itself then
/// stays off the wire. The endpoint's own address stands in only when there
/// is no usable `Host` (HTTP/1.0).
fn absolute(endpoint: &Endpoint, path: &PathAndQuery, headers: &http::HeaderMap) -> Uri {
    let routed = headers
        .get(http::header::HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok());
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(endpoint.scheme.clone());
    parts.authority = Some(routed.unwrap_or_else(|| endpoint.authority.clone()));
    parts.path_and_query = Some(path.clone());
    Uri::from_parts(parts).expect("scheme, authority and path are valid")
}

/// `resp`, for a request whose latest attempt went to `endpoint`, after
/// attempts on `earlier`: the access log's `upstream_addr` names it (and
/// `upstream_attempts` them all, when there were several), also when
/// hotproxy answers for the client's body (its `400`, `408`, `413`, `499`).
fn sent_to(
    mut resp: Response<ResponseBody>,
    endpoint: &Endpoint,
    earlier: Vec<Arc<str>>,
) -> Response<ResponseBody> {
    if crate::access_log::enabled() {
        resp.extensions_mut()
            .insert(crate::proxy::attempts::logged(endpoint, earlier));
    }
    resp
}

/// A short plain-text response generated by the proxy itself.
pub fn error_response(status: StatusCode, msg: &str) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(format!("{msg}\n")))
        .map_err(|never| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // Our pages are plain text; no browser may sniff them into anything else.
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
