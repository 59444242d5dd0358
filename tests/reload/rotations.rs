//! Rotations among several pairs: one pair of many, no failed request, connection lifetime and drain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use crate::support::writers::{Kubelet, mv_over};
use crate::support::*;

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
    let (mut p, addr) = serve(&s.config(
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
    ))
    .await;
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
    let (kube, first) = localhost_secret(&s, &ca);
    let backend_ca = TestCa::new("backend");
    let backend = Backend::start("b", &backend_ca.server_pair(&["backend.local"]), None).await;
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let extra = format!(
        "    routes: [{{ upstream: b }}]\nupstreams:\n  - name: b\n    servers: [https://{}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}",
        backend.addr
    );
    let (_p, addr) =
        serve(&s.config(&base_config("secret/tls.crt", "secret/tls.key", &extra))).await;
    let held = connect_localhost(addr, &ca.cert_pem).await;
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
                match get_h1(addr, "localhost", &ca).await {
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
        write_secret(&kube, &last);
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

/// `limits.max_connection_lifetime` closes a connection made with
/// rotated-out material once it is older than the limit; before any
/// rotation an old connection is left alone.
#[tokio::test]
async fn max_connection_lifetime_bounds_rotated_out_connections() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (kube, _) = localhost_secret(&s, &ca);
    let limits = "    limits: { max_connection_lifetime: 1s }";
    let (_p, addr) =
        serve(&s.config(&base_config("secret/tls.crt", "secret/tls.key", limits))).await;
    let tls = connect_localhost(addr, &ca.cert_pem).await;
    let (mut send, conn) = keep_open_h1(tls).await;
    // Older than the limit, but nothing rotated: still usable.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        send.send_request(get_localhost()).await.unwrap().status(),
        404
    );
    let next = ca.server_pair(&["localhost"]);
    write_secret(&kube, &next);
    until_served(addr, "localhost", &ca.cert_pem, &next.fingerprint).await;
    // The proxy closes the old connection: the client's connection task ends.
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("connection made with rotated-out material was not closed")
        .unwrap()
        .unwrap();
    assert!(send.send_request(get_localhost()).await.is_err());
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
        write_secret(&kube, &c1);
        let backend = mtls_backend(&backend_ca).await;
        let drain_line = format!("\n      drain_on_rotation: {drain}");
        let extra = route_to_b(backend.addr, "backend-ca.crt", "client", &drain_line);
        let (mut p, addr) = serve(&s.config(&base_config("tls.crt", "tls.key", &extra))).await;
        // The client certificate the backend saw on a request.
        let fetch = || async {
            let r = get_h1(addr, "localhost", &ca.cert_pem).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["client_cert_fingerprint"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(fetch().await, c1.fingerprint);
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
        let c2 = backend_ca.client_pair("proxy-2");
        write_secret(&kube, &c2);
        p.wait_log("client pair reloaded", |v| {
            v["message"] == "certificate reloaded"
                && v["entry"] == "upstreams.b.tls.client_cert"
                && v["fingerprint"] == c2.fingerprint.as_str()
        })
        .await;
        if drain {
            assert_eq!(fetch().await, c2.fingerprint);
            assert_eq!(backend.accepted.load(Ordering::SeqCst), 2);
        } else {
            // The pooled connection is reused as it was made.
            assert_eq!(fetch().await, c1.fingerprint);
            assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
        }
    }
}

/// How a handshake with `at` went, after a request on the connection
/// (which also reads a TLS 1.3 session ticket).
async fn kind(at: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> rustls::HandshakeKind {
    use tokio::io::AsyncWriteExt;
    let mut tls = connect(at, "localhost", cfg).await.unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    read_to_close(&mut tls).await;
    kind
}

/// A fresh client (its own session cache) of each kind of resumption,
/// trusting `ca`.
fn session_clients(ca: &TestCa) -> [(&'static str, Arc<rustls::ClientConfig>); 3] {
    use rustls::client::{Resumption, Tls12Resumption};
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let any = provider
        .signature_verification_algorithms
        .supported_schemes();
    let v12 = || client_config_offering(&ca.cert_pem, &any, &rustls::version::TLS12, None);
    let mut ids = (*v12()).clone();
    ids.resumption =
        Resumption::in_memory_sessions(32).tls12_resumption(Tls12Resumption::SessionIdOnly);
    [
        (
            "TLS 1.3 tickets",
            client_config(&ca.cert_pem, None, &[b"http/1.1"]),
        ),
        ("TLS 1.2 tickets", v12()),
        ("TLS 1.2 session IDs", Arc::new(ids)),
    ]
}

/// Sessions are the listener's own. Two listeners without client auth
/// serving the same name: a session from `public` is not resumed on
/// `other` (it would skip `other`'s certificate and policy; rustls only
/// checks the name), over TLS 1.3 tickets, TLS 1.2 tickets and TLS 1.2
/// session IDs. A session from `public` still resumes on `public` after
/// its certificate rotated (the rebuilt config keeps the listener's
/// ticket key and session cache).
#[tokio::test]
async fn sessions_resume_only_on_their_own_listener_and_across_its_rotations() {
    use rustls::HandshakeKind::{Full, Resumed};
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _b) = pairs_a_and_b(&s, &ca);
    let (mut p, addr) = serve(&s.config(
        r#"
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{ cert_file: a.crt, key_file: a.key }]
  - name: other
    bind: 127.0.0.1:0
    tls:
      certs: [{ cert_file: b.crt, key_file: b.key }]
"#,
    ))
    .await;
    let other = p.listener_addr("other").await;
    let clients = || session_clients(&ca);
    for (what, cfg) in clients() {
        assert_eq!(kind(addr, cfg.clone()).await, Full, "{what}");
        assert_eq!(
            kind(addr, cfg.clone()).await,
            Resumed,
            "{what}: on its listener"
        );
        assert_eq!(kind(other, cfg).await, Full, "{what}: on another listener");
    }
    // Sessions from `public`, then its certificate rotated.
    let before = clients();
    for (what, cfg) in &before {
        assert_eq!(kind(addr, cfg.clone()).await, Full, "{what}");
    }
    let a2 = ca.server_pair(&["localhost"]);
    mv_over(&s.path("a.key"), &a2.key_pem);
    mv_over(&s.path("a.crt"), &a2.cert_pem);
    until_served(addr, "localhost", &ca.cert_pem, &a2.fingerprint).await;
    assert_ne!(a.fingerprint, a2.fingerprint);
    for (what, cfg) in before {
        assert_eq!(kind(addr, cfg).await, Resumed, "{what}: after a rotation");
    }
}

/// A session is resumed only where it was made, also when a reload moves
/// listeners: two listeners without client auth serving the same name
/// swap their ports, and a session made on the first port does not
/// resume on the second, now served by the listener of the same name
/// (the session's name and its old listener's name match, its port and
/// certificate do not). The key went by the listener's name alone, so the
/// moved listener kept it and resumed its old port's sessions.
#[tokio::test]
async fn a_session_does_not_follow_its_listener_to_another_port() {
    use rustls::HandshakeKind::{Full, Resumed};
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b) = pairs_a_and_b(&s, &ca);
    let listeners = |public: u16, other: u16| {
        format!(
            r#"
listeners:
  - name: public
    bind: 127.0.0.1:{public}
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
  - name: other
    bind: 127.0.0.1:{other}
    tls: {{ certs: [{{ cert_file: b.crt, key_file: b.key }}] }}
"#
        )
    };
    let cfg = s.config(&listeners(0, 0));
    let mut p = Proxy::start(&cfg);
    let (one, two) = (
        p.listener_addr("public").await,
        p.listener_addr("other").await,
    );
    // Each named with the port it has, then sessions made on `public`.
    write(&cfg, &listeners(one.port(), two.port()));
    p.wait_log("ports named", |v| v["message"] == "configuration reloaded")
        .await;
    let clients = session_clients(&ca);
    for (what, cfg) in &clients {
        assert_eq!(kind(one, cfg.clone()).await, Full, "{what}");
        assert_eq!(kind(one, cfg.clone()).await, Resumed, "{what}: made");
    }
    // The two swap ports: `public` now serves its pair on `two`.
    write(&cfg, &listeners(two.port(), one.port()));
    wait_until(WAIT, "the swap served", || async {
        served_leaf(two, "localhost", &ca.cert_pem)
            .await
            .ok()
            .as_deref()
            == Some(&*a.fingerprint)
            && served_leaf(one, "localhost", &ca.cert_pem)
                .await
                .ok()
                .as_deref()
                == Some(&*b.fingerprint)
    })
    .await;
    for (what, cfg) in clients {
        assert_eq!(kind(two, cfg).await, Full, "{what}: on another port");
    }
}
