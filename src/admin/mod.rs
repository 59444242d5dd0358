//! The admin listener: probes, metrics, and the /api/v1 catalogue API.

pub mod api;
pub mod auth;
pub mod paths;
pub mod slots;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tracing::warn;

use crate::config::AdminConfig;
use crate::metrics::METRICS;
use crate::proxy::accept::Acceptor;
use crate::proxy::client_io::ClientIo;
use crate::proxy::conn::{Driver, TrackedBody};
use crate::reload::Handle;

pub type AdminBody = Full<Bytes>;

/// The admin section's tokens, or every problem it refuses a start for:
/// a non-loopback bind without tokens (SPEC §4) and each token source that
/// does not read. Asked before any listener is bound, so that `run` names
/// them with the listeners' and certificates' in one refusal (SPEC §1).
pub fn prepare(config: &AdminConfig) -> Result<Arc<auth::Tokens>, Vec<String>> {
    let mut problems = Vec::new();
    match exposure(config) {
        Ok(Some(warning)) => warn!(addr = %config.bind_shown, "{warning}"),
        Ok(None) => {}
        Err(e) => problems.push(e),
    }
    match auth::Tokens::load(config) {
        Ok(tokens) if problems.is_empty() => return Ok(Arc::new(tokens)),
        Ok(_) => {}
        // Every token's problem, not only the first `load` stopped at.
        Err(first) => {
            let all = auth::Tokens::problems(config, &mut Vec::new());
            problems.extend(if all.is_empty() { vec![first] } else { all });
        }
    }
    Err(problems)
}

/// Bind the admin address and serve it in the background with `tokens`
/// ([`prepare`]'s); its address. The token files are the reloader's to
/// re-read (on a change and on SIGHUP).
pub async fn start(
    config: &AdminConfig,
    tokens: Arc<auth::Tokens>,
    handle: Handle,
    shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, String> {
    if !config.tokens.is_empty() {
        auth::count_failures_from_zero();
    }
    if !tokens.files().is_empty() {
        // Watched by the reloader's watcher, the process's only one. A
        // second watcher of their own wrote `hotproxy_watch_degraded` over
        // the first's (its recovery cleared the gauge while a certificate
        // directory still went unwatched), and cost an inotify instance
        // and a thread. Awaited: the watcher has been told before the
        // listener serves.
        let watched = tokens.clone();
        handle.call(move |r| r.watch_admin_tokens(watched)).await;
    }
    let socket = crate::proxy::listener::bind(config.bind)
        .await
        .map_err(|e| format!("admin.bind {}: {e}", config.bind_shown))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(accept_loop(socket, handle, tokens, shutdown));
    Ok(addr)
}

/// The rule for an admin API without tokens: refused on a non-loopback
/// bind (the error), allowed with a warning on loopback, fine with tokens.
/// `start` and `check` both apply it.
pub fn exposure(config: &AdminConfig) -> Result<Option<&'static str>, String> {
    if !config.tokens.is_empty() {
        return Ok(None);
    }
    // `[::ffff:127.0.0.1]` is the IPv4 loopback it maps (an IPv6 address
    // is loopback only as `::1`).
    if !config.bind.ip().to_canonical().is_loopback() {
        return Err(format!(
            "admin.bind {} is not a loopback address and admin.tokens is empty: refusing to expose an unauthenticated admin API",
            config.bind_shown
        ));
    }
    Ok(Some(
        "admin API has no tokens: open to anyone on this host (loopback only)",
    ))
}

/// Admin connections open at once, so a flood of scrapers or a slowloris
/// cannot take every file descriptor. Beyond this, a new connection
/// evicts the one that has waited on its client longest
/// (src/admin/slots.rs), or waits in the kernel backlog while none has.
pub const MAX_CONNECTIONS: usize = 64;
/// Admin connections one client address may hold at once: a client that
/// opens more takes the slot of its own connection that has waited on it
/// longest, or is closed at once while none has, so that one (a
/// slowloris, a scraper gone wrong) cannot fill every slot and leave kubelet's probes of `/healthz`
/// and `/readyz` waiting in the backlog until the pod is restarted.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 16;
/// A request head must arrive within this of its first byte (or of the
/// connection's slot).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body (the API's JSON) must arrive whole within this.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body taken (the API's JSON; a CA bundle is well below).
pub const MAX_BODY: usize = 1 << 20;
/// A keep-alive connection with no request in flight is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that stops reading a response is disconnected after this.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts until the process exits, the shutdown drain included: kubelet,
/// a load balancer and Prometheus keep being answered while the proxy
/// drains (`/readyz` says `draining`, `/healthz` stays `200`), where a
/// closed port failed the liveness probe too. The admin connections do
/// not hold the exit (the drain counts the listeners' alone).
async fn accept_loop(
    socket: tokio::net::TcpListener,
    handle: Handle,
    tokens: Arc<auth::Tokens>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(slots::Slots::default());
    let mut acceptor = Acceptor::new("admin");
    loop {
        let (stream, peer) = acceptor.accept(&socket).await;
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        // Every slot taken: the connection waited on its client longest
        // makes room (src/admin/slots.rs); the rest wait in the backlog.
        // The connection's time (its header and idle timeouts, its wait
        // on its client) begins with its slot.
        let slot = slots.take(peer).await;
        let Some(slot) = slot else {
            // Closed at once.
            tracing::debug!(peer = %peer, "admin connection refused: this client holds {MAX_CONNECTIONS_PER_CLIENT} already, none of which may be evicted");
            continue;
        };
        let (handle, tokens, shutdown) = (handle.clone(), tokens.clone(), shutdown.clone());
        tokio::spawn(async move {
            let conn = slot.conn().clone();
            let activity = conn.activity().clone();
            // The slot goes with the stream, through its lingering close.
            let io = ClientIo::new(
                Box::new(slots::SlotIo::new(stream, conn.clone())),
                activity.clone(),
                true,
                SEND_TIMEOUT,
                Box::new(slot),
            );
            let svc = {
                let (activity, shutdown, conn) = (activity.clone(), shutdown.clone(), conn.clone());
                service_fn(move |req: Request<Incoming>| {
                    let (handle, tokens, shutdown) =
                        (handle.clone(), tokens.clone(), shutdown.clone());
                    // Only a token holder's requests may keep the slot for
                    // long while a newcomer waits (src/admin/slots.rs).
                    conn.request(holds_token(&tokens, &req));
                    let in_flight = activity.begin(!req.body().is_end_stream());
                    // The first once the shutdown has begun: the last (SPEC §1).
                    let last = activity.answers_last();
                    async move {
                        let mut resp = route(&handle, &tokens, &shutdown, req, local, peer).await;
                        say_last(&mut resp, last);
                        Ok::<_, Infallible>(resp.map(|b| TrackedBody::new(b, in_flight)))
                    }
                })
            };
            // HTTP/1.1 only: probes, Prometheus and curl speak it, and one
            // protocol means one set of limits.
            let conn_http = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .max_header_size(64 * 1024)
                // A client that closes its sending side once its request is
                // sent (`nc -N`) is waiting for the answer: without this,
                // hyper took the FIN for a client gone and dropped the
                // handler wherever it was, so a change reached the reloader
                // or not by chance, unanswered and, when applied, without
                // its audit line. A client really gone costs the rest of
                // one bounded call, as nothing else is read from it.
                .half_close(true)
                .serve_connection(TokioIo::new(io), svc);
            let driver = Driver {
                name: "admin",
                peer,
                activity: &activity,
                header_read_timeout: HEADER_READ_TIMEOUT,
                idle_timeout: IDLE_TIMEOUT,
                shutdown: shutdown.clone(),
                // Nothing else closes an admin connection.
                also_close_grace: SEND_TIMEOUT,
                // `shutdown` is the process's own.
                process: None,
                answer_first: false,
                handed_over: None,
                // At the signal (or at the first poll, when accepted
                // during the drain), a connection with no request begun
                // is answered its first, its last: a probe whose request
                // comes after SIGTERM is answered, not closed unanswered
                // (a failed liveness probe). One idle after an answer is
                // closed (hyper's graceful close); one answering, after it.
                answer_unbegun: true,
                stalls: None,
                send_timeout: SEND_TIMEOUT,
            };
            // Evicted: dropped at once, whatever hyper is doing; its
            // stream fails from then on, so no lingering close holds the slot.
            tokio::select! {
                _ = driver.run(conn_http, |c| c.graceful_shutdown(), futures_util::stream::pending()) => {}
                () = conn.evicted() => {}
            }
        });
    }
}

/// Whether `req` is an API request its bearer token (or the API without
/// tokens, on loopback) lets through: a token holder's.
fn holds_token(tokens: &auth::Tokens, req: &Request<Incoming>) -> bool {
    let path = req.uri().path();
    (path == "/api/v1" || path.starts_with("/api/v1/"))
        && tokens.authorize(req.headers(), req.method()).is_ok()
}

/// `Connection: close` on the connection's last response (`last`: its
/// first request, come once the shutdown began, SPEC §1): hyper closes
/// the connection after a response that says so.
fn say_last<B>(resp: &mut Response<B>, last: bool) {
    if last {
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
}

async fn route(
    handle: &Handle,
    tokens: &auth::Tokens,
    shutdown: &watch::Receiver<bool>,
    req: Request<Incoming>,
    local: SocketAddr,
    peer: SocketAddr,
) -> Response<AdminBody> {
    if req.method() == Method::HEAD {
        return without_body(answer(handle, tokens, shutdown, req, local, peer).await);
    }
    answer(handle, tokens, shutdown, req, local, peer).await
}

/// A HEAD answer: the GET answer's status and headers (with its
/// Content-Length), no body. hyper drops a HEAD body on HTTP/1 but not on
/// HTTP/2, so it is dropped here for both.
fn without_body(resp: Response<AdminBody>) -> Response<AdminBody> {
    use hyper::body::Body;
    let (mut parts, body) = resp.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts.headers.insert(header::CONTENT_LENGTH, len.into());
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// `shutdown`: the API refuses calls once it is true, and `/readyz` says
/// `draining`; `/healthz` and /metrics answer as ever.
async fn answer(
    handle: &Handle,
    tokens: &auth::Tokens,
    shutdown: &watch::Receiver<bool>,
    req: Request<Incoming>,
    local: SocketAddr,
    peer: SocketAddr,
) -> Response<AdminBody> {
    let path = req.uri().path();
    if path == "/api/v1" || path.starts_with("/api/v1/") {
        return api::serve(handle, tokens, shutdown, req, local, peer).await;
    }
    // The API says so in its JSON (`auth::check_host`).
    if auth::several_hosts(req.headers()) {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("{}\n", auth::SEVERAL_HOSTS),
        );
    }
    if declares_too_much(req.headers()) {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than {MAX_BODY} bytes\n"),
        );
    }
    let method = match req.method() {
        &Method::HEAD => &Method::GET,
        m => m,
    };
    match (method, path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        // Not ready from the shutdown's start to the exit (Kubernetes,
        // Envoy's `/ready`, Traefik's ping say so while draining), so
        // endpoint controllers and load balancers stop sending new
        // connections; `/healthz` stays `200`: a failed liveness probe
        // would have kubelet kill the pod mid-drain.
        (&Method::GET, "/readyz") => {
            if *shutdown.borrow() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if handle.shared.ready.load(Ordering::SeqCst) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET, "/metrics") => render_metrics().await,
        // SPEC §4: a method an endpoint does not take is 405 with `Allow`.
        (_, "/healthz" | "/readyz" | "/metrics") => {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Scrapes rendering at once; the others wait their turn (the admin
/// listener's connection cap bounds how many wait).
const RENDERING_AT_ONCE: usize = 1;
static RENDERING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(RENDERING_AT_ONCE);

/// `/metrics`, rendered on a blocking thread: the admin listener runs on
/// the proxy's runtime (with `worker_threads: 0`, the current-thread one
/// that serves every connection), and a render walks every series (one
/// per entry of a large catalogue) and reads /proc (`/proc/self/fd` holds
/// one entry per open connection): on the runtime it stalled every
/// proxied request meanwhile. Envoy's admin runs off its workers too.
async fn render_metrics() -> Response<AdminBody> {
    // Never closed, so the permit always comes.
    let Ok(turn) = RENDERING.acquire().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n");
    };
    // The turn ends with the render, not with this future: a scraper that
    // hangs up mid-render does not let the next one render beside it.
    let render = move || {
        let rendered = METRICS.render();
        drop(turn);
        rendered
    };
    let Ok(rendered) = tokio::task::spawn_blocking(render).await else {
        // A panic in a collector: this scrape fails, not the listener.
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be rendered\n",
        );
    };
    // The rendered String becomes the body as it is, not copied.
    let mut resp = plain(StatusCode::OK, Bytes::from(rendered));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    resp
}

/// Whether the request declares (`Content-Length`) a body over
/// [`MAX_BODY`]. Every route checks this before it acts: most read no body,
/// and a request SPEC §4 answers 413 must not have been applied first.
pub(crate) fn declares_too_much(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64)
}

pub fn text(status: StatusCode, text: &str) -> Response<AdminBody> {
    plain(status, Bytes::copy_from_slice(text.as_bytes()))
}

/// A `text/plain` answer of `bytes` (the content type may be replaced).
fn plain(status: StatusCode, bytes: Bytes) -> Response<AdminBody> {
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
