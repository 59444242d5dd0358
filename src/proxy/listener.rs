//! Accept loop, limits, TLS handshake and the hyper server (h1 + h2) of one listener.
//!
//! Everything the reloader may change lives behind `ArcSwap` in [`Listener`]
//! and is loaded once per connection (TLS snapshot, limits) or once per
//! request (routes). A connection keeps the `ServerConfig` it shook hands
//! with for its whole life: that is "open connections keep their certificate".

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{debug, info, warn};

use crate::config::{ClientAuthMode, Limits};
use crate::material::CertInfo;
use crate::metrics::{self, METRICS};
use crate::proxy::edge::{EdgePolicy, Exchange};
use crate::proxy::forward::{RequestContext, ResponseBody, error_response};
use crate::proxy::request;
use crate::proxy::router::Router;

/// Per-listener settings that apply to new connections (limits and the
/// hyper builders derived from them).
pub struct Settings {
    pub limits: Limits,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Settings {
    pub fn new(limits: Limits) -> Arc<Settings> {
        let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        h1.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper answers 431 when a request head exceeds its read buffer.
            .max_buf_size(limits.max_header_bytes.max(8192));
        let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        h2.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Arc::new(Settings { limits, h1, h2 })
    }
}

/// What one server pair on a listener serves, for the admin API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServedCert {
    pub entry: String,
    pub server_names: Vec<String>,
    #[serde(flatten)]
    pub info: CertInfo,
}

/// Live state of one configured listener, shared by its accept loop, its
/// connections, the admin API and the reloader (the only writer).
pub struct Listener {
    pub name: Arc<str>,
    /// The TLS snapshot new connections handshake with.
    pub tls: ArcSwap<ServerConfig>,
    /// Client-auth mode of the current snapshot: decides whether the peer
    /// certificate is a verified identity worth passing upstream.
    pub mode: ArcSwap<ClientAuthMode>,
    pub router: ArcSwap<Router>,
    pub settings: ArcSwap<Settings>,
    /// Bumped whenever `tls` is replaced; connections compare it with the
    /// generation they started with to honour `max_connection_lifetime`.
    pub generation: watch::Sender<u64>,
    /// Metadata of the served pairs, for `GET /api/v1/listeners/{name}/cert`.
    /// Each behind its own `Arc`, so a rotation copies pointers, not metadata.
    pub served: ArcSwap<Vec<Arc<ServedCert>>>,
    /// Open connections right now.
    pub active: AtomicUsize,
    /// Request ids, client-certificate headers, access log (per request).
    pub edge: ArcSwap<EdgePolicy>,
    /// Per-entry TLS configs when `certs` entries carry their own
    /// `client_auth`; then used instead of `tls`.
    pub per_name: arc_swap::ArcSwapOption<crate::tls::per_name::PerName>,
    /// `hotproxy_connections_active{listener}`, looked up once: the family
    /// lookup takes a lock that has no place on the accept path.
    connections_gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Listener {
    pub fn new(
        name: &str,
        tls: Arc<ServerConfig>,
        mode: ClientAuthMode,
        router: Router,
        limits: Limits,
        served: Vec<Arc<ServedCert>>,
    ) -> Arc<Listener> {
        Arc::new(Listener {
            name: name.into(),
            tls: ArcSwap::new(tls),
            mode: ArcSwap::from_pointee(mode),
            router: ArcSwap::from_pointee(router),
            settings: ArcSwap::new(Settings::new(limits)),
            generation: watch::Sender::new(0),
            served: ArcSwap::from_pointee(served),
            active: AtomicUsize::new(0),
            edge: ArcSwap::from_pointee(EdgePolicy::default()),
            per_name: arc_swap::ArcSwapOption::empty(),
            connections_gauge: METRICS
                .connections_active
                .get_or_create(&metrics::ListenerLabels {
                    listener: name.to_owned(),
                })
                .clone(),
        })
    }

    /// Serve new connections with `tls` from now on.
    pub fn set_tls(
        &self,
        tls: Arc<ServerConfig>,
        mode: ClientAuthMode,
        served: Vec<Arc<ServedCert>>,
        per_name: Option<Arc<crate::tls::per_name::PerName>>,
    ) {
        self.per_name.store(per_name);
        self.tls.store(tls);
        self.mode.store(Arc::new(mode));
        self.served.store(Arc::new(served));
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn set_limits(&self, limits: Limits) {
        if self.settings.load().limits != limits {
            self.settings.store(Settings::new(limits));
        }
    }
}

/// Process-wide count of open client connections, so shutdown can wait for
/// them to finish.
#[derive(Default)]
pub struct Drain {
    open: AtomicUsize,
    idle: Notify,
}

impl Drain {
    fn enter(self: &Arc<Self>) -> DrainGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        DrainGuard(self.clone())
    }

    /// Wait until no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

struct DrainGuard(Arc<Drain>);

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Signals every accept loop and connection of the process: `true` = stop
/// accepting and close connections gracefully.
pub type Shutdown = watch::Receiver<bool>;

/// Accept connections on `socket` until `stop` or `shutdown` turns true.
pub async fn serve(
    listener: Arc<Listener>,
    socket: TcpListener,
    mut stop: watch::Receiver<bool>,
    shutdown: Shutdown,
    drain: Arc<Drain>,
) {
    // max_connections is enforced with a semaphore taken *before* accept, so
    // excess clients wait in the kernel backlog rather than being reset.
    let mut slots = Arc::new(Semaphore::new(
        listener.settings.load().limits.max_connections,
    ));
    let mut slots_for = listener.settings.load().limits.max_connections;
    let mut shutdown_rx = shutdown.clone();
    loop {
        let wanted = listener.settings.load().limits.max_connections;
        if wanted != slots_for {
            slots = Arc::new(Semaphore::new(wanted));
            slots_for = wanted;
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = stop.wait_for(|s| *s) => break,
            _ = shutdown_rx.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = socket.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            _ = shutdown_rx.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(listener = %listener.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let listener = listener.clone();
        let shutdown = shutdown.clone();
        let guard = drain.enter();
        tokio::spawn(async move {
            let _permit = permit;
            let _guard = guard;
            listener.active.fetch_add(1, Ordering::Relaxed);
            listener.connections_gauge.inc();
            connection(&listener, stream, peer, shutdown).await;
            listener.connections_gauge.dec();
            listener.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
    debug!(listener = %listener.name, "accept loop stopped");
}

/// Per-connection activity, for the idle timeout.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `started` at the last request start or end.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.started.elapsed().saturating_sub(last))
    }
}

async fn connection(
    listener: &Arc<Listener>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: Shutdown,
) {
    let _ = stream.set_nodelay(true);
    let settings = listener.settings.load_full();
    let limits = &settings.limits;
    let tls = listener.tls.load_full();
    let generation = *listener.generation.borrow();
    let mode = **listener.mode.load();
    let per_name = listener.per_name.load_full();
    let accept = async {
        match &per_name {
            Some(p) => crate::tls::per_name::accept(p, stream)
                .await
                .map(|(s, at)| (s, Some(at))),
            None => tokio_rustls::TlsAcceptor::from(tls)
                .accept(stream)
                .await
                .map(|s| (s, None)),
        }
    };
    // The handshake shares the header read budget: a client that connects
    // and sends nothing must not hold a slot forever.
    let handshake = tokio::time::timeout(limits.header_read_timeout, accept).await;
    let (tls_stream, entry) = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // Per connection and triggered by any client: debug, not info.
            // The metric label carries the cause at every log level.
            let reason = crate::tls::server::handshake_failure(&e);
            metrics::handshake(&listener.name, reason);
            crate::proxy::edge::handshake_refused(&listener.name, peer, reason);
            debug!(listener = %listener.name, peer = %peer, reason, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            metrics::handshake(&listener.name, "timeout");
            debug!(listener = %listener.name, peer = %peer, "TLS handshake timed out");
            return;
        }
    };
    metrics::handshake(&listener.name, "success");
    let (_, session) = tls_stream.get_ref();
    let is_h2 = session.alpn_protocol() == Some(b"h2");
    let verifies = match (&per_name, entry) {
        (Some(p), Some(at)) => p.modes[at].verifies(),
        _ => mode.verifies(),
    };
    let client_cert = if verifies {
        session
            .peer_certificates()
            .and_then(crate::identity::gate::take)
    } else {
        None
    };
    let ctx = Arc::new(RequestContext {
        listener: listener.name.clone(),
        client_addr: peer,
        client_cert,
        tls_sni: session.server_name().map(Arc::from),
        tls_version: session.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            _ => "TLSv1.2",
        }),
        resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        entry: per_name.zip(entry),
    });
    let activity = Arc::new(Activity {
        started: Instant::now(),
        in_flight: AtomicUsize::new(0),
        last_ms: AtomicU64::new(0),
    });
    let svc = {
        let listener = listener.clone();
        let activity = activity.clone();
        service_fn(move |req| {
            let listener = listener.clone();
            let ctx = ctx.clone();
            let activity = activity.clone();
            async move {
                activity.in_flight.fetch_add(1, Ordering::Relaxed);
                let resp = handle(&listener, req, &ctx).await;
                activity.in_flight.fetch_sub(1, Ordering::Relaxed);
                activity.touch();
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let builder = if is_h2 { &settings.h2 } else { &settings.h1 };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), svc);
    tokio::pin!(conn);

    let mut gen_rx = listener.generation.subscribe();
    let lifetime = limits.max_connection_lifetime;
    let idle_timeout = limits.idle_timeout;
    let mut closing = false;
    loop {
        let idle_check = tokio::time::sleep(idle_timeout.min(Duration::from_secs(3600)));
        let lifetime_over = async {
            match lifetime {
                // Only connections made with rotated-out material are bounded.
                Some(max) => {
                    tokio::time::sleep_until((activity.started + max).into()).await;
                    let _ = gen_rx.wait_for(|g| *g != generation).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    debug!(listener = %listener.name, peer = %peer, error = %e, "connection ended with error");
                }
                return;
            }
            _ = shutdown.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = lifetime_over, if !closing => {
                debug!(listener = %listener.name, peer = %peer, "closing connection made with rotated-out material");
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = idle_check, if !closing => {
                if activity.idle_for().is_some_and(|idle| idle >= idle_timeout) {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Route one request and forward it, recording the request metrics; the
/// edge duties (request id, route `allow`, client-certificate headers,
/// access log) are [`Exchange`]'s.
async fn handle(
    listener: &Listener,
    mut req: Request<Incoming>,
    ctx: &RequestContext,
) -> Response<ResponseBody> {
    let start = Instant::now();
    let edge = listener.edge.load();
    let mut exchange = Exchange::begin(&edge, ctx, &mut req, start);
    if let Err(refused) = request::prepare(&mut req) {
        debug!(listener = %listener.name, peer = %ctx.client_addr, error = %refused, "request refused");
        metrics::request(
            &listener.name,
            "",
            refused.status().as_u16(),
            start.elapsed(),
        );
        return exchange.finish(refused.response());
    }
    if let Some(misdirected) = exchange.misdirected(ctx, &req) {
        metrics::request(&listener.name, "", 421, start.elapsed());
        return exchange.finish(misdirected);
    }
    let route = {
        let router = listener.router.load();
        router
            .matched(request::authority(&req), req.uri().path())
            .map(|r| (r.upstream.clone(), r.policy.clone()))
    };
    let resp = match route {
        Some((upstream, policy)) => match exchange.admit(&policy, &edge, ctx, &mut req) {
            None => {
                let resp = upstream.forward(req, ctx).await;
                exchange.upstream(&upstream.name, start.elapsed());
                metrics::request(
                    &listener.name,
                    &upstream.name,
                    resp.status().as_u16(),
                    start.elapsed(),
                );
                resp
            }
            Some(denied) => {
                metrics::request(&listener.name, &upstream.name, 403, start.elapsed());
                denied
            }
        },
        None => {
            metrics::request(&listener.name, "", 404, start.elapsed());
            error_response(StatusCode::NOT_FOUND, "no route")
        }
    };
    exchange.finish(resp)
}

/// Bind a listener socket (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Log that a listener is up. Tests and operators read the bound address
/// from this line (the configuration may say port 0).
pub fn log_listening(name: &str, addr: SocketAddr) {
    info!(listener = %name, addr = %addr, "listening");
}
