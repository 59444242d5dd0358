//! An edit of an upstream (a server added, `read_timeout` changed) keeps the health of the endpoints that stay.

use std::sync::atomic::Ordering::SeqCst;

use crate::common::*;
use crate::support::*;

/// Upstream `app` (round robin) over the pods at `addrs`, with `settings`
/// lines, as [`Scene::public_config`]'s upstreams.
fn app(addrs: &[std::net::SocketAddr], settings: &str) -> String {
    let servers: Vec<String> = addrs.iter().map(|a| format!("https://{a}")).collect();
    upstream(
        "app",
        &servers.join(", "),
        &format!("    balance: round_robin\n{settings}"),
    )
}

/// The `hotproxy_upstream_endpoints` line of upstream `app` in `state`.
fn endpoints(state: &str, n: usize) -> String {
    format!("hotproxy_upstream_endpoints{{upstream=\"app\",state=\"{state}\"}} {n}")
}

/// Wait until the gauge says `n` endpoints of `app` are in `state` (an
/// ejection or a verdict is logged just before the gauge changes).
async fn wait_gauge(w: &World, state: &str, n: usize) {
    let want = endpoints(state, n);
    wait_until(WAIT, &want, || async { metrics(w).await.contains(&want) }).await;
}

/// Pods A, B and C on 127.0.0.2/.3/.4 (`podA` answering every request
/// `503`), the proxy routing everything to upstream `app` over A and B
/// (with `settings` lines); C is there for an edit to add.
async fn a_failing_beside_b(settings: &str) -> World {
    let p = Pods::new();
    let mut pods = Vec::new();
    for (ip, label) in [
        ("127.0.0.2", "podA"),
        ("127.0.0.3", "podB"),
        ("127.0.0.4", "podC"),
    ] {
        pods.push(p.pod_at(ip, label).await);
    }
    pods[0].answer_status.store(503, SeqCst);
    let upstreams = app(&[pods[0].addr, pods[1].addr], settings);
    p.serve("[{ upstream: app }]", &upstreams, pods).await
}

/// Apply `upstreams` as the configuration file's and wait until it is
/// the `n`th configuration reloaded, naming upstream `app` as changed.
async fn edit(w: &mut World, upstreams: &str, n: usize) {
    w.scene.public_config("[{ upstream: app }]", upstreams);
    let what = format!("configuration reload {n}");
    wait_until(WAIT, &what, || async {
        let reloaded: Vec<serde_json::Value> = w
            .proxy
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "configuration reloaded")
            .collect();
        if let Some(r) = reloaded.get(n - 1) {
            assert_eq!(r["changes"], "upstreams changed: app", "reload {n}");
        }
        reloaded.len() >= n
    })
    .await;
}

/// `n` GETs on one kept-open connection, each answered `200` by a pod
/// other than podA: podA (out of service) got none of them.
async fn none_to_a(w: &World, n: usize, when: &str) {
    let mut send = client(w).await;
    for i in 0..n {
        let (status, pod) = get_pod(&mut send, "/").await;
        assert_eq!(
            (status, pod.as_deref() == Some("podA")),
            (200, false),
            "request {i} {when}: podA is out of service"
        );
    }
}

/// `settings` lines with passive health ejecting an endpoint for an hour
/// after `consecutive_failures` in a row (off where 0), and no retries.
fn passive(consecutive_failures: usize) -> String {
    let eject_for = if consecutive_failures == 0 {
        ""
    } else {
        ", eject_for: 1h"
    };
    format!(
        "    health: {{ passive: {{ consecutive_failures: {consecutive_failures}{eject_for} }} }}\n    retries: {{ attempts: 0 }}\n"
    )
}

/// How many of `n` GETs on one kept-open connection podA answered, with
/// its `503`.
async fn answered_by_a(w: &World, n: usize) -> usize {
    let mut send = client(w).await;
    let mut a_answered = 0;
    for _ in 0..n {
        a_answered += usize::from(get_pod(&mut send, "/").await == (503, Some("podA".into())));
    }
    a_answered
}

/// podA (at `a`) ejected: logged, and in the gauge.
async fn a_ejected(w: &mut World, a: std::net::SocketAddr) {
    logged_ejected(w, "A ejected", "app", a).await;
    wait_gauge(w, "ejected", 1).await;
}

/// With passive health just on at `consecutive_failures: 3`, podA (at
/// `a`) keeps its share for three rounds of two requests (its failures
/// `since` it came on are 0, 1 and 2 before them), so one of each pair is
/// its `503`; its third failure ejects it, and it gets no more requests.
async fn a_in_service_for_three_failures(w: &mut World, a: std::net::SocketAddr, since: &str) {
    let mut send = client(w).await;
    for round in 1..=3 {
        let mut a_answered = 0;
        for _ in 0..2 {
            let (status, pod) = get_pod(&mut send, "/").await;
            if pod.as_deref() == Some("podA") {
                assert_eq!(status, 503);
                a_answered += 1;
            }
        }
        assert_eq!(
            a_answered,
            1,
            "round {round}: A, with {} failures since passive health {since}, is in service",
            round - 1
        );
    }
    a_ejected(w, a).await;
    none_to_a(w, 6, "after three failures in a row").await;
}

/// A ejected by passive health (an hour); then the operator adds server C,
/// and later changes `read_timeout`. Each edit replaces the upstream, and
/// its new endpoints used to start healthy: A was back in rotation at once
/// (the gauge said 0 ejected) and took a third of the requests, each a
/// `503` to a client, until it had failed `consecutive_failures` times
/// again. A stays out, and the gauge says so, as a re-resolution that
/// keeps an address keeps its health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_keeps_an_ejected_endpoint_out() {
    let health = passive(2);
    let mut w = a_failing_beside_b(&health).await;
    let [a, b, c] = [0, 1, 2].map(|i| w.pods[i].addr);
    // Round robin over A and B: A's second failure is the third request.
    let mut send = client(&w).await;
    let answers: Vec<u16> = {
        let mut s = Vec::new();
        for _ in 0..4 {
            s.push(get_pod(&mut send, "/").await.0);
        }
        s
    };
    assert_eq!(
        answers.iter().filter(|&&s| s == 503).count(),
        2,
        "{answers:?}"
    );
    a_ejected(&mut w, a).await;

    // The operator adds server C.
    edit(&mut w, &app(&[a, b, c], &health), 1).await;
    let m = metrics(&w).await;
    assert_has(&m, &endpoints("ejected", 1));
    assert_has(&m, &endpoints("healthy", 2));
    none_to_a(&w, 12, "after C was added").await;

    // Then changes `read_timeout`.
    let slower = format!("{health}    read_timeout: 45s\n");
    edit(&mut w, &app(&[a, b, c], &slower), 2).await;
    let m = metrics(&w).await;
    assert_has(&m, &endpoints("ejected", 1));
    assert_has(&m, &endpoints("healthy", 2));
    none_to_a(&w, 12, "after read_timeout changed").await;
    assert!(
        !w.proxy
            .logs()
            .iter()
            .any(|l| l.contains("upstream endpoint back in service")),
        "A came back"
    );

    // Passive health turned off: nothing keeps A out any more.
    edit(&mut w, &app(&[a, b, c], &passive(0)), 3).await;
    assert_has(&metrics(&w).await, &endpoints("healthy", 3));
    let a_answered = answered_by_a(&w, 3).await;
    assert_eq!(a_answered, 1, "round robin over three, passive health off");
}

/// A out of service by active checks; then the operator adds server C and
/// makes the checks hourly. The new upstream's endpoints used to start
/// healthy: A took its share of requests (`503`s) until its checks failed
/// `unhealthy_after` times again, here an hour. Its verdict carries over;
/// with the checks removed by a later edit, nothing could bring A back,
/// and it is in service again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_keeps_an_unhealthy_endpoint_out() {
    let checks = |interval: &str| {
        format!(
            "    health:\n      passive: {{ consecutive_failures: 0 }}\n      active: {{ path: /healthz, interval: {interval}, timeout: 1s, healthy_after: 2, unhealthy_after: 2 }}\n    retries: {{ attempts: 0 }}\n"
        )
    };
    let mut w = a_failing_beside_b(&checks("100ms")).await;
    let [a, b, c] = [0, 1, 2].map(|i| w.pods[i].addr);
    let out = w
        .proxy
        .wait_log("A out by its checks", |v| {
            v["message"] == "upstream endpoint failed its active checks; out of service"
                && v["upstream"] == "app"
        })
        .await;
    assert_eq!(out["endpoint"], a.to_string());
    wait_gauge(&w, "unhealthy", 1).await;

    edit(&mut w, &app(&[a, b, c], &checks("1h")), 1).await;
    let m = metrics(&w).await;
    assert_has(&m, &endpoints("unhealthy", 1));
    assert_has(&m, &endpoints("healthy", 2));
    none_to_a(&w, 12, "after C was added").await;

    edit(&mut w, &app(&[a, b, c], &passive(0)), 2).await;
    assert_has(&metrics(&w).await, &endpoints("healthy", 3));
    let a_answered = answered_by_a(&w, 3).await;
    assert_eq!(
        a_answered, 1,
        "round robin over three, active checks removed"
    );
}

/// A answering `503` while passive health is off; then a reload turns it
/// on (`consecutive_failures: 3`). Failures were counted while it was off
/// and carried over the edit: A's first `503` after it was its fifth in a
/// row, and ejected it at once. Nothing was counted while passive health
/// was off, so A keeps its share of requests until it has failed three
/// times in a row under the new setting, and only then is it ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_passive_health_on_counts_failures_from_then() {
    let mut w = a_failing_beside_b(&passive(0)).await;
    let [a, b] = [0, 1].map(|i| w.pods[i].addr);
    // Round robin over A and B, both in service: A answers every other.
    let failed = answered_by_a(&w, 8).await;
    assert_eq!(failed, 4, "passive health off: A keeps its share");

    edit(&mut w, &app(&[a, b], &passive(3)), 1).await;
    assert_has(&metrics(&w).await, &endpoints("healthy", 2));
    a_in_service_for_three_failures(&mut w, a, "came on").await;
}

/// A fails four times under `consecutive_failures: 5` (one short of an
/// ejection); an edit turns passive health off and A keeps failing; a
/// later edit turns it on with `consecutive_failures: 3`. Had A's four
/// failures carried over the edits, its first `503` after the last one
/// would eject it. Turning passive health off starts A's health afresh,
/// and nothing is counted while it is off, so A keeps its share until it
/// has failed three times in a row under the new setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_passive_health_went_off_do_not_count_once_it_is_on() {
    let mut w = a_failing_beside_b(&passive(5)).await;
    let [a, b] = [0, 1].map(|i| w.pods[i].addr);
    let failed = answered_by_a(&w, 8).await;
    assert_eq!(failed, 4, "A's share, four failures in a row");
    assert_has(&metrics(&w).await, &endpoints("healthy", 2));

    edit(&mut w, &app(&[a, b], &passive(0)), 1).await;
    let failed = answered_by_a(&w, 4).await;
    assert_eq!(failed, 2, "passive health off: A keeps its share");

    edit(&mut w, &app(&[a, b], &passive(3)), 2).await;
    assert_has(&metrics(&w).await, &endpoints("healthy", 2));
    a_in_service_for_three_failures(&mut w, a, "came back on").await;
}

/// Round robin goes on across an edit of the upstream: a reload that
/// changes any of its settings builds a new endpoint set, and the new set
/// takes over the rotation where the old one was. Each set started it
/// again at the first endpoint: with fewer requests between reloads (or
/// re-resolutions) than endpoints, the lowest-sorted pods took most of the
/// traffic, on every replica at once. Pods A, B and C in service; one
/// request, an edit, one request, an edit, one request: each pod gets one
/// (A got all three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_goes_on_across_an_edit() {
    let p = Pods::new();
    let mut pods = Vec::new();
    for (ip, label) in [
        ("127.0.0.2", "podA"),
        ("127.0.0.3", "podB"),
        ("127.0.0.4", "podC"),
    ] {
        pods.push(p.pod_at(ip, label).await);
    }
    let addrs: Vec<_> = pods.iter().map(|p| p.addr).collect();
    let mut w = p.serve("[{ upstream: app }]", &app(&addrs, ""), pods).await;
    let mut send = client(&w).await;
    let mut answered = vec![get_pod(&mut send, "/").await];
    for (n, timeout) in [(1, "45s"), (2, "40s")] {
        let edited = format!("    read_timeout: {timeout}\n");
        edit(&mut w, &app(&addrs, &edited), n).await;
        answered.push(get_pod(&mut send, "/").await);
    }
    let mut pods: Vec<_> = answered.iter().map(|(_, pod)| pod.clone()).collect();
    assert!(answered.iter().all(|(s, _)| *s == 200), "{answered:?}");
    pods.sort();
    pods.dedup();
    assert_eq!(
        pods.len(),
        3,
        "one request each, across the edits: {answered:?}"
    );
}
