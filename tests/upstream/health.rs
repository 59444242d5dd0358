//! Active checks: a bounded read of a long body, no verdict on a busy endpoint.

use std::sync::atomic::Ordering;

use crate::common::*;
use crate::support::*;

/// An active check is judged by its status; it reads at most 64 KiB of
/// the body, so a check path that streams (a `/healthz` with a long report,
/// a download named by mistake) costs little per check. It read the whole
/// body: 64 MiB every interval here, on the one connection kept for it.
/// Now each check's connection is closed at the cap and the next dials.
#[tokio::test]
async fn an_active_check_reads_a_bounded_part_of_a_long_body() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config(
        "app",
        b.addr,
        &["health: { active: { path: /mebibytes/64, interval: 100ms, timeout: 20s } }"],
    ));
    p.listener_addr("public").await;
    let accepted = || b.accepted.load(Ordering::SeqCst);
    wait_until(
        WAIT,
        "three checks, each on a connection of its own",
        || async { accepted() >= 3 },
    )
    .await;
    // Each cut connection let through at most its socket buffers.
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        sent < accepted() * (16 << 20),
        "{sent} bytes sent for {} checks",
        accepted()
    );
}

/// An endpoint whose every connection is taken (a long poll holds the one
/// `max_connections_per_server` allows) is busy, not failing: an active
/// check that finds no connection free has no verdict. It counted as a
/// failed check and took the endpoint out of service while it served.
#[tokio::test]
async fn an_active_check_on_a_busy_endpoint_has_no_verdict() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config(
        "app",
        b.addr,
        &[
            "max_connections_per_server: 1",
            "health: { active: { path: /echo, interval: 100ms, timeout: 300ms, unhealthy_after: 1 } }",
        ],
    ));
    let addr = p.listener_addr("public").await;
    // The one connection, held by a request the backend never answers.
    let held = spawn_get(&w, addr, "/hang");
    let hanging = || b.slow_in_flight.load(Ordering::SeqCst);
    wait_until(WAIT, "the long poll holds the connection", || async {
        hanging() == 1
    })
    .await;
    p.wait_log("a check while busy", |v| {
        v["message"] == "active check skipped: every connection to the endpoint is taken"
    })
    .await;
    let out = "upstream endpoint failed its active checks; out of service";
    assert!(
        !p.logs().iter().any(|l| l.contains(out)),
        "a busy endpoint was taken out of service"
    );
    held.abort();
}
