//! Tunnels whose one side reads slowly: not idle while bytes wait for it, whatever `tunnel_idle_timeout`.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;
use crate::tunnels::{serve_raw, switching_backend, upgrade};

/// Bytes pushed through the tunnel: far more than the socket buffers and
/// rustls hold on the way, so the proxy always has some waiting to be
/// written while the reader is slow.
const TOTAL: usize = 16 << 20;

/// The tunnels' `tunnel_idle_timeout`: long enough that a test process
/// starved of CPU for a moment on a loaded machine does not leave them
/// idle that long.
const IDLE: &str = "tunnel_idle_timeout: 2s";

/// The slow reader's step: 256 bytes every 100 ms (2.5 KiB/s), for 60
/// steps: three `tunnel_idle_timeout`s during which the proxy can write,
/// and so read the other side, only an 8 KiB chunk every few seconds.
const SLOW_STEP: usize = 256;
const SLOW_STEPS: usize = 60;
const SLOW_PACE: Duration = Duration::from_millis(100);

/// Read `r` slowly but steadily (pacing, not waiting for a condition),
/// each read awaited until it brings bytes: how many it brought.
async fn read_slowly<R: AsyncRead + Unpin>(r: &mut R) -> usize {
    let mut got = 0;
    let mut step = [0u8; SLOW_STEP];
    for _ in 0..SLOW_STEPS {
        tokio::time::sleep(SLOW_PACE).await;
        let n = within_deadline("a slow read", r.read(&mut step))
            .await
            .unwrap();
        assert!(n > 0, "closed after {got} bytes read slowly");
        got += n;
    }
    got
}

/// The client closes its side and the tunnel ends for that: it was never
/// closed for silence on the way.
async fn closed_by_the_client_not_for_silence(p: &mut Proxy) {
    p.wait_log("the tunnel closed by the client", |v| {
        v["message"] == "tunnel closed" && v["reason"] == "client_closed"
    })
    .await;
    assert!(
        !p.logs().iter().any(|l| l.contains("tunnel_idle_timeout")),
        "a tunnel moving bytes was closed for silence"
    );
}

/// A backend streaming to a client that reads slowly but steadily: the
/// proxy's writes to the client wait (the client's buffers full) and it
/// reads nothing from either side for longer than `tunnel_idle_timeout`,
/// while bytes still reach the client. The tunnel used to be closed as
/// idle (`reason: tunnel_idle_timeout`) and the client cut short: the idle
/// clock was wound by reads only.
#[tokio::test]
async fn a_tunnel_streaming_to_a_slow_client_is_not_idle() {
    let w = world().await;
    let backend = switching_backend(|tcp| async move {
        let (mut from, mut to) = tcp.into_split();
        let chunk = vec![b'd'; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // Its side open until the proxy closes it.
        let mut buf = [0u8; 1024];
        while let Ok(1..) = from.read(&mut buf).await {}
    })
    .await;
    let (mut p, addr, _log) = serve_raw(&w, backend, IDLE, "").await;
    let mut s = upgrade(&w, addr).await;
    let slow = read_slowly(&mut s).await;
    // Then the rest, at full speed: all of it arrives.
    let mut rest = vec![0u8; TOTAL - slow];
    within_deadline("the rest of the stream", s.read_exact(&mut rest))
        .await
        .unwrap_or_else(|e| panic!("cut after {slow} bytes read slowly and some more: {e}"));
    assert!(rest.iter().all(|&b| b == b'd'), "not the stream");
    s.shutdown().await.unwrap();
    closed_by_the_client_not_for_silence(&mut p).await;
}

/// The reverse: a client uploading to a backend that reads slowly but
/// steadily. The proxy's writes to the backend wait and it reads nothing
/// from the client for longer than `tunnel_idle_timeout`; the tunnel used
/// to be closed as idle and the upload cut short.
#[tokio::test]
async fn a_tunnel_uploading_to_a_slow_backend_is_not_idle() {
    let w = world().await;
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = switching_backend(move |mut tcp| {
        let got_tx = got_tx.clone();
        async move {
            let slow = read_slowly(&mut tcp).await;
            let mut rest = vec![0u8; TOTAL - slow];
            let rest = tcp.read_exact(&mut rest).await.map(|_| rest);
            let _ = got_tx.send((slow, rest));
            // Its side open until the proxy closes it.
            let mut buf = [0u8; 1024];
            while let Ok(1..) = tcp.read(&mut buf).await {}
        }
    })
    .await;
    let (mut p, addr, _log) = serve_raw(&w, backend, IDLE, "").await;
    let (_from, mut to) = tokio::io::split(upgrade(&w, addr).await);
    let writer = tokio::spawn(async move {
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            to.write_all(&chunk).await?;
        }
        std::io::Result::Ok(to)
    });
    let (slow, rest) = within_deadline("the backend's reads", got_rx.recv())
        .await
        .unwrap();
    let rest = rest.unwrap_or_else(|e| panic!("cut after {slow} bytes read slowly: {e}"));
    assert!(rest.iter().all(|&b| b == b'u'), "not the upload");
    let mut to = within_deadline("the upload written", writer)
        .await
        .unwrap()
        .unwrap();
    to.shutdown().await.unwrap();
    closed_by_the_client_not_for_silence(&mut p).await;
}
