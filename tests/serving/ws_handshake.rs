//! The WebSocket handshake a tunnel needs: a request without a valid key or version is a 400, a 101 without the key's accept a 502 and no tunnel.

use std::sync::atomic::Ordering::SeqCst;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;
use crate::tunnels::serve_raw;

/// An upgrade request's head up to its WebSocket fields.
const UPGRADE: &str =
    "GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n";

/// An upgrade hotproxy would tunnel without a valid `Sec-WebSocket-Key`
/// (none, two, or one that is not 16 bytes in base64) or with a
/// `Sec-WebSocket-Version` other than `13` is answered `400` (RFC 6455
/// §4.2.1), with `Sec-WebSocket-Version: 13` when the version is what is
/// wrong (missing too: it is read first), and never reaches the backend. The plain backend answers `101`
/// to any `Upgrade`: such a request was tunnelled, the bytes its client
/// wrote next reaching the upstream connection past routing and `allow`.
#[tokio::test]
async fn an_upgrade_without_a_valid_handshake_is_a_400() {
    let (w, _p, addr) = serve("").await;
    let key = "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let v13 = "sec-websocket-version: 13\r\n";
    let cases = [
        (String::new(), true),
        (v13.to_string(), false),
        (format!("sec-websocket-key: dGVzdA==\r\n{v13}"), false),
        (
            format!("sec-websocket-key: not base64 at all!!!!!==\r\n{v13}"),
            false,
        ),
        (format!("{key}{key}{v13}"), false),
        (key.to_string(), true),
        (format!("{key}sec-websocket-version: 8\r\n"), true),
        (format!("{key}{v13}{v13}"), true),
    ];
    for (fields, version_wrong) in cases {
        let request = format!("{UPGRADE}{fields}\r\n");
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        s.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 400 "), "{fields:?}: {head}");
        assert_eq!(
            head.contains("\r\nsec-websocket-version: 13\r\n"),
            version_wrong,
            "{fields:?}: {head}"
        );
        assert!(!head.contains("upgrade: websocket"), "{head}");
    }
    assert_eq!(
        w.backend.requests.load(SeqCst),
        0,
        "a request was forwarded"
    );
}

/// A `101` whose `Sec-WebSocket-Accept` is missing or is not the one the
/// request's key asks for (RFC 6455 §4.2.2) is refused as a switch nobody
/// asked for is: a `502`, and no tunnel. The client wrote a request for
/// `/admin/x` with a forged identity right after its upgrade: it never
/// reaches the upstream connection of the upgrade (whose switch was
/// refused and which is closed), and if it reaches the backend at all it
/// is as a request of its own, routed, its forwarding headers replaced.
/// It was carried as tunnel bytes to a backend that answered `101` and
/// went on speaking HTTP/1.1 (WebSocket smuggling).
#[tokio::test]
async fn a_switch_without_the_keys_accept_is_a_502_and_no_tunnel() {
    for accept in ["", "sec-websocket-accept: dGhlIHNhbXBsZSBub25jZQ==\r\n"] {
        let w = world().await;
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let (backend, _) = raw_backend(move |mut tcp| {
            let seen = seen_tx.clone();
            async move {
                let mut buf = Vec::new();
                let Some(end) = read_raw_head(&mut tcp, &mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                if !head.contains("upgrade: websocket") {
                    // A request of its own: seen, answered.
                    let _ = seen.send(("request", head));
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    let _ = tcp.write_all(ok).await;
                    return;
                }
                let switched = format!(
                    "HTTP/1.1 101 Switching Protocols\r\n\
                     upgrade: websocket\r\nconnection: upgrade\r\n{accept}\r\n"
                );
                if tcp.write_all(switched.as_bytes()).await.is_err() {
                    return;
                }
                // Everything after the upgrade's head, until the proxy closes.
                buf.drain(..end);
                while read_more(&mut tcp, &mut buf).await {}
                let _ = seen.send(("after the upgrade", String::from_utf8_lossy(&buf).into()));
            }
        })
        .await;
        let (_p, addr, _log) = serve_raw(&w, backend, "", "").await;
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        let attack = format!(
            "{UPGRADE}sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             sec-websocket-version: 13\r\n\r\n\
             GET /admin/x HTTP/1.1\r\nhost: a.example.com\r\n\
             x-forwarded-for: 10.0.0.1\r\nconnection: close\r\n\r\n"
        );
        s.write_all(attack.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 502 "), "{accept:?}: {head}");
        // The upgrade's connection carried nothing more, and was closed.
        let rest = loop {
            let (what, text) = within_deadline("the backend's connections", seen.recv())
                .await
                .unwrap();
            if what == "after the upgrade" {
                break text;
            }
            assert!(text.starts_with("get /admin/x "), "{text}");
            assert!(
                text.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
                "{text}"
            );
        };
        assert_eq!(rest, "", "tunnel bytes reached the upstream ({accept:?})");
        // What the client reads next is hotproxy's, not the backend's via a tunnel.
        let mut more = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut more)).await;
        // (A status line: the request id of the pipelined request's own
        // answer may hold "101".)
        let more = String::from_utf8_lossy(&more);
        assert!(!more.contains("HTTP/1.1 101"), "{more}");
    }
}
