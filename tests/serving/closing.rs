//! How connections end: lingering close, freed slots, graceful closes and their cuts.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

/// Lingering close: after answering 431 the proxy keeps reading (and
/// discarding) what the client still sends, so a client in the middle of
/// sending a big head gets to read the 431 instead of a reset (nginx's
/// lingering_close; curl otherwise reports "Broken pipe").
#[tokio::test]
async fn client_still_sending_after_431_is_not_reset() {
    let (w, mut p, addr) = serve("max_header_bytes: 16384").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    let start = format!(
        "GET /api HTTP/1.1\r\nhost: a.example.com\r\nx-big: {}",
        "x".repeat(20 * 1024)
    );
    s.write_all(start.as_bytes()).await.unwrap();
    let reply = read_to_close(&mut s).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // Once hyper is done with the connection (where an abrupt close would
    // happen), the rest of the head, as a client that writes before it reads.
    let port = local_port(&s);
    p.wait_log("hyper finished the connection", |v| {
        v["message"] == "connection ended with error" && peer_is(v, port)
    })
    .await;
    let rest = vec![b'x'; 16 * 1024];
    for i in 0..8 {
        s.write_all(&rest)
            .await
            .unwrap_or_else(|e| panic!("write {i} after the 431 failed: {e}"));
        s.flush().await.unwrap();
    }
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// nginx's `lingering_close on`: a connection our side closed after a
/// request without a body, with nothing more from the client, is closed at
/// once, its slot freed. Told from lingering without a clock: one record
/// the client sends after the close (its socket still open) meets a
/// reset, the proxy's socket being closed; a lingering proxy would read
/// and discard it, and later close with nothing unread, so no reset would
/// ever come. (The bound used to be the gauge at 0 within 4 s, against a
/// linger of 5 s.)
#[tokio::test]
async fn closed_request_without_body_frees_its_slot_at_once() {
    let (w, mut p, addr) = serve("").await;
    let admin = p.admin_addr().await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    s.write_all(b"GET /api HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = read_to_close(&mut s).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // One record more, written once: only a closed socket resets it.
    s.write_all(b"after the close").await.unwrap();
    s.flush().await.unwrap();
    let tcp = s.get_ref().0;
    wait_until(
        WAIT,
        "a reset for the record sent after the close",
        || async { matches!(tcp.take_error(), Ok(Some(_))) },
    )
    .await;
    // The slot goes with the socket (both are let go together).
    wait_no_connections(admin).await;
    drop(s);
}

/// A client still taking the last response when its connection is closed
/// gracefully gets all of it. Once hyper has taken the body's last piece
/// nothing is in flight, so `idle_timeout` runs while what the client has
/// not taken is still held (by h2 for the client's flow-control window, or
/// by hyper's HTTP/1.1 write buffer); the close used to be forced
/// `header_read_timeout` later, dropping that tail (curl: "transfer closed
/// with N bytes remaining"). It is forced once the client has taken
/// nothing for `send_timeout`, as any stalled client is cut.
#[tokio::test]
async fn a_slow_reader_gets_the_whole_response_through_a_graceful_close() {
    let limits = "idle_timeout: 1s, header_read_timeout: 1s, send_timeout: 30s";
    let (w, mut p, addr) = serve(limits).await;
    let tls = tls(&w, addr, &[b"h2"]).await;
    let port = local_port(&tls);
    // A stream window of 16,000 bytes and a 16 KiB body, one piece as
    // hotproxy hands a body over (at most 16 KiB at a time): hyper takes
    // it whole, so the body ends, and h2 holds its last 384 bytes for the
    // client's window.
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(16_000)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let resp = h2_request(&mut client, h2_get("/kib/16", "GET")).await;
    assert_eq!(resp.status(), 200);
    // The body has ended on the proxy's side (idle_timeout only runs with
    // nothing in flight) while the client has taken only its window ...
    p.wait_log("the idle close", |v| {
        v["message"] == "closing connection" && v["reason"] == "idle_timeout" && peer_is(v, port)
    })
    .await;
    // ... and goes on taking nothing past when the close used to be
    // forced (header_read_timeout after it): a slow client's pause.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rx = resp.into_body();
    let mut got = 0;
    while let Some(data) = tokio::time::timeout(WAIT, rx.data()).await.unwrap() {
        let data = data.expect("the response was cut");
        got += data.len();
        rx.flow_control().release_capacity(data.len()).unwrap();
    }
    assert_eq!(got, 16 * 1024, "the response was cut");
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("the connection closes once the response is sent")
        .unwrap()
        .unwrap();
    assert!(
        p.logs()
            .iter()
            .all(|l| !l.contains("graceful close timed out"))
    );
}

/// At shutdown an HTTP/2 connection with no stream in flight is closed
/// through its GOAWAY, not dropped while h2 still holds the end of its
/// last response for the client's window: hyper took the body whole (so
/// it ended, nothing in flight) and h2 holds its last 384 bytes. The
/// client, reading slowly, gets all of it, then the close. (bee4aa5 let
/// such a connection go once its GOAWAY was written, cutting that end.)
#[tokio::test]
async fn a_slow_reader_gets_the_whole_last_response_through_the_shutdown() {
    let limits = "send_timeout: 30s";
    let (w, mut p, addr, log) = serve_logged(limits).await;
    let tls = tls(&w, addr, &[b"h2"]).await;
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(16_000)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let resp = h2_request(&mut client, h2_get("/kib/16", "GET")).await;
    assert_eq!(resp.status(), 200);
    // The response has ended on the proxy's side: its line is written.
    wait_access_log(&log, 1, WAIT).await;
    p.signal("TERM");
    p.wait_log("shutdown began", |v| {
        v["message"] == "shutting down: no new connections, draining open ones"
    })
    .await;
    let mut rx = resp.into_body();
    let mut got = 0;
    while let Some(data) = tokio::time::timeout(WAIT, rx.data()).await.unwrap() {
        let data = data.expect("the response was cut");
        got += data.len();
        rx.flow_control().release_capacity(data.len()).unwrap();
    }
    assert_eq!(got, 16 * 1024, "the response was cut");
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("the connection closes once the response is sent")
        .unwrap()
        .ok();
    assert!(p.wait_exit(WAIT).await.success());
}

/// `max_connection_lifetime` bounds a request that never ends (a
/// server-sent-events stream, a gRPC server stream) on a connection made
/// with rotated-out material: the graceful close waits for what is in
/// flight, and that stream kept the connection, and the identity it was
/// admitted with, for as long as it ran. What is still in flight
/// `shutdown_grace` after the close began is cut (Envoy's drain timeout).
#[tokio::test]
async fn a_stream_on_rotated_out_material_is_cut_after_shutdown_grace() {
    let w = world().await;
    let cfg = config(&w, "", "max_connection_lifetime: 1s");
    edit_config(&cfg, one_second_grace);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    let port = local_port(&s);
    s.write_all(b"GET /stall HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    rotate_certificate(&w, &mut p).await;
    tokio::time::timeout(WAIT, read_to_close(&mut s))
        .await
        .expect("the stream is cut");
    wait_in_flight_cut(&mut p, port).await;
    wait_bodies_released(&w, 1).await;
}

/// A request hotproxy cuts itself before its response head came is logged
/// and counted as one whose client went away: `499` (SPEC §2, the access
/// log). Here `max_connection_lifetime` after a rotation: `/hold`, never
/// answered, is still in flight `shutdown_grace` after the graceful close
/// began.
#[tokio::test]
async fn a_request_hotproxy_cuts_before_its_head_is_499() {
    let w = world().await;
    let (cfg, log) = logged_config(&w, "max_connection_lifetime: 1s");
    edit_config(&cfg, one_second_grace);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    let port = local_port(&s);
    s.write_all(b"GET /hold HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    wait_until(WAIT, "the request held upstream", || async {
        w.backend.held.load(SeqCst) == 1
    })
    .await;
    rotate_certificate(&w, &mut p).await;
    wait_in_flight_cut(&mut p, port).await;
    assert!(read_to_close(&mut s).await.is_empty(), "an answer came");
    wait_until(WAIT, "the line of GET /hold", || async {
        read_access_log(&log).iter().any(|v| v["path"] == "/hold")
    })
    .await;
    let lines = read_access_log(&log);
    let v = lines.iter().find(|v| v["path"] == "/hold").unwrap();
    assert_eq!(v["status"], 499, "{v}");
    assert_eq!(v["upstream"], "plain", "{v}");
    assert!(v["upstream_ms"].is_null(), "{v}");
    let m = metrics_text(admin).await;
    let counted =
        r#"hotproxy_http_requests_total{listener="public",upstream="plain",code="499"} 1"#;
    assert!(m.lines().any(|l| l == counted), "{m}");
}

/// An HTTP/2 connection closed gracefully for idleness waits on its
/// client: h2 takes new streams until the client acknowledges the PING
/// sent with the first `GOAWAY`. A client that never does, and opens a
/// stream that never ends, kept a listener a reload removed serving its
/// routes: the listener's close did not start the `shutdown_grace` cut on
/// a connection already closing. What is in flight is cut after the grace.
#[tokio::test]
async fn an_idle_closed_h2_connection_is_cut_when_its_listener_is_removed() {
    let w = world().await;
    let cfg = config(&w, "", "idle_timeout: 1s");
    // A second listener, so that removing `public` leaves one.
    let spare = "listeners:\n  - name: spare\n    bind: 127.0.0.1:0\n    tls: { certs: [{ cert_file: a.crt, key_file: a.key }] }\n    routes: [{ upstream: plain }]\n";
    let text = edit_config(&cfg, |text| {
        one_second_grace(text).replacen("listeners:\n", spare, 1)
    });
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let mut s = h2_raw_request(&w, addr, &hpack_get("/api")).await;
    let port = local_port(&s);
    // The answer, then (idle_timeout) the graceful close's GOAWAY, whose
    // PING this client never acknowledges.
    while next_frame(&mut s).await.0 != GOAWAY {}
    // GET https://a.example.com/stall (END_STREAM | END_HEADERS).
    s.write_all(&h2_frame(HEADERS, 0x5, 3, &hpack_get("/stall")))
        .await
        .unwrap();
    loop {
        let (kind, _, stream, _) = next_frame(&mut s).await;
        if kind == HEADERS && stream == 3 {
            break;
        }
    }
    let (listeners, upstreams) = text.split_once("upstreams:").unwrap();
    let (kept, _) = listeners.split_once("  - name: public").unwrap();
    std::fs::write(&cfg, format!("{kept}upstreams:{upstreams}")).unwrap();
    p.wait_log("removed", |v| v["message"] == "listener removed")
        .await;
    wait_in_flight_cut(&mut p, port).await;
    read_to_close(&mut s).await;
}

/// `header_read_timeout` times an HTTP/2 connection's first request only
/// (nginx's `client_header_timeout` covers the same); a later header block
/// is not timed on its own, but the connection has no request in flight
/// while it arrives, so `idle_timeout` closes it. A client that trickles
/// the bytes of a CONTINUATION frame it never completes (h2's own limit
/// counts whole frames only; no stream exists, nothing of ours answers
/// it) cannot hold the connection.
#[tokio::test]
async fn an_h2_header_block_never_ended_is_closed_by_idle_timeout() {
    let limits = "idle_timeout: 1s, header_read_timeout: 1s, send_timeout: 1s";
    let (w, mut p, addr) = serve(limits).await;
    // GET https://a.example.com/api, then the first 3 bytes of a request
    // on stream 3 whose END_HEADERS never comes.
    let block = hpack_get("/api");
    let mut s = h2_raw_request(&w, addr, &block).await;
    let port = local_port(&s);
    loop {
        let (kind, flags, stream, _) = next_frame(&mut s).await;
        if stream == 1 && flags & 0x1 != 0 {
            break;
        }
        assert_ne!(kind, GOAWAY, "closed before the first answer");
    }
    let mut out = h2_frame(HEADERS, 0x1, 3, &block[..3]);
    // A CONTINUATION frame of 1000 bytes, of which only the head is sent.
    out.extend(&h2_frame(CONTINUATION, 0, 3, &[b'a'; 1000])[..9]);
    s.write_all(&out).await.unwrap();
    let (mut rx, mut tx) = tokio::io::split(s);
    let closed = tokio::spawn(async move { read_to_close(&mut rx).await });
    // One byte of it a tenth of a second, for at most 20 s (the bound
    // read_to_close gives the close).
    for _ in 0..200 {
        if closed.is_finished() || tx.write_all(b"a").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    closed.await.unwrap();
    p.wait_log("our close", |v| {
        v["message"] == "graceful close timed out; closing connection" && peer_is(v, port)
    })
    .await;
}

/// The text of a [`config`] with `shutdown_grace: 1s`: what is in flight
/// at a graceful close is cut a second later.
fn one_second_grace(text: String) -> String {
    text.replace("shutdown_grace: 30s", "shutdown_grace: 1s")
}

/// Wait for the cut of the connection from local port `port`: it still had
/// a request in flight `shutdown_grace` after its graceful close began.
async fn wait_in_flight_cut(p: &mut Proxy, port: u16) {
    p.wait_log("the cut", |v| {
        v["message"] == "graceful close timed out with a request in flight; closing connection"
            && peer_is(v, port)
    })
    .await;
}

/// `idle_timeout: 0s` turns keep-alive off (nginx's `keepalive_timeout 0`):
/// an HTTP/1.1 response says `Connection: close` and the connection closes
/// after it. The request stays in flight until the client sends its body,
/// once the backend has it, and is still answered in full. The header read
/// timeout is longer than the test's wait, so no timer closes it.
#[tokio::test]
async fn idle_timeout_zero_closes_h1_after_the_response() {
    let (w, _p, addr) = serve("idle_timeout: 0s, header_read_timeout: 60s").await;
    let mut s = tls(&w, addr, &[b"http/1.1"]).await;
    // Chunked: streamed to the backend (a body of known length this
    // small would be read whole first).
    s.write_all(
        b"POST /upload HTTP/1.1\r\nhost: a.example.com\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    wait_backend_requests(&w, 1).await;
    s.write_all(b"5\r\nhello\r\n0\r\n\r\n").await.unwrap();
    let reply = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    let (head, _) = reply.split_once("\r\n\r\n").expect("a whole head");
    assert!(head.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case("connection: close")),
        "{head}"
    );
    assert_eq!(body_json(&reply)["body_bytes"], 5, "{reply}");
}

/// The same on HTTP/2: once the streams in flight have been answered (one
/// held open by its client until the backend has it), the connection is
/// closed gracefully (`GOAWAY`) at once, not at the next timer
/// (`header_read_timeout` is longer than the wait).
#[tokio::test]
async fn idle_timeout_zero_sends_h2_goaway_after_the_open_streams() {
    let (w, _p, addr) = serve("idle_timeout: 0s, header_read_timeout: 60s").await;
    let (mut client, conn) = h2_with_conn(&w, addr).await;
    let (resp, mut body) = client
        .send_request(h2_get("/upload", "POST"), false)
        .unwrap();
    wait_backend_requests(&w, 1).await;
    body.send_data(Bytes::from_static(b"hello"), true).unwrap();
    let mut resp = h2_answer(resp).await;
    assert_eq!(resp.status(), 200);
    let seen: serde_json::Value = serde_json::from_slice(&h2_body(resp.body_mut()).await).unwrap();
    assert_eq!(seen["body_bytes"], 5, "{seen}");
    let ended = tokio::time::timeout(WAIT, conn)
        .await
        .expect("the connection closed once its stream was answered")
        .unwrap();
    if let Err(e) = ended {
        assert!(e.is_go_away(), "{e}");
        assert_eq!(e.reason(), Some(h2::Reason::NO_ERROR), "{e}");
    }
}

/// Wait until the plain backend has received `n` requests.
async fn wait_backend_requests(w: &World, n: usize) {
    let what = format!("{n} requests at the backend");
    wait_until(WAIT, &what, || async {
        w.backend.requests.load(SeqCst) == n
    })
    .await;
}

/// An HTTP/2 connection closing gracefully (here for idleness) whose
/// client never acknowledges the `GOAWAY`'s PING: h2 takes its new streams
/// until it does, and each was served, for as long as the close lasted.
/// Once the client has had the PING `header_read_timeout`, a new stream is
/// refused (`RST_STREAM` `REFUSED_STREAM`, which a client may retry on
/// another connection), while the stream already in flight is served to
/// its end.
#[tokio::test]
async fn an_h2_client_that_never_answers_the_close_ping_has_new_streams_refused() {
    const DATA: u8 = 0;
    let limits = "idle_timeout: 1s, header_read_timeout: 1s";
    let (w, mut p, addr) = serve(limits).await;
    let mut s = h2_raw_request(&w, addr, &hpack_get("/api")).await;
    let port = local_port(&s);
    // Room for every answer this test reads (it never updates the window).
    s.write_all(&h2_frame(
        WINDOW_UPDATE,
        0,
        0,
        &0x7fff_0000u32.to_be_bytes(),
    ))
    .await
    .unwrap();
    // The answer, then (idle_timeout) the graceful close's GOAWAY, whose
    // PING this client never acknowledges.
    while next_frame(&mut s).await.0 != GOAWAY {}
    // GET /kib/128 on stream 3: the first 64 KiB less a byte come (the
    // stream's window), the rest waits for a WINDOW_UPDATE: a stream in
    // flight.
    s.write_all(&h2_frame(HEADERS, 0x5, 3, &hpack_get("/kib/128")))
        .await
        .unwrap();
    let mut got = 0;
    while got < 65535 {
        if let (DATA, _, 3, body) = next_frame(&mut s).await {
            got += body.len();
        }
    }
    // New streams, one at a time, a tenth of a second apart, until one is
    // refused (served for at most 20 s: the close has no end of its own
    // while stream 3 is in flight).
    let refused = crate::support::h2raw::streams_until_refused(&mut s, 5, &hpack_get("/api"))
        .await
        .expect("new streams served 20 s into the close, none refused");
    p.wait_log("the refusal", |v| {
        v["message"] == "closing connection: PING unanswered; refusing new streams"
            && peer_is(v, port)
    })
    .await;
    // Stream 3, begun before, is still served: the rest of its body.
    s.write_all(&h2_frame(WINDOW_UPDATE, 0, 3, &0x20000u32.to_be_bytes()))
        .await
        .unwrap();
    loop {
        let (kind, flags, stream, payload) = next_frame(&mut s).await;
        if stream == 3 {
            assert_ne!(
                kind, RST_STREAM,
                "stream 3 reset after stream {refused} was refused"
            );
            if kind == DATA {
                got += payload.len();
            }
            if flags & 0x1 != 0 {
                break;
            }
        }
    }
    assert_eq!(got, 128 * 1024);
    // The refused stream never reached the upstream: streams 1, 3 and
    // those served before it did.
    assert_eq!(
        w.backend.requests.load(SeqCst),
        (refused as usize - 5) / 2 + 2
    );
}

/// The refusal comes `header_read_timeout` after the `GOAWAY`'s PING went
/// out, as SPEC §1 says, not up to twice that: the driver noted the PING
/// out only at its next look, `header_read_timeout` after the close began
/// (or at a stall look, every half `send_timeout`), and a stream opened
/// 1.5 times `header_read_timeout` after the `GOAWAY` came was still
/// served. One opened as the `GOAWAY` comes is served.
#[tokio::test]
async fn new_streams_are_refused_header_read_timeout_after_the_close_ping_went_out() {
    use crate::support::h2raw::refused;
    const HEADER_READ: Duration = Duration::from_secs(2);
    // send_timeout long: no stall look during the test.
    let limits = "idle_timeout: 1s, header_read_timeout: 2s, send_timeout: 60s";
    let (w, mut p, addr) = serve(limits).await;
    let mut s = h2_raw_request(&w, addr, &hpack_get("/api")).await;
    let port = local_port(&s);
    // The answer, then (idle_timeout) the graceful close's GOAWAY, whose
    // PING (out with it) this client never acknowledges.
    while next_frame(&mut s).await.0 != GOAWAY {}
    let goaway = tokio::time::Instant::now();
    assert!(
        !refused(&mut s, 3, &hpack_get("/api")).await,
        "a stream opened as the GOAWAY came was refused"
    );
    tokio::time::sleep_until(goaway + HEADER_READ * 3 / 2).await;
    assert!(
        refused(&mut s, 5, &hpack_get("/api")).await,
        "a stream opened 1.5 x header_read_timeout after the GOAWAY was served"
    );
    p.wait_log("the refusal", |v| {
        v["message"] == "closing connection: PING unanswered; refusing new streams"
            && peer_is(v, port)
    })
    .await;
    assert_eq!(w.backend.requests.load(SeqCst), 2, "streams 1 and 3");
}

/// The `GOAWAY` of a close at once names the last header block the client
/// completed, also one no request came of: a header list over
/// `max_header_bytes` is answered `431` by the HTTP/2 layer itself, the
/// service never sees it, so at SIGTERM the connection is closed at once
/// as one whose first request has not come, and its `GOAWAY` names stream
/// 1 (RFC 9113 §6.8: the highest stream the sender may have acted on; it
/// answered that one), not 0, which would tell the client that stream 1,
/// answered, was not processed and may be sent again.
#[tokio::test]
async fn an_at_once_goaway_names_a_stream_answered_431_before_any_request() {
    let (w, mut p, addr) = serve("max_header_bytes: 1024").await;
    // GET https://a.example.com/api with a 3,000-byte x-big (literal,
    // incremental indexing): over the limit, within four times it.
    let mut block = hpack_get("/api");
    block.extend_from_slice(&[0x40, 5]);
    block.extend_from_slice(b"x-big");
    block.extend_from_slice(&[0x7f, 0xb9, 0x16]); // length 3,000
    block.extend(std::iter::repeat_n(b'v', 3000));
    let mut s = h2_raw_request(&w, addr, &block).await;
    loop {
        let (kind, flags, stream, payload) = next_frame(&mut s).await;
        assert_ne!(kind, GOAWAY, "{payload:?}");
        if kind == HEADERS && stream == 1 {
            // `:status: 431` as h2 encodes it; END_STREAM.
            assert_eq!(payload, [0x48, 0x83, 0x69, 0x90, 0xff]);
            assert_eq!(flags & 0x1, 0x1, "the stream ends with the 431");
            break;
        }
    }
    term_closes_at_once(&mut p, &mut s, "first").await;
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// SIGTERM, then the connection `s` closed at once: its `GOAWAY` names
/// stream 1, no error, and the log says it was closed before its `which`
/// (`first` or `next`) request.
async fn term_closes_at_once(p: &mut Proxy, s: &mut Tls, which: &str) {
    let port = local_port(s);
    p.signal("TERM");
    let got = read_to_close(s).await;
    assert_eq!(h2_goaway(&got), Some((1, 0)), "{got:?}");
    let said = format!("closing connection: shutting down before its {which} request");
    p.wait_log("the close at once", |v| {
        v["message"] == said.as_str() && peer_is(v, port)
    })
    .await;
}

/// An HTTP/2 `GET /kib/64` (65,536 bytes, one more than the client's
/// windows) read up to its window: 65,535 bytes of DATA on stream 1,
/// the last byte held in h2, the body ended on the proxy's side (its
/// access-log line written). The connection, and the bytes read.
async fn held_for_the_window(
    w: &World,
    addr: std::net::SocketAddr,
    log: &std::path::Path,
) -> (Tls, usize) {
    let mut s = h2_raw_request(w, addr, &hpack_get("/kib/64")).await;
    let mut got = 0;
    while got < 65535 {
        if let (0, _, 1, body) = next_frame(&mut s).await {
            got += body.len();
        }
    }
    wait_access_log(log, 1, WAIT).await;
    (s, got)
}

/// `first` (frames, or none), a PING, then `stream`'s HEADERS, the first
/// three bytes of `block`, its CONTINUATION to come, in one write; back
/// once the PING's answer says all were read.
async fn begin_block_behind_a_ping(s: &mut Tls, mut first: Vec<u8>, stream: u32, block: &[u8]) {
    const PING: u8 = 6;
    first.extend(h2_frame(PING, 0, 0, b"barrier!"));
    first.extend(h2_frame(HEADERS, 0x1, stream, &block[..3]));
    s.write_all(&first).await.unwrap();
    while next_frame(s).await != (PING, 0x1, 0, b"barrier!".to_vec()) {}
}

/// SIGTERM on an HTTP/2 connection part way into its next header block
/// while h2 still holds the end of the last response for the client's
/// flow-control window: that body has ended on our side (nothing in
/// flight), its stream has not. SPEC §1: the end of a response held for
/// the window is still sent. The client may send no frame but the
/// block's CONTINUATION before it opens the window, and does once the
/// GOAWAY comes; then it opens the window and gets the rest. (It was
/// closed at once, as with nothing in flight: GOAWAY naming stream 1,
/// the response's last byte never sent.)
#[tokio::test]
async fn the_end_of_a_response_held_for_the_window_outlives_a_shutdown_mid_header_block() {
    const DATA: u8 = 0;
    let (w, p, addr, log) = serve_logged("").await;
    let (mut s, mut got) = held_for_the_window(&w, addr, &log).await;
    let block = hpack_get("/api");
    begin_block_behind_a_ping(&mut s, Vec::new(), 3, &block).await;
    p.signal("TERM");
    while next_frame(&mut s).await.0 != GOAWAY {}
    let mut out = h2_frame(CONTINUATION, 0x4, 3, &block[3..]);
    out.extend(h2_frame(WINDOW_UPDATE, 0, 0, &0x10000u32.to_be_bytes()));
    out.extend(h2_frame(WINDOW_UPDATE, 0, 1, &0x10000u32.to_be_bytes()));
    s.write_all(&out).await.unwrap();
    loop {
        let (kind, flags, stream, payload) = next_frame(&mut s).await;
        if stream == 1 {
            assert_ne!(kind, RST_STREAM, "stream 1 reset");
            if kind == DATA {
                got += payload.len();
            }
            if flags & 0x1 != 0 {
                break;
            }
        }
    }
    assert_eq!(got, 64 * 1024, "the response was cut");
}

/// A stream the client resets while h2 holds its response's end for the
/// window never has that end written, and is over: at SIGTERM, with
/// nothing in flight and the next header block begun, the connection is
/// closed at once (SPEC §1), its `GOAWAY` naming stream 1. (The reset
/// stream was counted as an end still held, for good: the close was
/// graceful, its PING never answered, the connection kept until
/// `header_read_timeout`.)
#[tokio::test]
async fn a_reset_stream_whose_end_was_held_does_not_hold_off_a_close_at_once() {
    let (w, mut p, addr, log) = serve_logged("header_read_timeout: 60s").await;
    let (mut s, _) = held_for_the_window(&w, addr, &log).await;
    // Stream 1 reset (CANCEL) first.
    let reset = h2_frame(RST_STREAM, 0, 1, &8u32.to_be_bytes());
    begin_block_behind_a_ping(&mut s, reset, 3, &hpack_get("/api")).await;
    term_closes_at_once(&mut p, &mut s, "next").await;
}

/// SIGTERM on an HTTP/2 connection part way into its next header block
/// while h2 holds a response's last DATA for the client's window with its
/// trailers (gRPC's `grpc-status`) behind it: that body has ended on our
/// side, its stream has not, and SPEC §1 still sends both. Ninety-nine
/// answers of 32 KiB the client does not read yet (its receive buffer
/// small) fill the socket, so the
/// `/trailers` answer (1 KiB, then trailers) waits in h2; then the client
/// shrinks the stream windows (SETTINGS_INITIAL_WINDOW_SIZE 8; the fillers
/// had theirs opened further), which holds that DATA for the window, and
/// begins stream 201's header block. It reads the fillers to their ends,
/// SIGTERM, then the CONTINUATION and a WINDOW_UPDATE: the DATA and the
/// trailers come. (It was closed at once: an end on trailers was never
/// counted as one still to send.)
#[tokio::test]
async fn trailers_held_behind_the_window_outlive_a_shutdown_mid_header_block() {
    const DATA: u8 = 0;
    const PING: u8 = 6;
    const FILLERS: u32 = 99;
    let (w, p, addr, log) = serve_logged("").await;
    // A small receive buffer: the proxy's socket fills sooner.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(addr).await.unwrap();
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let name = rustls::pki_types::ServerName::try_from("a.example.com").unwrap();
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let mut s = connector.connect(name, tcp).await.unwrap();
    let mut out = [PREFACE, EMPTY_SETTINGS].concat();
    out.extend(h2_frame(WINDOW_UPDATE, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    for id in (1..2 * FILLERS).step_by(2) {
        out.extend(h2_frame(HEADERS, 0x5, id, &hpack_get("/kib/32")));
        out.extend(h2_frame(WINDOW_UPDATE, 0, id, &65535u32.to_be_bytes()));
    }
    s.write_all(&out).await.unwrap();
    wait_access_log(&log, FILLERS as usize, WAIT).await;
    let trailed = 2 * FILLERS + 1;
    let mut block = hpack_get("/trailers");
    block.extend_from_slice(b"\x00\x02te\x08trailers");
    s.write_all(&h2_frame(HEADERS, 0x5, trailed, &block))
        .await
        .unwrap();
    wait_access_log(&log, FILLERS as usize + 1, WAIT).await;
    // Windows 8 bytes (the fillers' 65,543), a PING, then the next
    // HEADERS with its CONTINUATION to come, in one write.
    let next = hpack_get("/api");
    let mut out = h2_frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 8]);
    out.extend(h2_frame(PING, 0, 0, b"barrier!"));
    out.extend(h2_frame(HEADERS, 0x1, trailed + 2, &next[..3]));
    s.write_all(&out).await.unwrap();
    let (mut ended, mut pinged, mut got, mut heads) = (0, false, 0, 0);
    while ended < FILLERS || !pinged {
        let (kind, flags, stream, payload) = next_frame(&mut s).await;
        assert_ne!(kind, RST_STREAM, "stream {stream} reset");
        match (kind, stream) {
            (PING, 0) => pinged |= payload == b"barrier!",
            (DATA, id) if id == trailed => got += payload.len(),
            (HEADERS, id) if id == trailed => heads += 1,
            (DATA, _) if flags & 0x1 != 0 => ended += 1,
            _ => {}
        }
    }
    assert!(
        got < 1024,
        "the DATA was held for the window: {got} bytes came"
    );
    p.signal("TERM");
    loop {
        match next_frame(&mut s).await {
            (GOAWAY, ..) => break,
            (DATA, _, id, payload) if id == trailed => got += payload.len(),
            (HEADERS, _, id, _) if id == trailed => heads += 1,
            _ => {}
        }
    }
    let mut out = h2_frame(CONTINUATION, 0x4, trailed + 2, &next[3..]);
    out.extend(h2_frame(
        WINDOW_UPDATE,
        0,
        trailed,
        &0x10000u32.to_be_bytes(),
    ));
    s.write_all(&out).await.unwrap();
    loop {
        let (kind, flags, stream, payload) = next_frame(&mut s).await;
        if stream == trailed {
            assert_ne!(kind, RST_STREAM, "the trailed stream reset");
            match kind {
                DATA => got += payload.len(),
                HEADERS => heads += 1,
                _ => {}
            }
            if flags & 0x1 != 0 {
                assert_eq!(kind, HEADERS, "ended by its trailers");
                break;
            }
        }
    }
    assert_eq!((got, heads), (1024, 2), "the DATA, then the trailers");
}
