//! An upgrade with a chunked body (its `Content-Length` maybe dropped by hyper): `400` and its connection closed.

use std::sync::atomic::Ordering::SeqCst;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

const UPGRADE: &str =
    "GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n";
/// A chunked body, alone or beside a `Content-Length` in either order:
/// hyper keeps `Transfer-Encoding` alone in each case (a later
/// `Content-Length` never stored, an earlier one removed), so the request
/// hotproxy sees is the same for all three.
const CHUNKED: [&str; 3] = [
    "transfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    "content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
];
const GET: &[u8] = b"GET /api HTTP/1.1\r\nhost: a.example.com\r\n\r\n";

/// An upgrade request with a chunked body, which a front proxy reading a
/// `Content-Length` beside it would frame otherwise (its tunnel would
/// carry whatever the two read differently), is answered `400` and its
/// connection closed: as a first request and as a keep-alive connection's
/// second. The backend sees none of them; a WebSocket handshake has no
/// body.
#[tokio::test]
async fn an_upgrade_with_a_chunked_body_is_refused_and_its_connection_closed() {
    let (w, _p, addr) = serve("").await;
    for chunked in CHUNKED {
        let request = format!("{UPGRADE}{chunked}");
        let reply = h1_exchange(&w, addr, request.as_bytes()).await;
        assert_refused(&reply, &request);
        // The second request on a keep-alive connection.
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        write_for_200(&mut s, GET).await;
        s.write_all(request.as_bytes()).await.unwrap();
        let reply = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
        assert_refused(&reply, &format!("second {request}"));
    }
    assert_eq!(
        w.backend.requests.load(SeqCst),
        3,
        "an upgrade with a chunked body reached the backend (3 GETs expected)"
    );
}

/// The answer is a `400` saying the connection closes, and nothing follows
/// it before the end of the stream (`reply` was read to its close).
fn assert_refused(reply: &str, request: &str) {
    assert!(
        reply.starts_with("HTTP/1.1 400 "),
        "{request:?} answered {reply:?}"
    );
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((reply, ""));
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case("connection: close")),
        "{request:?}: the 400 does not say the connection closes: {reply:?}"
    );
    assert!(
        !body.contains("HTTP/1.1"),
        "{request:?}: more answers followed: {reply:?}"
    );
}
