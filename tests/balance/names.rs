//! Servers named in /etc/hosts: re-resolution, changing addresses, failed lookups.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use crate::common::*;
use crate::dns::{app_by_name, own_name};
use crate::support::*;

/// Pods named `labels`, at 127.0.0.2, .3, ... on one port, behind the
/// test-owned `name` (its /etc/hosts entry starts with the first pod only),
/// and the proxy with upstream `app` over `https://name:port`, re-resolved
/// every 100 ms.
async fn named_pods(name: &str, labels: &[&str]) -> (World, Vec<Backend>, HostsEntry) {
    let p = Pods::new();
    let mut pods: Vec<Backend> = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let port = pods.first().map_or(0, |p| p.addr.port());
        let at = format!("127.0.0.{}:{port}", i + 2).parse().unwrap();
        pods.push(Backend::start_at(at, label, &p.pair, Some(&p.backend_ca.cert_pem)).await);
    }
    let port = pods[0].addr.port();
    let hosts = HostsEntry::new(name, &["127.0.0.2"]);
    let w = p
        .serve(
            "[{ upstream: app }]",
            &named_app(name, port, NO_BUDGET),
            Vec::new(),
        )
        .await;
    (w, pods, hosts)
}

/// The retry budget out of the way: a test whose probes are held at a pod
/// that then dies has them all retried at once, and under a loaded host
/// (more probes sent before the set changes) the default budget (20 %,
/// at least 3) could refuse the very request the test follows. The budget
/// has tests of its own (`budget.rs`).
const NO_BUDGET: &str = "    retries: { budget_percent: 100, min_retry_concurrency: 10000 }\n";

/// Upstream `app` over `https://name:port`, re-resolved every 100 ms, with
/// `settings` lines.
fn named_app(name: &str, port: u16, settings: &str) -> String {
    let settings = format!("    resolve_interval: 100ms\n{settings}");
    upstream("app", &format!("https://{name}:{port}"), &settings)
}

/// Wait until the proxy logs that a lookup of `app`'s name failed.
async fn wait_lookup_failed(w: &mut World) -> serde_json::Value {
    w.proxy
        .wait_log("the failed lookup", |v| {
            v["message"] == "upstream DNS lookup failed; keeping the last good addresses"
        })
        .await
}

/// Two server names that resolve to one address are two endpoints, each
/// dialled with its own name (SNI and verification), as they are with
/// `resolve_interval: 0`. The second was dropped as a duplicate address:
/// every request went to the first, with the first one's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_names_on_one_address_are_two_endpoints() {
    let pods = Pods::new();
    let (names, _hosts) = two_names_on_127_0_0_2("one", "two");
    let pair = pods.backend_ca.server_pair(&[&names[0], &names[1]]);
    let at = "127.0.0.2:0".parse().unwrap();
    let pod = Backend::start_at(at, "pod", &pair, Some(&pods.backend_ca.cert_pem)).await;
    let port = pod.addr.port();
    let app = format!(
        r#"
  - name: app
    servers: [https://{}:{port}, https://{}:{port}]
    tls:
      ca: {{ ca_file: pods-ca.crt }}
      client_cert: {{ cert_file: proxy-client.crt, key_file: proxy-client.key }}
"#,
        names[0], names[1]
    );
    let w = pods.serve("[{ upstream: app }]", &app, vec![pod]).await;
    let mut send = client(&w).await;
    let mut seen = Vec::new();
    // Round robin: two requests in turn reach both endpoints.
    for _ in 0..2 {
        let got = within_deadline("GET / through the proxy", async {
            send.ready().await.unwrap();
            let req = http::Request::get("/")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()["sni"].clone()
        })
        .await;
        seen.push(got.as_str().expect("an SNI").to_owned());
    }
    seen.sort();
    assert_eq!(seen, names, "one endpoint, one name");
}

/// A headless-Service-like name: its addresses change (a pod added, then
/// the first one gone); traffic spreads to the new address, the old one is
/// drained without failing the request it was serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_addresses_spread_and_drain() {
    let name = format!("pods-{}.hotproxy.test", std::process::id());
    let (w, pods, hosts) = named_pods(&name, &["pod-a", "pod-b"]).await;
    let (a, b) = (&pods[0], &pods[1]);
    let mut send = client(&w).await;
    for _ in 0..5 {
        assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod-a".into())));
    }

    // A second pod: requests reach it within a few resolutions.
    hosts.set(&["127.0.0.2", "127.0.0.3"]);
    // Each poll one request on a connection of its own.
    wait_until(WAIT, "pod-b gets a request", || async {
        get_pod(&mut client(&w).await, "/").await.1.as_deref() == Some("pod-b")
    })
    .await;

    // Two slow requests in flight (round robin: one on each pod), then the
    // first pod leaves: its request still completes.
    let slow = || {
        let w = &w;
        async move {
            let mut s = client(w).await;
            get_pod(&mut s, "/slow").await
        }
    };
    let (r1, r2, ()) = tokio::join!(slow(), slow(), async {
        // Both requests have reached the pods (each is being answered).
        wait_until(WAIT, "two requests in flight", || async {
            a.slow_in_flight.load(SeqCst) >= 1 && b.slow_in_flight.load(SeqCst) >= 1
        })
        .await;
        hosts.set(&["127.0.0.3"]);
    });
    let mut pods = vec![r1.1.clone(), r2.1.clone()];
    pods.sort();
    assert_eq!((r1.0, r2.0), (200, 200));
    assert_eq!(pods, [Some("pod-a".into()), Some("pod-b".into())]);
    let mut proxy = w.proxy;
    let removed = proxy
        .wait_log("pod-a removed", |v| {
            v["message"] == "upstream endpoint removed; draining its pool"
        })
        .await;
    assert_eq!(removed["endpoint"], a.addr.to_string());
    let w = World { proxy, ..w };
    for _ in 0..10 {
        assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod-b".into())));
    }
    // Drained: pod-a's connections from the proxy all close.
    wait_until(WAIT, "pod-a drained", || async { a.open.load(SeqCst) == 0 }).await;
    let m = metrics(&w).await;
    assert_has(
        &m,
        "hotproxy_upstream_endpoints{upstream=\"app\",state=\"healthy\"} 1",
    );
    // The removed pod's request counters go with it (a headless Service's
    // addresses change with every rollout); the pod that stays keeps its.
    let series = |pod: std::net::SocketAddr| {
        format!("hotproxy_upstream_requests_total{{upstream=\"app\",endpoint=\"{pod}\",")
    };
    assert!(!m.contains(&series(a.addr)), "{m}");
    assert!(m.contains(&series(b.addr)), "{m}");
    drop(hosts);
}

/// A name whose lookups fail (SERVFAIL) keeps its last good addresses:
/// requests are still served, the failure is logged once and counted,
/// and the recovery is logged. (A name that no longer exists empties its
/// set instead: `gone`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_lookup_keeps_the_last_good_addresses() {
    let (dns, mut w) = app_by_name("failing", "100ms").await;
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));

    dns.fail();
    let failed = wait_lookup_failed(&mut w).await;
    assert_eq!(failed["upstream"], "app");
    for _ in 0..5 {
        assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));
    }
    let m = metrics(&w).await;
    assert_has(
        &m,
        "hotproxy_upstream_errors_total{upstream=\"app\",reason=\"resolve\"}",
    );
    assert_has(
        &m,
        "hotproxy_upstream_endpoints{upstream=\"app\",state=\"healthy\"} 1",
    );

    dns.answer_with(&["127.0.0.2"]);
    w.wait_recovered("app").await;
    let failures = w
        .proxy
        .logs()
        .iter()
        .filter(|l| l.contains("upstream DNS lookup failed"))
        .count();
    assert_eq!(failures, 1, "a failure streak is logged once");
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));
}

/// Editing an upstream rebuilds it (new pools; its endpoints' health
/// carries over, see `edits`), and its names are resolved again. A lookup that fails (SERVFAIL) then keeps the addresses the
/// running upstream had for that name, as a failed re-resolution does. It
/// used to start from nothing and dial the name itself: every request a
/// 502 until DNS came back, for an edit as small as a `read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_edited_while_its_name_does_not_resolve_keeps_its_addresses() {
    let (dns, mut w) = app_by_name("edited", "100ms").await;
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));
    dns.fail();
    wait_lookup_failed(&mut w).await;
    let port = w.pods[0].addr.port();
    let app = named_app(&own_name("edited"), port, "    read_timeout: 30s\n");
    w.scene.public_config("[{ upstream: app }]", &app);
    let reloaded = w.wait_reloaded("the edit applied").await;
    assert_eq!(reloaded["changes"], "upstreams changed: app");
    for i in 0..3 {
        let answer = get_pod(&mut send, "/").await;
        assert_eq!(answer, (200, Some("pod".into())), "request {i}");
    }
}

/// A retry picks from the endpoints as they are when it is sent, not as
/// they were when the request started. The name resolves to pods A and B;
/// a request's dial is held at one of them (X) while re-resolution
/// replaces the other (Y) by pod C; then X dies and the dial fails. The
/// retry went to Y, removed from the name meanwhile (its pool drained, a
/// terminating pod), because the request kept the set it started with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_picks_from_the_endpoints_re_resolution_left() {
    let name = format!("retry-set-{}.hotproxy.test", std::process::id());
    let (mut w, pods, hosts) = named_pods(&name, &["pod-a", "pod-b", "pod-c"]).await;
    let [a, b, c] = [&pods[0], &pods[1], &pods[2]];
    for pod in [a, b] {
        pod.hold_handshakes.send_replace(true);
    }
    hosts.set(&["127.0.0.2", "127.0.0.3"]);
    let endpoint = b.addr.to_string();
    w.proxy
        .wait_log("pod-b added", |v| {
            v["message"] == "upstream endpoint added" && v["endpoint"] == endpoint
        })
        .await;

    // No request went before: this one dials, and its handshake is held.
    let mut send = client(&w).await;
    let request = tokio::spawn(async move { get_pod(&mut send, "/").await });
    let accepted = |pod: &Backend| pod.accepted.load(SeqCst);
    wait_until(WAIT, "the request's dial reaches a pod", || async {
        accepted(a) + accepted(b) == 1
    })
    .await;
    let (x, y) = if accepted(a) == 1 { (a, b) } else { (b, a) };

    // Y leaves the name, C joins it; X keeps the held dial. New requests
    // (held at X or Y, as the first, until C is in) show when the new set
    // is the upstream's: one reaches C.
    hosts.set(&[&x.addr.ip().to_string(), "127.0.0.4"]);
    let probes = std::sync::Mutex::new(Vec::new());
    wait_until(WAIT, "a new request reaches pod-c", || async {
        let mut send = client(&w).await;
        let probe = tokio::spawn(async move { get_pod(&mut send, "/").await });
        probes.lock().unwrap().push(probe);
        accepted(c) > 0
    })
    .await;
    y.hold_handshakes.send_replace(false);
    x.kill();

    let (status, pod) = within_deadline("the retried request", request)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(pod.as_deref(), Some("pod-c"), "the retry's endpoint");
    for probe in probes.into_inner().unwrap() {
        probe.abort();
    }
    drop(hosts);
}

/// A retry may go to an endpoint re-resolution added while its request
/// was in flight, also when the request began with the name's only
/// address. The name resolves to pod A alone; a request's dial is held at
/// A while re-resolution adds pod B; then A dies and the dial fails. The
/// request was judged by the set it began with, where A was the only
/// endpoint: not retried, a `502` beside a pod in service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_to_an_endpoint_re_resolution_added() {
    let name = format!("retry-added-{}.hotproxy.test", std::process::id());
    let (w, pods, hosts) = named_pods(&name, &["pod-a", "pod-b"]).await;
    let [a, b] = [&pods[0], &pods[1]];
    a.hold_handshakes.send_replace(true);
    let accepted = |pod: &Backend| pod.accepted.load(SeqCst);

    // No request went before: this one dials A, and its handshake is held.
    let mut send = client(&w).await;
    let request = tokio::spawn(async move { get_pod(&mut send, "/").await });
    wait_until(WAIT, "the request's dial reaches pod-a", || async {
        accepted(a) == 1
    })
    .await;

    // B joins the name. New requests (held at A, as the first, until B is
    // in) show when the new set is the upstream's: one reaches B.
    hosts.set(&["127.0.0.2", "127.0.0.3"]);
    let probes = std::sync::Mutex::new(Vec::new());
    wait_until(WAIT, "a new request reaches pod-b", || async {
        let mut send = client(&w).await;
        let probe = tokio::spawn(async move { get_pod(&mut send, "/").await });
        probes.lock().unwrap().push(probe);
        accepted(b) > 0
    })
    .await;
    a.kill();

    let (status, pod) = within_deadline("the retried request", request)
        .await
        .unwrap();
    assert_eq!(
        (status, pod.as_deref()),
        (200, Some("pod-b")),
        "the request, retried on the endpoint added while it was in flight"
    );
    for probe in probes.into_inner().unwrap() {
        probe.abort();
    }
    drop(hosts);
}

/// An HTTP/2 pod at `at` (`ip:port`) that holds the first stream it is
/// sent until `release` is notified, then refuses it (`REFUSED_STREAM`:
/// not processed), and answers every other one `{"backend":"label"}`.
struct HoldingPod {
    addr: std::net::SocketAddr,
    /// Streams held: 0, then 1.
    held: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
}

impl HoldingPod {
    async fn start(pair: &TestPair, at: &str, label: &'static str) -> HoldingPod {
        let held = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (first, go) = (held.clone(), release.clone());
        let addr = h2_backend_at(at, pair, move |_, mut respond| {
            if first.compare_exchange(0, 1, SeqCst, SeqCst).is_ok() {
                // The stream loop drives the connection: the reset goes out.
                let go = go.clone();
                tokio::spawn(async move {
                    go.notified().await;
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                });
                return;
            }
            let body = Bytes::from(format!(r#"{{"backend":"{label}"}}"#));
            if let Ok(mut stream) = respond.send_response(http::Response::new(()), false) {
                let _ = stream.send_data(body, true);
            }
        })
        .await;
        HoldingPod {
            addr,
            held,
            release,
        }
    }
}

/// A request an HTTP/2 endpoint refused (not processed) is sent again on a
/// new connection to it when no other endpoint would take it, judged by
/// the endpoints a retry picks from: the upstream's as they are then. The
/// name resolves to pods X (HTTP/2, holding its first stream) and Y; while
/// a request is held at X, re-resolution drops Y; then X refuses it. It
/// was judged by the request's first set, where Y still was: no resend,
/// and the retry found none but X, tried already, in {X}: a `502` for a
/// request X never processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_goes_again_to_its_endpoint_when_re_resolution_left_no_other() {
    let name = format!("refused-alone-{}.hotproxy.test", std::process::id());
    let p = Pods::new();
    let x = HoldingPod::start(&p.pair, "127.0.0.2:0", "pod-x").await;
    let port = x.addr.port();
    let at_y = format!("127.0.0.3:{port}").parse().unwrap();
    let _y = Backend::start_at(at_y, "pod-y", &p.pair, Some(&p.backend_ca.cert_pem)).await;
    let hosts = HostsEntry::new(&name, &["127.0.0.2", "127.0.0.3"]);
    let settings = "    balance: round_robin\n    retries: { attempts: 1 }\n";
    let app = named_app(&name, port, settings);
    let mut w = p.serve("[{ upstream: app }]", &app, Vec::new()).await;

    // Requests one at a time until one is held at X: round robin sends
    // every other one there; Y answers the others.
    let held = || x.held.load(SeqCst) == 1;
    let mut request = None;
    for _ in 0..4 {
        let mut send = client(&w).await;
        let sent = tokio::spawn(async move { get_pod(&mut send, "/").await });
        wait_until(
            WAIT,
            "a request answered by pod-y or held at pod-x",
            || async { sent.is_finished() || held() },
        )
        .await;
        if held() {
            request = Some(sent);
            break;
        }
        assert_eq!(sent.await.unwrap(), (200, Some("pod-y".into())));
    }
    let request = request.expect("a request held at pod-x");

    // Y leaves the name. The set without it is the upstream's once two
    // requests in a row go to X (round robin over X and Y alternates).
    hosts.set(&["127.0.0.2"]);
    let y_label = at_y.to_string();
    w.proxy
        .wait_log("pod-y removed", |v| {
            v["message"] == "upstream endpoint removed; draining its pool"
                && v["endpoint"] == y_label.as_str()
        })
        .await;
    let mut send = client(&w).await;
    let deadline = std::time::Instant::now() + WAIT;
    let mut to_x_in_a_row = 0;
    while to_x_in_a_row < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "pod-y still takes requests"
        );
        let (status, pod) = get_pod(&mut send, "/").await;
        assert_eq!(status, 200);
        to_x_in_a_row = if pod.as_deref() == Some("pod-x") {
            to_x_in_a_row + 1
        } else {
            0
        };
    }

    x.release.notify_one();
    let answer = within_deadline("the refused request", request)
        .await
        .unwrap();
    assert_eq!(
        answer,
        (200, Some("pod-x".into())),
        "the refused request, sent again on a new connection to pod-x"
    );
    assert_has(
        &metrics(&w).await,
        "hotproxy_upstream_resends_total{upstream=\"app\"} 1",
    );
    drop(hosts);
}

/// The access log's `upstream_addr` and the failure log's `server` name
/// the address a named server was dialled at, in the configured URL's
/// form (`https://127.0.0.2:PORT`). They named the configured URL, the
/// same for every address of the name: a 502 could not be traced to a pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_name_the_address_a_named_server_was_dialled_at() {
    let name = format!("logged-{}.hotproxy.test", std::process::id());
    let p = Pods::new();
    let pod = p.pod_at("127.0.0.2", "pod").await;
    let hosts = HostsEntry::new(&name, &["127.0.0.2"]);
    let log = p.scene.path("access.log");
    let settings = format!(
        "{}\naccess_log: {{ path: {}, format: json }}\n",
        named_app(&name, pod.addr.port(), ""),
        log.display()
    );
    let mut w = p.serve("[{ upstream: app }]", &settings, Vec::new()).await;
    let dialled = format!("https://{}", pod.addr);
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));
    pod.kill();
    assert_eq!(get_pod(&mut send, "/").await.0, 502);
    let lines = wait_access_log(&log, 2, WAIT).await;
    let addrs: Vec<_> = lines
        .iter()
        .map(|l| (l["status"].clone(), l["upstream_addr"].clone()))
        .collect();
    assert_eq!(
        addrs,
        [
            (200.into(), dialled.clone().into()),
            (502.into(), dialled.clone().into())
        ]
    );
    let failed = w
        .proxy
        .wait_log("the failure", |v| v["message"] == "upstream request failed")
        .await;
    assert_eq!(failed["server"], dialled.as_str(), "{failed}");
    drop(hosts);
}

/// A request whose small body is read whole picks its endpoint once the
/// body is in, among the endpoints in service then (SPEC §7 Balancing):
/// re-resolution may have dropped one meanwhile. The set was taken as the
/// request came, before its body was read: a client trickling its body
/// while a pod left the name had its request sent to that pod (its pool
/// drained; gone, a `502` or a `504` counted against it). Pods A and B
/// behind the name; two POSTs half sent (the `100 Continue` says the proxy
/// reads their bodies); A leaves the name; the rest of both bodies: B
/// answers both (A answered one of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_read_whole_goes_to_an_endpoint_in_service_once_read() {
    use std::sync::atomic::AtomicBool;
    use tokio::io::AsyncWriteExt;
    let name = format!("trickled-{}.hotproxy.test", std::process::id());
    let (mut w, pods, hosts) = named_pods(&name, &["pod-a", "pod-b"]).await;
    let [a, b] = [&pods[0], &pods[1]];
    hosts.set(&["127.0.0.2", "127.0.0.3"]);
    let endpoint = b.addr.to_string();
    w.proxy
        .wait_log("pod-b added", |v| {
            v["message"] == "upstream endpoint added" && v["endpoint"] == endpoint
        })
        .await;
    let mut posts = Vec::new();
    for _ in 0..2 {
        posts.push(half_posted(&w).await);
    }

    hosts.set(&["127.0.0.3"]);
    let endpoint = a.addr.to_string();
    w.proxy
        .wait_log("pod-a removed", |v| {
            v["message"] == "upstream endpoint removed; draining its pool"
                && v["endpoint"] == endpoint
        })
        .await;
    // The set without A in use (logged just before it is stored): round
    // robin over A and B never gives B two requests in a row.
    let last_b = AtomicBool::new(false);
    wait_until(WAIT, "two requests in a row reach pod-b", || async {
        let mut send = client(&w).await;
        let now_b = get_pod(&mut send, "/").await == (200, Some("pod-b".into()));
        last_b.swap(now_b, SeqCst) && now_b
    })
    .await;

    for (i, mut post) in posts.into_iter().enumerate() {
        post.write_all(b"56789").await.unwrap();
        let answer = String::from_utf8_lossy(&read_to_close(&mut post).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 200"), "POST {i}: {answer}");
        assert!(
            answer.contains(r#""backend":"pod-b""#),
            "POST {i} answered by pod-b, the endpoint in service: {answer}"
        );
    }
    drop(hosts);
}

/// A `POST /` of 10 bytes on a new HTTP/1.1 connection to the proxy, its
/// first 5 sent once the `100 Continue` says the proxy reads the body.
async fn half_posted(w: &World) -> Tls {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let mut s = connect(w.public, "localhost", cfg).await.unwrap();
    let head = "POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut cont = [0u8; 25];
    within_deadline("100 Continue", s.read_exact(&mut cont))
        .await
        .unwrap();
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"01234").await.unwrap();
    s
}
