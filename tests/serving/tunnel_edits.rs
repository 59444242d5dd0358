//! Tunnels across an upstream edit: they keep holding their server's `max_connections_per_server` slots.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;
use crate::tunnels::{serve_raw, switching_backend, upgrade};

/// A WebSocket upgrade the proxy refuses: its status.
async fn refused_upgrade(w: &World, addr: std::net::SocketAddr) -> u16 {
    let mut s = tls(w, addr, &[b"http/1.1"]).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    head.get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"))
}

/// Tunnels opened before an edit of their upstream (here its
/// `read_timeout`) still count toward `max_connections_per_server`: with
/// the cap 2 and two tunnels open, a third gets the connection limit's
/// `504` before the edit and after it, and a tunnel once one of the old
/// ones closes. The edited upstream's endpoint used to get slots of its
/// own, so every edit let another full set of connections reach the
/// server (three edits, six tunnels where the cap said two).
#[tokio::test]
async fn tunnels_from_before_an_upstream_edit_still_hold_the_servers_slots() {
    let w = world().await;
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = switching_backend(move |mut tcp| {
        let closed = closed_tx.clone();
        async move {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            drop(tcp);
            let _ = closed.send(());
        }
    })
    .await;
    let settings = "\n    max_connections_per_server: 2\n    connect_timeout: 2s";
    let (mut p, addr, _log) = serve_raw(&w, backend, "", settings).await;
    let first = upgrade(&w, addr).await;
    let second = upgrade(&w, addr).await;
    assert_eq!(refused_upgrade(&w, addr).await, 504, "before the edit");

    let cfg = w.scene.path("config.yaml");
    let edited = format!("{settings}\n    read_timeout: 59s");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(settings), "{text}");
    edit_config(&cfg, |text| text.replace(settings, &edited));
    reloaded(&mut p, 1).await;
    assert_eq!(
        refused_upgrade(&w, addr).await,
        504,
        "a third tunnel after the edit, with two from before it open"
    );

    drop(first);
    within_deadline("the backend seeing a tunnel close", closed_rx.recv()).await;
    let third = echoing(upgrade(&w, addr).await).await;

    // The cap lowered to 1 with two tunnels open: neither is cut, and a
    // new one waits for both to end, not for one.
    let lowered = edited.replace("per_server: 2", "per_server: 1");
    edit_config(&cfg, |text| text.replace(&edited, &lowered));
    reloaded(&mut p, 2).await;
    let third = echoing(third).await;
    drop(second);
    within_deadline("the backend seeing a tunnel close", closed_rx.recv()).await;
    assert_eq!(
        refused_upgrade(&w, addr).await,
        504,
        "a second tunnel with the cap lowered to 1"
    );
    drop(third);
    within_deadline("the backend seeing a tunnel close", closed_rx.recv()).await;
    echoing(upgrade(&w, addr).await).await;
}

/// Send SIGHUP and wait for the `n`th `configuration reloaded` line.
async fn reloaded(p: &mut Proxy, n: usize) {
    p.signal("HUP");
    let what = format!("reload {n}");
    wait_until(WAIT, &what, || async {
        let lines = p.logs();
        let reloads = lines
            .iter()
            .filter(|l| l.contains("\"configuration reloaded\""));
        reloads.count() >= n
    })
    .await;
}

/// `s`, once bytes sent through it came back from the echoing backend.
async fn echoing(mut s: Tls) -> Tls {
    s.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&back, b"hello");
    s
}
