//! A request or an active check in flight to an endpoint a re-resolution removed, failing after: no verdict on the endpoint out of service (not ejected, nothing logged).

use crate::common::*;
use crate::dns::*;
use crate::support::*;

/// Pods `b`, `c`, `d` on 127.0.0.2/.3/.4, one port; a name the test's
/// server answers with all three; one failure ejects. A request held at
/// `c`, the name then answered without `c` (its endpoint removed), `c`
/// killed: that request fails through the endpoint no longer in service,
/// which is neither ejected nor logged about. It was ejected against the
/// set in service (`upstream endpoint ejected endpoint=127.0.0.3:…`,
/// counted in the ejection cap of endpoints it is not one of), or logged
/// as `the last one in service`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoint_failing_after_is_not_ejected() {
    let dns = NameServer::start(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]).await;
    let p = Pods::new();
    let b = p.pod_at("127.0.0.2", "b").await;
    let port = b.addr.port();
    let mut pods = vec![b];
    for (ip, label) in [("127.0.0.3", "c"), ("127.0.0.4", "d")] {
        let at = format!("{ip}:{port}").parse().unwrap();
        let ca = Some(p.backend_ca.cert_pem.as_str());
        pods.push(Backend::start_at(at, label, &p.pair, ca).await);
    }
    let resolv_conf = p.scene.path("resolv.conf");
    write(&resolv_conf, &dns.resolv_conf());
    let settings = "    resolve_interval: 100ms\n    health: { passive: { consecutive_failures: 1, eject_for: 60s } }\n    retries: { attempts: 0 }\n";
    let name = own_name("removed");
    let app = upstream("app", &format!("https://{name}:{port}"), settings);
    let start = |config: &std::path::Path| Proxy::start_with_resolv_conf(config, &resolv_conf);
    let mut w = p.serve_with("[{ upstream: app }]", &app, pods, start).await;

    // Requests held at the pods, in turn, until one is at `c`.
    let hung = |w: &World| -> usize { w.pods.iter().map(|p| p.requests_for("/hang")).sum() };
    let mut at_c = None;
    for k in 1..=3 {
        let mut send = client(&w).await;
        let held = tokio::spawn(async move { get_pod(&mut send, "/hang").await });
        wait_until(WAIT, "the request held at a pod", || async {
            hung(&w) == k
        })
        .await;
        if w.pods[1].requests_for("/hang") == 1 {
            at_c = Some(held);
            break;
        }
    }
    let at_c = at_c.expect("a request held at c");

    dns.answer_with(&["127.0.0.2", "127.0.0.4"]);
    let c = format!("127.0.0.3:{port}");
    let removed = w
        .proxy
        .wait_log("c removed", |v| {
            v["message"] == "upstream endpoint removed; draining its pool" && v["endpoint"] == c
        })
        .await;
    assert_eq!(removed["upstream"], "app", "{removed}");
    w.pods[1].kill();
    let (status, _) = at_c.await.unwrap();
    assert_eq!(status, 502, "the request in flight at the killed pod");

    let blamed: Vec<String> = logged_so_far(&mut w)
        .await
        .into_iter()
        .filter(|l| {
            l.contains(c.as_str())
                && (l.contains("upstream endpoint ejected")
                    || l.contains("upstream endpoint failing"))
        })
        .collect();
    assert!(
        blamed.is_empty(),
        "an endpoint out of service was judged: {blamed:?}"
    );
}

/// Pods `b` and `c` on 127.0.0.2/.3, one port; a name the test's server
/// answers with both; active checks every 100 ms, one failure takes an
/// endpoint out. A check held at `c`, the name then answered without `c`
/// (its endpoint removed), `c` killed: that check's failure, for an
/// endpoint no longer in service, is dropped, nothing logged about it. It
/// was logged `active check` and `upstream endpoint failed its active
/// checks; out of service` for an endpoint removed already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoints_check_failing_after_is_dropped() {
    let dns = NameServer::start(&["127.0.0.2", "127.0.0.3"]).await;
    let p = Pods::new();
    let b = p.pod_at("127.0.0.2", "b").await;
    let port = b.addr.port();
    let at = format!("127.0.0.3:{port}").parse().unwrap();
    let c = Backend::start_at(at, "c", &p.pair, Some(p.backend_ca.cert_pem.as_str())).await;
    // Every check of `c` is held from the first.
    c.hang_all.store(true, std::sync::atomic::Ordering::SeqCst);
    let resolv_conf = p.scene.path("resolv.conf");
    write(&resolv_conf, &dns.resolv_conf());
    let settings = "    resolve_interval: 100ms\n    health:\n      passive: { consecutive_failures: 0 }\n      active: { path: /healthz, interval: 100ms, timeout: 60s, healthy_after: 1, unhealthy_after: 1 }\n";
    let name = own_name("removed-checked");
    let app = upstream("app", &format!("https://{name}:{port}"), settings);
    let start = |config: &std::path::Path| Proxy::start_with_resolv_conf(config, &resolv_conf);
    let mut w = p
        .serve_with("[{ upstream: app }]", &app, vec![b, c], start)
        .await;

    // A round checks both; the next waits for `c`'s held check: `b`'s
    // count stays at the round's until that check has a result.
    let checks = |w: &World, k: usize| w.pods[k].requests_for("/healthz");
    wait_until(WAIT, "c's check held, b's of that round done", || async {
        checks(&w, 1) > 0 && checks(&w, 0) == checks(&w, 1)
    })
    .await;
    let round = checks(&w, 0);

    dns.answer_with(&["127.0.0.2"]);
    let c = format!("127.0.0.3:{port}");
    w.proxy
        .wait_log("c removed", |v| {
            v["message"] == "upstream endpoint removed; draining its pool" && v["endpoint"] == c
        })
        .await;
    w.pods[1].kill();
    wait_until(WAIT, "the next round of checks", || async {
        checks(&w, 0) > round
    })
    .await;

    let logs = logged_so_far(&mut w).await;
    let removal = (logs.iter())
        .position(|l| l.contains("upstream endpoint removed") && l.contains(c.as_str()))
        .expect("the removal's line");
    let judged: Vec<&String> = logs[removal..]
        .iter()
        .filter(|l| l.contains(c.as_str()) && l.contains("active check"))
        .collect();
    assert!(
        judged.is_empty(),
        "an endpoint out of service was judged by its check: {judged:?}"
    );
}
