//! The serving path end to end: the real binary, real TLS clients, an mTLS backend.

mod support;

use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

use support::*;

struct World {
    scene: Scene,
    ca: TestCa,
    other_ca: TestCa,
    backend_ca: TestCa,
    a: TestPair,
    b: TestPair,
    proxy_client: TestPair,
    backend: Backend,
}

async fn world() -> World {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let other_ca = TestCa::new("someone else");
    let backend_ca = TestCa::new("backend CA");
    let a = ca.server_pair(&["a.example.com", "localhost"]);
    let b = ca.server_pair(&["*.b.example.com"]);
    let proxy_client = backend_ca.client_pair("hotproxy");
    scene.pair("a", &a);
    scene.pair("b", &b);
    scene.pair("proxy-client", &proxy_client);
    write(&scene.path("ca.crt"), &ca.cert_pem);
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = Backend::start(
        "echo",
        &backend_ca.server_pair(&["backend.local"]),
        Some(&backend_ca.cert_pem),
    )
    .await;
    World {
        scene,
        ca,
        other_ca,
        backend_ca,
        a,
        b,
        proxy_client,
        backend,
    }
}

fn config(w: &World, client_auth: &str, extra_listener: &str) -> std::path::PathBuf {
    w.scene.config(&format!(
        r#"
# One worker: the current-thread runtime (the other suites run multi-thread).
runtime: {{ worker_threads: 1 }}
watch: {{ debounce: 50ms, poll_interval: 500ms }}
admin: {{ bind: "127.0.0.1:0" }}
certs:
  - {{ id: a, type: server-pair, cert_file: a.crt, key_file: a.key }}
  - {{ id: clients, type: ca-bundle, ca_file: ca.crt {crl} }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - ref: a
        - {{ cert_file: b.crt, key_file: b.key }}
      client_auth: {client_auth}
    routes:
      - {{ path_prefix: /api, upstream: echo }}
      - {{ path_prefix: /down, upstream: down }}
      - {{ path_prefix: /slow, upstream: slow }}
{extra_listener}
upstreams:
  - name: echo
    servers: [https://{backend}]
    tls:
      ca: {{ ca_file: backend-ca.crt }}
      client_cert: {{ cert_file: proxy-client.crt, key_file: proxy-client.key }}
      server_name: backend.local
  - name: down
    servers: [http://127.0.0.1:1]
  - name: slow
    servers: [https://{backend}]
    request_timeout: 300ms
    tls:
      ca: {{ ca_file: backend-ca.crt }}
      client_cert: {{ cert_file: proxy-client.crt, key_file: proxy-client.key }}
      server_name: backend.local
"#,
        crl = if w.scene.path("ca.crl").exists() {
            ", crl_files: [ca.crl]"
        } else {
            ""
        },
        backend = w.backend.addr,
    ))
}

/// A route (`extra_listener` lines) to the backend, which never answers it.
const HANG: &str = "      - { path_prefix: /hang, upstream: echo }";

/// Rewrites the config file at `path`, each `(from, to)` replaced in turn.
fn edit(path: &std::path::Path, replace: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    write(path, &text);
}

/// Each SNI gets its certificate; no SNI match gets the first (default).
#[tokio::test]
async fn sni_selects_certificate() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, "{ mode: none }", ""));
    let addr = p.listener_addr("public").await;
    assert_eq!(
        served_leaf(addr, "a.example.com", &w.ca.cert_pem)
            .await
            .unwrap(),
        w.a.fingerprint
    );
    assert_eq!(
        served_leaf(addr, "x.b.example.com", &w.ca.cert_pem)
            .await
            .unwrap(),
        w.b.fingerprint
    );
    // Unknown name: the default pair (the client refuses the name, so check without verification of name)
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let err = connect(addr, "unknown.example.org", cfg)
        .await
        .expect_err("name mismatch");
    assert!(
        err.to_string().contains("a.example.com"),
        "default pair not served: {err}"
    );
}

/// A client that sends its SNI with the final `.` (OpenSSL's `-servername
/// x.b.example.com.`; rustls and curl drop it, RFC 6066 says to) still
/// gets the pair for that name, as from nginx, not the default pair
/// (rustls-pki-types drops the dot as it reads the name).
#[tokio::test]
async fn sni_with_a_final_dot_selects_its_certificate() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, "{ mode: none }", ""));
    let addr = p.listener_addr("public").await;
    let out = output_within_deadline(
        std::process::Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string()])
            .args(["-servername", "x.b.example.com."])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let subject = text
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| {
            let err = String::from_utf8_lossy(&out.stderr);
            panic!("no certificate served: {text}{err}")
        });
    assert!(
        subject.contains("*.b.example.com"),
        "the default pair for x.b.example.com.: {subject}"
    );
}

/// h1 and h2 reach a backend that requires a client certificate and reports the one hotproxy presented;
/// every proxy header is set and spoofed identity headers are dropped.
#[tokio::test]
async fn forwards_h1_and_h2_over_mtls() {
    let w = world().await;
    let mut p = Proxy::start(&config(
        &w,
        "{ mode: verify_if_given, ca: { ref: clients } }",
        "",
    ));
    let addr = p.listener_addr("public").await;
    let alice = w.ca.client_pair("alice");
    for h2 in [false, true] {
        let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
        let cfg = client_config(&w.ca.cert_pem, Some(&alice), alpn);
        let spoof = [
            ("x-client-cert-subject", "CN=mallory"),
            ("x-forwarded-for", "192.0.2.9"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ];
        let headers: &[(&str, &str)] = if h2 { &spoof[..2] } else { &spoof };
        let r = get(addr, "a.example.com", cfg, h2, "/api/x?y=1", headers)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        assert_eq!(
            j["client_cert_fingerprint"],
            w.proxy_client.fingerprint.as_str()
        );
        let h = &j["headers"];
        assert_eq!(h["x-client-cert-subject"], "CN=alice");
        assert_eq!(h["x-client-cert-fingerprint"], alice.fingerprint.as_str());
        // Not a trusted proxy (issue 16): its X-Forwarded-For is replaced.
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example.com");
        assert_eq!(h["via"], if h2 { "2 hotproxy" } else { "1.1 hotproxy" });
        assert!(
            h.get("x-hop").is_none() && h.get("connection").is_none(),
            "{h}"
        );
        assert_eq!(j["path"], "/api/x");
    }
    // Pooled: the requests of both client connections went over one
    // upstream connection (the backend speaks HTTP/2; two would also
    // mean no pooling for two requests).
    assert_eq!(
        w.backend.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

/// No route = 404; upstream down = 502; upstream too slow = 504.
#[tokio::test]
async fn error_statuses() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, "{ mode: none }", ""));
    let addr = p.listener_addr("public").await;
    for (path, status) in [("/nothing", 404), ("/down", 502), ("/slow", 504)] {
        let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
        let r = get(addr, "a.example.com", cfg, false, path, &[])
            .await
            .unwrap();
        assert_eq!(r.status, status, "{path}");
    }
    p.wait_log("502 cause logged", |v| {
        v["message"] == "upstream request failed" && v["reason"] == "connect_refused"
    })
    .await;
}

/// An upstream that requires a client certificate hotproxy does not send
/// refuses it, under TLS 1.3, with an alert after the handshake. Over
/// HTTP/2 (the backend offers h2) every request that fails so is counted
/// as `client_cert_refused`, the cause the runbook has operators look
/// for: also the one hyper hands back as "operation was canceled" (the
/// connection read the alert before taking the request), which was
/// counted as `protocol` with no cause at all.
#[tokio::test]
async fn an_h2_upstream_refusing_our_client_certificate_is_client_cert_refused() {
    let w = world().await;
    let path = config(&w, "{ mode: none }", "");
    let bare = format!(
        "upstreams:\n  - name: bare\n    servers: [https://{}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}\n",
        w.backend.addr
    );
    edit(
        &path,
        &[
            (
                "      - { path_prefix: /down, upstream: down }\n",
                "      - { path_prefix: /down, upstream: down }\n      - { path_prefix: /bare, upstream: bare }\n",
            ),
            ("upstreams:\n", &bare),
        ],
    );
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    // Each on a new upstream connection: which of the two errors a request
    // sees is a race, run several times.
    const N: usize = 8;
    for _ in 0..N {
        let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
        let r = get(addr, "a.example.com", cfg, true, "/bare", &[])
            .await
            .unwrap();
        assert_eq!(r.status, 502);
    }
    let m = metrics_text(admin).await;
    let errors: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("hotproxy_upstream_errors_total{upstream=\"bare\""))
        .collect();
    assert_eq!(
        errors,
        [format!(
            "hotproxy_upstream_errors_total{{upstream=\"bare\",reason=\"client_cert_refused\"}} {N}"
        )],
    );
}

/// Try one request presenting `client`; Ok(status) or Err when refused.
async fn attempt(
    addr: std::net::SocketAddr,
    ca: &str,
    client: Option<&TestPair>,
) -> Result<u16, String> {
    get(
        addr,
        "a.example.com",
        client_config(ca, client, &[b"http/1.1"]),
        false,
        "/api/m",
        &[],
    )
    .await
    .map(|r| r.status)
    .map_err(|e| e.to_string())
}

/// Each client-auth mode with no certificate, a good one, one from an unknown CA, and a revoked one.
#[tokio::test]
async fn client_auth_modes() {
    let w = world().await;
    let good = w.ca.client_pair("good");
    let revoked = w.ca.client_pair("revoked");
    let stranger = w.other_ca.client_pair("stranger");
    write(&w.scene.path("ca.crl"), &w.ca.crl(&[&revoked]));
    // (mode, none, good, unknown CA, revoked)
    let table = [
        ("none", true, true, true, true),
        ("request", true, true, true, true),
        ("require_any", false, true, true, true),
        ("verify_if_given", true, true, false, false),
        ("require_and_verify", false, true, false, false),
    ];
    for (mode, none_ok, good_ok, stranger_ok, revoked_ok) in table {
        let ca = if mode.starts_with("verify") || mode.starts_with("require_and") {
            ", ca: { ref: clients }"
        } else {
            ""
        };
        let mut p = Proxy::start(&config(&w, &format!("{{ mode: {mode}{ca} }}"), ""));
        let addr = p.listener_addr("public").await;
        for (who, client, want) in [
            ("none", None, none_ok),
            ("good", Some(&good), good_ok),
            ("unknown CA", Some(&stranger), stranger_ok),
            ("revoked", Some(&revoked), revoked_ok),
        ] {
            let got = attempt(addr, &w.ca.cert_pem, client).await;
            assert_eq!(got.is_ok(), want, "mode {mode}, client {who}: {got:?}");
            if let Ok(status) = got {
                assert_eq!(status, 200, "mode {mode}, client {who}");
            }
        }
        if mode == "require_and_verify" {
            // A client that does not trust our CA refuses the handshake itself.
            let cfg = client_config(&w.other_ca.cert_pem, Some(&good), &[b"http/1.1"]);
            assert!(connect(addr, "a.example.com", cfg).await.is_err());
            // Each refusal is counted under the cause the README's
            // Troubleshooting section tells operators to look for.
            let admin_addr = p.admin_addr().await;
            for label in [
                "no_client_cert",
                "unknown_ca",
                "revoked",
                "client_refused_cert",
            ] {
                let line = format!(
                    "hotproxy_tls_handshakes_total{{listener=\"public\",result=\"{label}\"}} 1"
                );
                wait_until(WAIT, &format!("handshake failure {label} counted"), || {
                    let line = line.clone();
                    async move {
                        admin(admin_addr, "GET", "/metrics", None, None, &[])
                            .await
                            .body
                            .lines()
                            .any(|l| l == line)
                    }
                })
                .await;
            }
        }
    }
}

/// Request heads over max_header_bytes get 431; max_connections holds extra clients back.
#[tokio::test]
async fn limits() {
    let w = world().await;
    let cfg_path = config(&w, "{ mode: none }", "");
    edit(
        &cfg_path,
        &[(
            "      - { path_prefix: /slow, upstream: slow }",
            "      - { path_prefix: /slow, upstream: slow }\n    limits: { max_header_bytes: 8192, max_connections: 1 }",
        )],
    );
    let mut p = Proxy::start(&cfg_path);
    let addr = p.listener_addr("public").await;
    let big = "x".repeat(20_000);
    let r = get(
        addr,
        "a.example.com",
        client_config(&w.ca.cert_pem, None, &[b"http/1.1"]),
        false,
        "/api",
        &[("x-big", &big)],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 431);
    // One connection held open: a second client is held back while it
    // lives (it waits in the accept queue, unserved, while the proxy
    // answers other requests) ...
    let held = connect(
        addr,
        "a.example.com",
        client_config(&w.ca.cert_pem, None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let second = tokio::spawn(connect(
        addr,
        "a.example.com",
        client_config(&w.ca.cert_pem, None, &[b"http/1.1"]),
    ));
    let admin = p.admin_addr().await;
    let m = assert_held_back(addr, 1, metrics_in_turns(admin)).await;
    let gauge = "hotproxy_connections_active{listener=\"public\"} 1";
    assert!(m.lines().any(|l| l == gauge), "{m}");
    assert!(
        !second.is_finished(),
        "second connection was served beyond max_connections"
    );
    // ... and is served once it closes.
    drop(held);
    let second = tokio::time::timeout(WAIT, second)
        .await
        .expect("the waiting client is served once the slot is released")
        .unwrap();
    assert!(second.is_ok(), "{:?}", second.err());
}

/// A burst opens the upstream connections it needs; once it is over the
/// pool keeps `max_idle_connections` of them (nginx's `keepalive N`),
/// closes the rest, and the next request reuses a kept one.
#[tokio::test]
async fn idle_upstream_connections_are_bounded() {
    use std::sync::atomic::Ordering::SeqCst;
    let w = world().await;
    // An HTTP/1.1 backend (one request per connection at a time), like
    // nginx without `http2`: a burst needs a connection per request.
    let backend = Backend::start_h1(
        "h1",
        &w.backend_ca.server_pair(&["backend.local"]),
        Some(&w.backend_ca.cert_pem),
    )
    .await;
    let cfg = w.scene.config(&format!(
        r#"
certs:
  - {{ id: a, type: server-pair, cert_file: a.crt, key_file: a.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ ref: a }}] }}
    routes: [{{ upstream: h1 }}]
upstreams:
  - name: h1
    servers: [https://{}]
    max_idle_connections: 2
    tls:
      ca: {{ ca_file: backend-ca.crt }}
      client_cert: {{ cert_file: proxy-client.crt, key_file: proxy-client.key }}
      server_name: backend.local
"#,
        backend.addr
    ));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    // Six requests the backend holds until all six are in flight at once:
    // over HTTP/1.1, six upstream connections.
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let client = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
            tokio::spawn(
                async move { get(addr, "a.example.com", client, false, "/burst/6", &[]).await },
            )
        })
        .collect();
    for r in burst {
        let r = r.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let accepted = backend.accepted.load(SeqCst);
    assert!(
        accepted >= 6,
        "six requests in flight at once over only {accepted} upstream connections"
    );
    wait_until(
        WAIT,
        "idle upstream connections beyond 2 closed",
        || async { backend.open.load(SeqCst) == 2 },
    )
    .await;
    let client = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let r = get(addr, "a.example.com", client, false, "/", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        backend.accepted.load(SeqCst),
        accepted,
        "a kept connection was not reused"
    );
}

/// A reload applies what it can live and names the settings read once at
/// startup, whose running values stay: here the admin listener's address
/// and the watcher's debounce. The admin API still answers where it was.
/// The reload used to report them under "settings changed" as if applied.
#[tokio::test]
async fn a_reload_names_the_settings_that_wait_for_a_restart() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, "{ mode: none }", ""));
    let admin = p.admin_addr().await;
    edit(
        &w.scene.path("config.yaml"),
        &[
            ("debounce: 50ms", "debounce: 1s"),
            ("bind: \"127.0.0.1:0\" }", "bind: \"127.0.0.2:0\" }"),
        ],
    );
    let told = p
        .wait_log("the restart warning", |v| {
            v["message"] == "these settings apply at the next restart; their running values stay"
        })
        .await;
    assert_eq!(told["settings"], "admin.bind, watch.debounce");
    assert_eq!(told["level"], "WARN");
    let r = support::admin(admin, "GET", "/healthz", None, None, &[]).await;
    assert_eq!(r.status, 200);
}

/// SIGTERM with a request in flight: the request completes, the process exits 0.
#[tokio::test]
async fn graceful_shutdown() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, "{ mode: none }", ""));
    let addr = p.listener_addr("public").await;
    edit(
        &w.scene.path("config.yaml"),
        &[("request_timeout: 300ms", "request_timeout: 10s")],
    );
    p.wait_log("config reloaded", |v| {
        v["message"] == "configuration reloaded"
    })
    .await;
    let client = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let before = w.backend.accepted.load(std::sync::atomic::Ordering::SeqCst);
    let inflight =
        tokio::spawn(async move { get(addr, "a.example.com", client, false, "/slow", &[]).await });
    // The request is in flight once the backend (which answers /slow after 2s) has it.
    wait_until(
        Duration::from_secs(10),
        "request reaches the backend",
        || async { w.backend.accepted.load(std::sync::atomic::Ordering::SeqCst) > before },
    )
    .await;
    p.signal("TERM");
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(r.status, 200, "in-flight request was cut: {}", r.body);
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

/// Once shutdown begins the listening port is closed, while open
/// connections drain: a new client is refused at once and tries another
/// pod. (The reloader's handle on each socket, kept for a listener that
/// takes over an address, held the port open for the whole drain, with
/// connections queued that nobody accepted.)
#[tokio::test]
async fn a_shutdown_closes_the_port_while_connections_drain() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, "{ mode: none }", HANG));
    let addr = p.listener_addr("public").await;
    // A request the backend never answers keeps the drain going (30 s).
    let held = held_at_backend(&w, addr).await;
    p.signal("TERM");
    shutdown_began(&mut p).await;
    wait_until(WAIT, "the port refuses new connections", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(!held.is_finished(), "the drain is over already");
    held.abort();
}

/// A configuration change during the drain is not applied (nginx does not
/// reload while shutting down either): a listener renamed on its address
/// bound the port again, with nobody accepting on it until the process
/// exited, so clients queued there instead of trying another pod.
#[tokio::test]
async fn a_config_change_during_the_drain_is_ignored() {
    let w = world().await;
    let path = config(&w, "{ mode: none }", HANG);
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let held = held_at_backend(&w, addr).await;
    p.signal("TERM");
    wait_until(WAIT, "the port refuses new connections", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    edit(
        &path,
        &[(
            "  - name: public\n    bind: 127.0.0.1:0",
            &format!("  - name: renamed\n    bind: \"{addr}\""),
        )],
    );
    let seen = p
        .wait_log("the change ignored (or applied)", |v| {
            v["message"] == "shutting down; configuration change ignored"
                || v["message"] == "configuration reloaded"
        })
        .await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port listens again after: {seen}"
    );
    assert_eq!(seen["level"], "INFO");
    assert!(!held.is_finished(), "the drain is over already");
    held.abort();
}

/// Waits for the proxy's log that its shutdown began.
async fn shutdown_began(p: &mut Proxy) {
    p.wait_log("shutdown began", |v| {
        v["message"] == "shutting down: no new connections, draining open ones"
    })
    .await;
}

/// The config with route `HANG`, its access log (JSON) written to `log`.
fn hang_config_logging_to(w: &World, log: &std::path::Path) -> std::path::PathBuf {
    let path = config(w, "{ mode: none }", HANG);
    let logged = format!("access_log: {{ path: {}, format: json }}\n", log.display());
    let text = std::fs::read_to_string(&path).unwrap();
    write(&path, &(logged + &text));
    path
}

/// The request `held` (from `held_at_backend`) was cut as the process
/// exited: its access-log line in `log` is its only one, `499`, the
/// client saw an error, and the backend let the request go.
async fn assert_cut_with_499(
    w: &World,
    log: &std::path::Path,
    held: tokio::task::JoinHandle<std::io::Result<Reply>>,
    what: &str,
) {
    let lines = read_access_log(log);
    let seen: Vec<_> = lines.iter().map(|l| (&l["path"], &l["status"])).collect();
    assert_eq!(seen, [(&"/hang".into(), &499.into())], "{what}");
    assert!(held.await.unwrap().is_err(), "the request was cut");
    backend_holds(w, 0, "the backend let the request go").await;
}

/// Waits until the backend holds `n` requests it does not answer.
async fn backend_holds(w: &World, n: usize, what: &str) {
    let holds = || {
        w.backend
            .slow_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    wait_until(WAIT, what, || async { holds() == n }).await;
}

/// A `GET /hang` to the proxy at `addr`, once the backend holds it
/// (it never answers): the client's task, still waiting.
async fn held_at_backend(
    w: &World,
    addr: std::net::SocketAddr,
) -> tokio::task::JoinHandle<std::io::Result<Reply>> {
    let client = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let held =
        tokio::spawn(async move { get(addr, "a.example.com", client, false, "/hang", &[]).await });
    backend_holds(w, 1, "the request is at the backend").await;
    held
}

/// A request still running when `shutdown_grace` ends is cut with its
/// connection, and has its access-log line all the same (SPEC: one line
/// per request; Envoy logs each stream it destroys when its drain ends):
/// `499`, as for a client gone. It was submitted only as the runtime went,
/// after the writer had stopped, and lost uncounted. On both runtimes.
#[tokio::test]
async fn a_request_cut_when_shutdown_grace_ends_has_its_access_log_line() {
    let w = world().await;
    for workers in ["1", "2"] {
        let log = w.scene.path(&format!("access-{workers}.log"));
        let path = hang_config_logging_to(&w, &log);
        edit(
            &path,
            &[(
                "runtime: { worker_threads: 1 }",
                &format!("runtime: {{ worker_threads: {workers}, shutdown_grace: 1s }}"),
            )],
        );
        let mut p = Proxy::start(&path);
        let addr = p.listener_addr("public").await;
        // A request the backend never answers outlasts the grace.
        let held = held_at_backend(&w, addr).await;
        p.signal("TERM");
        assert!(p.wait_exit(WAIT).await.success(), "{workers} workers");
        assert_cut_with_499(&w, &log, held, &format!("{workers} workers")).await;
    }
}

/// A second SIGTERM or SIGINT during the drain ends it at once (Caddy,
/// Envoy): what is still open is cut, each cut request has its access-log
/// line (`499`) as when `shutdown_grace` ends, and the process exits 0.
/// The second signal was swallowed: an operator's second Ctrl-C waited
/// out the whole grace (30 s here).
#[tokio::test]
async fn a_second_signal_ends_the_drain_at_once() {
    let w = world().await;
    for (first, second) in [("TERM", "TERM"), ("TERM", "INT")] {
        let log = w.scene.path(&format!("access-{second}.log"));
        let path = hang_config_logging_to(&w, &log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("shutdown_grace"), "the 30 s default applies");
        let mut p = Proxy::start(&path);
        let addr = p.listener_addr("public").await;
        let held = held_at_backend(&w, addr).await;
        p.signal(first);
        shutdown_began(&mut p).await;
        p.signal(second);
        assert!(p.wait_exit(WAIT).await.success(), "{first} then {second}");
        p.wait_log("the cut named", |v| {
            v["message"] == "second termination signal; closing remaining connections now"
        })
        .await;
        assert_cut_with_499(&w, &log, held, second).await;
    }
}

/// A `--log-level` typo is refused at once, naming the word: tracing would
/// read `warning` as a target and show no line at all, errors included.
#[test]
fn a_log_level_typo_is_refused() {
    for command in ["run", "demo"] {
        let (code, _, err) = run_cli(&[command, "--log-level", "warning"]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(
            err.contains("unknown log level `warning`"),
            "{command}: {err}"
        );
    }
}

/// `check` prints a table and exits 0 on a good config; lists every problem and exits 1 on a broken one.
#[tokio::test]
async fn check_command() {
    let w = world().await;
    let good = config(&w, "{ mode: none }", "");
    let (code, out, err) = run_cli(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&w.a.fingerprint) && out.contains("DAYS LEFT"),
        "{out}"
    );
    // A mismatched key and a garbage CA: both listed, exit 1.
    write(&w.scene.path("a.key"), &w.b.key_pem);
    write(&w.scene.path("backend-ca.crt"), "garbage");
    let (code, _, err) = run_cli(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not match the certificate") && err.contains("a.key"),
        "{err}"
    );
    assert!(err.contains("backend-ca.crt"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
    // A typo in the config names the key and line.
    write(&good, "listeners: []\nwatch: { debounse: 1s }\n");
    let (code, _, err) = run_cli(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("debounse") && err.contains("line 2"), "{err}");
    let _ = &w.backend_ca;
}
