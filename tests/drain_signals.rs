//! The shutdown drain on the real process: SIGHUP and SIGUSR1 still answered, and the
//! connections with no request yet closed at once, not waited for; SIGQUIT drains as
//! SIGTERM does, SIGUSR2 is ignored.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// While SIGTERM's drain runs (the default 30 s grace, kept going by a
/// request the backend never answers), logrotate's SIGUSR1 still reopens
/// the access log: the drained request's line goes to the new file, not
/// the rotated one. An operator's SIGHUP is still answered, its "SIGHUP:
/// done" line saying the configuration is ignored while shutting down,
/// and does not end the process. Both were swallowed once the drain
/// began: the drain's lines went to the rotated (or deleted) file, and
/// the SIGHUP had no line at all.
#[tokio::test]
async fn sighup_and_sigusr1_are_answered_during_the_drain() {
    let (s, ca, backend) = scene_with_backend("echo").await;
    let cfg = s.one_upstream_config("echo", backend.addr, &[]);
    let log = s.path("access.log");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains("shutdown_grace"), "the 30 s default applies");
    let logged = format!("access_log: {{ path: {}, format: json }}\n", log.display());
    write(&cfg, &(logged + &text));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    // A request the backend never answers keeps the drain going.
    let held = in_flight(&backend, addr, &ca.cert_pem, "/hang").await;
    p.signal("TERM");
    p.wait_log("shutdown began", |v| {
        v["message"] == "shutting down: no new connections, draining open ones"
    })
    .await;

    // logrotate: move the file, SIGUSR1.
    let rotated = s.path("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    p.signal("USR1");
    p.wait_log("the access log reopened during the drain", |v| {
        v["message"] == "access log reopened"
    })
    .await;

    // An operator's reload: answered, ignored, the process still runs.
    p.signal("HUP");
    let done = p
        .wait_log("SIGHUP answered during the drain", |v| {
            v["message"] == "SIGHUP: done"
        })
        .await;
    assert_eq!(done["config"], "ignored: shutting down", "{done}");
    assert!(!held.is_finished(), "the drain is over already");

    // A second SIGTERM ends the drain: the cut request's line (`499`) is
    // written into the reopened file.
    p.signal("TERM");
    assert!(p.wait_exit(WAIT).await.success());
    let lines = read_access_log(&log);
    let seen: Vec<_> = lines.iter().map(|l| (&l["path"], &l["status"])).collect();
    assert_eq!(seen, [(&"/hang".into(), &499.into())]);
    assert!(
        read_access_log(&rotated).is_empty(),
        "a line in the rotated file"
    );
    assert!(held.await.unwrap().is_err(), "the request was cut");
}

/// Listener `public` (HTTP/1.1 and HTTP/2) and `proxied` (a PROXY header
/// from 127.0.0.1 first), both with `header_read_timeout: 60s`, the admin
/// API, and a `shutdown_grace` of 20 s: longer than the exit waited for.
fn quiet_clients_config(s: &Scene) -> std::path::PathBuf {
    let limits = "\n    limits: { header_read_timeout: 60s }";
    let public = listener_yaml("public", "127.0.0.1:0", "[]") + limits;
    let proxied = listener_yaml("proxied", "127.0.0.1:0", "[]")
        + "\n    proxy_protocol: { from: [127.0.0.1/32] }"
        + limits;
    s.config(&format!(
        "runtime: {{ shutdown_grace: 20s }}\nadmin: {{ bind: \"127.0.0.1:0\" }}\nlisteners:\n{public}\n{proxied}\n"
    ))
}

/// SIGTERM closes at once every connection of an ordinary TLS listener on
/// which no request has come yet: one silent since its TCP handshake, one
/// part way into its ClientHello, one part way into its PROXY header, one
/// done with TLS (ALPN h2) that sent no preface, one done with TLS
/// (http/1.1) that sent half a head; the process exits well before the
/// 20 s grace, the drain not waiting. Only connections from the queue of
/// a removed listener were closed so: these held the drain until their
/// `header_read_timeout` (60 s), cut by the grace, and a request
/// completed meanwhile was served after SIGTERM.
#[tokio::test]
async fn shutdown_closes_the_clients_with_no_request_yet_at_once() {
    use tokio::io::AsyncWriteExt;

    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    let mut p = Proxy::start(&quiet_clients_config(&s));
    let public = p.listener_addr("public").await;
    let proxied = p.listener_addr("proxied").await;
    let admin = p.admin_addr().await;

    let silent = tokio::net::TcpStream::connect(public).await.unwrap();
    let mut hello = tokio::net::TcpStream::connect(public).await.unwrap();
    // A handshake record of 256 bytes, a ClientHello: its first byte only.
    hello
        .write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01])
        .await
        .unwrap();
    let mut header = tokio::net::TcpStream::connect(proxied).await.unwrap();
    header.write_all(b"PROXY TCP4 203.0.113.7 ").await.unwrap();
    let h2 = connect(
        public,
        "localhost",
        client_config(&ca.cert_pem, None, &[b"h2"]),
    )
    .await
    .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut head = connect(
        public,
        "localhost",
        client_config(&ca.cert_pem, None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    head.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    head.flush().await.unwrap();
    // Each accepted, the two TLS ones past their handshake on the proxy's side.
    let metrics = [
        "hotproxy_connections_active{listener=\"public\"} 4",
        "hotproxy_connections_active{listener=\"proxied\"} 1",
        "hotproxy_tls_handshakes_total{listener=\"public\",result=\"success\"} 2",
    ];
    for line in metrics {
        wait_metric(admin, line, WAIT).await;
    }

    p.signal("TERM");
    let clients = [
        read_until_closed("silent", silent),
        read_until_closed("part of a ClientHello", hello),
        read_until_closed("part of a PROXY header", header),
        read_until_closed("TLS done, no HTTP/2 preface", h2),
        read_until_closed("TLS done, half an HTTP/1.1 head", head),
    ];
    assert!(p.wait_exit(WAIT).await.success());
    for client in clients {
        let (what, got) = client.await.unwrap();
        if what.contains("HTTP/1.1") {
            assert!(
                got.is_empty(),
                "{what}: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    stopped_without_waiting(&mut p).await;
}

/// The TLS connections SIGTERM closes at once (no request yet: one
/// silent over HTTP/1.1, one half a head, one over HTTP/2 that sent no
/// preface; none reading or closing until then) are closed fully, not
/// lingered on: nothing was answered on them (the HTTP/2 one gets its
/// `GOAWAY` and every one its `close_notify` first), and a lingering close
/// held each one's `max_connections` slot and the drain, the process's
/// exit with it, for up to 5 s more. Seen from the client: after the end
/// of stream, bytes it writes are reset, where a lingering close read and
/// discarded them.
#[tokio::test]
async fn shutdown_does_not_linger_on_the_tls_clients_it_closes_at_once() {
    use tokio::io::AsyncWriteExt;

    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    let mut p = Proxy::start(&quiet_clients_config(&s));
    let public = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let tls = |alpn: &'static [u8]| {
        connect(
            public,
            "localhost",
            client_config(&ca.cert_pem, None, &[alpn]),
        )
    };
    let silent = tls(b"http/1.1").await.unwrap();
    let mut head = tls(b"http/1.1").await.unwrap();
    head.write_all(b"GET / HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    head.flush().await.unwrap();
    let h2 = tls(b"h2").await.unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let line = "hotproxy_tls_handshakes_total{listener=\"public\",result=\"success\"} 3";
    wait_metric(admin, line, WAIT).await;

    p.signal("TERM");
    let clients = [
        ("silent, HTTP/1.1", silent),
        ("half a head", head),
        ("HTTP/2, no preface", h2),
    ];
    for (what, mut client) in clients {
        let got = read_to_close(&mut client).await;
        if what.contains("HTTP/2") {
            // After the server's SETTINGS: no stream processed.
            assert_eq!(h2_goaway(&got), Some((0, 0)), "{what}: {got:?}");
        } else {
            assert!(
                got.is_empty(),
                "{what}: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
        assert!(
            closed_fully(client.get_ref().0, WAIT).await,
            "{what}: lingered on"
        );
    }
    assert!(p.wait_exit(WAIT).await.success());
    stopped_without_waiting(&mut p).await;
}

/// Upstream `echo` (the backend at `backend`) behind listener `public`
/// (HTTP/1.1 and HTTP/2, `header_read_timeout: 60s`) for `/slow` alone
/// (anything else is `404`, answered by the proxy), the admin API, and a
/// `shutdown_grace` of 20 s: longer than the exit waited for.
fn kept_alive_config(s: &Scene, backend: std::net::SocketAddr) -> std::path::PathBuf {
    let routes = "[{ path_prefix: /slow, upstream: echo }]";
    let public = listener_yaml("public", "127.0.0.1:0", routes)
        + "\n    limits: { header_read_timeout: 60s }";
    s.config(&format!(
        "runtime: {{ shutdown_grace: 20s }}\nadmin: {{ bind: \"127.0.0.1:0\" }}\nlisteners:\n{public}\n\
         upstreams:\n  - name: echo\n    servers: [https://{backend}]\n    \
         tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}\n"
    ))
}

/// The proxy running [`kept_alive_config`]: its scene, its edge CA, its
/// backend, the proxy, and its listener's and admin API's addresses.
async fn kept_alive() -> (
    Scene,
    TestCa,
    Backend,
    Proxy,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let (s, ca, backend) = scene_with_backend("echo").await;
    let mut p = Proxy::start(&kept_alive_config(&s, backend.addr));
    let public = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    (s, ca, backend, p, public, admin)
}

/// `GET path` over HTTP/1.1 to `addr` (trusting `ca_pem`), spawned, once
/// `backend` holds it: a request in flight.
async fn in_flight(
    backend: &Backend,
    addr: std::net::SocketAddr,
    ca_pem: &str,
    path: &'static str,
) -> tokio::task::JoinHandle<std::io::Result<Reply>> {
    let client = client_config(ca_pem, None, &[b"http/1.1"]);
    let request =
        tokio::spawn(async move { get(addr, "localhost", client, false, path, &[]).await });
    wait_until(WAIT, "the request is at the backend", || async {
        backend.slow_in_flight.load(SeqCst) == 1
    })
    .await;
    request
}

/// Everything `s` receives until the proxy closes it, read by a task of
/// its own, with `what` it is for messages.
fn read_until_closed(
    what: &'static str,
    mut s: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<(&'static str, Vec<u8>)> {
    tokio::spawn(async move {
        let got = read_to_close(&mut s).await;
        (what, got)
    })
}

/// The proxy's logs once it has stopped (its last line read), asserting
/// the drain did not wait out its grace.
async fn stopped_without_waiting(p: &mut Proxy) -> Vec<String> {
    p.wait_log("stopped", |v| v["message"] == "stopped").await;
    let logs = p.logs();
    assert!(
        !logs.iter().any(|l| l.contains("shutdown grace elapsed")),
        "the drain waited for the clients with no request: {logs:#?}"
    );
    logs
}

/// One HTTP/1.1 response read from `s`: its head and a body of the
/// `content-length` it declares.
async fn read_h1_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + length {
                return String::from_utf8_lossy(&got).into_owned();
            }
        }
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed within a response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

/// An HTTP/2 frame's bytes: its 9-byte header, then `payload`.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `GET /` for `localhost`, HPACK-coded from the static table alone.
const GET_SLASH_BLOCK: &[u8] = b"\x82\x87\x84\x01\x09localhost";

/// Reads HTTP/2 frames from `s` until one on `stream` ends it (END_STREAM).
async fn h2_read_until_end_of<S: tokio::io::AsyncRead + Unpin>(s: &mut S, stream: u32) {
    use tokio::io::AsyncReadExt;
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        let on = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        // HEADERS or DATA with END_STREAM.
        if on == stream && matches!(head[3], 0 | 1) && head[4] & 1 == 1 {
            return;
        }
    }
}

/// SIGTERM closes at once a kept-alive connection whose next request has
/// not come, as it does one whose first has not (SPEC §1 `run`): an
/// HTTP/2 one answered once that began its next HEADERS frame and left
/// its CONTINUATION pending, an HTTP/1.1 one answered once that sent half
/// its next head, and an HTTP/2 one idle between streams. A request in
/// flight still gets its answer; the process exits well before the 20 s
/// grace. The one part way into a header block held the drain past the
/// grace: hyper's graceful close waits for the client to answer the
/// GOAWAY's PING, which it may not until its block has ended; closed at
/// once, it is sent a GOAWAY naming stream 1 its last processed. (hyper
/// closes the other two at once itself, guards here: an HTTP/1.1
/// connection between requests is idle to it, half a head or not, and
/// h2's client answers the PING.)
#[tokio::test]
async fn shutdown_closes_kept_alive_clients_whose_next_request_has_not_come_at_once() {
    use tokio::io::AsyncWriteExt;

    let (_scene, ca, backend, mut p, public, admin) = kept_alive().await;
    let h1 = |protocol: &'static [u8]| client_config(&ca.cert_pem, None, &[protocol]);

    // HTTP/1.1: answered once, then half of the next head.
    let mut head = connect(public, "localhost", h1(b"http/1.1")).await.unwrap();
    head.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = read_h1_response(&mut head).await;
    assert!(first.starts_with("HTTP/1.1 404"), "{first}");
    head.write_all(b"GET / HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    head.flush().await.unwrap();

    // HTTP/2 by hand: stream 1 answered, stream 3's HEADERS begun.
    let mut continued = connect(public, "localhost", h1(b"h2")).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(4, 0, 0, &[]));
    // END_STREAM | END_HEADERS
    hello.extend(h2_frame(1, 0x5, 1, GET_SLASH_BLOCK));
    continued.write_all(&hello).await.unwrap();
    continued.flush().await.unwrap();
    h2_read_until_end_of(&mut continued, 1).await;
    // END_STREAM alone: a CONTINUATION frame is to follow.
    let begun = h2_frame(1, 0x1, 3, &GET_SLASH_BLOCK[..2]);
    continued.write_all(&begun).await.unwrap();
    continued.flush().await.unwrap();

    // HTTP/2 by the h2 crate, idle after its one stream.
    let tls = connect(public, "localhost", h1(b"h2")).await.unwrap();
    let (mut idle, conn) = h2::client::handshake(tls).await.unwrap();
    let h2_get = http::Request::get("https://localhost/").body(()).unwrap();
    let idle_conn = tokio::spawn(conn);
    let (resp, _) = idle.send_request(h2_get, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 404);

    // A request in flight (the backend answers `/slow` after 2 s).
    let slow = in_flight(&backend, public, &ca.cert_pem, "/slow").await;
    wait_metric(
        admin,
        "hotproxy_connections_active{listener=\"public\"} 4",
        WAIT,
    )
    .await;

    p.signal("TERM");
    let head = read_until_closed("half of a second HTTP/1.1 head", head);
    let continued = read_until_closed("HEADERS waiting for its CONTINUATION", continued);
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "the request in flight was cut: {}", r.body);
    assert!(p.wait_exit(WAIT).await.success());
    let (what, got) = head.await.unwrap();
    assert!(
        got.is_empty(),
        "{what}: {:?}",
        String::from_utf8_lossy(&got)
    );
    // A GOAWAY before the close, naming stream 1 (answered) the last
    // processed: stream 3 was not, the client may send it again.
    let (what, got) = continued.await.unwrap();
    assert_eq!(h2_goaway(&got), Some((1, 0)), "{what}: {got:?}");
    within_deadline("the idle HTTP/2 connection closed", idle_conn)
        .await
        .unwrap()
        .ok();
    stopped_without_waiting(&mut p).await;
}

/// SIGTERM and the admin listener's connections whose request has not
/// come (SPEC §1): one silent and one part way into its first head are
/// left to be answered one request, their last (tests/admin/shutdown.rs
/// completes one), and do not hold the process's exit: it comes as the
/// request in flight ends, without waiting for its grace, and closes them
/// unanswered. One answered once that sent half its next head is closed
/// at once, as a listener's. The request in flight still gets its answer.
#[tokio::test]
async fn the_admin_clients_whose_request_has_not_come_do_not_hold_the_exit() {
    use tokio::io::AsyncWriteExt;

    let (_scene, ca, backend, mut p, public, admin) = kept_alive().await;

    let silent = tokio::net::TcpStream::connect(admin).await.unwrap();
    let silent_peer = silent.local_addr().unwrap().to_string();
    let mut half = tokio::net::TcpStream::connect(admin).await.unwrap();
    let half_peer = half.local_addr().unwrap().to_string();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut kept = tokio::net::TcpStream::connect(admin).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = read_h1_response(&mut kept).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();

    // A request in flight (the backend answers `/slow` after 2 s).
    let slow = in_flight(&backend, public, &ca.cert_pem, "/slow").await;

    p.signal("TERM");
    let clients = [
        read_until_closed("silent", silent),
        read_until_closed("half a first head", half),
        read_until_closed("half a second head", kept),
    ];
    for client in clients {
        let (what, got) = client.await.unwrap();
        assert!(
            got.is_empty(),
            "{what}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "the request in flight was cut: {}", r.body);
    assert!(p.wait_exit(WAIT).await.success());
    let logs = stopped_without_waiting(&mut p).await;
    for peer in [silent_peer, half_peer] {
        assert!(
            logs.iter()
                .any(|l| l.contains("its first request is answered, its last")
                    && l.contains("\"listener\":\"admin\"")
                    && l.contains(&format!("\"peer\":\"{peer}\""))),
            "the admin client {peer} was not left its request at shutdown: {logs:#?}"
        );
    }
}

/// SIGQUIT drains as SIGTERM does (nginx's graceful shutdown, which
/// systemd units written for nginx send as `KillSignal=SIGQUIT`): a
/// request in flight at the signal, held at the backend until the test
/// lets it go after the shutdown has begun, is answered `200` with its
/// access-log line, and the process exits 0. SIGQUIT had no handler: its
/// default action killed the process with a core dump, the request cut
/// with no line.
#[tokio::test]
async fn sigquit_drains_as_sigterm_does() {
    let (s, ca, backend) = scene_with_backend("echo").await;
    let cfg = s.one_upstream_config("echo", backend.addr, &[]);
    let log = s.path("access.log");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let logged = format!("access_log: {{ path: {}, format: json }}\n", log.display());
    write(&cfg, &(logged + &text));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    // Held at the backend until a second `/burst/2` comes (the test's own).
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let held =
        tokio::spawn(async move { get(addr, "localhost", client, false, "/burst/2", &[]).await });
    wait_until(WAIT, "the request is at the backend", || async {
        backend.requests_for("/burst/2") == 1
    })
    .await;
    p.signal("QUIT");
    p.wait_log("shutdown began", |v| {
        v["message"] == "shutting down: no new connections, draining open ones"
    })
    .await;
    assert!(!held.is_finished(), "the request ended before its release");

    // Straight to the backend: the burst gathers, the held request is answered.
    let backend_ca = std::fs::read_to_string(s.path("backend-ca.crt")).unwrap();
    let direct = client_config(&backend_ca, None, &[b"http/1.1"]);
    let release = get(
        backend.addr,
        "backend.local",
        direct,
        false,
        "/burst/2",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(release.status, 200, "{}", release.body);
    let r = held.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "the request in flight was cut: {}", r.body);
    assert!(p.wait_exit(WAIT).await.success());
    let lines = read_access_log(&log);
    let seen: Vec<_> = lines.iter().map(|l| (&l["path"], &l["status"])).collect();
    assert_eq!(seen, [(&"/burst/2".into(), &200.into())]);
}

/// SIGUSR2 (nginx's binary upgrade, which hotproxy does not do) is logged
/// at warn and ignored: the process keeps serving. Its default action
/// killed the process.
#[tokio::test]
async fn sigusr2_is_logged_and_ignored() {
    let (s, ca, backend) = scene_with_backend("echo").await;
    let mut p = Proxy::start(&s.one_upstream_config("echo", backend.addr, &[]));
    let addr = p.listener_addr("public").await;
    p.signal("USR2");
    let told = p
        .wait_log("the SIGUSR2 warning", |v| {
            v["message"] == "SIGUSR2: not used by hotproxy; ignored"
        })
        .await;
    assert_eq!(told["level"], "WARN", "{told}");
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let r = get(addr, "localhost", client, false, "/", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Requests still in flight when `shutdown_grace` ends, on a multi-worker
/// runtime, over HTTP/1.1 and HTTP/2 from clients and to upstreams: each
/// client sees its connection closed with no status at all, and each
/// request has its one `499` line (SPEC §access log: abandoned before the
/// response head; nginx's `worker_shutdown_timeout` and Envoy's drain end
/// send no 5xx either). One worker dropping an upstream connection's task
/// while another still polled a request left that request's forward with
/// "dispatch task is gone": its `502` was written to the client before its
/// own task went, while its line said `499`; once that was withheld, the
/// line named no endpoint (`upstream_addr` null) though one was tried.
#[tokio::test]
async fn requests_cut_when_shutdown_grace_ends_are_sent_no_status() {
    const EACH: usize = 32;
    let s = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    s.pair("a", &ca.server_pair(&["localhost"]));
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let pair = backend_ca.server_pair(&["backend.local"]);
    let h2 = Backend::start("h2", &pair, None).await;
    let h1 = Backend::start_h1("h1", &pair, None).await;
    let tls = "tls: { ca: { ca_file: backend-ca.crt }, server_name: backend.local }";
    let cfg = s.public_config(
        "[{ path_prefix: /one, upstream: h1 }, { upstream: h2 }]",
        &format!(
            "\n  - {{ name: h1, servers: [https://{}], {tls} }}\n  - {{ name: h2, servers: [https://{}], {tls} }}",
            h1.addr, h2.addr
        ),
    );
    let log = s.path("access.log");
    let access_log = format!("access_log: {{ path: {}, format: json }}\n", log.display());
    cut_in_a_second(&cfg, &access_log);
    // Every request is held: none answered.
    for b in [&h1, &h2] {
        b.hang_all.store(true, SeqCst);
    }
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    // Each client on a connection of its own; half of them HTTP/2.
    let mut held = Vec::new();
    for n in 0..2 * EACH {
        let (h2_client, path) = [(false, "/one"), (true, "/one"), (false, "/"), (true, "/")][n % 4];
        let alpn: &[&[u8]] = if h2_client { &[b"h2"] } else { &[b"http/1.1"] };
        let client = client_config(&ca.cert_pem, None, alpn);
        held.push(tokio::spawn(async move {
            get(addr, "localhost", client, h2_client, path, &[]).await
        }));
    }
    wait_until(WAIT, "every request is at a backend", || async {
        h1.slow_in_flight.load(SeqCst) + h2.slow_in_flight.load(SeqCst) == 2 * EACH
    })
    .await;
    p.signal("TERM");
    assert!(p.wait_exit(WAIT).await.success());

    let mut seen = Vec::new();
    for r in held {
        if let Ok(reply) = r.await.unwrap() {
            seen.push((reply.status, reply.body));
        }
    }
    assert!(seen.is_empty(), "a client was sent a status: {seen:?}");
    let lines = read_access_log(&log);
    let statuses: Vec<_> = lines.iter().map(|l| &l["status"]).collect();
    assert_eq!(
        statuses,
        vec![&serde_json::json!(499); 2 * EACH],
        "{lines:?}"
    );
    // Each was at its backend: its line names the endpoint (SPEC §2: null
    // only when no attempt had begun), also when its forwarding had ended
    // in the cut's failure before its task was dropped.
    let unnamed: Vec<_> = lines
        .iter()
        .filter(|l| l["upstream_addr"].is_null())
        .collect();
    assert!(
        unnamed.is_empty(),
        "a cut request's line names no endpoint: {unnamed:#?}"
    );
}

/// A request cut when `shutdown_grace` ends is not sent again, to another
/// endpoint nor on a new connection: the runtime is dropping its task. The
/// requests whose HTTP/2 upstream connection's task a worker dropped first
/// failed with "dispatch task is gone", were retried on the other endpoint
/// ("retrying on another endpoint"), and dialled it as the process exited;
/// they were also each counted as their endpoint's failure ("upstream
/// request failed", `hotproxy_upstream_errors_total`) and ejected it.
#[tokio::test]
async fn requests_cut_when_shutdown_grace_ends_are_not_sent_again() {
    const N: usize = 64;
    let s = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    s.pair("a", &ca.server_pair(&["localhost"]));
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let pair = backend_ca.server_pair(&["backend.local"]);
    let (a, b) = (
        Backend::start("a", &pair, None).await,
        Backend::start("b", &pair, None).await,
    );
    // Retries the budget never refuses, so that a cut one would be sent.
    let retries = "retries: { attempts: 2, budget_percent: 100, min_retry_concurrency: 64 }";
    let tls = "tls: { ca: { ca_file: backend-ca.crt }, server_name: backend.local }";
    let cfg = s.public_config(
        "[{ upstream: two }]",
        &format!(
            "\n  - {{ name: two, servers: [https://{}, https://{}], {retries}, {tls} }}",
            a.addr, b.addr
        ),
    );
    cut_in_a_second(&cfg, "");
    // Every request held; four streams an HTTP/2 connection: several of them.
    for x in [&a, &b] {
        x.hang_all.store(true, SeqCst);
        x.h2_max_streams.store(4, SeqCst);
    }
    let mut p = Proxy::start_logging(&cfg, "debug", &[]);
    let addr = p.listener_addr("public").await;
    let mut held = Vec::new();
    for n in 0..N {
        let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
        let path = format!("/r{n}");
        held.push(tokio::spawn(async move {
            get(addr, "localhost", client, false, &path, &[]).await
        }));
    }
    let at_backends = || a.slow_in_flight.load(SeqCst) + b.slow_in_flight.load(SeqCst);
    wait_until(WAIT, "every request is at a backend", || async {
        at_backends() == N
    })
    .await;
    let dials = || a.accepted.load(SeqCst) + b.accepted.load(SeqCst);
    let before = dials();
    p.signal("TERM");
    assert!(p.wait_exit(WAIT).await.success());
    for r in held {
        assert!(r.await.unwrap().is_err(), "a client was sent a status");
    }
    wait_until(WAIT, "the backends' connections closed", || async {
        a.open.load(SeqCst) + b.open.load(SeqCst) == 0
    })
    .await;
    let again: Vec<_> = (0..N)
        .map(|n| format!("/r{n}"))
        .filter(|p| a.requests_for(p) + b.requests_for(p) != 1)
        .collect();
    assert!(again.is_empty(), "sent more than once: {again:?}");
    let said = logged_with(&p, &["retrying"]);
    assert!(said.is_empty(), "a cut request was sent again: {said:#?}");
    // Nor is its cut an endpoint's failure: its 499 line is the record.
    let blamed = logged_with(&p, &["upstream request failed", "ejected"]);
    assert!(
        blamed.is_empty(),
        "a cut request blamed its endpoint: {blamed:#?}"
    );
    assert_eq!(
        dials(),
        before,
        "a backend was dialled as the process exited"
    );
}
