//! Rotation through the API, and a listener rotation with one bad pair that changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::common::*;
use crate::support::writers::mv_over;
use crate::support::*;

/// Listener `public` serving pairs `one` (one.localhost) and `two`
/// (two.localhost), an editor token, nothing watched: only the API
/// rotates.
struct OneAndTwo {
    s: Scene,
    ca: TestCa,
    one: TestPair,
    two: TestPair,
    _proxy: Proxy,
    addr: std::net::SocketAddr,
    api: std::net::SocketAddr,
}

/// [`OneAndTwo`] started, the watcher's first report (files read at
/// start, then watched) handled: the rotation alone may apply what is
/// written next.
async fn one_and_two() -> OneAndTwo {
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
    for n in 0..2 {
        p.wait_log("the start-up re-read", move |v| {
            v["message"] == "certificate files re-read: unchanged"
                && v["entry"] == format!("listeners.public.tls.certs[{n}]")
        })
        .await;
    }
    OneAndTwo {
        s,
        ca,
        one,
        two,
        _proxy: p,
        addr,
        api,
    }
}

/// `POST /api/v1/listeners/public/rotate` as the editor.
async fn rotate_public(api: std::net::SocketAddr) -> AdminReply {
    admin(
        api,
        "POST",
        "/api/v1/listeners/public/rotate",
        Some(EDITOR),
        None,
        &[],
    )
    .await
}

/// A listener's rotation is all or nothing (SPEC §4): with one pair's new
/// files good and the other's key not matching, neither changes (the good
/// one used to go live while the answer said the previous material stays).
#[tokio::test]
async fn a_listener_rotation_with_one_bad_pair_changes_nothing() {
    let w = one_and_two().await;
    let (s, ca, one, two) = (&w.s, &w.ca, &w.one, &w.two);
    let (addr, api) = (w.addr, w.api);
    // one: a good renewal; two: a key that is not its certificate's.
    let renewed = ca.server_pair(&["one.localhost"]);
    renew(s, "one", &renewed);
    mv_over(
        &s.path("two.key"),
        &ca.server_pair(&["two.localhost"]).key_pem,
    );
    let r = rotate_public(api).await;
    assert_eq!(r.status, 422, "{}", r.body);
    for (sni, pair) in [("one.localhost", one), ("two.localhost", two)] {
        assert_eq!(
            served_leaf(addr, sni, &ca.cert_pem).await.unwrap(),
            pair.fingerprint,
            "{sni} changed"
        );
    }
}

/// A listener's rotation applies the very files it checked, read once
/// (SPEC §4). While `two`'s certificate is swapped over and over between
/// its own and one its key does not match, `one` gets a new pair before
/// each rotation: a rotation either applies it (200) or leaves `one` as
/// it was (422), as a real TLS handshake sees. The files used to be
/// checked, then read again to be applied: `two` checked good and read
/// bad the second time left `one`'s new pair served under a 422 that said
/// the previous material stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_rotation_applies_the_files_it_checked() {
    let w = one_and_two().await;
    let (s, ca, one, two) = (&w.s, &w.ca, &w.one, &w.two);
    let (addr, api) = (w.addr, w.api);
    // two.crt: its own certificate, then one its key does not match, and
    // again, until the rotations are done.
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, crt) = (stop.clone(), s.path("two.crt"));
        let stray = ca.server_pair(&["two.localhost"]).cert_pem;
        let own = two.cert_pem.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                mv_over(&crt, &stray);
                mv_over(&crt, &own);
            }
        })
    };
    let renewals = [
        ca.server_pair(&["one.localhost"]),
        ca.server_pair(&["one.localhost"]),
    ];
    let mut served = one.fingerprint.clone();
    let (mut applied, mut refused) = (0, 0);
    for i in 0.. {
        assert!(
            i < 2000,
            "{applied} rotations applied and {refused} refused in {i}: two.crt's swaps should give both"
        );
        // One's files change at each rotation.
        let next = renewals.iter().find(|r| r.fingerprint != served).unwrap();
        renew(s, "one", next);
        let r = rotate_public(api).await;
        let now = served_leaf(addr, "one.localhost", &ca.cert_pem)
            .await
            .unwrap();
        match r.status {
            200 => {
                assert_eq!(
                    now, next.fingerprint,
                    "rotation {i} answered 200: {}",
                    r.body
                );
                applied += 1;
            }
            422 => {
                assert_eq!(
                    now, served,
                    "rotation {i} answered 422 but applied one: {}",
                    r.body
                );
                refused += 1;
            }
            status => panic!("rotation {i}: {status} {}", r.body),
        }
        assert_eq!(
            served_leaf(addr, "two.localhost", &ca.cert_pem)
                .await
                .unwrap(),
            two.fingerprint,
            "rotation {i}"
        );
        served = now;
        if applied >= 1 && refused >= 30 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
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
    renew(&a.s, "edge", &next);
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
    renew(&a.s, "edge", &last);
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

/// A listener rotation that applies one pair and is then refused for the
/// next answers 422, and the pair applied is audited like any change
/// (SPEC §4, "Each change applied is logged at info"): the audit line used
/// to be written for a 2xx alone, so the pair went live with none. The
/// scene: `one`, `zero` (the listener's) and `two`, each with a
/// client_auth of its own; x.test is `two`'s. `one` renewed to name x.test
/// too keeps it with `two`; `zero` renewed to name it too makes `one` and
/// `zero` name it under two client_auths, neither `two`'s: refused.
#[tokio::test]
async fn a_listener_rotation_refused_after_applying_a_pair_audits_it() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("one", &ca.server_pair(&["one.test"]));
    s.pair("zero", &ca.server_pair(&["zero.test"]));
    s.pair("two", &ca.server_pair(&["x.test"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    write(&s.path("editor.token"), &format!("{EDITOR}\n"));
    let cfg = s.config(
        r#"
watch: { events: false, poll_interval: 1h }
admin:
  bind: 127.0.0.1:0
  tokens: [{ role: editor, token_file: editor.token }]
certs:
  - { id: one, type: server-pair, cert_file: one.crt, key_file: one.key }
  - { id: zero, type: server-pair, cert_file: zero.crt, key_file: zero.key }
  - { id: two, type: server-pair, cert_file: two.crt, key_file: two.key }
  - { id: ca, type: ca-bundle, ca_file: ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - ref: one
          client_auth: { mode: require_and_verify, ca: { ref: ca } }
        - { ref: zero }
        - ref: two
          client_auth: { mode: verify_if_given, ca: { ref: ca } }
"#,
    );
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    for id in ["one", "zero", "two"] {
        p.wait_log("the start-up re-read", move |v| {
            v["message"] == "certificate files re-read: unchanged" && v["entry"] == id
        })
        .await;
    }
    renew(&s, "one", &ca.server_pair(&["one.test", "x.test"]));
    renew(&s, "zero", &ca.server_pair(&["zero.test", "x.test"]));
    let r = rotate_public(api).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let results: Vec<_> = (r.json()["entries"].as_array().unwrap().iter())
        .map(|e| (e["id"].clone(), e["result"].clone()))
        .collect();
    assert_eq!(
        results,
        [
            (json!("one"), json!("changed")),
            (json!("zero"), json!("failed")),
            (json!("two"), json!("unchanged")),
        ],
        "{}",
        r.body
    );
    // A change audited after it: the log is one ordered stream, so the
    // rotation's line, written before its answer, is read by then.
    let r = admin(api, "POST", "/api/v1/rotate", Some(EDITOR), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    p.wait_log("the later change's audit line", |v| {
        v["message"] == "admin API change applied" && v["path"] == "/api/v1/rotate"
    })
    .await;
    let audited = p.logs().iter().any(|l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            v["message"] == "admin API change applied"
                && v["method"] == "POST"
                && v["path"] == "/api/v1/listeners/public/rotate"
                && v["role"] == "Editor"
        })
    });
    assert!(
        audited,
        "the 422 rotation that applied `one` was not audited"
    );
}
