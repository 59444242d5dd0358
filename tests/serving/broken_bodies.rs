//! An upstream that breaks a response body: at once, with its head (a `502`), or after the head went out (a cut).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;

use crate::common::*;
use crate::support::*;
use crate::upstream::proxy_to_raw;

/// A raw backend answering `200` to each request and breaking its body by
/// path: `…/bad-chunk` with a chunk size of `zz` after a first chunk
/// `hello`, `…/short` with a close after the first bytes (`abc` of 1000,
/// `some` of 100; `/big`, `/cut` and `/soon`, below; `/down` breaks
/// nothing: [`DOWN`] bytes). Under `/later` the break waits until `go` is notified
/// (the client has the head and the first bytes); otherwise it comes
/// within the very read that brings the head: one write, the close corked
/// onto it (`TCP_CORK`: the end of file arrives with the bytes, so the
/// proxy reads both at once, never one before the other).
async fn breaking_backend(go: Arc<Notify>) -> SocketAddr {
    let (addr, _) = raw_backend(move |mut tcp| {
        let go = go.clone();
        async move {
            let mut buf = Vec::new();
            let Some(end) = read_raw_head(&mut tcp, &mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
            let later = path.starts_with("/later/");
            let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
            if path.ends_with("/down") {
                // A healthy download, as fast as the proxy takes it; one
                // request a connection, as for every path here.
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {DOWN}\r\nconnection: close\r\n\r\n"
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let chunk = [b'd'; 64 * 1024];
                for _ in 0..DOWN / chunk.len() {
                    if tcp.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            } else if path.ends_with("/cut") {
                // More than the proxy reads before it hands the head on,
                // the close corked onto it: the break comes just after.
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 200000\r\n\r\n";
                socket2::SockRef::from(&tcp).set_tcp_cork(true).unwrap();
                let _ = tcp.write_all(&[&head[..], &[b'x'; CUT]].concat()).await;
                let _ = tcp.shutdown().await;
            } else if path.ends_with("/soon") {
                // A close right behind the first bytes, in a segment of its
                // own: read with them (a 502) or just after (a cut).
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc")
                    .await;
                let _ = tcp.shutdown().await;
            } else if path.ends_with("/big") {
                // 200,000 bytes declared: the first ones, then once `go`
                // is notified the last ones with the close corked onto
                // them, so the proxy reads both at once.
                let head = b"HTTP/1.1 200 OK\r\ncontent-length: 200000\r\n\r\n";
                let _ = tcp
                    .write_all(&[&head[..], &[b'x'; BIG_FIRST]].concat())
                    .await;
                go.notified().await;
                socket2::SockRef::from(&tcp).set_tcp_cork(true).unwrap();
                let _ = tcp.write_all(&[b'y'; BIG_LAST]).await;
                let _ = tcp.shutdown().await;
            } else if path.ends_with("/bad-chunk") {
                let bad: &[u8] = b"zz\r\n";
                if later {
                    let _ = tcp.write_all(chunked).await;
                    go.notified().await;
                    let _ = tcp.write_all(bad).await;
                } else {
                    let _ = tcp.write_all(&[&chunked[..], bad].concat()).await;
                }
            } else {
                let answer: &[u8] = match later {
                    true => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome",
                    false => b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nabc",
                };
                socket2::SockRef::from(&tcp).set_tcp_cork(!later).unwrap();
                let _ = tcp.write_all(answer).await;
                if later {
                    go.notified().await;
                }
                let _ = tcp.shutdown().await;
            }
            // Open until the proxy closes it: a bad chunk is refused as
            // read, and a close is a FIN, never a reset.
            while read_more(&mut tcp, &mut buf).await {}
        }
    })
    .await;
    addr
}

/// The proxy in front of [`breaking_backend`], with a JSON access log: it,
/// its listener's address, the log's path and the backend's `go`.
async fn proxy_to_breaking(w: &World) -> (Proxy, SocketAddr, std::path::PathBuf, Arc<Notify>) {
    let go = Arc::new(Notify::new());
    let backend = breaking_backend(go.clone()).await;
    let log = w.scene.path("access.log");
    let extra = format!("\naccess_log: {{ path: {}, format: json }}", log.display());
    let (p, addr) = proxy_to_raw(w, backend, &extra).await;
    (p, addr, log, go)
}

/// The two breaks and what hyper says of each.
const BREAKS: [(&str, &str); 2] = [
    ("/bad-chunk", "Invalid chunk size"),
    ("/short", "end of file before message length"),
];

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
}

/// A body the upstream breaks within the very read that brought its head
/// (a chunk size that is not one; a close after 3 of its 1000 bytes) is a
/// `502`, logged and counted with its cause as any failed request is: no
/// byte of the response had gone to the client yet. An HTTP/1.1 client
/// used to get nothing at all, its connection closed without a status
/// line, while the access log said `200`; an HTTP/2 client a reset stream.
#[tokio::test]
async fn a_body_broken_with_its_head_is_502() {
    let w = world().await;
    let (mut p, addr, log, _) = proxy_to_breaking(&w).await;
    for (path, _) in BREAKS {
        let reply = h1_exchange(&w, addr, get(path).as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 502 "), "{path}: {reply:?}");
        let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
        let resp = h2_request(&mut client, h2_get(path, "GET")).await;
        assert_eq!(resp.status(), 502, "{path} over HTTP/2");
    }
    for (path, why) in BREAKS {
        protocol_warning(&mut p, "upstream request failed", why).await;
        let lines = wait_access_log(&log, 4, WAIT).await;
        let statuses: Vec<_> = lines
            .iter()
            .filter(|v| v["path"] == path)
            .map(|v| (v["protocol"].clone(), v["status"].clone()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("HTTP/1.1".into(), 502.into()),
                ("HTTP/2.0".into(), 502.into())
            ],
            "{path}: {lines:?}"
        );
    }
    // Once each: not again as a body that failed.
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        m.contains(r#"hotproxy_upstream_errors_total{upstream="raw",reason="protocol"} 4"#),
        "{m}"
    );
}

/// Read from `s` until what was read ends with `end`; what was read.
async fn read_until<S: AsyncRead + Unpin>(s: &mut S, end: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while !out.ends_with(end) {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(WAIT, s.read(&mut b))
            .await
            .expect("bytes in time")
            .unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&out));
        out.push(b[0]);
    }
    out
}

/// An upstream that breaks a response part way through its body, after
/// its head and first bytes reached the client, has the response cut (an
/// HTTP/1.1 connection closed before the body's end, an HTTP/2 stream
/// reset), logged and counted as one that stalls is (nginx: "upstream
/// prematurely closed connection while reading upstream"); the access log
/// keeps the `200` sent, with the bytes sent before the cut.
#[tokio::test]
async fn a_body_broken_after_its_head_is_cut_logged_and_counted() {
    let w = world().await;
    let (mut p, addr, log, go) = proxy_to_breaking(&w).await;
    let firsts: [&[u8]; 2] = [b"5\r\nhello\r\n", b"some"];
    for ((path, _), first) in BREAKS.into_iter().zip(firsts) {
        let path = format!("/later{path}");
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        s.write_all(get(&path).as_bytes()).await.unwrap();
        let head = read_until(&mut s, b"\r\n\r\n").await;
        assert!(head.starts_with(b"HTTP/1.1 200 "), "{path}");
        read_until(&mut s, first).await;
        go.notify_one();
        let rest = read_to_close(&mut s).await;
        assert!(
            rest.is_empty(),
            "{path}: {:?}",
            String::from_utf8_lossy(&rest)
        );

        let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
        let resp = h2_request(&mut client, h2_get(&path, "GET")).await;
        assert_eq!(resp.status(), 200, "{path} over HTTP/2");
        let mut body = resp.into_body();
        let got = tokio::time::timeout(WAIT, body.data()).await.unwrap();
        assert!(matches!(got, Some(Ok(_))), "{path}: {got:?}");
        go.notify_one();
        let cut = tokio::time::timeout(WAIT, body.data()).await.unwrap();
        assert!(matches!(cut, Some(Err(_))), "{path}: {cut:?}");
    }
    for (_, why) in BREAKS {
        protocol_warning(&mut p, "upstream response body failed", why).await;
    }
    let lines = wait_access_log(&log, 4, WAIT).await;
    let logged: Vec<_> = lines
        .iter()
        .map(|v| {
            (
                v["path"].clone(),
                v["status"].clone(),
                v["bytes_out"].clone(),
            )
        })
        .collect();
    let want = |path: &str, n: u64| (path.into(), 200.into(), n.into());
    assert_eq!(
        logged,
        [
            want("/later/bad-chunk", 5),
            want("/later/bad-chunk", 5),
            want("/later/short", 4),
            want("/later/short", 4),
        ],
        "{lines:?}"
    );
    let m = metrics_text(p.admin_addr().await).await;
    assert!(
        m.contains(r#"hotproxy_upstream_errors_total{upstream="raw",reason="protocol"} 4"#),
        "{m}"
    );
}

/// What `/big` sends of its 200,000 bytes: first more than the proxy reads
/// before it hands a response on (64 KiB), then some more with its close.
const BIG_FIRST: usize = 70 * 1024;
const BIG_LAST: usize = 30 * 1024;

/// A body broken by a close that arrives with its last bytes, after the
/// head and first bytes went out (here more than the 64 KiB read before
/// the response is handed on): an HTTP/1.1 client gets every byte the
/// upstream sent, then its connection closed short of the declared
/// length. hyper's HTTP/1.1 server drops what it has not written yet when
/// a body fails: the failure, read in the same poll as the last bytes, is
/// held back one poll so they are flushed first. Returned at once, it
/// lost them (and with them, on a first read, the head itself).
#[tokio::test]
async fn the_bytes_read_with_a_break_reach_the_client_before_the_cut() {
    let w = world().await;
    let (mut p, addr, _, go) = proxy_to_breaking(&w).await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    s.write_all(get("/big").as_bytes()).await.unwrap();
    let head = read_until(&mut s, b"\r\n\r\n").await;
    assert!(head.starts_with(b"HTTP/1.1 200 "), "{head:?}");
    let mut first = vec![0u8; BIG_FIRST];
    tokio::time::timeout(WAIT, s.read_exact(&mut first))
        .await
        .expect("the first bytes in time")
        .unwrap();
    go.notify_one();
    let rest = read_to_close(&mut s).await;
    assert!(
        rest.len() == BIG_LAST && rest.iter().all(|b| *b == b'y'),
        "{} bytes after the first, not the {BIG_LAST} sent with the close",
        rest.len()
    );
    p.wait_log("the break", |v| {
        v["message"] == "upstream response body failed" && v["upstream"] == "raw"
    })
    .await;
}

/// Wait for the warning `message` about upstream `raw`, reason `protocol`,
/// whose error names `why`.
async fn protocol_warning(p: &mut Proxy, message: &str, why: &str) {
    p.wait_log(why, |v| {
        v["message"] == message
            && v["level"] == "WARN"
            && v["upstream"] == "raw"
            && v["reason"] == "protocol"
            && v["error"].as_str().is_some_and(|e| e.contains(why))
    })
    .await;
}

/// What `/cut` sends of its 200,000 bytes before its close: more than the
/// proxy reads before it hands a response on (64 KiB).
const CUT: usize = 70 * 1024;

/// Attempts at each break that races the connection's writes.
const ATTEMPTS: usize = 40;

/// What an HTTP/2 client got for `path` on `client`: the status, the body
/// bytes, and whether the stream was reset (`INTERNAL_ERROR`) after them
/// rather than ended; `None` when the stream was reset before its head.
async fn h2_outcome(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> Option<(u16, usize, bool)> {
    let (resp, _) = client.send_request(h2_get(path, "GET"), true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().ok()?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut n = 0;
    loop {
        match tokio::time::timeout(WAIT, body.data()).await.unwrap() {
            Some(Ok(data)) => n += data.len(),
            Some(Err(e)) => {
                assert_eq!(e.reason(), Some(h2::Reason::INTERNAL_ERROR), "{e}");
                return Some((status, n, true));
            }
            None => return Some((status, n, false)),
        }
    }
}

/// A body the upstream breaks just after its head was handed on (here
/// after more than the 64 KiB read first): an HTTP/2 client gets the head
/// and every byte before the break, then the stream reset
/// (`INTERNAL_ERROR`), as from Envoy or nginx, and the access log says
/// `200` with those bytes. h2's reset drops what it still holds of the
/// stream: the head, and bytes hyper had taken. The client used to get 40
/// or 56 KiB of the 70 in most attempts (33 to 36 of 40) while the log
/// said 70, or only the reset. A close right behind the first bytes
/// (`/soon`) is a `502` when read with the head, else the same cut, never
/// a reset without the head.
#[tokio::test]
async fn h2_a_body_broken_after_its_head_was_handed_on_keeps_its_head() {
    let w = world().await;
    let (_p, addr, log, _) = proxy_to_breaking(&w).await;
    // Windows wide open: every byte the proxy takes may go at once.
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, Bytes>(tls(&w, addr, &[b"h2"]).await)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut cut = Vec::new();
    for _ in 0..ATTEMPTS {
        cut.push(h2_outcome(&mut client, "/cut").await);
    }
    assert_eq!(cut, [Some((200, CUT, true)); ATTEMPTS]);
    for _ in 0..ATTEMPTS {
        let got = h2_outcome(&mut client, "/soon").await;
        let bad_gateway = matches!(got, Some((502, _, false)));
        assert!(bad_gateway || got == Some((200, 3, true)), "{got:?}");
    }
    let lines = wait_access_log(&log, 2 * ATTEMPTS, WAIT).await;
    for v in &lines {
        let logged = (v["status"].as_u64(), v["bytes_out"].as_u64());
        let want = match v["path"].as_str() {
            Some("/cut") => logged == (Some(200), Some(CUT as u64)),
            _ => logged == (Some(200), Some(3)) || logged.0 == Some(502),
        };
        assert!(want, "{v}");
    }
}

/// The downloads [`slow_h2`]'s client runs beside a broken stream: enough
/// that what the proxy queues for them (32 KiB a stream) overflows the
/// room the socket to the client has each time it becomes writable.
const DOWNLOADS: usize = 24;

/// Each `/down` body: all of them, read at [`Slow`]'s pace, take several
/// times `send_timeout` (1s here) to go through.
const DOWN: usize = 2 << 20;

/// What [`Slow`] reads per [`TICK`]: about 3 MB/s, over 100 KB/s a
/// download, far more than the 16 KiB per `send_timeout` below which a
/// stream is cut.
const PACE: usize = 32 * 1024;
const TICK: Duration = Duration::from_millis(10);

/// A client's TCP stream read at most [`PACE`] bytes per [`TICK`], so that
/// the proxy's socket to it stays full while its streams keep moving.
struct Slow {
    tcp: tokio::net::TcpStream,
    tick: tokio::time::Interval,
    left: usize,
}

impl AsyncRead for Slow {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.left == 0 {
            ready!(this.tick.poll_tick(cx));
            this.left = PACE;
        }
        let mut chunk = [0u8; PACE];
        let mut part = ReadBuf::new(&mut chunk[..this.left.min(buf.remaining())]);
        ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut part))?;
        this.left -= part.filled().len();
        buf.put_slice(part.filled());
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Slow {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// An HTTP/2 client to `addr` reading through [`Slow`], its windows wide
/// open. Its small receive buffer and segments (`TCP_MAXSEG`) keep the
/// proxy's send buffer to it (which Linux sizes from them) near 1 MB
/// rather than 4.
async fn slow_h2(w: &World, addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    socket2::SockRef::from(&sock).set_tcp_mss(1000).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slow = Slow { tcp, tick, left: 0 };
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let name = rustls_pki_types::ServerName::try_from("a.example.com").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, slow)
        .await
        .unwrap();
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 30)
        .initial_connection_window_size(1 << 30)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A broken stream's reset waits for the connection to write what the
/// stream had queued, but no longer than a stalled stream waits: with
/// other streams keeping the client's socket full (downloads to a client
/// that reads slowly but steadily), no write of the connection ended with
/// everything flushed, and the reset of a stream whose upstream broke
/// after its head waited until the downloads were over, holding the
/// stream (one of the 100 a connection may have) that long. It now goes
/// between 1 and 1.5 times `send_timeout` after the break at the latest,
/// while the downloads still run.
#[tokio::test]
async fn h2_a_broken_stream_is_reset_within_send_timeout_while_others_fill_the_socket() {
    let w = world().await;
    let backend = breaking_backend(Arc::new(Notify::new())).await;
    let listener = listener_yaml("public", "127.0.0.1:0", "[{ upstream: raw }]");
    let config = w.scene.config(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nlisteners:\n{listener}\n    limits: {{ send_timeout: 1s }}\n\
         upstreams:\n  - name: raw\n    servers: [http://{backend}]\n"
    ));
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let mut client = slow_h2(&w, addr).await;
    let asked: Vec<_> = (0..DOWNLOADS)
        .map(|_| client.send_request(h2_get("/down", "GET"), true).unwrap().0)
        .collect();
    let mut downs = Vec::new();
    for resp in asked {
        let resp = h2_answer(resp).await;
        assert_eq!(resp.status(), 200);
        downs.push(resp.into_body());
    }
    let cut = h2_request(&mut client, h2_get("/cut", "GET")).await;
    assert_eq!(cut.status(), 200, "the head goes before the reset");
    let mut cut = cut.into_body();
    let (mut got, mut ended) = ([0; DOWNLOADS], [false; DOWNLOADS]);
    // The downloads' bytes are taken first: a download's end that came
    // before the reset is seen before the reset is.
    let read = std::future::poll_fn(|cx| {
        loop {
            let mut moved = false;
            for (i, d) in downs.iter_mut().enumerate() {
                if ended[i] {
                    continue;
                }
                match d.poll_data(cx) {
                    Poll::Ready(Some(data)) => got[i] += data.expect("a download").len(),
                    Poll::Ready(None) => ended[i] = true,
                    Poll::Pending => continue,
                }
                moved = true;
            }
            if moved {
                continue;
            }
            match ready!(cut.poll_data(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(e),
                None => panic!("the cut stream ended"),
            }
        }
    });
    // Only against a hang: without the bound the reset came at the
    // downloads' end.
    let reset = tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("the cut stream's reset");
    assert_eq!(reset.reason(), Some(h2::Reason::INTERNAL_ERROR), "{reset}");
    let over = ended.iter().filter(|e| **e).count();
    assert_eq!(
        over, 0,
        "the reset came once downloads were over ({got:?} of {DOWN} bytes each)"
    );
}
