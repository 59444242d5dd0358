//! Shared here: the pods' PKI and world, their upstream config, clients, metrics, /etc/hosts.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

use crate::support::*;

pub const WAIT: Duration = Duration::from_secs(20);

pub struct World {
    pub scene: Scene,
    pub ca: TestCa,
    pub backend_ca: TestCa,
    pub proxy: Proxy,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub pods: Vec<Backend>,
}

/// What every test here starts from: the proxy's certificate `a`
/// (localhost, from "edge CA"), its client certificate for the pods
/// (`proxy-client`), the pods' CA (`pods-ca.crt`), and the pods' own pair.
pub struct Pods {
    pub scene: Scene,
    pub ca: TestCa,
    pub backend_ca: TestCa,
    pub pair: TestPair,
}

impl Pods {
    pub fn new() -> Pods {
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

    /// A pod labelled `label` at `ip` (a free port), serving the pods' pair
    /// and requiring a client certificate of the pods' CA.
    pub async fn pod_at(&self, ip: &str, label: &str) -> Backend {
        let at = format!("{ip}:0").parse().unwrap();
        Backend::start_at(at, label, &self.pair, Some(&self.backend_ca.cert_pem)).await
    }

    /// The proxy on `Scene::public_config(routes, upstreams)`, its
    /// listener `public` and admin addresses known; `pods` go in the world.
    pub async fn serve(self, routes: &str, upstreams: &str, pods: Vec<Backend>) -> World {
        self.serve_with(routes, upstreams, pods, Proxy::start).await
    }

    /// [`Pods::serve`], the proxy started on its configuration by `start`.
    pub async fn serve_with(
        self,
        routes: &str,
        upstreams: &str,
        pods: Vec<Backend>,
        start: impl FnOnce(&std::path::Path) -> Proxy,
    ) -> World {
        let config = self.scene.public_config(routes, upstreams);
        let mut proxy = start(&config);
        let public = proxy.listener_addr("public").await;
        let admin = proxy.admin_addr().await;
        World {
            scene: self.scene,
            ca: self.ca,
            backend_ca: self.backend_ca,
            proxy,
            public,
            admin,
            pods,
        }
    }
}

impl World {
    /// A pod labelled `label` back at `at` (where one was killed), as the
    /// pods were started.
    pub async fn pod_back(&self, at: SocketAddr, label: &str) -> Backend {
        let pair = self.backend_ca.server_pair(&["app.prod.svc"]);
        Backend::start_at(at, label, &pair, Some(&self.backend_ca.cert_pem)).await
    }

    /// Wait for the proxy's (first) `configuration reloaded` line: `what`.
    pub async fn wait_reloaded(&mut self, what: &str) -> serde_json::Value {
        self.proxy
            .wait_log(what, |v| v["message"] == "configuration reloaded")
            .await
    }

    /// Wait for the proxy's `upstream DNS lookup recovered` line for
    /// `upstream`.
    pub async fn wait_recovered(&mut self, upstream: &str) -> serde_json::Value {
        self.proxy
            .wait_log("the recovery", |v| {
                v["message"] == "upstream DNS lookup recovered" && v["upstream"] == upstream
            })
            .await
    }
}

/// The start of the `hotproxy_upstream_requests_total` series of
/// `upstream` on `endpoint` (its `code` label follows).
pub fn requests_series(upstream: &str, endpoint: SocketAddr) -> String {
    format!("hotproxy_upstream_requests_total{{upstream=\"{upstream}\",endpoint=\"{endpoint}\",")
}

/// Two test-owned names, `{first}-PID.hotproxy.test` and
/// `{second}-PID.hotproxy.test`, both at 127.0.0.2 while the entries live.
pub fn two_names_on_127_0_0_2(first: &str, second: &str) -> ([String; 2], [HostsEntry; 2]) {
    let id = std::process::id();
    let names = [
        format!("{first}-{id}.hotproxy.test"),
        format!("{second}-{id}.hotproxy.test"),
    ];
    let hosts = names.each_ref().map(|n| HostsEntry::new(n, &["127.0.0.2"]));
    (names, hosts)
}

/// An upstream over `servers` (a YAML list's items) with the pods' mTLS
/// settings, for [`Scene::public_config`]; `settings`: more of its lines,
/// each indented four spaces.
pub fn upstream(name: &str, servers: &str, settings: &str) -> String {
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

/// The routes of [`world`]: `/rr` to upstream `rr`, `/lr` to `lr`.
pub const RR_AND_LR: &str =
    "\n      - { path_prefix: /rr, upstream: rr }\n      - { path_prefix: /lr, upstream: lr }";

/// The `https://` URLs of `pods`, as a YAML list's items.
pub fn servers(pods: &[Backend]) -> String {
    let s: Vec<String> = pods.iter().map(|p| format!("https://{}", p.addr)).collect();
    s.join(", ")
}

/// Upstreams `rr` (round robin) over `rr_pods` and `lr` (least request)
/// over `lr_pods`, each with `settings` lines.
pub fn rr_and_lr(rr_pods: &[Backend], lr_pods: &[Backend], settings: &str) -> String {
    [
        upstream(
            "rr",
            &servers(rr_pods),
            &format!("    balance: round_robin\n{settings}"),
        ),
        upstream(
            "lr",
            &servers(lr_pods),
            &format!("    balance: least_request\n{settings}"),
        ),
    ]
    .concat()
}

/// Three pods on 127.0.0.1/.2/.3 behind upstreams `rr` and `lr` (each
/// with `upstream_extra` lines), routed by [`RR_AND_LR`].
pub async fn world(upstream_extra: &str) -> World {
    let p = Pods::new();
    let mut pods = Vec::new();
    for (i, ip) in ["127.0.0.1", "127.0.0.2", "127.0.0.3"].iter().enumerate() {
        pods.push(p.pod_at(ip, &format!("pod{i}")).await);
    }
    let upstreams = rr_and_lr(&pods, &pods, upstream_extra);
    p.serve(RR_AND_LR, &upstreams, pods).await
}

/// One kept-open HTTP/1.1 connection to the proxy (the support's
/// `connect` and `keep_open_h1` bound each step by `CLIENT_DEADLINE`).
pub async fn client(w: &World) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let tls = connect(w.public, "localhost", cfg).await.unwrap();
    keep_open_h1(tls).await.0
}

/// GET `path` on `send`: status and the answering pod (if any). Panics
/// if the exchange takes longer than `CLIENT_DEADLINE`.
pub async fn get_pod(
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
pub async fn logged_so_far(w: &mut World) -> Vec<String> {
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

/// Wait (`what`, in a timeout) until an endpoint of `upstream` is logged
/// as ejected: `endpoint`.
pub async fn logged_ejected(w: &mut World, what: &str, upstream: &str, endpoint: SocketAddr) {
    let ejected = w
        .proxy
        .wait_log(what, |v| {
            v["message"] == "upstream endpoint ejected" && v["upstream"] == upstream
        })
        .await;
    assert_eq!(ejected["endpoint"], endpoint.to_string());
}

/// `m` (the metrics text) holds `want`.
pub fn assert_has(m: &str, want: &str) {
    assert!(m.contains(want), "{want} missing:\n{m}");
}

pub async fn metrics(w: &World) -> String {
    admin(w.admin, "GET", "/metrics", None, None, &[])
        .await
        .body
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
pub struct HostsEntry {
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

    pub fn new(name: &str, ips: &[&str]) -> HostsEntry {
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

    pub fn set(&self, ips: &[&str]) {
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
