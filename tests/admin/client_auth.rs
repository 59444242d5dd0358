//! Client auth switched at runtime through the API, and routes' allow rules it cannot strand.

use serde_json::json;

use crate::common::*;
use crate::support::*;

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

/// The 409 of a client-auth PUT that would strand a route `allow` named
/// the route by its host and path_prefix, as resolved: a value the file
/// set from `${NAME}` (it may be a secret the file only names) was
/// repeated to the admin client. The route is named by place alone
/// (`listeners[N].routes[M].allow`), with none of its values, its rules'
/// included.
#[tokio::test]
async fn a_stranded_route_allow_is_named_by_place_without_its_values() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let clients = TestCa::new("clients");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("clients-ca.crt"), &clients.cert_pem);
    let cfg = s.config(
        r#"
watch: { events: false, poll_interval: 1h }
admin: { bind: 127.0.0.1:0 }
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: clients, type: ca-bundle, ca_file: clients-ca.crt }
listeners:
  - name: other
    bind: 127.0.0.1:0
    tls: { certs: [{ ref: edge }] }
    routes: [{ upstream: app }]
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: edge }]
      client_auth: { mode: require_and_verify, ca: { ref: clients } }
    routes:
      - { path_prefix: /open, upstream: app }
      - { host: "${HOTPROXY_T_HOST}", path_prefix: "${HOTPROXY_T_PREFIX}", upstream: app, allow: [{ cn: "${HOTPROXY_T_ID}" }] }
upstreams:
  - { name: app, servers: ["http://127.0.0.1:9"] }
"#,
    );
    let secrets = [
        ("HOTPROXY_T_HOST", "hidden-4f1c.example"),
        ("HOTPROXY_T_PREFIX", "/ops-7d2e9a"),
        ("HOTPROXY_T_ID", "billing-5b8c31"),
    ];
    let mut p = Proxy::start_logging(&cfg, "info", &secrets);
    let api = p.admin_addr().await;
    let path = "/api/v1/listeners/public/client-auth";
    let r = admin(api, "PUT", path, None, Some(json!({ "mode": "none" })), &[]).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        m.starts_with("listener public: listeners[1].routes[1].allow needs a verified identity"),
        "{m}"
    );
    for (_, secret) in secrets {
        assert!(!r.body.contains(secret), "{secret}: {}", r.body);
        assert!(!p.logs().iter().any(|l| l.contains(secret)), "{secret}");
    }
    let r = admin(api, "GET", path, None, None, &[]).await;
    assert_eq!(r.json()["mode"], "require_and_verify", "{}", r.body);
}

/// A reload that removes the CA entry the client auth set through the API
/// names is rejected saying where the reference comes from: the file no
/// longer names the entry anywhere, and `entry "clients" does not exist`
/// alone sent the operator looking for it in the file.
#[tokio::test]
async fn a_reload_that_removes_the_api_client_ca_names_the_api() {
    let mut a = Admin::start("").await;
    let r = a
        .editor(
            "PUT",
            "/api/v1/listeners/public/client-auth",
            Some(json!({"mode": "require_and_verify", "ca": "clients"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cfg = a.s.path("config.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let entry = "  - { id: clients, type: ca-bundle, ca_file: clients-ca.crt }\n";
    assert!(text.contains(entry), "{text}");
    write(&cfg, &text.replace(entry, ""));
    a.p.signal("HUP");
    let rejected =
        a.p.wait_log("the reload rejected", |v| {
            v["message"] == "configuration rejected; the running configuration stays"
        })
        .await;
    let error = rejected["error"].as_str().unwrap();
    assert!(
        error.contains(
            r#"listener public: tls.client_auth.ca (set at runtime through the admin API): entry "clients" does not exist"#
        ),
        "{error}"
    );
}

/// A rule refused for its shape says why in its own words, with the field
/// and not the value given: `**` anywhere but at the end of a `uri_san`.
/// The redaction of values used to blank the wording's own `**` and `/**`
/// too (`` `…` is only allowed as a final `…` of a uri_san ``). Nothing
/// changes: the listener keeps its mode.
#[tokio::test]
async fn a_malformed_rule_is_explained_without_its_value() {
    let mut a = Admin::start("").await;
    let path = "/api/v1/listeners/public/client-auth";
    let value = "spiffe://secret-trust-domain/**/y";
    let body =
        json!({"mode": "require_and_verify", "ca": "clients", "allow": [{"uri_san": value}]});
    let r = a.editor("PUT", path, Some(body)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        m.contains("allow[0]")
            && m.contains("uri_san")
            && m.contains("`**` is only allowed as a final `/**` of a uri_san"),
        "{m}"
    );
    assert!(
        !m.contains("secret-trust-domain"),
        "the value repeated: {m}"
    );
    let r = a.editor("GET", path, None).await;
    assert_eq!(r.json()["mode"], "none", "{}", r.body);
}

/// With `max_connection_lifetime`, a client-auth PUT that changes no
/// client CA certificate is no rotation: the same rules again, then an
/// `allow` that still admits alice, keep her open connection, older than
/// the limit, served (awaited: its re-check under the second). It used to
/// be closed at the first PUT, identical as it was.
#[tokio::test]
async fn a_client_auth_put_keeping_the_ca_is_no_rotation() {
    // 1ms: the connection is older than that before the PUTs come.
    let mut a = Admin::start_edited("", |config| {
        let edited = config.replace(
            "    tls:\n      certs: [{ ref: edge }]",
            "    limits: { max_connection_lifetime: 1ms }\n    tls:\n      certs: [{ ref: edge }]",
        );
        // Without the limit nothing would close the connection, and the
        // test would pass whatever the PUTs did.
        assert_ne!(edited, config, "the limit was not put in the template");
        edited
    })
    .await;
    let path = "/api/v1/listeners/public/client-auth";
    let rules = json!({"mode": "require_and_verify", "ca": {"ref": "clients"}});
    let r = a.editor("PUT", path, Some(rules.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let alice = a.clients.client_pair("alice");
    let config = client_config(&a.ca.cert_pem, Some(&alice), &[b"http/1.1"]);
    let tls = connect(a.addr, "localhost", config).await.unwrap();
    let peer = tls.get_ref().0.local_addr().unwrap().to_string();
    let (mut held, held_conn) = keep_open_h1(tls).await;
    let r = held.send_request(get_localhost()).await.unwrap();
    assert_eq!(r.status(), 404);

    let r = a.editor("PUT", path, Some(rules)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let only_alice =
        json!({"mode": "require_and_verify", "ca": {"ref": "clients"}, "allow": [{"cn": "alice"}]});
    let r = a.editor("PUT", path, Some(only_alice)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until(
        CLIENT_DEADLINE,
        "alice's connection re-checked and kept",
        || {
            let kept = a.p.logs().iter().any(|l| {
                l.contains("\"connection still admitted under the changed rules; kept\"")
                    && l.contains(&format!("\"peer\":\"{peer}\""))
            });
            async move { kept }
        },
    )
    .await;
    let r = held
        .send_request(get_localhost())
        .await
        .expect("alice's connection served on");
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("connection").is_none(), "{r:?}");
    assert!(!held_conn.is_finished(), "alice's connection closed");
}

/// A `redirect_https` listener is plain HTTP: no client certificate ever
/// reaches it, and the configuration file refuses `tls` there. The PUT
/// answered 200, the view showed a verifying mode nothing enforced (it
/// went on answering 308 to anyone) and the CA it named became
/// referenced (its DELETE 409). It is refused now with 409, nothing
/// changes: the view stays `none`, the CA entry can go.
#[tokio::test]
async fn client_auth_on_a_redirect_https_listener_is_refused() {
    let mut a = Admin::start_edited("", |config| {
        format!("{config}  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: {{}}\n")
    })
    .await;
    let http = a.p.listener_addr("http").await;
    let path = "/api/v1/listeners/http/client-auth";
    let body = inline_ca("runtime-ca", &a.clients);
    let r = a.editor("POST", "/api/v1/certs", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    for body in [
        json!({"mode": "require_and_verify", "ca": "runtime-ca"}),
        json!({"mode": "request"}),
    ] {
        let r = a.editor("PUT", path, Some(body)).await;
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(
            r.json()["message"],
            "listener http is a redirect_https listener: plain HTTP, no client certificates",
            "{}",
            r.body
        );
    }
    let r = a.editor("GET", path, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["mode"], "none", "{}", r.body);
    assert_eq!(r.json()["ca"], json!(null), "{}", r.body);
    // Still a redirect to anyone.
    let mut conn = tokio::net::TcpStream::connect(http).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let r = a.editor("DELETE", "/api/v1/certs/runtime-ca", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `GET /api/v1/listeners` lists every entry the listener uses (SPEC §4),
/// a certificate entry's own client-auth CA too, as `referenced_by` and
/// DELETE's 409 count it: it showed `["edge"]` while `clients` could not
/// be deleted for that listener's use. A CA named twice (the entry's and,
/// set at runtime, the listener's) is listed once.
#[tokio::test]
async fn the_listener_view_lists_an_entry_s_own_client_auth_ca() {
    let mut a = Admin::start_edited("", |config| {
        let per_entry = "certs: [{ ref: edge, client_auth: { mode: require_and_verify, ca: { ref: clients } } }]";
        assert!(config.contains("certs: [{ ref: edge }]"), "{config}");
        config.replace("certs: [{ ref: edge }]", per_entry)
    })
    .await;
    let r = a.editor("GET", "/api/v1/certs/clients", None).await;
    assert_eq!(
        r.json()["referenced_by"],
        json!([{"listener": "public", "field": "tls.certs[0].client_auth.ca"}]),
        "{}",
        r.body
    );
    let r = a.editor("GET", "/api/v1/listeners", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()[0]["entries"],
        json!(["edge", "clients"]),
        "{}",
        r.body
    );
    let r = a
        .editor(
            "PUT",
            "/api/v1/listeners/public/client-auth",
            Some(json!({"mode": "verify_if_given", "ca": "clients"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = a.editor("GET", "/api/v1/listeners", None).await;
    assert_eq!(
        r.json()[0]["entries"],
        json!(["edge", "clients"]),
        "{}",
        r.body
    );
}
