//! WebSocket tunnels whose listener a reload removes or binds elsewhere: they end at once, both sides closed.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tunnels::{echo, switching_backend, the_tunnels_line, upgrade};
use crate::common::*;
use crate::support::*;

/// The listener `ws`, beside `public`, whose tunnels the tests end: only
/// a change to it (not `tunnel_idle_timeout`, 1 h) can end them.
const WS: &str = "  - name: ws
    bind: 127.0.0.1:0
    tls: { certs: [{ cert_file: a.crt, key_file: a.key }] }
    routes: [{ upstream: plain }]
    limits: { tunnel_idle_timeout: 1h }
";

/// A tunnel through `ws` to an echoing backend, then `edit` to the
/// config and a SIGHUP whose applying logs `applied`: the tunnel ends,
/// its client's connection and its backend's both closed, the debug line
/// `tunnel closed` says `listener_removed`, and its access-log line is
/// written with the bytes it carried.
async fn a_tunnel_ends_when_its_listener_is(edit: impl FnOnce(String) -> String, applied: &str) {
    let w = world().await;
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = switching_backend(move |mut tcp| {
        let closed_tx = closed_tx.clone();
        async move {
            // Echo until the proxy closes its side.
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = closed_tx.send(());
        }
    })
    .await;
    let (cfg, log) = logged_config(&w, "");
    edit_config(&cfg, |text| {
        text.replace(
            &format!("servers: [http://{}]", w.backend.addr),
            &format!("servers: [http://{backend}]"),
        )
        .replace("upstreams:", &format!("{WS}upstreams:"))
    });
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("ws").await;
    let mut s = upgrade(&w, addr).await;
    echo(&mut s, b"hello").await;

    edit_config(&cfg, edit);
    p.signal("HUP");
    p.wait_log(applied, |v| {
        v["message"] == applied && v["listener"] == "ws"
    })
    .await;
    // Both sides closed, though neither said a word since.
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
    within_deadline("the backend's side closed", closed_rx.recv())
        .await
        .expect("the backend's task reports its close");
    p.wait_log("the tunnel's close", |v| {
        v["message"] == "tunnel closed"
            && v["reason"] == "listener_removed"
            && v["listener"] == "ws"
    })
    .await;
    let v = the_tunnels_line(&log).await;
    assert_eq!(v["listener"], "ws", "{v}");
    assert_eq!(v["bytes_in"], 5, "{v}");
    assert_eq!(v["bytes_out"], 5, "{v}");
}

/// A reload that removes a listener ends its WebSocket tunnels at once
/// (SPEC §3: "a listener removed or bound elsewhere closes its open
/// connections ... tunnels end at once"), as its other
/// connections close: a tunnel never makes another request, so without it
/// the tunnel would go on with the removed listener's routes and rules
/// for as long as its two sides talk.
#[tokio::test]
async fn a_reload_removing_a_tunnels_listener_ends_the_tunnel() {
    a_tunnel_ends_when_its_listener_is(|text| text.replace(WS, ""), "listener removed").await;
}

/// The same for a listener bound elsewhere by a reload: its old address
/// closes, and the tunnels it accepted end with it.
#[tokio::test]
async fn a_reload_binding_a_tunnels_listener_elsewhere_ends_the_tunnel() {
    let moved = WS.replace("bind: 127.0.0.1:0", "bind: 127.0.0.2:0");
    a_tunnel_ends_when_its_listener_is(
        move |text| text.replace(WS, &moved),
        "listener re-bound; old address closed",
    )
    .await;
}

/// A WebSocket upgrade that reaches a listener already removed (a client
/// queued on its socket, served as its last from there, SPEC §3) is
/// refused before it is forwarded: `503` with `Connection: close`, the
/// backend never asked. It was forwarded, the backend opened its
/// WebSocket and the client got its `101`, and the tunnel was cut at once
/// (a removed listener's tunnels end).
#[tokio::test]
async fn an_upgrade_reaching_a_removed_listener_is_refused_before_it_is_forwarded() {
    let w = world().await;
    let (asked_tx, mut asked_rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = switching_backend(move |_tcp| {
        let _ = asked_tx.send(());
        async {}
    })
    .await;
    let ws = WS.replace(
        "tunnel_idle_timeout: 1h",
        "tunnel_idle_timeout: 1h, max_connections: 1",
    );
    let (cfg, _log) = logged_config(&w, "");
    edit_config(&cfg, |text| {
        text.replace(
            &format!("servers: [http://{}]", w.backend.addr),
            &format!("servers: [http://{backend}]"),
        )
        .replace("upstreams:", &format!("{ws}upstreams:"))
    });
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("ws").await;
    // The one slot taken: the next client waits in the socket's queue.
    let _first = tls(&w, addr, &[b"http/1.1"]).await;
    let queued = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let upgrading = tokio::spawn(async move {
        let name = rustls::pki_types::ServerName::try_from("a.example.com").unwrap();
        let mut s = tokio_rustls::TlsConnector::from(client)
            .connect(name, queued)
            .await
            .unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
              sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        String::from_utf8_lossy(&read_to_close(&mut s).await).to_ascii_lowercase()
    });
    edit_config(&cfg, |text| text.replace(&ws, ""));
    p.signal("HUP");
    let answer = within_deadline("the queued client's answer", upgrading)
        .await
        .unwrap();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    assert!(
        asked_rx.try_recv().is_err(),
        "the backend was asked: {answer}"
    );
}
