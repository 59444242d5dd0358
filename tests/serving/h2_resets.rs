//! HTTP/2 rapid reset (CVE-2023-44487): the requests a client cancels, counted per connection, and what counts against them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// A client that opens streams and resets each at once (rapid reset,
/// CVE-2023-44487) is sent `GOAWAY` (`ENHANCE_YOUR_CALM`) long before its
/// 2000 streams are through, and few of them reach the backend.
#[tokio::test]
async fn h2_rapid_reset_is_cut_off() {
    let (w, _p, addr) = serve("").await;
    let (mut client, conn) = h2_with_conn(&w, addr).await;
    for _ in 0..2000 {
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let Ok((_, mut stream)) = client.send_request(h2_get("/x", "GET"), true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
    }
    ended_calm_h2(conn).await;
    let reached = w.backend.requests.load(SeqCst);
    assert!(reached < 200, "{reached} reset streams reached the backend");
}

/// Rapid reset with each reset sent just after its request was taken
/// (CVE-2023-44487 in the form h2's own count misses: it counts only
/// streams reset before hyper accepted them, and a reset stream frees its
/// place under the 100-stream limit at once). One connection, in rounds of
/// 100 streams on a request the backend never answers (an expensive one),
/// each round reset once the backend has all of its requests: hotproxy
/// ends the connection long before the 10,000 are through, lets go of the
/// upstream requests it still held, and says so (a warning naming the
/// client, a metric).
#[tokio::test]
async fn h2_rapid_reset_after_the_request_went_upstream_is_cut_off() {
    let (w, mut p, addr) = serve("").await;
    let admin = p.admin_addr().await;
    let s = tls(&w, addr, &[b"h2"]).await;
    let port = local_port(&s);
    let (mut from, mut to) = tokio::io::split(s);
    // What the server sends until the connection ends (a GOAWAY, or the
    // end of the stream).
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = from.read_to_end(&mut got).await;
        got
    });
    to.write_all(&[PREFACE, EMPTY_SETTINGS].concat())
        .await
        .unwrap();
    let block = hpack_get("/hold");
    for round in 0..100u32 {
        let ids: Vec<u32> = (0..100).map(|i| 1 + 200 * round + 2 * i).collect();
        let opens: Vec<u8> = ids
            .iter()
            .flat_map(|&id| h2_frame(HEADERS, 0x5, id, &block))
            .collect();
        if to.write_all(&opens).await.is_err() {
            break;
        }
        // The resets go once every request of the round is upstream:
        // awaited, not guessed with a pause.
        let upstream = 100 * (round as usize + 1);
        wait_until(WAIT, "the round at the backend, or the end", || async {
            reader.is_finished() || w.backend.requests.load(SeqCst) >= upstream
        })
        .await;
        if reader.is_finished() {
            break;
        }
        // RST_STREAM, CANCEL (8).
        let resets: Vec<u8> = ids
            .iter()
            .flat_map(|&id| h2_frame(RST_STREAM, 0, id, &8u32.to_be_bytes()))
            .collect();
        if to.write_all(&resets).await.is_err() {
            break;
        }
    }
    let reached = w.backend.requests.load(SeqCst);
    assert!(
        reached < 2000,
        "{reached} reset streams reached the backend"
    );
    tokio::time::timeout(WAIT, reader)
        .await
        .expect("the connection is ended")
        .unwrap();
    wait_until(WAIT, "the held upstream requests released", || async {
        w.backend.held.load(SeqCst) == 0
    })
    .await;
    p.wait_log("the rapid-reset warning", |v| {
        v["level"] == "WARN"
            && peer_is(v, port)
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("rapid reset"))
    })
    .await;
    let closed = "hotproxy_http2_rapid_reset_closed_total{listener=\"public\"} 1";
    wait_metric(admin, closed, WAIT).await;
}

/// A browser-like HTTP/2 client cancels a few of its requests while the
/// backend has them (navigating away: 10 of 200): its connection keeps
/// serving, and each cancelled request is let go upstream.
#[tokio::test]
async fn h2_client_cancelling_a_few_streams_is_not_cut_off() {
    let (w, _p, addr) = serve("").await;
    let (mut client, conn) = h2_with_conn(&w, addr).await;
    for i in 1..=200 {
        if i % 20 == 0 {
            let (_, mut stream) = client.send_request(h2_get("/hold", "GET"), true).unwrap();
            wait_until(WAIT, "the request at the backend", || async {
                w.backend.held.load(SeqCst) == 1
            })
            .await;
            stream.send_reset(h2::Reason::CANCEL);
            wait_until(WAIT, "the request let go upstream", || async {
                w.backend.held.load(SeqCst) == 0
            })
            .await;
        } else {
            let resp = h2_request(&mut client, h2_get("/x", "GET")).await;
            assert_eq!(resp.status(), 200);
        }
        client = client.ready().await.expect("the connection keeps serving");
    }
    still_serving(&mut client, &conn).await;
    assert_eq!(w.backend.requests.load(SeqCst), 201);
}

/// A client that gives up on its own deadline on requests it has waited
/// on (a gRPC or browser client cancelling its long polls, one with a 5 s
/// deadline on a slow backend) cancels every one of them, but each after
/// it has waited over a second: not a rapid reset (Envoy counts a reset as
/// premature only within `premature_reset_min_stream_lifetime_seconds`,
/// 1 s). 600 such requests, in rounds of 100 (the stream limit), each
/// round reset once all of it is at the backend and a second has passed
/// since: the connection keeps serving, and no rapid reset is counted.
#[tokio::test]
async fn h2_client_cancelling_requests_after_a_second_is_not_cut_off() {
    let (w, mut p, addr) = serve("").await;
    let admin = p.admin_addr().await;
    let (mut client, conn) = h2_with_conn(&w, addr).await;
    for round in 1..=6 {
        let mut streams = Vec::new();
        for _ in 0..100 {
            client = client
                .ready()
                .await
                .unwrap_or_else(|e| panic!("round {round}: the connection was ended: {e}"));
            let (_, stream) = client
                .send_request(h2_get("/hold", "GET"), true)
                .unwrap_or_else(|e| panic!("round {round}: the connection was ended: {e}"));
            streams.push(stream);
        }
        wait_until(WAIT, "the round at the backend", || async {
            w.backend.held.load(SeqCst) == 100
        })
        .await;
        // Each request of the round began at hotproxy before it reached
        // the backend, so before `seen`: a second after it, every one of
        // them has waited longer than a second.
        let seen = tokio::time::Instant::now();
        tokio::time::sleep_until(seen + Duration::from_secs(1)).await;
        cancel_round(&mut streams, &w.backend).await;
    }
    client = client.ready().await.expect("the connection keeps serving");
    still_serving(&mut client, &conn).await;
    assert_eq!(w.backend.requests.load(SeqCst), 601);
    let metrics = metrics_text(admin).await;
    let closed: Vec<_> = metrics
        .lines()
        .filter(|l| l.starts_with("hotproxy_http2_rapid_reset_closed_total"))
        .collect();
    assert!(closed.is_empty(), "{closed:?}");
}

/// A proxy whose listener `public` routes `a.example.com` alone to the
/// plain backend: hotproxy answers a request for any other host `404`
/// itself, at no cost to the backend.
async fn serve_one_host() -> (World, Proxy, SocketAddr) {
    let w = world().await;
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ host: a.example.com, upstream: plain }]",
        &plain_upstream(&w),
    ));
    let addr = p.listener_addr("public").await;
    (w, p, addr)
}

/// `n` requests `GET https://<host>/x`, sent together, each answered
/// `status` (awaited, body and all: counted by hotproxy before the next
/// step); `Err` once the connection is ended.
async fn answered(
    client: &mut h2::client::SendRequest<Bytes>,
    host: &str,
    n: usize,
    status: u16,
) -> Result<(), h2::Error> {
    let mut answers = Vec::new();
    for _ in 0..n {
        std::future::poll_fn(|cx| client.poll_ready(cx)).await?;
        let get = http::Request::builder()
            .uri(format!("https://{host}/x"))
            .body(())
            .unwrap();
        answers.push(client.send_request(get, true)?.0);
    }
    for answer in answers {
        let resp = tokio::time::timeout(WAIT, answer)
            .await
            .expect("an answer in time")?;
        assert_eq!(resp.status(), status);
        let mut body = resp.into_body();
        while let Some(data) = tokio::time::timeout(WAIT, body.data()).await.unwrap() {
            data?;
        }
    }
    Ok(())
}

/// `n` requests for `b.example.com`, a host no route of
/// [`serve_one_host`] serves, sent together: each answered `404` by
/// hotproxy, as by [`answered`].
async fn unrouted(client: &mut h2::client::SendRequest<Bytes>, n: usize) -> Result<(), h2::Error> {
    answered(client, "b.example.com", n, 404).await
}

/// What a padded rapid reset pads its resets with: requests hotproxy
/// answers itself, never contacting the backend.
#[derive(Clone, Copy)]
enum Pad {
    /// For a host no route serves: `404`.
    Unrouted,
    /// A `POST` to the served route whose body breaks: `content-length: 1`,
    /// then an empty DATA frame ending the stream (an HTTP/2 stream error).
    /// Its body is small enough to be read whole before any endpoint is
    /// contacted: hotproxy answers it `400` and resets the stream.
    BrokenBody,
}

/// `n` requests of `pad`, sent together, each answered (awaited: counted
/// by hotproxy before the next step); `Err` once the connection is ended.
async fn pad(
    client: &mut h2::client::SendRequest<Bytes>,
    pad: Pad,
    n: usize,
) -> Result<(), h2::Error> {
    match pad {
        Pad::Unrouted => unrouted(client, n).await,
        Pad::BrokenBody => broken_bodies(client, n).await,
    }
}

/// `n` requests with a broken body (see [`Pad::BrokenBody`]), sent
/// together, each ended by the server's reset of its stream; `Err` once
/// the connection is ended.
async fn broken_bodies(
    client: &mut h2::client::SendRequest<Bytes>,
    n: usize,
) -> Result<(), h2::Error> {
    let mut answers = Vec::new();
    for _ in 0..n {
        std::future::poll_fn(|cx| client.poll_ready(cx)).await?;
        let post = http::Request::builder()
            .method("POST")
            .uri("https://a.example.com/x")
            .header(http::header::CONTENT_LENGTH, "1")
            .body(())
            .unwrap();
        let (answer, mut body) = client.send_request(post, false)?;
        body.send_data(Bytes::new(), true)?;
        answers.push(answer);
    }
    for answer in answers {
        match tokio::time::timeout(WAIT, answer)
            .await
            .expect("an end in time")
        {
            Err(e) if e.reason() == Some(h2::Reason::PROTOCOL_ERROR) && e.is_reset() => {}
            Err(e) => return Err(e),
            Ok(resp) => panic!("a broken body answered {}", resp.status()),
        }
    }
    Ok(())
}

/// How many upstream requests a round of [`padded_rapid_reset`] resets:
/// few, so that each is reset well within `PREMATURE_WITHIN` (1 s) of its
/// start even on a slow machine (a round of 100 waited for its last to
/// reach the backend, and its first ones counted as cancelled late).
const ROUND: usize = 10;

/// Rapid reset padded with `kind`: in each round, twice [`ROUND`] pads,
/// then [`ROUND`] requests that go upstream (to one the backend never
/// answers), reset once the backend has them all; until the connection is
/// ended, or 100 rounds (1,000 upstream requests started and abandoned).
/// Were the pads counted among the answered, two for each cancelled would
/// keep the cancellations under half for good. Then it checks that the
/// connection was cut by the guard, with what the guard guarantees
/// whatever the machine's pace: the warning counts none answered and at
/// least 250 cancelled (within 1 s of their start), and at most twice as
/// many requests as that reached the backend (those cancelled later count
/// among the ended), beside the last round's.
async fn padded_rapid_reset(kind: Pad) {
    let (w, mut p, addr) = serve_one_host().await;
    let admin = p.admin_addr().await;
    let s = tls(&w, addr, &[b"h2"]).await;
    let port = local_port(&s);
    let (client, conn) = h2::client::handshake(s).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    'rounds: for _ in 0..100 {
        if pad(&mut client, kind, 2 * ROUND).await.is_err() {
            break;
        }
        let mut streams = Vec::new();
        for _ in 0..ROUND {
            if std::future::poll_fn(|cx| client.poll_ready(cx))
                .await
                .is_err()
            {
                break 'rounds;
            }
            let Ok((_, stream)) = client.send_request(h2_get("/hold", "GET"), true) else {
                break 'rounds;
            };
            streams.push(stream);
        }
        // The resets go once every request of the round is upstream.
        wait_until(WAIT, "the round at the backend, or the end", || async {
            conn.is_finished() || w.backend.held.load(SeqCst) == ROUND
        })
        .await;
        cancel_round(&mut streams, &w.backend).await;
    }
    let _ = tokio::time::timeout(WAIT, conn)
        .await
        .expect("the connection is ended");
    let warned = p
        .wait_log("the rapid-reset warning", |v| {
            v["level"] == "WARN"
                && peer_is(v, port)
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("rapid reset"))
        })
        .await;
    // Counted when the driver woke: a few more of the round may be in.
    assert_eq!(warned["answered"], 0, "{warned}");
    let cancelled = warned["cancelled"].as_u64().unwrap() as usize;
    assert!(cancelled >= 250, "{warned}");
    let reached = w.backend.requests.load(SeqCst);
    assert!(
        reached <= 2 * cancelled + ROUND,
        "{reached} reset streams reached the backend: {warned}"
    );
    let closed = "hotproxy_http2_rapid_reset_closed_total{listener=\"public\"} 1";
    wait_metric(admin, closed, WAIT).await;
}

/// Rapid reset padded with requests for a host no route serves (`404`,
/// answered at once and at no cost upstream): only requests forwarded
/// upstream count as answered, so the connection is cut all the same.
#[tokio::test]
async fn h2_rapid_reset_padded_with_local_answers_is_cut_off() {
    padded_rapid_reset(Pad::Unrouted).await;
}

/// Rapid reset padded with requests to the served route whose bodies
/// break before any endpoint is contacted (answered `400` by hotproxy,
/// the stream reset): not forwarded, they count neither way either, and
/// the connection is cut all the same. Counted as answered, they kept a
/// client under the bound until h2's own limit of 1,024 stream errors on
/// a connection: some 500 upstream requests abandoned instead of 250.
#[tokio::test]
async fn h2_rapid_reset_padded_with_broken_bodies_is_cut_off() {
    padded_rapid_reset(Pad::BrokenBody).await;
}

/// A client close to the bound, and under it only if what counts is
/// counted right. `a.example.com` goes to the plain backend,
/// `down.example.com` to an endpoint that takes each request and closes
/// without an answer (hotproxy answers `502`, for a request an endpoint
/// had), and any other host is answered `404` by hotproxy. In each of 26
/// rounds the client gets 12 `404`s and 12 `502`s, then cancels 10
/// requests the backend has. Of its 624 answers the 312 `502`s alone
/// count, so the cancelled stay under half of the ended (260 of 572, and
/// so after every round) and the connection keeps serving. Were the
/// `404`s counted as cancelled, or the `502`s not counted as answered
/// (hotproxy's own answer), the cancelled would reach half (in round 12,
/// or at round 25's cancellations) and the connection would be cut.
/// Cancellations that come late on a slow machine only move it further
/// from the bound.
#[tokio::test]
async fn h2_client_with_404s_502s_and_cancels_under_half_is_not_cut_off() {
    let w = world().await;
    let (down, taken) = raw_backend(|mut tcp| async move {
        let mut buf = Vec::new();
        let _ = read_raw_head(&mut tcp, &mut buf).await;
    })
    .await;
    let upstreams = format!(
        "{}\n  - name: down\n    servers: [http://{down}]",
        plain_upstream(&w)
    );
    let mut p = Proxy::start(&w.scene.public_config(
        "[{ host: a.example.com, upstream: plain }, { host: down.example.com, upstream: down }]",
        &upstreams,
    ));
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let (mut client, conn) = h2_with_conn(&w, addr).await;
    for round in 1..=26 {
        let serving = format!("round {round}: the connection keeps serving");
        unrouted(&mut client, 12).await.expect(&serving);
        answered(&mut client, "down.example.com", 12, 502)
            .await
            .expect(&serving);
        let mut streams = Vec::new();
        for _ in 0..10 {
            client = client.ready().await.expect(&serving);
            let (_, stream) = client
                .send_request(h2_get("/hold", "GET"), true)
                .expect(&serving);
            streams.push(stream);
        }
        wait_until(WAIT, "the round at the backend", || async {
            w.backend.held.load(SeqCst) == 10
        })
        .await;
        cancel_round(&mut streams, &w.backend).await;
    }
    client = client.ready().await.expect("the connection keeps serving");
    still_serving(&mut client, &conn).await;
    assert_eq!(w.backend.requests.load(SeqCst), 261);
    // Each 502 was for a request the endpoint took.
    assert!(taken.load(SeqCst) >= 312, "{taken:?}");
    let metrics = metrics_text(admin).await;
    let closed: Vec<_> = metrics
        .lines()
        .filter(|l| l.starts_with("hotproxy_http2_rapid_reset_closed_total"))
        .collect();
    assert!(closed.is_empty(), "{closed:?}");
}

/// Every stream of a round reset, and each request it held let go
/// upstream.
async fn cancel_round(streams: &mut [h2::SendStream<Bytes>], backend: &PlainBackend) {
    for stream in streams {
        stream.send_reset(h2::Reason::CANCEL);
    }
    wait_until(WAIT, "the round let go upstream", || async {
        backend.held.load(SeqCst) == 0
    })
    .await;
}

/// The connection was not cut: it answers one more request.
async fn still_serving(
    client: &mut h2::client::SendRequest<Bytes>,
    conn: &tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let resp = h2_request(client, h2_get("/x", "GET")).await;
    assert_eq!(resp.status(), 200, "the connection keeps serving");
    assert!(!conn.is_finished(), "the connection was ended");
}
