//! Envoy's panic mode and ejection limit: passive health takes at most half the endpoints out, and below half in service requests go to all.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;

use crate::common::*;

/// Pods on 127.0.0.2 onwards (`pod0`, `pod1`, ...), one for each item
/// of `status`, each answering with its item (0: as usual), behind
/// upstream `app` (round robin, with `settings` lines), which every
/// request is routed to.
async fn pods(status: &[u16], settings: &str) -> World {
    let p = Pods::new();
    let mut pods = Vec::new();
    for (i, &status) in status.iter().enumerate() {
        let pod = p
            .pod_at(&format!("127.0.0.{}", i + 2), &format!("pod{i}"))
            .await;
        pod.answer_status.store(status, SeqCst);
        pods.push(pod);
    }
    let app = upstream(
        "app",
        &servers(&pods),
        &format!("    balance: round_robin\n{settings}"),
    );
    p.serve("[{ upstream: app }]", &app, pods).await
}

/// `n` GETs in a row on one kept-open connection: how many each pod
/// answered, every answer `status`.
async fn answered_by(w: &World, n: usize, status: u16) -> BTreeMap<String, usize> {
    let mut send = client(w).await;
    let mut by = BTreeMap::new();
    for i in 0..n {
        let (got, pod) = get_pod(&mut send, "/").await;
        assert_eq!(got, status, "request {i}");
        *by.entry(pod.expect("a pod's answer")).or_default() += 1;
    }
    by
}

/// The `hotproxy_upstream_endpoints` line of upstream `app` in `state`.
fn endpoints(state: &str, n: usize) -> String {
    format!("hotproxy_upstream_endpoints{{upstream=\"app\",state=\"{state}\"}} {n}")
}

/// Logged when an ejection is refused for the limit of half.
const HALF_OUT: &str =
    "upstream endpoint failing, but half the endpoints are ejected already: not ejected";

/// Logged when an ejection is refused for the last endpoint in service.
const LAST_IN: &str = "upstream endpoint failing, but it is the last one in service: not ejected";

/// How many `message` lines the proxy has logged about upstream `app` so
/// far (all of them: waited for through a marker line logged after).
async fn lines_so_far(w: &mut World, message: &str) -> usize {
    logged_so_far(w)
        .await
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message && v["upstream"] == "app")
        .count()
}

/// A shared database down: all four pods answer 503. Passive health ejects
/// two of them (Envoy's `max_ejection_percent` at half), not three: the
/// two left share the traffic. Each pod used to be ejected in turn until
/// one was left, which then took every request, and the others' ejections
/// doubled each time they came back and failed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_at_most_half_the_endpoints() {
    let mut w = pods(
        &[503; 4],
        "    health: { passive: { consecutive_failures: 5, eject_for: 1h } }\n",
    )
    .await;
    // Five turns each: round robin brings every pod to its fifth failure.
    let first = answered_by(&w, 20, 503).await;
    assert!(first.values().all(|&n| n == 5), "{first:?}");
    let m = metrics(&w).await;
    assert_has(&m, &endpoints("ejected", 2));
    assert_has(&m, &endpoints("healthy", 2));
    // The two that reached their fifth failure first are out; the other
    // two take turns.
    let then = answered_by(&w, 20, 503).await;
    assert_eq!(
        then.values().collect::<Vec<_>>(),
        [&10, &10],
        "the requests after two ejections: {then:?}"
    );
    let m = metrics(&w).await;
    assert_has(&m, &endpoints("ejected", 2));
    assert!(
        lines_so_far(&mut w, HALF_OUT).await > 0,
        "no ejection refused for the limit"
    );
}

/// An ejection refused for the limit of half starts the count of failures
/// again: each of the two pods left in service logs the refusal once
/// every `consecutive_failures` (5) failures, 8 lines for 40 requests. The
/// count used to stay at the threshold after a refusal, so every further
/// failure took the upstream's ejection lock and logged the line: four
/// pods answering 503 at 2,000 requests a second logged about 1,000 lines
/// a second for as long as the outage lasted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_the_limit_is_logged_once_per_consecutive_failures() {
    let mut w = pods(
        &[503; 4],
        "    health: { passive: { consecutive_failures: 5, eject_for: 1h } }\n",
    )
    .await;
    // Two ejected, then the other two refused, each at its fifth failure.
    answered_by(&w, 20, 503).await;
    assert_eq!(lines_so_far(&mut w, HALF_OUT).await, 2);
    let then = answered_by(&w, 40, 503).await;
    assert_eq!(then.values().collect::<Vec<_>>(), [&20, &20], "{then:?}");
    assert_eq!(
        lines_so_far(&mut w, HALF_OUT).await - 2,
        40 / 5,
        "refusals logged for 40 failures, 5 in a row to each"
    );
    assert_has(&metrics(&w).await, &endpoints("ejected", 2));
}

/// The same for the last endpoint in service: of two pods answering 503,
/// one is ejected; the other is refused its ejection once every
/// `consecutive_failures` failures, not on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_the_last_in_service_is_logged_once_per_consecutive_failures() {
    let mut w = pods(
        &[503; 2],
        "    health: { passive: { consecutive_failures: 5, eject_for: 1h } }\n",
    )
    .await;
    // pod0 ejected at its fifth failure, then pod1 refused at its fifth.
    answered_by(&w, 10, 503).await;
    assert_eq!(lines_so_far(&mut w, LAST_IN).await, 1);
    let then = answered_by(&w, 20, 503).await;
    assert_eq!(then.values().collect::<Vec<_>>(), [&20], "{then:?}");
    assert_eq!(
        lines_so_far(&mut w, LAST_IN).await - 1,
        20 / 5,
        "refusals logged for 20 failures in a row"
    );
    assert_has(&metrics(&w).await, &endpoints("ejected", 1));
}

/// Three of four pods fail their active checks: one in four in service,
/// below half, so requests go to all four in turn (Envoy's panic mode at
/// its default `healthy_panic_threshold`, 50 %). Panic mode used to start
/// only with none in service: the one pod left took every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_half_in_service_requests_go_to_every_endpoint() {
    let mut w = pods(
        &[503, 503, 503, 0],
        "    health:\n      passive: { consecutive_failures: 0 }\n      \
         active: { path: /healthz, interval: 100ms, timeout: 5s, healthy_after: 1, unhealthy_after: 1 }\n",
    )
    .await;
    for pod in &w.pods[..3] {
        let addr = pod.addr.to_string();
        w.proxy
            .wait_log("a 503 pod out of service", |v| {
                v["message"] == "upstream endpoint failed its active checks; out of service"
                    && v["endpoint"] == addr.as_str()
            })
            .await;
    }
    // Whatever the state of pod3 (in service, or out on a check that
    // timed out), fewer than half are in: all four are candidates.
    let mut send = client(&w).await;
    let mut by = BTreeMap::new();
    for _ in 0..8 {
        let (_, pod) = get_pod(&mut send, "/").await;
        *by.entry(pod.expect("a pod's answer")).or_insert(0) += 1;
    }
    let want: BTreeMap<String, usize> = (0..4).map(|i| (format!("pod{i}"), 2)).collect();
    assert_eq!(by, want, "requests with one pod of four in service");
}
