//! The mTLS front door end to end (issue 15): allow rules in the handshake and per route, rules
//! changed at runtime, resumption, what the backend is told, request ids and the access log.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

const EDITOR: &str = "editor-token-0123456789abcdef";

/// A client PKI with an intermediate: root -> intermediate -> clients, so a
/// client sends a chain (leaf + intermediate), as real fleets do.
struct Pki {
    root_pem: String,
    intermediate_der: Vec<u8>,
    intermediate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and the chain it presents.
struct Client {
    pair: TestPair,
}

impl Pki {
    fn new() -> Pki {
        let ca = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca("partners root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate().unwrap();
        let int_params = ca("partners issuing CA");
        let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
        Pki {
            root_pem: root.pem(),
            intermediate_der: int.der().to_vec(),
            intermediate_pem: int.pem(),
            issuer: Issuer::new(int_params, int_key),
        }
    }

    /// A client certificate with these subject fields and SANs; its
    /// `cert_pem` holds the leaf and the intermediate.
    fn client(&self, cn: &str, ou: Option<&str>, sans: &[SanType]) -> Client {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        if let Some(ou) = ou {
            dn.push(DnType::OrganizationalUnitName, ou);
        }
        self.client_named(dn, sans)
    }

    /// A client certificate with this subject.
    fn client_named(&self, dn: DistinguishedName, sans: &[SanType]) -> Client {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn;
        p.subject_alt_names = sans.to_vec();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Client {
            pair: TestPair {
                cert_pem: format!("{}{}", cert.pem(), self.intermediate_pem),
                key_pem: key.serialize_pem(),
                der: cert.der().to_vec(),
                fingerprint: fingerprint(cert.der()),
                serial: 0,
            },
        }
    }
}

fn uri(u: &str) -> SanType {
    SanType::URI(u.try_into().unwrap())
}

fn dns(d: &str) -> SanType {
    SanType::DnsName(d.try_into().unwrap())
}

struct World {
    scene: Scene,
    edge_ca: TestCa,
    pki: Pki,
    backend: Backend,
}

async fn world() -> World {
    let scene = Scene::new();
    let edge_ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair(
        "edge",
        &edge_ca.server_pair(&["localhost", "public.example", "admin.example"]),
    );
    let pki = Pki::new();
    write(&scene.path("partners-ca.crt"), &pki.root_pem);
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    write(&scene.path("editor.token"), EDITOR);
    let backend = Backend::start("app", &backend_ca.server_pair(&["backend.local"]), None).await;
    World {
        scene,
        edge_ca,
        pki,
        backend,
    }
}

/// A config with one `partners` listener (client auth `client_auth`,
/// routes `routes`) plus `extra` at the top level.
fn config(
    w: &World,
    client_auth: &str,
    listener_extra: &str,
    routes: &str,
    extra: &str,
) -> std::path::PathBuf {
    w.scene.config(&format!(
        r#"
runtime: {{ worker_threads: 1 }}
watch: {{ debounce: 50ms, poll_interval: 500ms }}
admin:
  bind: 127.0.0.1:0
  tokens: [{{ role: editor, token_file: editor.token }}]
{extra}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: partners-ca, type: ca-bundle, ca_file: partners-ca.crt }}
listeners:
  - name: partners
    bind: 127.0.0.1:0
{listener_extra}
    tls:
      certs: [{{ ref: edge }}]
      client_auth:
{client_auth}
    routes:
{routes}
      - {{ upstream: app }}
upstreams:
  - name: app
    servers: [https://{backend}]
    tls:
      ca: {{ ca_file: backend-ca.crt }}
      server_name: backend.local
"#,
        backend = w.backend.addr,
    ))
}

fn cfg_for(w: &World, c: Option<&Client>) -> Arc<rustls::ClientConfig> {
    client_config(&w.edge_ca.cert_pem, c.map(|c| &c.pair), &[b"http/1.1"])
}

/// What a client gets for `GET path`: a status, or the TLS error the
/// server's alert produced.
#[derive(Debug, PartialEq)]
enum Outcome {
    Status(u16),
    Refused(rustls::Error),
    /// Closed with no answer: opened just before a rule change, which
    /// closes the connections admitted under the old rules.
    Closed,
}

/// One raw HTTP/1.1 request on a fresh connection. In TLS 1.3 the server
/// checks the client certificate after the client's Finished, so a refusal
/// shows up as an alert on the first read.
async fn outcome(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> Outcome {
    outcome_for(addr, "localhost", "localhost", cfg, path).await
}

/// [`outcome`] with the SNI sent in the handshake and the `Host` of the request.
async fn outcome_for(
    addr: std::net::SocketAddr,
    sni: &str,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> Outcome {
    let mut tls = match connect(addr, sni, cfg).await {
        Ok(t) => t,
        Err(e) => return Outcome::Refused(tls_error(&e)),
    };
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    if let Err(e) = tls.write_all(req.as_bytes()).await {
        return Outcome::Refused(tls_error(&e));
    }
    let mut buf = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await {
        Ok(Err(e)) => Outcome::Refused(tls_error(&e)),
        Ok(Ok(_)) if buf.is_empty() => Outcome::Closed,
        Ok(Ok(_)) => {
            let text = String::from_utf8_lossy(&buf);
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no status line in {text:?}"));
            Outcome::Status(status)
        }
        Err(_) => panic!("no answer to GET {path}"),
    }
}

fn tls_error(e: &std::io::Error) -> rustls::Error {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned()
        .unwrap_or_else(|| panic!("not a TLS error: {e}"))
}

const DENIED: Outcome = Outcome::Refused(rustls::Error::AlertReceived(
    rustls::AlertDescription::AccessDenied,
));

async fn metric(api: std::net::SocketAddr, needle: &str) -> f64 {
    let body = admin(api, "GET", "/metrics", None, None, &[]).await.body;
    body.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const PARTNER_RULES: &str = r#"        mode: require_and_verify
        ca: { ref: partners-ca }
        allow:
          - uri_san: "spiffe://cluster.local/ns/prod/*"
          - cn: billing
            ou: payments
          - dns_san: "*.partners.example"
          - uri_san: "spiffe://cluster.local/ns/ops/**"
          - fingerprint_sha256: "PINNED""#;

/// Each rule field, globs (`*` within one segment, `/**` suffix), several
/// rules, route narrowing; refused in the handshake with `access_denied`
/// vs 403 on a route; the refusal logged once per identity and counted.
#[tokio::test]
async fn allow_matrix() {
    let w = world().await;
    let pki = &w.pki;
    let prod = pki.client("api", None, &[uri("spiffe://cluster.local/ns/prod/api")]);
    let prod_deep = pki.client("deep", None, &[uri("spiffe://cluster.local/ns/prod/a/b")]);
    let billing = pki.client("billing", Some("payments"), &[]);
    let billing_wrong_ou = pki.client("billing", Some("marketing"), &[]);
    let partner_dns = pki.client("x", None, &[dns("api.partners.example")]);
    let partner_deep_dns = pki.client("y", None, &[dns("a.b.partners.example")]);
    let ops = pki.client(
        "ops",
        None,
        &[uri("spiffe://cluster.local/ns/ops/team/alice")],
    );
    // No SPIFFE ID has a dot segment; a backend resolving it would read
    // spiffe://cluster.local/admin.
    let climber = pki.client(
        "climber",
        None,
        &[uri("spiffe://cluster.local/ns/ops/../../admin")],
    );
    let pinned = pki.client("pinned", None, &[]);
    let stranger = pki.client("nobody", None, &[]);
    // Colons and upper case are ignored in fingerprints.
    let pinned_fp: String = pinned
        .pair
        .fingerprint
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let rules = PARTNER_RULES.replace("PINNED", &pinned_fp);
    let routes = r#"      - path_prefix: /admin
        upstream: app
        allow: [{ uri_san: "spiffe://cluster.local/ns/ops/**" }]"#;
    let mut p = Proxy::start(&config(&w, &rules, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;

    let cases: [(&str, Option<&Client>, &str, Outcome); 13] = [
        ("uri_san glob", Some(&prod), "/api", Outcome::Status(200)),
        (
            "uri_san * spans one segment",
            Some(&prod_deep),
            "/api",
            DENIED,
        ),
        ("cn + ou", Some(&billing), "/api", Outcome::Status(200)),
        (
            "cn with the wrong ou",
            Some(&billing_wrong_ou),
            "/api",
            DENIED,
        ),
        (
            "dns_san glob",
            Some(&partner_dns),
            "/api",
            Outcome::Status(200),
        ),
        (
            "dns_san * spans one label",
            Some(&partner_deep_dns),
            "/api",
            DENIED,
        ),
        ("uri_san /**", Some(&ops), "/api", Outcome::Status(200)),
        (
            "a dot segment matches no uri_san",
            Some(&climber),
            "/admin",
            DENIED,
        ),
        ("fingerprint", Some(&pinned), "/api", Outcome::Status(200)),
        ("no rule matches", Some(&stranger), "/api", DENIED),
        (
            "route narrows: ops may",
            Some(&ops),
            "/admin",
            Outcome::Status(200),
        ),
        (
            "route narrows: prod may not",
            Some(&prod),
            "/admin",
            Outcome::Status(403),
        ),
        (
            "route narrows: billing may not",
            Some(&billing),
            "/admin/x",
            Outcome::Status(403),
        ),
    ];
    for (what, client, path, want) in cases {
        let got = outcome(addr, cfg_for(&w, client), path).await;
        assert_eq!(got, want, "{what}");
    }
    // The stranger again: refused again, logged once per minute.
    assert_eq!(
        outcome(addr, cfg_for(&w, Some(&stranger)), "/").await,
        DENIED
    );
    let denials = |p: &Proxy, fp: &str| {
        p.logs()
            .iter()
            .filter(|l| l.contains("matches no allow rule") && l.contains(fp))
            .count()
    };
    // A later denial of another client is the barrier: the stranger's
    // second handshake ended before it began, so a second line for the
    // stranger would be in the log before this one.
    let later = pki.client("later", None, &[]);
    assert_eq!(outcome(addr, cfg_for(&w, Some(&later)), "/").await, DENIED);
    p.wait_log("the later denial logged", |v| {
        v["fingerprint"] == later.pair.fingerprint.as_str()
    })
    .await;
    assert_eq!(denials(&p, &stranger.pair.fingerprint), 1);
    let line = p
        .logs()
        .into_iter()
        .find(|l| l.contains("matches no allow rule") && l.contains(&stranger.pair.fingerprint))
        .unwrap();
    assert!(
        line.contains("CN=nobody") && line.contains("partners"),
        "{line}"
    );
    assert_eq!(
        metric(
            api,
            r#"hotproxy_client_auth_denied_total{listener="partners",reason="not_allowed"}"#
        )
        .await,
        // The matrix's refusals, the stranger's second, and the later one.
        7.0
    );
    assert_eq!(
        metric(
            api,
            r#"hotproxy_client_auth_denied_total{listener="partners",reason="route_not_allowed"}"#
        )
        .await,
        2.0
    );
    // No certificate at all in require_and_verify: refused, counted apart.
    assert!(matches!(
        outcome(addr, cfg_for(&w, None), "/").await,
        Outcome::Refused(_)
    ));
}

/// Rules set through `PUT /api/v1/listeners/{name}/client-auth` and by a
/// config reload apply from the next handshake; a client that holds a
/// session from before never resumes past them (listeners with client auth
/// issue no tickets, so every connection is a full, re-checked handshake).
#[tokio::test]
async fn rule_changes_apply_to_the_next_handshake_and_resumption() {
    let w = world().await;
    let alice = w.pki.client("alice", None, &[]);
    let bob = w.pki.client("bob", None, &[]);
    let rules = "        mode: require_and_verify\n        ca: { ref: partners-ca }\n        allow: [{ cn: alice }]";
    let path = config(&w, rules, "", "", "");
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;
    // One client config per identity, kept across connections: its
    // session cache is what a resuming client would use.
    let alice_cfg = cfg_for(&w, Some(&alice));
    let bob_cfg = cfg_for(&w, Some(&bob));
    assert_eq!(
        outcome(addr, alice_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
    assert_eq!(outcome(addr, bob_cfg.clone(), "/").await, DENIED);
    let tls = connect(addr, "localhost", alice_cfg.clone()).await.unwrap();
    assert_eq!(
        tls.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    drop(tls);

    let put = |body: serde_json::Value| async move {
        admin(
            api,
            "PUT",
            "/api/v1/listeners/partners/client-auth",
            Some(EDITOR),
            Some(body),
            &[],
        )
        .await
    };
    let r = put(json!({"mode": "require_and_verify", "allow": [{"cn": "bob"}]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["allow"], json!([{"cn": "bob"}]));
    let r = admin(
        api,
        "GET",
        "/api/v1/listeners/partners/client-auth",
        Some(EDITOR),
        None,
        &[],
    )
    .await;
    assert_eq!(r.json()["allow"], json!([{"cn": "bob"}]));
    let r = admin(api, "GET", "/api/v1/listeners", Some(EDITOR), None, &[]).await;
    assert_eq!(r.json()[0]["client_auth"]["allow"], json!([{"cn": "bob"}]));
    // Alice's client still holds her session: she is re-checked and refused.
    assert_eq!(outcome(addr, alice_cfg.clone(), "/").await, DENIED);
    assert_eq!(
        outcome(addr, bob_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
    // A malformed rule is refused with the reason; the live rules stay.
    let r =
        put(json!({"mode": "require_and_verify", "allow": [{"fingerprint_sha256": "xyz"}]})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("fingerprint_sha256"), "{}", r.body);
    let r = put(json!({"mode": "request", "allow": [{"cn": "bob"}]})).await;
    assert_eq!(r.status, 400, "allow without verification: {}", r.body);
    assert_eq!(
        outcome(addr, bob_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
    // `allow: null` lifts the rules: every verified client again.
    let r = put(json!({"mode": "require_and_verify", "allow": null})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        outcome(addr, alice_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
}

/// A PUT whose mode verifies no one keeps the listener's `allow` rules, as
/// it keeps its `ca` (they apply again once a mode verifies): an absent
/// `allow` keeps the rules, `null` removes them. They used to be dropped,
/// so switching to `none` and back admitted every certificate of the CA.
#[tokio::test]
async fn a_mode_that_does_not_verify_keeps_the_allow_rules() {
    let w = world().await;
    let alice = w.pki.client("alice", None, &[]);
    let bob = w.pki.client("bob", None, &[]);
    let rules = "        mode: require_and_verify\n        ca: { ref: partners-ca }\n        allow: [{ cn: bob }]";
    let path = config(&w, rules, "", "", "");
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;
    let (alice_cfg, bob_cfg) = (cfg_for(&w, Some(&alice)), cfg_for(&w, Some(&bob)));
    assert_eq!(outcome(addr, alice_cfg.clone(), "/").await, DENIED);
    let put = |body: serde_json::Value| async move {
        admin(
            api,
            "PUT",
            "/api/v1/listeners/partners/client-auth",
            Some(EDITOR),
            Some(body),
            &[],
        )
        .await
    };
    let r = put(json!({"mode": "none"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Kept, like the CA, though neither applies while nothing is verified.
    assert_eq!(r.json()["ca"], "partners-ca", "{}", r.body);
    assert_eq!(r.json()["allow"], json!([{"cn": "bob"}]), "{}", r.body);
    assert_eq!(
        outcome(addr, cfg_for(&w, None), "/").await,
        Outcome::Status(200)
    );
    let r = put(json!({"mode": "require_and_verify"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["ca"], "partners-ca", "{}", r.body);
    assert_eq!(r.json()["allow"], json!([{"cn": "bob"}]), "{}", r.body);
    assert_eq!(outcome(addr, alice_cfg.clone(), "/").await, DENIED);
    assert_eq!(
        outcome(addr, bob_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
    // `null` still removes them, whatever the mode.
    let r = put(json!({"mode": "request", "allow": null})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["allow"], json!(null), "{}", r.body);
    let r = put(json!({"mode": "require_and_verify"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["allow"], json!(null), "{}", r.body);
    assert_eq!(
        outcome(addr, alice_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
}

/// Rules set through the API stay across reloads of an unrelated change,
/// and give way when the file's `client_auth` of that listener changes:
/// an operator who takes a client out of the file's rules (to revoke it)
/// must not find the API's rules still letting it in. They used to win
/// until the listener was removed or the process restarted.
#[tokio::test]
async fn a_file_edit_of_client_auth_replaces_rules_set_through_the_api() {
    let w = world().await;
    let alice = w.pki.client("alice", None, &[]);
    let bob = w.pki.client("bob", None, &[]);
    let rules = |cn: &str| {
        format!(
            "        mode: require_and_verify\n        ca: {{ ref: partners-ca }}\n        allow: [{{ cn: {cn} }}]"
        )
    };
    let path = config(&w, &rules("alice"), "", "", "");
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;
    let (alice_cfg, bob_cfg) = (cfg_for(&w, Some(&alice)), cfg_for(&w, Some(&bob)));
    let r = admin(
        api,
        "PUT",
        "/api/v1/listeners/partners/client-auth",
        Some(EDITOR),
        Some(json!({"mode": "require_and_verify", "allow": [{"cn": "bob"}]})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        outcome(addr, bob_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
    // An edit elsewhere in the listener keeps the API's rules ...
    config(
        &w,
        &rules("alice"),
        "    limits: { idle_timeout: 30s }",
        "",
        "",
    );
    p.signal("HUP");
    p.wait_log("the first reload", |v| {
        v["message"] == "configuration reloaded"
    })
    .await;
    assert_eq!(
        outcome(addr, bob_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
    assert_eq!(outcome(addr, alice_cfg.clone(), "/").await, DENIED);
    // ... an edit of its client_auth replaces them.
    config(
        &w,
        &rules("carol"),
        "    limits: { idle_timeout: 30s }",
        "",
        "",
    );
    p.signal("HUP");
    p.wait_log("the API's rules replaced", |v| {
        v["message"] == "the configuration file's client_auth replaces the one set through the API"
            && v["listener"] == "partners"
    })
    .await;
    assert_eq!(outcome(addr, bob_cfg.clone(), "/").await, DENIED);
    let r = admin(
        api,
        "GET",
        "/api/v1/listeners/partners/client-auth",
        Some(EDITOR),
        None,
        &[],
    )
    .await;
    assert_eq!(r.json()["allow"], json!([{"cn": "carol"}]));
}

/// Rules hot-reload with the config file (SIGHUP), for the next handshake.
#[tokio::test]
async fn rules_reload_with_the_config() {
    let w = world().await;
    let alice = w.pki.client("alice", None, &[]);
    let rules = |cn: &str| {
        format!(
            "        mode: require_and_verify\n        ca: {{ ref: partners-ca }}\n        allow: [{{ cn: {cn} }}]"
        )
    };
    let path = config(&w, &rules("alice"), "", "", "");
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let alice_cfg = cfg_for(&w, Some(&alice));
    assert_eq!(
        outcome(addr, alice_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
    config(&w, &rules("bob"), "", "", "");
    p.signal("HUP");
    wait_until(
        Duration::from_secs(10),
        "the new rules applied (alice denied)",
        || async { outcome(addr, alice_cfg.clone(), "/").await == DENIED },
    )
    .await;
}

/// `hotproxy check` refuses a malformed rule and names its line.
#[tokio::test]
async fn check_names_the_line_of_a_malformed_rule() {
    let w = world().await;
    let rules = "        mode: require_and_verify\n        ca: { ref: partners-ca }\n        allow:\n          - cn: ok\n          - uri_san: \"spiffe://x/**/y\"";
    let path = config(&w, rules, "", "", "");
    let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}{err}");
    let text = format!("{out}{err}");
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.contains("spiffe://x/**/y"))
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!("line {line}")),
        "line {line} not named: {text}"
    );
    assert!(text.contains("uri_san"), "{text}");
}

/// The headers the backend saw for `GET path` with `headers`.
async fn seen(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let r = get(addr, "localhost", cfg, false, path, headers)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["headers"].clone()
}

/// Every header name a client might spoof: hotproxy's own, and the
/// identity headers of the proxies its users come from (ingress-nginx,
/// Traefik, HAProxy recipes), which their backends may still trust.
const SPOOFED: [(&str, &str); 17] = [
    ("x-client-cert-subject", "CN=mallory"),
    ("x-client-cert-fingerprint", "00"),
    ("x-client-cert-uri-sans", "spiffe://evil"),
    ("x-client-cert-dns-sans", "evil.example"),
    ("x-client-cert-issuer", "CN=evil"),
    ("x-client-cert-cn", "admin"),
    ("client-cert", ":AAAA:"),
    ("client-cert-chain", ":AAAA:"),
    ("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\""),
    ("ssl-client-verify", "SUCCESS"),
    ("ssl-client-subject-dn", "CN=admin"),
    ("ssl-client-issuer-dn", "CN=partners issuing CA"),
    ("ssl-client-cert", "-----BEGIN%20CERTIFICATE-----"),
    ("x-forwarded-tls-client-cert", "MIIB"),
    (
        "x-forwarded-tls-client-cert-info",
        "Subject%3D%22CN%3Dadmin%22",
    ),
    ("x-ssl-client-verify", "0"),
    ("x-ssl-client-dn", "CN=admin"),
];

/// Each `forward_client_cert` mode, read back by parsers written here (not
/// hotproxy's encoders): RFC 9440 byte sequences decode to the exact DER of
/// the leaf and the intermediate; XFCC's URL-encoded PEMs too. Spoofed
/// copies never reach the backend, in any mode, with or without a cert.
#[tokio::test]
async fn forward_client_cert_modes() {
    let w = world().await;
    let client = w.pki.client(
        "billing",
        Some("payments"),
        &[
            uri("spiffe://cluster.local/ns/prod/sa/billing"),
            dns("billing.partners.example"),
        ],
    );
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /rfc9440, upstream: app, forward_client_cert: rfc9440 }
      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }
      - { path_prefix: /none, upstream: app, forward_client_cert: none }
      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }
      - { path_prefix: /billing-only, upstream: app, allow: [{ cn: billing }] }"#;
    let mut p = Proxy::start(&config(
        &w,
        auth,
        "    forward_client_cert: headers",
        routes,
        "",
    ));
    let addr = p.listener_addr("partners").await;
    let with = cfg_for(&w, Some(&client));
    let without = cfg_for(&w, None);
    let id_headers = |h: &serde_json::Value| -> Vec<String> {
        h.as_object()
            .unwrap()
            .keys()
            .filter(|k| k.contains("client-cert") || k.contains("ssl-client-"))
            .cloned()
            .collect()
    };

    // headers (the listener's mode).
    let h = seen(addr, with.clone(), "/api", &SPOOFED).await;
    assert_eq!(h["x-client-cert-subject"], "CN=billing, OU=payments");
    assert_eq!(
        h["x-client-cert-fingerprint"],
        client.pair.fingerprint.as_str()
    );
    assert_eq!(
        h["x-client-cert-uri-sans"],
        "spiffe://cluster.local/ns/prod/sa/billing"
    );
    assert_eq!(h["x-client-cert-dns-sans"], "billing.partners.example");
    assert_eq!(h["x-client-cert-issuer"], "CN=partners issuing CA");
    let not_after = h["x-client-cert-not-after"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{not_after}"
    );
    assert!(
        h["x-client-cert-serial"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    );
    assert!(
        h.get("x-client-cert-cn").is_none(),
        "spoofed header kept: {h}"
    );
    for k in [
        "client-cert",
        "client-cert-chain",
        "x-forwarded-client-cert",
    ] {
        assert!(h.get(k).is_none(), "{k} in headers mode: {h}");
    }

    // rfc9440: sf-binary items, `:` base64 `:`.
    let h = seen(addr, with.clone(), "/rfc9440", &SPOOFED).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes = |item: &str| {
        let inner = item
            .trim()
            .strip_prefix(':')
            .and_then(|s| s.strip_suffix(':'))
            .unwrap();
        b64.decode(inner).unwrap()
    };
    assert_eq!(bytes(h["client-cert"].as_str().unwrap()), client.pair.der);
    let chain: Vec<Vec<u8>> = h["client-cert-chain"]
        .as_str()
        .unwrap()
        .split(',')
        .map(bytes)
        .collect();
    assert_eq!(chain, vec![w.pki.intermediate_der.clone()]);
    assert_eq!(id_headers(&h).len(), 2, "{h}");

    // xfcc: Envoy's key=value;… with quoted, URL-encoded PEMs.
    let h = seen(addr, with.clone(), "/xfcc", &SPOOFED).await;
    let xfcc = h["x-forwarded-client-cert"].as_str().unwrap();
    let pairs = parse_xfcc(xfcc);
    let get = |k: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("Hash"), [client.pair.fingerprint.as_str()]);
    // The edge certificate has no URI SAN: no `By`.
    assert!(get("By").is_empty(), "{xfcc}");
    // Envoy's Subject: OpenSSL's RFC 2253 form (the last RDN first).
    assert_eq!(get("Subject"), ["OU=payments,CN=billing"]);
    assert_eq!(get("URI"), ["spiffe://cluster.local/ns/prod/sa/billing"]);
    assert_eq!(get("DNS"), ["billing.partners.example"]);
    let pem_ders = |v: &str| -> Vec<Vec<u8>> {
        let pem = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .unwrap();
        pem_certs(&pem)
    };
    assert_eq!(pem_ders(get("Cert")[0]), vec![client.pair.der.clone()]);
    assert_eq!(
        pem_ders(get("Chain")[0]),
        vec![client.pair.der.clone(), w.pki.intermediate_der.clone()]
    );
    assert_eq!(id_headers(&h), ["x-forwarded-client-cert"], "{h}");

    // ingress_nginx: its four headers as nginx writes them (RFC 2253 DNs:
    // the last RDN first, no spaces; the leaf's PEM URL-encoded).
    let h = seen(addr, with.clone(), "/nginx", &SPOOFED).await;
    assert_eq!(h["ssl-client-verify"], "SUCCESS", "{h}");
    assert_eq!(h["ssl-client-subject-dn"], "OU=payments,CN=billing", "{h}");
    assert_eq!(h["ssl-client-issuer-dn"], "CN=partners issuing CA", "{h}");
    assert_eq!(
        pem_ders(h["ssl-client-cert"].as_str().unwrap()),
        vec![client.pair.der.clone()]
    );
    assert_eq!(
        id_headers(&h),
        [
            "ssl-client-cert",
            "ssl-client-issuer-dn",
            "ssl-client-subject-dn",
            "ssl-client-verify"
        ],
        "{h}"
    );

    // none: nothing, and nothing spoofed.
    let h = seen(addr, with.clone(), "/none", &SPOOFED).await;
    assert!(id_headers(&h).is_empty(), "{h}");
    // No certificate (verify_if_given): nothing in any mode, but
    // ingress-nginx's `ssl-client-verify: NONE`.
    for path in ["/api", "/rfc9440", "/xfcc", "/none"] {
        let h = seen(addr, without.clone(), path, &SPOOFED).await;
        assert!(id_headers(&h).is_empty(), "{path}: {h}");
    }
    let h = seen(addr, without.clone(), "/nginx", &SPOOFED).await;
    assert_eq!(id_headers(&h), ["ssl-client-verify"], "{h}");
    assert_eq!(h["ssl-client-verify"], "NONE", "{h}");
    // A route rule: a client without a certificate never matches one, even
    // with spoofed identity headers.
    assert_eq!(
        outcome(addr, with.clone(), "/billing-only").await,
        Outcome::Status(200)
    );
    let r = support::get(
        addr,
        "localhost",
        without.clone(),
        false,
        "/billing-only",
        &SPOOFED,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);

    // XFCC's `By` names the certificate hotproxy served, one per URI SAN,
    // as Envoy names itself: the edge certificate renewed with a SPIFFE ID
    // (rotated in place, so the name index is kept and the URIs re-read).
    let renewed = w.edge_ca.server_pair_with_uris(
        &["localhost", "public.example", "admin.example"],
        &["spiffe://cluster.local/ns/edge/sa/hotproxy"],
    );
    w.scene.pair("edge", &renewed);
    wait_until(
        Duration::from_secs(20),
        "the renewed edge certificate served",
        || async {
            served_leaf(addr, "localhost", &w.edge_ca.cert_pem)
                .await
                .is_ok_and(|f| f == renewed.fingerprint)
        },
    )
    .await;
    let h = seen(addr, with.clone(), "/xfcc", &SPOOFED).await;
    let xfcc = h["x-forwarded-client-cert"].as_str().unwrap();
    assert!(
        xfcc.starts_with("By=spiffe://cluster.local/ns/edge/sa/hotproxy;Hash="),
        "{xfcc}"
    );
    drop(p);
}

/// `Key=value;Key="quoted value";…` as Envoy writes XFCC (one element).
/// A quoted value is kept as it stands, backslashes included: Envoy puts
/// OpenSSL's RFC 2253 `Subject` in quotes without unescaping it, so its
/// `\,` and `\"` are the DN's own escapes.
fn parse_xfcc(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        value.push('\\');
                        value.extend(chars.next());
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
            chars.next(); // the `;` after the closing quote
        } else {
            value = chars.by_ref().take_while(|c| *c != ';').collect();
        }
        out.push((key, value));
    }
}

fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// Request ids: a well-formed client id is kept, a malformed one replaced,
/// `trust_client: false` always replaces; the backend and the client see
/// the same id; traceparent/tracestate pass unchanged.
#[tokio::test]
async fn request_ids_and_traces() {
    let w = world().await;
    let auth = "        mode: none";
    let mut p = Proxy::start(&config(&w, auth, "", "", ""));
    let addr = p.listener_addr("partners").await;
    let cfg = cfg_for(&w, None);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ask = |hdrs: Vec<(&'static str, String)>| {
        let cfg = cfg.clone();
        async move {
            let tls = connect(addr, "localhost", cfg).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::builder()
                .uri("/")
                .header("host", "localhost");
            for (k, v) in &hdrs {
                req = req.header(*k, v.as_str());
            }
            let resp = send
                .send_request(
                    req.body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (id, v["headers"].clone())
        }
    };
    let (id, h) = ask(vec![
        ("x-request-id", "client-id-1".into()),
        ("traceparent", tp.into()),
        ("tracestate", "vendor=opaque,x=1".into()),
    ])
    .await;
    assert_eq!(id, "client-id-1");
    assert_eq!(h["x-request-id"], "client-id-1");
    assert_eq!(h["traceparent"], tp);
    assert_eq!(h["tracestate"], "vendor=opaque,x=1");
    let (id, h) = ask(vec![("x-request-id", "not well formed!".into())]).await;
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(h["x-request-id"], id.as_str());
    let (id2, _) = ask(vec![]).await;
    assert_eq!(id2.len(), 32);
    assert_ne!(id, id2);
    drop(p);

    // trust_client: false replaces even a well-formed id.
    let mut p = Proxy::start(&config(
        &w,
        auth,
        "    request_id: { trust_client: false }",
        "",
        "",
    ));
    let addr2 = p.listener_addr("partners").await;
    let r = get(
        addr2,
        "localhost",
        cfg.clone(),
        false,
        "/",
        &[("x-request-id", "client-id-1")],
    )
    .await
    .unwrap();
    let sent = r.json()["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(sent, "client-id-1");
    assert_eq!(sent.len(), 32);
}

/// Access-log lines: every JSON field with the request's values; a 403 and
/// a refused handshake with their reasons; `access_log: false` listeners
/// silent; SIGUSR1 reopens the file after logrotate moved it; no PEM or
/// key text in any line of the access log or the process log.
#[tokio::test]
async fn access_log_lines() {
    let w = world().await;
    let client = w.pki.client(
        "billing",
        Some("payments"),
        &[uri("spiffe://cluster.local/ns/prod/sa/billing")],
    );
    let stranger = w.pki.client("nobody", None, &[]);
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }\n        allow: [{ cn: billing }]";
    let routes = "      - { path_prefix: /admin, upstream: app, allow: [{ cn: ops }] }\n      - { path_prefix: /dead, upstream: dead }";
    let log = w.scene.path("access.log");
    let extra = format!("access_log: {{ path: {}, format: json }}", log.display());
    let path = config(&w, auth, "", routes, &extra);
    // A second listener with the log turned off.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "upstreams:",
        "  - name: health\n    bind: 127.0.0.1:0\n    access_log: false\n    tls:\n      certs: [{ ref: edge }]\n    routes: [{ upstream: app }]\nupstreams:",
    ) + "  - name: dead\n    servers: [https://127.0.0.1:1]\n    tls: { ca: { ca_file: backend-ca.crt }, server_name: backend.local }\n";
    write(&path, &text);
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let health = p.listener_addr("health").await;
    let cfg = cfg_for(&w, Some(&client));
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // HTTP/2 needs ALPN h2 (the protocol agreed on is the one spoken).
    let cfg_h2 = client_config(&w.edge_ca.cert_pem, Some(&client.pair), &[b"h2"]);
    let r = get(
        addr,
        "localhost",
        cfg_h2,
        true,
        "/v1/items?token=secret",
        &[("traceparent", tp), ("x-request-id", "rid-42")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        get(addr, "localhost", cfg.clone(), false, "/admin", &[])
            .await
            .unwrap()
            .status,
        403
    );
    // Nothing listens there: hotproxy's own 502, no upstream head.
    assert_eq!(
        get(addr, "localhost", cfg.clone(), false, "/dead", &[])
            .await
            .unwrap()
            .status,
        502
    );
    // A handshake refused on the listener with the log off: a client that
    // does not trust its certificate. No line, while the refusals after it
    // on `partners` get theirs (one writer, in order: awaiting those is
    // enough).
    let distrustful = client_config(&w.pki.root_pem, None, &[b"http/1.1"]);
    assert!(connect(health, "localhost", distrustful).await.is_err());
    // A certificate from a CA the listener does not trust.
    let foreign = w.edge_ca.client_pair("foreign");
    let foreign_cfg = client_config(&w.edge_ca.cert_pem, Some(&foreign), &[b"http/1.1"]);
    assert_eq!(
        outcome(addr, foreign_cfg, "/").await,
        Outcome::Refused(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA
        ))
    );
    assert_eq!(
        outcome(addr, cfg_for(&w, Some(&stranger)), "/").await,
        DENIED
    );
    assert_eq!(
        get(
            health,
            "localhost",
            cfg_for(&w, None),
            false,
            "/health",
            &[]
        )
        .await
        .unwrap()
        .status,
        200
    );
    // A barrier: a request on `partners` after the health GET has ended.
    // Its line is written after any line the health GET could have had
    // (one writer, in order), so awaiting it gives that line its chance.
    assert_eq!(
        get(addr, "localhost", cfg.clone(), false, "/barrier", &[])
            .await
            .unwrap()
            .status,
        200
    );

    wait_until(Duration::from_secs(10), "the barrier's line", || async {
        read_access_log(&log)
            .iter()
            .any(|l| l["path"] == "/barrier")
    })
    .await;
    let all = read_access_log(&log);
    assert_eq!(all.len(), 6, "{all:?}");
    let dead = all
        .iter()
        .find(|l| l["status"] == 502)
        .expect("the 502's line");
    assert_eq!(dead["upstream"], "dead", "{dead}");
    assert!(dead["upstream_ms"].is_null(), "no upstream head: {dead}");
    let ok = all
        .iter()
        .find(|l| l["request_id"] == "rid-42")
        .expect("the 200's line");
    let fields = [
        "ts",
        "listener",
        "sni",
        "client_addr",
        "client_subject",
        "client_uri_san",
        "client_fingerprint",
        "method",
        "host",
        "path",
        "protocol",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream",
        "upstream_addr",
        "upstream_ms",
        "request_id",
        "tls_version",
        "resumed",
        "authz",
    ];
    for f in fields {
        assert!(!ok[f].is_null(), "field {f} missing: {ok}");
    }
    assert_eq!(ok["listener"], "partners");
    assert_eq!(ok["sni"], "localhost");
    assert_eq!(ok["client_subject"], "CN=billing, OU=payments");
    assert_eq!(
        ok["client_uri_san"],
        "spiffe://cluster.local/ns/prod/sa/billing"
    );
    assert_eq!(ok["client_fingerprint"], client.pair.fingerprint.as_str());
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["host"], "localhost");
    assert_eq!(ok["path"], "/v1/items", "no query in the log");
    assert_eq!(ok["protocol"], "HTTP/2.0");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["bytes_out"].as_u64().unwrap() as usize, r.body.len());
    assert_eq!(ok["upstream"], "app");
    assert_eq!(ok["upstream_addr"], format!("https://{}", w.backend.addr));
    assert_eq!(ok["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ok["tls_version"], "TLSv1.3");
    assert_eq!(ok["resumed"], false);
    assert_eq!(ok["authz"], "allowed");
    assert!(ok["ts"].as_str().unwrap().ends_with('Z'));
    let denied = all
        .iter()
        .find(|l| l["status"] == 403)
        .expect("the 403's line");
    assert_eq!(denied["authz"], "route_not_allowed");
    assert_eq!(denied["path"], "/admin");
    let refused = all
        .iter()
        .find(|l| l["authz"] == "not_allowed")
        .expect("the refused handshake's line");
    assert!(refused["status"].is_null());
    let unknown = all
        .iter()
        .find(|l| l["authz"] == "unknown_ca")
        .expect("the unknown CA's line");
    assert_eq!(unknown["listener"], "partners");
    assert!(
        unknown["client_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        all.iter().all(|l| l["listener"] != "health"),
        "access_log: false listener logged"
    );

    // logrotate: move the file, SIGUSR1, new lines go to a new file.
    let rotated = w.scene.path("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    p.signal("USR1");
    p.wait_log("reopened", |v| v["message"] == "access log reopened")
        .await;
    assert_eq!(
        get(addr, "localhost", cfg.clone(), false, "/after", &[])
            .await
            .unwrap()
            .status,
        200
    );
    let after = |l: &serde_json::Value| l["path"] == "/after";
    wait_until(
        Duration::from_secs(10),
        "a line in the reopened file",
        || async { read_access_log(&log).iter().any(after) },
    )
    .await;
    assert!(!read_access_log(&rotated).iter().any(after));

    // No PEM or key in any line, anywhere.
    let mut secrets = pem_body_lines(&client.pair.cert_pem);
    secrets.extend(pem_body_lines(&client.pair.key_pem));
    secrets.push("BEGIN".into());
    let mut every_line: Vec<String> = p.logs();
    every_line.extend(
        std::fs::read_to_string(&rotated)
            .unwrap()
            .lines()
            .map(str::to_owned),
    );
    every_line.extend(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_owned),
    );
    for l in &every_line {
        for s in &secrets {
            assert!(!l.contains(s.as_str()), "PEM/key text in a log line: {l}");
        }
    }
}

/// Client auth per certificate entry (crt-list style): the policy is chosen
/// by SNI; a `Host` belonging to another entry than the SNI selected gets
/// 421; a client without SNI gets the default (first) entry's policy.
#[tokio::test]
async fn per_name_client_auth_and_421() {
    let w = world().await;
    w.scene.pair(
        "public",
        &w.edge_ca.server_pair(&["public.example", "localhost"]),
    );
    w.scene
        .pair("admin", &w.edge_ca.server_pair(&["admin.example"]));
    let ops = w.pki.client("ops", None, &[]);
    let intern = w.pki.client("intern", None, &[]);
    let path = w.scene.config(&format!(
        r#"
runtime: {{ worker_threads: 1 }}
admin: {{ bind: 127.0.0.1:0 }}
certs:
  - {{ id: partners-ca, type: ca-bundle, ca_file: partners-ca.crt }}
listeners:
  - name: mixed
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ cert_file: public.crt, key_file: public.key }}
        - cert_file: admin.crt
          key_file: admin.key
          client_auth:
            mode: require_and_verify
            ca: {{ ref: partners-ca }}
            allow: [{{ cn: ops }}]
      client_auth: {{ mode: none }}
    routes: [{{ upstream: app }}]
upstreams:
  - name: app
    servers: [https://{backend}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
"#,
        backend = w.backend.addr
    ));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("mixed").await;
    let anon = cfg_for(&w, None);
    let ops_cfg = cfg_for(&w, Some(&ops));
    let intern_cfg = cfg_for(&w, Some(&intern));
    let cases: [(&str, &str, &str, &Arc<rustls::ClientConfig>, Outcome); 7] = [
        (
            "public, no cert",
            "public.example",
            "public.example",
            &anon,
            Outcome::Status(200),
        ),
        (
            "public SNI, admin Host",
            "public.example",
            "admin.example",
            &anon,
            Outcome::Status(421),
        ),
        (
            "public SNI, admin Host with a port",
            "public.example",
            "ADMIN.example:443",
            &ops_cfg,
            Outcome::Status(421),
        ),
        (
            "admin with an allowed cert",
            "admin.example",
            "admin.example",
            &ops_cfg,
            Outcome::Status(200),
        ),
        (
            "admin SNI, public Host",
            "admin.example",
            "public.example",
            &ops_cfg,
            Outcome::Status(421),
        ),
        (
            "admin with a cert no rule allows",
            "admin.example",
            "admin.example",
            &intern_cfg,
            DENIED,
        ),
        (
            "admin without a cert",
            "admin.example",
            "admin.example",
            &anon,
            Outcome::Refused(rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired,
            )),
        ),
    ];
    for (what, sni, host, cfg, want) in cases {
        assert_eq!(
            outcome_for(addr, sni, host, (*cfg).clone(), "/").await,
            want,
            "{what}"
        );
    }
    // What the backend is told follows the entry: the admin entry verifies.
    let r = get(addr, "admin.example", ops_cfg.clone(), false, "/", &[])
        .await
        .unwrap();
    assert_eq!(r.json()["headers"]["x-client-cert-subject"], "CN=ops");
    let r = get(addr, "public.example", ops_cfg.clone(), false, "/", &[])
        .await
        .unwrap();
    assert!(r.json()["headers"].get("x-client-cert-subject").is_none());
    // No SNI: the default entry's policy (no client auth), its names only.
    let mut no_sni = (*client_config(&w.edge_ca.cert_pem, None, &[b"http/1.1"])).clone();
    no_sni.enable_sni = false;
    let no_sni = Arc::new(no_sni);
    assert_eq!(
        outcome_for(
            addr,
            "public.example",
            "public.example",
            no_sni.clone(),
            "/"
        )
        .await,
        Outcome::Status(200)
    );
    assert_eq!(
        outcome_for(addr, "public.example", "admin.example", no_sni, "/").await,
        Outcome::Status(421)
    );
}

/// A connection accepted before a reload and shaking hands after it gets
/// the new configuration as a whole: here the admin entry's own
/// `require_and_verify` became listener-wide, so a client without a
/// certificate is refused. Read in two steps, the old listener-wide config
/// (no client auth) met the new `per_name` (none) and served the admin
/// certificate to anyone.
#[tokio::test]
async fn reload_between_accept_and_client_hello_is_one_snapshot() {
    let w = world().await;
    w.scene.pair(
        "public",
        &w.edge_ca.server_pair(&["public.example", "localhost"]),
    );
    w.scene
        .pair("admin", &w.edge_ca.server_pair(&["admin.example"]));
    let config = |admin_auth: &str, listener_auth: &str| {
        format!(
            r#"
runtime: {{ worker_threads: 1 }}
admin: {{ bind: 127.0.0.1:0 }}
certs:
  - {{ id: partners-ca, type: ca-bundle, ca_file: partners-ca.crt }}
listeners:
  - name: mixed
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ cert_file: public.crt, key_file: public.key }}
        - cert_file: admin.crt
          key_file: admin.key
{admin_auth}
      client_auth: {listener_auth}
    routes: [{{ upstream: app }}]
upstreams:
  - name: app
    servers: [https://{backend}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
"#,
            backend = w.backend.addr
        )
    };
    let path = w.scene.config(&config(
        "          client_auth: { mode: require_and_verify, ca: { ref: partners-ca } }",
        "{ mode: none }",
    ));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("mixed").await;
    // Accepted now; the ClientHello follows the reload.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    w.scene.config(&config(
        "",
        "{ mode: require_and_verify, ca: { ref: partners-ca } }",
    ));
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    let name = rustls::pki_types::ServerName::try_from("admin.example").unwrap();
    let got = async {
        let mut tls = tokio_rustls::TlsConnector::from(cfg_for(&w, None))
            .connect(name, tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: admin.example\r\nconnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match within_deadline("the held connection's request", got).await {
        Ok(text) => panic!("served without a client certificate: {text:?}"),
        Err(e) => assert_eq!(
            tls_error(&e),
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
        ),
    }
}

/// `resumed` and `tls_version` in the access log are the connection's: a
/// listener without client auth resumes sessions (tickets), and the second
/// connection of a client that kept its session says so. `bytes_in` is the
/// request body that went upstream.
#[tokio::test]
async fn access_log_reports_resumption() {
    let w = world().await;
    let log = w.scene.path("access.log");
    let extra = format!("access_log: {{ path: {}, format: json }}", log.display());
    let path = config(&w, "        mode: none", "", "", &extra);
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("partners").await;
    let cfg = cfg_for(&w, None);
    for path in ["/first", "/second"] {
        assert_eq!(outcome(addr, cfg.clone(), path).await, Outcome::Status(200));
    }
    // A request with a body: bytes_in counts what went upstream.
    let mut tls = connect(addr, "localhost", cfg.clone()).await.unwrap();
    tls.write_all(b"POST /post HTTP/1.1\r\nhost: localhost\r\ncontent-length: 11\r\nconnection: close\r\n\r\nhello world")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let lines = wait_access_log(&log, 3, Duration::from_secs(10)).await;
    let resumed = |path: &str| lines.iter().find(|l| l["path"] == path).unwrap()["resumed"].clone();
    assert_eq!(resumed("/first"), false);
    assert_eq!(resumed("/second"), true);
    let post = lines.iter().find(|l| l["path"] == "/post").unwrap();
    assert_eq!(post["bytes_in"], 11);
    assert_eq!(post["method"], "POST");
    assert_eq!(
        lines.iter().find(|l| l["path"] == "/first").unwrap()["bytes_in"],
        0
    );
    assert!(
        lines
            .iter()
            .all(|l| l["tls_version"] == "TLSv1.3" && l["client_subject"].is_null())
    );
}

/// A client that goes away before its response (nginx's `499`, "client
/// closed request") still gets its access-log line and its count, on both
/// protocols: the HTTP/1.1 connection closed, one HTTP/2 stream reset
/// (`CANCEL`) on a connection that lives on. The upstream request is
/// abandoned with it: the backend's `/hang`, which never ends by itself,
/// stops being answered (with `/slow`, which ends after 2 s, that held
/// however the proxy behaved).
#[tokio::test]
async fn client_gone_before_the_response_is_logged_as_499() {
    use std::sync::atomic::Ordering::SeqCst;
    const WAIT: Duration = Duration::from_secs(20);
    let w = world().await;
    let log = w.scene.path("access.log");
    let extra = format!("access_log: {{ path: {}, format: json }}", log.display());
    let mut p = Proxy::start(&config(&w, "        mode: none", "", "", &extra));
    let addr = p.listener_addr("partners").await;
    let admin = p.admin_addr().await;
    let slow = || w.backend.slow_in_flight.load(SeqCst);
    let gone = |n: usize| async move {
        let line = format!(
            "hotproxy_http_requests_total{{listener=\"partners\",upstream=\"app\",code=\"499\"}} {n}"
        );
        wait_metric(admin, &line, WAIT).await;
    };

    // The backend is answering; the client goes away (`drop`): the request
    // is counted, the backend stops.
    let answering = || wait_until(WAIT, "the backend answering", || async { slow() == 1 });
    let abandoned = || {
        wait_until(WAIT, "the upstream request abandoned", || async {
            slow() == 0
        })
    };

    let mut s = connect(addr, "localhost", cfg_for(&w, None)).await.unwrap();
    s.write_all(b"GET /hang HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    answering().await;
    drop(s);
    gone(1).await;
    abandoned().await;

    let h2 = client_config(&w.edge_ca.cert_pem, None, &[b"h2"]);
    let mut client = h2_client(connect(addr, "localhost", h2).await.unwrap()).await;
    let req = http::Request::get("https://localhost/hang")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    answering().await;
    drop(resp);
    gone(2).await;
    abandoned().await;
    // The connection still serves.
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get("https://localhost/after")
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(WAIT, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);

    let all = wait_access_log(&log, 3, WAIT).await;
    let gone: Vec<_> = all.iter().filter(|l| l["status"] == 499).collect();
    assert_eq!(gone.len(), 2, "{all:?}");
    for (line, protocol) in gone.iter().zip(["HTTP/1.1", "HTTP/2.0"]) {
        assert_eq!(line["path"], "/hang", "{line}");
        assert_eq!(line["protocol"], protocol, "{line}");
        assert_eq!(line["upstream"], "app", "{line}");
        assert!(line["upstream_ms"].is_null(), "no response head: {line}");
        assert_eq!(line["bytes_out"], 0, "{line}");
        assert!(line["request_id"].is_string(), "{line}");
    }
    drop(p);
}

/// A header whose name reads, `_` as `-`, as one hotproxy sets, removes
/// or replaces is removed too: CGI, WSGI and PHP servers fold both
/// spellings into one variable (`HTTP_SSL_CLIENT_VERIFY`), so
/// `ssl_client_verify: SUCCESS` would reach such a backend as the header
/// hotproxy stripped, and Puma < 6.4.3 (CVE-2024-45614) let `X_Request_Id`
/// override the id a `trust_client: false` listener generated. An
/// application's own names with `_` pass.
#[tokio::test]
async fn underscore_lookalikes_of_stripped_headers_are_removed() {
    let w = world().await;
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes =
        r#"      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }"#;
    let listener = "    request_id: { trust_client: false }";
    let mut p = Proxy::start(&config(&w, auth, listener, routes, ""));
    let addr = p.listener_addr("partners").await;
    let lookalikes = [
        ("ssl_client_verify", "SUCCESS"),
        ("ssl_client_subject_dn", "CN=admin"),
        ("X_Client_Cert_Subject", "CN=admin"),
        ("x_forwarded_client_cert", "Hash=00"),
        ("client_cert", ":AAAA:"),
        ("X_Forwarded_For", "6.6.6.6"),
        ("x_real_ip", "6.6.6.6"),
        ("x-forwarded_proto", "http"),
        ("X_Request_Id", "forged"),
        ("x-request_id", "forged"),
        ("x_forwarded_host", "evil.example"),
    ];
    let mut sent = lookalikes.to_vec();
    sent.push(("api_key", "k1"));
    sent.push(("x_custom_thing", "kept"));
    for path in ["/api", "/nginx"] {
        let h = seen(addr, cfg_for(&w, None), path, &sent).await;
        for (name, _) in lookalikes {
            let lower = name.to_ascii_lowercase();
            assert!(
                h.get(&lower).is_none(),
                "{path}: {name} reached the backend: {h}"
            );
        }
        assert_eq!(h["api_key"], "k1", "{path}: {h}");
        assert_eq!(h["x_custom_thing"], "kept", "{path}: {h}");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{path}: {h}");
        assert_eq!(h["x-forwarded-host"], "localhost", "{path}: {h}");
        // The id hotproxy generated is the only one the backend gets.
        let id = h["x-request-id"].as_str().unwrap_or_default();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{path}: {h}"
        );
    }
    drop(p);
}

/// What OpenSSL prints for `pem`'s subject or issuer (`-subject` /
/// `-issuer`) with `-nameopt RFC2253`: nginx's `$ssl_client_s_dn` and
/// `$ssl_client_i_dn`, Envoy's XFCC `Subject`.
fn openssl_rfc2253(scene: &Scene, pem: &str, which: &str) -> String {
    let path = scene.path("openssl-dn.pem");
    write(&path, pem);
    let out = output_within_deadline(
        std::process::Command::new("openssl")
            .args(["x509", "-noout", which, "-nameopt", "RFC2253", "-in"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("{}=", &which[1..]);
    text.trim_end_matches('\n')
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned()
}

/// `ingress_nginx`'s DNs and XFCC's `Subject` are what nginx and Envoy send
/// (OpenSSL's `XN_FLAG_RFC2253`), checked against the `openssl` tool for
/// a subject holding every attribute type of the arcs DNs use (X.520,
/// RFC 1274, PKCS #9, EV jurisdiction, RFC 3739), a type OpenSSL does not
/// know, and values that need escaping: separators, a leading `#`, a
/// trailing space, a control character, UTF-8, BMP and Universal strings.
/// Non-ASCII is escaped byte by byte (`zo\C3\AB`), so the headers are
/// sent, not dropped, in `headers` mode too.
#[tokio::test]
async fn distinguished_names_are_written_as_openssl_writes_them() {
    let w = world().await;
    // Every attribute type of the arcs, each with a plain value.
    let mut every_type = DistinguishedName::new();
    let arcs: [(&[u64], std::ops::RangeInclusive<u64>); 5] = [
        (&[2, 5, 4], 0..=110),
        (&[0, 9, 2342, 19_200_300, 100, 1], 0..=60),
        (&[1, 2, 840, 113_549, 1, 9], 0..=25),
        (&[1, 3, 6, 1, 4, 1, 311, 60, 2, 1], 1..=3),
        (&[1, 3, 6, 1, 5, 5, 7, 9], 1..=5),
    ];
    for (arc, range) in arcs {
        for i in range {
            let mut oid = arc.to_vec();
            oid.push(i);
            every_type.push(
                DnType::CustomDnType(oid),
                DnValue::Utf8String(format!("v{i}")),
            );
        }
    }
    every_type.push(DnType::CustomDnType(vec![1, 3, 9999, 1]), "unknown type");
    // Values that need escaping, in every string type a CA may use.
    let mut awkward = DistinguishedName::new();
    let utf8 = |v: &str| DnValue::Utf8String(v.to_owned());
    awkward.push(
        DnType::OrganizationName,
        utf8("Zoë \"Q\" Müller, Inc; <x>+y\\z"),
    );
    awkward.push(DnType::OrganizationalUnitName, utf8("#lead and trail "));
    awkward.push(DnType::OrganizationalUnitName, utf8("tab\there\u{7f}"));
    awkward.push(
        DnType::LocalityName,
        DnValue::BmpString("Łódź".try_into().unwrap()),
    );
    awkward.push(
        DnType::StateOrProvinceName,
        DnValue::UniversalString("日本".try_into().unwrap()),
    );
    awkward.push(
        DnType::CountryName,
        DnValue::PrintableString("DE".try_into().unwrap()),
    );
    awkward.push(DnType::CommonName, utf8("zoë"));

    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }
      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }"#;
    let mut p = Proxy::start(&config(&w, auth, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    // (name, parts it must hold, whether XFCC's headers can carry it: the
    // PEMs make XFCC about six times the size of the certificate, and the
    // backend takes 16 KiB of headers)
    for (name, must_hold, xfcc_fits) in [
        (
            every_type,
            &["jurisdictionC=v3", "SN=v4", "1.3.9999.1=#0C"][..],
            false,
        ),
        (
            awkward,
            &[r#"O=Zo\C3\AB \"Q\" M\C3\BCller\, Inc\; \<x\>\+y\\z"#][..],
            true,
        ),
    ] {
        let client = w.pki.client_named(name, &[]);
        let leaf_pem = client
            .pair
            .cert_pem
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap();
        let subject = openssl_rfc2253(&w.scene, leaf_pem, "-subject");
        let issuer = openssl_rfc2253(&w.scene, leaf_pem, "-issuer");
        // The check is only as good as the name is rich.
        for part in must_hold {
            assert!(subject.contains(part), "{part} not in {subject}");
        }
        let cfg = cfg_for(&w, Some(&client));
        let h = seen(addr, cfg.clone(), "/nginx", &[]).await;
        assert_eq!(h["ssl-client-subject-dn"], subject.as_str());
        assert_eq!(h["ssl-client-issuer-dn"], issuer.as_str());
        if !xfcc_fits {
            continue;
        }
        let h = seen(addr, cfg.clone(), "/xfcc", &[]).await;
        let xfcc = parse_xfcc(h["x-forwarded-client-cert"].as_str().unwrap());
        let got = xfcc
            .iter()
            .find(|(k, _)| k == "Subject")
            .map(|(_, v)| v.as_str());
        assert_eq!(got, Some(subject.as_str()));
        // hotproxy's own header: the certificate's order, every byte a
        // header cannot carry escaped the same way, never dropped.
        let h = seen(addr, cfg, "/api", &[]).await;
        let own = h["x-client-cert-subject"]
            .as_str()
            .expect("X-Client-Cert-Subject sent");
        assert!(own.ends_with(r"C=DE, CN=zo\C3\AB"), "{own}");
        assert!(own.contains(r"L=\C5\81\C3\B3d\C5\BA"), "{own}");
    }
    drop(p);
}

/// A certificate value cannot pose as another attribute upstream: a
/// common name of `evil, OU=ops` (a CA that signs what the requester asks
/// for) reaches the backend escaped as RFC 4514 says, in
/// `X-Client-Cert-Subject`, XFCC's `Subject` and the access log; the
/// route's `allow` on `ou` still sees the one real OU. A SAN holding a
/// comma stays one entry of the comma-separated SAN headers, and one
/// holding a `%` decodes to itself, not to another name.
#[tokio::test]
async fn subject_values_cannot_pose_as_other_attributes() {
    let w = world().await;
    let client = w.pki.client("evil, OU=ops", Some("payments"), &[]);
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /xfcc, upstream: app, forward_client_cert: xfcc }
      - { path_prefix: /ops, upstream: app, allow: [{ ou: ops }] }"#;
    let log = w.scene.path("access.log");
    let extra = format!("access_log: {{ path: {}, format: json }}", log.display());
    let mut p = Proxy::start(&config(&w, auth, "", routes, &extra));
    let addr = p.listener_addr("partners").await;
    let cfg = cfg_for(&w, Some(&client));
    let escaped = r"CN=evil\, OU=ops, OU=payments";
    let h = seen(addr, cfg.clone(), "/api", &[]).await;
    assert_eq!(h["x-client-cert-subject"], escaped, "{h}");
    // The same for SANs in the comma-separated headers: one entry each.
    let sans = w.pki.client(
        "sans",
        None,
        &[
            uri("spiffe://evil/x,spiffe://cluster.local/ns/prod/sa/admin"),
            uri("spiffe://cluster.local/ns/prod/sa/billing"),
            dns("a.example, b.example"),
        ],
    );
    let h = seen(addr, cfg_for(&w, Some(&sans)), "/api", &[]).await;
    assert_eq!(
        h["x-client-cert-uri-sans"],
        "spiffe://evil/x%2Cspiffe://cluster.local/ns/prod/sa/admin, spiffe://cluster.local/ns/prod/sa/billing",
        "{h}"
    );
    assert_eq!(
        h["x-client-cert-dns-sans"], "a.example%2C%20b.example",
        "{h}"
    );
    // So is a `%` (`%25`): a backend that decodes each entry gets the SAN
    // back, not `.../sa/admin` for `.../sa/%61dmin`, and a literal `%2C`
    // is not taken for a comma.
    let pct = w.pki.client(
        "pct",
        None,
        &[
            uri("spiffe://cluster.local/ns/prod/sa/%61dmin"),
            uri("spiffe://evil/x%2Cspiffe://cluster.local/ns/prod/sa/admin"),
            dns("a%2Cb.example"),
        ],
    );
    let h = seen(addr, cfg_for(&w, Some(&pct)), "/api", &[]).await;
    assert_eq!(
        h["x-client-cert-uri-sans"],
        "spiffe://cluster.local/ns/prod/sa/%2561dmin, spiffe://evil/x%252Cspiffe://cluster.local/ns/prod/sa/admin",
        "{h}"
    );
    assert_eq!(h["x-client-cert-dns-sans"], "a%252Cb.example", "{h}");
    let decoded: Vec<String> = h["x-client-cert-uri-sans"]
        .as_str()
        .unwrap()
        .split(", ")
        .map(|e| {
            percent_encoding::percent_decode_str(e)
                .decode_utf8()
                .unwrap()
                .into_owned()
        })
        .collect();
    assert_eq!(
        decoded,
        [
            "spiffe://cluster.local/ns/prod/sa/%61dmin",
            "spiffe://evil/x%2Cspiffe://cluster.local/ns/prod/sa/admin"
        ]
    );
    let h = seen(addr, cfg.clone(), "/xfcc", &[]).await;
    let xfcc = parse_xfcc(h["x-forwarded-client-cert"].as_str().unwrap());
    let subject = xfcc.iter().find(|(k, _)| k == "Subject").map(|(_, v)| v);
    assert_eq!(
        subject.map(String::as_str),
        Some(r"OU=payments,CN=evil\, OU=ops"),
        "{xfcc:?}"
    );
    assert_eq!(outcome(addr, cfg, "/ops").await, Outcome::Status(403));
    let line = &wait_access_log(&log, 1, Duration::from_secs(10)).await[0];
    assert_eq!(line["client_subject"], escaped, "{line}");
    drop(p);
}

/// `cn` and `ou` rules read a name's values as the subject header writes
/// them, in every string type a CA uses: AD CS writes BMPString, older
/// PKIs T61String or UniversalString. A BMPString `CN=ops` used to match
/// no `cn: ops` rule (x509-parser's `as_str` knows only four types) while
/// `X-Client-Cert-Subject` said `CN=ops`, so the rules refused a client
/// the header named.
#[tokio::test]
async fn cn_and_ou_rules_read_every_string_type() {
    let w = world().await;
    let auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }";
    let routes = r#"      - { path_prefix: /ops, upstream: app, allow: [{ cn: ops, ou: payments }] }
      - { path_prefix: /any, upstream: app }"#;
    let mut p = Proxy::start(&config(&w, auth, "", routes, ""));
    let addr = p.listener_addr("partners").await;
    let named = |cn: DnValue, ou: DnValue| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationalUnitName, ou);
        dn.push(DnType::CommonName, cn);
        w.pki.client_named(dn, &[])
    };
    for (cn, ou, want) in [
        (
            DnValue::BmpString("ops".try_into().unwrap()),
            DnValue::BmpString("payments".try_into().unwrap()),
            200,
        ),
        (
            DnValue::UniversalString("ops".try_into().unwrap()),
            DnValue::TeletexString("payments".try_into().unwrap()),
            200,
        ),
        (
            DnValue::BmpString("dev".try_into().unwrap()),
            DnValue::BmpString("payments".try_into().unwrap()),
            403,
        ),
    ] {
        let client = named(cn, ou);
        let cfg = cfg_for(&w, Some(&client));
        assert_eq!(
            outcome(addr, cfg.clone(), "/any").await,
            Outcome::Status(200)
        );
        let h = seen(addr, cfg.clone(), "/any", &[]).await;
        let subject = h["x-client-cert-subject"].as_str().unwrap_or_default();
        assert!(subject.contains("CN="), "{h}");
        assert_eq!(
            outcome(addr, cfg, "/ops").await,
            Outcome::Status(want),
            "{subject}"
        );
    }
}
