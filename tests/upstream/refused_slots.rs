//! A request refused beside a long stream while another connection's slot is about to come free.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::raw_h2::{begun, naming, next_acking, raw_h2, refused, settings};
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
