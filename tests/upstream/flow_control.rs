//! HTTP/2 flow control: unread responses stay bounded and stall no one; bodies stream both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// Clients that stop reading large responses from a shared HTTP/2
/// upstream connection hold up only their own streams: another client's
/// download on the same connection goes on. With hyper's client windows
/// (2 MiB a stream, 5 MiB the whole connection) three unread responses
/// took the connection's whole window, and every other response on it
/// stalled until `read_timeout` (60 s), which then retired the connection:
/// one slow reader on a mobile link held up every client behind that
/// backend connection.
#[tokio::test]
async fn clients_that_stop_reading_do_not_stall_others_on_a_shared_h2_connection() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // One upstream connection, then eight downloads of 8 MiB on it from one
    // client connection that reads nothing (its windows stay at HTTP/2's
    // initial 64 KiB).
    warm_up(&w, addr).await;
    let mut stalled = h2_to(&w, addr).await;
    let unread = heads(send_all(&mut stalled, (0..8).map(|_| "/mebibytes/8".into())).await).await;
    wait_until(WAIT, "every unread download has begun", || async {
        b.bulk_sent.load(Ordering::SeqCst) >= 8 * 64 * 1024
    })
    .await;
    // Another client's 4 MiB over the same upstream connection.
    let r = tokio::time::timeout(WAIT, h1_get(&w, addr, "/mebibytes/4"))
        .await
        .expect("a download beside unread ones is not held up");
    assert_eq!((r.status, r.body.len()), (200, 4 << 20));
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "one shared connection"
    );
    drop(unread);
}

/// What a client that opens every stream on large responses from an
/// HTTP/2 upstream and reads nothing makes hotproxy hold stays bounded:
/// each stream's upstream window (128 KiB) and client-side queue (32 KiB),
/// about 16 MB for 100 streams. The connection window that lets no unread
/// stream hold up the others (100 streams' worth) is no licence to buffer:
/// a stream window of hyper's 2 MiB would make this 200 MB.
#[tokio::test]
async fn a_client_that_never_reads_h2_upstream_responses_holds_bounded_memory() {
    let w = world();
    let (b, mut p, addr) = behind_proxy(&w, &[]).await;
    // One upstream connection first, which all 100 streams then share.
    warm_up(&w, addr).await;
    let before = rss_kib(p.pid());
    let mut client = h2_to(&w, addr).await;
    let unread = send_all(&mut client, (0..100).map(|_| "/mebibytes/8".into())).await;
    wait_until(WAIT, "all 100 downloads have begun", || async {
        b.bulk_sent.load(Ordering::SeqCst) >= 100 * 64 * 1024
    })
    .await;
    // Watch it while the upstream pours in what the windows allow.
    let grown = peak_rss_kib(p.pid()).await.saturating_sub(before);
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        grown < 40 * 1024,
        "one non-reading client grew hotproxy by {grown} KiB ({sent} bytes sent by the upstream)"
    );
    // What the windows let in, counted, not sampled in time: after more
    // requests in turn (a span of the proxy's own work, which a slow
    // machine lengthens; to the admin listener, as the upstream connection
    // is full), each stream has
    // had at most its upstream window (128 KiB), the client's window it
    // was sent on (64 KiB), its queue (32 KiB) and one 64 KiB piece the
    // backend queued past its window: a 2 MiB window would pour in the
    // whole 800 MiB asked for.
    let admin = p.admin_addr().await;
    for _ in 0..20 {
        metrics_text(admin).await;
    }
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        sent <= 100 * (128 + 64 + 32 + 64) * 1024,
        "{sent} bytes sent by the upstream to 100 streams nobody reads"
    );
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        1,
        "one shared connection"
    );
    drop(unread);
}

/// A request body and its response body stream at the same time, as in
/// a gRPC bidirectional call: each message the client sends comes back
/// before it sends the next, over an HTTP/2 upstream and over an HTTP/1.1
/// one (chunked both ways). A proxy that waited for the whole request
/// body, or held the response until the request ended, deadlocks here.
#[tokio::test]
async fn request_and_response_bodies_stream_both_ways_at_once() {
    let w = world();
    let (mut p, _h1, _h2) = h1_and_h2_upstreams(&w, "").await;
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(&w, addr).await;
    for path in ["/h1/echo", "/h2/echo"] {
        let req = http::Request::post(format!("https://a.example.com{path}"))
            .header("te", "trailers")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        let (resp, mut tx) = client.send_request(req, false).unwrap();
        tx.send_data(Bytes::from_static(b"ping 0"), false).unwrap();
        let resp = tokio::time::timeout(WAIT, resp)
            .await
            .expect("a response head while the request body goes on")
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let mut rx = resp.into_body();
        for i in 0..3 {
            let message = format!("ping {i}");
            if i > 0 {
                tx.send_data(Bytes::from(message.clone()), false).unwrap();
            }
            let mut got = Vec::new();
            while got.len() < message.len() {
                let piece = tokio::time::timeout(WAIT, rx.data())
                    .await
                    .unwrap_or_else(|_| panic!("{path}: {message:?} not echoed"))
                    .expect("the response goes on")
                    .unwrap();
                let _ = rx.flow_control().release_capacity(piece.len());
                got.extend_from_slice(&piece);
            }
            assert_eq!(String::from_utf8_lossy(&got), message, "{path}");
        }
        // The end of the request ends the response (an empty last piece
        // may come first).
        tx.send_data(Bytes::new(), true).unwrap();
        loop {
            match tokio::time::timeout(WAIT, rx.data()).await.unwrap() {
                None => break,
                Some(Ok(piece)) if piece.is_empty() => continue,
                other => panic!("{path}: {other:?} after the end"),
            }
        }
    }
}

/// `http2_stream_window_bytes` is what one stream may have in flight
/// unread: with 2 MiB, a backend sends a client that does not read more
/// than 2 MiB before it waits (with the default 128 KiB it waits after
/// a few hundred KiB), which is what a far backend needs to fill a long
/// round trip.
#[tokio::test]
async fn http2_stream_window_bytes_sets_what_one_stream_has_in_flight() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &["http2_stream_window_bytes: 2097152"]).await;
    let mut client = h2_to(&w, addr).await;
    let unread = send_all(&mut client, ["/mebibytes/8".to_owned()]).await;
    wait_until(
        WAIT,
        "2 MiB in flight to a client that reads nothing",
        || async { b.bulk_sent.load(Ordering::SeqCst) >= 2 << 20 },
    )
    .await;
    // And not much more: the window holds. An absence shows over a span,
    // counted here in the proxy's own work (requests in turn, on the same
    // upstream connection, which so keeps moving), not in wall-clock time.
    for _ in 0..20 {
        assert_eq!(send(addr, &w, "GET", "").await.0, 200);
    }
    // 2 MiB, plus what the client's 64 KiB window took, the proxy's piece
    // in hand and one 64 KiB piece the backend queued past its window.
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        sent <= (2 << 20) + (512 << 10),
        "{sent} bytes sent to a client that reads nothing: the window did not hold"
    );
    drop(unread);
}

/// An HTTP/2 backend that answers each request (`200`, `ok`) as soon as
/// its head is in and reads its body after that, on a task of its own, as
/// an application that has what it needs from the head does. Returns its
/// address and the count of request bodies it has read to their end.
async fn early_answering_h2(w: &World) -> (SocketAddr, Arc<AtomicUsize>) {
    let (listener, acceptor) = tls_listener(&w.backend_pair, b"h2").await;
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(AtomicUsize::new(0));
    let counted = bodies.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let counted = counted.clone();
                    tokio::spawn(async move {
                        if req.into_body().collect().await.is_ok() {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                    let ok = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                    std::future::ready(Ok::<_, std::convert::Infallible>(ok))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, bodies)
}

/// Read from `s` until what came ends with `end`.
async fn read_until_end<S: AsyncRead + Unpin>(s: &mut S, end: &[u8]) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(end) {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("the answer in time")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// An upstream that answers before it has the whole request body ends
/// the response while the client still sends that body. Over HTTP/2 the
/// body goes on upstream after the response, and the client's bytes that
/// come then are still that request's body (SPEC: bytes that arrive while
/// a request with a body runs count as its body), not the start of a next
/// request head: `header_read_timeout` does not cut the connection, and
/// no `408` is counted or logged for a head nobody sent. It was: the
/// request stopped counting as running when its response ended.
#[tokio::test]
async fn the_rest_of_a_body_after_an_early_answer_is_no_request_head() {
    let w = world();
    let (backend, bodies) = early_answering_h2(&w).await;
    let log = w.scene.path("access.log");
    let mut p = Proxy::start(&w.scene.config(&format!(
        r#"
access_log: {{ path: {}, format: json }}
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
    routes: [{{ upstream: app }}]
    limits: {{ header_read_timeout: 1s, idle_timeout: 60s }}
upstreams:{}
"#,
        log.display(),
        backend_upstream("app", &[backend], &[]),
    )));
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;

    // 10 bytes of 100000 with the head, the whole answer, then the rest.
    let mut uploading = connect(addr, "a.example.com", h1_config(&w)).await.unwrap();
    let head = b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 100000\r\n\r\n";
    uploading
        .write_all(&[&head[..], b"0123456789"].concat())
        .await
        .unwrap();
    let answer = read_until_end(&mut uploading, b"\r\n\r\nok").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    uploading.write_all(&[b'x'; 99_990]).await.unwrap();
    wait_until(WAIT, "the backend has the whole body", || async {
        bodies.load(Ordering::SeqCst) == 1
    })
    .await;

    // A client that begins a head only now and stops is cut by the same
    // header_read_timeout, later than a clock started by the body would
    // have cut the upload: once its 408 is in, that time has passed.
    let mut stalled = connect(addr, "a.example.com", h1_config(&w)).await.unwrap();
    let stalled_addr = stalled.get_ref().0.local_addr().unwrap().to_string();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\n")
        .await
        .unwrap();
    wait_until(WAIT, "the stalled head's 408 in the access log", || async {
        read_access_log(&log)
            .iter()
            .any(|l| l["status"] == 408 && l["client_addr"] == stalled_addr.as_str())
    })
    .await;
    let line = r#"hotproxy_http_requests_total{listener="public",upstream="",code="408"} 1"#;
    let metrics = metrics_text(admin).await;
    assert!(metrics.lines().any(|l| l == line), "{metrics}");

    // The upload's connection is open and serves its next request.
    uploading
        .write_all(b"GET /next HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_end(&mut uploading, b"\r\n\r\nok").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let lines = wait_access_log(&log, 3, WAIT).await;
    let statuses: Vec<_> = lines.iter().map(|l| l["status"].clone()).collect();
    assert_eq!(statuses, [200, 408, 200], "{lines:#?}");
}

/// How [`early_answering_never_reading_h2`] answers a request with a body.
#[derive(Clone, Copy)]
enum Early {
    /// `200`, `ok`, the response's end.
    Whole,
    /// A `200` head, then nothing more (the response never ends).
    HeadOnly,
    /// A `200` head with this many more fields, then `ok` and the end.
    Fields(usize),
}

/// An HTTP/2 backend that allows one stream at a time and answers each
/// request as soon as its head is in (one without a body: `200`, `ok`;
/// one with a body: as `early` says), then neither takes the rest of its
/// body nor resets it: what arrives it reads but never releases, so the
/// stream's flow-control window never opens again. Returns its address
/// and, per stream, how it ended: the reset's reason, the connection
/// closed, or the body's end; and `connection closed` when a connection
/// ends.
async fn early_answering_never_reading_h2(
    w: &World,
    early: Early,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (listener, acceptor) = tls_listener(&w.backend_pair, b"h2").await;
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, ended) = (acceptor.clone(), ended.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::Builder::new()
                    .max_concurrent_streams(1)
                    .handshake::<_, Bytes>(tls)
                    .await
                else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let early = match req.body().is_end_stream() {
                        true => Early::Whole,
                        false => early,
                    };
                    let mut ok = http::Response::builder();
                    if let Early::Fields(n) = early {
                        for i in 0..n {
                            ok = ok.header(format!("x-field-{i}"), "1");
                        }
                    }
                    if !matches!(early, Early::HeadOnly) {
                        ok = ok.header("content-length", "2");
                    }
                    let Ok(mut tx) = respond.send_response(ok.body(()).unwrap(), false) else {
                        continue;
                    };
                    if !matches!(early, Early::HeadOnly) {
                        let _ = tx.send_data(Bytes::from_static(b"ok"), true);
                    }
                    let ended = ended.clone();
                    tokio::spawn(async move {
                        // Kept: the response of a head-only answer stays open.
                        let _tx = tx;
                        let mut body = req.into_body();
                        let end = loop {
                            match body.data().await {
                                // Kept unreleased: no WINDOW_UPDATE.
                                Some(Ok(_)) => {}
                                Some(Err(e)) => match e.reason() {
                                    Some(reason) => break format!("reset {reason:?}"),
                                    None => break format!("closed: {e}"),
                                },
                                None => break "the body's end".to_owned(),
                            }
                        };
                        let _ = ended.send(end);
                    });
                }
                let _ = ended.send("connection closed".to_owned());
            });
        }
    });
    (addr, ends)
}

/// An HTTP/2 upstream that answers early and then never takes the rest
/// of the request body (no WINDOW_UPDATE, no RST_STREAM): hyper holds a
/// piece of the body waiting for window that never opens and reads no
/// more of it, so `body_read_timeout` never fired, the client's HTTP/1.1
/// connection stayed busy (no `idle_timeout` either) for good, and the
/// stream stayed open upstream while the pool counted it gone. Now the
/// body is cut when it has not moved for `body_read_timeout` after the
/// response: the stream is reset (`CANCEL`), the client's connection
/// closes (the rest of its body is not read), and the connection's one
/// stream serves the next request.
#[tokio::test]
async fn an_h2_upstream_that_answers_early_and_never_takes_the_body_is_cut() {
    let w = world();
    let (backend, mut ends) = early_answering_never_reading_h2(&w, Early::Whole).await;
    let mut p = proxy_cutting_bodies_after(&w, backend, "1s", &[]);
    let addr = p.listener_addr("public").await;

    // A streamed body (over body_buffer_bytes), more of it than one
    // stream's window (65535) sent, more still to come.
    let (mut from_proxy, writer) = begin_upload(&w, addr).await;
    let answer = read_until_end(&mut from_proxy, b"\r\n\r\nok").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");

    // The client's connection is let go: closed, the body unread.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, from_proxy.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the client's connection is still held by a body the upstream never takes"
    );
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let end = tokio::time::timeout(WAIT, ends.recv())
        .await
        .expect("the upstream stream was never reset")
        .unwrap();
    assert_eq!(end, "reset CANCEL");
    drop(writer);

    // The one connection allowed, with its one stream free, serves on.
    next_is_served(&w, addr, "stream").await;
}

/// A proxy in front of `backend` (upstream `app`, one connection allowed,
/// `settings` more) whose clients' bodies may pause 10 minutes: no cut
/// seen in a test comes from `body_read_timeout`.
fn one_connection_proxy(w: &World, backend: SocketAddr, settings: &[&str]) -> Proxy {
    proxy_cutting_bodies_after(w, backend, "10m", settings)
}

/// A proxy in front of `backend` (upstream `app`, one connection allowed,
/// `settings` more) whose clients' bodies may pause `body_read_timeout`.
fn proxy_cutting_bodies_after(
    w: &World,
    backend: SocketAddr,
    body_read_timeout: &str,
    settings: &[&str],
) -> Proxy {
    let mut settings = settings.to_vec();
    settings.push("max_connections_per_server: 1");
    Proxy::start(&w.scene.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
    routes: [{{ upstream: app }}]
    limits: {{ body_read_timeout: {body_read_timeout} }}
upstreams:{}
"#,
        backend_upstream("app", &[backend], &settings),
    )))
}

/// Begin an HTTP/1.1 upload to `addr` of a 1000000-byte body (streamed,
/// over `body_buffer_bytes`), 200000 bytes of it sent: more than one
/// HTTP/2 stream's window (65535), more still to come. Returns the
/// connection's read half and its writer (dropped: the write half goes).
async fn begin_upload(
    w: &World,
    addr: SocketAddr,
) -> (
    impl AsyncRead + Unpin,
    tokio::task::JoinHandle<impl Send + 'static>,
) {
    let uploading = connect(addr, "a.example.com", h1_config(w)).await.unwrap();
    let (from_proxy, mut to_proxy) = tokio::io::split(uploading);
    let head = b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 1000000\r\n\r\n";
    let writer = tokio::spawn(async move {
        to_proxy.write_all(head).await.unwrap();
        let _ = to_proxy.write_all(&[b'x'; 200_000]).await;
        to_proxy
    });
    (from_proxy, writer)
}

/// An upload begun ([`begin_upload`]) through a [`one_connection_proxy`]
/// (`settings` more) to an [`early_answering_never_reading_h2`] backend
/// answering as `early`: the proxy, its address, the upload's read half
/// and writer, and how the backend's streams and connections end.
async fn upload_to_early_h2(
    w: &World,
    early: Early,
    settings: &[&str],
) -> (
    Proxy,
    SocketAddr,
    impl AsyncRead + Unpin,
    tokio::task::JoinHandle<impl Send + 'static>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (backend, ends) = early_answering_never_reading_h2(w, early).await;
    let mut p = one_connection_proxy(w, backend, settings);
    let addr = p.listener_addr("public").await;
    let (from_proxy, writer) = begin_upload(w, addr).await;
    (p, addr, from_proxy, writer, ends)
}

/// The proxy at `addr` serves a next request (`200`, `ok`) in time: the
/// backend's one connection, or its one stream, is free again. Else
/// panics that the request got no `what`.
async fn next_is_served(w: &World, addr: SocketAddr, what: &str) {
    let r = tokio::time::timeout(WAIT, h1_get(w, addr, "/next"))
        .await
        .unwrap_or_else(|_| panic!("the next request got no {what}"));
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
}

/// Wait for `what` among how the backend's streams and connections ended.
async fn ended(ends: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(end) = ends.recv().await {
            if end == what {
                return;
            }
            seen.push(end);
        }
    })
    .await;
    assert!(found.is_ok(), "no {what:?} at the backend (seen: {seen:?})");
}

/// An HTTP/2 upstream that sends a response head and then goes silent
/// while the request's body waits for a window it never opens:
/// `read_timeout` retires the connection, and it closes at once, as a
/// retired connection does when its last stream ends. It was held (with
/// its server slot) until the body had not moved for `body_read_timeout`,
/// one to two times it, after the response had failed: here 10 minutes.
#[tokio::test]
async fn an_h2_upstream_silent_after_its_head_is_closed_though_the_body_waits() {
    let w = world();
    let (_p, addr, mut from_proxy, writer, mut ends) =
        upload_to_early_h2(&w, Early::HeadOnly, &["read_timeout: 1s"]).await;
    let answer = read_until_end(&mut from_proxy, b"\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");

    // read_timeout ends the response; the connection goes with it.
    ended(&mut ends, "connection closed").await;
    drop(writer);

    // The one connection allowed is free again.
    next_is_served(&w, addr, "connection").await;
}

/// An HTTP/2 upstream answers early with more header fields than a
/// response may have (`502`), then takes no more of the request's body:
/// hyper's task sending it is cut at once (the stream reset, `CANCEL`).
/// It went on waiting for window, unwatched, for good: the stream open
/// upstream, uncounted in the pool, the backend's one stream taken.
#[tokio::test]
async fn a_body_to_an_h2_response_with_too_many_fields_is_cut() {
    let w = world();
    let (_p, addr, mut from_proxy, writer, mut ends) =
        upload_to_early_h2(&w, Early::Fields(100), &[]).await;
    // The head, and the start of its body with it.
    let mut answer = Vec::new();
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, from_proxy.read(&mut buf))
            .await
            .expect("the answer in time")
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");

    ended(&mut ends, "reset CANCEL").await;
    drop(writer);

    // The backend's one stream is free again.
    next_is_served(&w, addr, "stream").await;
}
