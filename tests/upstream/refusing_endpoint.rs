//! An HTTP/2 endpoint that refuses every stream (`REFUSED_STREAM`): passive health takes it out of service; one draining a connection that served does not.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::raw_h2::*;
use crate::support::*;

/// SPEC (Health): an endpoint that leaves every request unprocessed
/// (`RST_STREAM(REFUSED_STREAM)` on every stream, the connection kept
/// open: a process stuck) is ejected once more than
/// `consecutive_failures` of its attempts in a row were left so. Each was
/// excused as a request the endpoint never saw, so it was never ejected:
/// every request went there first (it answers at once) and on to another.
#[tokio::test]
async fn an_endpoint_refusing_every_stream_is_ejected() {
    let w = world();
    let (refusing, _) = h2_conns("127.0.0.1:0", &w.backend_pair, |mut conn, _| async move {
        while let Some(Ok((_, mut respond))) = conn.accept().await {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        }
    })
    .await;
    let (_other, _p, addr, admin) = beside_a_backend(&w, refusing, &[]).await;
    let mut send = h1_sender(&w, addr).await;
    for _ in 0..12 {
        exchange(&mut send, h1_request("GET", "/x", "")).await;
    }
    let m = metrics_text(admin).await;
    assert!(
        m.lines()
            .any(|l| l == "hotproxy_upstream_endpoints{upstream=\"app\",state=\"ejected\"} 1"),
        "{m}"
    );
}

/// SPEC (Health): a server draining a connection that served (nginx's
/// `keepalive_requests` reached, a reload, a pod's drain) says `GOAWAY`
/// with a last stream id below the streams in flight on it: all of them
/// are left unprocessed at once, before any response. That is no step in
/// the endpoint's run of unprocessed attempts (only a connection that
/// never served takes one, once), and the endpoint stays in service.
/// Each of them used to be a step, and a burst of more than twice
/// `consecutive_failures` ejected a healthy endpoint.
///
/// The backend answers the first request on its first connection, then
/// holds the next `BURST` (all round robin gives it of the concurrent
/// requests) and says `GOAWAY` naming the first as the last processed; on
/// its later connections it answers every request.
#[tokio::test]
async fn a_burst_a_serving_connection_left_unprocessed_ejects_nothing() {
    const BURST: usize = 10;
    let w = world();
    let (draining, _) = raw_h2(&w.backend_pair, settings(&[]), |mut tls, n| async move {
        let (mut first, mut held) = (None, 0);
        while let Some((kind, _, stream)) = next_acking(&mut tls).await {
            match (kind, first) {
                (1, Some(last)) if n == 0 => {
                    held += 1;
                    if held == BURST {
                        let _ = tls.write_all(&goaway(last)).await;
                    }
                }
                (1, _) => {
                    let _ = tls.write_all(&naming(n, stream)).await;
                    first.get_or_insert(stream);
                }
                _ => {}
            }
        }
    })
    .await;
    // Every request of the burst may go to the other endpoint.
    let retries = "retries: { attempts: 1, budget_percent: 100, min_retry_concurrency: 64 }";
    let (_other, _p, addr, admin) = beside_a_backend(&w, draining, &[retries]).await;
    // One to each: the draining endpoint's first connection serves.
    let mut send = h1_sender(&w, addr).await;
    for _ in 0..2 {
        assert_eq!(
            exchange(&mut send, h1_request("GET", "/x", "")).await.0,
            200
        );
    }
    let mut senders = Vec::new();
    for _ in 0..2 * BURST {
        senders.push(h1_sender(&w, addr).await);
    }
    let replies: Vec<_> = senders
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move { exchange(&mut s, h1_request("GET", "/x", "")).await.0 })
        })
        .collect();
    for reply in replies {
        assert_eq!(reply.await.unwrap(), 200);
    }
    let m = metrics_text(admin).await;
    let in_service = "hotproxy_upstream_endpoints{upstream=\"app\",state=\"ejected\"} 0";
    assert!(m.lines().any(|l| l == in_service), "{m}");
    // It keeps being sent requests, on a new connection.
    let mut its = 0;
    for _ in 0..4 {
        let (status, body) = exchange(&mut send, h1_request("GET", "/x", "")).await;
        assert_eq!(status, 200);
        its += usize::from(body.starts_with(b"connection "));
    }
    assert_eq!(its, 2);
}

/// A proxy whose upstream `app` is `first` and a plain backend, round
/// robin, ejecting after 2 failures in a row (and `more` settings): the
/// backend, the proxy, its listener's and admin addresses.
async fn beside_a_backend(
    w: &World,
    first: SocketAddr,
    more: &[&str],
) -> (Backend, Proxy, SocketAddr, SocketAddr) {
    let other = Backend::start("b", &w.backend_pair, None).await;
    let mut lines = vec!["balance: round_robin"];
    lines.extend_from_slice(more);
    lines.push("health: { passive: { consecutive_failures: 2, eject_for: 60s } }");
    let upstream = backend_upstream("app", &[first, other.addr], &lines);
    let mut p = Proxy::start(
        &w.scene
            .public_config("\n      - { upstream: app }", &upstream),
    );
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    (other, p, addr, admin)
}
