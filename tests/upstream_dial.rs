//! Upstream dials against slow handshakes: each new connection gets its own `connect_timeout`.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use support::*;

/// `connect_timeout` in these tests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the backend waits before each TLS handshake: more than half of
/// `connect_timeout`, less than all of it.
const HANDSHAKE_DELAY: Duration = Duration::from_millis(1200);
/// How long the backend holds each response: its connections stay busy
/// while the requests queued behind the first dials dial their own.
const HOLD: Duration = Duration::from_secs(2);

/// An HTTPS backend (`backend.local`, HTTP/1.1) that waits
/// [`HANDSHAKE_DELAY`] before each handshake and answers every request
/// `200` after [`HOLD`].
async fn slow_backend(pair: &TestPair) -> std::net::SocketAddr {
    let (listener, acceptor) = tls_listener(pair, b"http/1.1").await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                tokio::time::sleep(HANDSHAKE_DELAY).await;
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    tokio::time::sleep(HOLD).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// Twelve requests at once on a cold pool: eight dial (the dial bound),
/// four wait for those dials. The first dials end after
/// [`HANDSHAKE_DELAY`], their connections busy for [`HOLD`], so the four
/// waiting dial then. Their dials had only what was left of one
/// `connect_timeout` counted from the request's start, less than the
/// handshake takes: `504 connect_timeout`, counted against a healthy
/// endpoint. HAProxy gives the queue its own `timeout queue` and each
/// connect a full `timeout connect`; so does each dial here now.
#[tokio::test]
async fn a_dial_after_a_wait_gets_a_whole_connect_timeout() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = slow_backend(&backend_ca.server_pair(&["backend.local"])).await;
    let timeout = format!("connect_timeout: {}s", CONNECT_TIMEOUT.as_secs());
    let cfg = scene.one_upstream_config("slow", backend, &[&timeout]);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    let requests: Vec<_> = (0..12)
        .map(|_| {
            let ca = ca.cert_pem.clone();
            tokio::spawn(async move { get_h1(addr, "a.example.com", &ca).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in requests {
        statuses.push(r.await.unwrap().unwrap().status);
    }
    assert!(
        statuses.iter().all(|&s| s == 200),
        "requests that waited for a dial failed: {statuses:?}"
    );
    let metrics = metrics_text(admin_addr).await;
    assert!(
        !metrics.contains("reason=\"connect_timeout\""),
        "a dial timed out:\n{metrics}"
    );
}
