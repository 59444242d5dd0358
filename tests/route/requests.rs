//! Which upstream and which target: one authority, normalised paths, CONNECT and TRACE refused.

use std::sync::atomic::Ordering;

use crate::common::*;
use crate::support::*;

/// Routing and the upstream's authority agree: an absolute-form target wins over
/// `Host` (and replaces it), duplicate or missing `Host` on HTTP/1.1 is
/// 400, and `X-Forwarded-Host` is always hotproxy's.
#[tokio::test]
async fn one_authority_per_request() {
    let w = world().await;
    let (_p, addr) = serve(&config(&w, "")).await;

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

    // h2: :authority is routed on and is the upstream's `:authority`.
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let r = get(addr, "b.example.com", cfg, true, "/x", &[])
        .await
        .unwrap();
    assert_routed_to_b(r.status, &r.body);
}

/// A 200 from backend `b` (HTTP/2) whose `:authority` and
/// `X-Forwarded-Host` are both `b.example.com`, whatever the client sent
/// for either.
fn assert_routed_to_b(status: u16, body: &str) {
    assert_eq!(status, 200, "{body}");
    let j: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(j["backend"], "b", "{j}");
    assert_only_authority(&j, "b.example.com");
    assert_eq!(j["headers"]["x-forwarded-host"], "b.example.com", "{j}");
}

/// What an HTTP/2 backend saw (`seen`) came over HTTP/2 with `authority`
/// as `:authority` and no `host` field beside it.
fn assert_only_authority(seen: &serde_json::Value, authority: &str) {
    assert_eq!(seen["version"], "HTTP/2.0", "{seen}");
    assert_eq!(seen["authority"], authority, "{seen}");
    assert!(seen["headers"].get("host").is_none(), "{seen}");
    assert!(seen["repeated"].get("host").is_none(), "{seen}");
}

/// Over an HTTP/2 upstream connection the routed authority goes as
/// `:authority` alone, with no `host` field beside it, as Envoy sends it:
/// nginx as an HTTP/2 backend answers a request carrying both 400 ("client
/// sent duplicate host header"), so every request through hotproxy to it
/// failed. From an HTTP/1.1 client, an HTTP/2 one with or without `host`,
/// and an HTTP/1.0 one without `Host`, whose `:authority` is the
/// endpoint's address.
#[tokio::test]
async fn an_http2_upstream_gets_the_authority_and_no_host_field() {
    let w = world().await;
    let cfg = w
        .scene
        .public_config("[{ upstream: b }]", &upstream("b", &w.b, ""));
    let (_p, addr) = serve(&cfg).await;

    let r = raw(
        &w,
        addr,
        b"GET /x HTTP/1.1\r\nHost: b.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_only_authority(&r.json(), "b.example.com");

    let h2 = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    for headers in [&[][..], &[("host", "b.example.com")]] {
        let r = get(addr, "b.example.com", h2.clone(), true, "/x", headers)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{headers:?}: {}", r.body);
        assert_only_authority(&r.json(), "b.example.com");
    }

    let r = raw(&w, addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_only_authority(&r.json(), &w.b.addr.to_string());
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
    let (_p, addr) = serve(&config(&w, "")).await;
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

/// `CONNECT` and `TRACE` are answered by hotproxy with 405, never
/// forwarded: hotproxy is no forward proxy, and a backend echoing a TRACE
/// would reflect the headers hotproxy adds (cross-site tracing). Over
/// HTTP/2 as over HTTP/1.1; `Allow` names neither.
#[tokio::test]
async fn connect_and_trace_are_405() {
    let w = world().await;
    let (_p, addr) = serve(&config(&w, "")).await;
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
    h2_method_is_405_and_no_backend_was_reached(&w, addr, "TRACE").await;
}

/// An HTTP/2 `:path` starts with `/`, or is `*` for `OPTIONS` (RFC 9113
/// §8.3.1). `?x` (h2 refuses `x` itself, not `?x`) used to be routed as
/// `/` and reach an HTTP/2 upstream as sent, where a strict server resets the stream
/// (`PROTOCOL_ERROR`): a failure counted against a healthy endpoint, five
/// such requests and it was ejected. They get 400 and reach no upstream.
/// An HTTP/1.1 absolute-form target with an empty path
/// (`http://a.example.com?x`) is the path `/` (RFC 9112 §3.2.1), as
/// nginx reads it: forwarded as `/?x`, not as `?x`.
#[tokio::test]
async fn a_path_not_starting_with_a_slash_is_400() {
    let w = world().await;
    let (rec, seen) = path_recorder(&w.backend_pair).await;
    let upstream = rec_upstream(rec);
    let (_p, addr) = serve(&w.scene.public_config("[{ upstream: rec }]", &upstream)).await;
    let mut client = h2_to(&w, addr).await;
    for (method, path, status) in [
        ("GET", "?x", 400),
        ("POST", "?", 400),
        ("GET", "/ok?x", 200),
        ("OPTIONS", "*", 200),
    ] {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        parts.authority = Some(http::uri::Authority::from_static("a.example.com"));
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static(path));
        let req = http::Request::builder()
            .method(method)
            .uri(http::Uri::from_parts(parts).unwrap())
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), status, "{method} {path}");
    }
    let r = raw(
        &w,
        addr,
        b"GET http://a.example.com?x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(*seen.lock().unwrap(), ["/ok?x", "*", "/?x"]);
}

/// A NUL in the path, percent-encoded (`%00`, any place, over HTTP/1.1
/// and HTTP/2; a raw NUL the parsers refuse already), is refused with 400
/// before routing, as nginx refuses it: a backend decoding the path in C
/// (or a filesystem call) stops at the NUL and acts on a path the route's
/// rules never saw (`/x.php%00.png` is its `/x.php`). Logged in the access log as
/// sent, as other refused paths; the upstream gets none of them.
#[tokio::test]
async fn an_encoded_nul_in_the_path_is_400() {
    let w = world().await;
    let (rec, seen) = path_recorder(&w.backend_pair).await;
    let upstream = rec_upstream(rec);
    let config = w.scene.public_config("[{ upstream: rec }]", &upstream);
    let log = w.scene.path("access.log");
    let text = std::fs::read_to_string(&config).unwrap();
    let access_log = format!("access_log: {{ path: {}, format: json }}\n", log.display());
    std::fs::write(&config, access_log + &text).unwrap();
    let (_p, addr) = serve(&config).await;
    for path in ["/%00", "/a%00b/c", "/x.php%00.png?q=%00"] {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n");
        let r = raw(&w, addr, req.as_bytes()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }
    let mut client = h2_to(&w, addr).await;
    for (path, status) in [("/h2%00", 400), ("/ok?q=%00", 200)] {
        let req = http::Request::get(format!("https://a.example.com{path}"))
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), status, "{path}");
    }
    // Only the query's `%00` passed: a query is not a path.
    assert_eq!(*seen.lock().unwrap(), ["/ok?q=%00"]);
    let lines = wait_access_log(&log, 5, WAIT).await;
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l["status"] == 400)
        .map(|l| (l["protocol"].as_str().unwrap(), l["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            ("HTTP/1.1", "/%00"),
            ("HTTP/1.1", "/a%00b/c"),
            ("HTTP/1.1", "/x.php%00.png"),
            ("HTTP/2.0", "/h2%00"),
        ],
        "{lines:?}"
    );
}

/// The upstream `rec`: the [`path_recorder`] at `addr`, over TLS.
fn rec_upstream(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
  - name: rec
    servers: [https://{addr}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}"#
    )
}

/// An HTTP/2 backend serving `pair` that answers every request `200` and
/// records its `:path` as it came: its address, and the paths.
async fn path_recorder(
    pair: &TestPair,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let paths = seen.clone();
    let addr = h2_backend(pair, move |req, mut respond| {
        let path = req.uri().path_and_query().map(|p| p.as_str().to_owned());
        paths.lock().unwrap().push(path.unwrap_or_default());
        let _ = respond.send_response(http::Response::new(()), true);
    })
    .await;
    (addr, seen)
}

/// `TRACE` and `CONNECT` are refused in any case: a method is
/// case-sensitive (RFC 9110 §9.1), but some backends read it without case
/// (Jetty 9.4's default compliance, RFC7230_LEGACY, makes `trace` TRACE,
/// which a servlet answers by echoing the request; Django and Werkzeug
/// upper-case it), so `trace` reached them as the TRACE hotproxy refuses,
/// and its echo reflected the headers hotproxy adds. nginx answers any
/// lowercase method 400. Over HTTP/1.1 and HTTP/2 alike.
#[tokio::test]
async fn trace_and_connect_in_any_case_are_405() {
    let w = world().await;
    let (_p, addr) = serve(&config(&w, "")).await;
    for request in [
        &b"trace /pub/x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"[..],
        b"Trace /x HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
        b"connect /x HTTP/1.1\r\nHost: b.example.com\r\nConnection: close\r\n\r\n",
    ] {
        let r = raw(&w, addr, request).await;
        assert_eq!(r.status, 405, "{}", String::from_utf8_lossy(request));
    }
    h2_method_is_405_and_no_backend_was_reached(&w, addr, "trace").await;
}

/// `method` over HTTP/2 to /pub/x gets 405, and no backend was ever
/// connected to (by this or any earlier request of the test).
async fn h2_method_is_405_and_no_backend_was_reached(
    w: &World,
    addr: std::net::SocketAddr,
    method: &str,
) {
    let mut client = h2_to(w, addr).await;
    let request = http::Request::builder()
        .method(method)
        .uri("https://a.example.com/pub/x")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(request, true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 405);
    for backend in [&w.b, &w.other, &w.pub_backend] {
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 0);
    }
}

/// An HTTP/2 `host` that differs from `:authority` only by the scheme's
/// default port, written out in one and left out in the other, names the
/// same entity (RFC 9113 §8.3.1): it is routed on `:authority`, which the
/// upstream gets. It was answered 400 as a mismatch. Another host, or
/// another port, is still malformed: 400, and no upstream sees it.
#[tokio::test]
async fn an_h2_host_may_differ_from_the_authority_by_the_default_port() {
    let w = world().await;
    let (_p, addr) = serve(&config(&w, "")).await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let mut client = h2_client(connect(addr, "b.example.com", cfg).await.unwrap()).await;
    for (authority, host, status) in [
        ("b.example.com:443", "b.example.com", 200),
        ("b.example.com", "B.Example.com:443", 200),
        ("b.example.com", "b.example.com:8443", 400),
        ("b.example.com:8443", "b.example.com", 400),
        ("b.example.com:443", "a.example.com", 400),
        ("b.example.com:443", "a.example.com:443", 400),
    ] {
        let req = http::Request::get(format!("https://{authority}/x"))
            .header("host", host)
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), status, ":authority {authority}, host {host}");
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        if status == 200 {
            let seen: serde_json::Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(seen["backend"], "b", "{seen}");
            assert_only_authority(&seen, authority);
        } else {
            let text = String::from_utf8_lossy(&data);
            assert!(text.contains("differs from :authority"), "{text}");
        }
    }
}

/// Routes to one upstream count into that upstream's series together,
/// whichever route took the request, each code apart; another upstream's
/// requests into its own. Two of the routes share one upstream's metrics
/// (src/proxy/router.rs): the counts must land as they did with one each.
#[tokio::test]
async fn routes_to_one_upstream_count_into_its_series() {
    let w = world().await;
    let (mut p, addr) = serve(&config(&w, "")).await;
    let get = |path: &str, host: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    // `/pub/` and `/slow` (prefix: `/slowly` too) both go to `pub`.
    for (path, host, backend) in [
        ("/pub/x", "a.example.com", "pub"),
        ("/slowly", "a.example.com", "pub"),
        ("/pub/y", "a.example.com", "pub"),
        ("/x", "b.example.com", "b"),
        ("/elsewhere", "a.example.com", "other"),
    ] {
        let r = raw(&w, addr, &get(path, host)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json()["backend"], backend, "{path}");
    }
    // A malformed chunked body on the `/pub/` route: a 400 of `pub`, or,
    // when the backend (HTTP/2, not reading the body) answered before the
    // proxy read the bad chunk, that backend's 200 of `pub` (seen in CI).
    let bad = b"POST /pub/z HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let r = raw(&w, addr, bad).await;
    assert!(matches!(r.status, 400 | 200), "{}: {}", r.status, r.body);
    let oks = if r.status == 400 { 3 } else { 4 };
    let m = metrics_text(p.admin_addr().await).await;
    let pub_oks = format!(
        r#"hotproxy_http_requests_total{{listener="public",upstream="pub",code="200"}} {oks}"#
    );
    assert!(m.contains(&pub_oks), "no {pub_oks} in\n{m}");
    let pub_bad = r#"hotproxy_http_requests_total{listener="public",upstream="pub",code="400"} 1"#;
    assert_eq!(
        m.contains(pub_bad),
        r.status == 400,
        "{pub_bad} for a {} in\n{m}",
        r.status
    );
    for line in [
        r#"hotproxy_http_requests_total{listener="public",upstream="b",code="200"} 1"#,
        r#"hotproxy_http_requests_total{listener="public",upstream="other",code="200"} 1"#,
        r#"hotproxy_http_request_duration_seconds_count{listener="public",upstream="pub"} 4"#,
        r#"hotproxy_http_request_duration_seconds_count{listener="public",upstream="b"} 1"#,
        r#"hotproxy_http_request_duration_seconds_count{listener="public",upstream="other"} 1"#,
    ] {
        assert!(m.contains(line), "no {line} in\n{m}");
    }
}
