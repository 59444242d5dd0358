//! An HTTP/2 endpoint that refuses every stream (`REFUSED_STREAM`): passive health takes it out of service.

use crate::common::*;
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
    let other = Backend::start("b", &w.backend_pair, None).await;
    let settings = [
        "balance: round_robin",
        "health: { passive: { consecutive_failures: 2, eject_for: 60s } }",
    ];
    let upstream = backend_upstream("app", &[refusing, other.addr], &settings);
    let mut p = Proxy::start(
        &w.scene
            .public_config("\n      - { upstream: app }", &upstream),
    );
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
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
