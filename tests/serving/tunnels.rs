//! Upgrade tunnels: slots, lifetime, retried connects, h2c, an unrequested 101, idleness, their access-log lines, a body the upstream stops taking.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// Send a WebSocket upgrade; return the stream after a `101`, an echo
/// through it seen.
async fn websocket(w: &World, addr: SocketAddr) -> Tls {
    let mut s = upgrade(w, addr).await;
    echo(&mut s, b"hello").await;
    s
}

/// Send a WebSocket upgrade; return the stream once its `101` is read.
pub(super) async fn upgrade(w: &World, addr: SocketAddr) -> Tls {
    upgrade_on(tls(w, addr, &[b"http/1.1"]).await).await
}

/// Send a WebSocket upgrade on `s`; return it once its `101` is read.
async fn upgrade_on(mut s: Tls) -> Tls {
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // The backend's own hop-by-hop fields stay behind (RFC 9110 §7.6.1),
    // as from any other response; Upgrade and Connection are the switch's.
    for field in ["x-internal", "keep-alive", "proxy-connection"] {
        assert!(!head.contains(field), "{field} reached the client: {head}");
    }
    assert!(head.contains("connection: upgrade\r\n"), "{head}");
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    s
}

/// Bytes sent through a tunnel come back from the echoing backend.
pub(super) async fn echo(s: &mut Tls, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(WAIT, s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, msg);
}

/// Tunnels keep their connection's slot: they count in
/// hotproxy_connections_active, hold max_connections (a third client waits
/// until one closes), and are counted by the shutdown drain.
#[tokio::test]
async fn tunnels_hold_their_connection_slot() {
    let (w, mut p, addr) = serve("max_connections: 2").await;
    let admin = p.admin_addr().await;
    let first = websocket(&w, addr).await;
    let mut second = websocket(&w, addr).await;
    let gauge = "hotproxy_connections_active{listener=\"public\"} 2";
    wait_metric(admin, gauge, WAIT).await;
    // A third client is held back while both tunnels are open (it waits
    // in the accept queue while the proxy carries tunnel bytes and answers
    // other requests) ...
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let third = tokio::spawn(async move { connect(addr, "a.example.com", cfg).await });
    let m = assert_held_back(addr, 1, async {
        echo(&mut second, b"still here").await;
        metrics_in_turns(admin).await
    })
    .await;
    assert!(m.lines().any(|l| l == gauge), "{m}");
    assert!(
        !third.is_finished(),
        "a third connection was served beyond max_connections"
    );
    // ... and is once one closes.
    drop(first);
    let third = tokio::time::timeout(WAIT, third)
        .await
        .expect("the third connection is served once a tunnel closes")
        .unwrap()
        .unwrap();
    p.signal("TERM");
    let v = p
        .wait_log("shutdown drain", |v| {
            v["message"] == "shutting down: no new connections, draining open ones"
        })
        .await;
    assert_eq!(v["open_connections"], 2, "{v}");
    echo(&mut second, b"served while draining").await;
    drop((second, third));
    assert!(p.wait_exit(WAIT).await.success());
}

/// `max_connection_lifetime` bounds a WebSocket tunnel as it bounds the
/// connection it came from: its client was admitted by a handshake with
/// material since rotated out (a revoked client certificate, changed
/// `allow` rules). A tunnel older than the limit is left alone until the
/// listener's certificate rotates, then closed. It used to live as long as
/// it carried traffic.
#[tokio::test]
async fn a_tunnel_made_with_rotated_out_material_ends_at_max_connection_lifetime() {
    let (w, mut p, addr) = serve("max_connection_lifetime: 1s").await;
    let mut s = websocket(&w, addr).await;
    // Older than the limit, but nothing rotated: still carried.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    echo(&mut s, b"still here").await;
    rotate_certificate(&w, &mut p).await;
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
    p.wait_log("the tunnel ended", |v| {
        v["message"] == "tunnel closed" && v["reason"] == "max_connection_lifetime"
    })
    .await;
}

/// A WebSocket upgrade whose connect fails is sent to another endpoint, as
/// any request is (SPEC: Retries, "always for a failed connect"; nginx's
/// proxy_next_upstream error). It got a 502 from the first endpoint picked.
#[tokio::test]
async fn an_upgrade_whose_connect_fails_goes_to_another_endpoint() {
    let w = world().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = config(&w, "", "");
    edit_config(&cfg, |text| {
        text.replace(
            &format!("servers: [http://{}]", w.backend.addr),
            &format!(
                "servers: [http://{dead}, http://{}]\n    balance: round_robin",
                w.backend.addr
            ),
        )
    });
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    // Round robin starts at the dead endpoint; the tunnel comes up anyway.
    let mut s = websocket(&w, addr).await;
    echo(&mut s, b"through the other endpoint").await;
    p.wait_log("the retry", |v| {
        v["message"] == "retrying on another endpoint" && v["reason"] == "connect_refused"
    })
    .await;
}

/// `Upgrade: h2c` is never tunnelled: the request reaches the backend as an
/// ordinary request without Upgrade, and the client gets its answer.
#[tokio::test]
async fn h2c_upgrade_is_not_tunnelled() {
    let (w, _p, addr) = serve("").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    s.write_all(
        b"GET /api HTTP/1.1\r\nhost: a.example.com\r\nupgrade: h2c\r\n\
          connection: Upgrade, HTTP2-Settings\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\
          connection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let reply = String::from_utf8(read_to_close(&mut s).await).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let j = body_json(&reply);
    for gone in ["upgrade", "http2-settings", "connection"] {
        assert!(j["headers"].get(gone).is_none(), "{gone} forwarded: {j}");
    }
}

/// A `101` to a request that asked for no upgrade is refused (502 to the
/// client), and it is the endpoint's 502: a failure for passive health and
/// `code="502"` in its request counts. It used to be counted as an
/// answered `101`, a success, while the client got a 502. Its access-log
/// line names the endpoint whose head came (`upstream_addr` with
/// `upstream_ms`): it had `upstream_ms` but `upstream_addr` null.
#[tokio::test]
async fn an_unrequested_switch_is_the_endpoints_failure() {
    let (w, mut p, addr, log) = serve_logged("").await;
    let admin = p.admin_addr().await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    s.write_all(b"GET /switch HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = String::from_utf8(read_to_close(&mut s).await).unwrap();
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    let m = metrics_text(admin).await;
    let counted = |code: &str| {
        m.lines().any(|l| {
            l.starts_with("hotproxy_upstream_requests_total{")
                && l.contains(&format!("code=\"{code}\""))
                && l.ends_with(" 1")
        })
    };
    assert!(counted("502"), "{m}");
    assert!(!counted("101"), "{m}");
    let lines = wait_line(&log, "the switch's line", |v| v["path"] == "/switch").await;
    let v = lines.iter().find(|v| v["path"] == "/switch").unwrap();
    assert_eq!(v["status"], 502, "{v}");
    assert_eq!(v["upstream"], "plain", "{v}");
    assert!(v["upstream_ms"].is_number(), "{v}");
    assert_eq!(
        v["upstream_addr"],
        format!("http://{}", w.backend.addr),
        "{v}"
    );
}

/// A tunnel with no byte either way for tunnel_idle_timeout is closed and
/// its slot released; one that keeps talking is not cut by idle_timeout.
#[tokio::test]
async fn idle_tunnel_is_closed_after_tunnel_idle_timeout() {
    let (w, mut p, addr) = serve("idle_timeout: 1s, tunnel_idle_timeout: 2s").await;
    let admin = p.admin_addr().await;
    let mut s = websocket(&w, addr).await;
    // Talking for longer than tunnel_idle_timeout, a little at a time
    // (pacing, not waiting for a condition): each byte resets the clock.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        echo(&mut s, format!("ping {i}").as_bytes()).await;
    }
    assert!(
        !p.logs().iter().any(|l| l.contains("tunnel_idle_timeout")),
        "a talking tunnel was closed for silence"
    );
    // Then silent: closed.
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
    p.wait_log("tunnel closed for silence", |v| {
        v["message"] == "tunnel closed" && v["reason"] == "tunnel_idle_timeout"
    })
    .await;
    wait_no_connections(admin).await;
}

/// The access-log lines at `log` once one matches `pred` (the writer
/// writes lines in the order they were submitted).
async fn wait_line(
    log: &std::path::Path,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    wait_until(WAIT, what, || async {
        read_access_log(log).iter().any(&pred)
    })
    .await;
    read_access_log(log)
}

/// The lines of the tunnel `websocket` opens (`GET /ws`).
fn tunnel_lines(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines.iter().filter(|v| v["path"] == "/ws").collect()
}

/// Serve `GET /after` on a connection of its own and wait for its line:
/// every line submitted before it is written by then.
async fn after(w: &World, addr: SocketAddr, log: &std::path::Path) -> Vec<serde_json::Value> {
    let reply = h1_exchange(
        w,
        addr,
        b"GET /after HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    wait_line(log, "the line of GET /after", |v| v["path"] == "/after").await
}

/// A tunnel's access-log line is written when the tunnel ends, as nginx
/// logs an upgraded connection: status 101, the bytes relayed each way
/// counted in `bytes_in` and `bytes_out`. It was written when the 101 was
/// sent, with `bytes_out` 0: how long a WebSocket lived and what it
/// carried never showed.
#[tokio::test]
async fn a_tunnel_is_logged_when_it_ends_with_the_bytes_it_carried() {
    let (w, _p, addr, log) = serve_logged("").await;
    // `websocket` echoes 5 bytes; then more each way.
    let mut s = websocket(&w, addr).await;
    let payload = vec![b'w'; 40_000];
    echo(&mut s, &payload).await;
    let relayed = 5 + payload.len();
    // Open (the echo came back): no line yet, though a later request's is
    // written.
    let lines = after(&w, addr, &log).await;
    assert!(
        tunnel_lines(&lines).is_empty(),
        "logged while the tunnel was open: {lines:?}"
    );
    // The client closes its side; the backend's echo ends, and so does
    // the tunnel, both ways.
    s.shutdown().await.unwrap();
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
    let lines = wait_line(&log, "the tunnel's line", |v| v["path"] == "/ws").await;
    let ws = tunnel_lines(&lines);
    assert_eq!(ws.len(), 1, "{lines:?}");
    let v = ws[0];
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["method"], "GET", "{v}");
    assert_eq!(v["upstream"], "plain", "{v}");
    assert_eq!(v["bytes_out"], relayed, "{v}");
    assert_eq!(v["bytes_in"], relayed, "{v}");
}

/// A tunnel closed for silence is logged once, when it closes: its bytes,
/// and a duration from the request to the close, which spans the silence.
#[tokio::test]
async fn a_tunnel_closed_by_tunnel_idle_timeout_is_logged_once() {
    let (w, mut p, addr, log) = serve_logged("tunnel_idle_timeout: 1s").await;
    let mut s = websocket(&w, addr).await;
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
    p.wait_log("tunnel closed for silence", |v| {
        v["message"] == "tunnel closed" && v["reason"] == "tunnel_idle_timeout"
    })
    .await;
    wait_line(&log, "the tunnel's line", |v| v["path"] == "/ws").await;
    let lines = after(&w, addr, &log).await;
    let ws = tunnel_lines(&lines);
    assert_eq!(ws.len(), 1, "{lines:?}");
    let v = ws[0];
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["bytes_out"], 5, "{v}");
    assert_eq!(v["bytes_in"], 5, "{v}");
    // Closed after a second without a byte.
    assert!(v["duration_ms"].as_f64().unwrap() >= 1000.0, "{v}");
}

/// A tunnel still open when `shutdown_grace` ends is cut with the rest,
/// and its line (with the bytes it carried) is written before the access
/// log closes, once.
#[tokio::test]
async fn a_tunnel_cut_at_shutdown_is_logged_once() {
    let w = world().await;
    let (cfg, log) = logged_config(&w, "");
    edit_config(&cfg, |text| {
        text.replace("shutdown_grace: 30s", "shutdown_grace: 1s")
    });
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let _s = websocket(&w, addr).await;
    p.signal("TERM");
    p.wait_log("the grace's end", |v| {
        v["message"] == "shutdown grace elapsed; closing remaining connections"
    })
    .await;
    assert!(p.wait_exit(WAIT).await.success());
    // Exited: what it wrote is all there is.
    let lines = read_access_log(&log);
    let ws = tunnel_lines(&lines);
    assert_eq!(ws.len(), 1, "{lines:?}");
    assert_eq!(ws[0]["status"], 101, "{lines:?}");
    assert_eq!(ws[0]["bytes_out"], 5, "{lines:?}");
}

/// A raw backend that answers a WebSocket upgrade's head with a `101` and
/// then hands the connection to `then`.
pub(super) async fn switching_backend<F, Fut>(then: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let then = std::sync::Arc::new(then);
    let (addr, _) = raw_backend(move |mut tcp| {
        let then = then.clone();
        async move {
            tcp.set_nodelay(true).unwrap();
            let mut buf = Vec::new();
            if read_raw_head(&mut tcp, &mut buf).await.is_none() {
                return;
            }
            let switched = b"HTTP/1.1 101 Switching Protocols\r\n\
                upgrade: websocket\r\nconnection: upgrade\r\n\
                sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
            if tcp.write_all(switched).await.is_ok() {
                then(tcp).await;
            }
        }
    })
    .await;
    addr
}

/// A proxy with the JSON access log in front of `backend` (instead of the
/// plain backend), `limits` on its listener and `upstream` appended to its
/// upstream's settings: the listener's address and the log's path.
pub(super) async fn serve_raw(
    w: &World,
    backend: SocketAddr,
    limits: &str,
    upstream: &str,
) -> (Proxy, SocketAddr, std::path::PathBuf) {
    let (cfg, log) = logged_config(w, limits);
    edit_config(&cfg, |text| {
        text.replace(
            &format!("servers: [http://{}]", w.backend.addr),
            &format!("servers: [http://{backend}]{upstream}"),
        )
    });
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    (p, addr, log)
}

/// Waits for the log's word that a tunnel was cut by `send_timeout`.
pub(super) async fn the_tunnel_cut_by_send_timeout(p: &mut Proxy) {
    p.wait_log("the tunnel cut", |v| {
        v["message"] == "tunnel closed"
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("send_timeout"))
    })
    .await;
}

/// The one access-log line of the tunnel, once written.
pub(super) async fn the_tunnels_line(log: &std::path::Path) -> serde_json::Value {
    let lines = wait_line(log, "the tunnel's line", |v| v["path"] == "/ws").await;
    let ws = tunnel_lines(&lines);
    assert_eq!(ws.len(), 1, "{lines:?}");
    assert_eq!(ws[0]["status"], 101, "{lines:?}");
    ws[0].clone()
}

/// A backend that closes its side of a tunnel ends the tunnel (nginx's
/// "upgraded done"): what it sent reaches the client, then the client's
/// connection is closed, the line written, and the upstream connection's
/// slot freed, though the client says nothing and keeps its side open.
/// The tunnel used to wait for the client to close too (up to
/// tunnel_idle_timeout, 1 h), the backend's socket in CLOSE_WAIT holding a
/// `max_connections_per_server` slot.
#[tokio::test]
async fn a_backend_closing_ends_the_tunnel_though_the_client_is_silent() {
    let w = world().await;
    let backend = switching_backend(|mut tcp| async move {
        let _ = tcp.write_all(b"bye!").await;
    })
    .await;
    let one_slot = "\n    max_connections_per_server: 1";
    let (_p, addr, log) = serve_raw(&w, backend, "", one_slot).await;
    let mut s = upgrade(&w, addr).await;
    // Read to the end, and neither write nor close.
    assert_eq!(read_to_close(&mut s).await, b"bye!");
    let v = the_tunnels_line(&log).await;
    assert_eq!(v["bytes_out"], 4, "{v}");
    assert_eq!(v["bytes_in"], 0, "{v}");
    // The one upstream connection allowed is free again.
    let mut again = upgrade(&w, addr).await;
    assert_eq!(read_to_close(&mut again).await, b"bye!");
    drop(s);
}

/// The mirror: a client that closes its side (TLS close_notify) ends the
/// tunnel though the backend, which sees the close, stays silent and
/// keeps its side open. The client's connection is closed and the line
/// written; the tunnel used to wait for the backend.
#[tokio::test]
async fn a_client_closing_ends_the_tunnel_though_the_backend_is_silent() {
    let w = world().await;
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = switching_backend(move |mut tcp| {
        let got_tx = got_tx.clone();
        async move {
            let mut got = Vec::new();
            while read_more(&mut tcp, &mut got).await {}
            let _ = got_tx.send(got);
            // Silent, with its side open.
            std::future::pending::<()>().await;
            drop(tcp);
        }
    })
    .await;
    let (_p, addr, log) = serve_raw(&w, backend, "", "").await;
    let mut s = upgrade(&w, addr).await;
    s.write_all(b"last words").await.unwrap();
    s.shutdown().await.unwrap();
    let got = within_deadline("the backend seeing the close", got_rx.recv()).await;
    assert_eq!(got.unwrap(), b"last words");
    let rest = read_to_close(&mut s).await;
    assert!(rest.is_empty(), "{rest:?}");
    let v = the_tunnels_line(&log).await;
    assert_eq!(v["bytes_in"], 10, "{v}");
    assert_eq!(v["bytes_out"], 0, "{v}");
}

/// A backend that stops reading a tunnel while it keeps sending (a ping
/// every 100 ms, so the tunnel is never idle) has the client's bytes it
/// does not take bounded by `send_timeout`, as nginx bounds upstream writes
/// in an upgraded connection with `proxy_send_timeout`: the tunnel ends.
/// It used to hold them, and the tunnel, for ever.
#[tokio::test]
async fn a_backend_that_stops_reading_a_tunnel_is_cut_at_send_timeout() {
    let w = world().await;
    let backend = switching_backend(|mut tcp| async move {
        let mut pings = tokio::time::interval(Duration::from_millis(100));
        loop {
            pings.tick().await;
            if tcp.write_all(b".").await.is_err() {
                return;
            }
        }
    })
    .await;
    let (mut p, addr, log) = serve_raw(&w, backend, "send_timeout: 1s", "").await;
    let (mut from, mut to) = tokio::io::split(upgrade(&w, addr).await);
    // The client writes until it is blocked, and takes every ping.
    let writer = tokio::spawn(async move {
        let chunk = vec![b'c'; 64 * 1024];
        while to.write_all(&chunk).await.is_ok() {}
    });
    let pings = read_to_close(&mut from).await;
    assert!(pings.iter().all(|&b| b == b'.'), "{pings:?}");
    writer.abort();
    the_tunnel_cut_by_send_timeout(&mut p).await;
    the_tunnels_line(&log).await;
}

/// WebSocket is tunnelled over HTTP/1.1 only: an HTTP/2 connection does
/// not offer RFC 8441's extended CONNECT (no
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL`), so a browser opens an HTTP/1.1
/// connection for its WebSocket, which an `alpn: [h2]` listener refuses
/// (SPEC §6, `Upgrade`).
#[tokio::test]
async fn websocket_is_not_offered_over_http2() {
    let (w, _p, addr) = serve("").await;
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    // Answered: the server's SETTINGS, sent first, are in.
    let resp = h2_request(&mut client, h2_get("/", "GET")).await;
    assert_eq!(resp.status(), 200);
    assert!(!client.is_extended_connect_protocol_enabled());
}

/// A reload that takes a client out of a route's `allow` closes the
/// WebSocket tunnel it opened under the old rules (SPEC §3, "Admission
/// changes close open connections"; §6, Upgrade): the tunnel never makes
/// another request, so the route's rules, checked once before its `101`,
/// were never checked again and bob kept talking as long as he liked. Its
/// access-log line is written as for any tunnel's end; alice, still
/// allowed, keeps hers.
#[tokio::test]
async fn a_reload_taking_a_client_out_of_a_routes_allow_closes_its_tunnel() {
    let w = world().await;
    let clients = TestCa::new("clients");
    write(&w.scene.path("clients-ca.crt"), &clients.cert_pem);
    let verify = ", client_auth: { mode: require_and_verify, ca: { ca_file: clients-ca.crt } }";
    let cfg = config(&w, verify, "");
    let log = w.scene.path("access.log");
    let route =
        |allow: &str| format!("routes: [{{ path_prefix: /ws, upstream: plain, allow: {allow} }}]");
    let both = route("[{ cn: alice }, { cn: bob }]");
    edit_config(&cfg, |text| {
        let text = text.replace("routes: [{ upstream: plain }]", &both);
        format!(
            "access_log: {{ path: {}, format: json }}\n{text}",
            log.display()
        )
    });
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let tunnel = |cn: &str| {
        let cfg = client_config(
            &w.ca.cert_pem,
            Some(&clients.client_pair(cn)),
            &[b"http/1.1"],
        );
        async move {
            let mut s = upgrade_on(connect(addr, "a.example.com", cfg).await.unwrap()).await;
            echo(&mut s, b"hello").await;
            s
        }
    };
    let mut alice = tunnel("alice").await;
    let mut bob = tunnel("bob").await;

    // bob taken out of the route's rules.
    edit_config(&cfg, |text| text.replace(&both, &route("[{ cn: alice }]")));
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    let rest = read_to_close(&mut bob).await;
    assert!(rest.is_empty(), "{rest:?}");
    p.wait_log("bob's tunnel closed", |v| {
        v["message"] == "tunnel closed" && v["reason"] == "admission_rules_changed"
    })
    .await;
    let v = the_tunnels_line(&log).await;
    assert_eq!(v["bytes_in"], 5, "{v}");
    assert_eq!(v["bytes_out"], 5, "{v}");
    // alice's tunnel was checked too, and kept: bytes still cross it.
    p.wait_log("alice's tunnel kept", |v| {
        v["message"] == "tunnel still allowed on its route under the changed routes; kept"
    })
    .await;
    echo(&mut alice, b"still here").await;
    let closed = |p: &Proxy| {
        p.logs()
            .iter()
            .filter(|l| l.contains("\"tunnel closed\""))
            .count()
    };
    assert_eq!(closed(&p), 1, "logged once, bob's only");

    // The route gone: alice's tunnel closes too.
    edit_config(&cfg, |text| {
        text.replace(
            &route("[{ cn: alice }]"),
            "routes: [{ path_prefix: /other, upstream: plain }]",
        )
    });
    p.signal("HUP");
    let rest = read_to_close(&mut alice).await;
    assert!(rest.is_empty(), "{rest:?}");
    wait_until(WAIT, "alice's tunnel closed", || async { closed(&p) == 2 }).await;
}

/// An upgrade request's body of declared length reaches the upstream
/// before the switch, as any request's does. (One of unknown length,
/// chunked, is refused before the upstream: `smuggling.rs`. hyper's client
/// frames a `GET` body of unknown length as none, so such a body once
/// reached the upstream as tunnel bytes.)
#[tokio::test]
async fn an_upgrade_requests_body_reaches_the_upstream() {
    let w = world().await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let (backend, _) = raw_backend(move |mut tcp| {
        let seen = seen_tx.clone();
        async move {
            let mut buf = Vec::new();
            let Some(end) = read_raw_head(&mut tcp, &mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            // The body is read to its end before the switch.
            if head.contains("content-length: 5") {
                while buf.len() < end + 5 {
                    if !read_more(&mut tcp, &mut buf).await {
                        return;
                    }
                }
            }
            let _ = seen.send(String::from_utf8_lossy(&buf).into_owned());
            let switched = b"HTTP/1.1 101 Switching Protocols\r\n\
                upgrade: websocket\r\nconnection: upgrade\r\n\
                sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
            if tcp.write_all(switched).await.is_ok() {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        }
    })
    .await;
    let (_p, addr, _log) = serve_raw(&w, backend, "", "").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\ncontent-length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    let got = within_deadline("the upgrade request at the backend", seen_rx.recv())
        .await
        .unwrap();
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .lines()
            .any(|l| l == "content-length: 5"),
        "{head}"
    );
    assert_eq!(body, "hello", "{got}");
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    echo(&mut s, b"ping").await;
}

/// Send an upgrade request declaring a body of 1 GiB; return the stream
/// once the answer's head is read, and the task writing the body until
/// the connection no longer takes it.
pub(super) async fn upgrade_with_endless_body(
    w: &World,
    addr: SocketAddr,
) -> (
    String,
    tokio::io::ReadHalf<Tls>,
    tokio::task::JoinHandle<()>,
) {
    let mut s = tls(w, addr, &[b"http/1.1"]).await;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\ncontent-length: 1073741824\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    let (from, mut to) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let chunk = vec![b'b'; 64 * 1024];
        while to.write_all(&chunk).await.is_ok() {}
    });
    (head, from, writer)
}

/// An upstream that switches before an upgrade request's body is through
/// (the switch waits for the body's end) and then takes no more of it has
/// the body cut once it has not moved for `body_read_timeout`, as an
/// HTTP/2 upstream that answered early has (SPEC §6): the client's
/// connection closes and the tunnel's line is written. Nothing bounded
/// that wait (the tunnel's own timeouts start at the switch, the
/// request's ended with the head): the connection stayed open for as long
/// as the upstream kept its side open.
#[tokio::test]
async fn a_switch_before_the_body_whose_upstream_stops_reading_it_is_cut() {
    let w = world().await;
    let backend = switching_backend(|tcp| async move {
        // Reads nothing more, and keeps its side open.
        std::future::pending::<()>().await;
        drop(tcp);
    })
    .await;
    let (_p, addr, log) = serve_raw(&w, backend, "body_read_timeout: 1s", "").await;
    let (head, mut from, writer) = upgrade_with_endless_body(&w, addr).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let rest = read_to_close(&mut from).await;
    assert!(rest.is_empty(), "{rest:?}");
    writer.abort();
    the_tunnels_line(&log).await;
}

/// The same without a switch: an upgrade request answered (a `403`)
/// before its body is through, by an upstream that then takes no more of
/// it, has the body cut and the client's connection closed after the
/// answer. Its connection, the upgrade's own, held the client's for as
/// long as the upstream kept it open, the client gone or not.
#[tokio::test]
async fn an_early_refusal_whose_upstream_stops_reading_the_body_is_cut() {
    let w = world().await;
    let (backend, _) = raw_backend(|mut tcp| async move {
        let mut buf = Vec::new();
        if read_raw_head(&mut tcp, &mut buf).await.is_none() {
            return;
        }
        let refused = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 7\r\n\r\ndenied\n";
        if tcp.write_all(refused).await.is_ok() {
            std::future::pending::<()>().await;
        }
    })
    .await;
    let (_p, addr, _log) = serve_raw(&w, backend, "body_read_timeout: 1s", "").await;
    let (head, mut from, writer) = upgrade_with_endless_body(&w, addr).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(read_to_close(&mut from).await, b"denied\n");
    writer.abort();
}
