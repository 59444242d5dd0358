//! Issue 16, endpoints: per-request balancing (round robin, least request) over pods on
//! 127.0.0.1/.2/.3, passive health (a killed pod ejected, no client request failing thanks to
//! retries, re-admitted once back), an HTTP/2 pod refusing streams (sent elsewhere), and their
//! metrics.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use support::*;

const WAIT: Duration = Duration::from_secs(20);

struct World {
    scene: Scene,
    ca: TestCa,
    backend_ca: TestCa,
    proxy: Proxy,
    public: SocketAddr,
    admin: SocketAddr,
    pods: Vec<Backend>,
}

/// What every test here starts from: the proxy's certificate `a`
/// (localhost, from "edge CA"), its client certificate for the pods
/// (`proxy-client`), the pods' CA (`pods-ca.crt`), and the pods' own pair.
struct Pods {
    scene: Scene,
    ca: TestCa,
    backend_ca: TestCa,
    pair: TestPair,
}

impl Pods {
    fn new() -> Pods {
        let scene = Scene::new();
        let ca = TestCa::new("edge CA");
        let backend_ca = TestCa::new("pods CA");
        scene.pair("a", &ca.server_pair(&["localhost"]));
        scene.pair("proxy-client", &backend_ca.client_pair("hotproxy"));
        write(&scene.path("pods-ca.crt"), &backend_ca.cert_pem);
        let pair = backend_ca.server_pair(&["app.prod.svc"]);
        Pods {
            scene,
            ca,
            backend_ca,
            pair,
        }
    }
}

/// An upstream over `servers` (a YAML list's items) with the pods' mTLS
/// settings, for [`Scene::public_config`]; `settings`: more of its lines,
/// each indented four spaces.
fn upstream(name: &str, servers: &str, settings: &str) -> String {
    format!(
        r#"
  - name: {name}
    servers: [{servers}]
{settings}    tls:
      ca: {{ ca_file: pods-ca.crt }}
      client_cert: {{ cert_file: proxy-client.crt, key_file: proxy-client.key }}
      server_name: app.prod.svc
"#
    )
}

async fn world(upstream_extra: &str) -> World {
    let Pods {
        scene,
        ca,
        backend_ca,
        pair,
    } = Pods::new();
    let mut pods = Vec::new();
    for (i, ip) in ["127.0.0.1", "127.0.0.2", "127.0.0.3"].iter().enumerate() {
        let at = format!("{ip}:0").parse().unwrap();
        pods.push(
            Backend::start_at(at, &format!("pod{i}"), &pair, Some(&backend_ca.cert_pem)).await,
        );
    }
    let servers: Vec<String> = pods.iter().map(|p| format!("https://{}", p.addr)).collect();
    let servers = servers.join(", ");
    let config = scene.public_config(
        "\n      - { path_prefix: /rr, upstream: rr }\n      - { path_prefix: /lr, upstream: lr }",
        &[
            upstream(
                "rr",
                &servers,
                &format!("    balance: round_robin\n{upstream_extra}"),
            ),
            upstream(
                "lr",
                &servers,
                &format!("    balance: least_request\n{upstream_extra}"),
            ),
        ]
        .concat(),
    );
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let admin = proxy.admin_addr().await;
    World {
        scene,
        ca,
        backend_ca,
        proxy,
        public,
        admin,
        pods,
    }
}

/// One kept-open HTTP/1.1 connection to the proxy (the support's
/// `connect` and `keep_open_h1` bound each step by `CLIENT_DEADLINE`).
async fn client(w: &World) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(w.public, "localhost", cfg).await.unwrap();
    keep_open_h1(tls).await.0
}

/// GET `path` on `send`: status and the answering pod (if any). Panics
/// if the exchange takes longer than `CLIENT_DEADLINE`.
async fn get_pod(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    path: &str,
) -> (u16, Option<String>) {
    let what = format!("GET {path} on a kept-open connection to the proxy");
    within_deadline(what, async {
        send.ready().await.unwrap();
        let req = http::Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let pod = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["backend"].as_str().map(str::to_owned));
        (status, pod)
    })
    .await
}

/// Every line the proxy has logged so far: a connection closed before
/// its TLS handshake is logged (at debug) after all of them, and waited
/// for by its port.
async fn logged_so_far(w: &mut World) -> Vec<String> {
    let marker = within_deadline(
        format!("TCP connect to {}", w.public),
        tokio::net::TcpStream::connect(w.public),
    )
    .await
    .unwrap();
    let peer = marker.local_addr().unwrap().to_string();
    drop(marker);
    w.proxy
        .wait_log("the marker connection's debug line", |v| {
            v["level"] == "DEBUG" && v["peer"] == peer.as_str()
        })
        .await;
    w.proxy.logs()
}

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
/// its errors (a request failing for good).
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

/// `m` (the metrics text) holds `want`.
fn assert_has(m: &str, want: &str) {
    assert!(m.contains(want), "{want} missing:\n{m}");
}

async fn metrics(w: &World) -> String {
    admin(w.admin, "GET", "/metrics", None, None, &[])
        .await
        .body
}

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
        let line = format!(
            "hotproxy_upstream_requests_total{{upstream=\"rr\",endpoint=\"{}\",code=\"200\"}} 100",
            pod.addr
        );
        assert_has(&m, &line);
    }
    assert_has(
        &m,
        "hotproxy_upstream_endpoints{upstream=\"lr\",state=\"healthy\"} 3",
    );
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
    let ejected = w
        .proxy
        .wait_log("ejection", |v| {
            v["message"] == "upstream endpoint ejected" && v["upstream"] == "rr"
        })
        .await;
    assert_eq!(ejected["endpoint"], dead.to_string());
    let m = metrics(&w).await;
    assert_has(&m, "hotproxy_upstream_retries_total{upstream=\"rr\"}");

    // An ejected endpoint gets no request. Between two scrapes, at the
    // first of which the gauge shows pod1 out, with no "back in service"
    // logged up to the second (an ejection that ran out is logged, and
    // the gauge updated, by the first pick that finds it so, before pod1
    // can be picked), no request may have tried pod1: its per-endpoint
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
    let pair = w.backend_ca.server_pair(&["app.prod.svc"]);
    let _back = Backend::start_at(dead, "pod1", &pair, Some(&w.backend_ca.cert_pem)).await;
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

/// A configuration edit that is rejected leaves the running upstreams,
/// and their endpoint gauge says so: the edit's new upstream (one pod) was
/// built, and published, before a listener that cannot bind rejected it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_edit_leaves_the_endpoint_gauge_alone() {
    let mut w = world("").await;
    let healthy = "hotproxy_upstream_endpoints{upstream=\"rr\",state=\"healthy\"}";
    assert_has(&metrics(&w).await, &format!("{healthy} 3"));
    let one = format!("https://{}", w.pods[0].addr);
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

/// `/etc/hosts` lines for one test-owned name. CI runs as root; the name is
/// unique to this process and test (a second live entry for it panics),
/// and a line is ours only if its name field is exactly that name. Every
/// edit is a read-modify-write under a lock shared by every process (an
/// `flock` on [`HostsEntry::LOCK`]: balance tests of other checkouts may run
/// at the same time, and a lock held only within this process let one
/// write over another's lines), and replaces the file atomically (write a
/// temporary file, rename it over: a concurrent reader sees the old or the
/// new file, never a torn one). The lines are removed on drop, also when
/// the test panics. The name is always present while the test runs, so no
/// lookup of it ever leaves the machine (`files` answers before `dns`).
struct HostsEntry {
    name: String,
}

impl HostsEntry {
    const MARK: &'static str = "# hotproxy-test";
    const HOSTS: &'static str = "/etc/hosts";
    const LOCK: &'static str = "/etc/hosts.hotproxy-test.lock";

    /// Names with a live entry in this process.
    fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
        static NAMES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        NAMES.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new(name: &str, ips: &[&str]) -> HostsEntry {
        {
            let mut live = Self::live();
            assert!(
                !live.iter().any(|n| n == name),
                "two live /etc/hosts entries for {name}"
            );
            live.push(name.to_owned());
        }
        let h = HostsEntry {
            name: name.to_owned(),
        };
        h.set(ips);
        h
    }

    fn set(&self, ips: &[&str]) {
        self.write(ips)
            .unwrap_or_else(|e| panic!("/etc/hosts lines for {}: {e}", self.name));
    }

    /// Whether `line` is one of ours: marked, and naming exactly our name.
    fn ours(&self, line: &str) -> bool {
        line.contains(Self::MARK) && line.split_whitespace().nth(1) == Some(self.name.as_str())
    }

    fn write(&self, ips: &[&str]) -> std::io::Result<()> {
        // One read-modify-write at a time across processes; threads of
        // this one each open the lock file, and flock serialises them too.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Self::LOCK)?;
        lock.lock()?;
        let path = std::path::Path::new(Self::HOSTS);
        let old = std::fs::read_to_string(path)?;
        let mut text: String = old
            .lines()
            .filter(|l| !self.ours(l))
            .map(|l| format!("{l}\n"))
            .collect();
        for ip in ips {
            text.push_str(&format!("{ip} {} {}\n", self.name, Self::MARK));
        }
        let tmp = path.with_extension(format!("hotproxy-test-{}", std::process::id()));
        std::fs::write(&tmp, &text)?;
        if std::fs::rename(&tmp, path).is_err() {
            // A bind-mounted /etc/hosts (containers) cannot be renamed over.
            let _ = std::fs::remove_file(&tmp);
            std::fs::write(path, &text)?;
        }
        // The lock goes with the file handle.
        Ok(())
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        // Never a panic here: during a test's panic that would abort.
        if let Err(e) = self.write(&[]) {
            eprintln!("removing the /etc/hosts lines for {}: {e}", self.name);
        }
        Self::live().retain(|n| *n != self.name);
    }
}

/// Pods named `labels`, at 127.0.0.2, .3, ... on one port, behind the
/// test-owned `name` (its /etc/hosts entry starts with the first pod only),
/// and the proxy with upstream `app` over `https://name:port`, re-resolved
/// every 100 ms.
async fn named_pods(name: &str, labels: &[&str]) -> (World, Vec<Backend>, HostsEntry) {
    let Pods {
        scene,
        ca,
        backend_ca,
        pair,
    } = Pods::new();
    let mut pods: Vec<Backend> = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let port = pods.first().map_or(0, |p| p.addr.port());
        let at = format!("127.0.0.{}:{port}", i + 2).parse().unwrap();
        pods.push(Backend::start_at(at, label, &pair, Some(&backend_ca.cert_pem)).await);
    }
    let port = pods[0].addr.port();
    let hosts = HostsEntry::new(name, &["127.0.0.2"]);
    let config = scene.public_config(
        "[{ upstream: app }]",
        &upstream(
            "app",
            &format!("https://{name}:{port}"),
            "    resolve_interval: 100ms\n",
        ),
    );
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let admin = proxy.admin_addr().await;
    let w = World {
        scene,
        ca,
        backend_ca,
        proxy,
        public,
        admin,
        pods: Vec::new(),
    };
    (w, pods, hosts)
}

/// Two server names that resolve to one address are two endpoints, each
/// dialled with its own name (SNI and verification), as they are with
/// `resolve_interval: 0`. The second was dropped as a duplicate address:
/// every request went to the first, with the first one's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_names_on_one_address_are_two_endpoints() {
    let Pods {
        scene,
        ca,
        backend_ca,
        ..
    } = Pods::new();
    let id = std::process::id();
    let names = [
        format!("one-{id}.hotproxy.test"),
        format!("two-{id}.hotproxy.test"),
    ];
    let pair = backend_ca.server_pair(&[&names[0], &names[1]]);
    let at = "127.0.0.2:0".parse().unwrap();
    let pod = Backend::start_at(at, "pod", &pair, Some(&backend_ca.cert_pem)).await;
    let port = pod.addr.port();
    let _hosts = names.each_ref().map(|n| HostsEntry::new(n, &["127.0.0.2"]));
    let config = scene.public_config(
        "[{ upstream: app }]",
        &format!(
            r#"
  - name: app
    servers: [https://{}:{port}, https://{}:{port}]
    tls:
      ca: {{ ca_file: pods-ca.crt }}
      client_cert: {{ cert_file: proxy-client.crt, key_file: proxy-client.key }}
"#,
            names[0], names[1]
        ),
    );
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let admin = proxy.admin_addr().await;
    let w = World {
        scene,
        ca,
        backend_ca,
        proxy,
        public,
        admin,
        pods: vec![pod],
    };
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

/// Two servers of one upstream at one address (two names of one pod)
/// share its per-endpoint series: the `endpoint` label is the address. They
/// stay while either server is configured and go with the last one. Each
/// endpoint removed only the series of the codes it had counted itself, so
/// those only the other one (or the endpoint an edit replaced) had counted
/// were left for as long as the process ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_shared_by_two_servers_at_one_address_go_with_the_last() {
    let Pods {
        scene,
        ca,
        backend_ca,
        pair,
    } = Pods::new();
    let id = std::process::id();
    let names = [
        format!("first-{id}.hotproxy.test"),
        format!("second-{id}.hotproxy.test"),
    ];
    let _hosts = names.each_ref().map(|n| HostsEntry::new(n, &["127.0.0.2"]));
    let ca_pem = Some(backend_ca.cert_pem.as_str());
    let at = |ip: &str| format!("{ip}:0").parse().unwrap();
    let pod = Backend::start_at(at("127.0.0.2"), "pod", &pair, ca_pem).await;
    let other = Backend::start_at(at("127.0.0.3"), "other", &pair, ca_pem).await;
    let port = pod.addr.port();
    let on = |names: &[String]| {
        let servers: Vec<String> = names
            .iter()
            .map(|n| format!("https://{n}:{port}"))
            .collect();
        upstream("app", &servers.join(", "), "    balance: round_robin\n")
    };
    let config = scene.public_config("[{ upstream: app }]", &on(&names));
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let admin = proxy.admin_addr().await;
    let w = World {
        scene,
        ca,
        backend_ca,
        proxy,
        public,
        admin,
        pods: Vec::new(),
    };
    // Round robin: one request to each server, counted under one label;
    // one answered 200, the other 502 (more header fields than taken).
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/").await.0, 200);
    assert_eq!(get_pod(&mut send, "/many-headers/150").await.0, 502);
    let series = |code: u16| {
        format!(
            "hotproxy_upstream_requests_total{{upstream=\"app\",endpoint=\"{}\",code=\"{code}\"}}",
            pod.addr
        )
    };
    let m = metrics(&w).await;
    assert_has(&m, &series(200));
    assert_has(&m, &series(502));
    // An edit keeps one of the two servers: the address is still an
    // endpoint, and both series stay.
    let reloads = |w: &World| {
        w.proxy
            .logs()
            .iter()
            .filter(|l| l.contains("\"configuration reloaded\""))
            .count()
    };
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
            a.slow_in_flight.load(std::sync::atomic::Ordering::SeqCst) >= 1
                && b.slow_in_flight.load(std::sync::atomic::Ordering::SeqCst) >= 1
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
    wait_until(WAIT, "pod-a drained", || async {
        a.open.load(std::sync::atomic::Ordering::SeqCst) == 0
    })
    .await;
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
    let pair = w.backend_ca.server_pair(&["app.prod.svc"]);
    let back = Backend::start_at(dead, "pod2", &pair, Some(&w.backend_ca.cert_pem)).await;
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

/// A TLS pod's listening socket on 127.0.0.1 and its acceptor, serving
/// `pair` and offering `alpn`.
async fn pod_socket(
    pair: &TestPair,
    alpn: &[u8],
) -> (tokio::net::TcpListener, tokio_rustls::TlsAcceptor) {
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs(&pair.cert_pem), key(&pair.key_pem))
        .unwrap();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    (listener, acceptor)
}

/// How a [`RefusingPod`] treats the streams it is sent.
#[derive(Clone, Copy)]
enum Refusal {
    /// Refuses each (`REFUSED_STREAM`).
    Every,
    /// Accepts each and never answers.
    Hang,
    /// Refuses the first that is not a health check (as a pod on its way
    /// down does with a stream past its `GOAWAY`) and answers the rest
    /// as `{"backend":"restarting"}`.
    First,
}

/// An HTTP/2 pod that refuses or ignores streams (see [`Refusal`]);
/// `refused` counts those it did not answer.
struct RefusingPod {
    addr: SocketAddr,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RefusingPod {
    async fn start_as(pair: &TestPair, how: Refusal) -> RefusingPod {
        use std::sync::atomic::Ordering::SeqCst;
        let (listener, acceptor) = pod_socket(pair, b"h2").await;
        let addr = listener.local_addr().unwrap();
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = refused.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut conn) = h2::server::handshake(tls).await else {
                        return;
                    };
                    let mut held = Vec::new();
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        let refuse = match how {
                            Refusal::Every | Refusal::Hang => {
                                count.fetch_add(1, SeqCst);
                                true
                            }
                            Refusal::First => {
                                req.uri().path() != "/healthz"
                                    && count.compare_exchange(0, 1, SeqCst, SeqCst).is_ok()
                            }
                        };
                        match (how, refuse) {
                            (Refusal::Hang, _) => held.push(respond),
                            (_, true) => respond.send_reset(h2::Reason::REFUSED_STREAM),
                            (_, false) => {
                                let body = Bytes::from_static(br#"{"backend":"restarting"}"#);
                                let resp = http::Response::new(());
                                if let Ok(mut stream) = respond.send_response(resp, false) {
                                    let _ = stream.send_data(body, true);
                                }
                            }
                        }
                    }
                });
            }
        });
        RefusingPod { addr, refused }
    }
}

/// A misbehaving HTTP/2 pod (`hang`: it never answers; else it refuses
/// every stream) beside a good pod at 127.0.0.2, both in upstream `two`
/// (round robin, the misbehaving one first) with `settings` lines; the
/// proxy and one kept-open HTTP/1.1 client connection to it.
struct BadAndGood {
    bad: RefusingPod,
    good: Backend,
    _scene: Scene,
    ca: TestCa,
    proxy: Proxy,
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

async fn bad_and_good(hang: bool, settings: &str) -> BadAndGood {
    let Pods {
        scene,
        ca,
        backend_ca,
        pair,
    } = Pods::new();
    let how = if hang { Refusal::Hang } else { Refusal::Every };
    let bad = RefusingPod::start_as(&pair, how).await;
    let at = "127.0.0.2:0".parse().unwrap();
    let good = Backend::start_at(at, "good", &pair, Some(&backend_ca.cert_pem)).await;
    let config = scene.public_config(
        "[{ upstream: two }]",
        &upstream(
            "two",
            &format!("https://{}, https://{}", bad.addr, good.addr),
            &format!("    balance: round_robin\n{settings}"),
        ),
    );
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(public, "localhost", cfg).await.unwrap();
    let send = keep_open_h1(tls).await.0;
    BadAndGood {
        bad,
        good,
        _scene: scene,
        ca,
        proxy,
        send,
    }
}

/// RFC 9113 §8.7: a stream refused with `REFUSED_STREAM` was not processed,
/// so the request is safe to send again: an HTTP/2 pod refusing every
/// stream costs no client a failed request, its GETs go to the other pod,
/// and the retries are counted. So do POSTs with a small body (read whole
/// before forwarding, so it can be sent twice), body and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_streams_are_sent_to_another_endpoint() {
    let mut w = bad_and_good(false, "    retries: { attempts: 1 }\n").await;
    let admin_addr = w.proxy.admin_addr().await;
    let (refusing, send) = (&w.bad, &mut w.send);
    for i in 0..8 {
        let (status, pod) = get_pod(send, "/").await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(pod.as_deref(), Some("good"), "request {i}");
    }
    assert!(
        refusing.refused.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the refusing pod was never tried"
    );
    let m = admin(admin_addr, "GET", "/metrics", None, None, &[])
        .await
        .body;
    let retries = m
        .lines()
        .find_map(|l| l.strip_prefix("hotproxy_upstream_retries_total{upstream=\"two\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(retries >= 1.0, "no retry counted:\n{m}");

    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(w.proxy.listener_addr("public").await, "localhost", cfg)
        .await
        .unwrap();
    let (mut post, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..4 {
        post.ready().await.unwrap();
        let req = http::Request::post("/upload")
            .header("host", "localhost")
            .body(http_body_util::Full::new(Bytes::from_static(b"0123456789")))
            .unwrap();
        let resp = post.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "POST {i}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["backend"], "good", "POST {i}");
        assert_eq!(v["body_bytes"], 10, "POST {i}");
    }
}

/// SPEC: an endpoint out of service receives no request, and panic mode
/// is for when none is in service. So when the one endpoint in service
/// fails, the request is not retried on the one out of service (nginx's
/// "no live upstreams"): the client gets the failure, and the unhealthy
/// pod sees nothing but its check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_goes_to_an_endpoint_out_of_service() {
    // One check per endpoint (the first tick), then none for an hour: the
    // good pod stays in service after it is killed.
    let mut w = bad_and_good(
        false,
        "    retries: { attempts: 1 }\n    health:\n      passive: { consecutive_failures: 0 }\n      \
         active: { path: /healthz, interval: 1h, unhealthy_after: 1, healthy_after: 1 }\n",
    )
    .await;
    let out = w
        .proxy
        .wait_log("the refusing pod's check", |v| {
            v["message"] == "upstream endpoint failed its active checks; out of service"
        })
        .await;
    assert_eq!(out["endpoint"], w.bad.addr.to_string());
    let checked = w.bad.refused.load(std::sync::atomic::Ordering::SeqCst);
    w.good.kill();
    let (status, _) = get_pod(&mut w.send, "/").await;
    assert_eq!(status, 502);
    assert_eq!(
        w.bad.refused.load(std::sync::atomic::Ordering::SeqCst),
        checked,
        "the request was retried on the pod out of service"
    );
}

/// A pod that takes requests and never answers fails each by
/// request_timeout (504), and those failures count for passive health as
/// connect errors do (nginx's max_fails counts timeouts; Envoy's gateway
/// failures include them): after consecutive_failures in a row it is
/// ejected, and clients stop waiting on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_endpoint_is_ejected_after_request_timeouts() {
    let mut w = bad_and_good(
        true,
        "    request_timeout: 300ms\n    retries: { attempts: 0 }\n    \
         health: { passive: { consecutive_failures: 2, eject_for: 1m } }\n",
    )
    .await;
    let send = &mut w.send;
    let mut timeouts = 0;
    for _ in 0..4 {
        match get_pod(send, "/").await {
            (504, _) => timeouts += 1,
            (200, pod) => assert_eq!(pod.as_deref(), Some("good")),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(timeouts, 2, "round robin sent half to the hung pod");
    let ejected = w
        .proxy
        .wait_log("the hung pod ejected", |v| {
            v["message"] == "upstream endpoint ejected" && v["upstream"] == "two"
        })
        .await;
    assert_eq!(ejected["endpoint"], w.bad.addr.to_string());
    for i in 0..6 {
        let (status, pod) = get_pod(send, "/").await;
        assert_eq!((status, pod.as_deref()), (200, Some("good")), "request {i}");
    }
}

/// A name that stops resolving keeps its last good addresses: requests are
/// still served, the failure is logged once and counted, and the recovery
/// is logged. The name has an empty label (`pods-N..hotproxy.test`): glibc
/// finds it in /etc/hosts while it is there, and once it is gone refuses to
/// encode it into a DNS query, so the failed lookup is immediate and no
/// packet leaves the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_lookup_keeps_the_last_good_addresses() {
    let name = format!("pods-{}..hotproxy.test", std::process::id());
    let (mut w, _pods, hosts) = named_pods(&name, &["pod"]).await;
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));

    hosts.set(&[]);
    let failed = w
        .proxy
        .wait_log("the failed lookup", |v| {
            v["message"] == "upstream DNS lookup failed; keeping the last good addresses"
        })
        .await;
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

    hosts.set(&["127.0.0.2"]);
    w.proxy
        .wait_log("the recovery", |v| {
            v["message"] == "upstream DNS lookup recovered" && v["upstream"] == "app"
        })
        .await;
    let failures = w
        .proxy
        .logs()
        .iter()
        .filter(|l| l.contains("upstream DNS lookup failed"))
        .count();
    assert_eq!(failures, 1, "a failure streak is logged once");
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));
}

/// Editing an upstream rebuilds it (new pools and health), and its names
/// are resolved again. A lookup that fails then keeps the addresses the
/// running upstream had for that name, as a failed re-resolution does. It
/// used to start from nothing and dial the name itself: every request a
/// 502 until DNS came back, for an edit as small as a `read_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_edited_while_its_name_does_not_resolve_keeps_its_addresses() {
    let name = format!("edited-{}..hotproxy.test", std::process::id());
    let (mut w, pods, hosts) = named_pods(&name, &["pod"]).await;
    let mut send = client(&w).await;
    assert_eq!(get_pod(&mut send, "/").await, (200, Some("pod".into())));
    hosts.set(&[]);
    w.proxy
        .wait_log("the failed lookup", |v| {
            v["message"] == "upstream DNS lookup failed; keeping the last good addresses"
        })
        .await;
    let port = pods[0].addr.port();
    w.scene.public_config(
        "[{ upstream: app }]",
        &upstream(
            "app",
            &format!("https://{name}:{port}"),
            "    resolve_interval: 100ms\n    read_timeout: 30s\n",
        ),
    );
    let reloaded = w
        .proxy
        .wait_log("the edit applied", |v| {
            v["message"] == "configuration reloaded"
        })
        .await;
    assert_eq!(reloaded["changes"], "upstreams changed: app");
    for i in 0..3 {
        let answer = get_pod(&mut send, "/").await;
        assert_eq!(answer, (200, Some("pod".into())), "request {i}");
    }
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

/// A request an HTTP/2 endpoint left unprocessed is sent again on a new
/// connection to the same endpoint when no other endpoint would take it:
/// here the other is out of service. It used to get a 502: whether a retry
/// could go elsewhere was judged from the endpoints configured, not from
/// those in service, so the same-endpoint resend was skipped and the retry
/// then found nowhere to go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprocessed_request_is_resent_when_no_other_endpoint_is_in_service() {
    use std::sync::atomic::Ordering::SeqCst;
    let Pods {
        scene, ca, pair, ..
    } = Pods::new();
    let pod = RefusingPod::start_as(&pair, Refusal::First).await;
    // Nothing listens at the other endpoint: its first check fails.
    let gone = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = scene.public_config(
        "[{ upstream: two }]",
        &upstream(
            "two",
            &format!("https://{}, https://{gone}", pod.addr),
            "    balance: round_robin\n    retries: { attempts: 1 }\n    health:\n      \
             active: { path: /healthz, interval: 1h, unhealthy_after: 1, healthy_after: 1 }\n",
        ),
    );
    let mut proxy = Proxy::start(&config);
    let out = proxy
        .wait_log("the other endpoint out of service", |v| {
            v["message"] == "upstream endpoint failed its active checks; out of service"
        })
        .await;
    assert_eq!(out["endpoint"], gone.to_string());
    let public = proxy.listener_addr("public").await;
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let mut send = keep_open_h1(connect(public, "localhost", cfg).await.unwrap())
        .await
        .0;
    let (status, served_by) = get_pod(&mut send, "/").await;
    assert_eq!((status, served_by.as_deref()), (200, Some("restarting")));
    assert_eq!(pod.refused.load(SeqCst), 1, "refused once, then served");
}

/// An HTTP/1.1 pod that reads each request head and closes the connection
/// without an answer (a process that crashes on the request); counts them.
async fn closing_pod(
    pair: &TestPair,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let (listener, acceptor) = pod_socket(pair, b"http/1.1").await;
    let addr = listener.local_addr().unwrap();
    let heads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = heads.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    (addr, heads)
}

/// SPEC: a request is sent once more to the same endpoint only when a
/// *reused* connection closed before answering (an idle keep-alive
/// connection the upstream closed as it was reused). A new connection
/// that closes on a request says the endpoint failed on that request: the
/// retry goes to another endpoint, as nginx's `proxy_next_upstream error`
/// does. It used to be sent to the same endpoint again first, on another
/// new connection (with three endpoints and two attempts, five sends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_closed_on_a_request_is_not_retried_on_its_endpoint() {
    use std::sync::atomic::Ordering::SeqCst;
    let Pods {
        scene,
        ca,
        backend_ca,
        pair,
    } = Pods::new();
    let (crashing, heads) = closing_pod(&pair).await;
    let at = "127.0.0.2:0".parse().unwrap();
    let good = Backend::start_at(at, "good", &pair, Some(&backend_ca.cert_pem)).await;
    let config = scene.public_config(
        "[{ upstream: two }]",
        &upstream(
            "two",
            &format!("https://{crashing}, https://{}", good.addr),
            "    balance: round_robin\n    retries: { attempts: 1 }\n",
        ),
    );
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let mut send = keep_open_h1(connect(public, "localhost", cfg).await.unwrap())
        .await
        .0;
    let (status, served_by) = get_pod(&mut send, "/").await;
    assert_eq!((status, served_by.as_deref()), (200, Some("good")));
    assert_eq!(
        heads.load(SeqCst),
        1,
        "the crashing pod got the request again"
    );
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
    let series = |pod: std::net::SocketAddr| {
        format!("hotproxy_upstream_requests_total{{upstream=\"rr\",endpoint=\"{pod}\",")
    };
    let m = metrics(&w).await;
    for pod in &w.pods {
        assert_has(&m, &series(pod.addr));
    }
    let servers = |pods: &[Backend]| {
        let s: Vec<String> = pods.iter().map(|p| format!("https://{}", p.addr)).collect();
        s.join(", ")
    };
    w.scene.public_config(
        "\n      - { path_prefix: /rr, upstream: rr }\n      - { path_prefix: /lr, upstream: lr }",
        &[
            upstream("rr", &servers(&w.pods[..2]), "    balance: round_robin\n"),
            upstream("lr", &servers(&w.pods), "    balance: least_request\n"),
        ]
        .concat(),
    );
    let reloaded = w
        .proxy
        .wait_log("the edit applied", |v| {
            v["message"] == "configuration reloaded"
        })
        .await;
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
