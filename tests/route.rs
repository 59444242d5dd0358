//! One request as the upstream sees it: one authority, a normalised path,
//! hotproxy's own forwarding headers, client faults answered as client
//! faults, and a bounded number of upstream connections.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

const WAIT: Duration = Duration::from_secs(10);

struct World {
    scene: Scene,
    ca: TestCa,
    backend_pair: TestPair,
    pub_backend: Backend,
    other: Backend,
    b: Backend,
}

async fn world() -> World {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com", "b.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let pair = backend_ca.server_pair(&["backend.local"]);
    World {
        pub_backend: Backend::start("pub", &pair, None).await,
        // HTTP/1.1 only: a request the upstream gets must carry Host there.
        other: Backend::start_h1("other", &pair, None).await,
        b: Backend::start("b", &pair, None).await,
        backend_pair: pair,
        scene,
        ca,
    }
}

fn upstream(name: &str, backend: &Backend, extra: &str) -> String {
    format!(
        r#"
  - name: {name}
    servers: [https://{addr}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
    {extra}"#,
        addr = backend.addr
    )
}

fn config(w: &World, pub_extra: &str) -> std::path::PathBuf {
    w.scene.public_config(
        r#"
      - { host: b.example.com, upstream: b }
      - { path_prefix: /pub/, upstream: pub }
      - { path_prefix: /slow, upstream: pub }
      - { upstream: other }"#,
        &[
            upstream("pub", &w.pub_backend, pub_extra),
            upstream("other", &w.other, ""),
            upstream("b", &w.b, ""),
        ]
        .concat(),
    )
}

/// An HTTP/2 client of the proxy at `addr`, for `a.example.com`.
async fn h2_to(w: &World, addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    h2_client(connect(addr, "a.example.com", cfg).await.unwrap()).await
}

/// What a client saw for raw request bytes: status, head, body.
struct Raw {
    status: u16,
    head: String,
    body: String,
    /// The body as it came, chunked or not.
    wire: String,
}

impl Raw {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.body))
    }
}

/// Send `bytes` as they are over TLS (HTTP/1.1 by ALPN) and read until the
/// proxy closes; requests carry `Connection: close`.
async fn raw(w: &World, addr: std::net::SocketAddr, bytes: &[u8]) -> Raw {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let mut tls = connect(addr, "a.example.com", cfg).await.unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    // A reset after the response (unread input) still leaves what was read.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut out))
        .await
        .expect("proxy answered and closed");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body_on_the_wire = body;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Raw {
        status,
        head: head.to_owned(),
        body,
        wire: body_on_the_wire.to_owned(),
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `req` over HTTP/2 with the body `abcd` and then `trailers`: what the
/// backend saw (its JSON, from a `200`) and the response body, read to its
/// end and left for its trailers.
async fn h2_upload(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    req: http::Request<()>,
    trailers: &[(&str, &str)],
) -> (serde_json::Value, h2::RecvStream) {
    let (resp, mut stream) = client.send_request(req, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(b"abcd"), false)
        .unwrap();
    let trailers: http::HeaderMap = trailers
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect();
    stream.send_trailers(trailers).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    (serde_json::from_slice(&data).unwrap(), body)
}

/// The trailer section of a chunked body as on the wire (what follows
/// its last, empty chunk), as `name: value` lines.
fn trailer_section(wire: &str) -> Vec<&str> {
    wire.rsplit_once("\r\n0\r\n")
        .or_else(|| wire.strip_prefix("0\r\n").map(|t| ("", t)))
        .map(|(_, t)| t.split("\r\n").filter(|l| !l.is_empty()).collect())
        .unwrap_or_default()
}

/// Routing and the upstream's Host agree: an absolute-form target wins over
/// `Host` (and replaces it), duplicate or missing `Host` on HTTP/1.1 is
/// 400, and `X-Forwarded-Host` is always hotproxy's.
#[tokio::test]
async fn one_authority_per_request() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, ""));
    let addr = p.listener_addr("public").await;

    let r = raw(
        &w,
        addr,
        b"GET http://b.example.com/x HTTP/1.1\r\nHost: a.example.com\r\nX-Forwarded-Host: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_routed_to_b(r.status, &r.body);

    let duplicate = b"GET /x HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\nConnection: close\r\n\r\n";
    assert_400(&w, addr, duplicate, "more than one Host").await;
    let missing =
        b"GET /x HTTP/1.1\r\nX-Forwarded-Host: b.example.com\r\nConnection: close\r\n\r\n";
    assert_400(&w, addr, missing, "missing Host").await;

    // `Connection: host` cannot strip the routed authority on the way up.
    let r = raw(
        &w,
        addr,
        b"GET /x HTTP/1.1\r\nHost: b.example.com\r\nConnection: host, close\r\n\r\n",
    )
    .await;
    assert_routed_to_b(r.status, &r.body);

    // HTTP/1.0 may omit Host; the client's X-Forwarded-Host still never
    // passes. The upstream request is HTTP/1.1, which must have a Host
    // (RFC 9112 §3.2): the endpoint's address stands in, as nginx sends
    // `$proxy_host`. It used to go without one.
    let r = raw(
        &w,
        addr,
        b"GET /x HTTP/1.0\r\nX-Forwarded-Host: b.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["backend"], "other");
    assert!(j["headers"].get("x-forwarded-host").is_none(), "{j}");
    let host = j["headers"]["host"].as_str().unwrap_or_default();
    assert!(host.starts_with("127.0.0.1:"), "{j}");

    // h2: :authority is routed on and becomes the upstream's Host.
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let r = get(addr, "b.example.com", cfg, true, "/x", &[])
        .await
        .unwrap();
    assert_routed_to_b(r.status, &r.body);
}

/// A 200 from backend `b` whose `Host` and `X-Forwarded-Host` are both
/// `b.example.com`, whatever the client sent for either.
fn assert_routed_to_b(status: u16, body: &str) {
    assert_eq!(status, 200, "{body}");
    let j: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(j["backend"], "b", "{j}");
    assert_eq!(j["headers"]["host"], "b.example.com", "{j}");
    assert_eq!(j["headers"]["x-forwarded-host"], "b.example.com", "{j}");
}

/// `bytes` get a 400 whose body says `why`.
async fn assert_400(w: &World, addr: std::net::SocketAddr, bytes: &[u8], why: &str) {
    let r = raw(w, addr, bytes).await;
    assert_eq!(r.status, 400, "{why}: {}", r.body);
    assert!(r.body.contains(why), "{}", r.body);
}

/// Dot segments (also as `%2e`) are removed before routing and the
/// normalised path is what the upstream gets; an encoded `/` or `\` is 400.
#[tokio::test]
async fn paths_are_normalised_before_routing() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, ""));
    let addr = p.listener_addr("public").await;
    for (path, backend, seen) in [
        ("/pub/../secret", "other", "/secret"),
        ("/pub/%2e%2e/secret", "other", "/secret"),
        ("/pub/%2E./secret", "other", "/secret"),
        ("/pub/a/./b/../c", "pub", "/pub/a/c"),
        ("/pub/%61", "pub", "/pub/a"),
    ] {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n");
        let r = raw(&w, addr, req.as_bytes()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let j = r.json();
        assert_eq!(j["backend"], backend, "{path}");
        assert_eq!(j["path"], seen, "{path}");
    }
    for path in [
        "/pub/..%2fsecret",
        "/pub%2F..%2Fsecret",
        "/pub/..%5csecret",
        "/pub/%zz",
        "/pub/..;/secret",
    ] {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n");
        let r = raw(&w, addr, req.as_bytes()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }
    assert_eq!(w.pub_backend.accepted.load(Ordering::SeqCst), 1);
}

/// A malformed chunked request body is the client's fault: 400, counted
/// under code 400 and not as an upstream error, no WARN, and the pooled
/// (h2) upstream connection keeps serving.
#[tokio::test]
async fn malformed_chunked_body_is_a_client_error() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, ""));
    let addr = p.listener_addr("public").await;
    let good = b"GET /pub/x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&w, addr, good).await.status, 200);
    for (what, body) in [
        ("bad size", &b"zz\r\nhello\r\n0\r\n\r\n"[..]),
        ("overflow", b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ("LF only", b"5\nhello\n0\n\n"),
    ] {
        // `/slow` answers after 2 s: the client's body fails long before.
        let mut req = b"POST /slow HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        let r = raw(&w, addr, &req).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
    }
    assert_eq!(raw(&w, addr, good).await.status, 200);
    // The h2 upstream connection survived: one connection all along.
    assert_eq!(w.pub_backend.accepted.load(Ordering::SeqCst), 1);
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        !m.contains("hotproxy_upstream_errors_total{"),
        "client faults counted as upstream errors:\n{m}"
    );
    assert!(
        m.contains(
            r#"hotproxy_http_requests_total{listener="public",upstream="pub",code="400"} 3"#
        ),
        "{m}"
    );
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("upstream request failed")
                || (l.contains("\"WARN\"") && l.contains("hotproxy::proxy"))),
        "a client fault was logged as an upstream failure"
    );
}

/// `CONNECT` and `TRACE` are answered by hotproxy with 405, never
/// forwarded: hotproxy is no forward proxy, and a backend echoing a TRACE
/// would reflect the headers hotproxy adds (cross-site tracing). Over
/// HTTP/2 as over HTTP/1.1; `Allow` names neither.
#[tokio::test]
async fn connect_and_trace_are_405() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, ""));
    let addr = p.listener_addr("public").await;
    for request in [
        &b"CONNECT b.example.com:443 HTTP/1.1\r\nHost: b.example.com:443\r\nConnection: close\r\n\r\n"[..],
        b"TRACE /pub/x HTTP/1.1\r\nHost: b.example.com\r\nConnection: close\r\n\r\n",
        b"TRACE /x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    ] {
        let r = raw(&w, addr, request).await;
        assert_eq!(r.status, 405, "{}", r.body);
        let head = r.head.to_ascii_lowercase();
        let allow = head
            .lines()
            .find_map(|l| l.strip_prefix("allow: "))
            .unwrap_or_else(|| panic!("no Allow: {head}"));
        assert!(allow.contains("get") && !allow.contains("trace"), "{allow}");
    }
    let mut client = h2_to(&w, addr).await;
    let trace = http::Request::builder()
        .method("TRACE")
        .uri("https://a.example.com/pub/x")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(trace, true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 405);
    for backend in [&w.b, &w.other, &w.pub_backend] {
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 0);
    }
}

/// Client-sent forwarding headers are replaced (no trusted proxy); `te: trailers`
/// from an h2 client reaches an h2 backend (gRPC needs it).
#[tokio::test]
async fn forwarding_headers_and_te_trailers() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, ""));
    let addr = p.listener_addr("public").await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let r = get(
        addr,
        "a.example.com",
        cfg,
        true,
        "/pub/grpc",
        &[
            ("te", "trailers"),
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-for", "192.0.2.2, 192.0.2.3"),
            ("forwarded", "for=192.0.2.9;proto=http"),
            ("x-real-ip", "192.0.2.9"),
            ("x-forwarded-port", "80"),
            ("x-forwarded-proto", "http"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["version"], "HTTP/2.0");
    let h = &j["headers"];
    assert_eq!(h["te"], "trailers", "{h}");
    // Not a trusted proxy (issue 16): its X-Forwarded-For is replaced.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    for gone in ["forwarded", "x-real-ip", "x-forwarded-port"] {
        assert!(h.get(gone).is_none(), "{gone} passed: {h}");
    }
}

/// An HTTP/2 client may send `cookie` as one field per pair (browsers
/// do, for HPACK compression); the upstream gets one `cookie` header
/// joined with "; " (RFC 9113 §8.2.3: required before an HTTP/1.1 hop,
/// where many applications read only the first `Cookie` line), over
/// HTTP/1.1 and HTTP/2 alike, as nginx and Envoy send it.
#[tokio::test]
async fn h2_cookie_fields_reach_the_upstream_as_one_header() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let h2 = Backend::start("h2", &w.backend_pair, None).await;
    let path = w.scene.public_config(
        r#"
      - { path_prefix: /h1/, upstream: h1 }
      - { upstream: h2 }"#,
        &[upstream("h1", &h1, ""), upstream("h2", &h2, "")].concat(),
    );
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    for (path, version) in [("/h1/x", "HTTP/1.1"), ("/x", "HTTP/2.0")] {
        let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
        let cookies = [("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")];
        let r = get(addr, "a.example.com", cfg, true, path, &cookies)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        assert_eq!(j["version"], version, "{j}");
        assert_eq!(j["headers"]["cookie"], "a=1; b=2; c=3", "{j}");
        assert!(j["repeated"].get("cookie").is_none(), "{j}");
    }
}

/// An h2 client that breaks its own stream (more DATA than its
/// `content-length`) gets its stream reset; the proxy neither answers 502
/// nor counts or logs an upstream failure. A regression guard: hyper
/// usually drops the request on the reset before the forwarder sees the
/// failed body, so the old misclassification only showed intermittently;
/// `malformed_chunked_body_*` pin the classification deterministically.
#[tokio::test]
async fn h2_client_stream_error_is_not_an_upstream_error() {
    let w = world().await;
    // Against an h2 backend (`pub`) and an HTTP/1.1 one.
    h2_client_breaks_streams(&w, &config(&w, "")).await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    h2_client_breaks_streams(&w, &capped_config(&w, &h1, &[])).await;
}

async fn h2_client_breaks_streams(w: &World, config: &std::path::Path) {
    let mut p = Proxy::start(config);
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(w, addr).await;
    for _ in 0..10 {
        let req = http::Request::post("https://a.example.com/slow")
            .header("content-length", "5")
            .body(())
            .unwrap();
        let (resp, mut body) = client.send_request(req, false).unwrap();
        body.send_data(bytes::Bytes::from_static(b"0123456789"), true)
            .unwrap();
        match tokio::time::timeout(WAIT, resp).await.expect("answered") {
            Ok(r) => assert_eq!(r.status(), 400),
            Err(e) => assert!(e.is_reset(), "{e}"),
        }
        client = client.ready().await.unwrap();
    }
    // A good request on the same connection, after the broken ones were handled.
    let req = http::Request::get("https://a.example.com/pub/x")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        !m.contains("hotproxy_upstream_errors_total{"),
        "client faults counted as upstream errors:\n{m}"
    );
    assert!(!m.contains(r#"code="502""#), "{m}");
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("upstream request failed")),
        "a client fault was logged as an upstream failure"
    );
}

/// A listener routing everything to one upstream `capped` in front of
/// `backend`, with `extra` upstream settings.
fn capped_config(w: &World, backend: &Backend, extra: &[&str]) -> std::path::PathBuf {
    w.scene.one_upstream_config("capped", backend.addr, extra)
}

/// One h2 client with many concurrent streams to a slow HTTP/1.1 backend
/// opens at most `max_connections_per_server` upstream connections; the
/// other requests wait for one and are all served.
#[tokio::test]
async fn max_connections_per_server_caps_upstream_connections() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    // connect_timeout bounds the wait for a free connection: far more than
    // 20 requests over 2 connections need. The backend holds them in
    // pairs (`/burst/2`): both connections busy at once, each time.
    let mut p = Proxy::start(&capped_config(
        &w,
        &h1,
        &["max_connections_per_server: 2", "connect_timeout: 30s"],
    ));
    let addr = p.listener_addr("public").await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let tls = connect(addr, "a.example.com", cfg).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let requests = (0..20).map(|i| {
        let mut send = send.clone();
        async move {
            let req = http::Request::get(format!("https://a.example.com/burst/2/{i}"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            // Which backend connection served it, for the message below.
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            (status, json["connection"].as_u64())
        }
    });
    let statuses = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(requests),
    )
    .await
    .expect("all requests answered");
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
    let accepted = h1.accepted.load(Ordering::SeqCst);
    // What the proxy said about its upstream connections (it logs at
    // debug level here): a retry or a closed connection would show.
    let said: Vec<String> = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("upstream") || l.contains("retry"))
        .collect();
    assert!(
        (1..=2).contains(&accepted),
        "{accepted} upstream connections; (status, connection) per request: {statuses:?}\n{}",
        said.join("\n")
    );
}

/// When no connection is free within `connect_timeout`, the request gets
/// a 504 that names the cause, counted as `connection_limit`.
#[tokio::test]
async fn waiting_for_a_connection_is_bounded_by_connect_timeout() {
    no_connection_free(&["max_connections_per_server: 1", "connect_timeout: 200ms"]).await;
}

/// The same when `request_timeout` ends the wait first: the endpoint was
/// busy, not failing, so the answer is the connection limit's, and it
/// does not count for passive health. It was answered "upstream timed
/// out" and counted as the endpoint's failure: five in a row ejected a
/// healthy endpoint that was merely at `max_connections_per_server`.
#[tokio::test]
async fn a_request_timeout_while_waiting_for_a_connection_is_the_connection_limit() {
    no_connection_free(&["max_connections_per_server: 1", "request_timeout: 300ms"]).await;
}

/// One request holds the only connection to an HTTP/1.1 backend (its
/// response head came at once, its body never ends: `request_timeout`
/// does not apply to it) while another waits for one under `settings`: the
/// second gets 504 "no upstream connection free", counted as
/// `connection_limit` and never as `timeout`.
async fn no_connection_free(settings: &[&str]) {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let mut p = Proxy::start(&capped_config(&w, &h1, settings));
    let addr = p.listener_addr("public").await;
    let cfg = || client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let first = tokio::spawn(get(addr, "a.example.com", cfg(), false, "/endless", &[]));
    wait_until(WAIT, "the first request reached the backend", || async {
        h1.open.load(Ordering::SeqCst) == 1
    })
    .await;
    let r = get(addr, "a.example.com", cfg(), false, "/x", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(r.body.contains("no upstream connection free"), "{}", r.body);
    first.abort();
    assert_eq!(h1.accepted.load(Ordering::SeqCst), 1);
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        m.contains(
            r#"hotproxy_upstream_errors_total{upstream="capped",reason="connection_limit"} 1"#
        ),
        "{m}"
    );
    assert!(!m.contains(r#"reason="timeout""#), "{m}");
}

/// A server that accepts TCP and never answers the TLS handshake is a
/// connect failure within `connect_timeout` (504, `connect_timeout`), not
/// a wait for `request_timeout`; and the stalled connect gives its slot
/// back, so the next request gets the same answer, not `connection_limit`.
#[tokio::test]
async fn stalled_upstream_tls_handshake_is_bounded_by_connect_timeout() {
    let w = world().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    // Accept (and keep open, silent) the few connections the test makes.
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        for _ in 0..4 {
            let Ok((s, _)) = silent.accept().await else {
                break;
            };
            open.push(s);
        }
        std::future::pending::<()>().await;
    });
    let cfg_path = w.scene.one_upstream_config(
        "silent",
        silent_addr,
        &[
            "max_connections_per_server: 1",
            "connect_timeout: 300ms",
            "request_timeout: 5s",
        ],
    );
    let mut p = Proxy::start(&cfg_path);
    let addr = p.listener_addr("public").await;
    let cfg = || client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    for _ in 0..2 {
        let r = get(addr, "a.example.com", cfg(), false, "/x", &[])
            .await
            .unwrap();
        assert_eq!(r.status, 504, "{}", r.body);
        assert!(r.body.contains("upstream timed out"), "{}", r.body);
    }
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        m.contains(
            r#"hotproxy_upstream_errors_total{upstream="silent",reason="connect_timeout"} 2"#
        ),
        "{m}"
    );
    held.abort();
}

/// The same against an HTTP/1.1 backend: 400 for the client, and the
/// upstream connection that carried the broken body (its framing cannot be
/// finished) is never handed to the next request.
#[tokio::test]
async fn malformed_chunked_body_to_an_h1_backend() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let mut p = Proxy::start(&capped_config(&w, &h1, &[]));
    let addr = p.listener_addr("public").await;
    let good = b"GET /x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(&w, addr, good).await.status, 200);
    for _ in 0..3 {
        let r = raw(
            &w,
            addr,
            b"POST /slow HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.body);
        let r = raw(&w, addr, good).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let m = metrics_text(p.admin_addr().await).await;
    assert!(!m.contains("hotproxy_upstream_errors_total{"), "{m}");
}

/// Trailers pass as an application sends them (gRPC's `grpc-status` reaches
/// the client) but carry nothing the head's rules would stop: a client's
/// `ssl-client-verify`, `X-Forwarded-For` or `content-length` after its
/// body is dropped, whether the body was read whole first (it declared its
/// length) or streamed, as is a `content-length` after a response body.
#[tokio::test]
async fn trailers_carry_nothing_the_head_would_not() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, ""));
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(&w, addr).await;
    for declared in [true, false] {
        let mut req = http::Request::post("https://a.example.com/pub/trailers/upload")
            .header("te", "trailers");
        if declared {
            req = req.header("content-length", "4");
        }
        let (seen, mut body) = h2_upload(
            &mut client,
            req.body(()).unwrap(),
            &[
                ("x-checksum", "crc32c=1"),
                ("content-length", "99"),
                ("ssl-client-verify", "SUCCESS"),
                ("x_client_cert_subject", "CN=admin"),
                ("x-forwarded-for", "10.0.0.1"),
            ],
        )
        .await;
        assert_eq!(seen["body_bytes"], 4, "{seen}");
        assert_eq!(
            seen["trailers"],
            serde_json::json!({ "x-checksum": "crc32c=1" }),
            "declared length: {declared}"
        );
        let trailers = body.trailers().await.unwrap().expect("response trailers");
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        assert_eq!(trailers.get("grpc-message").unwrap(), "done");
        assert!(trailers.get("content-length").is_none(), "{trailers:?}");
    }
    // A trailer section may have as many fields as a head, 100, as hyper
    // holds HTTP/1.1 trailers: more is the client's 400.
    for (fields, status) in [(100, 200), (101, 400)] {
        let req = http::Request::post("https://a.example.com/pub/upload")
            .body(())
            .unwrap();
        let (resp, mut stream) = client.send_request(req, false).unwrap();
        stream
            .send_data(bytes::Bytes::from_static(b"abcd"), false)
            .unwrap();
        let trailers: http::HeaderMap = (0..fields)
            .map(|i| {
                let name = format!("x-t{i}");
                (name.parse().unwrap(), http::HeaderValue::from(i))
            })
            .collect();
        stream.send_trailers(trailers).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), status, "{fields} trailer fields");
    }
}

/// Trailers an application announces (`Trailer`) pass over HTTP/1.1 as
/// over HTTP/2, cut as the head is: a client's chunked upload ends with an
/// `x-checksum` that reaches an HTTP/1.1 backend and an `ssl-client-verify`
/// that does not; the backend's `grpc-status` reaches an HTTP/1.1 client
/// that sent `TE: trailers`, and none reaches one that did not. hyper
/// writes an HTTP/1.1 trailer field only if the head announced it, and
/// hotproxy removed `Trailer` (and an HTTP/1.1 client's `TE`) as
/// hop-by-hop, so no trailer reached an HTTP/1.1 peer.
#[tokio::test]
async fn announced_trailers_pass_over_http1_both_ways() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config("h1", h1.addr, &[]));
    let addr = p.listener_addr("public").await;
    let upload = |te: &str| {
        format!(
            "POST /trailers/upload HTTP/1.1\r\nHost: a.example.com\r\nConnection: TE, close\r\n{te}\
             Trailer: x-checksum, ssl-client-verify, content-length\r\n\
             Transfer-Encoding: chunked\r\n\r\n\
             4\r\nabcd\r\n0\r\n\
             x-checksum: crc32c=1\r\nssl-client-verify: SUCCESS\r\ncontent-length: 99\r\n\r\n"
        )
    };
    let r = raw(&w, addr, upload("TE: trailers\r\n").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.json();
    assert_eq!(seen["version"], "HTTP/1.1", "{seen}");
    assert_eq!(seen["body_bytes"], 4, "{seen}");
    assert_eq!(
        seen["trailers"],
        serde_json::json!({ "x-checksum": "crc32c=1" }),
        "{seen}"
    );
    assert_eq!(seen["headers"]["te"], "trailers", "{seen}");
    assert_eq!(seen["headers"]["trailer"], "x-checksum", "{seen}");
    let trailers = trailer_section(&r.wire);
    assert_eq!(
        trailers,
        ["grpc-status: 0", "grpc-message: done"],
        "{}\n{:?}",
        r.head,
        r.wire
    );
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("\r\ntrailer: grpc-status, grpc-message"),
        "{}",
        r.head
    );
    // A client that takes no trailers gets none.
    let r = raw(&w, addr, upload("").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["trailers"]["x-checksum"], "crc32c=1");
    assert_eq!(trailer_section(&r.wire), Vec::<&str>::new(), "{:?}", r.wire);

    // An HTTP/2 client's announced trailers reach the HTTP/1.1 backend too.
    let mut client = h2_to(&w, addr).await;
    let req = http::Request::post("https://a.example.com/trailers/upload")
        .header("te", "trailers")
        .header("trailer", "x-checksum, x-forwarded-for")
        .body(())
        .unwrap();
    let (seen, mut body) = h2_upload(
        &mut client,
        req,
        &[("x-checksum", "crc32c=1"), ("x-forwarded-for", "10.0.0.1")],
    )
    .await;
    assert_eq!(
        seen["trailers"],
        serde_json::json!({ "x-checksum": "crc32c=1" }),
        "{seen}"
    );
    let trailers = body.trailers().await.unwrap().expect("response trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert!(trailers.get("content-length").is_none(), "{trailers:?}");
    // Bodies that end in trailers, both ways, leave their upstream
    // connection reusable: hyper asks for nothing after a trailer section,
    // so waiting for the body's end closed each one (three dials here).
    assert_eq!(h1.accepted.load(Ordering::SeqCst), 1);
}

/// A request body of no declared length reaches an HTTP/1.1 upstream
/// whatever the method: an HTTP/1.1 client's chunked `GET` (Elasticsearch's
/// `GET /_search` takes its query so) and an HTTP/2 client's `GET` with
/// DATA and no `content-length` arrive with their bodies, chunked. hyper's
/// client frames a `GET` or `HEAD` of unknown length as bodiless, so the
/// upstream got a bare `GET` and its connection, the body unsent, was
/// closed. A `GET` without a body still goes with neither
/// `Content-Length` nor `Transfer-Encoding`.
#[tokio::test]
async fn a_get_body_of_unknown_length_reaches_an_h1_upstream() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config("h1", h1.addr, &[]));
    let addr = p.listener_addr("public").await;
    let r = raw(
        &w,
        addr,
        b"GET /_search/upload HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\
          Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = r.json();
    assert_eq!(seen["version"], "HTTP/1.1", "{seen}");
    assert_eq!(seen["body"], "hello world", "{seen}");
    assert_eq!(seen["headers"]["transfer-encoding"], "chunked", "{seen}");

    let mut client = h2_to(&w, addr).await;
    let req = http::Request::get("https://a.example.com/_search/upload")
        .body(())
        .unwrap();
    let (resp, mut stream) = client.send_request(req, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(b"{\"query\":{}}"), true)
        .unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    let seen: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(seen["body"], "{\"query\":{}}", "{seen}");
    assert_eq!(seen["headers"]["transfer-encoding"], "chunked", "{seen}");

    let r = raw(
        &w,
        addr,
        b"GET /_search/upload HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    let seen = r.json();
    assert_eq!(seen["body_bytes"], 0, "{seen}");
    let h = &seen["headers"];
    assert!(
        h.get("content-length").is_none() && h.get("transfer-encoding").is_none(),
        "{seen}"
    );
    // Each body sent whole, its connection was kept for the next request.
    assert_eq!(h1.accepted.load(Ordering::SeqCst), 1);
}

/// An upstream's response head may be up to 64 KiB over HTTP/2 as over
/// HTTP/1.1 (`upstream_response_head_over_64_kib_is_502` in tests/serving/upstream.rs):
/// hyper's HTTP/2 client took 16 KiB, so a backend offering h2 had a
/// 20 KB head answered 502 that the same backend over HTTP/1.1 served.
#[tokio::test]
async fn an_h2_upstream_may_send_a_64_kib_head() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, ""));
    let addr = p.listener_addr("public").await;
    for (size, status) in [(20_000, 200), (50_000, 200), (100_000, 502)] {
        let get = format!(
            "GET /pub/fat-head/{size} HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"
        );
        let r = raw(&w, addr, get.as_bytes()).await;
        assert_eq!(r.status, status, "{size}: {}", r.body);
        if status == 200 {
            assert_eq!(r.json()["version"], "HTTP/2.0");
            let fat = r.head.lines().find_map(|l| l.strip_prefix("x-fat: "));
            assert_eq!(fat.map(str::len), Some(size));
        }
    }
}

/// An upstream response may have at most 100 header fields, over HTTP/1.1
/// (hyper's parser stops there) and HTTP/2 alike (Envoy's limit, on both):
/// more is a `502`. hyper's HTTP/2 client counted none, so the same
/// backend's 101-field response was a 502 over HTTP/1.1 and passed over h2.
#[tokio::test]
async fn upstream_response_fields_are_limited_on_both_protocols() {
    let w = world().await;
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.public_config(
        r#"
      - { path_prefix: /h1/, upstream: h1 }
      - { upstream: pub }"#,
        &[upstream("pub", &w.pub_backend, ""), upstream("h1", &h1, "")].concat(),
    ));
    let addr = p.listener_addr("public").await;
    // The backend sends `content-length` and `date` too: 98 more make 100.
    for (prefix, version) in [("/h1", "HTTP/1.1"), ("/h2", "HTTP/2.0")] {
        for (n, status) in [(98, 200), (99, 502)] {
            let get = format!(
                "GET {prefix}/many-headers/{n} HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"
            );
            let r = raw(&w, addr, get.as_bytes()).await;
            assert_eq!(r.status, status, "{prefix} with {n} more: {}", r.body);
            if status == 200 {
                assert_eq!(r.json()["version"], version);
            }
        }
    }
}
