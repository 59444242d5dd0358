//! Passive and active health: ejection, re-admission, and what does not count as a failure.

use std::net::SocketAddr;

use crate::common::*;
use crate::support::*;

/// How many of the JSON log `lines` say `message` about upstream `rr`.
fn count_rr(lines: &[String], message: &str) -> usize {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message && v["upstream"] == "rr")
        .count()
}

/// The metrics lines that move when upstream `rr` tries endpoint `dead`
/// (refused): that endpoint's requests by status, `rr`'s retries, and
/// its errors (each failed attempt, retried or not).
fn tried_lines(m: &str, dead: SocketAddr) -> Vec<String> {
    let endpoint =
        format!("hotproxy_upstream_requests_total{{upstream=\"rr\",endpoint=\"{dead}\",");
    m.lines()
        .filter(|l| {
            l.starts_with(&endpoint)
                || l.starts_with("hotproxy_upstream_retries_total{upstream=\"rr\"}")
                || l.starts_with("hotproxy_upstream_errors_total{upstream=\"rr\",")
        })
        .map(str::to_owned)
        .collect()
}

/// A killed pod is ejected after the configured failures with no failed
/// client request (idempotent GETs are retried on another endpoint), gets
/// no request while ejected, and is re-admitted when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_endpoint_ejected_retried_and_readmitted() {
    let mut w = world(
        "    health: { passive: { consecutive_failures: 2, eject_for: 1s } }\n    retries: { attempts: 2 }\n",
    )
    .await;
    let mut send = client(&w).await;
    // Warm: every pod has pooled connections, which the kill resets.
    for _ in 0..9 {
        assert_eq!(get_pod(&mut send, "/rr").await.0, 200);
    }
    let dead = w.pods[1].addr;
    w.pods[1].kill();
    for i in 0..60 {
        let (status, pod) = get_pod(&mut send, "/rr").await;
        assert_eq!(status, 200, "request {i} failed after the kill");
        assert!(pod.is_some(), "request {i} answered by no pod");
    }
    logged_ejected(&mut w, "ejection", "rr", dead).await;
    let m = metrics(&w).await;
    assert_has(&m, "hotproxy_upstream_retries_total{upstream=\"rr\"}");

    // An ejected endpoint gets no request. Between two scrapes, at the
    // first of which the gauge shows pod1 out, with no "back in service"
    // logged up to the second (an ejection that runs out is logged, and
    // the gauge updated, before pod1 can be picked), no request may have
    // tried pod1: its per-endpoint
    // counts and `rr`'s retries and errors stay where they were. Were
    // ejection ignored, round robin would send a third of these requests
    // to pod1 first: refused, counted 502 on its endpoint, retried.
    // Should the ejection run out within the check (a slow machine), the
    // next one, twice as long, is used.
    let mut proved = false;
    for _ in 0..3 {
        let logged = logged_so_far(&mut w).await;
        let (back_before, ejections) = (
            count_rr(&logged, "upstream endpoint back in service"),
            count_rr(&logged, "upstream endpoint ejected"),
        );
        let before = metrics(&w).await;
        if before.contains("hotproxy_upstream_endpoints{upstream=\"rr\",state=\"ejected\"} 1") {
            let tried = tried_lines(&before, dead);
            assert!(
                tried
                    .iter()
                    .any(|l| l.contains(&format!("endpoint=\"{dead}\""))),
                "pod1's own counts are not in the metrics:\n{before}"
            );
            for i in 0..30 {
                let (status, pod) = get_pod(&mut send, "/rr").await;
                assert_eq!(status, 200, "request {i} while pod1 is ejected");
                assert_ne!(pod.as_deref(), Some("pod1"));
            }
            let after = metrics(&w).await;
            let back_after = count_rr(
                &logged_so_far(&mut w).await,
                "upstream endpoint back in service",
            );
            if back_after == back_before {
                assert_eq!(
                    tried_lines(&after, dead),
                    tried,
                    "requests tried pod1 while it was ejected"
                );
                proved = true;
                break;
            }
        }
        // Back in service meanwhile: wait until it has failed its way out
        // again (each request a new connection, so the wait can poll).
        wait_until(WAIT, "pod1 ejected again", || async {
            assert_eq!(get_pod(&mut client(&w).await, "/rr").await.0, 200);
            count_rr(&w.proxy.logs(), "upstream endpoint ejected") > ejections
        })
        .await;
    }
    assert!(proved, "pod1's ejection ran out within every check");

    // The pod comes back on the same address: re-admitted once its
    // ejection (with back-off) has run out, then served again.
    // (Re-admissions before now, if an ejection ran out above, are not it.)
    let readmitted = count_rr(
        &logged_so_far(&mut w).await,
        "upstream endpoint back in service",
    );
    let _back = w.pod_back(dead, "pod1").await;
    // Each poll one request on a connection of its own.
    wait_until(WAIT, "pod1 re-admitted and serving", || async {
        let (status, pod) = get_pod(&mut client(&w).await, "/rr").await;
        assert_eq!(status, 200);
        pod.as_deref() == Some("pod1")
    })
    .await;
    wait_until(WAIT, "the re-admission logged", || async {
        count_rr(&w.proxy.logs(), "upstream endpoint back in service") > readmitted
    })
    .await;
    let m = metrics(&w).await;
    assert_has(
        &m,
        "hotproxy_upstream_endpoints{upstream=\"rr\",state=\"healthy\"} 3",
    );
}

/// An ejection runs out also when no request comes: the endpoint is
/// logged back in service and the gauge says so once `eject_for` has
/// passed. Both used to wait for the next request to pick among the
/// endpoints, so an upstream with no traffic (or whose traffic stopped
/// with the failures) showed `state="ejected"` for good, and an alert on
/// it never cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_runs_out_without_requests() {
    let mut w = world(
        "    health: { passive: { consecutive_failures: 1, eject_for: 200ms } }\n    retries: { attempts: 2 }\n",
    )
    .await;
    let dead = w.pods[1].addr;
    w.pods[1].kill();
    let mut send = client(&w).await;
    // Round robin reaches pod1 within three requests: refused, ejected,
    // retried on another pod.
    for i in 0..3 {
        assert_eq!(get_pod(&mut send, "/rr").await.0, 200, "request {i}");
    }
    logged_ejected(&mut w, "ejection", "rr", dead).await;
    // No request from here on.
    let back = w
        .proxy
        .wait_log("back in service with no request", |v| {
            v["message"] == "upstream endpoint back in service" && v["upstream"] == "rr"
        })
        .await;
    assert_eq!(back["endpoint"], dead.to_string());
    wait_until(WAIT, "the gauge back at 3 healthy", || async {
        metrics(&w)
            .await
            .contains("hotproxy_upstream_endpoints{upstream=\"rr\",state=\"healthy\"} 3")
    })
    .await;
    assert_has(
        &metrics(&w).await,
        "hotproxy_upstream_endpoints{upstream=\"rr\",state=\"ejected\"} 0",
    );
}

/// The back-off decays once the endpoint has stayed in service as long as
/// its last ejection, whether or not a request came meanwhile (Envoy
/// decays its ejection multiplier on its timer). It used to decay only
/// on a request served well after that time: an endpoint back after an
/// ejection whose first requests, however much later, failed again was
/// ejected for twice as long, and each such outage, hours apart on a
/// quiet upstream, doubled it again up to 32 times `eject_for`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_off_decays_without_requests() {
    let mut w = world(
        "    health: { passive: { consecutive_failures: 1, eject_for: 200ms } }\n    retries: { attempts: 2 }\n",
    )
    .await;
    let dead = w.pods[1].addr;
    w.pods[1].kill();
    let ejected = |v: &serde_json::Value| {
        v["message"] == "upstream endpoint ejected" && v["upstream"] == "rr"
    };
    // Round robin reaches pod1 within three requests: refused, ejected,
    // retried on another pod.
    for i in 0..3 {
        assert_eq!(
            get_pod(&mut client(&w).await, "/rr").await.0,
            200,
            "request {i}"
        );
    }
    let first = w.proxy.wait_log("the first ejection", ejected).await;
    assert_eq!(first["endpoint"], dead.to_string());
    assert_eq!(first["eject_for"], "200ms");
    w.proxy
        .wait_log("back in service with no request", |v| {
            v["message"] == "upstream endpoint back in service" && v["upstream"] == "rr"
        })
        .await;
    // In service, with no request, for as long as the last ejection
    // (nothing to await: time in service is the condition).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let before = count_rr(&logged_so_far(&mut w).await, "upstream endpoint ejected");
    for i in 0..3 {
        assert_eq!(
            get_pod(&mut client(&w).await, "/rr").await.0,
            200,
            "request {i} again"
        );
    }
    wait_until(WAIT, "the second ejection", || async {
        count_rr(&w.proxy.logs(), "upstream endpoint ejected") > before
    })
    .await;
    let logs = w.proxy.logs();
    let second = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| ejected(v))
        .nth(before)
        .expect("a second ejection");
    assert_eq!(second["endpoint"], dead.to_string());
    assert_eq!(second["eject_for"], "200ms", "the back-off did not decay");
}

/// Active checks over the upstream's mTLS identity (the pods require a
/// client certificate): a dead pod is taken out without any client
/// traffic, gets no request, and comes back after `healthy_after` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_out_and_bring_back() {
    let mut w = world(
        "    health:\n      passive: { consecutive_failures: 0 }\n      active: { path: /healthz, interval: 100ms, timeout: 1s, healthy_after: 2, unhealthy_after: 2 }\n",
    )
    .await;
    let dead = w.pods[2].addr;
    w.pods[2].kill();
    let out = w
        .proxy
        .wait_log("active checks fail", |v| {
            v["message"] == "upstream endpoint failed its active checks; out of service"
                && v["upstream"] == "rr"
        })
        .await;
    assert_eq!(out["endpoint"], dead.to_string());
    let m = metrics(&w).await;
    assert_has(
        &m,
        "hotproxy_upstream_endpoints{upstream=\"rr\",state=\"unhealthy\"} 1",
    );
    let mut send = client(&w).await;
    for _ in 0..12 {
        let (status, pod) = get_pod(&mut send, "/rr").await;
        assert_eq!(status, 200);
        assert_ne!(pod.as_deref(), Some("pod2"));
    }
    let back = w.pod_back(dead, "pod2").await;
    w.proxy
        .wait_log("active checks pass", |v| {
            v["message"] == "upstream endpoint passed its active checks; back in service"
                && v["upstream"] == "rr"
        })
        .await;
    // The checks came with the proxy's client certificate (the pod
    // requires one): their requests reached it.
    assert!(back.accepted.load(std::sync::atomic::Ordering::SeqCst) > 0);
    let mut seen = false;
    for _ in 0..6 {
        seen |= get_pod(&mut send, "/rr").await.1.as_deref() == Some("pod2");
    }
    assert!(seen, "pod2 back in service gets requests");
}

/// A client that stalls its request body is the client's doing, not the
/// endpoint's. Six clients each declare a 100 kB upload (streamed: over
/// `body_buffer_bytes`), send 3 bytes and stop, while the pods wait for the
/// rest: each client gets hotproxy's
/// `408` and its connection closed. No pod is ejected (two failures would
/// eject one): a `request_timeout` that expires while the upstream still
/// waits on the client's body does not count for passive health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stalling_their_bodies_eject_no_endpoint() {
    let w = world(
        "    request_timeout: 300ms\n    retries: { attempts: 0 }\n    \
         health: { passive: { consecutive_failures: 2, eject_for: 1m } }\n",
    )
    .await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let stalled = (0..6).map(|_| {
        let cfg = cfg.clone();
        let public = w.public;
        async move {
            let mut s = connect(public, "localhost", cfg).await.unwrap();
            let head =
                "POST /rr/upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\nabc";
            tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes())
                .await
                .unwrap();
            String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned()
        }
    });
    for answer in futures_util::future::join_all(stalled).await {
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(answer.contains("request body timed out"), "{answer}");
    }
    let m = metrics(&w).await;
    assert_has(
        &m,
        "hotproxy_upstream_endpoints{upstream=\"rr\",state=\"healthy\"} 3",
    );
    assert!(
        !w.proxy
            .logs()
            .iter()
            .any(|l| l.contains("upstream endpoint ejected")),
        "a pod was ejected"
    );
    let mut send = client(&w).await;
    for i in 0..3 {
        assert_eq!(get_pod(&mut send, "/rr").await.0, 200, "request {i}");
    }
}
