//! An HTTP/2 server shutting down with GOAWAY: unprocessed requests go again, elsewhere.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::raw_h2::*;
use crate::support::*;

/// The test's cue to [`going_away`], and what that backend tells it back.
#[derive(Default)]
struct Cue {
    /// Say `GOAWAY` now, after the first answer, before any next request.
    go: tokio::sync::Notify,
    /// The numbers of the connections the client has closed, in order.
    closed: std::sync::Mutex<Vec<usize>>,
    /// Notified with each entry of `closed`.
    changed: tokio::sync::Notify,
}

impl Cue {
    /// Wait until the client has closed connection `n`.
    async fn closed(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.closed.lock().unwrap().contains(&n) {
                return;
            }
            changed.await;
        }
    }
}

/// A raw HTTP/2 backend shutting down as Go's and nginx's servers do: on
/// each connection it answers the first request (`200`, body `connection
/// N`) and meets the next with `GOAWAY(NO_ERROR)` whose last stream id is
/// the first's: RFC 9113 §6.8 says that request was not processed. With a
/// `cue`, it says that `GOAWAY` after its first answer when the test says
/// `go` (a server told to shut down between requests), and tells the test
/// when the client closes a connection. Returns its address and its
/// accepted connections.
async fn going_away(pair: &TestPair, cue: Option<Arc<Cue>>) -> (SocketAddr, Arc<AtomicUsize>) {
    raw_h2(pair, settings(&[]), move |mut tls, n| {
        let cue = cue.clone();
        async move {
            let mut answered: Option<u32> = None;
            while let Some((kind, _, stream)) = next_acking(&mut tls).await {
                match (kind, answered) {
                    (1, None) => {
                        let _ = tls.write_all(&naming(n, stream)).await;
                        answered = Some(stream);
                        // Frames the client sends meanwhile wait
                        // unread; it needs no answer to them.
                        if let Some(cue) = &cue {
                            cue.go.notified().await;
                            let _ = tls.write_all(&goaway(stream)).await;
                        }
                    }
                    // The next: GOAWAY naming the first as the last
                    // processed; then read on until the client closes
                    // (closing with its bytes unread would reset the
                    // connection, and the GOAWAY with it).
                    (1, Some(last)) => {
                        let _ = tls.write_all(&goaway(last)).await;
                    }
                    _ => {}
                }
            }
            if let Some(cue) = &cue {
                cue.closed.lock().unwrap().push(n);
                cue.changed.notify_waiters();
            }
        }
    })
    .await
}

/// A request that an HTTP/2 backend's `GOAWAY` names as not processed (its
/// stream is past the last stream id: a pod shutting down gracefully under
/// load) is sent again on a new connection, whatever its method, when its
/// body can be sent twice. With one endpoint (a Service's ClusterIP), it
/// was a `502` on every rolling restart. Each time is counted in
/// `hotproxy_upstream_resends_total` (it used to be seen nowhere).
#[tokio::test]
async fn a_request_an_h2_goaway_left_unprocessed_is_sent_again() {
    let w = world();
    let (backend, accepted) = going_away(&w.backend_pair, None).await;
    let (mut p, addr) = proxy_for(&w, backend).await;
    let admin = p.admin_addr().await;
    let mut send = h1_sender(&w, addr).await;
    for (method, body, expect) in [
        ("GET", "", "connection 0"),
        // Stream 3 on connection 0, refused by its GOAWAY; not processed,
        // so even a POST goes again, to connection 1.
        ("POST", "order=1", "connection 1"),
    ] {
        let (status, got) = exchange(&mut send, h1_request(method, "/x", body)).await;
        assert_eq!((status, &got[..]), (200, expect.as_bytes()), "{method}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Counted before it went again, so before its answer came.
    let resent = "hotproxy_upstream_resends_total{upstream=\"app\"} 1";
    let m = metrics_text(admin).await;
    assert!(m.lines().any(|l| l == resent), "{m}");
    // A body streamed, not read whole (over body_buffer_bytes), cannot be
    // sent twice: a 502 that says why.
    let req = h1_request("POST", "/x", vec![b'x'; 20_000]);
    assert_eq!(exchange_head(&mut send, req).await.status(), 502);
    p.wait_log("upstream request failed", |v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("before processing the request: GOAWAY NO_ERROR"))
    })
    .await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A server that has said `GOAWAY` before the next request (shutting down
/// between requests) takes no new stream on that connection: the next
/// request, even one whose streamed body could not be sent twice, goes on
/// a new connection and is served.
///
/// "Before" means read by the proxy: the test waits until the proxy has
/// closed the connection, which its HTTP/2 client does once it has read
/// the `GOAWAY` (and from then on it opens no stream there). The backend
/// used to put the `GOAWAY` in the same write as the first answer, and
/// the test sent the next request at once: about 1 run in 20 the `GOAWAY`
/// was read while a request waited in hyper for its stream, and hyper
/// dropped it ("dispatch task is gone", a `502`), the first `POST` even
/// after the backend had answered it. Such a request may have been
/// processed (nothing says it was not: no `REFUSED_STREAM`, no `GOAWAY`
/// last stream id seen for it, RFC 9113 §8.7), so a `POST` is not sent
/// again (SPEC, Upstream connection pool): a race the test was not about,
/// not a request to recover.
#[tokio::test]
async fn after_an_h2_goaway_the_next_request_takes_a_new_connection() {
    let w = world();
    let cue = Arc::new(Cue::default());
    let (backend, accepted) = going_away(&w.backend_pair, Some(cue.clone())).await;
    let (p, addr) = proxy_for(&w, backend).await;
    let mut send = h1_sender(&w, addr).await;
    // What the proxy said about its upstream attempts, should it differ.
    let said = || {
        p.logs()
            .into_iter()
            .filter(|l| l.contains("upstream") || l.contains("retry"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (body, expect) in [(0, "connection 0"), (20_000, "connection 1")] {
        // 20,000 bytes: over body_buffer_bytes, streamed, not replayable.
        let req = h1_request("POST", "/x", vec![b'x'; body]);
        let (status, got) = exchange(&mut send, req).await;
        assert_eq!(
            (status, String::from_utf8_lossy(&got).as_ref()),
            (200, expect),
            "{body} bytes\n{}",
            said()
        );
        if body == 0 {
            // Answered: the server shuts down, and the proxy reads it.
            cue.go.notify_one();
            cue.closed(0).await;
        }
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A raw HTTP/2 backend that, on each connection, reads the first
/// request's `HEADERS` and drops the connection without an answer (a
/// process that crashes on the request). Returns its address and the
/// requests it read.
async fn crashing_h2(pair: &TestPair) -> (SocketAddr, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let (addr, _) = raw_h2(pair, settings(&[]), move |mut tls, _| {
        let count = count.clone();
        async move {
            // A request: the connection is dropped with it.
            while let Some((kind, _, _)) = next_acking(&mut tls).await {
                if kind == 1 {
                    count.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    })
    .await;
    (addr, requests)
}

/// SPEC: a request goes to its endpoint a second time only when a reused
/// or shared connection closed before answering it. An HTTP/2 connection
/// dialled for a request that closes on that request says the endpoint
/// may have failed on it (a query of death): the client gets `502` and
/// the backend sees it once, as over HTTP/1.1. It used to be sent again on
/// another new connection, reaching the backend twice.
#[tokio::test]
async fn a_new_h2_connection_closed_on_a_request_is_not_retried_on_its_endpoint() {
    let w = world();
    let (backend, requests) = crashing_h2(&w.backend_pair).await;
    let (_p, addr) = proxy_for(&w, backend).await;
    let (status, body) = send(addr, &w, "GET", "").await;
    assert_eq!((status, body.as_str()), (502, "upstream unavailable\n"));
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the request reached the backend again"
    );
}

/// A raw HTTP/2 backend that answers the first request on each connection
/// (`200`, body `connection N`) and refuses every later one on it
/// (`RST_STREAM(REFUSED_STREAM)`, the connection left open: a server that
/// sheds load per connection). Returns its address, and its connections
/// still open with a signal of each change.
async fn refusing_after_one(
    pair: &TestPair,
) -> (SocketAddr, Arc<(AtomicUsize, tokio::sync::Notify)>) {
    let open = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
    let count = open.clone();
    let (addr, _) = raw_h2(pair, settings(&[]), move |mut tls, n| {
        let count = count.clone();
        async move {
            count.0.fetch_add(1, Ordering::SeqCst);
            let mut answered = false;
            while let Some((kind, _, stream)) = next_acking(&mut tls).await {
                if kind == 1 {
                    let out = if std::mem::replace(&mut answered, true) {
                        refused(stream)
                    } else {
                        naming(n, stream)
                    };
                    let _ = tls.write_all(&out).await;
                }
            }
            count.0.fetch_sub(1, Ordering::SeqCst);
            count.1.notify_waiters();
        }
    })
    .await;
    (addr, open)
}

/// SPEC (Upstream connection pool): a request an HTTP/2 upstream refused
/// goes again on a new connection, which is shared like any other only
/// while the pool holds fewer than `max_idle_connections` idle ones;
/// otherwise it closes once its request ends. Each such connection used
/// to be shared and stay open until `idle_timeout`, although the refusing
/// connection, first in the pool, took every next request: one connection
/// more per refusal, until `max_connections_per_server` was full and
/// requests got the connection limit's `504`.
#[tokio::test]
async fn connections_opened_for_refused_h2_requests_do_not_pile_up() {
    let w = world();
    let (backend, open) = refusing_after_one(&w.backend_pair).await;
    let settings = [
        "max_idle_connections: 2",
        "max_connections_per_server: 5",
        "connect_timeout: 1s",
    ];
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", backend, &settings));
    let addr = p.listener_addr("public").await;
    let mut send = h1_sender(&w, addr).await;
    for i in 0..12 {
        let (status, got) = exchange(&mut send, h1_request("GET", "/x", "")).await;
        let got = String::from_utf8_lossy(&got);
        assert_eq!(status, 200, "request {i}: {got}");
        assert!(got.starts_with("connection "), "request {i}: {got}");
    }
    // None in flight: the two idle ones the pool keeps stay open, no more.
    let settled = tokio::time::timeout(WAIT, async {
        loop {
            let changed = open.1.notified();
            if open.0.load(Ordering::SeqCst) <= 2 {
                return;
            }
            changed.await;
        }
    })
    .await;
    let left = open.0.load(Ordering::SeqCst);
    assert!(settled.is_ok(), "{left} connections left open");
}

/// A pool whose first HTTP/2 connection refuses every stream
/// (`REFUSED_STREAM`, the connection left open: a server process stuck
/// on it, its later connections served) dials once more, for the first
/// request sent again, and then serves every request on that new
/// connection: the refusing one takes no new request and closes. It used
/// to stay first in the pool, every request refused on it and sent again
/// on a connection of its own: one dial more per request.
#[tokio::test]
async fn a_connection_refusing_every_stream_is_not_used_again() {
    let w = world();
    // Connection 0 refuses every request; the others answer each.
    let (backend, accepted) = answering_h2(&w.backend_pair, |n, stream| {
        if n == 0 {
            refused(stream)
        } else {
            naming(n, stream)
        }
    })
    .await;
    let (_p, addr) = proxy_for(&w, backend).await;
    let mut send = h1_sender(&w, addr).await;
    for i in 0..6 {
        let (status, got) = exchange(&mut send, h1_request("GET", "/x", "")).await;
        let got = String::from_utf8_lossy(&got);
        assert_eq!((status, &*got), (200, "connection 1"), "request {i}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A raw HTTP/2 backend on its way down: its connections numbered below
/// `serving` (from 0) each leave every request unprocessed, the even ones
/// with `GOAWAY(NO_ERROR)` naming no stream processed (last stream id 0),
/// the odd ones with `RST_STREAM(REFUSED_STREAM)`; the later ones answer
/// each (`200`, body `connection N`). Returns its address and its
/// accepted connections.
async fn unprocessed_before(pair: &TestPair, serving: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    answering_h2(pair, move |n, stream| {
        if n >= serving {
            naming(n, stream)
        } else if n % 2 == 0 {
            goaway(0)
        } else {
            refused(stream)
        }
    })
    .await
}

/// SPEC (Upstream connection pool): a request that the new connection it
/// was sent again on left unprocessed too goes once more, on one more new
/// connection. A pod on its way down says so on the new connection as
/// well (its `GOAWAY` after its first answer there, a batch of streams it
/// refuses together): here its first connection says `GOAWAY` and its
/// second refuses the stream, and the third serves it. With one endpoint
/// (or the retry budget spent) it used to be a `502` for a request no
/// endpoint processed: a request was sent again once per attempt.
#[tokio::test]
async fn a_request_its_new_connection_left_unprocessed_too_is_sent_once_more() {
    let w = world();
    let (backend, accepted) = unprocessed_before(&w.backend_pair, 2).await;
    let (mut p, addr) = proxy_for(&w, backend).await;
    let admin = p.admin_addr().await;
    // A body read whole: it can be sent each time.
    let (status, body) = send(addr, &w, "POST", "order=1").await;
    assert_eq!((status, body.as_str()), (200, "connection 2"));
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    let resent = "hotproxy_upstream_resends_total{upstream=\"app\"} 2";
    let m = metrics_text(admin).await;
    assert!(m.lines().any(|l| l == resent), "{m}");
}

/// ... and never on more than two new connections: an endpoint that
/// leaves every request unprocessed gets it three times in all, and the
/// client a `502`.
#[tokio::test]
async fn a_request_is_sent_again_on_two_new_connections_at_most() {
    let w = world();
    let (backend, accepted) = unprocessed_before(&w.backend_pair, usize::MAX).await;
    let (_p, addr) = proxy_for(&w, backend).await;
    let (status, body) = send(addr, &w, "GET", "").await;
    assert_eq!((status, body.as_str()), (502, "upstream unavailable\n"));
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// What [`draining_after_one`] tells the test, and is told.
#[derive(Default)]
struct Draining {
    /// Its first connection's first request is in, and held.
    held: tokio::sync::Notify,
    /// Say `GOAWAY` now.
    go: tokio::sync::Notify,
    /// The proxy has read that `GOAWAY` (it acknowledged the `PING` sent
    /// after it: h2 reads frames in order).
    read: tokio::sync::Notify,
    /// Answer the held request now.
    finish: tokio::sync::Notify,
}

/// A raw HTTP/2 backend draining its first connection as a pod on its way
/// down does: it holds that connection's first request (`held`), and when
/// the test says `go`, says `GOAWAY(NO_ERROR)` naming it the last stream it
/// will process (it is still answered, when the test says `finish`) and a
/// `PING` after it, whose acknowledgement it tells the test (`read`).
/// What the client sends meanwhile waits unread. Its later connections
/// answer each request (`200`, body `connection N`).
async fn draining_after_one(pair: &TestPair, cue: Arc<Draining>) -> SocketAddr {
    let (addr, _) = raw_h2(pair, settings(&[]), move |mut tls, n| {
        let cue = cue.clone();
        async move {
            // The stream held on the first connection.
            let mut held = 0;
            while let Some((kind, flags, stream)) = next_acking(&mut tls).await {
                let out = match (kind, n) {
                    (1, 0) => {
                        held = stream;
                        cue.held.notify_one();
                        cue.go.notified().await;
                        [goaway(stream), h2_frame(6, 0, 0, &[0; 8])].concat()
                    }
                    // The PING's ACK.
                    (6, 0) if flags & 1 == 1 => {
                        cue.read.notify_one();
                        cue.finish.notified().await;
                        naming(0, held)
                    }
                    (1, _) => naming(n, stream),
                    _ => continue,
                };
                let _ = tls.write_all(&out).await;
            }
        }
    })
    .await;
    addr
}

/// SPEC (Health, Metrics): a request an HTTP/2 connection hands back never
/// written (the server's `GOAWAY` read, the connection taking no new
/// stream, the request handed to it before the proxy saw that) is one the
/// endpoint never saw: sent to another endpoint, it is no passive-health
/// failure nor an upstream error of its own. It used to count as a
/// `protocol` failure: with `consecutive_failures: 1` a pod draining
/// gracefully was ejected, its next request sent elsewhere.
///
/// The `GOAWAY` comes after a request served by the other pod, not at
/// once: read while hyper's HTTP/2 client was still handing the held
/// request over, it failed that request with the `GOAWAY` (hyper looks at
/// the connection's state again after opening the stream), which a test of
/// a request never written is not about.
#[tokio::test]
async fn a_request_never_written_on_a_draining_h2_connection_is_no_failure() {
    let w = world();
    let cue = Arc::new(Draining::default());
    let draining = draining_after_one(&w.backend_pair, cue.clone()).await;
    let other = Backend::start("b", &w.backend_pair, None).await;
    let settings = [
        "balance: round_robin",
        "health: { passive: { consecutive_failures: 1, eject_for: 60s } }",
    ];
    let upstream = backend_upstream("app", &[draining, other.addr], &settings);
    let mut p = Proxy::start(
        &w.scene
            .public_config("\n      - { upstream: app }", &upstream),
    );
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    // Round robin: the first request goes to the draining pod, and is held.
    let held = {
        let mut send = h1_sender(&w, addr).await;
        tokio::spawn(async move { exchange(&mut send, h1_request("GET", "/x", "")).await })
    };
    tokio::time::timeout(WAIT, cue.held.notified())
        .await
        .expect("the first request is held");
    let mut send = h1_sender(&w, addr).await;
    let mut served_by = Vec::new();
    for i in 0..4 {
        if i == 1 {
            cue.go.notify_one();
            tokio::time::timeout(WAIT, cue.read.notified())
                .await
                .expect("the proxy read the GOAWAY");
        }
        let (status, body) = exchange(&mut send, h1_request("GET", "/x", "")).await;
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "{body}");
        served_by.push(if body.contains("\"backend\":\"b\"") {
            "b".into()
        } else {
            body
        });
    }
    // The second went to the draining pod's connection, which took no new
    // stream, and on to the other pod; the fourth to the draining pod
    // again, still in service, on a new connection.
    assert_eq!(served_by, ["b", "b", "b", "connection 1"]);
    cue.finish.notify_one();
    let (status, body) = tokio::time::timeout(WAIT, held).await.unwrap().unwrap();
    assert_eq!((status, &body[..]), (200, &b"connection 0"[..]));
    let m = metrics_text(admin).await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("hotproxy_upstream_errors_total{")),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l == "hotproxy_upstream_endpoints{upstream=\"app\",state=\"ejected\"} 0"),
        "{m}"
    );
}

/// A raw HTTP/2 backend that reads the first request on each connection
/// whole (its `HEADERS` and body, to `END_STREAM`), then says
/// `GOAWAY(NO_ERROR)` naming `last` the last stream it processed and ends
/// the connection unanswered: `close_notify`, then it reads on until the
/// client closes (so the `GOAWAY` is read, and before the end). Returns
/// its address and the requests it read.
async fn goaway_after_first(pair: &TestPair, last: u32) -> (SocketAddr, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let (addr, _) = raw_h2(pair, h2_frame(4, 0, 0, &[]), move |mut tls, _| {
        let count = count.clone();
        async move {
            while let Some((kind, flags, _)) = next_frame(&mut tls).await {
                match kind {
                    // SETTINGS, not an ACK: acknowledge.
                    4 if flags & 1 == 0 => {
                        let _ = tls.write_all(&h2_frame(4, 1, 0, &[])).await;
                    }
                    1 => {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
                // HEADERS or DATA with END_STREAM: the request is in.
                if matches!(kind, 0 | 1) && flags & 1 == 1 {
                    let _ = tls.write_all(&goaway(last)).await;
                    let _ = tls.shutdown().await;
                    while next_frame(&mut tls).await.is_some() {}
                    return;
                }
            }
        }
    })
    .await;
    (addr, requests)
}

/// RFC 9113 §6.8: a stream at or below a `GOAWAY`'s last stream id may
/// have been processed. A `POST` (its body read whole, so it could be
/// sent twice) that the backend read, named in its `GOAWAY` (last stream
/// id 1) and then closed the connection on unanswered is the client's
/// `502`: the other endpoint never sees it, nor does the first a second
/// time. With last stream id 0 it was provably not processed: sent to the
/// other endpoint, and answered.
#[tokio::test]
async fn a_post_at_or_below_an_h2_goaway_last_stream_id_is_not_resent() {
    for (last, status, elsewhere) in [(1, 502, 0), (0, 200, 1)] {
        let w = world();
        let (first, requests) = goaway_after_first(&w.backend_pair, last).await;
        let other = Backend::start("b", &w.backend_pair, None).await;
        // Round robin: the first request goes to `first`.
        let upstream = backend_upstream("app", &[first, other.addr], &["balance: round_robin"]);
        let mut p = Proxy::start(
            &w.scene
                .public_config("\n      - { upstream: app }", &upstream),
        );
        let addr = p.listener_addr("public").await;
        let (got, body) = send(addr, &w, "POST", "order=1").await;
        assert_eq!(got, status, "last stream id {last}: {body}");
        assert_eq!(requests.load(Ordering::SeqCst), 1, "last stream id {last}");
        assert_eq!(other.requests_for("/x"), elsewhere, "last stream id {last}");
    }
}
