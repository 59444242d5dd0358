//! Headers both ways: forwarding headers, te, cookies, and the limits on an upstream's response head.

use crate::common::*;
use crate::support::*;

/// Client-sent forwarding headers are replaced (no trusted proxy); `te: trailers`
/// from an h2 client reaches an h2 backend (gRPC needs it).
#[tokio::test]
async fn forwarding_headers_and_te_trailers() {
    let w = world().await;
    let (_p, addr) = serve(&config(&w, "")).await;
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
/// HTTP/1.1 and HTTP/2 alike, as nginx and Envoy send it. Empty fields
/// are skipped: joined in, they left a `cookie` ending in `; `, whose
/// trailing space an HTTP/2 upstream refuses as malformed (a `502`
/// counted against the endpoint); only empty ones, no `cookie` at all.
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
    let (_p, addr) = serve(&path).await;
    let cases: [(&[&str], Option<&str>); 5] = [
        (&["a=1", "b=2", "c=3"], Some("a=1; b=2; c=3")),
        (&["a=1", "b=2", ""], Some("a=1; b=2")),
        (&["", "a=1", "", "b=2"], Some("a=1; b=2")),
        (&["", ""], None),
        (&[""], None),
    ];
    for (path, version) in [("/h1/x", "HTTP/1.1"), ("/x", "HTTP/2.0")] {
        for (sent, joined) in cases {
            let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
            let cookies: Vec<(&str, &str)> = sent.iter().map(|c| ("cookie", *c)).collect();
            let r = get(addr, "a.example.com", cfg, true, path, &cookies)
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{sent:?}: {}", r.body);
            let j = r.json();
            assert_eq!(j["version"], version, "{j}");
            assert_eq!(
                j["headers"].get("cookie").and_then(|c| c.as_str()),
                joined,
                "{sent:?}: {j}"
            );
            assert!(j["repeated"].get("cookie").is_none(), "{j}");
        }
    }
}

/// An upstream's response head may be up to 64 KiB over HTTP/2 as over
/// HTTP/1.1 (`upstream_response_head_over_64_kib_is_502` in tests/serving/upstream.rs):
/// hyper's HTTP/2 client took 16 KiB, so a backend offering h2 had a
/// 20 KB head answered 502 that the same backend over HTTP/1.1 served.
#[tokio::test]
async fn an_h2_upstream_may_send_a_64_kib_head() {
    let w = world().await;
    let (_p, addr) = serve(&config(&w, "")).await;
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
    let (_p, addr) = serve(&w.scene.public_config(
        r#"
      - { path_prefix: /h1/, upstream: h1 }
      - { upstream: pub }"#,
        &[upstream("pub", &w.pub_backend, ""), upstream("h1", &h1, "")].concat(),
    ))
    .await;
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

/// An HTTP/2 client's `content-length` sent twice with one value (h2
/// accepts it, refusing only values that differ) reaches the upstream once,
/// over HTTP/1.1 and HTTP/2 alike, as hyper already forwards an HTTP/1.1
/// client's (RFC 9110 §8.6: a proxy must not forward a length field that
/// is not one number). Forwarded twice, an HTTP/2 upstream on nghttp2 or
/// Netty reset the stream, a `502` counted against the endpoint (any
/// client could eject healthy endpoints with it), and Node's HTTP/1.1
/// parser answered `400`. The HTTP/1.1 upstream is a raw one: hyper's
/// server would fold the two lines into one before a test could see them.
#[tokio::test]
async fn an_h2_clients_repeated_content_length_is_forwarded_once() {
    let w = world().await;
    let (_p, addr, heads) = serve_h1_recorder_and_pub(&w).await;
    for path in ["/h1/upload", "/upload"] {
        let data = h2_post_hello(&w, addr, path, &["5", "5"]).await;
        if path == "/upload" {
            let seen: serde_json::Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(seen["version"], "HTTP/2.0", "{seen}");
            assert!(
                seen["repeated"].get("content-length").is_none(),
                "content-length forwarded more than once: {seen}"
            );
            assert_eq!(seen["headers"]["content-length"], "5", "{seen}");
            assert_eq!(seen["body"], "hello", "{seen}");
        } else {
            let heads = heads.lock().unwrap();
            assert_eq!(heads.len(), 1, "{heads:?}");
            let lengths: Vec<&str> = heads[0]
                .lines()
                .filter(|l| l.to_ascii_lowercase().starts_with("content-length:"))
                .collect();
            assert_eq!(lengths, ["content-length: 5"], "{}", heads[0]);
        }
    }
}

/// A client's `Content-Length` with leading zeros (`0005`, valid per RFC
/// 9110 §8.6, and accepted by hyper's and h2's parsers) reaches the
/// upstream as hotproxy would write the length, `5`, from HTTP/1.1 and
/// HTTP/2 clients, to HTTP/1.1 and HTTP/2 upstreams, as nginx sends its
/// own `Content-Length`. Forwarded as sent, a backend reading the digits
/// as octal, or refusing them, disagrees with hotproxy on where the body
/// ends: a request smuggled on a pooled connection. The HTTP/1.1 upstream
/// is a raw one, so the test sees the line as written.
#[tokio::test]
async fn a_content_length_reaches_the_upstream_in_canonical_form() {
    let w = world().await;
    let (_p, addr, heads) = serve_h1_recorder_and_pub(&w).await;
    // From an HTTP/1.1 client.
    for path in ["/h1/upload", "/upload"] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 0005\r\nConnection: close\r\n\r\nhello"
        );
        let r = raw(&w, addr, req.as_bytes()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        if path == "/upload" {
            let seen = r.json();
            assert_eq!(seen["headers"]["content-length"], "5", "{seen}");
            assert_eq!(seen["body"], "hello", "{seen}");
        }
    }
    // From an HTTP/2 client.
    for path in ["/h1/upload", "/upload"] {
        let data = h2_post_hello(&w, addr, path, &["0005"]).await;
        if path == "/upload" {
            let seen: serde_json::Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(seen["version"], "HTTP/2.0", "{seen}");
            assert_eq!(seen["headers"]["content-length"], "5", "{seen}");
            assert_eq!(seen["body"], "hello", "{seen}");
        }
    }
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in heads.iter() {
        let lengths: Vec<&str> = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("content-length:"))
            .collect();
        assert_eq!(lengths, ["content-length: 5"], "{head}");
    }
}

/// A request's `TE: trailers` reaches an HTTP/1.1 upstream with `te`
/// named in `Connection`, from HTTP/1.1 and HTTP/2 clients: a sender of
/// `TE` must list it there (RFC 9110 §7.6.1, §10.1.4), so an intermediary
/// in front of the backend drops it, as hotproxy drops the client's; it
/// went without. Kept at all because an HTTP/1.1 backend sends trailers
/// only when told (hyper's server does). An HTTP/2 upstream gets
/// `te: trailers` alone (`forwarding_headers_and_te_trailers`: no
/// `Connection` on HTTP/2, and hyper's HTTP/2 client, given one, drops the
/// fields it names, `te` with them).
#[tokio::test]
async fn te_trailers_is_named_in_connection_to_an_http1_upstream() {
    let w = world().await;
    let (h1_addr, heads) = head_recorder(&w.backend_pair).await;
    let path = w
        .scene
        .public_config("[{ upstream: h1 }]", &h1_upstream(h1_addr));
    let (_p, addr) = serve(&path).await;
    let get =
        "GET /x HTTP/1.1\r\nHost: a.example.com\r\nTE: trailers\r\nConnection: TE, close\r\n\r\n";
    let r = raw(&w, addr, get.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let mut client = h2_to(&w, addr).await;
    let req = http::Request::get("https://a.example.com/x")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in heads.iter() {
        let fields: Vec<String> = head.lines().skip(1).map(str::to_ascii_lowercase).collect();
        let field = |name: &str| -> Vec<&str> {
            fields
                .iter()
                .filter_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .collect()
        };
        assert_eq!(field("te"), ["trailers"], "{head}");
        assert_eq!(field("connection"), ["te"], "{head}");
    }
}

/// A name with `_` that reads, `_` as `-`, as a framing or hop-by-hop
/// header (`Transfer_Encoding`, `Content_Length`, `Keep_Alive`,
/// `Proxy_Connection`, ...) never reaches the upstream, from HTTP/1.1 and
/// HTTP/2 clients alike: a backend that folds `_` into `-` (Puma before
/// 6.4.3, CGI, WSGI and Rack environments) would frame the body by it,
/// a request smuggled past hotproxy's reading of it. Another name with
/// `_` (an application's `api_key`) passes. The upstream is a raw one,
/// so the test sees the head as written.
#[tokio::test]
async fn framing_lookalikes_with_underscores_never_reach_the_upstream() {
    let w = world().await;
    let (_p, addr, heads) = serve_h1_recorder_and_pub(&w).await;
    let lookalikes = [
        ("Transfer_Encoding", "chunked"),
        ("Content_Length", "0"),
        ("Keep_Alive", "timeout=5"),
        ("Proxy_Connection", "keep-alive"),
        ("Proxy_Authorization", "Basic Zm9vOmJhcg=="),
        ("HTTP2_Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ("api_key", "k1"),
    ];
    let mut req =
        String::from("POST /h1/upload HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n");
    for (name, value) in lookalikes {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\nhello");
    let r = raw(&w, addr, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.head);

    let mut client = h2_to(&w, addr).await;
    let mut post =
        http::Request::post("https://a.example.com/h1/upload").header("content-length", "5");
    for (name, value) in lookalikes {
        post = post.header(name.to_ascii_lowercase(), value);
    }
    let (resp, mut body) = client.send_request(post.body(()).unwrap(), false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"hello"), true)
        .unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);

    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in heads.iter() {
        let names: Vec<String> = head
            .lines()
            .skip(1)
            .filter_map(|l| Some(l.split_once(':')?.0.to_ascii_lowercase()))
            .collect();
        let underscored: Vec<&String> = names.iter().filter(|n| n.contains('_')).collect();
        assert_eq!(underscored, ["api_key"], "{head}");
        assert!(!names.contains(&"transfer-encoding".to_string()), "{head}");
    }
}

/// `POST path` with the body `hello` from an HTTP/2 client of the proxy at
/// `addr`, a `content-length` field for each of `lengths`: the response's
/// body, the response a `200`.
async fn h2_post_hello(
    w: &World,
    addr: std::net::SocketAddr,
    path: &str,
    lengths: &[&str],
) -> Vec<u8> {
    let mut client = h2_to(w, addr).await;
    let mut req = http::Request::post(format!("https://a.example.com{path}"));
    for length in lengths {
        req = req.header("content-length", *length);
    }
    let req = req.body(()).unwrap();
    let (resp, mut body) = client.send_request(req, false).unwrap();
    body.send_data(bytes::Bytes::from_static(b"hello"), true)
        .unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    data
}

/// The upstream `h1`: the [`head_recorder`] at `addr`, over TLS.
fn h1_upstream(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
  - name: h1
    servers: [https://{addr}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}"#
    )
}

/// The proxy routing `/h1/` to a [`head_recorder`] (upstream `h1`) and the
/// rest to the `pub` backend: the proxy, its address, and the heads `h1` saw.
async fn serve_h1_recorder_and_pub(
    w: &World,
) -> (
    Proxy,
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let (h1_addr, heads) = head_recorder(&w.backend_pair).await;
    let path = w.scene.public_config(
        r#"
      - { path_prefix: /h1/, upstream: h1 }
      - { upstream: pub }"#,
        &[h1_upstream(h1_addr), upstream("pub", &w.pub_backend, "")].concat(),
    );
    let (p, addr) = serve(&path).await;
    (p, addr, heads)
}

/// A raw HTTP/1.1 backend serving `pair` that records each request's head
/// as it came (one request per connection), reads a 5-byte body (none
/// after a `GET`) and answers `200`: its address, and the heads.
async fn head_recorder(
    pair: &TestPair,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, acceptor) = tls_listener(pair, b"http/1.1").await;
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heads = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, heads) = (acceptor.clone(), heads.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                };
                let body = if got.starts_with(b"GET ") { 0 } else { 5 };
                while got.len() < head_end + body {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                heads
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&got[..head_end]).into_owned());
                let resp = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, seen)
}
