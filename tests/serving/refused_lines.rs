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
