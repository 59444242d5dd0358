//! The admin API over real HTTP against the real proxy: roles, Host checks,
//! catalogue CRUD with the encrypted store, rotation, runtime client auth.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use support::writers::mv_over;
use support::*;

const EDITOR: &str = "editor-token-6a1f0c2d9e8b7a65";
const VIEWER: &str = "viewer-token-0b9c8d7e6f5a4b3c";

/// A scene with two tokens, a store, and a listener `public` serving
/// `edge`; nothing is watched (events off, an hourly poll), so only the
/// API can change what is served.
struct Admin {
    s: Scene,
    ca: TestCa,
    edge: TestPair,
    clients: TestCa,
    p: Proxy,
    addr: SocketAddr,
    api: SocketAddr,
    /// Every response body seen, for the key-material check.
    seen: Vec<String>,
}

impl Admin {
    async fn start(extra_certs: &str) -> Admin {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        let clients = TestCa::new("clients");
        let edge = ca.server_pair(&["localhost"]);
        s.pair("edge", &edge);
        write(&s.path("clients-ca.crt"), &clients.cert_pem);
        write(&s.path("editor.token"), &format!("{EDITOR}\n"));
        write(&s.path("viewer.token"), VIEWER);
        let cfg = s.config(&format!(
            r#"
watch: {{ events: false, poll_interval: 1h }}
admin:
  bind: 127.0.0.1:0
  tokens:
    - {{ role: editor, token_file: editor.token }}
    - {{ role: viewer, token_file: viewer.token }}
store: {{ path: data/store.json, key_file: data/store.key }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: clients, type: ca-bundle, ca_file: clients-ca.crt }}
{extra_certs}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
"#
        ));
        let mut p = Proxy::start(&cfg);
        let addr = p.listener_addr("public").await;
        let api = p.admin_addr().await;
        Admin {
            s,
            ca,
            edge,
            clients,
            p,
            addr,
            api,
            seen: Vec::new(),
        }
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> AdminReply {
        let r = admin(self.api, method, path, token, body, &[]).await;
        self.seen.push(r.body.clone());
        r
    }

    async fn editor(
        &mut self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> AdminReply {
        self.call(method, path, Some(EDITOR), body).await
    }

    /// No response and no log line carried a private key, a key PEM line or a token.
    fn assert_nothing_leaked(&self, keys: &[&str]) {
        let logs = self.p.logs();
        for text in self.seen.iter().chain(logs.iter()) {
            assert!(!text.contains("PRIVATE KEY"), "key marker in: {text}");
            assert!(
                !text.contains(EDITOR) && !text.contains(VIEWER),
                "token in: {text}"
            );
            for key in keys {
                for line in pem_body_lines(key) {
                    assert!(!text.contains(&line), "key material in: {text}");
                }
            }
        }
    }
}

/// 401 without or with a wrong token, 403 for a viewer's mutation, 200 for
/// the right role; a foreign Host or Origin is refused before anything else.
#[tokio::test]
async fn roles_and_host_checks() {
    let mut a = Admin::start("").await;
    let r = a.call("GET", "/api/v1/certs", None, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.headers.contains_key("www-authenticate"));
    assert_eq!(r.json()["error"], "Unauthorized");
    assert_eq!(
        a.call("GET", "/api/v1/certs", Some("nope"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        a.call("GET", "/api/v1/certs", Some(VIEWER), None)
            .await
            .status,
        200
    );
    assert_eq!(
        a.call("GET", "/api/v1/certs", Some(EDITOR), None)
            .await
            .status,
        200
    );
    for (method, path) in [
        ("POST", "/api/v1/rotate"),
        ("POST", "/api/v1/cacerts/reload"),
        ("POST", "/api/v1/listeners/public/rotate"),
        ("DELETE", "/api/v1/certs/clients"),
        ("PUT", "/api/v1/listeners/public/client-auth"),
    ] {
        let r = a.call(method, path, Some(VIEWER), Some(json!({}))).await;
        assert_eq!(r.status, 403, "viewer {method} {path}: {}", r.body);
    }
    assert_eq!(
        a.call("POST", "/api/v1/rotate", Some(EDITOR), None)
            .await
            .status,
        200
    );
    // DNS rebinding / browsers: another Host or Origin is refused, even with a token.
    let api = a.api;
    let r = admin(
        api,
        "GET",
        "/api/v1/certs",
        Some(EDITOR),
        None,
        &[("host", "evil.example:80")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = admin(
        api,
        "GET",
        "/api/v1/certs",
        Some(EDITOR),
        None,
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let localhost = format!("localhost:{}", api.port());
    let r = admin(
        api,
        "GET",
        "/api/v1/certs",
        Some(EDITOR),
        None,
        &[("host", &localhost)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The probes stay open (no token, any Host): orchestrators call them.
    let r = admin(
        api,
        "GET",
        "/healthz",
        None,
        None,
        &[("host", "10.0.0.7:9901")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        a.call("GET", "/api/v1/nothing", Some(EDITOR), None)
            .await
            .status,
        404
    );
    a.assert_nothing_leaked(&[]);
}

/// Create inline and file entries, read them with ETags, replace with
/// If-Match, delete; 400/404/409/412 where due; the store is encrypted
/// and brings inline entries back after a restart.
#[tokio::test]
async fn catalogue_crud_and_store() {
    let mut a = Admin::start("").await;
    // Loaded at startup: the entry says so, and the config reload counters
    // exist at zero before any reload (alerts on failure need the series).
    let r = a.editor("GET", "/api/v1/certs/edge", None).await;
    assert_eq!(r.json()["last_reload"]["result"], "success", "{}", r.body);
    assert_eq!(r.json()["live_source"], "file");
    let metrics = a.editor("GET", "/metrics", None).await.body;
    for result in ["success", "failure"] {
        let line = format!("hotproxy_config_reloads_total{{result=\"{result}\"}} 0");
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in:\n{metrics}"
        );
    }
    let backend_ca = TestCa::new("backend");
    let inline = backend_ca.client_pair("inline-client");
    let created = a
        .editor(
            "POST",
            "/api/v1/certs",
            Some(json!({
                "id": "backend-client", "type": "client-pair", "source": "inline",
                "cert_pem": inline.cert_pem, "key_pem": inline.key_pem,
            })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let v = created.json();
    assert_eq!(v["fingerprint_sha256"], inline.fingerprint.as_str());
    assert_eq!(v["source"], "inline");
    assert_eq!(v["subject"], "CN=inline-client");
    // The id is taken now (also by configuration entries).
    let again = json!({"id": "backend-client", "type": "client-pair", "source": "inline",
        "cert_pem": inline.cert_pem, "key_pem": inline.key_pem});
    assert_eq!(
        a.editor("POST", "/api/v1/certs", Some(again)).await.status,
        409
    );
    let edge_again =
        json!({"id": "edge", "type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem});
    assert_eq!(
        a.editor("POST", "/api/v1/certs", Some(edge_again))
            .await
            .status,
        409
    );
    // A mismatched key, garbage PEM, a bad id, an unknown field: 400, nothing stored.
    let other = backend_ca.client_pair("other");
    for (body, says) in [
        (
            json!({"id": "mismatch", "type": "client-pair", "source": "inline",
                   "cert_pem": inline.cert_pem, "key_pem": other.key_pem}),
            "does not match",
        ),
        (
            json!({"id": "garbage", "type": "ca-bundle", "source": "inline", "ca_pem": "not a pem"}),
            "no PEM certificate",
        ),
        (
            json!({"id": "Bad Id", "type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem}),
            "id",
        ),
        (
            json!({"id": "x", "type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem, "colour": 1}),
            "colour",
        ),
    ] {
        let r = a.editor("POST", "/api/v1/certs", Some(body)).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.json()["message"].as_str().unwrap().contains(says),
            "{}",
            r.body
        );
    }
    // validate: metadata back, nothing persisted; 400 on a mismatch.
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(json!({"type": "client-pair", "source": "inline",
                        "cert_pem": other.cert_pem, "key_pem": other.key_pem})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], other.fingerprint.as_str());
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(json!({"type": "client-pair", "source": "inline",
                        "cert_pem": other.cert_pem, "key_pem": inline.key_pem})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        a.editor("GET", "/api/v1/certs/validate", None).await.status,
        404
    );
    // A file-backed entry (absolute paths).
    let spare = a.ca.server_pair(&["spare.local"]);
    a.s.pair("spare", &spare);
    let file_entry = json!({"id": "spare", "type": "server-pair", "source": "file",
        "cert_file": a.s.path("spare.crt"), "key_file": a.s.path("spare.key")});
    assert_eq!(
        a.editor("POST", "/api/v1/certs", Some(file_entry))
            .await
            .status,
        201
    );

    // GET with ETag; PUT with a stale If-Match is 412, with the fresh one 200.
    let got = a.editor("GET", "/api/v1/certs/backend-client", None).await;
    assert_eq!(got.status, 200);
    let etag = got.headers["etag"].to_str().unwrap().to_owned();
    let rotated = backend_ca.client_pair("inline-client-2");
    let put = json!({"type": "client-pair", "source": "inline",
        "cert_pem": rotated.cert_pem, "key_pem": rotated.key_pem});
    let r = admin(
        a.api,
        "PUT",
        "/api/v1/certs/backend-client",
        Some(EDITOR),
        Some(put.clone()),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], rotated.fingerprint.as_str());
    let r = admin(
        a.api,
        "PUT",
        "/api/v1/certs/backend-client",
        Some(EDITOR),
        Some(put),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.body);
    let r = admin(
        a.api,
        "DELETE",
        "/api/v1/certs/backend-client",
        Some(EDITOR),
        None,
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.body);
    // An If-Match that is not text is a tag that matches nothing: 412, not
    // a delete without condition.
    let r = admin(
        a.api,
        "DELETE",
        "/api/v1/certs/backend-client",
        Some(EDITOR),
        None,
        &[("if-match", "\"\u{e9}\"")],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(
        a.editor(
            "PUT",
            "/api/v1/certs/nope",
            Some(json!({"type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem}))
        )
        .await
        .status,
        404
    );
    // Changing the type of an entry, or its id through the body: 400.
    let r = a
        .editor(
            "PUT",
            "/api/v1/certs/backend-client",
            Some(json!({"type": "ca-bundle", "source": "inline", "ca_pem": a.ca.cert_pem})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // An entry of the configuration file takes new material inline; the API
    // says the live material came from the API until the files are read again.
    let interim = a.ca.server_pair(&["localhost"]);
    let r = a
        .editor(
            "PUT",
            "/api/v1/certs/edge",
            Some(json!({"type": "server-pair", "source": "inline",
                "cert_pem": interim.cert_pem, "key_pem": interim.key_pem})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], interim.fingerprint.as_str());
    assert_eq!(
        (
            r.json()["source"].as_str(),
            r.json()["live_source"].as_str()
        ),
        (Some("file"), Some("api"))
    );
    let r = a.editor("POST", "/api/v1/certs/edge/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a.editor("GET", "/api/v1/certs/edge", None).await;
    assert_eq!(r.json()["fingerprint_sha256"], a.edge.fingerprint.as_str());
    assert_eq!(r.json()["live_source"], "file", "{}", r.body);

    // DELETE while referenced: 409 naming every reference; files untouched.
    let r = a.editor("DELETE", "/api/v1/certs/edge", None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.json()["references"],
        json!([{"listener": "public", "field": "tls.certs[0]"}])
    );
    assert_eq!(
        a.editor("DELETE", "/api/v1/certs/nope", None).await.status,
        404
    );
    let r = a.editor("DELETE", "/api/v1/certs/spare", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(a.s.path("spare.crt").exists() && a.s.path("spare.key").exists());
    assert_eq!(
        a.editor("GET", "/api/v1/certs/spare", None).await.status,
        404
    );

    // At rest: sealed, 0600, no PEM.
    let store = std::fs::read_to_string(a.s.path("data/store.json")).unwrap();
    assert!(!store.contains("BEGIN") && !store.contains("inline-client"));
    for line in pem_body_lines(&rotated.key_pem)
        .iter()
        .chain(pem_body_lines(&rotated.cert_pem).iter())
    {
        assert!(!store.contains(line.as_str()));
    }
    use std::os::unix::fs::PermissionsExt;
    for f in ["data/store.json", "data/store.key"] {
        let mode = std::fs::metadata(a.s.path(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    a.assert_nothing_leaked(&[
        &inline.key_pem,
        &other.key_pem,
        &rotated.key_pem,
        &spare.key_pem,
        &a.edge.key_pem,
    ]);

    // After a restart the inline entry is back, as last replaced.
    a.p.signal("TERM");
    a.p.wait_exit(Duration::from_secs(10)).await;
    let mut p = Proxy::start(&a.s.path("config.yaml"));
    let api = p.admin_addr().await;
    let r = admin(
        api,
        "GET",
        "/api/v1/certs/backend-client",
        Some(VIEWER),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], rotated.fingerprint.as_str());
    assert_eq!(r.json()["origin"], "store");
    assert_eq!(
        admin(api, "GET", "/api/v1/certs/spare", Some(VIEWER), None, &[])
            .await
            .status,
        404
    );
    // A store key readable by others is refused at startup, naming the file.
    drop(p);
    std::fs::set_permissions(
        a.s.path("data/store.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, _, err) = run_cli(&["run", "--config", a.s.path("config.yaml").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("store.key") && err.contains("0644"), "{err}");
}

/// A listener's rotation is all or nothing (SPEC §4): with one pair's new
/// files good and the other's key not matching, neither changes (the good
/// one used to go live while the answer said the previous material stays).
#[tokio::test]
async fn a_listener_rotation_with_one_bad_pair_changes_nothing() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (one, two) = (
        ca.server_pair(&["one.localhost"]),
        ca.server_pair(&["two.localhost"]),
    );
    s.pair("one", &one);
    s.pair("two", &two);
    write(&s.path("editor.token"), &format!("{EDITOR}\n"));
    let cfg = s.config(
        r#"
watch: { events: false, poll_interval: 1h }
admin:
  bind: 127.0.0.1:0
  tokens: [{ role: editor, token_file: editor.token }]
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ cert_file: one.crt, key_file: one.key }, { cert_file: two.crt, key_file: two.key }]
"#,
    );
    let mut p = Proxy::start(&cfg);
    let (addr, api) = (p.listener_addr("public").await, p.admin_addr().await);
    // The watcher's first report (files read at start, then watched) is
    // handled: the rotation alone may apply what is written next.
    for n in 0..2 {
        p.wait_log("the start-up re-read", move |v| {
            v["message"] == "certificate files re-read: unchanged"
                && v["entry"] == format!("listeners.public.tls.certs[{n}]")
        })
        .await;
    }
    // one: a good renewal; two: a key that is not its certificate's.
    let renewed = ca.server_pair(&["one.localhost"]);
    mv_over(&s.path("one.key"), &renewed.key_pem);
    mv_over(&s.path("one.crt"), &renewed.cert_pem);
    mv_over(
        &s.path("two.key"),
        &ca.server_pair(&["two.localhost"]).key_pem,
    );
    let r = admin(
        api,
        "POST",
        "/api/v1/listeners/public/rotate",
        Some(EDITOR),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    for (sni, pair) in [("one.localhost", &one), ("two.localhost", &two)] {
        assert_eq!(
            served_leaf(addr, sni, &ca.cert_pem).await.unwrap(),
            pair.fingerprint,
            "{sni} changed"
        );
    }
}

/// A rotation through the API is what the next TLS client sees; invalid
/// material is 422 and the old pair keeps serving.
#[tokio::test]
async fn rotation_through_the_api() {
    let mut a = Admin::start("").await;
    let (addr, ca_pem) = (a.addr, a.ca.cert_pem.clone());
    assert_eq!(
        served_leaf(addr, "localhost", &ca_pem).await.unwrap(),
        a.edge.fingerprint
    );
    // The watcher's first report (files read at start, then watched) is
    // handled: the rotation alone may apply what is written next.
    a.p.wait_log("the start-up re-read", |v| {
        v["message"] == "certificate files re-read: unchanged" && v["entry"] == "edge"
    })
    .await;
    // New files under the same names; nothing watches them.
    let next = a.ca.server_pair(&["localhost"]);
    mv_over(&a.s.path("edge.key"), &next.key_pem);
    mv_over(&a.s.path("edge.crt"), &next.cert_pem);
    let r = a
        .editor("POST", "/api/v1/listeners/public/rotate", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["entries"][0]["result"], "changed");
    assert_eq!(
        served_leaf(addr, "localhost", &ca_pem).await.unwrap(),
        next.fingerprint
    );
    let cert = a.editor("GET", "/api/v1/listeners/public/cert", None).await;
    assert_eq!(
        cert.json()["certs"][0]["fingerprint_sha256"],
        next.fingerprint.as_str()
    );
    // A key that does not match: 422, the old pair stays.
    let stray = a.ca.server_pair(&["localhost"]);
    mv_over(&a.s.path("edge.key"), &stray.key_pem);
    let r = a
        .editor("POST", "/api/v1/listeners/public/rotate", None)
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        served_leaf(addr, "localhost", &ca_pem).await.unwrap(),
        next.fingerprint
    );
    let r = a.editor("POST", "/api/v1/certs/edge/reload", None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{}",
        r.body
    );
    let entry = a.editor("GET", "/api/v1/certs/edge", None).await.json();
    assert_eq!(entry["fingerprint_sha256"], next.fingerprint.as_str());
    // Fixed on disk: the per-entry reload applies it.
    let last = a.ca.server_pair(&["localhost"]);
    mv_over(&a.s.path("edge.key"), &last.key_pem);
    mv_over(&a.s.path("edge.crt"), &last.cert_pem);
    let r = a.editor("POST", "/api/v1/certs/edge/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["changed"], true);
    assert_eq!(
        served_leaf(addr, "localhost", &ca_pem).await.unwrap(),
        last.fingerprint
    );
    // Everything at once, and every CA bundle.
    let r = a.editor("POST", "/api/v1/rotate", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["failed"], json!([]));
    let r = a.editor("POST", "/api/v1/cacerts/reload", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["entries"][0]["id"], "clients");
    // Unknown names.
    assert_eq!(
        a.editor("POST", "/api/v1/listeners/nope/rotate", None)
            .await
            .status,
        404
    );
    assert_eq!(
        a.editor("GET", "/api/v1/listeners/nope/cert", None)
            .await
            .status,
        404
    );
    assert_eq!(
        a.editor("POST", "/api/v1/certs/nope/reload", None)
            .await
            .status,
        404
    );
    let listeners = a.editor("GET", "/api/v1/listeners", None).await.json();
    assert_eq!(listeners[0]["name"], "public");
    assert_eq!(listeners[0]["bind"], addr.to_string());
    a.assert_nothing_leaked(&[
        &a.edge.key_pem,
        &next.key_pem,
        &stray.key_pem,
        &last.key_pem,
    ]);
}

/// Switching a listener to require_and_verify refuses a new connection
/// without a client certificate while a connection already open stays
/// usable; bad modes and CA refs are 400.
#[tokio::test]
async fn runtime_client_auth_switch() {
    let mut a = Admin::start("").await;
    let (addr, ca_pem) = (a.addr, a.ca.cert_pem.clone());
    let r = a
        .editor("GET", "/api/v1/listeners/public/client-auth", None)
        .await;
    assert_eq!(r.json()["mode"], "none");
    // Open a connection before the switch.
    let tls = connect(
        addr,
        "localhost",
        client_config(&ca_pem, None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (mut held, held_conn) = keep_open_h1(tls).await;
    assert_eq!(
        held.send_request(get_localhost()).await.unwrap().status(),
        404
    );

    for (body, status) in [
        (json!({"mode": "sometimes"}), 400),
        (json!({"mode": "require_and_verify", "ca": "edge"}), 400),
        (json!({"mode": "require_and_verify", "ca": "nope"}), 400),
        (json!({"mode": "require_and_verify"}), 400),
    ] {
        let r = a
            .editor("PUT", "/api/v1/listeners/public/client-auth", Some(body))
            .await;
        assert_eq!(r.status, status, "{}", r.body);
    }
    let r = a
        .editor(
            "PUT",
            "/api/v1/listeners/nope/client-auth",
            Some(json!({"mode": "none"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = a
        .editor(
            "PUT",
            "/api/v1/listeners/public/client-auth",
            Some(json!({"mode": "require_and_verify", "ca": {"ref": "clients"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["mode"], "require_and_verify");
    assert_eq!(r.json()["ca"], "clients");
    // A new connection without a certificate is refused...
    let refused = get(
        addr,
        "localhost",
        client_config(&ca_pem, None, &[b"http/1.1"]),
        false,
        "/",
        &[],
    )
    .await;
    assert!(
        refused.is_err(),
        "a client without a certificate got through"
    );
    // ... one with a certificate from the CA gets in ...
    let alice = a.clients.client_pair("alice");
    let ok = get(
        addr,
        "localhost",
        client_config(&ca_pem, Some(&alice), &[b"http/1.1"]),
        false,
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 404);
    // ... and the connection opened without a certificate before the
    // switch is closed (the refused PUTs above left it open): what it was
    // admitted under no longer holds (SPEC §2).
    tokio::time::timeout(CLIENT_DEADLINE, held_conn)
        .await
        .expect("the connection admitted under the old rules is closed")
        .unwrap()
        .expect("closed cleanly by the proxy");
    assert!(held.send_request(get_localhost()).await.is_err());
    let r = a
        .editor("GET", "/api/v1/listeners/public/client-auth", None)
        .await;
    assert_eq!(r.json()["mode"], "require_and_verify");
    // The CA set at runtime is in use: it cannot be deleted from under
    // the listener, and the entry says who uses it.
    let used_by = json!([{"listener": "public", "field": "tls.client_auth.ca (set at runtime)"}]);
    let r = a.editor("GET", "/api/v1/certs/clients", None).await;
    assert_eq!(r.json()["referenced_by"], used_by, "{}", r.body);
    let r = a.editor("DELETE", "/api/v1/certs/clients", None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["references"], used_by);
    a.assert_nothing_leaked(&[&a.edge.key_pem, &alice.key_pem]);
}

/// A route `allow` needs a verified client: the configuration file refuses
/// one on a listener that verifies none, but the client-auth PUT switched
/// such a listener to `none`, `request` or `require_any`, and every request
/// to the route then got 403. The PUT is refused (409, naming the route);
/// the listener keeps its mode and the route keeps serving.
#[tokio::test]
async fn client_auth_put_cannot_strand_a_route_allow() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let clients = TestCa::new("clients");
    let backend_ca = TestCa::new("backend");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("clients-ca.crt"), &clients.cert_pem);
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = Backend::start("app", &backend_ca.server_pair(&["backend.local"]), None).await;
    let cfg = s.config(&format!(
        r#"
watch: {{ events: false, poll_interval: 1h }}
admin: {{ bind: 127.0.0.1:0 }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: clients, type: ca-bundle, ca_file: clients-ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
      client_auth: {{ mode: require_and_verify, ca: {{ ref: clients }} }}
    routes:
      - {{ path_prefix: /ops, upstream: app, allow: [{{ cn: alice }}] }}
      - {{ upstream: app }}
upstreams:
  - name: app
    servers: [https://{}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
"#,
        backend.addr
    ));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let alice = clients.client_pair("alice");
    let ops = || async {
        get(
            addr,
            "localhost",
            client_config(&ca.cert_pem, Some(&alice), &[b"http/1.1"]),
            false,
            "/ops",
            &[],
        )
        .await
        .unwrap()
        .status
    };
    assert_eq!(ops().await, 200);
    let path = "/api/v1/listeners/public/client-auth";
    for mode in ["none", "request", "require_any"] {
        let r = admin(api, "PUT", path, None, Some(json!({ "mode": mode })), &[]).await;
        assert_eq!(r.status, 409, "mode {mode}: {}", r.body);
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            m.contains("routes[0].allow") && m.contains(&format!("mode {mode}")),
            "mode {mode}: {m}"
        );
        let r = admin(api, "GET", path, None, None, &[]).await;
        assert_eq!(r.json()["mode"], "require_and_verify", "{}", r.body);
        assert_eq!(ops().await, 200, "after the refused mode {mode}");
    }
    // A mode that still verifies is taken; the route's rule still holds.
    let r = admin(
        api,
        "PUT",
        path,
        None,
        Some(json!({ "mode": "verify_if_given" })),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ops().await, 200);
}

/// Without a store, creating an entry is refused (nothing lives only in memory).
#[tokio::test]
async fn no_store_no_create() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.config(
        "admin: { bind: 127.0.0.1:0 }\nlisteners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls: { certs: [{ cert_file: edge.crt, key_file: edge.key }] }\n",
    );
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    let r = admin(
        api,
        "POST",
        "/api/v1/certs",
        None,
        Some(json!({"id": "x", "type": "ca-bundle", "source": "inline", "ca_pem": ca.cert_pem})),
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("store"));
    // Open without tokens on loopback: reads work; the warning was logged.
    assert_eq!(
        admin(api, "GET", "/api/v1/certs", None, None, &[])
            .await
            .status,
        200
    );
    p.wait_log("no-token warning", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin API has no tokens"))
    })
    .await;
}

/// A `store.path` that is a symlink (to a file on a persistent volume)
/// stays one: saving writes the file it leads to, beside it, and the link
/// is left alone. The save used to rename the new store over the link
/// itself, so the volume's file went stale and a restart with the link
/// re-pointed (a new pod) lost every entry created since.
#[tokio::test]
async fn a_symlinked_store_path_is_written_through() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    std::fs::create_dir_all(s.path("volume")).unwrap();
    std::fs::create_dir_all(s.path("data")).unwrap();
    // Relative, as `ln -s ../volume/store.json data/store.json` makes it;
    // the volume is fresh: the file is not there yet.
    std::os::unix::fs::symlink("../volume/store.json", s.path("data/store.json")).unwrap();
    let yaml = |store: &str| {
        format!(
            "admin: {{ bind: 127.0.0.1:0 }}\nstore: {{ path: {store}, key_file: data/store.key }}\nlisteners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls: {{ certs: [{{ cert_file: edge.crt, key_file: edge.key }}] }}\n"
        )
    };
    let cfg = s.config(&yaml("data/store.json"));
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    for id in ["first", "second"] {
        let r = admin(
            api,
            "POST",
            "/api/v1/certs",
            None,
            Some(json!({"id": id, "type": "ca-bundle", "source": "inline", "ca_pem": ca.cert_pem})),
            &[],
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let link = std::fs::symlink_metadata(s.path("data/store.json")).unwrap();
        assert!(
            link.file_type().is_symlink(),
            "store.path is no longer a symlink after creating {id}"
        );
        assert!(
            s.path("volume/store.json").is_file(),
            "nothing on the volume"
        );
    }
    // The volume's file holds both: a proxy reading it directly has them.
    p.signal("TERM");
    p.wait_exit(Duration::from_secs(10)).await;
    write(&cfg, &yaml("volume/store.json"));
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    for id in ["first", "second"] {
        let r = admin(api, "GET", &format!("/api/v1/certs/{id}"), None, None, &[]).await;
        assert_eq!(r.status, 200, "{id}: {}", r.body);
        assert_eq!(r.json()["origin"], "store");
    }
}

/// Material the API put over a configuration entry stays while its files
/// hold what they held then: a re-read the watcher makes for the same
/// bytes (a chmod, a kubelet swap for another key, a rewrite) must not
/// bring the files back; only files that changed, or a rotation, do.
#[tokio::test]
async fn api_material_survives_a_reread_of_unchanged_files() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let edge = ca.server_pair(&["localhost"]);
    s.pair("edge", &edge);
    let cfg = s.config(
        r#"
watch: { events: true, debounce: 20ms, poll_interval: 1h }
admin: { bind: 127.0.0.1:0 }
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: edge }]
"#,
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    p.wait_log("the start-up re-read", |v| {
        v["message"] == "certificate files re-read: unchanged" && v["entry"] == "edge"
    })
    .await;
    let interim = ca.server_pair(&["localhost"]);
    let r = admin(
        api,
        "PUT",
        "/api/v1/certs/edge",
        None,
        Some(json!({"type": "server-pair", "source": "inline",
            "cert_pem": interim.cert_pem, "key_pem": interim.key_pem})),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The same bytes again, through a new inode: the watcher re-reads.
    mv_over(&s.path("edge.crt"), &edge.cert_pem);
    p.wait_log("the re-read that keeps the API's material", |v| {
        v["message"]
            == "certificate files re-read: unchanged since the API replaced their material; it stays"
            && v["entry"] == "edge"
    })
    .await;
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        interim.fingerprint
    );
    let r = admin(api, "GET", "/api/v1/certs/edge", None, None, &[]).await;
    assert_eq!(r.json()["live_source"], "api", "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], interim.fingerprint.as_str());

    // Files that change take over again.
    let next = ca.server_pair(&["localhost"]);
    mv_over(&s.path("edge.key"), &next.key_pem);
    mv_over(&s.path("edge.crt"), &next.cert_pem);
    let (ca_pem, want) = (&ca.cert_pem, &next.fingerprint);
    wait_until(
        Duration::from_secs(10),
        "the new files served",
        || async move { served_leaf(addr, "localhost", ca_pem).await.ok().as_ref() == Some(want) },
    )
    .await;
    let r = admin(api, "GET", "/api/v1/certs/edge", None, None, &[]).await;
    assert_eq!(r.json()["live_source"], "file", "{}", r.body);
}
