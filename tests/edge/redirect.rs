//! The HTTPS redirect listener: its 308s, its header limit, its removal (its queue answered), and the response headers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;
use crate::support::*;

/// One raw HTTP/1.x request to the redirect listener: the response head.
async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("the redirect listener closes after one answer")
        .unwrap();
    String::from_utf8_lossy(&out).into()
}

/// The redirect listener answers only 308 to https (host without its
/// port, path and query kept), 400 without a valid Host; the response
/// headers are set on proxied and on hotproxy's own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_https_and_response_headers() {
    let w = world().await;

    let r = raw_http(
        w.http,
        "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: Example.com:8080\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    let lower = r.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nlocation: https://example.com:8443/a/b?x=1&y=%20\r\n"),
        "{r}"
    );
    assert!(lower.contains("\r\nx-frame-options: deny\r\n"), "{r}");

    let r = raw_http(
        w.http,
        "POST /form HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("location: https://[::1]:8443/form\r\n"),
        "{r}"
    );

    for bad in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a@evil.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    ] {
        let r = raw_http(w.http, bad).await;
        assert!(
            r.starts_with("HTTP/1.1 400") || r.starts_with("HTTP/1.0 400"),
            "{bad:?}: {r}"
        );
        assert!(!r.to_ascii_lowercase().contains("location:"), "{r}");
    }
    // A head hyper refuses itself (a header line without a colon) is
    // answered and counted like the 400s above.
    let r = raw_http(
        w.http,
        "GET / HTTP/1.1\r\nHost: a.example\r\nno colon\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let counted = "hotproxy_http_requests_total{listener=\"http\",upstream=\"\",code=\"400\"} 5";
    wait_metric(w.admin, counted, Duration::from_secs(10)).await;
    // TLS sent to the plain-HTTP listener gets nothing it could follow.
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    assert!(connect(w.http, "localhost", cfg).await.is_err());

    let tcp = tcp_from("127.0.0.1", w.public).await;
    let (status, headers, _) = get_over(tcp, &w, "/api", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    assert_eq!(headers["x-frame-options"], "DENY");
    let tcp = tcp_from("127.0.0.1", w.public).await;
    let (status, headers, _) = get_over(tcp, &w, "/no-route", &[]).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");

    let ready = admin(w.admin, "GET", "/readyz", None, None, &[]).await;
    assert_eq!(
        ready.status, 200,
        "a redirect listener is ready without certificates"
    );
    // `check` agrees with `run`: no certificate is needed there either.
    let config = w.scene.path("config.yaml");
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    drop(w.scene);
}

/// Every request with a valid `Host` gets its `308`, whatever its path or
/// framing: only the `Host` is checked, as nginx's `return 308
/// https://$host$request_uri` does. An encoded `/`, a `\`, a dot segment
/// with parameters, or `Transfer-Encoding: gzip, chunked` (refused on a
/// TLS listener before routing) used to get `400`. The target goes into
/// `Location` as sent, after the host; one with no path to redirect to
/// (`*`, `host:port`) gets `400`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_checks_only_the_host() {
    let w = world().await;
    for (request, location) in [
        (
            "GET /api/projects/group%2Fproject HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "https://a.example:8443/api/projects/group%2Fproject",
        ),
        (
            "GET /a\\b HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "https://a.example:8443/a\\b",
        ),
        (
            "GET /x/..;/y?z=%2e%2e HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "https://a.example:8443/x/..;/y?z=%2e%2e",
        ),
        (
            "GET //x/../y HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "https://a.example:8443//x/../y",
        ),
        (
            "POST /form HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "https://a.example:8443/form",
        ),
        (
            "GET http://a.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "https://a.example:8443/?q",
        ),
    ] {
        let r = raw_http(w.http, request).await;
        assert!(r.starts_with("HTTP/1.1 308"), "{request:?}: {r}");
        assert!(
            r.contains(&format!("\r\nlocation: {location}\r\n")),
            "{request:?}: {r}"
        );
    }
    for bad in [
        "OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n",
        "GET a.example:80 HTTP/1.1\r\nHost: a.example:80\r\n\r\n",
    ] {
        let r = raw_http(w.http, bad).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{bad:?}: {r}");
        assert!(!r.to_ascii_lowercase().contains("location:"), "{r}");
    }
}

/// The redirect listener holds `limits.max_header_bytes` as the TLS
/// listeners' HTTP/1.1 does: a head over it gets `431`, counted; one under
/// it its `308`. Below hyper's 8 KiB read buffer the limit was not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_holds_max_header_bytes() {
    let w = world().await;
    let head = |pad: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: example.com\r\nx-pad: {}\r\n\r\n",
            "p".repeat(pad)
        )
    };
    let r = raw_http(w.http, &head(1500)).await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    let r = raw_http(w.http, &head(4000)).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let counted = "hotproxy_http_requests_total{listener=\"http\",upstream=\"\",code=\"431\"} 1";
    wait_metric(w.admin, counted, Duration::from_secs(10)).await;
}

/// A reload that removes the redirect listener closes it as it closes a
/// TLS listener: its port refuses, and the connections it holds (one that
/// sent nothing yet, one whose head has begun) are closed at once. They
/// used to stay open until their `header_read_timeout`, to be answered
/// with the removed listener's settings, and held the shutdown drain as
/// long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_redirect_listener_closes_its_connections() {
    // Longer than read_to_close waits: only the removal can close it.
    let http = "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: { port: 8443 }\n    limits: { header_read_timeout: 300s }\n";
    let mut run = Redirecting::start(&with_http(http)).await;
    let (addr, admin) = (run.addr, run.admin);
    // One that has sent nothing yet, one half a head.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut begun = TcpStream::connect(addr).await.unwrap();
    begun.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // Accepted by the listener, not waiting in the kernel's queue.
    let gauge = "hotproxy_connections_active{listener=\"http\"} 2";
    wait_metric(admin, gauge, WAIT).await;
    run.remove(&with_http("")).await;
    for held in [&mut idle, &mut begun] {
        assert_closed_unanswered(held).await;
    }
    wait_until(WAIT, "the removed listener's port refuses", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    drop(run);
}

/// The connections a reload closes at once as it removes the redirect
/// listener (one silent, one half a head, neither reading nor closing)
/// are closed fully, not lingered on: nothing was answered on them, so
/// no reset can hide an answer, and a lingering close held each one's
/// `max_connections` slot and the drain for up to 5 s more. Seen from the
/// client: after the end of stream, bytes it writes are reset, where a
/// lingering close read and discarded them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_redirect_listener_does_not_linger_on_the_connections_it_closes_at_once() {
    let http = "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: { port: 8443 }\n    limits: { header_read_timeout: 300s }\n";
    let mut run = Redirecting::start(&with_http(http)).await;
    let (addr, admin) = (run.addr, run.admin);
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut begun = TcpStream::connect(addr).await.unwrap();
    begun
        .write_all(b"GET / HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let gauge = "hotproxy_connections_active{listener=\"http\"} 2";
    wait_metric(admin, gauge, WAIT).await;
    run.remove(&with_http("")).await;
    for (what, held) in [("silent", &mut idle), ("half a head", &mut begun)] {
        assert_closed_unanswered(held).await;
        assert!(closed_fully(held, WAIT).await, "{what}: lingered on");
    }
    drop(run);
}

/// A redirect listener's connection cut at its `header_read_timeout`
/// (one silent, one half a head, neither closing) was answered nothing,
/// so it is closed fully, not lingered on: the lingering close (FIN, then
/// reading what comes for up to 5 s) held its `max_connections` slot 5 s
/// past the timeout, a slowloris each slot half as long again. Seen from
/// the client: after the end of stream, bytes it writes are reset, where
/// a lingering close read and discarded them; the next client in the
/// one slot is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_connection_cut_at_header_read_timeout_does_not_linger() {
    let http = "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: { port: 8443 }\n    limits: { header_read_timeout: 1s, max_connections: 1 }\n";
    let run = Redirecting::start(&with_http(http)).await;
    let addr = run.addr;
    for (what, sent) in [("silent", &b""[..]), ("half a head", b"GET / HTTP/1.1\r\n")] {
        let mut held = TcpStream::connect(addr).await.unwrap();
        held.write_all(sent).await.unwrap();
        assert_closed_unanswered(&mut held).await;
        assert!(closed_fully(&held, WAIT).await, "{what}: lingered on");
        // Its slot is free: the next client is served.
        let r = raw_http(addr, "GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 308"), "{what}, then: {r}");
    }
    drop(run);
}

/// A redirect listener's connection accepted before a reload removes
/// the listener, part way into its PROXY header then, is closed once
/// the header's end comes, its late request unanswered (SPEC §3: one
/// accepted before the reload with no request yet closes at once). The
/// removal was read after the PROXY header: it took such a connection
/// for one the removed listener took from its queue, to be answered,
/// and held it for its `header_read_timeout`. So is one whose request
/// comes in the same segment as its header's end: the exchange, polling
/// the connection before `closing`, read that request and answered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_redirect_listener_closes_one_accepted_before_it_with_its_proxy_header_late() {
    // Longer than read_to_close waits: only the removal can close it.
    let http = "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: { port: 8443 }\n    proxy_protocol: { from: [127.0.0.1/32] }\n    limits: { header_read_timeout: 300s }\n";
    let mut run = Redirecting::start(&with_http(http)).await;
    let (addr, admin) = (run.addr, run.admin);
    let mut late = TcpStream::connect(addr).await.unwrap();
    late.write_all(b"PROXY TCP4 203.0.113.7 ").await.unwrap();
    let mut asking = TcpStream::connect(addr).await.unwrap();
    asking.write_all(b"PROXY TCP4 203.0.113.8 ").await.unwrap();
    let gauge = "hotproxy_connections_active{listener=\"http\"} 2";
    wait_metric(admin, gauge, WAIT).await;
    run.remove(&with_http("")).await;
    late.write_all(b"127.0.0.1 40000 80\r\n").await.unwrap();
    assert_closed_unanswered(&mut late).await;
    // One write: the header's end and the request, one segment.
    asking
        .write_all(b"127.0.0.1 40001 80\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_closed_unanswered(&mut asking).await;
    drop(run);
}

/// A proxy run from a config with the redirect listener `http`: the
/// scene its files are in, the process, `http`'s and the admin address.
struct Redirecting {
    scene: Scene,
    p: Proxy,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Redirecting {
    /// Starts the proxy on `config` (its `public` listener's pair written).
    async fn start(config: &str) -> Redirecting {
        let scene = Scene::new();
        let ca = TestCa::new("edge CA");
        scene.pair("a", &ca.server_pair(&["localhost"]));
        let mut p = Proxy::start(&scene.config(config));
        let addr = p.listener_addr("http").await;
        let admin = p.admin_addr().await;
        Redirecting {
            scene,
            p,
            addr,
            admin,
        }
    }

    /// Writes `config`, one without `http`, and waits for the reload to
    /// remove the listener.
    async fn remove(&mut self, config: &str) {
        self.scene.config(config);
        self.p
            .wait_log("removed", |v| {
                v["message"] == "listener removed" && v["listener"] == "http"
            })
            .await;
    }
}

/// The connection is closed with nothing sent on it: no answer.
async fn assert_closed_unanswered(tcp: &mut TcpStream) {
    let got = read_to_close(tcp).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

/// Listener `public` and the lines of `http` (a redirect listener, or none).
fn with_http(http: &str) -> String {
    format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 500ms }}
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
    routes: [{{ upstream: app }}]
{http}upstreams:
  - name: app
    servers: [http://127.0.0.1:9]
"#
    )
}

/// Clients waiting in a redirect listener's accept queue (one connection
/// at a time, one held) when a reload removes it, each with its request
/// sent, get their `308` and a clean close. Closed with them queued, its
/// socket had them reset; accepted once the listener was closing, each
/// was closed at once, as often as not before its request was read,
/// which the kernel answers with a reset too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_redirect_listener_answers_the_clients_in_its_queue() {
    const QUEUED: usize = 6;
    let http = "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: { port: 8443 }\n    limits: { header_read_timeout: 300s, max_connections: 1 }\n";
    let mut run = Redirecting::start(&with_http(http)).await;
    let (addr, admin) = (run.addr, run.admin);
    let mut held = TcpStream::connect(addr).await.unwrap();
    let gauge = "hotproxy_connections_active{listener=\"http\"} 1";
    wait_metric(admin, gauge, WAIT).await;
    let mut queued = Vec::new();
    for i in 0..QUEUED {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /q{i} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        queued.push(tcp);
    }
    wait_until(WAIT, "the clients queued on http", || async {
        accept_queue(addr) == QUEUED
    })
    .await;
    run.remove(&with_http("")).await;
    assert_closed_unanswered(&mut held).await;
    for (i, mut tcp) in queued.into_iter().enumerate() {
        let mut out = Vec::new();
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
            .await
            .unwrap_or_else(|_| panic!("client {i}: not closed"))
            .unwrap_or_else(|e| panic!("client {i}, queued as the reload applied: {e}"));
        let head = String::from_utf8_lossy(&out);
        assert!(
            head.starts_with("HTTP/1.1 308") && head.contains(&format!("/q{i}\r\n")),
            "client {i}: {head}"
        );
    }
    drop(run);
}

/// A `POST` whose body the redirect listener never reads still gets its
/// `308` (the answer that tells the client to send it again over https):
/// the listener closes its side, then reads and discards what the client
/// still sends (bounded, as on the TLS listeners), so a client that goes
/// on uploading until it sees the answer reads the `308` and the end of
/// the stream. It used to drop the socket with the body unread: the
/// kernel's reset made the client's next write fail ("connection reset",
/// "broken pipe") before it had seen the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_of_an_unread_upload_is_not_reset() {
    let w = world().await;
    const BODY: usize = 8 << 20;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Small: the client's writes wait on the listener, not on its buffer.
    socket.set_send_buffer_size(16 * 1024).unwrap();
    let mut tcp = socket.connect(w.http).await.unwrap();
    let head =
        format!("POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: {BODY}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    // As curl does: upload in chunks, looking for an answer between them;
    // an answer before the body is sent ends the upload.
    let chunk = vec![b'x'; 16 * 1024];
    let (mut sent, mut out) = (0, Vec::new());
    let mut buf = vec![0u8; 4096];
    while sent < BODY && !out.windows(4).any(|w| w == b"\r\n\r\n") {
        loop {
            match tcp.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading: {e}; read {:?}", String::from_utf8_lossy(&out)),
            }
        }
        let n = chunk.len().min(BODY - sent);
        if let Err(e) = tcp.write_all(&chunk[..n]).await {
            panic!(
                "uploading after {sent} bytes: {e}; read {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        sent += n;
    }
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("the redirect listener closes after its answer");
    let r = String::from_utf8_lossy(&out);
    read.unwrap_or_else(|e| panic!("the answer was reset ({e}); read: {r:?}"));
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("\r\nlocation: https://example.com:8443/upload\r\n"),
        "{r}"
    );
}

/// SIGTERM while a removed redirect listener serves the clients taken from
/// its queue, silent ones (one sent nothing, one half a head): they close
/// at once and the process exits as soon as nothing else is open, not when
/// `shutdown_grace` ends. Taken from the queue, a connection did not watch
/// the listener's `closing` (set already), nor anything else: each waited
/// out its `header_read_timeout`, and the drain held on to it until the
/// grace ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_silent_clients_a_removed_redirect_listener_took_from_its_queue() {
    let http = "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: { port: 8443 }\n    limits: { header_read_timeout: 300s, max_connections: 2 }\n";
    let graced = |http: &str| format!("runtime: {{ shutdown_grace: 5s }}\n{}", with_http(http));
    let mut run = Redirecting::start(&graced(http)).await;
    let (addr, admin) = (run.addr, run.admin);
    // Held: closed by the removal.
    let mut held = [
        TcpStream::connect(addr).await.unwrap(),
        TcpStream::connect(addr).await.unwrap(),
    ];
    let gauge = "hotproxy_connections_active{listener=\"http\"} 2";
    wait_metric(admin, gauge, WAIT).await;
    let _idle = TcpStream::connect(addr).await.unwrap();
    let mut begun = TcpStream::connect(addr).await.unwrap();
    begun.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    wait_until(WAIT, "the clients queued on http", || async {
        accept_queue(addr) == 2
    })
    .await;
    run.remove(&graced("")).await;
    for tcp in &mut held {
        assert_closed_unanswered(tcp).await;
    }
    // The two queued ones have their slots.
    wait_metric(admin, gauge, WAIT).await;

    run.p.signal("TERM");
    assert!(run.p.wait_exit(WAIT).await.success());
    // Its last line read: the logs are all in.
    run.p
        .wait_log("stopped", |v| v["message"] == "stopped")
        .await;
    let logs = run.p.logs();
    assert!(
        !logs.iter().any(|l| l.contains("shutdown grace elapsed")),
        "the drain waited for the silent clients: {logs:#?}"
    );
    drop(run);
}
