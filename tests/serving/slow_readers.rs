//! send_timeout and slow but steady readers, end to end: served whole, while one that stops is cut.
//!
//! On loopback the proxy's socket buffer grows to megabytes and takes a
//! 256 KiB body whole, so these do not show a wait inside rustls being
//! miscounted (tests/send_progress.rs does, on sockets with a fixed
//! buffer); they hold the whole path to what SPEC promises.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// The body the slow readers read (bounded: 6.4 s at their pace).
const BODY: usize = 256 * 1024;

/// An HTTP/2 client over `tls` with windows wide enough for the whole
/// body (so flow control never holds it back: only the socket does).
async fn h2_wide(tls: Paced<Tls>) -> h2::client::SendRequest<Bytes> {
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 20)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.ready().await.unwrap()
}

/// Wait for the connection from local port `port` to be cut by
/// send_timeout, or (`stream`: HTTP/2, whose stream then waits on the
/// send buffer hyper gives it) its stream.
async fn wait_cut(p: &mut Proxy, port: u16, stream: bool) {
    p.wait_log("cut by send_timeout", |v| {
        let connection = v["message"] == "connection ended with error"
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("send_timeout"));
        let its_stream =
            v["message"] == "response stalled, stream cut" && v["reason"] == "send_timeout";
        peer_is(v, port) && (connection || (stream && its_stream))
    })
    .await;
}

/// A client reading 40 KiB/s without a pause gets all of a 256 KiB body
/// over HTTP/1.1 with `send_timeout: 1s`: it accepts bytes all the time
/// (SPEC: at least 16 KiB per send_timeout is never cut).
#[tokio::test]
async fn a_slow_but_steady_reader_gets_the_whole_body_over_http1() {
    let (w, _p, addr) = serve("send_timeout: 1s").await;
    let mut s = Paced::new(tls(&w, addr, &[b"http/1.1"]).await);
    let get = format!(
        "GET /kib/{} HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n",
        BODY / 1024
    );
    s.write_all(get.as_bytes()).await.unwrap();
    let got = read_to_close(&mut s).await;
    let body_at = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    let head = String::from_utf8_lossy(&got[..body_at]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(got.len() - body_at, BODY, "the body's bytes received");
}

/// The same over HTTP/2, its windows wide open: the connection is not cut
/// while the client keeps taking bytes.
#[tokio::test]
async fn a_slow_but_steady_reader_gets_the_whole_body_over_http2() {
    let (w, _p, addr) = serve("send_timeout: 1s").await;
    let mut client = h2_wide(Paced::new(tls(&w, addr, &[b"h2"]).await)).await;
    let path = format!("/kib/{}", BODY / 1024);
    let resp = h2_request(&mut client, h2_get(&path, "GET")).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0;
    loop {
        match tokio::time::timeout(WAIT, body.data())
            .await
            .expect("data in time")
        {
            Some(Ok(data)) => {
                got += data.len();
                body.flow_control().release_capacity(data.len()).unwrap();
            }
            Some(Err(e)) => panic!("cut after {got} of {BODY} bytes: {e}"),
            None => break,
        }
    }
    assert_eq!(got, BODY, "the body's bytes received");
}

/// A client that took some of an endless body and then stops reading
/// altogether is still cut by send_timeout, over HTTP/1.1 and HTTP/2
/// (its windows wide open), and the upstream requests are released:
/// bytes that went out before it stopped do not count for later.
#[tokio::test]
async fn a_reader_that_stops_after_some_progress_is_still_cut() {
    let (w, mut p, addr) = serve("send_timeout: 1s").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    let port = local_port(&s);
    s.write_all(b"GET /big HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut some = vec![0u8; 64 * 1024];
    within_deadline("64 KiB of /big", s.read_exact(&mut some))
        .await
        .unwrap();
    wait_cut(&mut p, port, false).await;
    wait_bodies_released(&w, 1).await;

    let tls = tls(&w, addr, &[b"h2"]).await;
    let port = local_port(&tls);
    let mut client = h2_wide(Paced::stopping_after(tls, 64 * 1024)).await;
    let resp = h2_request(&mut client, h2_get("/big", "GET")).await;
    assert_eq!(resp.status(), 200);
    wait_cut(&mut p, port, true).await;
    wait_bodies_released(&w, 2).await;
    drop((s, resp));
}

/// A backend taking 40 KiB/s of a WebSocket tunnel over TLS, steadily,
/// gets all 256 KiB the client sent before closing: the tunnel's last
/// flush and shutdown towards it write as it reads, and send_timeout (1 s)
/// bounds only a wait that writes nothing. (The upstream's stream is
/// reached below hyper's upgrade for that count: this also holds that
/// such a tunnel still runs.)
#[tokio::test]
async fn a_slow_but_steady_tls_backend_gets_all_of_a_tunnel() {
    let w = world().await;
    let pair = w.ca.server_pair(&["backend.local"]);
    write(&w.scene.path("backend-ca.crt"), &w.ca.cert_pem);
    let (listener, acceptor) = tls_listener(&pair, b"http/1.1").await;
    let backend = listener.local_addr().unwrap();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel::<usize>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(tls.read(&mut b).await.unwrap(), 1, "closed mid-head");
            head.push(b[0]);
        }
        let switched = b"HTTP/1.1 101 Switching Protocols\r\n\
            upgrade: websocket\r\nconnection: upgrade\r\n\
            sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        tls.write_all(switched).await.unwrap();
        // Read as a slow but steady peer does, to the end (or a cut).
        let mut paced = Paced::new(tls);
        let got = read_to_close(&mut paced).await;
        let _ = got_tx.send(got.len());
    });
    let cfg = config(&w, "", "send_timeout: 1s");
    edit_config(&cfg, |text| {
        text.replace(
            &format!("servers: [http://{}]", w.backend.addr),
            &format!(
                "servers: [https://{backend}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}"
            ),
        )
    });
    let mut p = Proxy::start(&cfg);
    let addr: SocketAddr = p.listener_addr("public").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nconnection: upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    within_deadline("the tunnel's bytes written", async {
        s.write_all(&vec![b't'; BODY]).await.unwrap();
        s.shutdown().await.unwrap();
    })
    .await;
    let got = within_deadline("the backend's read to the end", got_rx)
        .await
        .unwrap();
    assert_eq!(got, BODY, "the tunnel's bytes the backend received");
    drop(s);
}
