//! send_timeout: a client that stops reading, HTTP/2 streams whose window stays shut; header_read_timeout: a connection answered nothing is not lingered on.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

/// A client that stops reading a response is disconnected after
/// send_timeout, and the upstream request feeding it is released.
#[tokio::test]
async fn client_that_stops_reading_is_cut_by_send_timeout() {
    let (w, mut p, addr) = serve("send_timeout: 1s").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    let port = local_port(&s);
    s.write_all(b"GET /big HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    // Never read: the endless body fills the socket buffers both ways.
    p.wait_log("cut by send_timeout", |v| {
        v["message"] == "connection ended with error"
            && peer_is(v, port)
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("send_timeout"))
    })
    .await;
    wait_bodies_released(&w, 1).await;
    drop(s);
}

/// An HTTP/2 client that keeps its connection alive (PINGs answered) but
/// never opens a stream's flow-control window (initial window 0), with a
/// `/big` stream open; `open` widens every window; `closed` is signalled
/// when the connection ends; `pings` sends the client's own PINGs.
struct ShutWindow {
    client: h2::client::SendRequest<Bytes>,
    big: http::Response<h2::RecvStream>,
    open: tokio::sync::oneshot::Sender<()>,
    closed: tokio::sync::oneshot::Receiver<()>,
    pings: h2::PingPong,
}

async fn shut_window(w: &World, addr: SocketAddr, path: &str) -> ShutWindow {
    let tls = tls(w, addr, &[b"h2"]).await;
    let (client, mut conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    let pings = conn.ping_pong().expect("the first ping_pong");
    let (open, open_rx) = tokio::sync::oneshot::channel::<()>();
    let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            _ = &mut conn => {}
            _ = open_rx => {
                conn.set_initial_window_size(1 << 20).unwrap();
                let _ = conn.await;
            }
        }
        let _ = closed_tx.send(());
    });
    let mut client = client.ready().await.unwrap();
    let big = h2_request(&mut client, h2_get(path, "GET")).await;
    assert_eq!(big.status(), 200);
    ShutWindow {
        client,
        big,
        open,
        closed,
        pings,
    }
}

/// Wait for a stream's cut by `send_timeout`.
async fn wait_stream_cut(p: &mut Proxy) {
    p.wait_log("stream cut by send_timeout", |v| {
        v["message"] == "response stalled, stream cut" && v["reason"] == "send_timeout"
    })
    .await;
}

/// A stream whose window stays shut cannot pin the upstream request
/// feeding it: after send_timeout the upstream body is released, the
/// connection keeps serving, and the stream is reset (not resumed) once the
/// client opens its window.
#[tokio::test]
async fn h2_stream_held_shut_is_cut_by_send_timeout() {
    let (w, mut p, addr) = serve("send_timeout: 1s").await;
    let s = shut_window(&w, addr, "/big").await;
    wait_bodies_released(&w, 1).await;
    wait_stream_cut(&mut p).await;
    // The connection still serves (a response without content needs no window) ...
    let mut client = s.client.ready().await.unwrap();
    let head = h2_request(&mut client, h2_get("/api", "HEAD")).await;
    assert_eq!(head.status(), 200);
    // ... and the cut stream is reset when its window opens.
    s.open.send(()).unwrap();
    let mut body = s.big.into_body();
    let first = tokio::time::timeout(WAIT, body.data())
        .await
        .expect("the cut stream answers once its window opens");
    match first {
        Some(Err(e)) => assert_eq!(e.reason(), Some(h2::Reason::INTERNAL_ERROR), "{e}"),
        other => panic!("the cut stream sent {other:?}"),
    }
}

/// The same for a response whose body is one piece of known length (most
/// small JSON answers): hyper takes that last piece and holds it, with the
/// whole body and the upstream request under it, until the window opens.
/// It was never marked as waiting (the body had ended), so a client with
/// a shut window held a connection, and an upstream connection, per
/// stream for as long as it liked. Now it is cut like any stalled body;
/// the piece hyper already holds still goes out if the window ever opens.
#[tokio::test]
async fn h2_stream_held_on_its_last_piece_is_cut_by_send_timeout() {
    let (w, mut p, addr) = serve("send_timeout: 1s").await;
    let s = shut_window(&w, addr, "/api").await;
    wait_stream_cut(&mut p).await;
    s.open.send(()).unwrap();
    let mut body = s.big.into_body();
    let piece = tokio::time::timeout(WAIT, body.data())
        .await
        .expect("the held piece goes out once the window opens")
        .unwrap()
        .unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&piece).unwrap();
    assert_eq!(seen["path"], "/api");
}

/// A cut stream never ends, so it must not hold its connection open past
/// idle_timeout: the graceful close (GOAWAY) is forced after
/// header_read_timeout, and the connection's slot is freed.
#[tokio::test]
async fn h2_connection_with_a_cut_stream_still_closes_when_idle() {
    let limits = "send_timeout: 1s, idle_timeout: 1s, header_read_timeout: 2s";
    let (w, mut p, addr) = serve(limits).await;
    let s = shut_window(&w, addr, "/big").await;
    tokio::time::timeout(WAIT, s.closed)
        .await
        .expect("the connection closed")
        .unwrap();
    p.wait_log("forced close", |v| {
        v["message"] == "graceful close timed out; closing connection"
    })
    .await;
    assert_eq!(w.backend.big_ended.load(SeqCst), 1);
    wait_no_connections(p.admin_addr().await).await;
    drop(s.client);
}

/// The same for a client that keeps pinging: each PING it sends is
/// answered, a write to it, and the forced close waited for the client to
/// take no bytes for `send_timeout`, so a PING a second (or answers to
/// hyper's keep-alive PINGs) held the connection, its slot and the
/// stream's buffered bytes for good. The close is now also bounded
/// absolutely from when it began, whatever control frames cross.
#[tokio::test]
async fn h2_connection_with_a_cut_stream_closes_when_idle_despite_pings() {
    let limits = "send_timeout: 2s, idle_timeout: 1s, header_read_timeout: 1s";
    let (w, mut p, addr) = serve(limits).await;
    // `big` and `open` are kept: dropping them resets the stream or
    // opens its window.
    let ShutWindow {
        client,
        big,
        open,
        closed,
        mut pings,
    } = shut_window(&w, addr, "/big").await;
    wait_stream_cut(&mut p).await;
    // A PING every 300 ms, each awaiting its answer, for at most 30 s.
    let pinging = tokio::spawn(async move {
        for _ in 0..100 {
            if pings.ping(h2::Ping::opaque()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the client's PINGs held the connection open")
        .unwrap();
    pinging.await.unwrap();
    p.wait_log("forced close", |v| {
        v["message"] == "graceful close timed out; closing connection"
    })
    .await;
    wait_no_connections(p.admin_addr().await).await;
    drop((client, big, open));
}

/// An HTTP/1.1 connection cut at `header_read_timeout` (one silent since
/// its handshake, one half a head, neither closing) was answered nothing,
/// so it is closed fully, not lingered on: the lingering close (the TLS
/// close, then reading what comes for up to 5 s) held its
/// `max_connections` slot 5 s past the timeout, a slowloris each slot
/// half as long again. Seen from the client: after the end of stream,
/// bytes it writes are reset, where a lingering close read and discarded
/// them; the next client in the one slot is answered.
#[tokio::test]
async fn an_h1_connection_cut_at_header_read_timeout_does_not_linger() {
    let (w, _p, addr) = serve("header_read_timeout: 1s, max_connections: 1").await;
    for (what, sent) in [("silent", &b""[..]), ("half a head", b"GET / HTTP/1.1\r\n")] {
        let mut held = tls(&w, addr, &[b"http/1.1"]).await;
        held.write_all(sent).await.unwrap();
        held.flush().await.unwrap();
        let got = read_to_close(&mut held).await;
        assert!(
            got.is_empty(),
            "{what}: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            closed_fully(held.get_ref().0, WAIT).await,
            "{what}: lingered on"
        );
        // Its slot is free: the next client is served.
        let r = h1_exchange(&w, addr, GET_THEN_CLOSE).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{what}, then: {r}");
    }
}
