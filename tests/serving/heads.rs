//! Request heads: their timeouts, 431 and other refusals, plain HTTP, framing, field count; HTTP/2's date and request id.

use std::sync::atomic::Ordering::SeqCst;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::hpack::*;
use crate::support::*;

/// Half a head is cut after header_read_timeout (counted from its first
/// byte), also after a keep-alive request, and so is an HTTP/2 connection
/// without a first request; an idle keep-alive connection is closed by
/// idle_timeout, not header_read_timeout.
#[tokio::test]
async fn header_read_and_idle_timeouts() {
    let (w, mut p, addr) = serve("header_read_timeout: 1s, idle_timeout: 2s").await;
    let request = b"GET /api HTTP/1.1\r\nhost: a.example.com\r\n\r\n";
    // Half a head on a fresh connection, and half a head after a full request.
    for after_request in [false, true] {
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        let port = local_port(&s);
        if after_request {
            // The whole response: the request is over before the next byte.
            write_for_200(&mut s, request).await;
        }
        s.write_all(b"GET /api HTTP/1.1\r\nhost: a.exa")
            .await
            .unwrap();
        let _ = read_to_close(&mut s).await;
        wait_closed_for(&mut p, port, "header_read_timeout").await;
    }
    // HTTP/2: half a preface, and no first request, is cut the same way.
    let mut s = tls(&w, addr, &[b"h2"]).await;
    let port = local_port(&s);
    s.write_all(&PREFACE[..10]).await.unwrap();
    let _ = read_to_close(&mut s).await;
    wait_closed_for(&mut p, port, "header_read_timeout").await;
    // A keep-alive connection left idle after a request.
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    let port = local_port(&s);
    write_for_200(&mut s, request).await;
    let _ = read_to_close(&mut s).await;
    let closed = p
        .wait_log("idle keep-alive connection closed", |v| {
            closes_port(v, port)
        })
        .await;
    assert_eq!(closed["reason"], "idle_timeout", "{closed}");
}

/// Half a head pipelined behind a request is cut at header_read_timeout
/// and counted and logged as a `408`, not left for idle_timeout: sent in
/// the same write as the request (hyper holds it unread while the request
/// runs), and sent while the response is still arriving.
#[tokio::test]
async fn pipelined_half_head_gets_header_read_timeout() {
    // idle_timeout far beyond read_to_close's bound: a connection left to
    // it fails the test instead of passing late.
    let (w, mut p, addr, log) = serve_logged("header_read_timeout: 1s, idle_timeout: 10m").await;
    let admin = p.admin_addr().await;
    let half = "GET /api HTTP/1.1\r\nX-a: ";
    let mut ports = Vec::new();
    // One write: the request and the next head's first half.
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    ports.push(local_port(&s));
    let both = format!("GET /api HTTP/1.1\r\nhost: a.example.com\r\n\r\n{half}");
    s.write_all(both.as_bytes()).await.unwrap();
    let reply = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    // The half head while the response (4 MiB) is on its way.
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    ports.push(local_port(&s));
    s.write_all(b"GET /kib/4096 HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(half.as_bytes()).await.unwrap();
    let _ = read_to_close(&mut s).await;
    for port in &ports {
        wait_closed_for(&mut p, *port, "header_read_timeout").await;
    }
    let line = "hotproxy_http_requests_total{listener=\"public\",upstream=\"\",code=\"408\"} 2";
    wait_metric(admin, line, WAIT).await;
    let all = wait_access_log(&log, 4, WAIT).await;
    let cut: Vec<_> = all.iter().filter(|l| l["status"] == 408).collect();
    assert_eq!(cut.len(), 2, "{all:?}");
    for (line, port) in cut.iter().zip(&ports) {
        assert_eq!(line["authz"], "header_read_timeout", "{line}");
        let client = line["client_addr"].as_str().unwrap();
        assert!(client.ends_with(&format!(":{port}")), "{line}");
    }
}

/// A request head over max_header_bytes is answered 431 and never reaches
/// the backend, also when the client writes it all before reading.
#[tokio::test]
async fn oversized_head_gets_431() {
    let w = world().await;
    for (limits, size) in [("", 300 * 1024), ("max_header_bytes: 16384", 40 * 1024)] {
        let mut p = Proxy::start(&config(&w, "", limits));
        let addr = p.listener_addr("public").await;
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        let head = format!(
            "GET /api HTTP/1.1\r\nhost: a.example.com\r\nx-big: {}\r\n\r\n",
            "x".repeat(size)
        );
        s.write_all(head.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{size} byte head: sending failed: {e}"));
        let reply = read_to_close(&mut s).await;
        assert!(
            reply.starts_with(b"HTTP/1.1 431"),
            "{size} byte head: {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// Heads refused before they became requests are requests to the
/// operator, as in nginx: hyper's own `400` (a header line without a
/// colon), `414` (a target over 65,534 bytes) and `431` (a head over
/// `max_header_bytes`), and a head begun and cut at `header_read_timeout`
/// (`408`, nothing sent), each counted in `hotproxy_http_requests_total`
/// and given an access-log line without method or path. A connection that
/// sends nothing is not a request: no line.
#[tokio::test]
async fn refused_heads_are_counted_and_logged() {
    let limits = "header_read_timeout: 1s, max_header_bytes: 200000";
    let (w, mut p, addr, log) = serve_logged(limits).await;
    let admin = p.admin_addr().await;
    // Silent after the handshake: closed, not logged.
    let mut silent = tls(&w, addr, &[b"http/1.1"]).await;
    let port = local_port(&silent);
    let _ = read_to_close(&mut silent).await;
    wait_closed_for(&mut p, port, "header_read_timeout").await;
    let long_target = format!(
        "GET /{} HTTP/1.1\r\nhost: a.example.com\r\n\r\n",
        "a".repeat(70_000)
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nhost: a.example.com\r\nx-big: {}\r\n\r\n",
        "x".repeat(250_000)
    );
    let mut ports = Vec::new();
    for (head, status) in [
        (
            "GET / HTTP/1.1\r\nhost: a.example.com\r\nno colon\r\n\r\n",
            400,
        ),
        (long_target.as_str(), 414),
        (big_head.as_str(), 431),
        ("GET / HTTP/1.1\r\nhost: a.exa", 408),
    ] {
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        ports.push((local_port(&s), status));
        s.write_all(head.as_bytes()).await.unwrap();
        let reply = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
        match status {
            408 => assert_eq!(reply, "", "nothing is sent for a head cut short"),
            _ => assert!(
                reply.starts_with(&format!("HTTP/1.1 {status} ")),
                "{status}: {}",
                &reply[..reply.len().min(200)]
            ),
        }
        let line = format!(
            "hotproxy_http_requests_total{{listener=\"public\",upstream=\"\",code=\"{status}\"}} 1"
        );
        wait_metric(admin, &line, WAIT).await;
    }
    // Lines are written in order by one writer: the silent connection's
    // would have come first.
    let all = wait_access_log(&log, 4, WAIT).await;
    assert_eq!(all.len(), 4, "{all:?}");
    for (line, (port, status)) in all.iter().zip(&ports) {
        let reason = match status {
            400 => "bad_request",
            414 => "uri_too_long",
            431 => "header_too_large",
            _ => "header_read_timeout",
        };
        assert_eq!(line["status"], *status, "{line}");
        assert_eq!(line["authz"], reason, "{line}");
        assert!(
            line["client_addr"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{port}")),
            "{line}"
        );
        assert_eq!(line["listener"], "public");
        assert_eq!(line["sni"], "a.example.com");
        assert_eq!(line["protocol"], "HTTP/1.1");
        assert_eq!(line["tls_version"], "TLSv1.3");
        for absent in ["method", "host", "path", "upstream", "request_id"] {
            assert!(line[absent].is_null(), "{absent}: {line}");
        }
    }
    // hyper closed those connections, not the clients.
    let m = metrics_text(admin).await;
    assert!(
        !m.contains("hotproxy_connections_closed_before_request_total{listener=\"public\"}"),
        "{m}"
    );
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// The issue's reproduction with curl, the operator's tool: it prints the 431.
#[tokio::test]
async fn curl_sees_431_not_broken_pipe() {
    let (w, _p, addr) = serve("max_header_bytes: 16384").await;
    write(&w.scene.path("ca.crt"), &w.ca.cert_pem);
    let big = format!("X-Big: {}", "x".repeat(40 * 1024));
    // --max-time: a proxy that never answers fails the test, not CI.
    let max_time = CLIENT_DEADLINE.as_secs().to_string();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--max-time", &max_time])
        .arg("--cacert")
        .arg(w.scene.path("ca.crt"))
        .args([
            "--resolve",
            &format!("a.example.com:{}:127.0.0.1", addr.port()),
        ])
        .args(["-H", &big])
        .arg(format!("https://a.example.com:{}/api", addr.port()))
        .output()
        .await
        .expect("curl is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "431", "curl: {stderr}");
}

/// Plain HTTP sent to the TLS port is answered like nginx does, and counted.
#[tokio::test]
async fn plain_http_on_the_tls_port_gets_400() {
    let (w, mut p, addr) = serve("").await;
    let admin = p.admin_addr().await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let reply = String::from_utf8(read_to_close(&mut s).await).unwrap();
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(
        reply.contains("x-content-type-options: nosniff\r\n"),
        "{reply}"
    );
    assert!(
        reply.ends_with("The plain HTTP request was sent to HTTPS port\n"),
        "{reply}"
    );
    let line = "hotproxy_tls_handshakes_total{listener=\"public\",result=\"plain_http\"} 1";
    wait_metric(admin, line, WAIT).await;
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// Plain HTTP trickled a byte at a time gets its `400` on the first byte,
/// not at header_read_timeout (an hour here): a TLS record never starts
/// with a letter, so nothing more is waited for. Bytes that are neither
/// TLS nor HTTP fail the handshake as before (`protocol`, a TLS alert, no
/// `400`), and a TLS client on the same listener is served.
#[tokio::test]
async fn plain_http_is_told_apart_on_its_first_byte() {
    let (w, mut p, addr) = serve("header_read_timeout: 1h").await;
    let admin = p.admin_addr().await;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"G").await.unwrap();
    let reply = String::from_utf8(read_to_close(&mut slow).await).unwrap();
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(reply.contains("\r\nconnection: close\r\n"), "{reply}");
    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(&[0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x20, 0x7f])
        .await
        .unwrap();
    let reply = read_to_close(&mut garbage).await;
    assert!(!reply.starts_with(b"HTTP/"), "{reply:?}");
    let line = "hotproxy_tls_handshakes_total{listener=\"public\",result=\"protocol\"} 1";
    wait_metric(admin, line, WAIT).await;
    let reply = get_h1(addr, "a.example.com", &w.ca.cert_pem).await.unwrap();
    assert_eq!(reply.status, 200);
    let m = metrics_text(admin).await;
    let plain = "hotproxy_tls_handshakes_total{listener=\"public\",result=\"plain_http\"} 1";
    assert!(m.contains(plain), "{m}");
}

/// Request framing a front proxy and a backend could read differently
/// (request smuggling) is refused before anything reaches the backend, or
/// made unambiguous: a body with both Content-Length and chunked goes on
/// as chunked alone (RFC 9112 §6.3: the intermediary removes
/// Content-Length) and the connection closes after the answer. A transfer
/// coding hotproxy would drop unseen gets 501, as from nginx.
#[tokio::test]
async fn ambiguous_request_framing_is_refused_or_made_unambiguous() {
    let (w, _p, addr) = serve("").await;
    let head = "POST /api HTTP/1.1\r\nhost: a.example.com\r\n";
    let refused: &[(&str, &str)] = &[
        ("content-length: 4\r\ncontent-length: 5\r\n\r\nabcde", "400"),
        ("content-length: +4\r\n\r\nabcd", "400"),
        ("content-length : 4\r\n\r\nabcd", "400"),
        ("transfer-encoding: xchunked\r\n\r\n0\r\n\r\n", "400"),
        (
            "transfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            "400",
        ),
        ("transfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "501"),
        // Naming the framing in `Connection` does not remove it unchecked.
        (
            "connection: transfer-encoding\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "501",
        ),
        (
            "connection: keep-alive, Transfer-Encoding\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        (
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            "400",
        ),
        ("x-a: b\r\n c\r\ncontent-length: 0\r\n\r\n", "400"),
        ("x-a: b\0c\r\ncontent-length: 0\r\n\r\n", "400"),
    ];
    for (rest, status) in refused {
        let reply = h1_exchange(&w, addr, format!("{head}{rest}").as_bytes()).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{rest:?} answered {reply:?}"
        );
    }
    let reply = h1_exchange(
        &w,
        addr,
        b"POST /api HTTP/1.0\r\nhost: a.example.com\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        reply.starts_with("HTTP/1.1 400 "),
        "HTTP/1.0 chunked answered {reply:?}"
    );
    assert_eq!(
        w.backend.requests.load(SeqCst),
        0,
        "a refused request reached the backend"
    );
    // Both framings: chunked wins, Content-Length is not forwarded, and the
    // connection (keep-alive by default) is closed after the answer.
    let reply = h1_exchange(
        &w,
        addr,
        format!(
            "{head}content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
    let seen = body_json(&reply);
    assert_eq!(seen["headers"]["transfer-encoding"], "chunked", "{seen}");
    assert!(seen["headers"].get("content-length").is_none(), "{seen}");
    assert_eq!(w.backend.requests.load(SeqCst), 1);
}

/// Headers a client names in `Connection` are its own hop-by-hop headers:
/// they are not forwarded, but naming what hotproxy itself tells the
/// upstream (the request id, forwarding headers, Via, Host) strips none of it.
#[tokio::test]
async fn connection_cannot_strip_what_the_proxy_adds() {
    let (w, _p, addr) = serve("").await;
    let reply = h1_exchange(
        &w,
        addr,
        b"GET /api HTTP/1.1\r\nhost: a.example.com\r\nx-own: mine\r\n\
          connection: close, x-own, x-request-id, x-forwarded-for, x-forwarded-proto, \
          x-forwarded-host, via, forwarded, host\r\n\r\n",
    )
    .await;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a request id");
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-request-id"], id, "{seen}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(h["x-forwarded-proto"], "https", "{seen}");
    assert_eq!(h["x-forwarded-host"], "a.example.com", "{seen}");
    assert_eq!(h["via"], "1.1 hotproxy", "{seen}");
    assert_eq!(h["host"], "a.example.com", "{seen}");
    assert!(
        h.get("x-own").is_none(),
        "a header named in Connection forwarded: {seen}"
    );
    assert!(h.get("connection").is_none(), "{seen}");
}

/// `HTTP2-Settings` is the h2c upgrade's connection-specific field (RFC
/// 7540 §3.2.1), which hotproxy does not do: sent by an HTTP/1.1 client
/// (with or without `Upgrade: h2c`) or as a plain field by an HTTP/2 one,
/// it never reaches the upstream, while the fields beside it do.
#[tokio::test]
async fn http2_settings_is_not_forwarded() {
    let (w, _p, addr) = serve("").await;
    for upgrade in [
        "",
        "upgrade: h2c\r\nconnection: Upgrade, HTTP2-Settings\r\n",
    ] {
        let request = format!(
            "GET /api HTTP/1.1\r\nhost: a.example.com\r\n{upgrade}\
             HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nx-own: mine\r\n\
             connection: close\r\n\r\n"
        );
        let reply = h1_exchange(&w, addr, request.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:?}");
        let seen = body_json(&reply);
        let h = &seen["headers"];
        assert!(h.get("http2-settings").is_none(), "{upgrade:?}: {seen}");
        assert_eq!(h["x-own"], "mine", "{seen}");
    }
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    let req = http::Request::builder()
        .uri("https://a.example.com/api")
        .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
        .header("x-own", "mine")
        .body(())
        .unwrap();
    let resp = h2_request(&mut client, req).await;
    assert_eq!(resp.status(), 200);
    let body = h2_body(&mut resp.into_body()).await;
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(seen["headers"].get("http2-settings").is_none(), "{seen}");
    assert_eq!(seen["headers"]["x-own"], "mine", "{seen}");
    assert_eq!(w.backend.requests.load(SeqCst), 3);
}

/// At most 100 header fields per request, on either protocol (hyper's
/// HTTP/1.1 parser stops there; Envoy's max_headers_count and HAProxy's
/// tune.http.maxhdr are the same): 101 get 431 from hotproxy over HTTP/1.1
/// and HTTP/2 alike, and never reach the backend.
#[tokio::test]
async fn header_field_count_is_limited_on_both_protocols() {
    let (w, mut p, addr) = serve("").await;
    // HTTP/1.1: host, connection and `extra` more.
    for (extra, status) in [(80, "200"), (99, "431")] {
        let mut req =
            String::from("GET /api HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n");
        for i in 0..extra {
            req.push_str(&format!("x-h{i}: v\r\n"));
        }
        req.push_str("\r\n");
        let reply = h1_exchange(&w, addr, req.as_bytes()).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{extra}: {reply:?}"
        );
    }
    assert_eq!(w.backend.requests.load(SeqCst), 1);
    // HTTP/2: `:authority` is not a field; `extra` fields.
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    for (extra, status) in [(80, 200), (101, 431)] {
        let mut b = http::Request::builder().uri("https://a.example.com/api");
        for i in 0..extra {
            b = b.header(format!("x-h{i}"), "v");
        }
        let resp = h2_request(&mut client, b.body(()).unwrap()).await;
        assert_eq!(resp.status(), status, "{extra}");
        client = client.ready().await.unwrap();
    }
    assert_eq!(w.backend.requests.load(SeqCst), 2);
    // Both 431s are the proxy's, before routing (the backend's hyper would
    // answer 431 too, to the fields hotproxy adds, and count as upstream
    // "plain"): HTTP/1.1's from hyper's parser, HTTP/2's from hotproxy.
    let admin = p.admin_addr().await;
    let line = r#"hotproxy_http_requests_total{listener="public",upstream="",code="431"} 2"#;
    wait_metric(admin, line, WAIT).await;
}

/// An HTTP/2 client's `cookie` fields count as one toward the 100-field
/// limit, as Envoy joins the crumbs before counting: Firefox sends one
/// field per cookie (RFC 9113 §8.2.3), and 98 cookies with a few headers
/// got 431 where the same cookies in one field passed. The upstream gets
/// them as one `cookie` header. Other fields still count one each.
#[tokio::test]
async fn h2_cookie_crumbs_count_as_one_field() {
    let (w, mut p, addr) = serve("").await;
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    let request = |cookies: usize, others: usize| {
        let mut b = http::Request::builder().uri("https://a.example.com/api");
        for i in 0..cookies {
            b = b.header("cookie", format!("c{i}=v"));
        }
        for i in 0..others {
            b = b.header(format!("x-h{i}"), "v");
        }
        b.body(()).unwrap()
    };
    let resp = h2_request(&mut client, request(98, 5)).await;
    assert_eq!(resp.status(), 200);
    let body = h2_body(&mut resp.into_body()).await;
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let joined: Vec<String> = (0..98).map(|i| format!("c{i}=v")).collect();
    assert_eq!(seen["headers"]["cookie"], joined.join("; "), "{seen}");
    client = client.ready().await.unwrap();
    let resp = h2_request(&mut client, request(2, 100)).await;
    assert_eq!(resp.status(), 431);
    assert_eq!(w.backend.requests.load(SeqCst), 1);
    let admin = p.admin_addr().await;
    let line = r#"hotproxy_http_requests_total{listener="public",upstream="",code="431"} 1"#;
    wait_metric(admin, line, WAIT).await;
}

/// An HTTP/2 field value that starts or ends with a space or a tab makes
/// the request malformed (RFC 9113 §8.2.1): 400 from hotproxy, before
/// routing. It was forwarded as sent, and an HTTP/1.1
/// backend trims such whitespace: it read `v` where hotproxy's rules and
/// logs saw ` v`. Whitespace inside a value is fine.
#[tokio::test]
async fn h2_field_values_padded_with_whitespace_are_malformed() {
    let (w, mut p, addr) = serve("").await;
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    for (value, status) in [
        (" v", 400),
        ("v ", 400),
        ("\tv", 400),
        ("v\t", 400),
        (" ", 400),
        ("a b\tc", 200),
    ] {
        let req = http::Request::builder()
            .uri("https://a.example.com/api")
            .header("x-padded", http::HeaderValue::from_str(value).unwrap())
            .body(())
            .unwrap();
        let resp = h2_request(&mut client, req).await;
        assert_eq!(resp.status(), status, "{value:?}");
        if status == 200 {
            let body = h2_body(&mut resp.into_body()).await;
            let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(seen["headers"]["x-padded"], value, "{seen}");
        }
        client = client.ready().await.unwrap();
    }
    assert_eq!(w.backend.requests.load(SeqCst), 1);
    let admin = p.admin_addr().await;
    let line = r#"hotproxy_http_requests_total{listener="public",upstream="",code="400"} 5"#;
    wait_metric(admin, line, WAIT).await;
}

/// An HTTP/2 `:path` holds to an HTTP/1.1 target's limit, 65,534 bytes:
/// one byte more and the h2 crate resets the stream (`PROTOCOL_ERROR`; the
/// `http` crate, since 1.4, builds no path over that), so it never reaches
/// hotproxy or an upstream, where an HTTP/1.1 client's gets hyper's `414`.
/// Pinned here: without that limit a target an HTTP/1.1 client cannot
/// send would reach the upstream from an HTTP/2 one (the header list may
/// be 1 MiB), and an HTTP/1.1 upstream would refuse it.
#[tokio::test]
async fn h2_targets_over_65534_bytes_never_reach_the_upstream() {
    let (w, _p, addr) = serve("max_header_bytes: 1048576").await;
    for len in [65_534usize, 65_535, 200_000] {
        // `GET https://a.example.com/aaa…`, `:path` a literal whose
        // length is an HPACK integer (RFC 7541 §5.1), in 16 KB frames.
        let mut block = vec![0x82, 0x87, 0x04, 0x7f];
        let mut n = len - 127;
        while n >= 128 {
            block.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        block.push(n as u8);
        block.push(b'/');
        block.resize(block.len() + len - 1, b'a');
        block.extend_from_slice(&[0x01, 13]);
        block.extend_from_slice(b"a.example.com");
        let mut out = [PREFACE, EMPTY_SETTINGS].concat();
        let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let end_headers = if i + 1 == pieces.len() { 0x4 } else { 0 };
            let (kind, flags) = match i {
                0 => (HEADERS, 0x1 | end_headers),
                _ => (CONTINUATION, end_headers),
            };
            out.extend(h2_frame(kind, flags, 1, piece));
        }
        let mut s = tls(&w, addr, &[b"h2"]).await;
        s.write_all(&out).await.unwrap();
        let (kind, payload) = loop {
            let (kind, _, id, payload) = next_frame(&mut s).await;
            assert_ne!(kind, GOAWAY, "a {len}-byte target closed the connection");
            if id == 1 {
                break (kind, payload);
            }
        };
        match len {
            // `:status 200` (static index 8).
            65_534 => assert_eq!((kind, payload[0]), (HEADERS, 0x88), "{len}"),
            _ => assert_eq!(
                (kind, &payload[..]),
                (RST_STREAM, &[0, 0, 0, 1][..]),
                "{len}"
            ),
        }
    }
    assert_eq!(w.backend.requests.load(SeqCst), 1);
}

/// Every response to an HTTP/2 client sends `date` as a never-indexed
/// literal with the static table's name (RFC 7541 §6.2.3: `0x1f 0x12`),
/// the upstream's date and hotproxy's own alike: h2's encoder indexed each
/// new date (one a second) and walked all those its table held, comparing
/// each, on every response. A forwarded GET, hotproxy's own `405` to a
/// TRACE (a date hyper would add, indexed), and a forwarded GET again.
#[tokio::test]
async fn h2_date_is_never_indexed() {
    let (w, _p, addr) = serve("").await;
    // TRACE https://a.example.com/api: `:method` (name 2) as a literal.
    let mut trace = vec![0x02, 5];
    trace.extend_from_slice(b"TRACE");
    trace.extend_from_slice(&hpack_get("/api")[1..]);
    let mut s = tls(&w, addr, &[b"h2"]).await;
    s.write_all(&[PREFACE, EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    for (i, block) in [hpack_get("/api"), trace, hpack_get("/api")]
        .iter()
        .enumerate()
    {
        let stream = 1 + 2 * i as u32;
        s.write_all(&h2_frame(HEADERS, 0x5, stream, block))
            .await
            .unwrap();
        let got = response_head(&mut s, stream, i).await;
        let fields = hpack_fields(&got);
        // `:status 200` is the static table's 8; a 405 is a literal.
        assert_eq!(fields[0] == (0x80, 8), i != 1, "response {i}: {got:02x?}");
        assert!(
            fields.contains(&(0x10, 33)),
            "response {i}: no never-indexed date: {got:02x?}"
        );
    }
}

/// The header block of the response to `stream` (the `i`th request), in
/// one `HEADERS` frame, skipping other frames; a `GOAWAY` first fails.
async fn response_head<S: AsyncRead + Unpin>(s: &mut S, stream: u32, i: usize) -> Vec<u8> {
    loop {
        let (kind, flags, id, payload) = next_frame(s).await;
        assert_ne!(kind, GOAWAY, "closed before response {i}");
        if kind == HEADERS && id == stream {
            assert_ne!(flags & 0x4, 0, "a head in one frame");
            return payload;
        }
    }
}

/// `x-request-id` reaches an HTTP/2 client as a never-indexed literal
/// (RFC 7541 §6.2.3: `0x10`, its name a literal), a well-formed id the
/// client sent (kept) and one hotproxy generated alike, on every response:
/// an id is used once, and indexing each one only churned h2's table.
#[tokio::test]
async fn h2_request_id_is_never_indexed() {
    let (w, _p, addr) = serve("").await;
    let mut s = tls(&w, addr, &[b"h2"]).await;
    s.write_all(&[PREFACE, EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    for (i, sent) in [Some("req-42.abc"), None, Some("req-42.abc"), None]
        .iter()
        .enumerate()
    {
        let stream = 1 + 2 * i as u32;
        s.write_all(&h2_frame(HEADERS, 0x5, stream, &get_with_id(*sent)))
            .await
            .unwrap();
        let got = response_head(&mut s, stream, i).await;
        assert_id_never_indexed(&got, *sent, &format!("response {i}"));
    }
}

/// The request hotproxy sends an HTTP/2 upstream carries `x-request-id` as
/// a never-indexed literal too, kept or generated, and so does the
/// response to the client (whose upstream sent no id).
#[tokio::test]
async fn h2_upstream_gets_request_id_never_indexed() {
    let w = world().await;
    let backend_ca = TestCa::new("backend CA");
    write(&w.scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let pair = backend_ca.server_pair(&["backend.local"]);
    let (listener, acceptor) = tls_listener(&pair, b"h2").await;
    let backend = listener.local_addr().unwrap();
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", backend, &[]));
    let addr = p.listener_addr("public").await;
    let mut s = tls(&w, addr, &[b"h2"]).await;
    s.write_all(&[PREFACE, EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    let mut up = None;
    for (i, sent) in [Some("req-42.abc"), None, Some("req-42.abc"), None]
        .iter()
        .enumerate()
    {
        let stream = 1 + 2 * i as u32;
        s.write_all(&h2_frame(HEADERS, 0x5, stream, &get_with_id(*sent)))
            .await
            .unwrap();
        if up.is_none() {
            let (tcp, _) = tokio::time::timeout(WAIT, listener.accept())
                .await
                .expect("hotproxy connects in time")
                .unwrap();
            let mut conn = acceptor.accept(tcp).await.unwrap();
            let mut preface = [0u8; 24];
            conn.read_exact(&mut preface).await.unwrap();
            assert_eq!(preface, PREFACE);
            conn.write_all(EMPTY_SETTINGS).await.unwrap();
            up = Some(conn);
        }
        let conn = up.as_mut().unwrap();
        let (upstream_stream, block) = loop {
            let (kind, flags, id, payload) = next_frame(conn).await;
            assert_ne!(kind, GOAWAY, "upstream closed before request {i}");
            if kind == SETTINGS && flags & 0x1 == 0 {
                conn.write_all(&h2_frame(SETTINGS, 0x1, 0, &[]))
                    .await
                    .unwrap();
            }
            if kind == HEADERS {
                assert_ne!(flags & 0x4, 0, "a head in one frame");
                break (id, payload);
            }
        };
        assert_id_never_indexed(&block, *sent, &format!("request {i} upstream"));
        // `:status 200`, END_STREAM | END_HEADERS.
        conn.write_all(&h2_frame(HEADERS, 0x5, upstream_stream, &[0x88]))
            .await
            .unwrap();
        let got = response_head(&mut s, stream, i).await;
        assert_eq!(hpack_fields(&got)[0], (0x80, 8), "response {i}: {got:02x?}");
        assert_id_never_indexed(&got, *sent, &format!("response {i}"));
    }
}

/// `GET https://a.example.com/api` with `x-request-id: id` (a literal not
/// indexed, no Huffman coding) if any.
fn get_with_id(id: Option<&str>) -> Vec<u8> {
    let mut block = hpack_get("/api");
    if let Some(id) = id {
        block.extend_from_slice(&[0x00, 12]);
        block.extend_from_slice(b"x-request-id");
        block.push(id.len() as u8);
        block.extend_from_slice(id.as_bytes());
    }
    block
}

/// `block` has one `x-request-id`, a never-indexed literal with a literal
/// name, whose value is `kept` if given (else a generated id: 32 hex digits,
/// which Huffman-code to 20 to 24 bytes).
fn assert_id_never_indexed(block: &[u8], kept: Option<&str>, what: &str) {
    let name = huffman("x-request-id");
    let ids: Vec<_> = hpack_literals(block)
        .into_iter()
        .filter(|f| f.2 == Some(&name[..]))
        .collect();
    assert_eq!(ids.len(), 1, "{what}: one x-request-id: {block:02x?}");
    let (kind, index, _, value) = ids[0];
    assert_eq!(
        (kind, index),
        (0x10, 0),
        "{what}: not never-indexed: {block:02x?}"
    );
    match kept {
        Some(id) => assert_eq!(value, huffman(id), "{what}: the id kept: {block:02x?}"),
        None => assert!(
            (21..=25).contains(&value.len()) && value[0] & 0x80 != 0,
            "{what}: a generated id: {block:02x?}"
        ),
    }
}
