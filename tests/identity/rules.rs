//! Allow rules: every field and glob, and rules changed through the API, the file, SIGHUP; `check`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::support::*;

async fn metric(api: SocketAddr, needle: &str) -> f64 {
    let body = admin(api, "GET", "/metrics", None, None, &[]).await.body;
    body.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `PUT /api/v1/listeners/partners/client-auth` with `body`, as the editor.
async fn put_client_auth(api: SocketAddr, body: serde_json::Value) -> AdminReply {
    admin(
        api,
        "PUT",
        "/api/v1/listeners/partners/client-auth",
        Some(EDITOR),
        Some(body),
        &[],
    )
    .await
}

/// `partners`' client auth as the API shows it.
async fn client_auth(api: SocketAddr) -> AdminReply {
    admin(
        api,
        "GET",
        "/api/v1/listeners/partners/client-auth",
        Some(EDITOR),
        None,
        &[],
    )
    .await
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
    // Nor one with a tab or line break in a segment: WHATWG URL parsers
    // (Node's `new URL`, Python's `urlsplit`, Rust's `url`) remove them,
    // then read `.\t.` as `..`: spiffe://cluster.local/ns/admin.
    let tabbed = pki.client(
        "tabbed",
        None,
        &[uri("spiffe://cluster.local/ns/ops/.\t./admin")],
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

    let cases: [(&str, Option<&Client>, &str, Outcome); 14] = [
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
        (
            "a tab in a dot segment matches no uri_san",
            Some(&tabbed),
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
        8.0
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

/// The proxy on `partners` letting in the common name `cn` only, and the
/// client configs of alice and bob. One client config per identity, kept
/// across connections: its session cache is what a resuming client would
/// use.
struct AliceAndBob {
    w: World,
    p: Proxy,
    addr: SocketAddr,
    api: SocketAddr,
    alice_cfg: Arc<rustls::ClientConfig>,
    bob_cfg: Arc<rustls::ClientConfig>,
}

async fn alice_and_bob(cn: &str) -> AliceAndBob {
    let w = world().await;
    let alice = w.pki.client("alice", None, &[]);
    let bob = w.pki.client("bob", None, &[]);
    let mut p = Proxy::start(&config(&w, &allow_cn(cn), "", "", ""));
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;
    AliceAndBob {
        alice_cfg: cfg_for(&w, Some(&alice)),
        bob_cfg: cfg_for(&w, Some(&bob)),
        w,
        p,
        addr,
        api,
    }
}

/// Rules set through `PUT /api/v1/listeners/{name}/client-auth` and by a
/// config reload apply from the next handshake; a client that holds a
/// session from before never resumes past them (listeners with client auth
/// issue no tickets, so every connection is a full, re-checked handshake).
#[tokio::test]
async fn rule_changes_apply_to_the_next_handshake_and_resumption() {
    let AliceAndBob {
        w: _w,
        p: _p,
        addr,
        api,
        alice_cfg,
        bob_cfg,
    } = alice_and_bob("alice").await;
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

    let put = |body| put_client_auth(api, body);
    let r = put(json!({"mode": "require_and_verify", "allow": [{"cn": "bob"}]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["allow"], json!([{"cn": "bob"}]));
    let r = client_auth(api).await;
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
    let AliceAndBob {
        w,
        p: _p,
        addr,
        api,
        alice_cfg,
        bob_cfg,
    } = alice_and_bob("bob").await;
    assert_eq!(outcome(addr, alice_cfg.clone(), "/").await, DENIED);
    let put = |body| put_client_auth(api, body);
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
    let AliceAndBob {
        w,
        mut p,
        addr,
        api,
        alice_cfg,
        bob_cfg,
    } = alice_and_bob("alice").await;
    let r = put_client_auth(
        api,
        json!({"mode": "require_and_verify", "allow": [{"cn": "bob"}]}),
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
        &allow_cn("alice"),
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
        &allow_cn("carol"),
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
    let r = client_auth(api).await;
    assert_eq!(r.json()["allow"], json!([{"cn": "carol"}]));
}

/// `partners` (bound at 127.0.0.1:0) with rules set through the API,
/// then the configuration file's `partners` entry replaced by a listener
/// `to` bound at `bind`, applied: the proxy, the new listener's address,
/// alice's client config, and the line that told of dropped API rules.
async fn replace_partners(
    to: &str,
    bind: impl FnOnce(SocketAddr) -> String,
) -> (
    Proxy,
    SocketAddr,
    Arc<rustls::ClientConfig>,
    Option<serde_json::Value>,
) {
    let AliceAndBob {
        w,
        mut p,
        addr,
        api,
        alice_cfg,
        ..
    } = alice_and_bob("alice").await;
    let r = put_client_auth(
        api,
        json!({"mode": "require_and_verify", "allow": [{"cn": "bob"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let path = w.scene.path("config.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let entry = "name: partners\n    bind: 127.0.0.1:0\n";
    assert!(text.contains(entry), "{text}");
    let replaced = format!("name: {to}\n    bind: {}\n", bind(addr));
    write(&path, &text.replace(entry, &replaced));
    p.signal("HUP");
    let addr = p.listener_addr(to).await;
    p.wait_log("the change applied", |v| {
        v["message"] == "configuration reloaded"
    })
    .await;
    // Logged as the reload commits, before its "configuration reloaded".
    let told = p
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["message"]
                == "the configuration file's client_auth replaces the one set through the API"
        });
    (p, addr, alice_cfg, told)
}

/// A listener renamed in the file (a new name on the address the old one
/// listens on) loses the rules set through the API for it, and says so:
/// the operator's tightened rules used to vanish without a line, the
/// renamed listener admitting whom the file's rules admit.
#[tokio::test]
async fn a_rename_that_drops_rules_set_through_the_api_says_so() {
    let (_p, addr, alice_cfg, told) = replace_partners("renamed", |a| a.to_string()).await;
    let told = told.expect("the dropped API rules are told");
    assert_eq!(told["level"], "WARN", "{told}");
    assert_eq!(told["listener"], "renamed", "{told}");
    assert_eq!(told["renamed_from"], "partners", "{told}");
    assert_eq!(outcome(addr, alice_cfg, "/").await, Outcome::Status(200));
}

/// A listener removed and another added on a port-0 bind like its own is
/// no rename (the new one gets a port of its own): no warning names it
/// `renamed_from` the removed one. Both binds read `127.0.0.1:0`, which
/// was taken for one address.
#[tokio::test]
async fn a_listener_added_on_port_0_renames_none() {
    let (_p, addr, alice_cfg, told) = replace_partners("other", |_| "127.0.0.1:0".into()).await;
    assert!(told.is_none(), "{told:?}");
    assert_eq!(outcome(addr, alice_cfg, "/").await, Outcome::Status(200));
}

/// Rules hot-reload with the config file (SIGHUP), for the next handshake.
#[tokio::test]
async fn rules_reload_with_the_config() {
    let AliceAndBob {
        w,
        p,
        addr,
        alice_cfg,
        ..
    } = alice_and_bob("alice").await;
    assert_eq!(
        outcome(addr, alice_cfg.clone(), "/").await,
        Outcome::Status(200)
    );
    config(&w, &allow_cn("bob"), "", "", "");
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

/// A client the rules refuse, which (as curl over HTTP/2) goes on sending
/// after its side of the TLS 1.3 handshake ended, reads the `access_denied`
/// alert and then the end of the connection, never a reset: hotproxy reads
/// and discards what it still sends, as after an error response. A reset
/// behind the alert made curl say `(55) getpeername() failed` instead.
#[tokio::test]
async fn refused_client_still_sending_reads_the_alert_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world().await;
    let stranger = w.pki.client("nobody", None, &[]);
    let mut p = Proxy::start(&config(&w, &allow_cn("billing"), "", "", ""));
    let addr = p.listener_addr("partners").await;
    let mut tls = connect(addr, "localhost", cfg_for(&w, Some(&stranger)))
        .await
        .expect("the client's side of the handshake ends before the refusal");
    // What curl sends at once over HTTP/2: the preface, SETTINGS, a request.
    tls.write_all(&[b'P'; 120]).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0u8; 256];
    let refused = tls.read(&mut buf).await.expect_err("refused");
    assert_eq!(
        tls_error(&refused),
        rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied)
    );
    // The client keeps writing, then reads the end of the connection.
    let (mut tcp, _) = tls.into_inner();
    for i in 0..5 {
        if let Err(e) = tcp.write_all(&[b'P'; 1024]).await {
            panic!("write {i} after the alert: {e} (the connection was reset)");
        }
    }
    match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
        Ok(Ok(0)) => {}
        other => panic!("not the end of the connection after the alert: {other:?}"),
    }
}

const DATA: u8 = 0;
const GOAWAY: u8 = 7;

/// alice over HTTP/2 (ALPN `h2`) on `addr`: a first request answered
/// (stream 1), then a call to `/echo` (stream 3) left open, its first
/// byte echoed back.
async fn h2_alice_with_a_call_open(w: &World, addr: SocketAddr) -> Tls {
    use crate::support::h2raw::{frame, post_block, preface, refused, until_on};
    use tokio::io::AsyncWriteExt;
    let alice = w.pki.client("alice", None, &[]);
    let h2_cfg = client_config(&w.edge_ca.cert_pem, Some(&alice.pair), &[b"h2"]);
    let mut c = connect(addr, "localhost", h2_cfg).await.unwrap();
    assert_eq!(c.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    c.write_all(&preface()).await.unwrap();
    assert!(!refused(&mut c, 1, &post_block("/first")).await);
    let mut call = frame(1, 0x4, 3, &post_block("/echo"));
    call.extend(frame(DATA, 0, 3, b"x"));
    c.write_all(&call).await.unwrap();
    until_on(&mut c, 3, |kind, _, payload| {
        kind == DATA && payload == b"x"
    })
    .await;
    c
}

/// `client_auth` put as `partners`' client auth, then `c` read up to the
/// `GOAWAY` it is sent (its PING left unanswered).
async fn put_then_goaway(api: SocketAddr, c: &mut Tls, client_auth: serde_json::Value) {
    use crate::support::h2raw::next_frame;
    let r = put_client_auth(api, client_auth).await;
    assert_eq!(r.status, 200, "{}", r.body);
    while next_frame(c).await.0 != GOAWAY {}
}

/// Ends the open call's request (stream 3) and waits for the end of its
/// answer.
async fn end_the_call(c: &mut Tls) {
    use crate::support::h2raw::{frame, until_on};
    use tokio::io::AsyncWriteExt;
    c.write_all(&frame(DATA, 1, 3, b"")).await.unwrap();
    until_on(c, 3, |_, flags, _| flags & 1 != 0).await;
}

/// An HTTP/2 client taken out of `allow` (the client-auth PUT) on a
/// connection that has had a request and has a call in flight is revoked
/// at once (SPEC §2): the call is served to its end, and a stream it opens
/// after the change is refused (`REFUSED_STREAM`), never forwarded, though
/// it never answers the `GOAWAY`'s PING. Such streams used to be served
/// until the PING had gone unanswered for `header_read_timeout` (10 s).
#[tokio::test]
async fn a_revoked_h2_client_has_new_streams_refused_at_once() {
    use crate::support::h2raw::{post_block, refused};
    let AliceAndBob {
        w,
        p: _p,
        addr,
        api,
        ..
    } = alice_and_bob("alice").await;
    let mut c = h2_alice_with_a_call_open(&w, addr).await;

    // The GOAWAY (and its PING, never answered).
    let bob_only = json!({"mode": "require_and_verify", "allow": [{"cn": "bob"}]});
    put_then_goaway(api, &mut c, bob_only).await;
    assert!(
        refused(&mut c, 5, &post_block("/after")).await,
        "a stream opened after the revocation was served"
    );
    assert_eq!(w.backend.requests_for("/after"), 0, "forwarded");
    // The call in flight is served to its end.
    end_the_call(&mut c).await;
}

/// A change that closes every connection of the listener (here its
/// client-auth mode, which open connections cannot be checked against
/// again) ends an HTTP/2 client it still admits as a removal does (SPEC
/// §2, §1): `GOAWAY` and its PING, the streams it opens until it answers
/// the PING served. Only a client the new rules no longer admit has them
/// refused at once; every client on the listener used to be.
#[tokio::test]
async fn a_close_everything_change_serves_a_still_admitted_h2_clients_new_streams() {
    use crate::support::h2raw::{post_block, refused};
    let AliceAndBob {
        w,
        p: _p,
        addr,
        api,
        ..
    } = alice_and_bob("alice").await;
    let mut c = h2_alice_with_a_call_open(&w, addr).await;

    // Another mode, alice still let in. The GOAWAY (and its PING, not
    // answered yet).
    let other_mode = json!({"mode": "verify_if_given", "allow": [{"cn": "alice"}]});
    put_then_goaway(api, &mut c, other_mode).await;
    assert!(
        !refused(&mut c, 5, &post_block("/after")).await,
        "a still admitted client's stream was refused"
    );
    assert_eq!(w.backend.requests_for("/after"), 1);
    end_the_call(&mut c).await;
}

/// An HTTP/2 connection already closing for `max_connection_lifetime`
/// (made with rotated-out material), waiting for its client to answer the
/// `GOAWAY`'s PING, whose client is then revoked, has the streams it opens
/// after the revocation refused at once (SPEC §2), as one not closing
/// would. The close for the lifetime used to drop the wait for the rules:
/// a client never answering the PING had its new streams forwarded until
/// `header_read_timeout`, revoked or not.
#[tokio::test]
async fn a_client_revoked_while_its_lifetime_close_waits_has_new_streams_refused() {
    use crate::support::h2raw::{next_frame, post_block, refused};
    let w = world().await;
    let limit = "    limits: { max_connection_lifetime: 1ms }";
    let mut p = Proxy::start(&config(&w, &allow_cn("alice"), limit, "", ""));
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;
    let mut c = h2_alice_with_a_call_open(&w, addr).await;
    let peer = c.get_ref().0.local_addr().unwrap().to_string();

    // The rotation: the connection, older than 1 ms, closes gracefully.
    let names = ["localhost", "public.example", "admin.example"];
    w.scene.pair("edge", &w.edge_ca.server_pair(&names));
    while next_frame(&mut c).await.0 != GOAWAY {}
    // Still admitted meanwhile: a new stream is served (the PING wait).
    assert!(!refused(&mut c, 5, &post_block("/before")).await);

    let r = put_client_auth(
        api,
        json!({"mode": "require_and_verify", "allow": [{"cn": "bob"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    p.wait_log("alice's new streams refused", |v| {
        v["message"] == "no longer admitted; refusing new streams" && v["peer"] == peer.as_str()
    })
    .await;
    assert!(
        refused(&mut c, 7, &post_block("/after")).await,
        "a stream opened after the revocation was served"
    );
    assert_eq!(w.backend.requests_for("/after"), 0, "forwarded");
    end_the_call(&mut c).await;
}
