//! Request bodies: early answers, body and request timeouts, 413, small uploads read whole.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// A keep-alive HTTP/1.1 backend that answers each request as soon as its
/// head is in and only then reads (and discards) its body, as nginx does
/// with a body it does not need. Answers `ok`; counts connections.
async fn early_answering_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    raw_backend(|mut tcp| async move {
        let mut buf = Vec::new();
        while let Some(head_end) = read_raw_head(&mut tcp, &mut buf).await {
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            buf.drain(..head_end);
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if tcp.write_all(ok).await.is_err() {
                return;
            }
            while buf.len() < len {
                if !read_more(&mut tcp, &mut buf).await {
                    return;
                }
            }
            buf.drain(..len);
        }
    })
    .await
}

/// An upstream that answers before it has read the request body (a 401, a
/// 413; nginx discarding a body) ends the response while the client is
/// still to send that body. If the client then stalls, its upstream
/// connection is still busy with the body: it must not go back to the pool
/// for the next client's request to wait behind (until request_timeout).
#[tokio::test]
async fn stalled_body_after_an_early_response_holds_up_no_other_client() {
    let w = world().await;
    let (backend, accepted) = early_answering_backend().await;
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ upstream: early }]",
        &format!("\n  - name: early\n    servers: [http://{backend}]"),
    ));
    let addr = p.listener_addr("public").await;
    // A body sent whole leaves the connection reusable.
    for _ in 0..2 {
        let mut s = tls(&w, addr, &[b"http/1.1"]).await;
        write_for_200(
            &mut s,
            b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 10\r\n\r\n0123456789",
        )
        .await;
    }
    assert_eq!(accepted.load(SeqCst), 1, "a whole body's connection reused");
    let mut slow = tls(&w, addr, &[b"http/1.1"]).await;
    write_for_200(
        &mut slow,
        b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 100000\r\n\r\n0123456789",
    )
    .await;
    // The rest of the body never comes; other clients are served at once.
    for _ in 0..3 {
        let reply = tokio::time::timeout(WAIT, get_h1(addr, "a.example.com", &w.ca.cert_pem))
            .await
            .expect("another client served while the first stalls its body")
            .unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "ok");
    }
    assert_eq!(
        accepted.load(SeqCst),
        2,
        "one new connection for the others"
    );
    drop(slow);
}

/// A listener `public` (with `limits`) in front of the plain backend,
/// which hotproxy may open one connection to (waiting at most 1 s for it).
fn one_connection_config(w: &World, limits: &str) -> std::path::PathBuf {
    one_connection_config_with(w, limits, "")
}

/// [`one_connection_config`] with more upstream settings (`upstream`, one
/// `key: value` line).
fn one_connection_config_with(w: &World, limits: &str, upstream: &str) -> std::path::PathBuf {
    w.scene.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
    routes: [{{ upstream: plain }}]
    limits: {{ {limits} }}
upstreams:
  - name: plain
    servers: [http://{}]
    max_connections_per_server: 1
    connect_timeout: 1s
    {upstream}
"#,
        w.backend.addr
    ))
}

const UPLOAD: &[u8] = b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 10\r\n\r\n";

/// `POST /upload` over HTTP/2, with `content-length` when it is declared;
/// its body is sent by the caller.
fn h2_upload(declared: Option<usize>) -> http::Request<()> {
    let mut req = http::Request::post("https://a.example.com/upload");
    if let Some(len) = declared {
        req = req.header("content-length", len);
    }
    req.body(()).unwrap()
}

/// A client that declares an upload and stops sending it is cut by
/// body_read_timeout (nginx's client_body_timeout) on both protocols: it
/// gets `408` (HTTP/1.1: and the connection closes). With every body
/// streamed (`body_buffer_bytes: 0`) the one upstream connection it held is
/// released, so the next upload is served; read whole first (the default
/// for a small body) it never held one. A client that keeps sending,
/// slowly but within the timeout each time, is not cut however long the
/// whole body takes.
#[tokio::test]
async fn stalled_upload_is_cut_by_body_read_timeout() {
    let w = world().await;
    for buffering in ["body_buffer_bytes: 0", "body_buffer_bytes: 16384"] {
        let mut p = Proxy::start(&one_connection_config(
            &w,
            &format!("body_read_timeout: 400ms, {buffering}"),
        ));
        let addr = p.listener_addr("public").await;

        // HTTP/1.1: 3 of 10 bytes, then nothing.
        let answer = h1_exchange(&w, addr, &[UPLOAD, b"abc"].concat()).await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{buffering}: {answer}");
        assert!(answer.contains("request body timed out"), "{answer}");
        let whole = [UPLOAD, b"0123456789", GET_THEN_CLOSE].concat();
        let answer = h1_exchange(&w, addr, &whole).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{buffering}: {answer}");
        assert!(answer.contains(r#""body_bytes":10,"#), "{answer}");

        // HTTP/2: one stream stalls, the connection keeps serving.
        let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
        let (stalled, mut body) = client.send_request(h2_upload(Some(10)), false).unwrap();
        body.send_data(Bytes::from_static(b"abc"), false).unwrap();
        let stalled = h2_answer(stalled).await;
        assert_eq!(stalled.status(), 408, "{buffering}");
        // Slow but steady: a piece every 100 ms, 1 s in all.
        let mut client = client.ready().await.unwrap();
        let (steady, mut body) = client.send_request(h2_upload(Some(10)), false).unwrap();
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            body.send_data(Bytes::from_static(b"x"), i == 9).unwrap();
        }
        let steady = h2_answer(steady).await;
        assert_eq!(steady.status(), 200, "{buffering}");
        let got = h2_body(&mut steady.into_body()).await;
        assert_eq!(&got[..], br#"{"body_bytes":10,"expect":null}"#);
        drop(p);
    }
}

/// A client that keeps an upload moving, a byte at a time within
/// `body_read_timeout` each, is still cut by the upstream's
/// `request_timeout` (`408`), whether its body is streamed or, small,
/// read whole first: the clock runs from the request, not from the
/// upstream connection. Read whole, the body was not timed at all, so a
/// declared 16 KiB at a byte a minute held the client's connection for
/// eleven days; the same body one byte over `body_buffer_bytes` was cut
/// after `request_timeout`.
#[tokio::test]
async fn a_trickled_upload_is_bounded_by_request_timeout() {
    let w = world().await;
    // 50 bytes, one every 100 ms: 5 s in all, against 1 s.
    const DECLARED: &[u8] =
        b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 50\r\n\r\n";
    for buffering in ["body_buffer_bytes: 0", "body_buffer_bytes: 16384"] {
        let before = w.backend.requests.load(SeqCst);
        let mut p = Proxy::start(&one_connection_config_with(
            &w,
            &format!("body_read_timeout: 2s, {buffering}"),
            "request_timeout: 1s",
        ));
        let addr = p.listener_addr("public").await;

        // HTTP/1.1
        let (mut rx, mut tx) = tokio::io::split(tls(&w, addr, &[b"http/1.1"]).await);
        tx.write_all(DECLARED).await.unwrap();
        let trickle = tokio::spawn(async move {
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tx.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        let answer = tokio::time::timeout(WAIT, read_response(&mut rx))
            .await
            .expect("an answer");
        trickle.abort();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{buffering}: {answer}");

        // HTTP/2
        let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
        let (resp, mut body) = client.send_request(h2_upload(Some(50)), false).unwrap();
        let trickle = tokio::spawn(async move {
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if body.send_data(Bytes::from_static(b"x"), false).is_err() {
                    return;
                }
            }
        });
        let resp = h2_answer(resp).await;
        trickle.abort();
        assert_eq!(resp.status(), 408, "{buffering}");
        if buffering.ends_with("16384") {
            assert_eq!(
                w.backend.requests.load(SeqCst),
                before,
                "a body read whole first never reached the backend"
            );
        }
        drop(p);
    }
}

/// `limits.max_body_bytes` (nginx's `client_max_body_size`): a body over
/// it gets `413`, on both protocols. A declared length over it is refused
/// before anything reaches the backend; a body of unknown length (chunked,
/// HTTP/2 without `content-length`) is cut when it passes the limit. A body
/// of exactly the limit passes, and a route's own `max_body_bytes`
/// replaces the listener's.
#[tokio::test]
async fn request_body_over_max_body_bytes_is_413() {
    let w = world().await;
    let path = w.scene.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
    routes:
      - {{ host: big.example.com, upstream: plain, max_body_bytes: 1000 }}
      - {{ upstream: plain }}
    limits: {{ max_body_bytes: 10 }}
upstreams:
  - name: plain
    servers: [http://{}]
"#,
        w.backend.addr
    ));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;

    // HTTP/1.1, declared: 10 bytes pass, 11 never reach the backend.
    let answer = h1_exchange(&w, addr, &[UPLOAD, b"0123456789", GET_THEN_CLOSE].concat()).await;
    assert!(answer.contains(r#""body_bytes":10,"#), "{answer}");
    let before = w.backend.requests.load(SeqCst);
    let over =
        b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 11\r\n\r\n0123456789a";
    let answer = h1_exchange(&w, addr, over).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("request body too large"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(w.backend.requests.load(SeqCst), before);
    // HTTP/1.1, chunked: 10 bytes in two chunks pass; 11 are cut.
    let chunked = |body: &[u8]| -> Vec<u8> {
        let (a, b) = body.split_at(5);
        [
            &b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"[..],
            format!("{:x}\r\n", a.len()).as_bytes(),
            a,
            b"\r\n",
            format!("{:x}\r\n", b.len()).as_bytes(),
            b,
            b"\r\n0\r\n\r\n",
        ]
        .concat()
    };
    let answer = h1_exchange(&w, addr, &chunked(b"0123456789")).await;
    assert!(answer.contains(r#""body_bytes":10,"#), "{answer}");
    let answer = h1_exchange(&w, addr, &chunked(b"0123456789a")).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");

    // HTTP/2, declared: refused before the backend; streamed: cut.
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    let before = w.backend.requests.load(SeqCst);
    let (resp, mut body) = client.send_request(h2_upload(Some(11)), false).unwrap();
    let _ = body.send_data(Bytes::from_static(b"0123456789a"), true);
    let resp = h2_answer(resp).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(w.backend.requests.load(SeqCst), before);
    let mut client = client.ready().await.unwrap();
    let (resp, mut body) = client.send_request(h2_upload(None), false).unwrap();
    body.send_data(Bytes::from_static(b"012345"), false)
        .unwrap();
    let _ = body.send_data(Bytes::from_static(b"6789a"), true);
    let resp = h2_answer(resp).await;
    assert_eq!(resp.status(), 413);

    // The route's own limit: 100 bytes pass there.
    let big = format!(
        "POST /upload HTTP/1.1\r\nhost: big.example.com\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{}",
        "x".repeat(100)
    );
    let answer = h1_exchange(&w, addr, big.as_bytes()).await;
    assert!(answer.contains(r#""body_bytes":100,"#), "{answer}");

    let line = r#"hotproxy_http_requests_total{listener="public",upstream="plain",code="413"} 4"#;
    wait_metric(admin, line, WAIT).await;
}

/// A small upload is read whole before an upstream connection is taken
/// (nginx's request buffering): two clients, one per protocol, that send
/// part of a 10-byte body and wait hold no upstream connection, so a third
/// client's upload is served at once by the one connection hotproxy may
/// open, and neither half-sent request reaches the backend. Each is
/// forwarded once its body is whole. A body over `body_buffer_bytes` is
/// streamed: the backend has its head before its end.
#[tokio::test]
async fn small_upload_is_read_whole_before_an_upstream_is_taken() {
    let w = world().await;
    let mut p = Proxy::start(&one_connection_config(&w, "body_buffer_bytes: 64"));
    let addr = p.listener_addr("public").await;

    let mut slow_h1 = tls(&w, addr, &[b"http/1.1"]).await;
    slow_h1.write_all(&[UPLOAD, b"abc"].concat()).await.unwrap();
    let mut client = h2_client(tls(&w, addr, &[b"h2"]).await).await;
    let (slow_h2, mut slow_h2_body) = client.send_request(h2_upload(Some(10)), false).unwrap();
    slow_h2_body
        .send_data(Bytes::from_static(b"abc"), false)
        .unwrap();

    let answer = h1_exchange(&w, addr, &[UPLOAD, b"0123456789", GET_THEN_CLOSE].concat()).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains(r#""body_bytes":10,"#), "{answer}");
    assert_eq!(
        w.backend.requests.load(SeqCst),
        2,
        "only the whole upload (and the GET after it) reached the backend"
    );

    write_for_200(&mut slow_h1, b"defghij").await;
    slow_h2_body
        .send_data(Bytes::from_static(b"defghij"), true)
        .unwrap();
    let slow_h2 = h2_answer(slow_h2).await;
    assert_eq!(slow_h2.status(), 200);
    let got = h2_body(&mut slow_h2.into_body()).await;
    assert_eq!(&got[..], br#"{"body_bytes":10,"expect":null}"#);

    // A client waiting for `100 Continue` gets it from hotproxy; the
    // upstream gets the body whole and no expectation.
    upload_after_100_continue(&w, addr, b"0123456789").await;

    // Over the cap: streamed, the backend has the head at once.
    let mut big = tls(&w, addr, &[b"http/1.1"]).await;
    big.write_all(
        b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    wait_until(
        WAIT,
        "the streamed upload's head at the backend",
        || async { w.backend.requests.load(SeqCst) == 6 },
    )
    .await;
    write_for_200(&mut big, &[b'x'; 90]).await;

    // Streamed too, the expectation is hotproxy's to answer, never the
    // upstream's: it used to be forwarded on this path, so a backend could
    // answer 417, or a status expecting no body, after the client was told
    // to send.
    upload_after_100_continue(&w, addr, &[b'x'; 100]).await;
}

/// `POST /upload` of `body` with `expect: 100-continue`, on its own
/// HTTP/1.1 connection: the body goes only after the `100 Continue`, and
/// the backend gets all of it and no expectation.
async fn upload_after_100_continue(w: &World, addr: SocketAddr, body: &[u8]) {
    let mut expecting = tls(w, addr, &[b"http/1.1"]).await;
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    expecting.write_all(head.as_bytes()).await.unwrap();
    let head = read_head(&mut expecting).await;
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    expecting.write_all(body).await.unwrap();
    let head = read_head(&mut expecting).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = format!(r#"{{"body_bytes":{},"expect":null}}"#, body.len());
    let mut got = vec![0u8; seen.len()];
    expecting.read_exact(&mut got).await.unwrap();
    assert_eq!(got, seen.as_bytes());
}

/// The tail of a request body left unread (its upstream never took it:
/// the one endpoint accepts TCP and never answers the TLS ClientHello, so
/// the request fails at `connect_timeout`) is that body's, drained after
/// the answer: not the first bytes of a next head. The connection is not
/// cut at `header_read_timeout` for it, no `408` is counted or logged, and
/// it serves a next request after `header_read_timeout` has passed (SPEC:
/// bytes that arrive while a request with a body runs count as its body).
#[tokio::test]
async fn unread_body_tail_is_not_a_next_head() {
    unread_tail_is_drained(b"0\r\n\r\n").await;
}

/// As [`unread_body_tail_is_not_a_next_head`], with a tail hyper drains
/// in several reads: a trailer field of 12,000 bytes, more than hyper's
/// read buffer takes in one read (8 KiB). Every read of it is the body's.
#[tokio::test]
async fn unread_body_tail_in_several_reads_is_not_a_next_head() {
    let tail = format!("0\r\nx-pad: {}\r\n\r\n", "p".repeat(12_000));
    unread_tail_is_drained(tail.as_bytes()).await;
}

/// A chunked POST whose upstream never takes its body, `tail` (its last
/// chunk) sent while the request waits on that upstream: answered `50x`
/// and kept alive, the tail drained as the body's (see
/// [`unread_body_tail_is_not_a_next_head`]).
async fn unread_tail_is_drained(tail: &[u8]) {
    let w = world().await;
    let (silent, dialled) = raw_backend(|mut tcp| async move {
        let mut buf = Vec::new();
        while read_more(&mut tcp, &mut buf).await {}
    })
    .await;
    let hr = Duration::from_secs(1);
    let (path, log) = logged_config(&w, "header_read_timeout: 1s, idle_timeout: 10m");
    edit_config(&path, |text| {
        let routes = "routes: [{ path_prefix: /up, upstream: silent }, { upstream: plain }]";
        let text = text.replace("routes: [{ upstream: plain }]", routes);
        format!(
            "{text}  - name: silent\n    servers: [https://{silent}]\n    connect_timeout: 1s\n"
        )
    });
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    let head = b"POST /up HTTP/1.1\r\nhost: a.example.com\r\ntransfer-encoding: chunked\r\n\r\n";
    s.write_all(&[&head[..], b"5\r\nhello\r\n"].concat())
        .await
        .unwrap();
    // The request is on its way upstream: the last chunk comes in a TLS
    // record of its own, behind the one hyper read ahead.
    wait_until(WAIT, "the upstream dialled", || async {
        dialled.load(SeqCst) == 1
    })
    .await;
    s.write_all(tail).await.unwrap();
    let answer = read_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 50"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // Waiting out header_read_timeout (and as much again) is what is
    // tested: a head timed from the drained tail would be cut by then.
    tokio::time::sleep(2 * hr).await;
    write_for_200(&mut s, b"GET /api HTTP/1.1\r\nhost: a.example.com\r\n\r\n").await;
    let lines = wait_access_log(&log, 2, WAIT).await;
    assert!(lines.iter().all(|l| l["status"] != 408), "{lines:?}");
    let metrics = metrics_text(admin).await;
    assert!(!metrics.contains("code=\"408\""), "{metrics}");
    drop(s);
    drop(p);
}
