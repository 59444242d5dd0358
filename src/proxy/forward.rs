//! Pooled upstream client, forwarding one request, 400/502/504 mapping.
//!
//! One hyper-util pooled client per upstream, shared by every client
//! connection, keeping at most `max_idle_connections` idle and
//! `max_connections_per_server` open per server ([`crate::proxy::slots`]). Its
//! connector loads the upstream's `ClientConfig` snapshot once per *new*
//! connection, so a rotated client certificate or CA is used from the next
//! connection on; `drain_on_rotation` additionally swaps in a
//! fresh pool so idle connections made with the old material are closed.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use crate::config::UpstreamConfig;
use crate::identity::Identity;
use crate::metrics;
use crate::proxy::body::ClientBody;
use crate::proxy::edge::{BytesIn, UpstreamAddr};
use crate::proxy::headers::{rewrite_request_headers, strip_hop_by_hop};
use crate::proxy::slots::{ConnectionLimit, Slots};

pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// What the forwarder needs to know about the client connection.
pub struct RequestContext {
    pub listener: Arc<str>,
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
}

type Pool = Client<Connector, ClientBody>;

/// One configured upstream: its servers, TLS snapshot and connection pools.
pub struct Upstream {
    pub name: Arc<str>,
    pub config: UpstreamConfig,
    /// The snapshot new connections handshake with; swapped by the reloader.
    tls: Arc<ArcSwap<ClientConfig>>,
    /// Pooled client for ordinary requests (h2 or h1 per ALPN).
    pool: ArcSwap<Pool>,
    /// Pooled client offering only http/1.1, for `Upgrade` requests
    /// (WebSocket needs an HTTP/1.1 connection end to end).
    upgrade_pool: ArcSwap<Pool>,
    servers: Vec<Target>,
    next: AtomicUsize,
    /// `max_connections_per_server`, shared by both pools and pool swaps.
    slots: Slots,
}

/// A server URL split into the parts a request URI is rebuilt from.
struct Target {
    url: Arc<str>,
    scheme: Scheme,
    authority: Authority,
}

impl Upstream {
    pub fn new(config: UpstreamConfig, tls: Arc<ClientConfig>) -> Arc<Upstream> {
        let tls = Arc::new(ArcSwap::new(tls));
        let servers: Vec<Target> = config
            .servers
            .iter()
            .filter_map(|s| {
                let authority = if s.host.contains(':') {
                    format!("[{}]:{}", s.host, s.port)
                } else {
                    format!("{}:{}", s.host, s.port)
                };
                Some(Target {
                    url: s.url.as_str().into(),
                    scheme: if s.https { Scheme::HTTPS } else { Scheme::HTTP },
                    authority: authority.parse().ok()?,
                })
            })
            .collect();
        let slots = Slots::new(
            config.max_connections_per_server,
            servers.iter().map(|t: &Target| &t.authority),
        );
        let pool = ArcSwap::from_pointee(pool_for(&config, &tls, &slots, false));
        let upgrade_pool = ArcSwap::from_pointee(pool_for(&config, &tls, &slots, true));
        Arc::new(Upstream {
            name: config.name.as_str().into(),
            config,
            tls,
            pool,
            upgrade_pool,
            servers,
            next: AtomicUsize::new(0),
            slots,
        })
    }

    /// New upstream connections use `tls` from now on; with
    /// `drain_on_rotation` the idle pooled connections made with the old
    /// material are closed (the old pools drop once in-flight requests end).
    pub fn set_tls(&self, tls: Arc<ClientConfig>) {
        self.tls.store(tls);
        if self.config.tls.drain_on_rotation {
            self.pool.store(Arc::new(pool_for(
                &self.config,
                &self.tls,
                &self.slots,
                false,
            )));
            self.upgrade_pool.store(Arc::new(pool_for(
                &self.config,
                &self.tls,
                &self.slots,
                true,
            )));
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
        if self.servers.is_empty() {
            metrics::upstream_error(&self.name, "no_servers");
            return error_response(StatusCode::BAD_GATEWAY, "upstream has no servers");
        }
        let target = &self.servers[self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len()];
        let mut resp = self.forward_to(target, req, ctx).await;
        if crate::access_log::enabled() {
            resp.extensions_mut()
                .insert(UpstreamAddr(target.url.clone()));
        }
        resp
    }

    async fn forward_to(
        &self,
        target: &Target,
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
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(target.scheme.clone());
        parts.authority = Some(target.authority.clone());
        parts.path_and_query = Some(path);
        *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path are valid");
        // The pool picks h1 or h2 per connection (ALPN); an HTTP/1.1
        // request is what both accept.
        *req.version_mut() = Version::HTTP_11;

        let (mut parts, body) = req.into_parts();
        let (body, body_fault) = ClientBody::new(body);
        // The access log counts the request body's bytes as they go upstream.
        let body = body.counted(parts.extensions.remove::<BytesIn>());
        let req = Request::from_parts(parts, body);
        let pool = if upgrade {
            self.upgrade_pool.load_full()
        } else {
            self.pool.load_full()
        };
        let result = tokio::time::timeout(self.config.request_timeout, pool.request(req)).await;
        let mut resp = match result {
            Ok(Ok(resp)) => resp,
            // The client's body broke (bad chunk, h2 stream error): its
            // fault, not the upstream's. Any client can do this, so debug.
            Ok(Err(_)) if let Some(cause) = body_fault.cause() => {
                debug!(listener = %ctx.listener, peer = %ctx.client_addr, upstream = %self.name, error = cause, "client request body failed");
                return error_response(StatusCode::BAD_REQUEST, "malformed request body");
            }
            Ok(Err(e)) => return self.failed(target, &e),
            Err(_) => {
                metrics::upstream_error(&self.name, "timeout");
                warn!(upstream = %self.name, server = %target.url, reason = "timeout", error = "no response within request_timeout", "upstream request failed");
                return error_response(StatusCode::GATEWAY_TIMEOUT, "upstream timed out");
            }
        };
        // The listener checks the switch and runs the tunnel (proxy::tunnel).
        if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return resp.map(|b| b.boxed());
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        resp.map(|b| b.boxed())
    }

    /// Map a client error to 502/504, count it and log its cause once.
    fn failed(
        &self,
        target: &Target,
        e: &hyper_util::client::legacy::Error,
    ) -> Response<ResponseBody> {
        let (reason, description, status) = diagnose(e);
        metrics::upstream_error(&self.name, reason);
        warn!(upstream = %self.name, server = %target.url, reason, error = %description, "upstream request failed");
        let msg = match (reason, status) {
            ("connection_limit", _) => "no upstream connection free",
            (_, StatusCode::GATEWAY_TIMEOUT) => "upstream timed out",
            _ => "upstream unavailable",
        };
        error_response(status, msg)
    }
}

/// The cause of a failed upstream request: metric reason, description, status.
fn diagnose(e: &hyper_util::client::legacy::Error) -> (&'static str, String, StatusCode) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(limit) = io
                .get_ref()
                .and_then(|i| i.downcast_ref::<ConnectionLimit>())
            {
                return (
                    "connection_limit",
                    limit.to_string(),
                    StatusCode::GATEWAY_TIMEOUT,
                );
            }
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                let (reason, desc) = crate::tls::client::classify(tls);
                return (reason, desc, StatusCode::BAD_GATEWAY);
            }
            return match io.kind() {
                std::io::ErrorKind::TimedOut => (
                    "connect_timeout",
                    "connect timed out".into(),
                    StatusCode::GATEWAY_TIMEOUT,
                ),
                std::io::ErrorKind::ConnectionRefused => (
                    "connect_refused",
                    "connection refused".into(),
                    StatusCode::BAD_GATEWAY,
                ),
                _ if e.is_connect() => (
                    "connect_error",
                    format!("cannot connect: {io}"),
                    StatusCode::BAD_GATEWAY,
                ),
                _ => (
                    "protocol",
                    format!("upstream connection failed: {io}"),
                    StatusCode::BAD_GATEWAY,
                ),
            };
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            let (reason, desc) = crate::tls::client::classify(tls);
            return (reason, desc, StatusCode::BAD_GATEWAY);
        }
        source = err.source();
    }
    (
        "protocol",
        format!("upstream request failed: {e}"),
        StatusCode::BAD_GATEWAY,
    )
}

fn pool_for(
    config: &UpstreamConfig,
    tls: &Arc<ArcSwap<ClientConfig>>,
    slots: &Slots,
    h1_only: bool,
) -> Pool {
    let connector = Connector {
        tls: tls.clone(),
        server_name: config.tls.server_name.clone().map(Arc::from),
        connect_timeout: config.connect_timeout,
        slots: slots.clone(),
        h1_only,
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(config.max_idle_connections)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .set_host(false)
        .build(connector)
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

/// Opens upstream connections: TCP (with a timeout, `TCP_NODELAY`) and,
/// for https, TLS with the snapshot current at connect time.
#[derive(Clone)]
pub struct Connector {
    tls: Arc<ArcSwap<ClientConfig>>,
    server_name: Option<Arc<str>>,
    connect_timeout: Duration,
    slots: Slots,
    h1_only: bool,
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamConn;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamConn, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let https = uri.scheme() == Some(&Scheme::HTTPS);
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            // Waiting for a slot and connecting share connect_timeout.
            let deadline = tokio::time::Instant::now() + this.connect_timeout;
            let slot = this
                .slots
                .acquire(&uri, this.connect_timeout)
                .await
                .map_err(std::io::Error::other)?;
            let tcp = tokio::time::timeout_at(deadline, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            tcp.set_nodelay(true)?;
            if !https {
                return Ok(UpstreamConn {
                    io: TokioIo::new(MaybeTls::Plain(tcp)),
                    h2: false,
                    _slot: slot,
                });
            }
            let mut config = this.tls.load_full();
            if this.h1_only {
                let mut c = (*config).clone();
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                config = Arc::new(c);
            }
            let name = this.server_name.as_deref().unwrap_or(&host);
            let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("invalid server name {name:?}"),
                )
            })?;
            // The handshake shares connect_timeout too: a server that
            // accepts TCP and never answers would otherwise hold its
            // connection slot for good once hyper finishes this connect in
            // the background (another request took a pooled connection).
            let tls = tokio::time::timeout_at(
                deadline,
                tokio_rustls::TlsConnector::from(config).connect(server_name, tcp),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(UpstreamConn {
                io: TokioIo::new(MaybeTls::Tls(Box::new(tls))),
                h2,
                _slot: slot,
            })
        })
    }
}

/// A plain or TLS upstream stream.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An upstream connection as the pool sees it: bytes plus whether ALPN
/// chose h2 (so the pool multiplexes instead of opening more).
pub struct UpstreamConn {
    io: TokioIo<MaybeTls>,
    h2: bool,
    /// This connection's slot of its server, freed when it closes.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Connection for UpstreamConn {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

impl hyper::rt::Read for UpstreamConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
