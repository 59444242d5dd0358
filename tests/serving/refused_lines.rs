//! The access-log lines of requests hotproxy refuses itself: their `authz` says why, on HTTP/1.1 and HTTP/2.

use crate::common::*;
use crate::support::*;

/// A request refused before routing (SPEC §2, Access log: `authz` is
/// `allowed`, or why the request was refused) says why in its line, as a
/// head hyper refuses does: every one of these was logged `allowed`, so
/// an operator filtering on `header_too_large` or `bad_request` missed
/// them, and an HTTP/2 request with 101 fields read `allowed` where the
/// same over HTTP/1.1 read `header_too_large`. Each line follows its
/// answer: the client reads its status, then its line is awaited.
#[tokio::test]
async fn requests_refused_before_routing_say_why_in_authz() {
    let (w, mut p, addr, log) = serve_logged("").await;
    let admin = p.admin_addr().await;
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let h1 = [
        ("GET /x HTTP/1.1\r\n".to_owned(), 400, "bad_request"),
        (
            "GET /x HTTP/1.1\r\nhost: a.example.com\r\nhost: a.example.com\r\n".to_owned(),
            400,
            "bad_request",
        ),
        (
            "GET /a%2fb HTTP/1.1\r\nhost: a.example.com\r\n".to_owned(),
            400,
            "bad_request",
        ),
        (
            "CONNECT b.example.com:443 HTTP/1.1\r\nhost: b.example.com:443\r\n".to_owned(),
            405,
            "method_not_allowed",
        ),
        (
            "TRACE /x HTTP/1.1\r\nhost: a.example.com\r\n".to_owned(),
            405,
            "method_not_allowed",
        ),
        (
            "POST /x HTTP/1.1\r\nhost: a.example.com\r\ntransfer-encoding: gzip, chunked\r\n"
                .to_owned(),
            501,
            "not_implemented",
        ),
        (
            format!("GET /x HTTP/1.1\r\nhost: a.example.com\r\n{many}"),
            431,
            "header_too_large",
        ),
    ];
    let mut seen = 0;
    for (head, status, authz) in h1 {
        let request = format!("{head}connection: close\r\n\r\n");
        let reply = h1_exchange(&w, addr, request.as_bytes()).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{head}: {reply}"
        );
        seen += 1;
        let line = &wait_access_log(&log, seen, WAIT).await[seen - 1];
        assert_eq!(line["status"], status, "{head}: {line}");
        assert_eq!(line["authz"], authz, "{head}: {line}");
    }
    // The same refusals over HTTP/2, on one connection.
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    let mut crowded = http::Request::builder().uri("https://a.example.com/x");
    for i in 0..101 {
        crowded = crowded.header(format!("x-h{i}"), "v");
    }
    let h2 = [
        (crowded.body(()).unwrap(), 431, "header_too_large"),
        (h2_get("/x", "TRACE"), 405, "method_not_allowed"),
        (h2_get("/a%2fb", "GET"), 400, "bad_request"),
    ];
    for (req, status, authz) in h2 {
        let what = format!("{} {}", req.method(), req.uri());
        let resp = h2_request(&mut client, req).await;
        assert_eq!(resp.status(), status, "{what}");
        seen += 1;
        let line = &wait_access_log(&log, seen, WAIT).await[seen - 1];
        assert_eq!(line["protocol"], "HTTP/2.0", "{what}: {line}");
        assert_eq!(line["status"], status, "{what}: {line}");
        assert_eq!(line["authz"], authz, "{what}: {line}");
        client = client.ready().await.unwrap();
    }
    // Counted as before: before routing, without an upstream.
    let line = r#"hotproxy_http_requests_total{listener="public",upstream="",code="431"} 2"#;
    wait_metric(admin, line, WAIT).await;
    assert_eq!(
        w.backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// A head begun and then abandoned by its client (its end of stream, or a
/// reset) is recorded as nginx records it: a `400` line with `authz`
/// `header_incomplete`, counted without an upstream. It had no line and
/// no count: on a keep-alive connection, the second request left no trace
/// at all. Here after a whole request on the same connection, then `Ho`
/// and the client's end (`close_notify`, FIN); and on a fresh connection
/// half a head then FIN alone.
#[tokio::test]
async fn a_head_the_client_abandons_is_logged_and_counted() {
    use tokio::io::AsyncWriteExt;
    let (w, mut p, addr, log) = serve_logged("").await;
    let admin = p.admin_addr().await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    let kept = local_port(&s);
    write_for_200(&mut s, b"GET /api HTTP/1.1\r\nhost: a.example.com\r\n\r\n").await;
    s.write_all(b"GET /x HTTP/1.1\r\nHo").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut s).await, b"", "nothing answers it");
    let all = wait_access_log(&log, 2, WAIT).await;
    assert_eq!(all[0]["status"], 200, "{}", all[0]);
    // Half a first head, then a TCP end without `close_notify` (a
    // truncation to TLS: the proxy's read fails).
    let mut cut = tls(&w, addr, &[b"http/1.1"]).await;
    let fresh = local_port(&cut);
    cut.write_all(b"GET /y HTTP/1.1\r\nhost: a.ex")
        .await
        .unwrap();
    cut.flush().await.unwrap();
    cut.get_mut().0.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut cut).await, b"", "nothing answers it");
    let all = wait_access_log(&log, 3, WAIT).await;
    for (line, port) in all[1..].iter().zip([kept, fresh]) {
        assert_eq!(line["status"], 400, "{line}");
        assert_eq!(line["authz"], "header_incomplete", "{line}");
        assert!(line["method"].is_null() && line["path"].is_null(), "{line}");
        let client = line["client_addr"].as_str().unwrap();
        assert!(client.ends_with(&format!(":{port}")), "{line}");
    }
    let line = r#"hotproxy_http_requests_total{listener="public",upstream="",code="400"} 2"#;
    wait_metric(admin, line, WAIT).await;
}

/// Refusals made once a route is looked up said `allowed` (SPEC §2: `authz`
/// is `allowed`, or why the request was refused): no route (`404`,
/// `no_route`), a declared length over `max_body_bytes` (`413`,
/// `body_too_large`) and a refused WebSocket handshake (`400`, a key that
/// is no 16 bytes: `bad_request`). The backend sees none of them.
#[tokio::test]
async fn requests_refused_at_their_route_say_why_in_authz() {
    let w = world().await;
    let (path, log) = logged_config(&w, "max_body_bytes: 10");
    edit_config(&path, |t| {
        t.replace(
            "routes: [{ upstream: plain }]",
            "routes: [{ path_prefix: /in, upstream: plain }]",
        )
    });
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let cases = [
        (
            "GET /out HTTP/1.1\r\nhost: a.example.com\r\n",
            404,
            "no_route",
        ),
        (
            "POST /in HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 11\r\n",
            413,
            "body_too_large",
        ),
        (
            "GET /in HTTP/1.1\r\nhost: a.example.com\r\nconnection: upgrade\r\n\
             upgrade: websocket\r\nsec-websocket-key: c2hvcnQ=\r\nsec-websocket-version: 13\r\n",
            400,
            "bad_request",
        ),
    ];
    for (seen, (head, status, authz)) in cases.into_iter().enumerate() {
        let request = format!("{head}connection: close\r\n\r\n");
        let reply = h1_exchange(&w, addr, request.as_bytes()).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{head}: {reply}"
        );
        let line = &wait_access_log(&log, seen + 1, WAIT).await[seen];
        assert_eq!(line["status"], status, "{head}: {line}");
        assert_eq!(line["authz"], authz, "{head}: {line}");
    }
    assert_eq!(
        w.backend.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
