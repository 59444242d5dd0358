//! What a request's access-log line shows of the bytes a client sent (escaped, never hidden), and the file it goes to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

/// Send `request` as raw bytes over HTTP/1.1 and read until the proxy closes.
async fn send(addr: SocketAddr, ca: &TestCa, request: &[u8]) -> String {
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let mut tls = connect(addr, "localhost", cfg).await.unwrap();
    tls.write_all(request).await.unwrap();
    String::from_utf8_lossy(&read_to_close(&mut tls).await).into_owned()
}

/// The `combined` log's lines, once it holds at least `n`.
async fn combined_lines(log: &Path, n: usize) -> Vec<String> {
    let read = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_until(WAIT, &format!("{n} lines in {}", log.display()), || async {
        read().len() >= n
    })
    .await;
    read()
}

/// One raw request sent to a proxy with no backend logging in `format`:
/// the scene (holding the log), the reply, and the log once it has the
/// request's line.
async fn logged_reply(format: &str, request: &[u8]) -> (Scene, String, PathBuf) {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let (_p, addr, log) = logged(&scene, &ca, format).await;
    let reply = send(addr, &ca, request).await;
    combined_lines(&log, 1).await;
    (scene, reply, log)
}

/// The combined line of one raw request answered `502`.
async fn combined_line_of(request: &[u8]) -> String {
    let (_scene, reply, log) = logged_reply("combined", request).await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    combined_lines(&log, 1).await.swap_remove(0)
}

/// A User-Agent or Referer with a byte outside ASCII is logged with that
/// byte escaped as nginx does (`\xHH`), not as `-`: one added byte used to
/// hide a client's user agent from the log.
#[tokio::test]
async fn combined_shows_non_ascii_header_bytes_escaped() {
    let line = combined_line_of(
        b"GET /a HTTP/1.1\r\nHost: localhost\r\nUser-Agent: scan\xC3\xA9\r\nReferer: https://r.test/\x80\"\\\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        line.ends_with(r#" "https://r.test/\x80\x22\x5C" "scan\xC3\xA9""#),
        "{line}"
    );
}

/// A `Connection` that names `User-Agent` and `Referer` removes them from
/// what goes upstream, not from the log: the combined line holds the
/// bytes sent. They were copied after the hop-by-hop pass, and logged
/// `"-" "-"`, so a client hid its user agent with one header.
#[tokio::test]
async fn combined_logs_a_user_agent_its_connection_names() {
    let line = combined_line_of(
        b"GET /a HTTP/1.1\r\nHost: localhost\r\nUser-Agent: scan/1\r\nReferer: https://r.test/\r\nConnection: close, user-agent, referer\r\n\r\n",
    )
    .await;
    assert!(line.ends_with(r#" "https://r.test/" "scan/1""#), "{line}");
}

/// A `Host` with a byte outside ASCII is refused, and its JSON line shows
/// what was sent, escaped as `\xHH` inside the string (a `\` as `\x5C`),
/// where it used to be `null`.
#[tokio::test]
async fn json_shows_a_non_ascii_host_escaped() {
    let (_scene, reply, log) = logged_reply(
        "json",
        b"GET /a HTTP/1.1\r\nHost: b\xC3\xA9\\.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let line = &wait_access_log(&log, 1, WAIT).await[0];
    assert_eq!(line["host"], r"b\xC3\xA9\x5C.test", "{line}");
}

/// A path with characters outside ASCII (a C1 control, U+009B, the 8-bit
/// CSI a terminal takes as `ESC [`; U+2028 LINE SEPARATOR; U+202E
/// RIGHT-TO-LEFT OVERRIDE) is written in the JSON line as `\uXXXX`
/// escapes: the line's bytes hold none of them, and it parses back to the
/// path sent. They were written raw (serde_json escapes only what is
/// below U+0020), into the terminal or viewer a line is read in.
#[tokio::test]
async fn json_escapes_a_path_outside_ascii() {
    let (_scene, reply, log) = logged_reply(
        "json",
        b"GET /\xC2\x9B31mok\xE2\x80\xA8\xE2\x80\xAEx HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    let line = &wait_access_log(&log, 1, WAIT).await[0];
    assert_eq!(line["path"], "/\u{9B}31mok\u{2028}\u{202E}x", "{line}");
    let raw = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(raw.is_ascii(), "{text}");
    assert!(
        text.contains(r#""path":"/\u009b31mok\u2028\u202ex""#),
        "{text}"
    );
}

/// A `CONNECT` (authority-form target, answered 405) is logged with its
/// authority as the target, as nginx logs `$request`; it was an empty one
/// (`"CONNECT  HTTP/1.1"`). JSON's `path` holds the same.
#[tokio::test]
async fn connect_logs_its_authority() {
    let connect =
        b"CONNECT b.example.com:443 HTTP/1.1\r\nHost: b.example.com:443\r\nConnection: close\r\n\r\n";
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let (_p, addr, log) = logged(&scene, &ca, "combined").await;
    let reply = send(addr, &ca, connect).await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    let line = &combined_lines(&log, 1).await[0];
    assert!(
        line.contains(r#""CONNECT b.example.com:443 HTTP/1.1" 405 "#),
        "{line}"
    );

    let scene = Scene::new();
    let (_p, addr, log) = logged(&scene, &ca, "json").await;
    let reply = send(addr, &ca, connect).await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
    let line = &wait_access_log(&log, 1, WAIT).await[0];
    assert_eq!(line["path"], "b.example.com:443", "{line}");
}

/// A configuration in a directory whose name is not UTF-8 (a legal Linux
/// file name), with a relative `access_log.path`: the lines go to the log
/// in that very directory. The path was kept as text, its byte 0xFF made
/// U+FFFD: the lines went to a sibling directory spelt so, when there was
/// one, and startup was refused when there was not.
#[tokio::test]
async fn a_log_path_that_is_not_utf8_is_written_as_configured() {
    use std::os::unix::ffi::OsStrExt;
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let dir = scene
        .dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"conf-\xff"));
    // The name `display()` made of it: where the lines must not go.
    let lossy = scene.path("conf-\u{FFFD}");
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(&lossy).unwrap();
    let pair = ca.server_pair(&["localhost"]);
    write(&dir.join("a.crt"), &pair.cert_pem);
    write(&dir.join("a.key"), &pair.key_pem);
    let config = dir.join("config.yaml");
    write(
        &config,
        r#"
access_log: { path: access.log, format: json }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: { certs: [{ cert_file: a.crt, key_file: a.key }] }
    routes: [{ upstream: app }]
upstreams:
  - name: app
    servers: [http://127.0.0.1:9]
"#,
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let reply = send(
        addr,
        &ca,
        b"GET /logged HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    let line = &wait_access_log(&dir.join("access.log"), 1, WAIT).await[0];
    assert_eq!(line["path"], "/logged", "{line}");
    assert!(
        std::fs::read_dir(&lossy).unwrap().next().is_none(),
        "nothing written beside it, under the name made lossy"
    );
}

/// A client's well-formed `X-Request-Id` is kept, and its access-log line
/// holds it while it waits for the writer. The id was a slice of hyper's
/// read buffer, so behind a stalled log (a FIFO nobody reads) each queued
/// line pinned the whole buffer its request head was read into, uncounted:
/// 2,000 requests with 48 KiB heads held over 100 MiB, and the queue's
/// 16,384 lines could hold a gigabyte. The id is copied now: the proxy's
/// memory stays what it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_lines_do_not_pin_request_heads() {
    use http_body_util::{BodyExt, Empty};
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let fifo = scene.path("access.fifo");
    mkfifo(&fifo);
    let (p, addr) = logged_to(&scene, &ca, "json", &fifo).await;
    let pad = "p".repeat(48 * 1024);
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let before = rss_kib(p.pid());
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (cfg, pad) = (cfg.clone(), pad.clone());
            tokio::spawn(async move {
                let tls = connect(addr, "localhost", cfg).await.unwrap();
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                for i in 0..500 {
                    let req = http::Request::get("/x")
                        .header("host", "localhost")
                        .header("x-request-id", format!("client-{c}-{i}"))
                        .header("x-pad", pad.as_str())
                        .body(Empty::<bytes::Bytes>::new())
                        .unwrap();
                    let resp = send.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), 502);
                    resp.into_body().collect().await.unwrap();
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let grown = rss_kib(p.pid()).saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "the proxy grew by {grown} KiB for 2,000 queued lines"
    );
}

/// A FIFO access log that stops being one the proxy may open (the
/// shipper's pipe made 0600 by another user while no reader had it): the
/// open's failure is logged at once, then at most every 10 s with the
/// lines dropped since, as a failing write's is (SPEC §2). It was logged
/// once, and every retry after failed in silence, the lines dropped with
/// no word. As root the proxy runs as `nobody`, the FIFO being root's;
/// else the FIFO goes mode 0000.
#[tokio::test]
async fn a_fifo_that_will_not_open_is_reported_with_the_lines_dropped() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const NOBODY: u32 = 65534;
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, PermissionsExt::from_mode(m));
    mode(scene.dir.path(), 0o755).unwrap();
    let fifo = scene.path("access.fifo");
    mkfifo(&fifo);
    mode(&fifo, 0o622).unwrap();
    let config = logged_config(&scene, &ca, "json", &fifo);
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut p = match root {
        true => Proxy::start_as(&config, scene.dir.path(), NOBODY, NOBODY),
        false => Proxy::start(&config),
    };
    let addr = p.listener_addr("public").await;
    p.wait_log("the writer waiting for a reader", |v| {
        v["message"] == "access log is a FIFO: waiting for a reader"
    })
    .await;
    mode(&fifo, if root { 0o600 } else { 0o000 }).unwrap();
    let opening = |v: &serde_json::Value| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cannot open the access log"))
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("Permission denied"))
    };
    p.wait_log("the failed open reported", opening).await;
    // Requests go on, each line dropped: the next report, 10 s on, says
    // how many.
    let traffic = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            every.tick().await;
            send(
                addr,
                &ca,
                b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await;
        }
    });
    p.wait_log("the lines dropped since reported", |v| {
        opening(v) && v["lines_dropped"].as_u64().is_some_and(|n| n >= 1)
    })
    .await;
    traffic.abort();
}
