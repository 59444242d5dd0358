//! Per-request duties at the edge: request id, route `allow`, client-certificate headers, the access-log line.
//!
//! [`Exchange::begin`] runs before routing and [`Exchange::finish`] on
//! every response (proxied or generated), so each request gets an id, its
//! `X-Request-Id` back, and exactly one access-log line; for a `101` that
//! starts a tunnel, [`Exchange::tunnelled`] hands the line to the tunnel,
//! which writes it when the tunnel ends.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::debug;

use crate::access_log::body::Logged;
use crate::access_log::tunnel::TunnelLine;
use crate::access_log::{self, RequestLine};
use crate::identity::AllowList;
use crate::metrics::{self, RouteMetrics};
use crate::proxy::client_cert::{self, ForwardClientCert};
use crate::proxy::forward::{RequestContext, ResponseBody, error_response};
use crate::proxy::request_id::{self, RequestIdConfig};
use crate::tls::per_name::Entries;

/// The access log's count of a request's body bytes, carried to the
/// forwarder as a request extension (the body is wrapped there).
#[derive(Clone, Debug)]
pub struct BytesIn(pub Arc<AtomicU64>);

impl BytesIn {
    pub fn add(&self, n: usize) {
        self.0
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A listener's edge settings; swapped by the reloader with the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgePolicy {
    pub forward_client_cert: ForwardClientCert,
    /// `access_log: false` on the listener turns its lines off.
    pub access_log: bool,
    pub request_id: RequestIdConfig,
}

impl EdgePolicy {
    /// A listener's edge settings from its configuration.
    pub fn of(l: &crate::config::ListenerConfig) -> EdgePolicy {
        EdgePolicy {
            forward_client_cert: l.forward_client_cert,
            access_log: l.access_log,
            request_id: l.request_id,
        }
    }
}

impl Default for EdgePolicy {
    fn default() -> Self {
        EdgePolicy {
            forward_client_cert: ForwardClientCert::Headers,
            access_log: true,
            request_id: RequestIdConfig::default(),
        }
    }
}

/// A route's narrowing of the listener: its own `allow` rules and
/// `allow_from` ranges, and its `forward_client_cert` and `max_body_bytes`
/// overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// A request must come from a certificate matching one of these
    /// (on top of the listener's rules, checked in the handshake).
    pub allow: Option<Arc<AllowList>>,
    pub forward_client_cert: Option<ForwardClientCert>,
    pub max_body_bytes: Option<u64>,
    /// The client addresses (after PROXY protocol) this route serves.
    pub allow_from: Option<Arc<[ipnet::IpNet]>>,
}

impl RoutePolicy {
    /// Why the route's `allow_from` or `allow` refuse a client (its address
    /// after PROXY protocol, its verified certificate): the `authz` reason
    /// and what is refused (`address`, `certificate`); `None` if they let it
    /// in. Checked for every request, and again for an open tunnel when the
    /// listener's routes change ([`crate::proxy::readmit::Routed`]).
    pub fn refuses(&self, ctx: &RequestContext) -> Option<(&'static str, &'static str)> {
        if let Some(from) = &self.allow_from
            && !crate::proxy::proxy_protocol::contains(from, ctx.client_addr.ip())
        {
            return Some(("source_not_allowed", "address"));
        }
        if let Some(allow) = &self.allow {
            let admitted = ctx
                .client_cert
                .as_deref()
                .is_some_and(|id| allow.permits(id));
            if !admitted {
                return Some(("route_not_allowed", "certificate"));
            }
        }
        None
    }
}

/// What a response had to do with an upstream, for the access log; set by
/// the forwarder as a response extension: the endpoint of the last
/// attempt (`upstream_addr`) and, only for a request sent to more than
/// one endpoint, each attempt's in order (`upstream_attempts`; none, and
/// nothing allocated, for a request with one attempt).
#[derive(Clone, Debug)]
pub struct UpstreamAddr(pub Arc<str>, pub Option<Box<[Arc<str>]>>);

impl UpstreamAddr {
    /// `to`, which hotproxy answers instead of `from`, with `from`'s
    /// address: the access log's `upstream_addr` beside its `upstream_ms`.
    pub fn carried<B, C>(mut from: Response<B>, mut to: Response<C>) -> Response<C> {
        if let Some(addr) = from.extensions_mut().remove::<UpstreamAddr>() {
            to.extensions_mut().insert(addr);
        }
        to
    }
}

/// The endpoint of the attempt in flight when its request's future was
/// dropped (the client gone): set by the forwarder only then, as the
/// attempt is dropped, for the `499` line's `upstream_addr` (and
/// `upstream_attempts`, of a request retried), or by the listener for a
/// request the shutdown cuts after its forwarding failed. Nothing is
/// stored, nor allocated, for a request that gets its response.
#[derive(Debug, Default)]
pub struct Abandoned {
    at: std::sync::OnceLock<UpstreamAddr>,
    /// Set by the forwarder when the response head came from the upstream:
    /// the access log's `upstream_ms` is "until the upstream's response
    /// head", which hotproxy's own answers (a client body fault, a failed
    /// or timed-out attempt) never had, and a head that came is sent on
    /// when the shutdown cuts. Kept here, access log or not: a response
    /// extension set only with the access log on made the cut's count
    /// (its `499`) depend on it.
    head: std::sync::atomic::AtomicBool,
}

impl Abandoned {
    /// The attempt in flight went to `endpoint` (its dialled URL, with
    /// every attempt's when there were several).
    pub fn at(&self, endpoint: UpstreamAddr) {
        let _ = self.at.set(endpoint);
    }

    /// The response head came from the upstream.
    pub fn head_came(&self) {
        self.head.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the response head came from the upstream.
    pub fn answered(&self) -> bool {
        self.head.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A request's `Referer` and `User-Agent` as its client sent them, for a
/// `combined` line (none otherwise: JSON has no such fields). Taken before
/// the hop-by-hop pass, which removes the fields a `Connection` names:
/// `Connection: close, user-agent` hid the user agent from the log.
#[derive(Default)]
pub struct Sent {
    referer: Option<Box<[u8]>>,
    user_agent: Option<Box<[u8]>>,
}

impl Sent {
    /// Copied from `headers` when `edge` writes `combined` lines.
    pub fn of(edge: &EdgePolicy, headers: &http::HeaderMap) -> Sent {
        if !(edge.access_log && access_log::enabled() && access_log::combined()) {
            return Sent::default();
        }
        // The bytes as sent, escaped when written: a value with a byte
        // outside ASCII is no valid text, yet must not vanish from the
        // log (one added byte hid a client's user agent).
        let raw = |v: Option<&HeaderValue>| v.map(|v| Box::from(v.as_bytes()));
        Sent {
            referer: raw(headers.get(http::header::REFERER)),
            user_agent: raw(headers.get(http::header::USER_AGENT)),
        }
    }
}

/// One request's edge bookkeeping.
pub struct Exchange {
    started: Instant,
    request_id: HeaderValue,
    /// `None` when the access log is off for this request.
    log: Option<LineAndBody>,
}

/// A request's line, and its body's byte count (`None`: no body).
type LineAndBody = (Box<RequestLine>, Option<Arc<AtomicU64>>);

impl Exchange {
    /// Settle the request id and, when the access log is on, note what the
    /// log line needs from the request head and start counting its body.
    /// `client_id`: the request may carry an `X-Request-Id` (false: it
    /// has none, and none is looked for).
    /// `sent`: the request's referer and user agent, taken before its
    /// hop-by-hop pass ([`Sent::of`]).
    pub fn begin(
        edge: &EdgePolicy,
        ctx: &RequestContext,
        req: &mut Request<Incoming>,
        started: Instant,
        client_id: bool,
        sent: Sent,
    ) -> Exchange {
        let trusted = edge.request_id.trust_client && client_id;
        let request_id = request_id::settle(req.headers_mut(), trusted);
        let log = (edge.access_log && access_log::enabled()).then(|| {
            let h = req.headers();
            let line = Box::new(RequestLine {
                ts: SystemTime::now(),
                listener: ctx.listener.clone(),
                sni: ctx.tls_sni.clone(),
                client_addr: ctx.client_addr,
                identity: ctx
                    .client_cert
                    .as_deref()
                    .map(access_log::LoggedIdentity::of),
                method: req.method().clone(),
                host: logged_host(req).map(Box::from),
                path: logged_path(req),
                protocol: req.version(),
                status: 0,
                bytes_in: 0,
                bytes_out: 0,
                duration: Duration::ZERO,
                upstream: None,
                upstream_addr: None,
                upstream_attempts: None,
                upstream_time: None,
                // A client's, copied: the line may wait long behind a
                // slow log reader, and must not pin the request head.
                request_id: if trusted {
                    request_id::detached(&request_id)
                } else {
                    request_id.clone()
                },
                trace_id: request_id::trace_id(h).map(str::to_owned),
                tls_version: ctx.tls_version,
                resumed: ctx.resumed,
                authz: "allowed",
                referer: sent.referer,
                user_agent: sent.user_agent,
            });
            // A request without a body (most GETs) needs no counter.
            let counter = (!hyper::body::Body::is_end_stream(req.body()))
                .then(|| Arc::new(AtomicU64::new(0)));
            (line, counter)
        });
        if let Some((_, Some(counter))) = &log {
            req.extensions_mut().insert(BytesIn(counter.clone()));
        }
        Exchange {
            started,
            request_id,
            log,
        }
    }

    /// 421 Misdirected Request when the request's host belongs to another
    /// certificate entry than the one the connection's SNI selected, with
    /// another `client_auth` (as nginx: only where the host's server
    /// verifies clients differently). Another entry's host under the same
    /// `client_auth` is served: a client without SNI, or an HTTP/2 client
    /// coalescing hosts onto one connection, is let in by it exactly as by
    /// the connection's entry. "The same" holds in the snapshot the
    /// connection shook hands under and in the one in force (`now`): a
    /// reload can part the two entries. Let through, such a request gives
    /// that entry's position and the admission generation read before the
    /// check: what it opens (a tunnel, a response in flight) is checked again against the host's
    /// entry when the rules change, as the connection is against its own
    /// ([`crate::proxy::readmit`]).
    pub fn misdirected<B>(
        &mut self,
        ctx: &RequestContext,
        req: &Request<B>,
        listener: &crate::proxy::listener::Listener,
    ) -> Result<Option<(usize, u64)>, Box<Response<ResponseBody>>> {
        let Some((entries, at)) = ctx.entry.as_ref() else {
            return Ok(None);
        };
        let host = request_host(req);
        let entry_of = |p: &Entries| host.map_or(0, |h| p.position_of_host(h));
        let host_at = entry_of(entries);
        if host_at == *at {
            return Ok(None);
        }
        // Read before the rules are: a change after it is checked again.
        let admission = listener.admission.borrow().generation;
        let same_now = || {
            let now = listener.tls.load();
            (now.per_name.as_deref()).is_some_and(|p| {
                let p = &p.entries;
                p.same_client_auth(entry_of(p), *at)
            })
        };
        if entries.same_client_auth(host_at, *at) && same_now() {
            return Ok(Some((host_at, admission)));
        }
        if let Some((line, _)) = &mut self.log {
            line.authz = "misdirected";
        }
        Err(Box::new(error_response(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected request: this host is not served on this connection's server name",
        )))
    }

    /// hotproxy refused the request itself (before routing, or the
    /// redirect listener's `400`): its line's `authz` says why, not
    /// `allowed`.
    pub fn refused(mut self, why: &'static str) -> Exchange {
        if let Some((line, _)) = &mut self.log {
            line.authz = why;
        }
        self
    }

    /// Apply a route's policy: refuse (403) a client outside the route's
    /// `allow_from`, or one its `allow` does not admit (a client without a
    /// certificate never matches); otherwise write the client-certificate
    /// headers the route or listener asks for (after removing any the
    /// client sent). Returns the refusal.
    pub fn admit(
        &mut self,
        route: &RoutePolicy,
        edge: &EdgePolicy,
        ctx: &RequestContext,
        req: &mut Request<Incoming>,
    ) -> Option<Response<ResponseBody>> {
        if let Some((reason, what)) = route.refuses(ctx) {
            return Some(self.forbidden(ctx, reason, what));
        }
        // The line names the URI SAN the route's rules let the client in by.
        if let (Some(allow), Some(id), Some((line, _))) =
            (&route.allow, ctx.client_cert.as_deref(), &mut self.log)
            && let Some(logged) = &mut line.identity
        {
            *logged = logged.admitted_by(id, allow);
        }
        let mode = route
            .forward_client_cert
            .unwrap_or(edge.forward_client_cert);
        let served = || {
            ctx.served_from
                .served_uris(ctx.served, ctx.tls_sni.as_deref())
        };
        client_cert::apply(req.headers_mut(), mode, ctx.client_cert.as_deref(), &served);
        None
    }

    /// A route's `403` for `reason` (counted in
    /// `hotproxy_client_auth_denied_total`, the access log's `authz`); the
    /// body names what was refused: the client `address` or `certificate`.
    fn forbidden(
        &mut self,
        ctx: &RequestContext,
        reason: &'static str,
        what: &str,
    ) -> Response<ResponseBody> {
        metrics::client_auth_denied(&ctx.listener, reason);
        if let Some((line, _)) = &mut self.log {
            line.authz = reason;
        }
        error_response(
            StatusCode::FORBIDDEN,
            &format!("forbidden: this client {what} may not use this route"),
        )
    }

    /// The request goes to `upstream` now; [`Forwarding::answered`] gives
    /// the exchange back when its response comes.
    pub fn forwarding<'a>(
        self,
        metrics: &'a RouteMetrics,
        upstream: &'a Arc<str>,
    ) -> Forwarding<'a> {
        Forwarding {
            exchange: Some(self),
            metrics,
            upstream,
            abandoned: Abandoned::default(),
        }
    }

    /// The client went away before the request was routed (its future
    /// dropped before it first ran): the line says `499`, with no upstream.
    pub fn gone_unrouted(self) {
        self.gone(None, Abandoned::default());
    }

    /// The client went away before the response: the line says `499`,
    /// naming the endpoint of the attempt in flight, if one had begun.
    fn gone(self, upstream: Option<&Arc<str>>, abandoned: Abandoned) {
        let Some((mut line, bytes_in)) = self.log else {
            return;
        };
        line.status = CLIENT_GONE;
        line.upstream = upstream.cloned();
        if let Some(UpstreamAddr(addr, attempts)) = abandoned.at.into_inner() {
            line.upstream_addr = Some(addr);
            line.upstream_attempts = attempts;
        }
        line.bytes_in = bytes_in.map_or(0, |b| b.load(std::sync::atomic::Ordering::Relaxed));
        line.duration = self.started.elapsed();
        access_log::submit(access_log::Line::Request(line));
    }

    /// The request went to `upstream`; its response head came after `took`
    /// (`None`: hotproxy answered itself, no head came).
    pub fn upstream(&mut self, upstream: &Arc<str>, took: Option<Duration>) {
        if let Some((line, _)) = &mut self.log {
            line.upstream = Some(upstream.clone());
            line.upstream_time = took;
        }
    }

    /// Return the request id to the client and, with the access log on,
    /// submit the line when the response body has been sent.
    pub fn finish(self, mut resp: Response<ResponseBody>) -> Response<ResponseBody> {
        let started = self.started;
        let Some((line, bytes_in)) = self.answer(&mut resp) else {
            return resp;
        };
        resp.map(|b| Logged::new(b, line, bytes_in, started).boxed())
    }

    /// As [`Exchange::finish`] for a `101` whose tunnel starts: the line
    /// goes with the tunnel, which submits it when it ends, with the bytes
    /// it relayed (an empty `101` body has none of its own).
    pub fn tunnelled(self, resp: &mut Response<ResponseBody>) -> Option<TunnelLine> {
        let started = self.started;
        let (line, bytes_in) = self.answer(resp)?;
        Some(TunnelLine::new(line, bytes_in, started))
    }

    /// Set the request id on `resp`; the line, with its status, when the
    /// access log is on.
    fn answer(self, resp: &mut Response<ResponseBody>) -> Option<LineAndBody> {
        resp.headers_mut()
            .insert(request_id::X_REQUEST_ID.clone(), self.request_id);
        let (mut line, bytes_in) = self.log?;
        line.status = resp.status().as_u16();
        if let Some(UpstreamAddr(addr, attempts)) = resp.extensions_mut().remove::<UpstreamAddr>() {
            line.upstream_addr = Some(addr);
            line.upstream_attempts = attempts;
        }
        Some((line, bytes_in))
    }
}

/// nginx's "client closed request": what a request whose client went away
/// before its response head is counted and logged as; so is one hotproxy
/// cuts itself before its head (a graceful close's `shutdown_grace` out,
/// a rapid reset), which has no mark of its own (SPEC §2, access log).
pub const CLIENT_GONE: u16 = 499;

/// An [`Exchange`] while its request is with the upstream. If the client
/// goes away meanwhile, hyper drops the request's future (the HTTP/1.1
/// connection closed, the HTTP/2 stream reset), and with it the upstream
/// request; this still counts the request and writes its line, as `499`.
pub struct Forwarding<'a> {
    exchange: Option<Exchange>,
    metrics: &'a RouteMetrics,
    upstream: &'a Arc<str>,
    /// The endpoint of the attempt dropped with the request, if any.
    abandoned: Abandoned,
}

impl Forwarding<'_> {
    /// Where the forwarder says which endpoint an attempt dropped
    /// unfinished went to.
    pub fn abandoned(&self) -> &Abandoned {
        &self.abandoned
    }

    /// The response came: the exchange goes on.
    pub fn answered(mut self) -> Exchange {
        self.exchange.take().expect("taken only here or on drop")
    }
}

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        let Some(exchange) = self.exchange.take() else {
            return;
        };
        debug!(upstream = %self.upstream, "client went away before the response");
        self.metrics.record(CLIENT_GONE, exchange.started.elapsed());
        exchange.gone(Some(self.upstream), std::mem::take(&mut self.abandoned));
    }
}

/// The host a request is for: `:authority` (h2, absolute-form) or `Host`,
/// without any userinfo: `http::uri::Authority` keeps `user:secret@`, and
/// a `Host` field may carry one too. Its port stays. `None` for a `Host`
/// that is not visible ASCII; [`logged_host`] has its bytes.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .map(without_userinfo)
}

/// What the access log records as the request's host: [`request_host`]'s,
/// as bytes, so a `Host` holding a byte outside ASCII (refused, but logged
/// first) still shows what was sent. Without userinfo, as there.
pub fn logged_host<B>(req: &Request<B>) -> Option<&[u8]> {
    let host = match req.uri().authority() {
        Some(a) => a.as_str().as_bytes(),
        None => req.headers().get(http::header::HOST)?.as_bytes(),
    };
    Some(
        host.iter()
            .rposition(|&b| b == b'@')
            .map_or(host, |at| &host[at + 1..]),
    )
}

/// The access log's `path`: the target's path (no query), or for an
/// authority-form target (`CONNECT b.example.com:443`, refused) its
/// authority, as nginx logs `$request`: its path is empty.
fn logged_path<B>(req: &Request<B>) -> Box<str> {
    match (req.uri().path(), req.uri().authority()) {
        ("", Some(a)) => without_userinfo(a.as_str()).into(),
        (path, _) => path.into(),
    }
}

/// `authority` without a `userinfo@` part.
fn without_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// A refused handshake: counted when client authentication refused it,
/// and given a (rate-limited) access-log line unless the listener has
/// `access_log: false`. `sni`: the name its ClientHello asked for, when
/// it got that far (with client auth per entry, the entry that refused).
/// `accepted`: when the connection was accepted, where the line's
/// `duration_ms` starts.
pub fn handshake_refused(
    live: &crate::proxy::listener::Listener,
    peer: std::net::SocketAddr,
    reason: &'static str,
    sni: Option<Arc<str>>,
    accepted: std::time::Instant,
) {
    let listener = &live.name;
    if matches!(
        reason,
        "not_allowed"
            | "no_client_cert"
            | "unknown_ca"
            | "revoked"
            | "revocation_unknown"
            | "crl_expired"
            | "crl_invalid"
            | "expired"
            | "bad_client_cert"
    ) {
        metrics::client_auth_denied(listener, reason);
    }
    // `access_log: false` covers the listener's refusal lines too, not
    // only its request lines (SPEC: the listener writes no lines).
    if reason != "client_closed" && live.edge.load().access_log {
        access_log::handshake_refused(listener, peer, reason, sni, None, accepted);
    }
}

/// Plain HTTP on a TLS listener, answered `400` in the clear with
/// `body_bytes` of body sent: its (rate-limited) line has that status,
/// unless the listener has `access_log: false`.
pub fn plain_http_answered(
    live: &crate::proxy::listener::Listener,
    peer: std::net::SocketAddr,
    body_bytes: u64,
    accepted: std::time::Instant,
) {
    if live.edge.load().access_log {
        let answered = Some((400, body_bytes));
        access_log::handshake_refused(&live.name, peer, "plain_http", None, answered, accepted);
    }
}
