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

/// An HTTP/2 upstream that completes TLS (ALPN h2), reads the client's
/// preface and never writes: no SETTINGS. The request that opened the
/// connection waited out `request_timeout` on it (its stream cannot open
/// before the server's SETTINGS), and every other request waited for that
/// connection to settle and got `504 connection_limit`, with one
/// connection open. The server's SETTINGS are part of connection setup
/// now, within `connect_timeout` (as Envoy's connect timeout covers the
/// HTTP/2 handshake): a dial that fails, counted, its connection closed.
#[tokio::test]
async fn an_h2_upstream_that_never_sends_settings_fails_as_a_dial() {
    use tokio::io::AsyncReadExt;
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let (listener, acceptor) =
        tls_listener(&backend_ca.server_pair(&["backend.local"]), b"h2").await;
    let backend = listener.local_addr().unwrap();
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // Read everything (the preface, SETTINGS, HEADERS), answer
                // nothing, until the proxy closes the connection.
                let mut buf = [0u8; 4096];
                while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = closed_tx.send(());
            });
        }
    });
    let timeout = format!("connect_timeout: {}s", CONNECT_TIMEOUT.as_secs());
    // Longer than CLIENT_DEADLINE: waited out, the request hangs the test.
    let cfg = scene.one_upstream_config("silent", backend, &[&timeout, "request_timeout: 60s"]);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    let r = get_h1(addr, "a.example.com", &ca.cert_pem).await.unwrap();
    assert_eq!(r.status, 504, "{}", r.body);
    let metrics = metrics_text(admin_addr).await;
    let line = "hotproxy_upstream_errors_total{upstream=\"silent\",reason=\"connect_timeout\"} 1";
    assert!(
        metrics.lines().any(|l| l == line),
        "no {line} in:\n{metrics}"
    );
    within_deadline("the silent connection closed", closed.recv())
        .await
        .unwrap();
}
