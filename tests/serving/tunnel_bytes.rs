//! A tunnel's `bytes_in` is what reached the upstream, not what was read from the client.

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
