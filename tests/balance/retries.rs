//! Retries and balancing together: round robin's turns while an endpoint fails, and streams left unprocessed.

use std::collections::HashMap;

use crate::common::*;
use crate::support::*;

/// An upstream's settings: round robin, one retry, passive health off
/// (a failing endpoint stays in service).
const IN_TURN_RETRIED_ONCE: &str = "    balance: round_robin\n    retries: { attempts: 1 }\n    \
                                    health: { passive: { consecutive_failures: 0 } }\n";

/// A port on `ip` nothing listens on once its listener is dropped:
/// connects to it are refused.
fn closed_port(ip: &str) -> std::net::SocketAddr {
    std::net::TcpListener::bind(format!("{ip}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `n` requests in turn on `send`, each answered `200` by the pod `pod`.
async fn answered_by(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    n: usize,
    pod: &str,
) {
    for i in 0..n {
        assert_eq!(
            get_pod(send, "/").await,
            (200, Some(pod.into())),
            "request {i}"
        );
    }
}

/// Round robin keeps its turns while one endpoint fails but stays in
/// service (passive health off): the failing endpoint gets its turn of
/// first attempts, and its requests, each retried once, are spread evenly
/// over the other two. The retry's pick used to take a turn from the first
/// attempts' counter, modulo the two left: with three endpoints one of the
/// healthy ones got 75 requests of 300 and the other 225.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_stays_even_while_an_endpoint_in_service_fails() {
    let Pods {
        scene,
        ca,
        backend_ca,
        pair,
    } = Pods::new();
    // Nothing listens there: every connect to it is refused (and retried).
    let dead = closed_port("127.0.0.1");
    let mut pods = Vec::new();
    for (name, ip) in [("pod1", "127.0.0.2"), ("pod2", "127.0.0.3")] {
        let at = format!("{ip}:0").parse().unwrap();
        pods.push(Backend::start_at(at, name, &pair, Some(&backend_ca.cert_pem)).await);
    }
    let config = scene.public_config(
        "[{ upstream: three }]",
        &upstream(
            "three",
            &format!(
                "https://{dead}, https://{}, https://{}",
                pods[0].addr, pods[1].addr
            ),
            IN_TURN_RETRIED_ONCE,
        ),
    );
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let mut send = keep_open_h1(connect(public, "localhost", cfg).await.unwrap())
        .await
        .0;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in 0..300 {
        let (status, pod) = get_pod(&mut send, "/").await;
        assert_eq!(status, 200, "request {i}");
        *counts.entry(pod.unwrap()).or_default() += 1;
    }
    // Sequential requests take the turns in order: 100 first attempts
    // each, and every other one of the dead endpoint's 100 retries.
    let want: HashMap<String, usize> = [("pod1".to_owned(), 150), ("pod2".to_owned(), 150)].into();
    assert_eq!(counts, want);
}

/// SPEC: `hotproxy_upstream_errors_total` counts every failed attempt with
/// its reason, also one sent again to another endpoint (as Envoy counts
/// `upstream_cx_connect_fail` whatever its retry does). With a closed port
/// on 127.0.0.2 beside a live pod on 127.0.0.3, the refused connects were
/// counted as retries and as the closed endpoint's `502`s, never as
/// `connect_refused`: a retry hid why the endpoint kept failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attempt_counts_its_failure_reason() {
    let pods = Pods::new();
    let dead = closed_port("127.0.0.2");
    let live = pods.pod_at("127.0.0.3", "live").await;
    let servers = format!("https://{dead}, https://{}", live.addr);
    let w = pods
        .serve(
            "[{ upstream: two }]",
            &upstream("two", &servers, IN_TURN_RETRIED_ONCE),
            vec![live],
        )
        .await;
    let mut send = client(&w).await;
    // Round robin's turns: the closed port takes the first attempt of
    // every other request, and each of those is retried on the live pod.
    answered_by(&mut send, 4, "live").await;
    let m = metrics(&w).await;
    assert_has(&m, "hotproxy_upstream_retries_total{upstream=\"two\"} 2\n");
    assert_has(
        &m,
        &format!("{}code=\"502\"}} 2\n", requests_series("two", dead)),
    );
    let errors: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("hotproxy_upstream_errors_total{"))
        .collect();
    assert_eq!(
        errors,
        ["hotproxy_upstream_errors_total{upstream=\"two\",reason=\"connect_refused\"} 2"],
        "{m}"
    );
}

/// SPEC §2, access log: a request retried on another endpoint names every
/// endpoint it tried, in order, in `upstream_attempts` (its last is the
/// line's `upstream_addr`, which stays the last attempt's alone); one
/// attempt leaves it `null`. So do a retried request whose client went
/// away (`499`) and one that failed everywhere (`502`). With a closed port
/// on 127.0.0.2 beside a live pod on 127.0.0.3, the retried requests'
/// lines named only their last endpoint: the refused one they tried first
/// was nowhere in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_logs_every_endpoint_it_tried() {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    let pods = Pods::new();
    let dead = closed_port("127.0.0.2");
    let live = pods.pod_at("127.0.0.3", "live").await;
    let (dead_url, live_url) = (format!("https://{dead}"), format!("https://{}", live.addr));
    let log = pods.scene.path("access.log");
    let settings = format!(
        "{}access_log: {{ path: {}, format: json }}\n",
        upstream(
            "two",
            &format!("{dead_url}, {live_url}"),
            IN_TURN_RETRIED_ONCE,
        ),
        log.display()
    );
    let w = pods
        .serve("[{ upstream: two }]", &settings, vec![live])
        .await;
    let mut send = client(&w).await;
    // Round robin's turns of first attempts: the closed port, the live
    // pod, and so on; the closed port's are retried on the live pod.
    answered_by(&mut send, 2, "live").await;
    // The third, retried on the live pod, is held there; its client goes.
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let mut gone = connect(w.public, "localhost", cfg).await.unwrap();
    gone.write_all(b"GET /hang HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let held = || w.pods[0].slow_in_flight.load(SeqCst);
    wait_until(WAIT, "the live pod holding /hang", || async { held() == 1 }).await;
    drop(gone);
    wait_access_log(&log, 3, WAIT).await;
    // The fourth goes first to the live pod, now gone, then to the closed
    // port: refused by both.
    w.pods[0].kill();
    assert_eq!(get_pod(&mut send, "/").await.0, 502);
    let lines = wait_access_log(&log, 4, WAIT).await;
    let logged: Vec<_> = lines
        .iter()
        .map(|l| {
            let (addr, attempts) = (&l["upstream_addr"], &l["upstream_attempts"]);
            (
                l["status"].as_u64().unwrap(),
                addr.clone(),
                attempts.clone(),
            )
        })
        .collect();
    let json = |urls: &[&String]| serde_json::json!(urls);
    assert_eq!(
        logged,
        [
            (200, live_url.as_str().into(), json(&[&dead_url, &live_url])),
            (200, live_url.as_str().into(), serde_json::Value::Null),
            (499, live_url.as_str().into(), json(&[&dead_url, &live_url])),
            (502, dead_url.as_str().into(), json(&[&live_url, &dead_url])),
        ],
        "{lines:?}"
    );
}

/// SPEC (Retries): an attempt whose endpoint has no connection free
/// (every `max_connections_per_server` slot held, none handed back within
/// `connect_timeout`) goes to another endpoint, as nginx skips a server
/// at its `max_conns`: counted in `hotproxy_upstream_retries_total` and
/// as `hotproxy_upstream_errors_total{reason="connection_limit"}`, the
/// client answered by the other endpoint. Here a request the full pod
/// holds (it answers none) takes its one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_no_connection_free_is_skipped_for_another() {
    use std::sync::atomic::Ordering::SeqCst;
    let pods = Pods::new();
    let ca = Some(pods.backend_ca.cert_pem.as_str());
    let at = |ip: &str| format!("{ip}:0").parse().unwrap();
    let full = Backend::start_h1_at(at("127.0.0.2"), "full", &pods.pair, ca).await;
    let free = Backend::start_h1_at(at("127.0.0.3"), "free", &pods.pair, ca).await;
    full.hang_all.store(true, SeqCst);
    let held = full.slow_in_flight.clone();
    let servers = format!("https://{}, https://{}", full.addr, free.addr);
    let settings = "    balance: round_robin\n    retries: { attempts: 1 }\n    \
                    max_connections_per_server: 1\n    connect_timeout: 300ms\n";
    let w = pods
        .serve(
            "[{ upstream: two }]",
            &upstream("two", &servers, settings),
            vec![full, free],
        )
        .await;
    // Round robin's turns: within two requests one is held at the full pod.
    let mut hanging = Vec::new();
    for _ in 0..2 {
        let mut send = client(&w).await;
        let mut get = tokio::spawn(async move { get_pod(&mut send, "/").await });
        tokio::select! {
            answered = &mut get => assert_eq!(answered.unwrap(), (200, Some("free".into()))),
            () = wait_until(WAIT, "a request held", || async { held.load(SeqCst) == 1 }) => {
                hanging.push(get);
                break;
            }
        }
    }
    assert_eq!(hanging.len(), 1, "no request held at the full pod");
    let mut send = client(&w).await;
    answered_by(&mut send, 2, "free").await;
    let m = metrics(&w).await;
    assert_has(&m, "hotproxy_upstream_retries_total{upstream=\"two\"} 1\n");
    assert_has(
        &m,
        "hotproxy_upstream_errors_total{upstream=\"two\",reason=\"connection_limit\"} 1\n",
    );
}
