//! The upstream pool's failure modes: connections the upstream closes while
//! pooled, requests lost on a reused connection, dial storms, shared h2.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// What a scripted backend does with the requests of one connection.
#[derive(Clone, Copy)]
enum Script {
    /// Answer (keep-alive, no `Connection: close`), then close the
    /// connection: the pooled connection is half-closed when reused.
    CloseAfterEachResponse,
    /// Answer the first request; read the second and close without a
    /// byte of response: the race of an upstream's keep-alive timeout.
    DropSecondRequest,
    /// Answer `101 Switching Protocols`, then echo every byte.
    Upgrade,
}

/// A raw HTTP/1.1-over-TLS backend following `script`, counting accepted
/// connections, requests read and connections it closed.
struct Scripted {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn scripted(pair: &TestPair, script: Script) -> Scripted {
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs(&pair.cert_pem), key(&pair.key_pem))
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = Scripted {
        addr: listener.local_addr().unwrap(),
        accepted: Arc::default(),
        requests: Arc::default(),
        closed: Arc::default(),
    };
    let (accepted, requests, closed) = (s.accepted.clone(), s.requests.clone(), s.closed.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let (acceptor, requests, closed) = (acceptor.clone(), requests.clone(), closed.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut n = 0;
                while read_request(&mut tls).await {
                    requests.fetch_add(1, Ordering::SeqCst);
                    n += 1;
                    if matches!(script, Script::DropSecondRequest) && n == 2 {
                        break;
                    }
                    if matches!(script, Script::Upgrade) {
                        let head = "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
                        if tls.write_all(head.as_bytes()).await.is_ok() {
                            let (mut r, mut w) = tokio::io::split(tls);
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                        closed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let body = format!("request {n}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls.write_all(resp.as_bytes()).await.is_err() {
                        break;
                    }
                    if matches!(script, Script::CloseAfterEachResponse) {
                        break;
                    }
                }
                let _ = tls.shutdown().await;
                drop(tls);
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    s
}

/// Read one request head and its `content-length` body; false at EOF.
async fn read_request(tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
        if buf.len() > 65536 {
            return false;
        }
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).await.is_ok()
}

struct World {
    scene: Scene,
    ca: TestCa,
    backend_pair: TestPair,
}

fn world() -> World {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    World {
        backend_pair: backend_ca.server_pair(&["backend.local"]),
        scene,
        ca,
    }
}

fn config(w: &World, backend: std::net::SocketAddr) -> std::path::PathBuf {
    w.scene.one_upstream_config("app", backend, &[])
}

/// The test backend (HTTP/2 and HTTP/1.1) behind a proxy whose one
/// upstream, `app`, has `extra` settings; and the proxy's address.
async fn behind_proxy(w: &World, extra: &[&str]) -> (Backend, Proxy, std::net::SocketAddr) {
    let b = Backend::start("b", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", b.addr, extra));
    let addr = p.listener_addr("public").await;
    (b, p, addr)
}

/// One request over a fresh HTTP/1.1 client connection: status and body.
async fn send(addr: std::net::SocketAddr, w: &World, method: &str, body: &str) -> (u16, String) {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(addr, "a.example.com", cfg).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri("/x")
        .header("host", "a.example.com")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("answered")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An active check is judged by its status; it reads at most 64 KiB of
/// the body, so a check path that streams (a `/healthz` with a long report,
/// a download named by mistake) costs little per check. It read the whole
/// body: 64 MiB every interval here, on the one connection kept for it.
/// Now each check's connection is closed at the cap and the next dials.
#[tokio::test]
async fn an_active_check_reads_a_bounded_part_of_a_long_body() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config(
        "app",
        b.addr,
        &["health: { active: { path: /mebibytes/64, interval: 100ms, timeout: 20s } }"],
    ));
    p.listener_addr("public").await;
    let accepted = || b.accepted.load(Ordering::SeqCst);
    wait_until(
        WAIT,
        "three checks, each on a connection of its own",
        || async { accepted() >= 3 },
    )
    .await;
    // Each cut connection let through at most its socket buffers.
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        sent < accepted() * (16 << 20),
        "{sent} bytes sent for {} checks",
        accepted()
    );
}

/// A request still in flight on a removed upstream does not bring its
/// endpoint gauge back: its failure ejects an endpoint of a set no longer
/// in service, which used to publish that set's counts again, for good.
#[tokio::test]
async fn a_request_on_a_removed_upstream_does_not_bring_its_gauge_back() {
    let w = world();
    let (b1, b2) = (
        Backend::start_h1("b1", &w.backend_pair, None).await,
        Backend::start_h1("b2", &w.backend_pair, None).await,
    );
    let tls = "tls: { ca: { ca_file: backend-ca.crt }, server_name: backend.local }";
    let app = format!(
        "\n  - name: app\n    servers: [https://{}]\n    {tls}",
        b1.addr
    );
    let spare = format!(
        "\n  - name: spare\n    servers: [https://{}, https://{}]\n    request_timeout: 1s\n    retries: {{ attempts: 0 }}\n    health: {{ passive: {{ consecutive_failures: 1 }} }}\n    {tls}",
        b1.addr, b2.addr
    );
    let config = w.scene.public_config(
        "[{ path_prefix: /hang, upstream: spare }, { upstream: app }]",
        &format!("{app}{spare}"),
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    let gauge = "hotproxy_upstream_endpoints{upstream=\"spare\",state=\"healthy\"} 2";
    wait_metric(admin_addr, gauge, WAIT).await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let held =
        tokio::spawn(async move { get(addr, "a.example.com", cfg, false, "/hang", &[]).await });
    let hanging =
        || b1.slow_in_flight.load(Ordering::SeqCst) + b2.slow_in_flight.load(Ordering::SeqCst);
    wait_until(WAIT, "the request is at a backend", || async {
        hanging() == 1
    })
    .await;
    // spare removed while its request waits out request_timeout.
    assert_eq!(w.scene.public_config("[{ upstream: app }]", &app), config);
    p.signal("HUP");
    p.wait_log("the removal", |v| v["message"] == "configuration reloaded")
        .await;
    assert_eq!(held.await.unwrap().unwrap().status, 504);
    p.wait_log("the ejection", |v| {
        v["message"] == "upstream endpoint ejected"
    })
    .await;
    let m = metrics_text(admin_addr).await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("hotproxy_upstream_endpoints{upstream=\"spare\"")),
        "{m}"
    );
}

/// An endpoint whose every connection is taken (a long poll holds the one
/// `max_connections_per_server` allows) is busy, not failing: an active
/// check that finds no connection free has no verdict. It counted as a
/// failed check and took the endpoint out of service while it served.
#[tokio::test]
async fn an_active_check_on_a_busy_endpoint_has_no_verdict() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config(
        "app",
        b.addr,
        &[
            "max_connections_per_server: 1",
            "health: { active: { path: /echo, interval: 100ms, timeout: 300ms, unhealthy_after: 1 } }",
        ],
    ));
    let addr = p.listener_addr("public").await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    // The one connection, held by a request the backend never answers.
    let held =
        tokio::spawn(async move { get(addr, "a.example.com", cfg, false, "/hang", &[]).await });
    let hanging = || b.slow_in_flight.load(Ordering::SeqCst);
    wait_until(WAIT, "the long poll holds the connection", || async {
        hanging() == 1
    })
    .await;
    p.wait_log("a check while busy", |v| {
        v["message"] == "active check skipped: every connection to the endpoint is taken"
    })
    .await;
    let out = "upstream endpoint failed its active checks; out of service";
    assert!(
        !p.logs().iter().any(|l| l.contains(out)),
        "a busy endpoint was taken out of service"
    );
    held.abort();
}

/// A pooled connection the upstream closed while it sat idle (no
/// `Connection: close`, just close_notify and FIN) is noticed when taken
/// from the pool and replaced: the client never sees it.
#[tokio::test]
async fn pooled_connection_closed_by_the_upstream_is_not_reused() {
    let w = world();
    let b = scripted(&w.backend_pair, Script::CloseAfterEachResponse).await;
    let mut p = Proxy::start(&config(&w, b.addr));
    let addr = p.listener_addr("public").await;
    for i in 1..=3 {
        // A POST too: it is never replayed, so only taking the pooled
        // connection's close into account keeps it from failing.
        let method = if i == 1 { "GET" } else { "POST" };
        assert_eq!(send(addr, &w, method, "x").await, (200, "request 1".into()));
        // The upstream has closed the connection the proxy pooled.
        wait_until(WAIT, "backend closed its connection", || async {
            b.closed.load(Ordering::SeqCst) == i
        })
        .await;
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 3);
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("upstream request failed")),
        "{:?}",
        p.logs()
    );
}

/// The upstream reads a request on a reused connection and closes it
/// without answering. An idempotent bodyless request is sent once more on
/// a new connection (the client sees 200); a POST is not (502): it may
/// have been acted upon.
#[tokio::test]
async fn request_lost_on_a_reused_connection_is_retried_only_when_safe() {
    let w = world();
    let b = scripted(&w.backend_pair, Script::DropSecondRequest).await;
    let mut p = Proxy::start(&config(&w, b.addr));
    let addr = p.listener_addr("public").await;
    assert_eq!(send(addr, &w, "GET", "").await, (200, "request 1".into()));
    // Reuses connection 1, which drops it; retried on connection 2.
    assert_eq!(send(addr, &w, "GET", "").await, (200, "request 1".into()));
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(b.requests.load(Ordering::SeqCst), 3);
    // Connection 2 is pooled; the POST reuses it and is dropped: not retried.
    let (status, _) = send(addr, &w, "POST", "order=1").await;
    assert_eq!(status, 502);
    assert_eq!(b.requests.load(Ordering::SeqCst), 4);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    p.wait_log("upstream request failed", |v| {
        v["message"] == "upstream request failed" && v["reason"] == "protocol"
    })
    .await;
}

/// A cold pool under concurrent load opens at most one upstream
/// connection per request in flight (hyper-util's pool raced new dials
/// against returning connections and kept the extras).
#[tokio::test]
async fn cold_start_opens_no_more_connections_than_requests_in_flight() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let mut p = Proxy::start(&config(&w, b.addr));
    let addr = p.listener_addr("public").await;
    const CLIENTS: usize = 12;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
        tasks.push(tokio::spawn(async move {
            let tls = connect(addr, "a.example.com", cfg).await.unwrap();
            let (mut send, conn) = keep_open_h1(tls).await;
            for _ in 0..20 {
                send.ready().await.unwrap();
                let resp = send.send_request(get_localhost()).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
            }
            drop(send);
            let _ = conn.await;
        }));
    }
    for t in tasks {
        tokio::time::timeout(WAIT, t).await.expect("done").unwrap();
    }
    let accepted = b.accepted.load(Ordering::SeqCst);
    assert!(
        (1..=CLIENTS).contains(&accepted),
        "{accepted} upstream connections for {CLIENTS} requests in flight"
    );
}

/// An HTTP/2 upstream connection is shared: concurrent requests from
/// several clients become streams of one connection.
#[tokio::test]
async fn h2_upstream_connection_is_shared() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // Warm: the first connection exists before the concurrent burst.
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let r = get(addr, "a.example.com", cfg.clone(), false, "/", &[])
        .await
        .unwrap();
    assert_eq!(r.json()["version"], "HTTP/2.0");
    // One authority per request: `:authority` is what was routed on (the
    // client's Host), never the upstream server's address.
    assert_eq!(r.json()["authority"], "a.example.com");
    assert_eq!(r.json()["headers"]["host"], "a.example.com");
    // Ten requests the backend holds until all ten are in flight at once.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let r = get(addr, "a.example.com", cfg, false, "/burst/10", &[])
                .await
                .unwrap();
            (r.status, r.body)
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

/// A WebSocket upgrade gets a connection of its own and becomes a tunnel:
/// bytes go both ways after the 101.
#[tokio::test]
async fn websocket_upgrade_tunnels_bytes() {
    let w = world();
    let b = scripted(&w.backend_pair, Script::Upgrade).await;
    let mut p = Proxy::start(&config(&w, b.addr));
    let addr = p.listener_addr("public").await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let mut tls = connect(addr, "a.example.com", cfg).await.unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, tls.read_exact(&mut byte))
            .await
            .expect("101 head")
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(WAIT, tls.read_exact(&mut echoed))
        .await
        .expect("echo")
        .unwrap();
    assert_eq!(&echoed, b"ping");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

/// An HTTP/2 upstream connection that falls silent (a node gone without a
/// reset, a black-holed pod IP: no answer, no FIN) is retired by the first
/// request on it that goes unanswered for `request_timeout`: the next
/// request goes to a new connection. Shared, it took every request until
/// the kernel gave up on the socket, each waiting out `request_timeout`.
/// With one connection allowed per server, the next request also proves
/// the silent one was closed, its slot freed.
#[tokio::test]
async fn a_silent_h2_connection_is_retired_after_an_unanswered_request() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(
        &w,
        &["request_timeout: 1s", "max_connections_per_server: 1"],
    )
    .await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let get = |path: &'static str| get(addr, "a.example.com", cfg.clone(), false, path, &[]);
    let r = get("/").await.unwrap();
    assert_eq!(r.json()["version"], "HTTP/2.0");
    assert_eq!(r.json()["connection"], 0);
    assert_eq!(get("/go-silent").await.unwrap().status, 504);
    let r = get("/").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 1);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}

/// The same for a response body that stops for `read_timeout` on an
/// HTTP/2 connection that then falls silent: the body is cut, and the
/// connection takes no more requests.
#[tokio::test]
async fn a_silent_h2_connection_is_retired_after_a_stalled_body() {
    let w = world();
    let (b, mut p, addr) = behind_proxy(
        &w,
        &[
            "request_timeout: 5s",
            "read_timeout: 1s",
            "max_connections_per_server: 1",
        ],
    )
    .await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(addr, "a.example.com", cfg.clone()).await.unwrap();
    let (mut send, _conn) = keep_open_h1(tls).await;
    let endless = http::Request::builder()
        .uri("/endless")
        .header("host", "a.example.com")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(endless))
        .await
        .expect("head")
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The head is through; now the connection under it falls silent.
    b.go_silent();
    let cut = tokio::time::timeout(WAIT, resp.into_body().collect()).await;
    assert!(matches!(cut, Ok(Err(_))), "the body is cut: {cut:?}");
    let r = get(addr, "a.example.com", cfg, false, "/", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 1);
    p.wait_log("upstream response stalled", |v| {
        v["reason"] == "read_timeout"
    })
    .await;
}

/// An `Upgrade` request the backend answers without switching (a 200,
/// 403 or 426 with a body) is an ordinary response: a body that stops is
/// cut after `read_timeout`, as any is. Its connection runs in a task of
/// its own, and its body was passed on bare: a backend that stopped
/// mid-body held the client, the upstream connection and its slot with
/// no bound.
#[tokio::test]
async fn an_upgrade_answered_without_a_switch_is_bounded_by_read_timeout() {
    let w = world();
    let (_b, mut p, addr) = behind_proxy(&w, &["read_timeout: 1s"]).await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let mut s = connect(addr, "a.example.com", cfg).await.unwrap();
    s.write_all(
        b"GET /ws/endless HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\n\
          connection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          sec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let reply = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    p.wait_log("upstream response stalled", |v| {
        v["reason"] == "read_timeout"
    })
    .await;
}

/// A silent connection is closed at once when retired, not left to a
/// graceful GOAWAY: with megabytes of a request body unread in the
/// kernel's buffers, hyper's GOAWAY would wait until the kernel gave up on
/// the socket (some 15 minutes), holding the server's connection slot.
#[tokio::test]
async fn a_retired_h2_connection_with_writes_pending_frees_its_slot() {
    let w = world();
    let (_b, _proxy, addr) = behind_proxy(
        &w,
        &["request_timeout: 2s", "max_connections_per_server: 1"],
    )
    .await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    // 12 MiB: more than the kernel's send and receive buffers hold, less
    // than the backend's HTTP/2 windows, so the proxy's writes block.
    let tls = connect(addr, "a.example.com", cfg.clone()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let upload = http::Request::post("/go-silent")
        .header("host", "a.example.com")
        .body(Full::new(Bytes::from(vec![b'x'; 12 << 20])))
        .unwrap();
    let upload = tokio::spawn(send.send_request(upload));
    let r = tokio::time::timeout(WAIT, upload).await.expect("answered");
    assert_eq!(r.unwrap().map(|r| r.status().as_u16()).ok(), Some(504));
    let r = get(addr, "a.example.com", cfg, false, "/", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 1);
}

/// `http2_keepalive`: an HTTP/2 connection with a request in flight that
/// has read nothing for `interval` is PINGed; a backend that answers keeps
/// serving (a response slower than `interval` arrives), one that has gone
/// silent is closed after `timeout`, long before `request_timeout`: the
/// client gets `502` (`keepalive_timeout`), not a `504` a minute later,
/// and the next request a new connection.
#[tokio::test]
async fn http2_keepalive_finds_a_silent_connection_before_request_timeout() {
    let w = world();
    let (b, mut p, addr) = behind_proxy(
        &w,
        &[
            "request_timeout: 60s",
            "http2_keepalive: { interval: 500ms, timeout: 1s }",
        ],
    )
    .await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let get = |path: &'static str| get(addr, "a.example.com", cfg.clone(), false, path, &[]);
    // The backend takes 2 s over `/slow` and answers the PINGs meanwhile.
    let r = get("/slow").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 0);
    // A GET whose connection closed under it goes once more, on a new
    // connection, which falls silent too.
    let r = get("/go-silent").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (502, "upstream unavailable\n"));
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    p.wait_log("upstream request failed", |v| {
        v["reason"] == "keepalive_timeout"
    })
    .await;
    let r = get("/").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 2);
}

/// One HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A raw HTTP/2 backend shutting down as Go's and nginx's servers do: on
/// each connection it answers the first request (`200`, body `connection
/// N`) and meets the next with `GOAWAY(NO_ERROR)` whose last stream id is
/// the first's: RFC 9113 §6.8 says that request was not processed. With
/// `at_once`, the `GOAWAY` follows the first answer in the same write, as
/// a server told to shut down while a request is in flight sends it,
/// before the client sends more. Returns its address and its accepted
/// connections.
async fn going_away(pair: &TestPair, at_once: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs(&pair.cert_pem), key(&pair.key_pem))
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut preface = [0u8; 24];
                if tls.read_exact(&mut preface).await.is_err() {
                    return;
                }
                let _ = tls.write_all(&h2_frame(4, 0, 0, &[])).await;
                let mut answered: Option<u32> = None;
                loop {
                    let mut head = [0u8; 9];
                    if tls.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let (kind, flags) = (head[3], head[4]);
                    let stream =
                        u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & !(1 << 31);
                    let mut payload = vec![0u8; len];
                    if tls.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    match (kind, answered) {
                        // SETTINGS, not an ACK: acknowledge.
                        (4, _) if flags & 1 == 0 => {
                            let _ = tls.write_all(&h2_frame(4, 1, 0, &[])).await;
                        }
                        // The first request: `:status: 200` (HPACK static
                        // index 8) and a body naming the connection.
                        (1, None) => {
                            let body = format!("connection {n}");
                            let mut out = [
                                h2_frame(1, 4, stream, &[0x88]),
                                h2_frame(0, 1, stream, body.as_bytes()),
                            ]
                            .concat();
                            if at_once {
                                let mut goaway = stream.to_be_bytes().to_vec();
                                goaway.extend_from_slice(&0u32.to_be_bytes());
                                out.extend(h2_frame(7, 0, 0, &goaway));
                            }
                            let _ = tls.write_all(&out).await;
                            answered = Some(stream);
                        }
                        // The next: GOAWAY naming the first as the last
                        // processed; then read on until the client closes
                        // (closing with its bytes unread would reset the
                        // connection, and the GOAWAY with it).
                        (1, Some(last)) => {
                            let mut goaway = last.to_be_bytes().to_vec();
                            goaway.extend_from_slice(&0u32.to_be_bytes());
                            let _ = tls.write_all(&h2_frame(7, 0, 0, &goaway)).await;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A request that an HTTP/2 backend's `GOAWAY` names as not processed (its
/// stream is past the last stream id: a pod shutting down gracefully under
/// load) is sent again on a new connection, whatever its method, when its
/// body can be sent twice. With one endpoint (a Service's ClusterIP), it
/// was a `502` on every rolling restart.
#[tokio::test]
async fn a_request_an_h2_goaway_left_unprocessed_is_sent_again() {
    let w = world();
    let (backend, accepted) = going_away(&w.backend_pair, false).await;
    let mut p = Proxy::start(&config(&w, backend));
    let addr = p.listener_addr("public").await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(addr, "a.example.com", cfg).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    for (method, body, expect) in [
        ("GET", "", "connection 0"),
        // Stream 3 on connection 0, refused by its GOAWAY; not processed,
        // so even a POST goes again, to connection 1.
        ("POST", "order=1", "connection 1"),
    ] {
        let req = http::Request::builder()
            .method(method)
            .uri("/x")
            .header("host", "a.example.com")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = tokio::time::timeout(WAIT, send.send_request(req))
            .await
            .expect("answered")
            .unwrap();
        let status = resp.status().as_u16();
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!((status, &got[..]), (200, expect.as_bytes()), "{method}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // A body streamed, not read whole (over body_buffer_bytes), cannot be
    // sent twice: a 502 that says why.
    let req = http::Request::post("/x")
        .header("host", "a.example.com")
        .body(Full::new(Bytes::from(vec![b'x'; 20_000])))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(resp.status(), 502);
    p.wait_log("upstream request failed", |v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("before processing the request: GOAWAY NO_ERROR"))
    })
    .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A proxy with an HTTP/1.1-only backend under `/h1/` and an HTTP/2 one
/// for everything else, both upstreams with `extra`.
async fn h1_and_h2_upstreams(w: &World, extra: &str) -> (Proxy, Backend, Backend) {
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let h2 = Backend::start("h2", &w.backend_pair, None).await;
    let upstream = |name: &str, b: &Backend| {
        format!(
            "\n  - name: {name}\n    servers: [https://{}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}\n    {extra}",
            b.addr
        )
    };
    let p = Proxy::start(&w.scene.public_config(
        "\n      - { path_prefix: /h1/, upstream: h1 }\n      - { upstream: h2 }",
        &[upstream("h1", &h1), upstream("h2", &h2)].concat(),
    ));
    (p, h1, h2)
}

/// `idle_timeout`: a pooled connection idle for longer is not reused, over
/// HTTP/1.1 (between requests) and HTTP/2 (no stream) alike: set below a
/// backend's own keep-alive timeout (Node.js closes after 5 s), no request
/// races the backend's close. Before it, HTTP/2 connections were kept idle
/// for ever. They are closed even when no request comes to find them (they
/// were once let go only when the pool was next used, so an endpoint no
/// request reached kept them, and their slots, for as long as it was
/// configured).
#[tokio::test]
async fn idle_upstream_connections_are_not_reused_after_idle_timeout() {
    let w = world();
    let (mut p, h1, h2) = h1_and_h2_upstreams(&w, "idle_timeout: 1s").await;
    let addr = p.listener_addr("public").await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let connection = |path: &'static str| {
        let cfg = cfg.clone();
        async move {
            let r = get(addr, "a.example.com", cfg, false, path, &[])
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            (r.json()["version"].clone(), r.json()["connection"].clone())
        }
    };
    for path in ["/h1/x", "/h2/x"] {
        let (version, first) = connection(path).await;
        // Within the timeout, the same connection serves again.
        assert_eq!(connection(path).await, (version.clone(), first.clone()));
        assert_eq!(first, 0, "{path}");
    }
    // The sweep closes both once idle past the timeout (the pool's own
    // unit tests cover a checkout racing the sweep).
    for (path, b) in [("/h1/x", &h1), ("/h2/x", &h2)] {
        wait_until(WAIT, path, || async { b.open.load(Ordering::SeqCst) == 0 }).await;
    }
    for (path, version) in [("/h1/x", "HTTP/1.1"), ("/h2/x", "HTTP/2.0")] {
        assert_eq!(connection(path).await, (version.into(), 1.into()), "{path}");
    }
    assert_eq!(h1.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(h2.accepted.load(Ordering::SeqCst), 2);
}

/// A server's `SETTINGS_MAX_CONCURRENT_STREAMS` below hotproxy's 100 caps
/// what one connection carries; the pool opens another for the rest (as
/// Envoy's and Go's do) instead of hyper queueing them one behind the
/// other on the first.
#[tokio::test]
async fn a_servers_stream_limit_opens_more_connections_instead_of_queueing() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // Before the proxy's first connection: the backend's settings hold
    // for connections it accepts from now on.
    b.h2_max_streams.store(1, Ordering::SeqCst);
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    // Two in turn: the second is handed over after the server's SETTINGS
    // (they came before the first response) were read.
    for _ in 0..2 {
        let r = get(addr, "a.example.com", cfg.clone(), false, "/", &[])
            .await
            .unwrap();
        assert_eq!(
            (
                r.json()["version"].as_str(),
                r.json()["connection"].as_u64()
            ),
            (Some("HTTP/2.0"), Some(0))
        );
    }
    // Two requests the backend holds until both are in flight at once:
    // the first connection, whose limit of one is known, is full with
    // one, so the other needs a connection of its own.
    let burst: Vec<_> = (0..2)
        .map(|_| {
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let r = get(addr, "a.example.com", cfg, false, "/burst/2", &[])
                    .await
                    .unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
                r.json()["connection"].as_u64().unwrap()
            })
        })
        .collect();
    let mut used = Vec::new();
    for t in burst {
        used.push(t.await.unwrap());
    }
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 2, "two requests at once shared {used:?}");
}

/// A raw HTTP/2 client of the proxy at `addr`: its streams need not be read.
async fn h2_to(w: &World, addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    h2_client(connect(addr, "a.example.com", cfg).await.unwrap()).await
}

/// One GET over HTTP/2 first: the upstream connection then exists, and the
/// server's settings have been read with its response.
async fn warm_up(w: &World, addr: std::net::SocketAddr) {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let r = get(addr, "a.example.com", cfg, true, "/", &[]).await;
    assert_eq!(r.unwrap().status, 200);
}

/// GETs of `paths` sent at once on `client` (in one write, they reach the
/// proxy together), answers not awaited.
async fn send_all(
    client: &mut h2::client::SendRequest<Bytes>,
    paths: impl IntoIterator<Item = String>,
) -> Vec<h2::client::ResponseFuture> {
    let mut sent = Vec::new();
    for path in paths {
        let req = http::Request::get(format!("https://a.example.com{path}"))
            .body(())
            .unwrap();
        *client = client.clone().ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        sent.push(resp);
    }
    sent
}

/// Each answer's head, in order. Dropping one with its request's handle
/// resets the stream: keep them while a test needs the streams open.
async fn heads(answers: Vec<h2::client::ResponseFuture>) -> Vec<http::Response<h2::RecvStream>> {
    let mut out = Vec::new();
    for resp in answers {
        out.push(tokio::time::timeout(WAIT, resp).await.unwrap().unwrap());
    }
    out
}

/// The status of each answer, in order.
async fn statuses(answers: Vec<h2::client::ResponseFuture>) -> Vec<u16> {
    heads(answers)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect()
}

/// Clients that stop reading large responses from a shared HTTP/2
/// upstream connection hold up only their own streams: another client's
/// download on the same connection goes on. With hyper's client windows
/// (2 MiB a stream, 5 MiB the whole connection) three unread responses
/// took the connection's whole window, and every other response on it
/// stalled until `read_timeout` (60 s), which then retired the connection:
/// one slow reader on a mobile link held up every client behind that
/// backend connection.
#[tokio::test]
async fn clients_that_stop_reading_do_not_stall_others_on_a_shared_h2_connection() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // One upstream connection, then eight downloads of 8 MiB on it from one
    // client connection that reads nothing (its windows stay at HTTP/2's
    // initial 64 KiB).
    warm_up(&w, addr).await;
    let mut stalled = h2_to(&w, addr).await;
    let unread = heads(send_all(&mut stalled, (0..8).map(|_| "/mebibytes/8".into())).await).await;
    wait_until(WAIT, "every unread download has begun", || async {
        b.bulk_sent.load(Ordering::SeqCst) >= 8 * 64 * 1024
    })
    .await;
    // Another client's 4 MiB over the same upstream connection.
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let r = tokio::time::timeout(
        WAIT,
        get(addr, "a.example.com", cfg, false, "/mebibytes/4", &[]),
    )
    .await
    .expect("a download beside unread ones is not held up")
    .unwrap();
    assert_eq!((r.status, r.body.len()), (200, 4 << 20));
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "one shared connection"
    );
    drop(unread);
}

/// What a client that opens every stream on large responses from an
/// HTTP/2 upstream and reads nothing makes hotproxy hold stays bounded:
/// each stream's upstream window (128 KiB) and client-side queue (32 KiB),
/// about 16 MB for 100 streams. The connection window that lets no unread
/// stream hold up the others (100 streams' worth) is no licence to buffer:
/// a stream window of hyper's 2 MiB would make this 200 MB.
#[tokio::test]
async fn a_client_that_never_reads_h2_upstream_responses_holds_bounded_memory() {
    let w = world();
    let (b, mut p, addr) = behind_proxy(&w, &[]).await;
    // One upstream connection first, which all 100 streams then share.
    warm_up(&w, addr).await;
    let before = rss_kib(p.pid());
    let mut client = h2_to(&w, addr).await;
    let unread = send_all(&mut client, (0..100).map(|_| "/mebibytes/8".into())).await;
    wait_until(WAIT, "all 100 downloads have begun", || async {
        b.bulk_sent.load(Ordering::SeqCst) >= 100 * 64 * 1024
    })
    .await;
    // Watch it while the upstream pours in what the windows allow.
    let grown = peak_rss_kib(p.pid()).await.saturating_sub(before);
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        grown < 40 * 1024,
        "one non-reading client grew hotproxy by {grown} KiB ({sent} bytes sent by the upstream)"
    );
    // What the windows let in, counted, not sampled in time: after more
    // requests in turn (a span of the proxy's own work, which a slow
    // machine lengthens; to the admin listener, as the upstream connection
    // is full), each stream has
    // had at most its upstream window (128 KiB), the client's window it
    // was sent on (64 KiB), its queue (32 KiB) and one 64 KiB piece the
    // backend queued past its window: a 2 MiB window would pour in the
    // whole 800 MiB asked for.
    let admin = p.admin_addr().await;
    for _ in 0..20 {
        metrics_text(admin).await;
    }
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        sent <= 100 * (128 + 64 + 32 + 64) * 1024,
        "{sent} bytes sent by the upstream to 100 streams nobody reads"
    );
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "one shared connection"
    );
    drop(unread);
}

/// A burst of requests on a cold HTTP/2 upstream: the first few dial, the
/// rest wait for a connection, and one shared HTTP/2 connection serves
/// them all. A new HTTP/2 connection woke one waiting request, as a
/// returned HTTP/1.1 connection does, so all but a dozen of 60 waited out
/// `connect_timeout` and got `504` ("no connection to the server free").
#[tokio::test]
async fn a_burst_on_a_cold_h2_upstream_is_served_by_shared_connections() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // Sent in one go, they reach the proxy together; the dials they start
    // are held until as many run as may at once, so the rest wait.
    b.hold_handshakes.send_replace(true);
    let mut client = h2_to(&w, addr).await;
    let burst = send_all(&mut client, (0..60).map(|i| format!("/burst/60/{i}"))).await;
    wait_until(WAIT, "eight dials in progress", || async {
        b.accepted.load(Ordering::SeqCst) == 8
    })
    .await;
    b.hold_handshakes.send_replace(false);
    let statuses = statuses(burst).await;
    let refused = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(refused, 0, "{statuses:?}");
    // At most the dials one cold start runs at once.
    let accepted = b.accepted.load(Ordering::SeqCst);
    assert!((1..=8).contains(&accepted), "{accepted} connections");
}

/// With every connection `max_connections_per_server` allows open and
/// full (a server allowing one stream at a time), a request waits for a
/// stream to end on one of them and is served then. A stream's end woke
/// nobody, so each waiting request got `504` after `connect_timeout`
/// however soon a stream was free.
#[tokio::test]
async fn a_request_waiting_on_full_h2_connections_takes_the_next_free_stream() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &["max_connections_per_server: 1"]).await;
    b.h2_max_streams.store(1, Ordering::SeqCst);
    // The server's limit is read with the first response.
    warm_up(&w, addr).await;
    let mut client = h2_to(&w, addr).await;
    // The one stream: a call the client keeps open (its request body
    // goes on), echoed back piece by piece; one piece back shows it
    // open at the backend.
    let req = http::Request::post("https://a.example.com/echo")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (resp, mut tx) = client.send_request(req, false).unwrap();
    tx.send_data(Bytes::from_static(b"one"), false).unwrap();
    let resp = tokio::time::timeout(WAIT, resp)
        .await
        .expect("the call's response head")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut rx = resp.into_body();
    echoed(&mut rx, "one").await;
    // Two requests behind it wait for its stream. One more piece of the
    // call, sent after them, comes back only once the proxy has read
    // their HEADERS (a connection's frames are read in order) and passed
    // the piece on: by then they are waiting.
    let waiting = send_all(&mut client, (0..2).map(|i| format!("/x/{i}"))).await;
    tx.send_data(Bytes::from_static(b"two"), false).unwrap();
    echoed(&mut rx, "two").await;
    // The call ends; the stream is free; both are served on it in turn.
    tx.send_data(Bytes::new(), true).unwrap();
    while let Some(piece) = tokio::time::timeout(WAIT, rx.data()).await.unwrap() {
        assert!(piece.unwrap().is_empty(), "the call went on after its end");
    }
    assert_eq!(statuses(waiting).await, [200, 200]);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

/// A burst of streamed calls (gRPC's shape: a body of unknown length, so
/// none can be sent twice) on a cold HTTP/2 upstream whose server allows
/// five streams at once: every call is served. A new connection was shared
/// before the server's SETTINGS were read, as if it allowed hotproxy's 100,
/// so the server refused the streams past its five (`REFUSED_STREAM`), and
/// those calls, whose bodies could not be sent again, got `502`.
#[tokio::test]
async fn a_cold_burst_keeps_to_the_servers_stream_limit() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // Before the proxy's first connection: it holds for every connection.
    b.h2_max_streams.store(5, Ordering::SeqCst);
    let mut client = h2_to(&w, addr).await;
    // All heads first (they reach the proxy together), then each body.
    let mut calls = Vec::new();
    for _ in 0..30 {
        let req = http::Request::post("https://a.example.com/echo")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        calls.push(client.send_request(req, false).unwrap());
    }
    for (_, tx) in &mut calls {
        tx.send_data(Bytes::from_static(b"call"), true).unwrap();
    }
    let mut statuses = Vec::new();
    for (resp, _tx) in calls {
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 200 {
            echoed(&mut resp.into_body(), "call").await;
        }
    }
    assert_eq!(statuses, [200; 30]);
}

/// Read `message` from an echoed response body.
async fn echoed(rx: &mut h2::RecvStream, message: &str) {
    let mut got = Vec::new();
    while got.len() < message.len() {
        let piece = tokio::time::timeout(WAIT, rx.data())
            .await
            .unwrap_or_else(|_| panic!("{message:?} not echoed"))
            .expect("the response goes on")
            .unwrap();
        let _ = rx.flow_control().release_capacity(piece.len());
        got.extend_from_slice(&piece);
    }
    assert_eq!(String::from_utf8_lossy(&got), message);
}

/// Once an endpoint is known to speak HTTP/2, a burst on it with no
/// connection open (the last closed after `idle_timeout`) dials one
/// connection and shares it, instead of one per request up to the dial
/// bound: eight backend accepts where one does.
#[tokio::test]
async fn a_cold_burst_on_an_endpoint_known_to_speak_h2_dials_once() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &["idle_timeout: 1s"]).await;
    warm_up(&w, addr).await;
    wait_until(WAIT, "the idle connection closed", || async {
        b.open.load(Ordering::SeqCst) == 0
    })
    .await;
    b.hold_handshakes.send_replace(true);
    let mut client = h2_to(&w, addr).await;
    let burst = send_all(&mut client, (0..20).map(|i| format!("/burst/20/{i}"))).await;
    wait_until(WAIT, "a dial in progress", || async {
        b.accepted.load(Ordering::SeqCst) >= 2
    })
    .await;
    b.hold_handshakes.send_replace(false);
    assert_eq!(statuses(burst).await, [200; 20]);
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        2,
        "one dial for the burst"
    );
}

/// A server that has said `GOAWAY` before the next request (shutting down
/// between requests) takes no new stream on that connection: the next
/// request, even one whose streamed body could not be sent twice, goes on
/// a new connection and is served.
#[tokio::test]
async fn after_an_h2_goaway_the_next_request_takes_a_new_connection() {
    let w = world();
    let (backend, accepted) = going_away(&w.backend_pair, true).await;
    let mut p = Proxy::start(&config(&w, backend));
    let addr = p.listener_addr("public").await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(addr, "a.example.com", cfg).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    for (body, expect) in [(0, "connection 0"), (20_000, "connection 1")] {
        // 20,000 bytes: over body_buffer_bytes, streamed, not replayable.
        let req = http::Request::post("/x")
            .header("host", "a.example.com")
            .body(Full::new(Bytes::from(vec![b'x'; body])))
            .unwrap();
        let resp = tokio::time::timeout(WAIT, send.send_request(req))
            .await
            .expect("answered")
            .unwrap();
        let status = resp.status().as_u16();
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        // What the proxy said about its upstream attempts, should it differ.
        let said = || {
            p.logs()
                .into_iter()
                .filter(|l| l.contains("upstream") || l.contains("retry"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            (status, String::from_utf8_lossy(&got).as_ref()),
            (200, expect),
            "{body} bytes\n{}",
            said()
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A request body and its response body stream at the same time, as in
/// a gRPC bidirectional call: each message the client sends comes back
/// before it sends the next, over an HTTP/2 upstream and over an HTTP/1.1
/// one (chunked both ways). A proxy that waited for the whole request
/// body, or held the response until the request ended, deadlocks here.
#[tokio::test]
async fn request_and_response_bodies_stream_both_ways_at_once() {
    let w = world();
    let (mut p, _h1, _h2) = h1_and_h2_upstreams(&w, "").await;
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(&w, addr).await;
    for path in ["/h1/echo", "/h2/echo"] {
        let req = http::Request::post(format!("https://a.example.com{path}"))
            .header("te", "trailers")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, mut tx) = client.send_request(req, false).unwrap();
        tx.send_data(Bytes::from_static(b"ping 0"), false).unwrap();
        let resp = tokio::time::timeout(WAIT, resp)
            .await
            .expect("a response head while the request body goes on")
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let mut rx = resp.into_body();
        for i in 0..3 {
            let message = format!("ping {i}");
            if i > 0 {
                tx.send_data(Bytes::from(message.clone()), false).unwrap();
            }
            let mut got = Vec::new();
            while got.len() < message.len() {
                let piece = tokio::time::timeout(WAIT, rx.data())
                    .await
                    .unwrap_or_else(|_| panic!("{path}: {message:?} not echoed"))
                    .expect("the response goes on")
                    .unwrap();
                let _ = rx.flow_control().release_capacity(piece.len());
                got.extend_from_slice(&piece);
            }
            assert_eq!(String::from_utf8_lossy(&got), message, "{path}");
        }
        // The end of the request ends the response (an empty last piece
        // may come first).
        tx.send_data(Bytes::new(), true).unwrap();
        loop {
            match tokio::time::timeout(WAIT, rx.data()).await.unwrap() {
                None => break,
                Some(Ok(piece)) if piece.is_empty() => continue,
                other => panic!("{path}: {other:?} after the end"),
            }
        }
    }
}

/// `http2_stream_window_bytes` is what one stream may have in flight
/// unread: with 2 MiB, a backend sends a client that does not read more
/// than 2 MiB before it waits (with the default 128 KiB it waits after
/// a few hundred KiB), which is what a far backend needs to fill a long
/// round trip.
#[tokio::test]
async fn http2_stream_window_bytes_sets_what_one_stream_has_in_flight() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &["http2_stream_window_bytes: 2097152"]).await;
    let mut client = h2_to(&w, addr).await;
    let unread = send_all(&mut client, ["/mebibytes/8".to_owned()]).await;
    wait_until(
        WAIT,
        "2 MiB in flight to a client that reads nothing",
        || async { b.bulk_sent.load(Ordering::SeqCst) >= 2 << 20 },
    )
    .await;
    // And not much more: the window holds. An absence shows over a span,
    // counted here in the proxy's own work (requests in turn, on the same
    // upstream connection, which so keeps moving), not in wall-clock time.
    for _ in 0..20 {
        assert_eq!(send(addr, &w, "GET", "").await.0, 200);
    }
    // 2 MiB, plus what the client's 64 KiB window took, the proxy's piece
    // in hand and one 64 KiB piece the backend queued past its window.
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        sent <= (2 << 20) + (512 << 10),
        "{sent} bytes sent to a client that reads nothing: the window did not hold"
    );
    drop(unread);
}

/// An upstream edited by a reload gives back the old one's idle
/// connections at once. They used to stay open (never used again, in
/// CLOSE_WAIT once the backend closed them, outside the new endpoints'
/// `max_connections_per_server`) for as long as any request still held
/// the old upstream: a long poll, a server-sent-events stream.
#[tokio::test]
async fn an_edited_upstream_closes_its_idle_connections() {
    use std::sync::atomic::Ordering::SeqCst;
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let config = w.scene.one_upstream_config("app", b.addr, &[]);
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    // A request that holds the old upstream through the edit ...
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(addr, "a.example.com", cfg).await.unwrap();
    let (mut held, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/hang")
        .header("host", "a.example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let hanging = tokio::spawn(held.send_request(req));
    wait_until(WAIT, "the hanging request at the backend", || async {
        b.slow_in_flight.load(SeqCst) == 1
    })
    .await;
    // ... and, beside it, one idle pooled connection.
    assert_eq!(send(addr, &w, "GET", "").await.0, 200);
    assert_eq!(b.open.load(SeqCst), 2);
    let edited = std::fs::read_to_string(&config).unwrap().replace(
        "server_name: backend.local }",
        "server_name: backend.local }\n    request_timeout: 59s",
    );
    write(&config, &edited);
    p.signal("HUP");
    p.wait_log("the edit", |v| v["message"] == "configuration reloaded")
        .await;
    wait_until(WAIT, "the old idle connection closed", || async {
        b.open.load(SeqCst) == 1
    })
    .await;
    hanging.abort();
}

/// An upstream removed by a reload takes its `hotproxy_upstream_endpoints`
/// series with it (they stayed for the life of the process: a dashboard
/// kept showing it, an alert on ejected endpoints kept firing).
#[tokio::test]
async fn a_removed_upstream_leaves_the_endpoint_gauge() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let spare = format!(
        "\n  - name: spare\n    servers: [https://{}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}",
        b.addr
    );
    let config = w.scene.one_upstream_config("app", b.addr, &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    write(&config, &format!("{}{spare}\n", text.trim_end()));
    let mut p = Proxy::start(&config);
    let admin_addr = p.admin_addr().await;
    let gauge = "hotproxy_upstream_endpoints{upstream=\"spare\",state=\"healthy\"} 1";
    wait_metric(admin_addr, gauge, WAIT).await;
    write(&config, &text);
    p.signal("HUP");
    p.wait_log("the removal", |v| v["message"] == "configuration reloaded")
        .await;
    let m = metrics_text(admin_addr).await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("hotproxy_upstream_endpoints{upstream=\"spare\"")),
        "{m}"
    );
    assert!(m.contains("hotproxy_upstream_endpoints{upstream=\"app\",state=\"healthy\"} 1"));
}
