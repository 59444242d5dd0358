//! Envoy's panic mode and ejection limit: passive health takes at most half the endpoints out, and below half in service requests go to all.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;

use crate::common::*;

/// Four pods on 127.0.0.2 to .5 (`pod0` to `pod3`), each answering with
/// `status` (0: as usual), behind upstream `four` (round robin, with
/// `settings` lines), which every request is routed to.
async fn four_pods(status: [u16; 4], settings: &str) -> World {
    let p = Pods::new();
    let mut pods = Vec::new();
    for (i, ip) in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        .into_iter()
        .enumerate()
    {
        let pod = p.pod_at(ip, &format!("pod{i}")).await;
        pod.answer_status.store(status[i], SeqCst);
        pods.push(pod);
    }
    let four = upstream(
        "four",
        &servers(&pods),
        &format!("    balance: round_robin\n{settings}"),
    );
    p.serve("[{ upstream: four }]", &four, pods).await
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

/// The `hotproxy_upstream_endpoints` line of upstream `four` in `state`.
fn endpoints(state: &str, n: usize) -> String {
    format!("hotproxy_upstream_endpoints{{upstream=\"four\",state=\"{state}\"}} {n}")
}

/// A shared database down: all four pods answer 503. Passive health ejects
/// two of them (Envoy's `max_ejection_percent` at half), not three: the
/// two left share the traffic. Each pod used to be ejected in turn until
/// one was left, which then took every request, and the others' ejections
/// doubled each time they came back and failed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_at_most_half_the_endpoints() {
    let w = four_pods(
        [503; 4],
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
    let logged = w.proxy.logs();
    let kept = logged
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"]
                == "upstream endpoint failing, but half the endpoints are ejected already: not ejected"
                && v["upstream"] == "four"
        })
        .count();
    assert!(kept > 0, "no ejection refused for the limit:\n{logged:#?}");
}

/// Three of four pods fail their active checks: one in four in service,
/// below half, so requests go to all four in turn (Envoy's panic mode at
/// its default `healthy_panic_threshold`, 50 %). Panic mode used to start
/// only with none in service: the one pod left took every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_half_in_service_requests_go_to_every_endpoint() {
    let mut w = four_pods(
        [503, 503, 503, 0],
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
