//! Live reload from outside: every writer, every material kind, bad material never wins.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::writers::{Certbot, Kubelet, cp_in_place, mv_over, slow_write};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// Wait until the leaf served for `sni` has fingerprint `want`.
async fn until_served(addr: std::net::SocketAddr, sni: &str, ca: &str, want: &str) {
    wait_until(WAIT, &format!("{sni} serves {want}"), || async {
        served_leaf(addr, sni, ca).await.ok().as_deref() == Some(want)
    })
    .await;
}

fn base_config(cert: &str, key: &str, extra: &str) -> String {
    format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: {cert}, key_file: {key} }}]
{extra}
"#
    )
}

/// A kubelet Secret update (both orderings) is served on the next handshake.
#[tokio::test]
async fn kubelet_secret_swap() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let kube = Kubelet::new(&s.path("secret"));
    let first = ca.server_pair(&["localhost"]);
    kube.write(
        &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
        false,
    );
    let mut p = Proxy::start(&s.config(&base_config("secret/tls.crt", "secret/tls.key", "")));
    let addr = p.listener_addr("public").await;
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        first.fingerprint
    );
    for legacy in [false, true, false] {
        let next = ca.server_pair(&["localhost"]);
        kube.write(
            &[("tls.crt", &next.cert_pem), ("tls.key", &next.key_pem)],
            legacy,
        );
        until_served(addr, "localhost", &ca.cert_pem, &next.fingerprint).await;
    }
}

/// certbot renewal relinks one file at a time (old fullchain + new privkey for
/// a while): the mismatched window is waited out and the new pair is served;
/// no failure is counted. The proxy is shown to have seen that window (it
/// says it waits for the writer) before the renewal goes on: otherwise "no
/// failure" could hold only because the torn state was never looked at.
#[tokio::test]
async fn certbot_renewal() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let mut bot = Certbot::new(s.dir.path(), "example.com");
    let first = ca.server_pair(&["example.com"]);
    bot.renew(
        &first.cert_pem,
        &first.key_pem,
        &ca.cert_pem,
        Duration::ZERO,
    );
    let cfg = base_config(
        "live/example.com/fullchain.pem",
        "live/example.com/privkey.pem",
        "",
    );
    // The torn pair is held while the test reads the proxy's log: a
    // settle_timeout far longer than that, so only a proxy that counts it
    // as a failure at once (the fault this test is for) does.
    let cfg = cfg.replace("settle_timeout: 2s", "settle_timeout: 60s");
    let mut p = Proxy::start(&s.config(&cfg));
    let addr = p.listener_addr("public").await;
    assert_eq!(
        served_leaf(addr, "example.com", &ca.cert_pem)
            .await
            .unwrap(),
        first.fingerprint
    );
    let second = ca.server_pair(&["example.com"]);
    let n = bot.archive(&second.cert_pem, &second.key_pem, &ca.cert_pem);
    let [cert, privkey, chain, fullchain] = Certbot::LINKS;
    bot.relink(cert, n);
    bot.relink(privkey, n);
    p.wait_log("the new key with the old fullchain, waited on", |v| {
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("private key does not match the certificate"))
    })
    .await;
    bot.relink(chain, n);
    bot.relink(fullchain, n);
    until_served(addr, "example.com", &ca.cert_pem, &second.fingerprint).await;
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("certificate reload failed")),
        "a certbot renewal counted as a failure"
    );
}

/// Garbage, empty, truncated, mismatched and missing files never replace
/// good material; good material written afterwards is picked up; each
/// failure is logged and names the file, never key bytes.
#[tokio::test]
async fn bad_material_never_wins() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let good = ca.server_pair(&["localhost"]);
    s.pair("tls", &good);
    let mut p = Proxy::start(&s.config(&base_config("tls.crt", "tls.key", "")));
    let addr = p.listener_addr("public").await;
    let crt = s.path("tls.crt");
    let key = s.path("tls.key");
    let other = ca.server_pair(&["localhost"]);
    let half = &other.cert_pem[..other.cert_pem.len() / 2];
    type Breaker<'a> = Box<dyn Fn() + 'a>;
    let bad: [(&str, Breaker); 5] = [
        (
            "garbage",
            Box::new(|| cp_in_place(&crt, "this is not a certificate")),
        ),
        ("empty", Box::new(|| cp_in_place(&crt, ""))),
        ("truncated", Box::new(|| cp_in_place(&crt, half))),
        (
            "mismatched key",
            Box::new(|| mv_over(&crt, &other.cert_pem)),
        ),
        ("missing", Box::new(|| std::fs::remove_file(&crt).unwrap())),
    ];
    let count = |p: &Proxy, needle: &str| p.logs().iter().filter(|l| l.contains(needle)).count();
    for (what, break_it) in bad {
        let failures = count(&p, "certificate reload failed");
        let recoveries = count(&p, "certificate material is valid again");
        break_it();
        wait_until(WAIT, &format!("{what} refused"), || async {
            count(&p, "certificate reload failed") > failures
        })
        .await;
        let last = p
            .logs()
            .into_iter()
            .rfind(|l| l.contains("certificate reload failed"))
            .unwrap();
        assert!(
            last.contains("tls.crt"),
            "{what}: error does not name the file: {last}"
        );
        assert_eq!(
            served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
            good.fingerprint,
            "{what} replaced good material"
        );
        mv_over(&crt, &good.cert_pem);
        mv_over(&key, &good.key_pem);
        wait_until(WAIT, &format!("recovered after {what}"), || async {
            count(&p, "certificate material is valid again") > recoveries
        })
        .await;
    }
    // A good new pair written the slow way is served once complete.
    let fresh = ca.server_pair(&["localhost"]);
    mv_over(&key, &fresh.key_pem);
    slow_write(&crt, &fresh.cert_pem, Duration::from_millis(200));
    until_served(addr, "localhost", &ca.cert_pem, &fresh.fingerprint).await;
    for line in p.logs() {
        assert!(
            !line.contains("PRIVATE KEY") && !line.contains(&good.key_pem[40..80]),
            "key material in a log line: {line}"
        );
    }
}

/// The upstream client pair rotates (backend sees the new certificate on the
/// next request), and an upstream CA change lets a re-keyed backend in.
#[tokio::test]
async fn upstream_client_pair_and_ca_rotation() {
    let s = Scene::new();
    let ca = TestCa::new("edge");
    let backend_ca = TestCa::new("backend");
    s.pair("tls", &ca.server_pair(&["localhost"]));
    let c1 = backend_ca.client_pair("proxy-1");
    let kube = Kubelet::new(&s.path("upstream"));
    kube.write(
        &[
            ("tls.crt", &c1.cert_pem),
            ("tls.key", &c1.key_pem),
            ("ca.crt", &backend_ca.cert_pem),
        ],
        false,
    );
    let backend = Backend::start(
        "b",
        &backend_ca.server_pair(&["backend.local"]),
        Some(&backend_ca.cert_pem),
    )
    .await;
    let extra = format!(
        r#"    routes: [{{ upstream: b }}]
upstreams:
  - name: b
    servers: [https://{}]
    tls:
      ca: {{ ca_file: upstream/ca.crt }}
      client_cert: {{ cert_file: upstream/tls.crt, key_file: upstream/tls.key }}
      server_name: backend.local"#,
        backend.addr
    );
    let mut p = Proxy::start(&s.config(&base_config("tls.crt", "tls.key", &extra)));
    let addr = p.listener_addr("public").await;
    let fetch = || async {
        get(
            addr,
            "localhost",
            client_config(&ca.cert_pem, None, &[b"http/1.1"]),
            false,
            "/",
            &[],
        )
        .await
        .unwrap()
    };
    assert_eq!(
        fetch().await.json()["client_cert_fingerprint"],
        c1.fingerprint.as_str()
    );
    let c2 = backend_ca.client_pair("proxy-2");
    kube.write(
        &[
            ("tls.crt", &c2.cert_pem),
            ("tls.key", &c2.key_pem),
            ("ca.crt", &backend_ca.cert_pem),
        ],
        false,
    );
    wait_until(WAIT, "backend sees the new client certificate", || async {
        fetch().await.json()["client_cert_fingerprint"] == c2.fingerprint.as_str()
    })
    .await;
    // New backend under a new CA: 502 (unknown CA) until the CA bundle rotates.
    let new_ca = TestCa::new("backend-2");
    let c3 = new_ca.client_pair("proxy-3");
    let backend2 = Backend::start(
        "b2",
        &new_ca.server_pair(&["backend.local"]),
        Some(&new_ca.cert_pem),
    )
    .await;
    let cfg = s.path("config.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&backend.addr.to_string(), &backend2.addr.to_string());
    write(&cfg, &text);
    wait_until(WAIT, "502 against the untrusted backend", || async {
        fetch().await.status == 502
    })
    .await;
    p.wait_log("unknown CA logged", |v| v["reason"] == "unknown_ca")
        .await;
    kube.write(
        &[
            ("tls.crt", &c3.cert_pem),
            ("tls.key", &c3.key_pem),
            ("ca.crt", &new_ca.cert_pem),
        ],
        false,
    );
    wait_until(WAIT, "new CA trusted", || async {
        let r = fetch().await;
        r.status == 200 && r.json()["client_cert_fingerprint"] == c3.fingerprint.as_str()
    })
    .await;
}

/// A client-CA change and a CRL change apply to new connections.
#[tokio::test]
async fn client_ca_and_crl_rotation() {
    let s = Scene::new();
    let ca = TestCa::new("edge");
    let clients_a = TestCa::new("clients-a");
    let clients_b = TestCa::new("clients-b");
    s.pair("tls", &ca.server_pair(&["localhost"]));
    let alice = clients_a.client_pair("alice");
    let bob = clients_b.client_pair("bob");
    write(&s.path("clients.crt"), &clients_a.cert_pem);
    write(&s.path("clients.crl"), &clients_a.crl(&[]));
    let extra = "      client_auth: { mode: require_and_verify, ca: { ca_file: clients.crt, crl_files: [clients.crl] } }";
    let cfg = base_config("tls.crt", "tls.key", "")
        .replace("      certs:", &format!("{extra}\n      certs:"));
    let mut p = Proxy::start(&s.config(&cfg));
    let addr = p.listener_addr("public").await;
    let ok = |who: TestPair| {
        let ca = ca.cert_pem.clone();
        async move {
            let tls = connect(
                addr,
                "localhost",
                client_config(&ca, Some(&who), &[b"http/1.1"]),
            )
            .await;
            // TLS 1.3: a refused client certificate surfaces on the first read.
            match tls {
                Err(_) => false,
                Ok(mut t) => {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let _ = t
                        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
                        .await;
                    let mut buf = [0u8; 16];
                    matches!(t.read(&mut buf).await, Ok(n) if n > 0)
                }
            }
        }
    };
    assert!(ok(alice.clone()).await && !ok(bob.clone()).await);
    // Revoke alice.
    mv_over(&s.path("clients.crl"), &clients_a.crl(&[&alice]));
    wait_until(WAIT, "alice refused after revocation", || async {
        !ok(alice.clone()).await
    })
    .await;
    // Switch the client CA to clients-b (with its own CRL).
    mv_over(&s.path("clients.crl"), &clients_b.crl(&[]));
    mv_over(&s.path("clients.crt"), &clients_b.cert_pem);
    wait_until(WAIT, "bob accepted after CA change", || async {
        ok(bob.clone()).await
    })
    .await;
}

/// Rotating one of several pairs on a listener changes what its names
/// serve and nothing else; a rotation that changes the names a pair
/// answers (its SANs) moves those names, and the admin API lists them.
#[tokio::test]
async fn one_pair_among_several() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b, c) = (
        ca.server_pair(&["a.test"]),
        ca.server_pair(&["b.test"]),
        ca.server_pair(&["c.test"]),
    );
    s.pair("a", &a);
    s.pair("b", &b);
    s.pair("c", &c);
    let mut p = Proxy::start(&s.config(
        r#"
admin: { bind: 127.0.0.1:0 }
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }
certs:
  - { id: a, type: server-pair, cert_file: a.crt, key_file: a.key }
  - { id: b, type: server-pair, cert_file: b.crt, key_file: b.key }
  - { id: c, type: server-pair, cert_file: c.crt, key_file: c.key }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: a }, { ref: b }, { ref: c }]
"#,
    ));
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    let rotate = |pair: &TestPair| {
        mv_over(&s.path("b.key"), &pair.key_pem);
        mv_over(&s.path("b.crt"), &pair.cert_pem);
    };
    let served = |name: &'static str| {
        let ca = ca.cert_pem.clone();
        async move { served_leaf(addr, name, &ca).await.unwrap() }
    };

    // Same names: only b.test changes.
    let b2 = ca.server_pair(&["b.test"]);
    rotate(&b2);
    until_served(addr, "b.test", &ca.cert_pem, &b2.fingerprint).await;
    assert_eq!(served("a.test").await, a.fingerprint);
    assert_eq!(served("c.test").await, c.fingerprint);

    // A new name: d.test, unknown until now (the default, a), is b's.
    let b3 = ca.server_pair(&["b.test", "d.test"]);
    rotate(&b3);
    until_served(addr, "d.test", &ca.cert_pem, &b3.fingerprint).await;
    assert_eq!(served("b.test").await, b3.fingerprint);
    assert_eq!(served("c.test").await, c.fingerprint);

    // b.test dropped: it falls back to the default pair (the client then
    // refuses the name, which is how the default shows).
    let b4 = ca.server_pair(&["d.test"]);
    rotate(&b4);
    until_served(addr, "d.test", &ca.cert_pem, &b4.fingerprint).await;
    let err = connect(
        addr,
        "b.test",
        client_config(&ca.cert_pem, None, &[b"http/1.1"]),
    )
    .await
    .expect_err("b.test is no longer on any certificate");
    assert!(err.to_string().contains("a.test"), "not the default: {err}");
    assert_eq!(served("c.test").await, c.fingerprint);

    let listed = admin(
        admin_addr,
        "GET",
        "/api/v1/listeners/public/cert",
        None,
        None,
        &[],
    )
    .await
    .json();
    let certs = listed["certs"].as_array().unwrap();
    let names: Vec<(&str, Vec<&str>)> = certs
        .iter()
        .map(|c| {
            (
                c["entry"].as_str().unwrap(),
                c["server_names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("a", vec!["a.test"]),
            ("b", vec!["d.test"]),
            ("c", vec!["c.test"])
        ]
    );
    assert_eq!(certs[1]["fingerprint_sha256"], b4.fingerprint.as_str());
}

/// Handshakes and requests running continuously through many rotations see zero failures,
/// and a connection opened under the first certificate is still served after them.
#[tokio::test]
async fn zero_failures_during_rotations() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let kube = Kubelet::new(&s.path("secret"));
    let first = ca.server_pair(&["localhost"]);
    kube.write(
        &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
        false,
    );
    let backend_ca = TestCa::new("backend");
    let backend = Backend::start("b", &backend_ca.server_pair(&["backend.local"]), None).await;
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let extra = format!(
        "    routes: [{{ upstream: b }}]\nupstreams:\n  - name: b\n    servers: [https://{}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}",
        backend.addr
    );
    let mut p = Proxy::start(&s.config(&base_config("secret/tls.crt", "secret/tls.key", &extra)));
    let addr = p.listener_addr("public").await;
    let held = connect(
        addr,
        "localhost",
        client_config(&ca.cert_pem, None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let held_leaf = fingerprint(held.get_ref().1.peer_certificates().unwrap()[0].as_ref());
    assert_eq!(held_leaf, first.fingerprint);
    let (mut held, _held_conn) = keep_open_h1(held).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    const CLIENTS: usize = 4;
    const ROTATIONS: usize = 10;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (stop, ok, failed, ca) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            ca.cert_pem.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match get(
                    addr,
                    "localhost",
                    client_config(&ca, None, &[b"http/1.1"]),
                    false,
                    "/",
                    &[],
                )
                .await
                {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    // Requests made so far, ok or not.
    let made = || ok.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst);
    let mut last = first.clone();
    for i in 0..ROTATIONS {
        // Load runs between rotations: as many requests as clients made
        // since the last one was served, before the next begins (and after
        // the last), so no rotation passes with nothing in flight.
        let before = made();
        wait_until(WAIT, &format!("requests under rotation {i}"), || async {
            made() >= before + CLIENTS
        })
        .await;
        last = ca.server_pair(&["localhost"]);
        kube.write(
            &[("tls.crt", &last.cert_pem), ("tls.key", &last.key_pem)],
            false,
        );
        until_served(addr, "localhost", &ca.cert_pem, &last.fingerprint).await;
    }
    let before = made();
    wait_until(WAIT, "requests under the last certificate", || async {
        made() >= before + CLIENTS
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during rotations ({} ok)",
        ok.load(Ordering::SeqCst)
    );
    assert!(ok.load(Ordering::SeqCst) >= (ROTATIONS + 1) * CLIENTS);
    // The connection opened under the first certificate, before the
    // rotations, is still served: rotation closes no open connection.
    let r = tokio::time::timeout(Duration::from_secs(10), held.send_request(get_localhost()))
        .await
        .expect("the held connection answers")
        .expect("the held connection is still open");
    assert_eq!(r.status(), 200);
    assert_ne!(last.fingerprint, first.fingerprint);
}

/// A configuration edit applies live; a broken one is rejected whole and the old one keeps serving.
#[tokio::test]
async fn config_hot_reload() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    let b = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    s.pair("b", &b);
    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    write(
        &cfg,
        &base_config("b.crt", "b.key", "").replace("debounce: 50ms", "debounse: 50ms"),
    );
    p.wait_log("rejected", |v| {
        v["message"] == "configuration rejected; the running configuration stays"
            && v["error"].as_str().is_some_and(|e| e.contains("debounse"))
    })
    .await;
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        a.fingerprint
    );
    write(&cfg, &base_config("b.crt", "b.key", ""));
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;

    // An in-place writer that stops mid-way: an empty file, then one cut
    // before its listeners (valid YAML). Neither may stop what is served.
    let rejected = |what: &'static str| {
        move |v: &serde_json::Value| {
            v["message"] == "configuration rejected; the running configuration stays"
                && v["error"].as_str().is_some_and(|e| e.contains(what))
        }
    };
    write(&cfg, "");
    p.wait_log("empty file rejected", rejected("the file is empty"))
        .await;
    let full = base_config("b.crt", "b.key", "");
    write(&cfg, &full[..full.find("listeners:").unwrap()]);
    p.wait_log("cut file rejected", rejected("has no listeners"))
        .await;
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        b.fingerprint
    );
    // A listener added by an edit is bound (on the reloader thread) and
    // serves; the existing one keeps its socket.
    let second = "  - name: second\n    bind: 127.0.0.1:0\n    tls:\n      certs: [{ cert_file: a.crt, key_file: a.key }]";
    write(&cfg, &base_config("b.crt", "b.key", second));
    let added = p.listener_addr("second").await;
    assert_eq!(
        served_leaf(added, "localhost", &ca.cert_pem).await.unwrap(),
        a.fingerprint
    );
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        b.fingerprint
    );
}

/// A configuration rejected for what it names that is not there yet is
/// applied once it is, with no further edit and nothing watching the new
/// files (kubelet updates a ConfigMap and a Secret separately: the
/// configuration naming the new key often lands first).
#[tokio::test]
async fn a_rejected_configuration_is_applied_once_its_files_come() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    let new = ca.server_pair(&["new.localhost"]);
    s.pair("a", &a);
    // No events and a one-hour poll: only the retry can see the new files.
    let unwatched = base_config("a.crt", "a.key", "\nadmin: { bind: \"127.0.0.1:0\" }").replace(
        "debounce: 50ms, poll_interval: 300ms",
        "events: false, poll_interval: 1h",
    );
    let cfg = s.config(&unwatched);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let edited = unwatched.replace(
        "certs: [{ cert_file: a.crt, key_file: a.key }]",
        "certs: [{ cert_file: a.crt, key_file: a.key }, { cert_file: new.crt, key_file: new.key }]",
    );
    write(&cfg, &edited);
    p.signal("HUP");
    p.wait_log("rejected", |v| {
        v["message"] == "configuration rejected; the running configuration stays"
            && v["error"].as_str().is_some_and(|e| e.contains("new.crt"))
    })
    .await;
    let failures = r#"hotproxy_config_reloads_total{result="failure"}"#;
    s.pair("new", &new);
    until_served(addr, "new.localhost", &ca.cert_pem, &new.fingerprint).await;
    let failed = format!("{failures} 1");
    assert!(
        metrics_text(admin).await.lines().any(|l| l == failed),
        "one rejection counted"
    );
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        a.fingerprint
    );
}

/// A listener a reload removes closes its open connections, as nginx's
/// old workers and Envoy's listener drain do: a keep-alive client must not
/// go on with its routes and rules for as long as it keeps sending.
#[tokio::test]
async fn a_removed_listener_closes_its_open_connections() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    let second = "  - name: second\n    bind: 127.0.0.1:0\n    limits: { idle_timeout: 1h }\n    tls:\n      certs: [{ cert_file: a.crt, key_file: a.key }]";
    let cfg = s.config(&base_config("a.crt", "a.key", second));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("second").await;
    let tls = connect(
        addr,
        "localhost",
        client_config(&ca.cert_pem, None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(tls))
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let get = || {
        hyper::Request::get("/")
            .header("host", "localhost")
            .body(http_body_util::Empty::new())
            .unwrap()
    };
    let first = within_deadline("a request on the second listener", send.send_request(get()))
        .await
        .unwrap();
    assert_eq!(first.status(), 404, "no route on the second listener");
    drop(first);
    write(&cfg, &base_config("a.crt", "a.key", ""));
    p.wait_log("removed", |v| v["message"] == "listener removed")
        .await;
    within_deadline("the removed listener's connection closed", conn)
        .await
        .unwrap()
        .unwrap();
    assert!(send.is_closed(), "the client may still send on it");
}

/// A listener renamed on the same address, and two listeners swapping
/// their ports, apply live: the new listener serves on the socket the old
/// one gives up. Binding it anew failed while the old one still listened,
/// so both edits were rejected ("Address already in use").
#[tokio::test]
async fn a_renamed_listener_and_swapped_ports_keep_their_sockets() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b) = (
        ca.server_pair(&["localhost"]),
        ca.server_pair(&["localhost"]),
    );
    s.pair("a", &a);
    s.pair("b", &b);
    let listeners = |first: (&str, u16), second: (&str, u16)| {
        format!(
            r#"
listeners:
  - name: {}
    bind: 127.0.0.1:{}
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
  - name: {}
    bind: 127.0.0.1:{}
    tls: {{ certs: [{{ cert_file: b.crt, key_file: b.key }}] }}
"#,
            first.0, first.1, second.0, second.1
        )
    };
    let cfg = s.config(&listeners(("one", 0), ("two", 0)));
    let mut p = Proxy::start(&cfg);
    let (one, two) = (p.listener_addr("one").await, p.listener_addr("two").await);
    let reloaded = |v: &serde_json::Value| v["message"] == "configuration reloaded";
    // Renamed, on the address it has.
    write(&cfg, &listeners(("edge", one.port()), ("two", two.port())));
    p.wait_log("rename applied", reloaded).await;
    assert_eq!(p.listener_addr("edge").await, one);
    assert_eq!(
        served_leaf(one, "localhost", &ca.cert_pem).await.unwrap(),
        a.fingerprint
    );
    // The two swap ports: each address now serves the other's pair.
    write(&cfg, &listeners(("edge", two.port()), ("two", one.port())));
    wait_until(WAIT, "the swap served", || async {
        served_leaf(one, "localhost", &ca.cert_pem)
            .await
            .ok()
            .as_deref()
            == Some(&*b.fingerprint)
            && served_leaf(two, "localhost", &ca.cert_pem)
                .await
                .ok()
                .as_deref()
                == Some(&*a.fingerprint)
    })
    .await;
}

/// SIGHUP re-reads every file and the configuration even when nothing
/// watches them (no events, a one-hour poll).
#[tokio::test]
async fn sighup_rereads_everything() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b, c) = (
        ca.server_pair(&["localhost"]),
        ca.server_pair(&["localhost"]),
        ca.server_pair(&["localhost"]),
    );
    s.pair("a", &a);
    s.pair("c", &c);
    let unwatched = |cert: &str, key: &str| {
        base_config(cert, key, "").replace(
            "watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }",
            "watch: { events: false, poll_interval: 1h }",
        )
    };
    let cfg = s.config(&unwatched("a.crt", "a.key"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        a.fingerprint
    );
    // New material under the same names: only the signal can reveal it.
    mv_over(&s.path("a.key"), &b.key_pem);
    mv_over(&s.path("a.crt"), &b.cert_pem);
    p.signal("HUP");
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    // A configuration edit pointing elsewhere.
    write(&cfg, &unwatched("c.crt", "c.key"));
    p.signal("HUP");
    until_served(addr, "localhost", &ca.cert_pem, &c.fingerprint).await;
}

/// `limits.max_connection_lifetime` closes a connection made with
/// rotated-out material once it is older than the limit; before any
/// rotation an old connection is left alone.
#[tokio::test]
async fn max_connection_lifetime_bounds_rotated_out_connections() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let kube = Kubelet::new(&s.path("secret"));
    let first = ca.server_pair(&["localhost"]);
    kube.write(
        &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
        false,
    );
    let limits = "    limits: { max_connection_lifetime: 1s }";
    let mut p = Proxy::start(&s.config(&base_config("secret/tls.crt", "secret/tls.key", limits)));
    let addr = p.listener_addr("public").await;
    let tls = connect(
        addr,
        "localhost",
        client_config(&ca.cert_pem, None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (mut send, conn) = keep_open_h1(tls).await;
    // Older than the limit, but nothing rotated: still usable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        send.send_request(get_localhost()).await.unwrap().status(),
        404
    );
    let next = ca.server_pair(&["localhost"]);
    kube.write(
        &[("tls.crt", &next.cert_pem), ("tls.key", &next.key_pem)],
        false,
    );
    until_served(addr, "localhost", &ca.cert_pem, &next.fingerprint).await;
    // The proxy closes the old connection: the client's connection task ends.
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("connection made with rotated-out material was not closed")
        .unwrap()
        .unwrap();
    assert!(send.send_request(get_localhost()).await.is_err());
}

/// `max_connections` changed by a reload applies to a listener that is
/// full: its accept loop waited for a slot under the old limit, so raising
/// it let no waiting client in until an old connection closed. Lowered
/// again with more connections open than it allows, the listener takes
/// the extra slots back as they close and still lets the next client in.
#[tokio::test]
async fn max_connections_changed_by_a_reload_applies_to_a_full_listener() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    let config = |max: usize| {
        base_config(
            "a.crt",
            "a.key",
            &format!(
                "    limits: {{ max_connections: {max} }}\nadmin: {{ bind: \"127.0.0.1:0\" }}"
            ),
        )
    };
    let path = s.config(&config(1));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let gauge = |n: usize| format!("hotproxy_connections_active{{listener=\"public\"}} {n}");
    let cfg = || client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let first = connect(addr, "localhost", cfg()).await.unwrap();
    // Under the limit of one, a second client waits ...
    let second = tokio::spawn(connect(addr, "localhost", cfg()));
    assert_held_back(addr, 1, metrics_in_turns(admin)).await;
    // ... and is let in by the raised limit, while the first is open.
    write(&path, &config(2));
    let second = tokio::time::timeout(WAIT, second)
        .await
        .expect("the waiting client is let in under the raised limit")
        .unwrap()
        .unwrap();

    // Back to one with two open: a third client waits, and still does
    // once one of the two has closed (its slot is taken back) ...
    write(&path, &config(1));
    let reloads = || {
        p.logs()
            .iter()
            .filter(|l| l.contains("\"configuration reloaded\""))
            .count()
    };
    wait_until(WAIT, "the second reload", || async { reloads() == 2 }).await;
    let third = tokio::spawn(connect(addr, "localhost", cfg()));
    assert_held_back(addr, 1, metrics_in_turns(admin)).await;
    drop(first);
    wait_until(
        WAIT,
        "the first's close seen, or the third let in",
        || async {
            third.is_finished() || metrics_text(admin).await.lines().any(|l| l == gauge(1))
        },
    )
    .await;
    assert!(
        !third.is_finished(),
        "a client was let in beyond the lowered limit"
    );
    let m = assert_held_back(addr, 1, metrics_in_turns(admin)).await;
    assert!(m.lines().any(|l| l == gauge(1)), "{m}");
    assert!(
        !third.is_finished(),
        "a client was let in beyond the lowered limit"
    );
    // ... and gets in once the other closes.
    drop(second);
    tokio::time::timeout(WAIT, third)
        .await
        .expect("a client is let in once the others closed")
        .unwrap()
        .unwrap();
}

/// With `drain_on_rotation: false` an idle pooled upstream connection made
/// with the old client certificate stays in use (new connections would use
/// the new one); with the default (true) the very next request opens a new
/// connection with the new certificate.
#[tokio::test]
async fn drain_on_rotation_on_and_off() {
    for drain in [false, true] {
        let s = Scene::new();
        let ca = TestCa::new("edge");
        let backend_ca = TestCa::new("backend");
        s.pair("tls", &ca.server_pair(&["localhost"]));
        write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
        let kube = Kubelet::new(&s.path("client"));
        let c1 = backend_ca.client_pair("proxy-1");
        kube.write(
            &[("tls.crt", &c1.cert_pem), ("tls.key", &c1.key_pem)],
            false,
        );
        let backend = Backend::start(
            "b",
            &backend_ca.server_pair(&["backend.local"]),
            Some(&backend_ca.cert_pem),
        )
        .await;
        let extra = format!(
            r#"    routes: [{{ upstream: b }}]
upstreams:
  - name: b
    servers: [https://{}]
    tls:
      ca: {{ ca_file: backend-ca.crt }}
      client_cert: {{ cert_file: client/tls.crt, key_file: client/tls.key }}
      server_name: backend.local
      drain_on_rotation: {drain}"#,
            backend.addr
        );
        let mut p = Proxy::start(&s.config(&base_config("tls.crt", "tls.key", &extra)));
        let addr = p.listener_addr("public").await;
        let fetch = |path: &'static str| {
            let ca = ca.cert_pem.clone();
            async move {
                let r = get(
                    addr,
                    "localhost",
                    client_config(&ca, None, &[b"http/1.1"]),
                    false,
                    path,
                    &[],
                )
                .await
                .unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
                r.json()["client_cert_fingerprint"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        };
        assert_eq!(fetch("/").await, c1.fingerprint);
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
        let c2 = backend_ca.client_pair("proxy-2");
        kube.write(
            &[("tls.crt", &c2.cert_pem), ("tls.key", &c2.key_pem)],
            false,
        );
        p.wait_log("client pair reloaded", |v| {
            v["message"] == "certificate reloaded"
                && v["entry"] == "upstreams.b.tls.client_cert"
                && v["fingerprint"] == c2.fingerprint.as_str()
        })
        .await;
        if drain {
            assert_eq!(fetch("/").await, c2.fingerprint);
            assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
        } else {
            // The pooled connection is reused as it was made.
            assert_eq!(fetch("/").await, c1.fingerprint);
            assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
        }
    }
}

/// A configuration file briefly missing (`rm` then `cp`) is a writer at
/// work: waited on for settle_timeout, not rejected at once; missing for
/// longer, it is rejected and the running configuration stays.
#[tokio::test]
async fn a_briefly_missing_config_file_is_waited_for() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    let b = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    s.pair("b", &b);
    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    std::fs::remove_file(&cfg).unwrap();
    p.wait_log("the missing file waited for", |v| {
        v["message"] == "configuration file missing; waiting for the writer until settle_timeout"
    })
    .await;
    write(&cfg, &base_config("b.crt", "b.key", ""));
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    let rejected = |v: &serde_json::Value| {
        v["message"] == "configuration rejected; the running configuration stays"
    };
    assert!(
        !p.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| rejected(&v)),
        "rejected while the writer was at work"
    );
    // Gone for good: rejected once settle_timeout (2 s) has passed.
    std::fs::remove_file(&cfg).unwrap();
    p.wait_log("the missing file rejected", rejected).await;
    assert_eq!(
        served_leaf(addr, "localhost", &ca.cert_pem).await.unwrap(),
        b.fingerprint
    );
}

/// A configuration file whose mtime is in the future (a host ahead in time:
/// `rsync -t`, `cp -p`, `tar x`, clock skew on a network filesystem) is
/// applied like any other, not deferred as a writer at work until its mtime
/// passes or settle_timeout runs out. settle_timeout is 10 minutes here, so
/// a proxy that defers on such an mtime does not apply it within the wait.
#[tokio::test]
async fn a_config_file_with_a_future_mtime_is_applied() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    let b = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    s.pair("b", &b);
    let config = |stem: &str| {
        base_config(&format!("{stem}.crt"), &format!("{stem}.key"), "")
            .replace("settle_timeout: 2s", "settle_timeout: 10m")
    };
    let cfg = s.config(&config("a"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let ahead = std::time::SystemTime::now() + Duration::from_secs(3600);
    // `rsync -t`: a temp file with the sender's mtime, renamed over.
    let tmp = s.path("config.yaml.rsync");
    write(&tmp, &config("b"));
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(ahead)
        .unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    // `cp -p` in place: the same inode rewritten, then its mtime set.
    write(&cfg, &config("a"));
    std::fs::File::options()
        .write(true)
        .open(&cfg)
        .unwrap()
        .set_modified(ahead + Duration::from_secs(1))
        .unwrap();
    until_served(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// A renewal that adds a SAN another pair of the listener answers with a
/// different client_auth (a.test's certificate now names b.test too, and
/// b.test requires a client certificate) is served; b.test stays with its
/// own pair, so its client_auth still holds. The rotation used to be
/// refused as a shadowed pair: the old a.test certificate was served
/// until it expired.
#[tokio::test]
async fn a_renewal_adding_a_san_another_pair_answers_is_served() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b) = (ca.server_pair(&["a.test"]), ca.server_pair(&["b.test"]));
    s.pair("a", &a);
    s.pair("b", &b);
    write(&s.path("ca.crt"), &ca.cert_pem);
    let mut p = Proxy::start(&s.config(
        r#"
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }
certs:
  - { id: a, type: server-pair, cert_file: a.crt, key_file: a.key }
  - { id: b, type: server-pair, cert_file: b.crt, key_file: b.key }
  - { id: ca, type: ca-bundle, ca_file: ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { ref: a }
        - ref: b
          client_auth: { mode: require_and_verify, ca: { ref: ca } }
"#,
    ));
    let addr = p.listener_addr("public").await;
    let client = ca.client_pair("client");
    let b_leaf = || async {
        let tls = connect(
            addr,
            "b.test",
            client_config(&ca.cert_pem, Some(&client), &[b"http/1.1"]),
        )
        .await
        .unwrap();
        fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref())
    };
    assert_eq!(b_leaf().await, b.fingerprint);

    let a2 = ca.server_pair(&["a.test", "b.test"]);
    mv_over(&s.path("a.key"), &a2.key_pem);
    mv_over(&s.path("a.crt"), &a2.cert_pem);
    until_served(addr, "a.test", &ca.cert_pem, &a2.fingerprint).await;

    // b.test is still b's, under b's client_auth.
    assert_eq!(b_leaf().await, b.fingerprint);
    if let Ok(r) = get_h1(addr, "b.test", &ca.cert_pem).await {
        panic!("b.test served without a client certificate: {}", r.status);
    }
    p.wait_log("the kept name warned about", |v| {
        v["level"] == "WARN" && v["name"] == "b.test" && v["kept_by"] == "b"
    })
    .await;
}

/// After such a renewal, a client-auth PUT that leaves the listener's
/// client_auth as it is (an automation re-applying its desired state) is
/// accepted as a reload of the same file is: b.test stays with b under b's
/// client_auth. It used to be refused as a shadowed pair, since the PUT
/// built the listener's TLS without the snapshot it replaced. A PUT that
/// changes the client_auth is refused, as a reload changing it is (SPEC
/// §3), and leaves everything as it was.
#[tokio::test]
async fn a_client_auth_put_after_such_a_renewal_keeps_the_kept_name() {
    const EDITOR: &str = "editor-token-0123456789abcdef";
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b) = (ca.server_pair(&["a.test"]), ca.server_pair(&["b.test"]));
    s.pair("a", &a);
    s.pair("b", &b);
    write(&s.path("ca.crt"), &ca.cert_pem);
    write(&s.path("editor.token"), EDITOR);
    let mut p = Proxy::start(&s.config(
        r#"
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }
admin:
  bind: 127.0.0.1:0
  tokens: [{ role: editor, token_file: editor.token }]
certs:
  - { id: a, type: server-pair, cert_file: a.crt, key_file: a.key }
  - { id: b, type: server-pair, cert_file: b.crt, key_file: b.key }
  - { id: ca, type: ca-bundle, ca_file: ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - { ref: a }
        - ref: b
          client_auth: { mode: require_and_verify, ca: { ref: ca } }
"#,
    ));
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let client = ca.client_pair("client");
    let b_leaf = || async {
        let tls = connect(
            addr,
            "b.test",
            client_config(&ca.cert_pem, Some(&client), &[b"http/1.1"]),
        )
        .await
        .unwrap();
        fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref())
    };
    let a2 = ca.server_pair(&["a.test", "b.test"]);
    mv_over(&s.path("a.key"), &a2.key_pem);
    mv_over(&s.path("a.crt"), &a2.cert_pem);
    until_served(addr, "a.test", &ca.cert_pem, &a2.fingerprint).await;
    assert_eq!(b_leaf().await, b.fingerprint);

    let put = |body: serde_json::Value| async move {
        admin(
            api,
            "PUT",
            "/api/v1/listeners/public/client-auth",
            Some(EDITOR),
            Some(body),
            &[],
        )
        .await
    };
    let still_as_renewed = || async {
        assert_eq!(
            served_leaf(addr, "a.test", &ca.cert_pem).await.unwrap(),
            a2.fingerprint
        );
        assert_eq!(b_leaf().await, b.fingerprint);
        if let Ok(r) = get_h1(addr, "b.test", &ca.cert_pem).await {
            panic!("b.test served without a client certificate: {}", r.status);
        }
    };
    // A change: a would answer b.test under another client_auth than b's.
    let r = put(serde_json::json!({"mode": "request"})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("b.test"), "{}", r.body);
    still_as_renewed().await;
    // The same client_auth again: accepted, b.test still b's.
    let r = put(serde_json::json!({"mode": "none"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["mode"], "none");
    still_as_renewed().await;
}

/// A renewal that drops a name its pair answered (b's certificate renewed,
/// kubelet-style, for b2.test only) keeps that name with the pair, under
/// its client_auth, across a reload that leaves the listener alone: a
/// client sending SNI and Host b.test without a certificate (and ignoring
/// the certificate name) must not reach b.test's route. b.test used to
/// fall to the default entry, whose client_auth is none, and its route
/// answered 200.
#[tokio::test]
async fn a_renewal_dropping_a_name_keeps_its_client_auth() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let backend_ca = TestCa::new("backend");
    let backend = Backend::start("b", &backend_ca.server_pair(&["backend.local"]), None).await;
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    write(&s.path("ca.crt"), &ca.cert_pem);
    s.pair("a", &ca.server_pair(&["a.test"]));
    let secret = Kubelet::new(&s.path("b"));
    let b = ca.server_pair(&["b.test"]);
    secret.write(&[("tls.crt", &b.cert_pem), ("tls.key", &b.key_pem)], false);
    let config = |min_version: &str| {
        s.config(&format!(
            r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: a, type: server-pair, cert_file: a.crt, key_file: a.key }}
  - {{ id: b, type: server-pair, cert_file: b/tls.crt, key_file: b/tls.key }}
  - {{ id: ca, type: ca-bundle, ca_file: ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ ref: a }}
        - ref: b
          client_auth: {{ mode: require_and_verify, ca: {{ ref: ca }} }}
      min_version: "{min_version}"
    routes: [{{ host: b.test, upstream: b }}]
upstreams:
  - name: b
    servers: [https://{}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
"#,
            backend.addr
        ))
    };
    let mut p = Proxy::start(&config("1.2"));
    let addr = p.listener_addr("public").await;
    let client = ca.client_pair("client");
    // What a client of b.test gets, whatever certificate it is served.
    let b_test = |client: Option<&TestPair>| {
        let cfg = checks_name_later_with(rustls::crypto::aws_lc_rs::default_provider(), client);
        async move { get(addr, "b.test", cfg, false, "/", &[]).await }
    };
    let refused = || async {
        if let Ok(r) = b_test(None).await {
            panic!(
                "b.test's route answered a client without a certificate: {}",
                r.status
            );
        }
    };
    assert_eq!(b_test(Some(&client)).await.unwrap().status, 200);
    refused().await;

    let b2 = ca.server_pair(&["b2.test"]);
    secret.write(
        &[("tls.crt", &b2.cert_pem), ("tls.key", &b2.key_pem)],
        false,
    );
    until_served(addr, "b2.test", &ca.cert_pem, &b2.fingerprint).await;

    // b.test is still b's (its new certificate, which does not name it),
    // under b's client_auth.
    refused().await;
    let with_cert = b_test(Some(&client)).await.unwrap();
    assert_eq!((with_cert.status, with_cert.leaf), (200, b2.fingerprint));
    let warned = p
        .wait_log("the dropped name warned about", |v| {
            v["level"] == "WARN" && v["name"] == "b.test" && v["entry"] == "b"
        })
        .await;
    assert!(
        warned["file"].as_str().unwrap().ends_with("b/tls.crt"),
        "{warned}"
    );

    // A reload that rebuilds the listener's TLS but leaves its certs and
    // client_auth alone keeps it (and says so again).
    config("1.3");
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    refused().await;
    let warned = (p.logs().iter())
        .filter(|l| l.contains("no longer names a host"))
        .count();
    assert!(warned >= 2, "the reload rebuilt the listener's TLS");
}
