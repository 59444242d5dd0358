//! Half a head pipelined behind a request with a body: held to header_read_timeout, not idle_timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

/// The next head's first half, never completed.
const HALF: &str = "GET /api HTTP/1.1\r\nX-a: ";

/// A POST's head with `framing` (a `content-length` or
/// `transfer-encoding` line) and its body on the wire.
fn post(path: &str, framing: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: a.example.com\r\n{framing}\r\n\r\n{body}")
}

/// `request` and [`HALF`] in one write: the request's answer (a `status`)
/// comes, then nothing, and the connection is closed at
/// header_read_timeout. The client's port.
async fn answered_then_cut(w: &World, addr: SocketAddr, request: &str, status: &str) -> u16 {
    let mut s = tls(w, addr, &[b"http/1.1"]).await;
    let port = local_port(&s);
    s.write_all(format!("{request}{HALF}").as_bytes())
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(reply.starts_with(&format!("HTTP/1.1 {status}")), "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    port
}

/// Each of `ports` closed at header_read_timeout, and its half head
/// counted and logged as a `408`, `lines` access-log lines in all.
async fn all_cut(p: &mut Proxy, admin: SocketAddr, log: &Path, ports: &[u16], lines: usize) {
    for port in ports {
        wait_closed_for(p, *port, "header_read_timeout").await;
    }
    let n = ports.len();
    let line = format!(
        "hotproxy_http_requests_total{{listener=\"public\",upstream=\"\",code=\"408\"}} {n}"
    );
    wait_metric(admin, &line, WAIT).await;
    let all = wait_access_log(log, lines, WAIT).await;
    let cut: Vec<_> = all.iter().filter(|l| l["status"] == 408).collect();
    assert_eq!(cut.len(), n, "{all:?}");
    for port in ports {
        let ends = format!(":{port}");
        let line = cut
            .iter()
            .find(|l| l["client_addr"].as_str().unwrap().ends_with(&ends))
            .unwrap_or_else(|| panic!("no 408 for port {port}: {cut:?}"));
        assert_eq!(line["authz"], "header_read_timeout", "{line}");
    }
}

/// Half a head in the same write as a POST, behind its whole body, is
/// cut at header_read_timeout after the POST's answer and counted and
/// logged as a `408` (as behind a request without a body,
/// `heads::pipelined_half_head_gets_header_read_timeout`): a body of
/// declared length read whole first, one streamed (over
/// `body_buffer_bytes`, so hyper reads it in several reads), and a
/// chunked one. idle_timeout is far beyond read_to_close's bound: a
/// connection left to it fails the test instead of passing late.
#[tokio::test]
async fn half_head_behind_a_body_gets_header_read_timeout() {
    let (w, mut p, addr, log) = serve_logged("header_read_timeout: 1s, idle_timeout: 10m").await;
    let admin = p.admin_addr().await;
    let big = "b".repeat(40_000);
    let requests = [
        post("/upload", "content-length: 5", "hello"),
        post("/upload", &format!("content-length: {}", big.len()), &big),
        post(
            "/upload",
            "transfer-encoding: chunked",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    let mut ports = Vec::new();
    for request in &requests {
        ports.push(answered_then_cut(&w, addr, request, "200").await);
    }
    all_cut(&mut p, admin, &log, &ports, 2 * ports.len()).await;
}

/// As [`half_head_behind_a_body_gets_header_read_timeout`], with bodies
/// hyper held whole and that were left unread (streamed, as
/// `body_buffer_bytes: 0` streams every body, towards an upstream that
/// never takes them and fails at `connect_timeout`): nothing of them is
/// left to drain, so the next bytes are a head. Half a head sent while the
/// request waits on that upstream is timed as well.
#[tokio::test]
async fn half_head_behind_an_unread_body_gets_header_read_timeout() {
    let w = world().await;
    let (silent, dialled) = raw_backend(|mut tcp| async move {
        let mut buf = Vec::new();
        while read_more(&mut tcp, &mut buf).await {}
    })
    .await;
    let limits = "header_read_timeout: 1s, idle_timeout: 10m, body_buffer_bytes: 0";
    let (path, log) = logged_config(&w, limits);
    edit_config(&path, |text| {
        let routes = "routes: [{ path_prefix: /silent, upstream: silent }, { upstream: plain }]";
        let text = text.replace("routes: [{ upstream: plain }]", routes);
        format!(
            "{text}  - name: silent\n    servers: [https://{silent}]\n    connect_timeout: 1s\n"
        )
    });
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let request = post("/silent", "content-length: 5", "hello");
    let mut ports = Vec::new();
    // The half head in a write of its own, while the request waits.
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    ports.push(local_port(&s));
    s.write_all(request.as_bytes()).await.unwrap();
    wait_until(WAIT, "the upstream dialled", || async {
        dialled.load(SeqCst) == 1
    })
    .await;
    s.write_all(HALF.as_bytes()).await.unwrap();
    let reply = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(reply.starts_with("HTTP/1.1 50"), "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    // In the same write.
    ports.push(answered_then_cut(&w, addr, &request, "50").await);
    // Streamed and read to its end.
    let read = post("/upload", "content-length: 5", "hello");
    ports.push(answered_then_cut(&w, addr, &read, "200").await);
    all_cut(&mut p, admin, &log, &ports, 2 * ports.len()).await;
}
