//! Spreading over endpoints, and the endpoint gauge and per-endpoint series across edits.

use std::collections::HashMap;

use crate::common::*;
use crate::support::*;

/// Requests spread over every endpoint: round robin exactly, least request
/// (power of two choices) within a few percent; both counted per endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_every_endpoint() {
    let w = world("").await;
    let mut send = client(&w).await;
    for (path, n, low, high) in [("/rr", 300, 100, 100), ("/lr", 600, 160, 240)] {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..n {
            let (status, pod) = get_pod(&mut send, path).await;
            assert_eq!(status, 200);
            *counts.entry(pod.unwrap()).or_default() += 1;
        }
        assert_eq!(counts.len(), 3, "{path}: {counts:?}");
        for (pod, c) in &counts {
            assert!(
                (low..=high).contains(c),
                "{path}: {pod} got {c} of {n}: {counts:?}"
            );
        }
    }
    let m = metrics(&w).await;
    for pod in &w.pods {
        let line = format!("{}code=\"200\"}} 100", requests_series("rr", pod.addr));
        assert_has(&m, &line);
    }
    assert_has(
        &m,
        "hotproxy_upstream_endpoints{upstream=\"lr\",state=\"healthy\"} 3",
    );
}

/// A configuration edit that is rejected leaves the running upstreams,
/// and their endpoint gauge says so: the edit's new upstream (one pod) was
/// built, and published, before a listener that cannot bind rejected it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_edit_leaves_the_endpoint_gauge_alone() {
    let mut w = world("").await;
    let healthy = "hotproxy_upstream_endpoints{upstream=\"rr\",state=\"healthy\"}";
    assert_has(&metrics(&w).await, &format!("{healthy} 3"));
    let one = servers(&w.pods[..1]);
    // `public` as before, and a second listener on the admin's address.
    let routes = format!(
        "[{{ path_prefix: /rr, upstream: rr }}]\n{}",
        listener_yaml("busy", &w.admin.to_string(), "[{ upstream: rr }]")
    );
    w.scene
        .public_config(&routes, &upstream("rr", &one, "    balance: round_robin\n"));
    w.proxy
        .wait_log("the rejection", |v| {
            v["message"] == "configuration rejected; the running configuration stays"
        })
        .await;
    assert_has(&metrics(&w).await, &format!("{healthy} 3"));
    assert_eq!(get_pod(&mut client(&w).await, "/rr").await.0, 200);
}

/// A configuration edit that is rejected registers no series: its new
/// listener's request series, made while its routes were built (before
/// its bind failed), stayed in `/metrics` for as long as the process ran,
/// a zero histogram of a listener that never served. The same listener
/// applied has its series from the reload on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_edit_leaves_no_series_behind() {
    let mut w = world("").await;
    let busy = "listener=\"busy\"";
    assert!(!metrics(&w).await.contains(busy));
    let with_busy = |bind: &str| {
        format!(
            "{RR_AND_LR}\n{}",
            listener_yaml("busy", bind, "[{ upstream: rr }]")
        )
    };
    let upstreams = rr_and_lr(&w.pods, &w.pods, "");
    // On the admin's address: it cannot bind.
    w.scene
        .public_config(&with_busy(&w.admin.to_string()), &upstreams);
    w.proxy
        .wait_log("the rejection", |v| {
            v["message"] == "configuration rejected; the running configuration stays"
        })
        .await;
    let m = metrics(&w).await;
    assert!(!m.lines().any(|l| l.contains(busy)), "{m}");
    // Applied: its series are there before its first request.
    w.scene.public_config(&with_busy("127.0.0.1:0"), &upstreams);
    let reloaded = w.wait_reloaded("the listener added").await;
    let changes = reloaded["changes"].as_str().unwrap();
    assert!(changes.starts_with("listeners added: busy;"), "{reloaded}");
    assert_has(
        &metrics(&w).await,
        "hotproxy_http_request_duration_seconds_count{listener=\"busy\",upstream=\"rr\"} 0",
    );
}

/// Two servers of one upstream at one address (two names of one pod)
/// share its per-endpoint series: the `endpoint` label is the address. They
/// stay while either server is configured and go with the last one. Each
/// endpoint removed only the series of the codes it had counted itself, so
/// those only the other one (or the endpoint an edit replaced) had counted
/// were left for as long as the process ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_shared_by_two_servers_at_one_address_go_with_the_last() {
    let pods = Pods::new();
    let (names, _hosts) = two_names_on_127_0_0_2("first", "second");
    let pod = pods.pod_at("127.0.0.2", "pod").await;
    let other = pods.pod_at("127.0.0.3", "other").await;
    let port = pod.addr.port();
    let on = |names: &[String]| {
        let servers: Vec<String> = names
            .iter()
            .map(|n| format!("https://{n}:{port}"))
            .collect();
        upstream("app", &servers.join(", "), "    balance: round_robin\n")
    };
    let w = pods
        .serve("[{ upstream: app }]", &on(&names), Vec::new())
        .await;
    // Round robin: one request to each server, counted under one label;
    // one answered 200, the other 502 (more header fields than taken).
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/").await.0, 200);
    assert_eq!(get_pod(&mut send, "/many-headers/150").await.0, 502);
    let series = |code: u16| format!("{}code=\"{code}\"}}", requests_series("app", pod.addr));
    let m = metrics(&w).await;
    assert_has(&m, &series(200));
    assert_has(&m, &series(502));
    // An edit keeps one of the two servers: the address is still an
    // endpoint, and both series stay.
    w.scene
        .public_config("[{ upstream: app }]", &on(&names[..1]));
    wait_until(WAIT, "the first edit applied", || async {
        reloads(&w) == 1
    })
    .await;
    let m = metrics(&w).await;
    assert_has(&m, &series(200));
    assert_has(&m, &series(502));
    // An edit moves the upstream to another pod: no endpoint has that
    // address any more, and no series of it stays.
    let elsewhere = format!("https://{}", other.addr);
    w.scene.public_config(
        "[{ upstream: app }]",
        &upstream("app", &elsewhere, "    balance: round_robin\n"),
    );
    wait_until(WAIT, "the second edit applied", || async {
        reloads(&w) == 2
    })
    .await;
    let m = metrics(&w).await;
    let gone = format!("endpoint=\"{}\"", pod.addr);
    assert!(!m.lines().any(|l| l.contains(&gone)), "{m}");
}

/// An edit that drops a server from an upstream takes that server's
/// request counters with it, as re-resolution dropping an address does;
/// the servers the edited upstream keeps keep theirs. The dropped server's
/// series used to stay for the life of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_that_drops_a_server_drops_its_series() {
    let mut w = world("").await;
    let mut send = client(&w).await;
    for _ in 0..3 {
        assert_eq!(get_pod(&mut send, "/rr").await.0, 200);
    }
    let series = |pod| requests_series("rr", pod);
    let m = metrics(&w).await;
    for pod in &w.pods {
        assert_has(&m, &series(pod.addr));
    }
    w.scene
        .public_config(RR_AND_LR, &rr_and_lr(&w.pods[..2], &w.pods, ""));
    let reloaded = w.wait_reloaded("the edit applied").await;
    assert_eq!(reloaded["changes"], "upstreams changed: rr");
    let m = metrics(&w).await;
    assert!(!m.contains(&series(w.pods[2].addr)), "{m}");
    assert_has(&m, &series(w.pods[0].addr));
    assert_has(&m, &series(w.pods[1].addr));
    // The kept servers still count on them.
    for _ in 0..2 {
        assert_eq!(get_pod(&mut send, "/rr").await.0, 200);
    }
    assert!(!metrics(&w).await.contains(&series(w.pods[2].addr)));
}

/// A request held through an upstream's endpoint while two edits go by:
/// the first replaces the upstream with one that keeps the address, the
/// second drops it, and its series go. Answered then with a status the
/// first upstream's endpoint had not counted yet, it made the series
/// again: the replaced upstream's member was never told its series had
/// gone (only its successor's was), and the series stayed, of an endpoint
/// no longer configured, for the life of the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_across_edits_does_not_bring_a_dropped_series_back() {
    let pods = Pods::new();
    let pod = pods.pod_at("127.0.0.2", "pod").await;
    let other = pods.pod_at("127.0.0.3", "other").await;
    let on = |targets: &[&Backend]| {
        let servers: Vec<String> = targets
            .iter()
            .map(|p| format!("https://{}", p.addr))
            .collect();
        upstream("app", &servers.join(", "), "    balance: round_robin\n")
    };
    let w = pods
        .serve("[{ upstream: app }]", &on(&[&pod]), Vec::new())
        .await;
    // One status counted (502: more header fields than taken), then a
    // request held at the pod until a second `/burst/2` comes.
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/many-headers/150").await.0, 502);
    let mut held_send = client(&w).await;
    let held = tokio::spawn(async move { get_pod(&mut held_send, "/burst/2").await });
    wait_until(WAIT, "the request held at the pod", || async {
        pod.requests_for("/burst/2") == 1
    })
    .await;
    // The upstream replaced by one that keeps the pod, then by one without.
    w.scene
        .public_config("[{ upstream: app }]", &on(&[&pod, &other]));
    wait_until(WAIT, "the first edit applied", || async {
        reloads(&w) == 1
    })
    .await;
    w.scene.public_config("[{ upstream: app }]", &on(&[&other]));
    wait_until(WAIT, "the second edit applied", || async {
        reloads(&w) == 2
    })
    .await;
    let gone = format!("endpoint=\"{}\"", pod.addr);
    let m = metrics(&w).await;
    assert!(!m.lines().any(|l| l.contains(&gone)), "{m}");
    // The held request answered (200, never counted on the pod before).
    let cfg = client_config(
        &w.backend_ca.cert_pem,
        Some(&w.backend_ca.client_pair("releaser")),
        &[b"http/1.1"],
    );
    let release = get(pod.addr, "app.prod.svc", cfg, false, "/burst/2", &[]).await;
    assert_eq!(release.unwrap().status, 200);
    assert_eq!(held.await.unwrap().0, 200);
    let m = metrics(&w).await;
    assert!(!m.lines().any(|l| l.contains(&gone)), "{m}");
}

/// A plain-HTTP backend at `ip` (a free port) that answers `GET /status/N`
/// with status `N` as it is, whatever it is (599, 799), and closes.
async fn raw_status_at(ip: &str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split(' ').nth(1).unwrap_or_default();
                let code = path.strip_prefix("/status/").unwrap_or("200");
                let answer = format!(
                    "HTTP/1.1 {code} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// An edit that drops an address takes every series counted at it, also
/// those of unusual status codes a raw backend answered (599, 799): only
/// the codes counted there are looked for now, no longer every one from
/// 100 to 999, and none may be missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_dropped_takes_its_unusual_codes_series() {
    let raw = raw_status_at("127.0.0.2").await;
    let other = raw_status_at("127.0.0.3").await;
    let on = |at: std::net::SocketAddr| {
        format!("\n  - name: app\n    servers: [http://{at}]\n    balance: round_robin\n")
    };
    let w = Pods::new()
        .serve("[{ upstream: app }]", &on(raw), Vec::new())
        .await;
    let mut send = client(&w).await;
    let codes = [200, 599, 799];
    for code in codes {
        let (status, _) = get_pod(&mut send, &format!("/status/{code}")).await;
        assert_eq!(status, code);
    }
    let m = metrics(&w).await;
    for code in codes {
        assert_has(
            &m,
            &format!("{}code=\"{code}\"}} 1", requests_series("app", raw)),
        );
    }
    w.scene.public_config("[{ upstream: app }]", &on(other));
    wait_until(WAIT, "the edit applied", || async { reloads(&w) == 1 }).await;
    let m = metrics(&w).await;
    let gone = format!("endpoint=\"{raw}\"");
    assert!(!m.lines().any(|l| l.contains(&gone)), "{m}");
    assert_eq!(get_pod(&mut send, "/status/204").await.0, 204);
    assert_has(
        &metrics(&w).await,
        &format!("{}code=\"204\"}} 1", requests_series("app", other)),
    );
}

/// How many reloads the proxy has logged as applied.
fn reloads(w: &World) -> usize {
    w.proxy
        .logs()
        .iter()
        .filter(|l| l.contains("\"configuration reloaded\""))
        .count()
}
