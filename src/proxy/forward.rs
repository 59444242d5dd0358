//! Forwarding one request over an endpoint's pool, retry when nothing was lost, 400/502/504 mapping.
//!
//! Each configured server is an [`Endpoint`] with its own pool
//! ([`crate::upstream`]). New connections load the upstream's
//! `ClientConfig` snapshot once each, so a rotated client certificate or CA
//! is used from the next connection on; `drain_on_rotation` additionally
//! closes the idle connections made with the old material.
//!
//! A request that fails on a pooled connection is sent once more, on a new
//! connection, when that cannot repeat anything: the request was never
//! written, or the reused connection closed before any response byte and
//! the request is idempotent and bodyless (an upstream closing an idle
//! keep-alive connection just as it is reused).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use rustls::ClientConfig;
use tracing::{debug, warn};

use crate::config::UpstreamConfig;
use crate::identity::Identity;
use crate::metrics;
use crate::proxy::body::ClientBody;
use crate::proxy::edge::{BytesIn, UpstreamAddr};
use crate::proxy::headers::{rewrite_request_headers, strip_hop_by_hop};
use crate::upstream::conn::{DialError, Dialer};
use crate::upstream::endpoint::{Endpoint, Lease, LeasedBody};

pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// What the forwarder needs to know about the client connection.
pub struct RequestContext {
    pub listener: Arc<str>,
    /// When it changes (a PROXY header), set `client_ip` again.
    pub client_addr: SocketAddr,
    /// A verified client certificate (only for verifying client-auth modes).
    pub client_cert: Option<Arc<Identity>>,
    pub tls_sni: Option<Arc<str>>,
    /// `TLSv1.3` / `TLSv1.2`, for the access log.
    pub tls_version: Option<&'static str>,
    /// Whether the handshake resumed an earlier session.
    pub resumed: bool,
    /// With per-entry client auth: the listener's per-entry configs and
    /// the position of the entry this connection's SNI selected.
    pub entry: Option<(Arc<crate::tls::per_name::PerName>, usize)>,
    /// `client_addr`'s IP as an `X-Forwarded-For` element
    /// ([`client_ip_value`]), formatted once per connection rather than per
    /// request.
    pub client_ip: HeaderValue,
}

/// `addr`'s IP as a header value, for [`RequestContext::client_ip`].
pub fn client_ip_value(addr: SocketAddr) -> HeaderValue {
    let v = HeaderValue::from_str(&addr.ip().to_string())
        .expect("an IP address is a valid header value");
    // The first clone of bytes made from a Vec moves them to a shared,
    // reference-counted block; doing it here keeps it off the first request.
    drop(v.clone());
    v
}

/// One configured upstream: its endpoints and TLS snapshot.
pub struct Upstream {
    pub name: Arc<str>,
    pub config: UpstreamConfig,
    /// The snapshot new connections handshake with; swapped by the reloader.
    tls: Arc<ArcSwap<ClientConfig>>,
    endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
}

/// Why a forwarded request got no response.
enum Failure {
    /// No connection: dial, TLS, slot.
    Dial(DialError),
    /// The request on an established connection.
    Request(hyper::Error),
}

impl Upstream {
    pub fn new(config: UpstreamConfig, tls: Arc<ClientConfig>) -> Arc<Upstream> {
        let tls = Arc::new(ArcSwap::new(tls));
        let dialer = Dialer {
            tls: tls.clone(),
            server_name: config.tls.server_name.clone().map(Arc::from),
            connect_timeout: config.connect_timeout,
        };
        let endpoints = config
            .servers
            .iter()
            .filter_map(|s| {
                Endpoint::new(
                    s.url.clone(),
                    s.https,
                    s.host.clone(),
                    s.port,
                    dialer.clone(),
                    config.max_connections_per_server,
                    config.max_idle_connections,
                )
                .map(Arc::new)
            })
            .collect();
        Arc::new(Upstream {
            name: config.name.as_str().into(),
            config,
            tls,
            endpoints,
            next: AtomicUsize::new(0),
        })
    }

    /// New upstream connections use `tls` from now on; with
    /// `drain_on_rotation` the idle pooled connections made with the old
    /// material are closed (busy ones when their requests end).
    pub fn set_tls(&self, tls: Arc<ClientConfig>) {
        self.tls.store(tls);
        if self.config.tls.drain_on_rotation {
            for e in &self.endpoints {
                e.pool.drain();
            }
            debug!(upstream = %self.name, "pooled connections drained after rotation");
        }
    }

    /// Forward one request and return the upstream's response, or a
    /// 502/504 describing why there is none.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Response<ResponseBody> {
        if self.endpoints.is_empty() {
            metrics::upstream_error(&self.name, "no_servers");
            return error_response(StatusCode::BAD_GATEWAY, "upstream has no servers");
        }
        let endpoint =
            &self.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len()];
        let mut resp = self.forward_to(endpoint, req, ctx).await;
        if crate::access_log::enabled() {
            resp.extensions_mut()
                .insert(UpstreamAddr(endpoint.url.clone()));
        }
        resp
    }

    async fn forward_to(
        &self,
        endpoint: &Arc<Endpoint>,
        mut req: Request<Incoming>,
        ctx: &RequestContext,
    ) -> Response<ResponseBody> {
        let upgrade = is_upgrade(&req);
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
        let (body, body_fault) = ClientBody::new(body);
        // The access log counts the request body's bytes as they go upstream.
        let body = body.counted(parts.extensions.remove::<BytesIn>());
        let req = Request::from_parts(parts, body);
        let sent = async {
            if upgrade {
                self.send_upgrade(endpoint, req, path)
                    .await
                    .map(|r| r.map(|b| b.boxed()))
            } else {
                self.send(endpoint, req, path).await
            }
        };
        let result = tokio::time::timeout(self.config.request_timeout, sent).await;
        let mut resp = match result {
            Ok(Ok(resp)) => resp,
            // The client's body broke (bad chunk, h2 stream error): its
            // fault, not the upstream's. Any client can do this, so debug.
            Ok(Err(_)) if let Some(cause) = body_fault.cause() => {
                debug!(listener = %ctx.listener, peer = %ctx.client_addr, upstream = %self.name, error = cause, "client request body failed");
                return error_response(StatusCode::BAD_REQUEST, "malformed request body");
            }
            Ok(Err(e)) => return self.failed(endpoint, &e),
            Err(_) => {
                metrics::upstream_error(&self.name, "timeout");
                warn!(upstream = %self.name, server = %endpoint.url, reason = "timeout", error = "no response within request_timeout", "upstream request failed");
                return error_response(StatusCode::GATEWAY_TIMEOUT, "upstream timed out");
            }
        };
        // The listener checks the switch and runs the tunnel (proxy::tunnel).
        if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return resp;
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        resp
    }

    /// Send `req` on a leased connection; once more on a new connection
    /// when the first attempt provably lost nothing (see the module doc).
    async fn send(
        &self,
        endpoint: &Arc<Endpoint>,
        mut req: Request<ClientBody>,
        path: PathAndQuery,
    ) -> Result<Response<ResponseBody>, Failure> {
        let mut fresh = false;
        loop {
            let lease = endpoint.checkout(fresh).await.map_err(Failure::Dial)?;
            let (err, copy) = match lease {
                Lease::H1(mut c) => {
                    // Origin form: the path alone (RFC 9112 §3.2.1).
                    *req.uri_mut() = Uri::from(path.clone());
                    // The head is copied only where a replay may be needed:
                    // an idempotent, bodyless request on a reused connection.
                    let copy = (!fresh && c.reused() && replayable(&req)).then(|| head_copy(&req));
                    match c.send(req).await {
                        Ok(resp) => {
                            return Ok(resp.map(|b| LeasedBody::h1(b, c, endpoint.clone()).boxed()));
                        }
                        Err(e) => (e, copy),
                    }
                }
                Lease::H2(mut send, stream) => {
                    *req.uri_mut() = absolute(endpoint, &path, req.headers());
                    match send.try_send_request(req).await {
                        Ok(resp) => return Ok(resp.map(|b| LeasedBody::h2(b, stream).boxed())),
                        Err(e) => (e, None),
                    }
                }
            };
            let mut err = err;
            if fresh {
                return Err(Failure::Request(err.into_error()));
            }
            if let Some(unsent) = err.take_message() {
                debug!(upstream = %self.name, server = %endpoint.url, error = %err.error(), "request not sent; retrying on a new connection");
                req = unsent;
            } else if let Some(copy) = copy
                && closed_before_response(err.error())
            {
                debug!(upstream = %self.name, server = %endpoint.url, error = %err.error(), "reused connection closed; retrying on a new connection");
                req = copy;
            } else {
                return Err(Failure::Request(err.into_error()));
            }
            fresh = true;
        }
    }

    /// An `Upgrade` request, on a new HTTP/1.1 connection of its own.
    async fn send_upgrade(
        &self,
        endpoint: &Endpoint,
        mut req: Request<ClientBody>,
        path: PathAndQuery,
    ) -> Result<Response<Incoming>, Failure> {
        let mut send = endpoint.upgrade_connection().await.map_err(Failure::Dial)?;
        *req.uri_mut() = Uri::from(path);
        send.send_request(req).await.map_err(Failure::Request)
    }

    /// Map a failure to 502/504, count it and log its cause once.
    fn failed(&self, endpoint: &Endpoint, e: &Failure) -> Response<ResponseBody> {
        let (reason, description, status) = diagnose(e);
        metrics::upstream_error(&self.name, reason);
        warn!(upstream = %self.name, server = %endpoint.url, reason, error = %description, "upstream request failed");
        let msg = match (reason, status) {
            ("connection_limit", _) => "no upstream connection free",
            (_, StatusCode::GATEWAY_TIMEOUT) => "upstream timed out",
            _ => "upstream unavailable",
        };
        error_response(status, msg)
    }
}

/// `scheme://authority/path` for an HTTP/2 upstream (its pseudo-headers).
///
/// One authority per request (RFC 9113 §8.3.1): `:authority` is the routed
/// authority, which `request::prepare` left in `Host`, so an upstream that
/// routes on `:authority` sees what the client asked for. The endpoint's own
/// address stands in only when there is no usable `Host` (HTTP/1.0).
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

/// Safe to send twice (RFC 9110 §9.2.2) and nothing to stream again.
fn replayable(req: &Request<ClientBody>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) && req.body().is_end_stream()
}

/// The head of a bodyless request, to send it again.
fn head_copy(req: &Request<ClientBody>) -> Request<ClientBody> {
    let mut copy = Request::new(ClientBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// The connection ended before a response came: closed, reset, canceled.
fn closed_before_response(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = err.source();
    }
    false
}

/// The cause of a failed upstream request: metric reason, description, status.
fn diagnose(e: &Failure) -> (&'static str, String, StatusCode) {
    match e {
        Failure::Dial(d) => match d {
            DialError::Limit(limit) => (
                "connection_limit",
                limit.to_string(),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            DialError::Timeout => (
                "connect_timeout",
                "connect timed out".into(),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            DialError::Refused => (
                "connect_refused",
                "connection refused".into(),
                StatusCode::BAD_GATEWAY,
            ),
            DialError::Tls(tls) => {
                let (reason, desc) = crate::tls::client::classify(tls);
                (reason, desc, StatusCode::BAD_GATEWAY)
            }
            DialError::Io(_) | DialError::ServerName(_) => {
                ("connect_error", d.to_string(), StatusCode::BAD_GATEWAY)
            }
            DialError::Handshake(_) => ("protocol", d.to_string(), StatusCode::BAD_GATEWAY),
        },
        Failure::Request(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(err) = source {
                if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                    let (reason, desc) = crate::tls::client::classify(tls);
                    return (reason, desc, StatusCode::BAD_GATEWAY);
                }
                if let Some(io) = err.downcast_ref::<std::io::Error>() {
                    if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
                    {
                        let (reason, desc) = crate::tls::client::classify(tls);
                        return (reason, desc, StatusCode::BAD_GATEWAY);
                    }
                    return (
                        "protocol",
                        format!("upstream connection failed: {io}"),
                        StatusCode::BAD_GATEWAY,
                    );
                }
                source = err.source();
            }
            (
                "protocol",
                format!("upstream request failed: {e}"),
                StatusCode::BAD_GATEWAY,
            )
        }
    }
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

/// An upgrade hotproxy tunnels (see `proxy::tunnel`); any other `Upgrade`
/// is stripped as hop-by-hop and the request forwarded as an ordinary one.
fn is_upgrade<B>(req: &Request<B>) -> bool {
    crate::proxy::tunnel::is_tunnelled(req.version(), req.headers())
}
