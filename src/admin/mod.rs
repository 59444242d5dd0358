//! The admin listener: probes, metrics, and the /api/v1 catalogue API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::AdminConfig;
use crate::metrics::METRICS;
use crate::reload::Handle;

pub type AdminBody = Full<Bytes>;

/// Bind the admin address and serve it in the background. Refuses a
/// non-loopback bind without tokens (SPEC §4).
pub async fn start(
    config: &AdminConfig,
    handle: Handle,
    shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, String> {
    if config.tokens.is_empty() {
        if !config.bind.ip().is_loopback() {
            return Err(format!(
                "admin.bind {} is not a loopback address and admin.tokens is empty: refusing to expose an unauthenticated admin API",
                config.bind
            ));
        }
        warn!(addr = %config.bind, "admin API has no tokens: open to anyone on this host (loopback only)");
    }
    let socket = crate::proxy::listener::bind(config.bind)
        .await
        .map_err(|e| format!("admin.bind {}: {e}", config.bind))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(accept_loop(socket, handle, shutdown));
    Ok(addr)
}

async fn accept_loop(
    socket: tokio::net::TcpListener,
    handle: Handle,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            a = socket.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(route(&handle, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(handle: &Handle, req: Request<Incoming>) -> Response<AdminBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if handle.shared.ready.load(Ordering::SeqCst) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (&Method::GET, "/metrics") => {
            let mut resp = text(StatusCode::OK, &METRICS.render());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

pub fn text(status: StatusCode, body: &str) -> Response<AdminBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
