//! Upgrade requests queued for a connection slot: the connection limit's answer, no endpoint blamed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;
use crate::tunnels::{echo, serve_raw, switching_backend, upgrade};

/// The one connection `max_connections_per_server` allows to a healthy
/// backend carries a tunnel; another `Upgrade` request waits for a slot
/// until its `request_timeout` (below `connect_timeout`) runs out. It gets
/// the connection limit's `504`, counted as `connection_limit`, and the
/// endpoint is not blamed (one failure would eject it here). The wait was
/// bounded by `connect_timeout` alone, so `request_timeout` ended it from
/// outside: `upstream timed out`, `reason="timeout"`, a failure of the
/// endpoint's, and a few such upgrades ejected a busy but healthy one.
#[tokio::test]
async fn an_upgrade_queued_for_a_slot_past_request_timeout_is_the_connection_limit() {
    let w = world().await;
    // Each switched connection echoes what comes through its tunnel,
    // counted once the proxy has closed it.
    let closed = Arc::new(AtomicUsize::new(0));
    let seen = closed.clone();
    let backend = switching_backend(move |tcp| {
        let seen = seen.clone();
        async move {
            let (mut from, mut to) = tcp.into_split();
            let _ = tokio::io::copy(&mut from, &mut to).await;
            seen.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let upstream = "\n    max_connections_per_server: 1\n    connect_timeout: 30s\
        \n    request_timeout: 500ms\
        \n    health: { passive: { consecutive_failures: 1, eject_for: 1h } }";
    let (mut p, addr, _log) = serve_raw(&w, backend, "", upstream).await;
    let mut tunnel = upgrade(&w, addr).await;
    echo(&mut tunnel, b"holding the slot").await;
    // The second upgrade queues behind the tunnel.
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // The connection stays open after it: the body is read by its length.
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; len];
    within_deadline("the 504's body", s.read_exact(&mut body))
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(body, "no upstream connection free\n", "{head}");
    let m = metrics_text(p.admin_addr().await).await;
    let limit = r#"hotproxy_upstream_errors_total{upstream="plain",reason="connection_limit"} 1"#;
    assert!(m.lines().any(|l| l == limit), "{m}");
    assert!(!m.contains(r#"reason="timeout""#), "{m}");
    let healthy = r#"hotproxy_upstream_endpoints{upstream="plain",state="healthy"} 1"#;
    assert!(m.lines().any(|l| l == healthy), "{m}");
    // The tunnel was never disturbed, and once it closes its slot serves
    // the next upgrade.
    echo(&mut tunnel, b"still here").await;
    drop(tunnel);
    wait_until(WAIT, "the tunnel's upstream connection closed", || async {
        closed.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut next = upgrade(&w, addr).await;
    echo(&mut next, b"served").await;
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("upstream endpoint ejected")),
        "{:?}",
        p.logs()
    );
}

/// SPEC (Upstream connection limit): the one connection
/// `max_connections_per_server` allows has served an ordinary request and
/// sits idle in the pool; an `Upgrade` request, which takes no pooled
/// connection, takes its slot (that connection closed) and is switched.
/// It waited for a slot the idle connection gives back only at
/// `idle_timeout`: the whole `connect_timeout` (30 s, past the client's
/// own deadline), then the connection limit's `504`.
#[tokio::test]
async fn an_upgrade_takes_the_slot_of_an_idle_pooled_connection() {
    let w = world().await;
    // Answers ordinary requests on a kept-alive connection; switches and
    // echoes on an upgrade.
    let (backend, accepted) = raw_backend(|mut tcp| async move {
        tcp.set_nodelay(true).unwrap();
        let mut buf = Vec::new();
        while let Some(end) = read_raw_head(&mut tcp, &mut buf).await {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end);
            if head.contains("upgrade: websocket") {
                let switched = b"HTTP/1.1 101 Switching Protocols\r\n\
                    upgrade: websocket\r\nconnection: upgrade\r\n\
                    sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
                if tcp.write_all(switched).await.is_ok() {
                    let (mut from, mut to) = tcp.into_split();
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                }
                return;
            }
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if tcp.write_all(ok).await.is_err() {
                return;
            }
        }
    })
    .await;
    let upstream = "\n    max_connections_per_server: 1\n    connect_timeout: 30s";
    let (_p, addr, _log) = serve_raw(&w, backend, "", upstream).await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let r = get(addr, "a.example.com", cfg, false, "/x", &[])
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let mut tunnel = upgrade(&w, addr).await;
    echo(&mut tunnel, b"switched").await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "connections dialled");
}
