//! WebSocket upgrades to HTTP/2-only endpoints: refused, and no failure of the endpoints.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// An HTTP/2-only TLS backend (ALPN `h2` alone) answering every stream
/// `200` with an empty body.
async fn h2_only(w: &World) -> SocketAddr {
    h2_backend(&w.backend_pair, |_req, mut respond| {
        let resp = http::Response::new(());
        let _ = respond.send_response(resp, true);
    })
    .await
}

/// A WebSocket upgrade sent to the proxy at `addr` on a connection of its
/// own: the status line of its answer.
async fn upgrade_status(w: &World, addr: SocketAddr) -> String {
    let mut s = connect(addr, "a.example.com", h1_config(w)).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\
          connection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let _ = within_deadline("the upgrade's answer", s.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got).into_owned();
    got.lines().next().unwrap_or_default().to_owned()
}

/// An upgrade dial offers only `http/1.1` in ALPN, which an HTTP/2-only
/// endpoint refuses (`no_application_protocol`): the client gets a `502`,
/// and it is not the endpoint's failure. Any client could eject healthy
/// HTTP/2-only endpoints with upgrade requests: each refusal counted as a
/// failed connect for passive health (here one ejected at the first).
#[tokio::test]
async fn upgrades_refused_by_h2_only_endpoints_eject_none() {
    let w = world();
    let (a, b) = (h2_only(&w).await, h2_only(&w).await);
    let passive = "health: { passive: { consecutive_failures: 1, eject_for: 1h } }";
    let upstream = backend_upstream("app", &[a, b], &[passive]);
    let mut p = Proxy::start(&w.scene.public_config("[{ upstream: app }]", &upstream));
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    for _ in 0..4 {
        let status = upgrade_status(&w, addr).await;
        assert!(status.starts_with("HTTP/1.1 502 "), "{status}");
    }
    // The failures are counted before the answers go out.
    let m = metrics_text(admin).await;
    let gauge =
        |state: &str| format!("hotproxy_upstream_endpoints{{upstream=\"app\",state=\"{state}\"}} ");
    assert!(m.contains(&format!("{}2\n", gauge("healthy"))), "{m}");
    assert!(m.contains(&format!("{}0\n", gauge("ejected"))), "{m}");
    // Both still serve ordinary requests.
    let mut client = h2_to(&w, addr).await;
    for _ in 0..4 {
        let req = http::Request::get("https://a.example.com/x")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = within_deadline("an answer", resp).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
}
