//! Shared HTTP/2 upstream connections: stream limits, cold bursts, waiting for a free stream, streams reset for bad answers.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::common::*;
use crate::support::*;

/// An HTTP/2 upstream connection is shared: concurrent requests from
/// several clients become streams of one connection.
#[tokio::test]
async fn h2_upstream_connection_is_shared() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // Warm: the first connection exists before the concurrent burst.
    let r = h1_get(&w, addr, "/").await;
    assert_eq!(r.json()["version"], "HTTP/2.0");
    // One authority per request: `:authority` is what was routed on (the
    // client's Host), never the upstream server's address, and no `host`
    // field goes beside it.
    assert_eq!(r.json()["authority"], "a.example.com");
    assert!(r.json()["headers"].get("host").is_none(), "{}", r.body);
    // Ten requests the backend holds until all ten are in flight at once.
    let tasks: Vec<_> = (0..10).map(|_| spawn_get(&w, addr, "/burst/10")).collect();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

/// A server's `SETTINGS_MAX_CONCURRENT_STREAMS` below hotproxy's 100 caps
/// what one connection carries; the pool opens another for the rest (as
/// Envoy's and Go's do) instead of hyper queueing them one behind the
/// other on the first.
#[tokio::test]
async fn a_servers_stream_limit_opens_more_connections_instead_of_queueing() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // Before the proxy's first connection: the backend's settings hold
    // for connections it accepts from now on.
    b.h2_max_streams.store(1, Ordering::SeqCst);
    // Two in turn: the second is handed over after the server's SETTINGS
    // (they came before the first response) were read.
    for _ in 0..2 {
        let r = h1_get(&w, addr, "/").await;
        assert_eq!(
            (
                r.json()["version"].as_str(),
                r.json()["connection"].as_u64()
            ),
            (Some("HTTP/2.0"), Some(0))
        );
    }
    // Two requests the backend holds until both are in flight at once:
    // the first connection, whose limit of one is known, is full with
    // one, so the other needs a connection of its own.
    let burst: Vec<_> = (0..2).map(|_| spawn_get(&w, addr, "/burst/2")).collect();
    let mut used = Vec::new();
    for t in burst {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        used.push(r.json()["connection"].as_u64().unwrap());
    }
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 2, "two requests at once shared {used:?}");
}

/// A burst of requests on a cold HTTP/2 upstream: the first few dial, the
/// rest wait for a connection, and one shared HTTP/2 connection serves
/// them all. A new HTTP/2 connection woke one waiting request, as a
/// returned HTTP/1.1 connection does, so all but a dozen of 60 waited out
/// `connect_timeout` and got `504` ("no connection to the server free").
#[tokio::test]
async fn a_burst_on_a_cold_h2_upstream_is_served_by_shared_connections() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // Sent in one go, they reach the proxy together; the dials they start
    // are held until as many run as may at once, so the rest wait.
    b.hold_handshakes.send_replace(true);
    let mut client = h2_to(&w, addr).await;
    let burst = send_all(&mut client, (0..60).map(|i| format!("/burst/60/{i}"))).await;
    wait_until(WAIT, "eight dials in progress", || async {
        b.accepted.load(Ordering::SeqCst) == 8
    })
    .await;
    b.hold_handshakes.send_replace(false);
    let statuses = statuses(burst).await;
    let refused = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(refused, 0, "{statuses:?}");
    // At most the dials one cold start runs at once.
    let accepted = b.accepted.load(Ordering::SeqCst);
    assert!((1..=8).contains(&accepted), "{accepted} connections");
}

/// With every connection `max_connections_per_server` allows open and
/// full (a server allowing one stream at a time), a request waits for a
/// stream to end on one of them and is served then. A stream's end woke
/// nobody, so each waiting request got `504` after `connect_timeout`
/// however soon a stream was free.
#[tokio::test]
async fn a_request_waiting_on_full_h2_connections_takes_the_next_free_stream() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &["max_connections_per_server: 1"]).await;
    b.h2_max_streams.store(1, Ordering::SeqCst);
    // The server's limit is read with the first response.
    warm_up(&w, addr).await;
    let mut client = h2_to(&w, addr).await;
    // The one stream: a call the client keeps open (its request body
    // goes on), echoed back piece by piece; one piece back shows it
    // open at the backend.
    let req = http::Request::post("https://a.example.com/echo")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (resp, mut tx) = client.send_request(req, false).unwrap();
    tx.send_data(Bytes::from_static(b"one"), false).unwrap();
    let resp = tokio::time::timeout(WAIT, resp)
        .await
        .expect("the call's response head")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut rx = resp.into_body();
    echoed(&mut rx, "one").await;
    // Two requests behind it wait for its stream. One more piece of the
    // call, sent after them, comes back only once the proxy has read
    // their HEADERS (a connection's frames are read in order) and passed
    // the piece on: by then they are waiting.
    let waiting = send_all(&mut client, (0..2).map(|i| format!("/x/{i}"))).await;
    tx.send_data(Bytes::from_static(b"two"), false).unwrap();
    echoed(&mut rx, "two").await;
    // The call ends; the stream is free; both are served on it in turn.
    tx.send_data(Bytes::new(), true).unwrap();
    while let Some(piece) = tokio::time::timeout(WAIT, rx.data()).await.unwrap() {
        assert!(piece.unwrap().is_empty(), "the call went on after its end");
    }
    assert_eq!(statuses(waiting).await, [200, 200]);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

/// A burst of streamed calls (gRPC's shape: a body of unknown length, so
/// none can be sent twice) on a cold HTTP/2 upstream whose server allows
/// five streams at once: every call is served. A new connection was shared
/// before the server's SETTINGS were read, as if it allowed hotproxy's 100,
/// so the server refused the streams past its five (`REFUSED_STREAM`), and
/// those calls, whose bodies could not be sent again, got `502`.
#[tokio::test]
async fn a_cold_burst_keeps_to_the_servers_stream_limit() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &[]).await;
    // Before the proxy's first connection: it holds for every connection.
    b.h2_max_streams.store(5, Ordering::SeqCst);
    let mut client = h2_to(&w, addr).await;
    // All heads first (they reach the proxy together), then each body.
    let mut calls = Vec::new();
    for _ in 0..30 {
        let req = http::Request::post("https://a.example.com/echo")
            .body(())
            .unwrap();
        client = client.ready().await.unwrap();
        calls.push(client.send_request(req, false).unwrap());
    }
    for (_, tx) in &mut calls {
        tx.send_data(Bytes::from_static(b"call"), true).unwrap();
    }
    let mut statuses = Vec::new();
    for (resp, _tx) in calls {
        let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 200 {
            echoed(&mut resp.into_body(), "call").await;
        }
    }
    assert_eq!(statuses, [200; 30]);
}

/// Streams hotproxy's h2 resets itself because of what the upstream sent
/// (here a response head over 64 KiB: that request's `502`, SPEC §6) do
/// not add up to the end of the connection they share. h2 counted every
/// one and, past hyper's 1024 on a connection, sent GOAWAY
/// (`ENHANCE_YOUR_CALM`) and closed it: the streams in flight on it
/// failed with it, and the next request needed a new connection.
#[tokio::test]
async fn streams_reset_for_bad_responses_do_not_close_the_shared_h2_connection() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &["max_connections_per_server: 1"]).await;
    // A call kept open across the whole run (its request body goes on),
    // echoed back piece by piece.
    let mut client = h2_to(&w, addr).await;
    let req = http::Request::post("https://a.example.com/echo")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (resp, mut tx) = client.send_request(req, false).unwrap();
    tx.send_data(Bytes::from_static(b"one"), false).unwrap();
    let resp = tokio::time::timeout(WAIT, resp)
        .await
        .expect("the call's response head")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut rx = resp.into_body();
    echoed(&mut rx, "one").await;
    // More bad answers than hyper's 1024 on that upstream connection (the
    // only one allowed), 50 at a time: each is that request's 502. The
    // call sends a piece after each batch and gets it echoed: it goes on
    // meanwhile, and its body is never idle for `body_read_timeout` on a
    // machine loaded enough to take a minute over the batches.
    let mut bad = h2_to(&w, addr).await;
    for batch in 0..21 {
        let paths = (0..50).map(|_| "/fat-head/70000".to_owned());
        let sent = send_all(&mut bad, paths).await;
        assert_eq!(statuses(sent).await, [502; 50], "batch {batch}");
        let piece = format!("batch {batch}");
        tx.send_data(Bytes::from(piece.clone()), false).unwrap();
        echoed(&mut rx, &piece).await;
    }
    // The call goes on, and ends, on the connection it began on.
    tx.send_data(Bytes::from_static(b"two"), true).unwrap();
    echoed(&mut rx, "two").await;
    while let Some(piece) = tokio::time::timeout(WAIT, rx.data()).await.unwrap() {
        assert!(piece.unwrap().is_empty(), "the call went on after its end");
    }
    let trailers = tokio::time::timeout(WAIT, rx.trailers()).await.unwrap();
    assert!(trailers.is_ok(), "the call ended badly: {trailers:?}");
    // A good request is served on that same connection.
    let r = h1_get(&w, addr, "/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["connection"], 0);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

/// Read `message` from an echoed response body.
async fn echoed(rx: &mut h2::RecvStream, message: &str) {
    let mut got = Vec::new();
    while got.len() < message.len() {
        let piece = tokio::time::timeout(WAIT, rx.data())
            .await
            .unwrap_or_else(|_| panic!("{message:?} not echoed"))
            .expect("the response goes on")
            .unwrap();
        let _ = rx.flow_control().release_capacity(piece.len());
        got.extend_from_slice(&piece);
    }
    assert_eq!(String::from_utf8_lossy(&got), message);
}

/// Once an endpoint is known to speak HTTP/2, a burst on it with no
/// connection open (the last closed after `idle_timeout`) dials one
/// connection and shares it, instead of one per request up to the dial
/// bound: eight backend accepts where one does.
#[tokio::test]
async fn a_cold_burst_on_an_endpoint_known_to_speak_h2_dials_once() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &["idle_timeout: 1s"]).await;
    warm_up(&w, addr).await;
    wait_until(WAIT, "the idle connection closed", || async {
        b.open.load(Ordering::SeqCst) == 0
    })
    .await;
    b.hold_handshakes.send_replace(true);
    let mut client = h2_to(&w, addr).await;
    let burst = send_all(&mut client, (0..20).map(|i| format!("/burst/20/{i}"))).await;
    wait_until(WAIT, "a dial in progress", || async {
        b.accepted.load(Ordering::SeqCst) >= 2
    })
    .await;
    b.hold_handshakes.send_replace(false);
    assert_eq!(statuses(burst).await, [200; 20]);
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        2,
        "one dial for the burst"
    );
}

/// SPEC (Upstream connection pool): at most `max_idle_connections`
/// HTTP/2 connections stay idle once a burst has ended. A server allowing
/// one stream at a time made the burst dial a connection per request, and
/// every one was pooled (none was idle while it was dialled): all stayed
/// open, idle, until `idle_timeout` let them go.
#[tokio::test]
async fn idle_h2_connections_beyond_max_idle_close_after_a_burst() {
    let w = world();
    let (b, _proxy, addr) = behind_proxy(&w, &["max_idle_connections: 2"]).await;
    b.h2_max_streams.store(1, Ordering::SeqCst);
    // The server's limit is read with the first response.
    warm_up(&w, addr).await;
    let mut client = h2_to(&w, addr).await;
    let burst = send_all(&mut client, (0..6).map(|i| format!("/burst/6/{i}"))).await;
    assert_eq!(statuses(burst).await, [200; 6]);
    assert!(
        b.accepted.load(Ordering::SeqCst) >= 6,
        "one connection a stream"
    );
    wait_until(
        WAIT,
        "idle connections down to max_idle_connections",
        || async { b.open.load(Ordering::SeqCst) == 2 },
    )
    .await;
}
