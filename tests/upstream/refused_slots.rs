//! A request refused beside a long stream while another connection's slot is about to come free.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::raw_h2::{begun, h2_frame, naming, next_acking, raw_h2, refused, settings};
use crate::support::*;

/// What a [`long_beside_a_slow_dial`] backend's test sees of it, and its cues.
#[derive(Default)]
struct Seen {
    /// A answered `/long` (a head, a body that never ends).
    long: tokio::sync::Notify,
    /// Cue: A allows 100 streams.
    raise: tokio::sync::Notify,
    /// A's raised stream limit acknowledged.
    raised: tokio::sync::Notify,
    /// Cue: B sends its SETTINGS, and its dial ends.
    settle: tokio::sync::Notify,
    /// The streams A refused.
    refused: AtomicUsize,
}

/// A raw HTTP/2 backend. Its first connection (A) allows one stream and
/// answers the first with a head whose body never ends (`/long`); told to
/// `raise`, it allows 100 and refuses every stream after
/// (`RST_STREAM(REFUSED_STREAM)`, never a `GOAWAY`). Its second (B) sends
/// its SETTINGS only when told to `settle` (a dial still in progress until
/// then, its slot taken), and answers every request. Later ones answer at
/// once. Answers name their connection. Returns its address, its accepted
/// connections and what it sees.
async fn long_beside_a_slow_dial(
    pair: &TestPair,
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let (addr, accepted) = raw_h2(pair, Vec::new(), move |mut tls, n| {
        let seen = s.clone();
        async move {
            match n {
                0 => {
                    let _ = tls.write_all(&settings(&[(3, 1)])).await;
                }
                1 => {
                    seen.settle.notified().await;
                    let _ = tls.write_all(&settings(&[(3, 100)])).await;
                }
                _ => {
                    let _ = tls.write_all(&settings(&[(3, 100)])).await;
                }
            }
            let (mut long, mut raised) = (false, false);
            while let Some((kind, flags, stream)) = next_acking(&mut tls).await {
                if n > 0 && kind == 1 {
                    let _ = tls.write_all(&naming(n, stream)).await;
                } else if n > 0 {
                    // Their other frames: nothing to answer.
                } else if kind == 4 && flags & 1 == 1 && raised {
                    seen.raised.notify_one();
                } else if kind == 1 && !std::mem::replace(&mut long, true) {
                    let _ = tls.write_all(&begun(stream, b"")).await;
                    seen.long.notify_one();
                    seen.raise.notified().await;
                    let _ = tls.write_all(&settings(&[(3, 100)])).await;
                    raised = true;
                } else if kind == 1 {
                    let _ = tls.write_all(&refused(stream)).await;
                    seen.refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    })
    .await;
    (addr, accepted, seen)
}

/// SPEC (Upstream connection pool): with `max_connections_per_server: 2`,
/// A holds a long stream and refuses every new one (no `GOAWAY`); the
/// other slot is B's, a dial still in progress (its server's SETTINGS not
/// in) for another request. A GET refused three times on A got the
/// refusal's `502` at once, as if A held the only slot a new connection
/// would need: B's slot comes free once B has served its request and
/// gone idle. The GET waits for a slot, and is answered on a new
/// connection.
#[tokio::test]
async fn a_get_refused_thrice_waits_for_a_slot_another_connection_holds() {
    let w = world();
    let (backend, accepted, seen) = long_beside_a_slow_dial(&w.backend_pair).await;
    let extra = ["max_connections_per_server: 2", "connect_timeout: 30s"];
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", backend, &extra));
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(&w, addr).await;
    // `/long` on A (full at one stream): `/other` dials B.
    let long = send_all(&mut client, ["/long".to_owned()]).await;
    tokio::time::timeout(WAIT, seen.long.notified())
        .await
        .expect("`/long` answered on A");
    // Kept: dropped, the client would end `/long`, and A's stream with it.
    let long = heads(long).await;
    assert_eq!(long[0].status(), 200, "`/long`'s head");
    let other = send_all(&mut client, ["/other".to_owned()]).await.remove(0);
    wait_until(WAIT, "B dialled", || async {
        accepted.load(Ordering::SeqCst) == 2
    })
    .await;
    seen.raise.notify_one();
    tokio::time::timeout(WAIT, seen.raised.notified())
        .await
        .expect("A's raised stream limit acknowledged");
    let mut get = send_all(&mut client, ["/get".to_owned()]).await.remove(0);
    let busy = |v: &serde_json::Value| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("every connection to the server is busy"))
    };
    tokio::select! {
        answer = &mut get => {
            let status = answer.map(|r| r.status());
            panic!("the GET answered before B's slot came free: {status:?}");
        }
        _ = p.wait_log("the GET waiting for a slot", busy) => {}
    }
    assert_eq!(
        seen.refused.load(Ordering::SeqCst),
        3,
        "the GET's sends on A"
    );
    seen.settle.notify_one();
    let mut answers = heads(vec![other, get]).await;
    for (answer, connection) in answers.iter_mut().zip(["connection 1", "connection 2"]) {
        assert_eq!(answer.status(), 200);
        let body = tokio::time::timeout(WAIT, answer.body_mut().data()).await;
        assert_eq!(&body.unwrap().unwrap().unwrap()[..], connection.as_bytes());
    }
}

/// What an [`alternately_refusing`] backend's test sees of it, and its cue.
#[derive(Default)]
struct Both {
    /// A holds its first request (full at one stream).
    holding: tokio::sync::Notify,
    /// B answered its first request: A may go on.
    b_long: tokio::sync::Notify,
    /// A's raised stream limit acknowledged.
    raised: tokio::sync::Notify,
    /// The streams each refused: A's, then B's.
    refused: [AtomicUsize; 2],
}

/// A raw HTTP/2 backend whose first two connections each answer their
/// first request with a head whose body never ends (a long stream that
/// keeps the connection, and its slot). A allows one stream at a time
/// until B has answered, then 100, and refuses every stream after; B
/// refuses its second stream and answers the rest. Later connections
/// answer at once. Answers name their connection. Returns its address and
/// what it sees.
async fn alternately_refusing(pair: &TestPair) -> (std::net::SocketAddr, Arc<Both>) {
    let both = Arc::new(Both::default());
    let s = both.clone();
    let (addr, _) = raw_h2(pair, Vec::new(), move |mut tls, n| {
        let both = s.clone();
        async move {
            let limit = if n == 0 { 1 } else { 100 };
            let _ = tls.write_all(&settings(&[(3, limit)])).await;
            let (mut streams, mut raised) = (0, false);
            while let Some((kind, flags, stream)) = next_acking(&mut tls).await {
                if kind == 4 && flags & 1 == 1 && raised {
                    both.raised.notify_one();
                    raised = false;
                }
                if kind != 1 {
                    continue;
                }
                streams += 1;
                let out = match (n, streams) {
                    (0, 1) => {
                        both.holding.notify_one();
                        both.b_long.notified().await;
                        raised = true;
                        [begun(stream, b""), settings(&[(3, 100)])].concat()
                    }
                    (1, 1) => {
                        both.b_long.notify_one();
                        begun(stream, b"")
                    }
                    (0, _) | (1, 2) => {
                        both.refused[n].fetch_add(1, Ordering::SeqCst);
                        refused(stream)
                    }
                    _ => naming(n, stream),
                };
                let _ = tls.write_all(&out).await;
            }
        }
    })
    .await;
    (addr, both)
}

/// SPEC (Upstream connection pool): with `max_connections_per_server: 2`,
/// A and B each carry a long stream (both slots held). A GET refused on
/// A goes to B (room there), refused on B goes to A again, whose second
/// refusal retires it: its two sends on any connection spent, it wanted
/// a new connection, for which no slot comes free while the long streams
/// last, and waited out `connect_timeout` (far longer than [`WAIT`]) for
/// the connection limit's `504`, B's room unused. With another
/// connection's room beside a retired refuser and no slot free, it is
/// sent once more on any connection: B answers it.
#[tokio::test]
async fn a_get_refused_by_both_connections_goes_once_more_to_the_one_with_room() {
    let w = world();
    let (backend, both) = alternately_refusing(&w.backend_pair).await;
    let extra = ["max_connections_per_server: 2", "connect_timeout: 30s"];
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", backend, &extra));
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(&w, addr).await;
    // `/long/a` on A (full at one stream): `/long/b` dials B. Both kept.
    let long_a = send_all(&mut client, ["/long/a".to_owned()]).await;
    tokio::time::timeout(WAIT, both.holding.notified())
        .await
        .expect("`/long/a` held on A");
    let long_b = send_all(&mut client, ["/long/b".to_owned()]).await;
    let _long = heads(long_a.into_iter().chain(long_b).collect()).await;
    tokio::time::timeout(WAIT, both.raised.notified())
        .await
        .expect("A's raised stream limit acknowledged");
    let get = send_all(&mut client, ["/get".to_owned()]).await;
    let mut get = heads(get).await.remove(0);
    assert_eq!(get.status(), 200, "the GET refused on A, B and A");
    let body = tokio::time::timeout(WAIT, get.body_mut().data()).await;
    assert_eq!(&body.unwrap().unwrap().unwrap()[..], b"connection 1");
    let refused = both.refused.each_ref().map(|r| r.load(Ordering::SeqCst));
    assert_eq!(refused, [2, 1], "refusals on A and B");
}

/// What a [`refusing_beside_long_streams`] backend's test sees of it, and its cues.
#[derive(Default)]
struct Sends {
    /// A holds its first request (full at one stream).
    holding: tokio::sync::Notify,
    /// B answered its first request: A may go on.
    b_long: tokio::sync::Notify,
    /// A's raised stream limit acknowledged.
    raised: tokio::sync::Notify,
    /// B refused twice: A ends its long stream.
    b_refused: tokio::sync::Notify,
    /// The streams refused, on every connection: the GET's sends.
    refused: AtomicUsize,
}

/// A raw HTTP/2 backend whose first two connections each answer their
/// first request with a head whose body goes on (a long stream that keeps
/// the connection, and its slot) and refuse every stream after. A allows
/// one stream at a time until B has answered, then 100; at its second
/// refusal it ends its long stream, once B has refused twice. Later
/// connections refuse every stream. Returns its address and what it sees.
async fn refusing_beside_long_streams(pair: &TestPair) -> (std::net::SocketAddr, Arc<Sends>) {
    let sends = Arc::new(Sends::default());
    let s = sends.clone();
    let (addr, _) = raw_h2(pair, Vec::new(), move |mut tls, n| {
        let sends = s.clone();
        async move {
            let limit = if n == 0 { 1 } else { 100 };
            let _ = tls.write_all(&settings(&[(3, limit)])).await;
            let (mut streams, mut raised, mut long) = (0, false, 0);
            while let Some((kind, flags, stream)) = next_acking(&mut tls).await {
                if kind == 4 && flags & 1 == 1 && raised {
                    sends.raised.notify_one();
                    raised = false;
                }
                if kind != 1 {
                    continue;
                }
                streams += 1;
                if n < 2 && streams == 1 {
                    long = stream;
                    let mut out = begun(stream, b"");
                    if n == 0 {
                        sends.holding.notify_one();
                        sends.b_long.notified().await;
                        out.extend(settings(&[(3, 100)]));
                        raised = true;
                    } else {
                        sends.b_long.notify_one();
                    }
                    let _ = tls.write_all(&out).await;
                    continue;
                }
                let _ = tls.write_all(&refused(stream)).await;
                sends.refused.fetch_add(1, Ordering::SeqCst);
                match (n, streams) {
                    (0, 3) => {
                        sends.b_refused.notified().await;
                        let _ = tls.write_all(&h2_frame(0, 1, long, b"")).await;
                    }
                    (1, 3) => sends.b_refused.notify_one(),
                    _ => {}
                }
            }
        }
    })
    .await;
    (addr, sends)
}

/// SPEC (Retries; Upstream connection pool): with
/// `max_connections_per_server: 2`, A and B each carry a long stream and
/// refuse every new one. A GET refused on A, B and A (retired) went once
/// more to B (its room, no slot free), and, refused there, on a new
/// connection (A's slot, its long stream ended) twice: C, then D, six
/// sends to one endpoint where the bound was five. The third send on any
/// connection counts against the sends on new ones: C's refusal is the
/// GET's `502`, after five.
#[tokio::test]
async fn a_get_refused_everywhere_is_sent_five_times_at_most() {
    let w = world();
    let (backend, sends) = refusing_beside_long_streams(&w.backend_pair).await;
    let extra = ["max_connections_per_server: 2", "connect_timeout: 30s"];
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", backend, &extra));
    let addr = p.listener_addr("public").await;
    let mut client = h2_to(&w, addr).await;
    // `/long/a` on A (full at one stream): `/long/b` dials B. Both kept.
    let long_a = send_all(&mut client, ["/long/a".to_owned()]).await;
    tokio::time::timeout(WAIT, sends.holding.notified())
        .await
        .expect("`/long/a` held on A");
    let long_b = send_all(&mut client, ["/long/b".to_owned()]).await;
    let _long = heads(long_a.into_iter().chain(long_b).collect()).await;
    tokio::time::timeout(WAIT, sends.raised.notified())
        .await
        .expect("A's raised stream limit acknowledged");
    let get = send_all(&mut client, ["/get".to_owned()]).await;
    let get = heads(get).await.remove(0);
    let sent = sends.refused.load(Ordering::SeqCst);
    assert!(sent <= 5, "the GET was sent {sent} times to its endpoint");
    assert_eq!(get.status(), 502, "the GET refused on every send");
}
