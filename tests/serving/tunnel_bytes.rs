//! Tunnels cut at `send_timeout`, either side having stopped reading: the bytes counted as written onward, the slots freed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;
use crate::tunnels::{
    serve_raw, switching_backend, the_tunnel_cut_by_send_timeout, the_tunnels_line, upgrade,
};

/// A tunnel whose backend reads nothing of it, cut at `send_timeout`
/// while the client keeps writing: the line's `bytes_in` is what the
/// backend gets once it reads its socket to the end, every byte the proxy
/// relayed and no more. It was what the proxy had read from the client,
/// with what it still held, never sent, when the tunnel was cut.
#[tokio::test]
async fn a_cut_tunnels_bytes_in_are_those_the_upstream_got() {
    let w = world().await;
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = std::sync::Mutex::new(Some(drain_rx));
    let (got_tx, got_rx) = tokio::sync::oneshot::channel::<usize>();
    let got_tx = std::sync::Mutex::new(Some(got_tx));
    let backend = switching_backend(move |mut tcp| {
        let drain = drain.lock().unwrap().take();
        let got = got_tx.lock().unwrap().take();
        async move {
            let (Some(drain), Some(got)) = (drain, got) else {
                return;
            };
            // Nothing read until the tunnel is cut; then all of it.
            let _ = drain.await;
            let mut n = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(k @ 1..) = tcp.read(&mut buf).await {
                n += k;
            }
            let _ = got.send(n);
        }
    })
    .await;
    let (mut p, addr, log) = serve_raw(&w, backend, "send_timeout: 1s", "").await;
    let (_from, mut to) = tokio::io::split(upgrade(&w, addr).await);
    let writer = tokio::spawn(async move {
        let chunk = vec![b'c'; 64 * 1024];
        while to.write_all(&chunk).await.is_ok() {}
    });
    the_tunnel_cut_by_send_timeout(&mut p).await;
    writer.abort();
    let line = the_tunnels_line(&log).await;
    drain_tx.send(()).unwrap();
    let got = within_deadline("the backend's read to the end", got_rx)
        .await
        .unwrap();
    assert_eq!(line["bytes_in"], got, "{line}");
}

/// The mirror of `a_backend_that_stops_reading_a_tunnel_is_cut_at_send_timeout`
/// (tunnels.rs): a client that stops reading a tunnel the backend floods,
/// while it keeps sending (a ping every 100 ms, so the tunnel is never
/// idle), is cut at `send_timeout` by its own connection's write bound,
/// though it neither reads nor closes. Its connection's `max_connections`
/// slot and the upstream connection `max_connections_per_server` allows
/// are free for the next tunnel, and its line counts what was relayed:
/// `bytes_in` every ping the backend got, `bytes_out` no less than what
/// reached the client.
#[tokio::test]
async fn a_client_that_stops_reading_a_tunnel_is_cut_at_send_timeout() {
    let w = world().await;
    // Each switched connection floods its tunnel and reads what comes
    // through it: how much, once the proxy has closed it.
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = switching_backend(move |tcp| {
        let got_tx = got_tx.clone();
        async move {
            let (mut from, mut to) = tcp.into_split();
            let flood = tokio::spawn(async move {
                let chunk = vec![b'.'; 64 * 1024];
                while to.write_all(&chunk).await.is_ok() {}
            });
            let (mut got, mut buf) = (0, vec![0u8; 4096]);
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                got += n;
            }
            flood.abort();
            let _ = got_tx.send(got);
        }
    })
    .await;
    let limits = "send_timeout: 1s, max_connections: 1";
    let one_slot = "\n    max_connections_per_server: 1";
    let (mut p, addr, log) = serve_raw(&w, backend, limits, one_slot).await;
    let admin = p.admin_addr().await;
    let (mut from, mut to) = tokio::io::split(upgrade(&w, addr).await);
    let pinger = tokio::spawn(async move {
        let mut pings = tokio::time::interval(Duration::from_millis(100));
        loop {
            pings.tick().await;
            if to.write_all(b"ping").await.is_err() {
                return;
            }
        }
    });
    p.wait_log("the tunnel cut", |v| {
        v["message"] == "tunnel closed"
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("send_timeout: the client stopped reading"))
    })
    .await;
    pinger.abort();
    let got = within_deadline("the upstream connection closed", got_rx.recv())
        .await
        .unwrap();
    wait_no_connections(admin).await;
    let line = the_tunnels_line(&log).await;
    assert_eq!(line["bytes_in"], got, "{line}");
    assert!(got > 0 && got % 4 == 0, "{got} bytes of pings");
    // What reached the client, read now that it is cut.
    let reached = read_to_close(&mut from).await;
    assert!(reached.iter().all(|&b| b == b'.'), "not the flood");
    let bytes_out = line["bytes_out"].as_u64().unwrap();
    assert!(
        !reached.is_empty() && bytes_out >= reached.len() as u64,
        "{} bytes reached the client, {line}",
        reached.len()
    );
    // Both slots free: the next tunnel is switched, and flooded.
    let mut next = upgrade(&w, addr).await;
    let mut first = [0u8; 1];
    within_deadline("the next tunnel's first byte", next.read_exact(&mut first))
        .await
        .unwrap();
    assert_eq!(&first, b".");
}
