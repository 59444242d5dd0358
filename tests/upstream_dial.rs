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

/// A scene holding the edge pair `a` (for `a.example.com`) and
/// `backend-ca.crt`: the scene, the edge CA and the backend CA.
fn scene_with_cas() -> (Scene, TestCa, TestCa) {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    (scene, ca, backend_ca)
}

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
    let (scene, ca, backend_ca) = scene_with_cas();
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
    let (scene, ca, backend_ca) = scene_with_cas();
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

/// The pod at `backend` goes dark, as a black-holed pod IP does: its
/// connections close, and connects to its address complete (the kernel's
/// backlog of this listener, which never accepts) with nothing ever
/// answering TLS.
async fn go_dark(backend: &Backend) -> tokio::net::TcpListener {
    backend.kill();
    // The same address, once the killed accept loop lets the port go.
    within_deadline("the pod's port free again", async {
        loop {
            match tokio::net::TcpListener::bind(backend.addr).await {
                Ok(l) => return l,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await
}

/// `n` GETs at once on one HTTP/2 client connection (their streams reach
/// the proxy together): each one's status and body.
async fn h2_burst(addr: std::net::SocketAddr, ca_pem: &str, n: usize) -> Vec<(u16, String)> {
    let cfg = client_config(ca_pem, None, &[b"h2"]);
    let tls = connect(addr, "a.example.com", cfg).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let burst = (0..n).map(|i| {
        let mut send = send.clone();
        async move {
            let req = http::Request::get(format!("https://a.example.com/burst-{i}"))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    });
    within_deadline("the burst's answers", futures_util::future::join_all(burst)).await
}

/// A GET through the proxy at `addr`, answered `200` over HTTP/2 upstream:
/// the reply.
async fn served_over_h2(addr: std::net::SocketAddr, ca_pem: &str) -> Reply {
    let r = get_h1(addr, "a.example.com", ca_pem).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["version"],
        "HTTP/2.0",
        "not HTTP/2 upstream: {}",
        r.body
    );
    r
}

/// An endpoint known to speak HTTP/2 goes dark ([`go_dark`]). The pool
/// dials such an endpoint one connection at a time, so of a burst one
/// request dials and the others wait for that dial. When it failed
/// (`connect_timeout`), one waiter dialled in turn and every other got
/// `504 connection_limit`, which says `max_connections_per_server`
/// connections are busy: here none was. Each now gets the dial's cause.
#[tokio::test]
async fn requests_waiting_for_a_failed_h2_dial_get_its_cause() {
    const BURST: usize = 6;
    let (scene, ca, backend_ca) = scene_with_cas();
    let backend = Backend::start("pod", &backend_ca.server_pair(&["backend.local"]), None).await;
    let cfg = scene.one_upstream_config(
        "dark",
        backend.addr,
        &["connect_timeout: 500ms", "request_timeout: 10s"],
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    served_over_h2(addr, &ca.cert_pem).await;
    let _dark = go_dark(&backend).await;
    // The closed connection is known closed after this request: it went
    // on it and failed (then on a new connection), or found it closed and
    // dialled. Either way it gets no answer.
    let r = get_h1(addr, "a.example.com", &ca.cert_pem).await.unwrap();
    assert!(matches!(r.status, 502 | 504), "{} {}", r.status, r.body);
    let timeouts = |m: &str| -> usize {
        let line = "hotproxy_upstream_errors_total{upstream=\"dark\",reason=\"connect_timeout\"} ";
        m.lines()
            .find_map(|l| l.strip_prefix(line))
            .map_or(0, |n| n.parse().unwrap())
    };
    let before = timeouts(&metrics_text(admin_addr).await);
    let replies = h2_burst(addr, &ca.cert_pem, BURST).await;
    assert!(
        replies
            .iter()
            .all(|(s, body)| *s == 504 && body.contains("upstream timed out")),
        "not each the dial's connect_timeout: {replies:?}"
    );
    let metrics = metrics_text(admin_addr).await;
    assert!(
        !metrics.contains("reason=\"connection_limit\""),
        "counted as the connection limit:\n{metrics}"
    );
    assert_eq!(timeouts(&metrics), before + BURST, "{metrics}");
    let limit: Vec<String> = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("connection_limit"))
        .collect();
    assert!(
        limit.is_empty(),
        "logged as the connection limit: {limit:?}"
    );
}

/// Two pods, one of which goes dark ([`go_dark`]) after both spoke
/// HTTP/2. Of a burst, the requests that waited for the dark pod's one
/// dial are sent to the other pod with that dial's cause, as the dial's
/// own request is (they used to wait out `connect_timeout` and go as the
/// connection limit), and only the dial counts against the dark pod's
/// health: one dial, one verdict. So too in
/// `hotproxy_upstream_errors_total`: one `connect_timeout` per dial, not
/// one per request that waited for it (the count grew with traffic).
#[tokio::test]
async fn requests_waiting_for_a_failed_dial_go_elsewhere_counted_once() {
    const BURST: usize = 6;
    let (scene, ca, backend_ca) = scene_with_cas();
    let pair = backend_ca.server_pair(&["backend.local"]);
    let dark = Backend::start("dark", &pair, None).await;
    let lit = Backend::start_at("127.0.0.2:0".parse().unwrap(), "lit", &pair, None).await;
    // Three failures in a row eject: the burst's waiters, were they each
    // counted, would eject the dark pod; its two dials do not.
    let cfg = scene.public_config(
        "[{ upstream: two }]",
        &format!(
            "\n  - name: two\n    servers: [https://{}, https://{}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}\n    connect_timeout: 500ms\n    request_timeout: 10s\n    retries: {{ attempts: 1 }}\n    health: {{ passive: {{ consecutive_failures: 3, eject_for: 60s }} }}",
            dark.addr, lit.addr
        ),
    );
    let mut p = Proxy::start_logging(&cfg, "debug", &[]);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    // Round robin: one request to each pod, over HTTP/2.
    let mut served = Vec::new();
    for _ in 0..2 {
        let r = served_over_h2(addr, &ca.cert_pem).await;
        served.push(r.json()["backend"].as_str().unwrap().to_owned());
    }
    served.sort();
    assert_eq!(served, ["dark", "lit"]);
    // Each dial to the dark pod is a connect its listener completes:
    // taken (and held unanswered) to count the dials.
    let dark_listener = go_dark(&dark).await.into_std().unwrap();
    dark_listener.set_nonblocking(true).unwrap();
    let mut held = Vec::new();
    let mut dials = || {
        let before = held.len();
        while let Ok((conn, _)) = dark_listener.accept() {
            held.push(conn);
        }
        held.len() - before
    };
    // One of these goes to the dark pod first and fails there (on its
    // closed connection or on a dial), one failure; then the closed
    // connection is known closed. Both are served by the lit pod.
    for _ in 0..2 {
        let r = get_h1(addr, "a.example.com", &ca.cert_pem).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    dials();
    let counted = |m: &str, series: &str| -> usize {
        m.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |n| n.parse().unwrap())
    };
    let timeouts = "hotproxy_upstream_errors_total{upstream=\"two\",reason=\"connect_timeout\"}";
    let retries = "hotproxy_upstream_retries_total{upstream=\"two\"}";
    let before = metrics_text(admin_addr).await;
    // Half of the burst's first attempts go to the dark pod: one dials,
    // the others wait for that dial.
    let replies = h2_burst(addr, &ca.cert_pem, BURST).await;
    assert!(
        replies.iter().all(|(s, _)| *s == 200),
        "not all served by the lit pod: {replies:?}"
    );
    let after = metrics_text(admin_addr).await;
    let dialled = dials();
    let retried_now = counted(&after, retries) - counted(&before, retries);
    assert!(
        dialled < retried_now,
        "no request waited for another's dial: {dialled} dials, {retried_now} retries"
    );
    assert_eq!(
        counted(&after, timeouts) - counted(&before, timeouts),
        dialled,
        "not one connect_timeout per dial ({retried_now} retries):\n{after}"
    );
    let retried: Vec<serde_json::Value> = p
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "retrying on another endpoint")
        .collect();
    assert!(
        retried.iter().all(|v| v["reason"] != "connection_limit"),
        "retried as the connection limit: {retried:?}"
    );
    let timed_out = retried
        .iter()
        .filter(|v| v["reason"] == "connect_timeout")
        .count();
    assert!(
        timed_out >= BURST / 2,
        "{timed_out} retried as connect_timeout: {retried:?}"
    );
    let metrics = metrics_text(admin_addr).await;
    let ejected = "hotproxy_upstream_endpoints{upstream=\"two\",state=\"ejected\"} 0";
    assert!(
        metrics.lines().any(|l| l == ejected),
        "the waiters counted against the dark pod:\n{metrics}"
    );
}
