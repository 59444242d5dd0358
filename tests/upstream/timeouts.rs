//! Silent HTTP/2 connections retired by request_timeout, read_timeout and http2_keepalive.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

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
    let get = |path| h1_get(&w, addr, path);
    let r = get("/").await;
    assert_eq!(r.json()["version"], "HTTP/2.0");
    assert_eq!(r.json()["connection"], 0);
    assert_eq!(get("/go-silent").await.status, 504);
    let r = get("/").await;
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
    let tls = connect(addr, "a.example.com", h1_config(&w)).await.unwrap();
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
    let r = h1_get(&w, addr, "/").await;
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
    let mut s = connect(addr, "a.example.com", h1_config(&w)).await.unwrap();
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
    // 12 MiB: more than the kernel's send and receive buffers hold, less
    // than the backend's HTTP/2 windows, so the proxy's writes block.
    let mut send = h1_sender(&w, addr).await;
    let upload = h1_request("POST", "/go-silent", vec![b'x'; 12 << 20]);
    let upload = tokio::spawn(send.send_request(upload));
    let r = tokio::time::timeout(WAIT, upload).await.expect("answered");
    assert_eq!(r.unwrap().map(|r| r.status().as_u16()).ok(), Some(504));
    let r = h1_get(&w, addr, "/").await;
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
    let get = |path| h1_get(&w, addr, path);
    // The backend takes 2 s over `/slow` and answers the PINGs meanwhile.
    let r = get("/slow").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 0);
    // A GET whose connection closed under it goes once more, on a new
    // connection, which falls silent too.
    let r = get("/go-silent").await;
    assert_eq!((r.status, r.body.as_str()), (502, "upstream unavailable\n"));
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    p.wait_log("upstream request failed", |v| {
        v["reason"] == "keepalive_timeout"
    })
    .await;
    let r = get("/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 2);
}
