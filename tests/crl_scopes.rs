//! An issuer's older full CRL beside a newer CRL of one scope: a
//! certificate that names no CRL distribution point is checked against
//! the full one too, on the path the verifier built; a full CRL its
//! issuer's key does not verify refuses no one, one past its nextUpdate
//! still refuses the clients it lists.

mod support;

use support::*;
use time::{Duration, OffsetDateTime};

/// How long a log line, an access-log line or a metric may take to show.
const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A proxy with one listener per ca-bundle entry of `bundles` (`id`,
/// `ca_file`, `crl_files`), each named as its entry and requiring a
/// client certificate verified against it, its access log (JSON) written
/// to `access.log`. Routes are absent: a client let in gets 404.
fn scene(s: &Scene, bundles: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let edge = TestCa::new("edge");
    s.pair("edge", &edge.server_pair(&["localhost"]));
    write(&s.path("edge-ca.crt"), &edge.cert_pem);
    let certs: String = bundles
        .iter()
        .map(|(id, ca, crls)| {
            format!("\n  - {{ id: {id}, type: ca-bundle, ca_file: {ca}, crl_files: [{crls}] }}")
        })
        .collect();
    let listeners: String = bundles
        .iter()
        .map(|(id, ..)| {
            format!(
                r#"
  - name: {id}
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
      client_auth: {{ mode: require_and_verify, ca: {{ ref: {id} }} }}"#
            )
        })
        .collect();
    let log = s.path("access.log");
    s.config(&format!(
        "admin: {{ bind: 127.0.0.1:0 }}\naccess_log: {{ path: {}, format: json }}\ncerts:\n  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}{certs}\nlisteners:{listeners}\n",
        log.display()
    ))
}

/// Whether `client` is let in by the listener at `addr` (404: no routes).
async fn admitted(s: &Scene, addr: std::net::SocketAddr, client: &TestPair) -> bool {
    let ca = std::fs::read_to_string(s.path("edge-ca.crt")).unwrap();
    let cfg = client_config(&ca, Some(client), &[b"http/1.1"]);
    match get(addr, "localhost", cfg, false, "/", &[]).await {
        Ok(r) => {
            assert_eq!(r.status, 404, "{}", r.body);
            true
        }
        Err(_) => false,
    }
}

/// The refusal at `listener` is `revoked` everywhere the SPEC names a
/// handshake's cause: its log line, its access-log line, both counters.
async fn refused_as_revoked(s: &Scene, p: &mut Proxy, listener: &str) {
    let line = p
        .wait_log("the refusal's line", |v| {
            v["message"] == "TLS handshake failed" && v["listener"] == listener
        })
        .await;
    assert_eq!(line["reason"], "revoked", "{line}");
    let log = s.path("access.log");
    wait_until(WAIT, "the refusal's access-log line", || async {
        read_access_log(&log)
            .iter()
            .any(|l| l["listener"] == listener && l["authz"] == "revoked")
    })
    .await;
    let api = p.admin_addr().await;
    for line in [
        format!(r#"hotproxy_tls_handshakes_total{{listener="{listener}",result="revoked"}} 1"#),
        format!(r#"hotproxy_client_auth_denied_total{{listener="{listener}",reason="revoked"}} 1"#),
    ] {
        wait_metric(api, &line, WAIT).await;
    }
}

/// A CA's full CRL (no issuing distribution point) revokes mallory; a
/// newer CRL of one scope (a partition of its end-entity certificates)
/// does not list it. mallory's certificate names no CRL distribution
/// point, so it is in no partition (RFC 5280 §6.3.3; OpenSSL reads the
/// full CRL for it, nginx refuses it): refused as `revoked`, and alice,
/// whom neither lists, let in. Beside it, the same pair where the full
/// CRL is signed by a key not in the bundle (forged): mallory and alice
/// are let in (a CRL that cannot be trusted refuses no one; not
/// `crl_invalid`). And where the full CRL is past its nextUpdate: mallory
/// is refused as `revoked` all the same (a revocation does not expire
/// with its list; `allow_expired_crl: true` refused him too, so the
/// default was the laxer), alice let in (the newer partition covers her;
/// not `crl_expired`). webpki read the newer scoped CRL alone for a
/// certificate without distribution points: mallory got in; the expired
/// full CRL was passed over: mallory got in there.
#[tokio::test]
async fn an_older_full_crl_revokes_beside_a_newer_scoped_one() {
    let s = Scene::new();
    let clients = TestCa::new("clients");
    let imposter = TestCa::new("clients");
    write(&s.path("clients.crt"), &clients.cert_pem);
    let (alice, mallory) = (clients.client_pair("alice"), clients.client_pair("mallory"));
    let now = OffsetDateTime::now_utc();
    let (older, until) = (now - Duration::days(2), now + Duration::days(7));
    let uri = "http://crl.example/p1.crl";
    let scoped = clients.crl_scoped(&[], now - Duration::minutes(1), until, 2, uri);
    write(&s.path("scoped.crl"), &scoped);
    let full = clients.crl_of(&[mallory.serial], older, until, 1);
    write(&s.path("full.crl"), &full);
    let forged = imposter.crl_of(&[mallory.serial], older, until, 1);
    write(&s.path("forged.crl"), &forged);
    let stale = clients.crl_of(&[mallory.serial], older, now - Duration::days(1), 1);
    write(&s.path("stale.crl"), &stale);
    let cfg = scene(
        &s,
        &[
            ("full", "clients.crt", "full.crl, scoped.crl"),
            ("forged", "clients.crt", "forged.crl, scoped.crl"),
            ("stale", "clients.crt", "stale.crl, scoped.crl"),
        ],
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("full").await;
    assert!(
        !admitted(&s, addr, &mallory).await,
        "a client the older full CRL revokes got in"
    );
    refused_as_revoked(&s, &mut p, "full").await;
    assert!(
        admitted(&s, addr, &alice).await,
        "an unrevoked client was refused"
    );
    let addr = p.listener_addr("forged").await;
    for (who, client) in [("mallory", &mallory), ("alice", &alice)] {
        assert!(
            admitted(&s, addr, client).await,
            "forged: {who} was refused"
        );
    }
    let addr = p.listener_addr("stale").await;
    assert!(
        !admitted(&s, addr, &mallory).await,
        "a client the expired older full CRL revokes got in"
    );
    refused_as_revoked(&s, &mut p, "stale").await;
    assert!(admitted(&s, addr, &alice).await, "stale: alice was refused");
}

/// A re-keyed CA: two CA certificates of one name, keys K1 and K2, in the
/// bundle. K1's full CRL revokes mallory (a client of K1 naming no CRL
/// distribution point); K2's newer full CRL is used in its stead (K1's
/// set aside, warned about: clients of that key refused, `crl_invalid`);
/// K1's CRL of one scope, newer still, does not list mallory. mallory is
/// refused as `crl_invalid`, as the warning says. webpki read K1's scoped
/// CRL alone, the full CRL read on the path (K2's) was passed over as no
/// CRL of K1's: mallory got in, and the warning was false.
#[tokio::test]
async fn a_re_keyed_cas_other_key_full_crl_refuses_as_crl_invalid() {
    let s = Scene::new();
    let (k1, k2) = (TestCa::new("clients"), TestCa::new("clients"));
    write(
        &s.path("clients.crt"),
        &format!("{}{}", k1.cert_pem, k2.cert_pem),
    );
    let mallory = k1.client_pair("mallory");
    let now = OffsetDateTime::now_utc();
    let until = now + Duration::days(7);
    let f1 = k1.crl_of(&[mallory.serial], now - Duration::days(3), until, 1);
    write(&s.path("f1.crl"), &f1);
    write(
        &s.path("f2.crl"),
        &k2.crl_of(&[], now - Duration::days(2), until, 2),
    );
    let uri = "http://crl.example/p1.crl";
    let s1 = k1.crl_scoped(&[], now - Duration::minutes(1), until, 3, uri);
    write(&s.path("s1.crl"), &s1);
    let cfg = scene(&s, &[("rekeyed", "clients.crt", "f1.crl, f2.crl, s1.crl")]);
    let mut p = Proxy::start(&cfg);
    p.wait_log("K1's full CRL set aside", |v| {
        v["entry"] == "rekeyed"
            && v["level"] == "WARN"
            && v["file"].as_str().is_some_and(|f| f.ends_with("f1.crl"))
    })
    .await;
    let addr = p.listener_addr("rekeyed").await;
    assert!(
        !admitted(&s, addr, &mallory).await,
        "a client of the key whose full CRL was set aside got in"
    );
    let line = p
        .wait_log("the refusal's line", |v| {
            v["message"] == "TLS handshake failed" && v["listener"] == "rekeyed"
        })
        .await;
    assert_eq!(line["reason"], "crl_invalid", "{line}");
}

/// A root's older full CRL revokes an issuing CA; the root's newer CRL of
/// one scope (CA and end-entity certificates alike) does not list it. A
/// client that sends that CA in its chain is refused as `revoked`; one of
/// another issuing CA of the root is let in. webpki read the newer scoped
/// CRL alone for the issuing CA: its client got in.
#[tokio::test]
async fn an_issuing_ca_an_older_full_crl_revokes_is_refused() {
    let s = Scene::new();
    let root = TestCa::new("partners root");
    let (revoked, kept) = (
        root.intermediate("issuing 1"),
        root.intermediate("issuing 2"),
    );
    write(&s.path("root.crt"), &root.cert_pem);
    let now = OffsetDateTime::now_utc();
    let until = now + Duration::days(7);
    let full = root.crl_of(&[revoked.serial], now - Duration::days(2), until, 1);
    let uri = "http://crl.example/root-p1.crl";
    let scoped = root.crl_partition(&[], now - Duration::minutes(1), until, 2, uri, None);
    let issuing = format!("{}{}", revoked.crl(&[]), kept.crl(&[]));
    write(&s.path("crls.pem"), &format!("{full}{scoped}{issuing}"));
    let cfg = scene(&s, &[("partners", "root.crt", "crls.pem")]);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    assert!(
        !admitted(&s, addr, &revoked.client_with_chain("chained")).await,
        "a client of an issuing CA the older full CRL revokes got in"
    );
    refused_as_revoked(&s, &mut p, "partners").await;
    assert!(admitted(&s, addr, &kept.client_with_chain("good")).await);
}

/// Open connections are checked again the same way when the CRLs change:
/// mallory and alice connected under a CA's scoped CRL alone, then the
/// CA's older full CRL revoking mallory is added beside it (`mv` over
/// the CRL file). mallory's open connection closes; alice's serves on.
/// webpki read the newer scoped CRL alone: mallory's stayed open.
#[tokio::test]
async fn an_open_connection_an_added_older_full_crl_revokes_closes() {
    let s = Scene::new();
    let clients = TestCa::new("clients");
    let edge = TestCa::new("edge");
    s.pair("edge", &edge.server_pair(&["localhost"]));
    write(&s.path("clients.crt"), &clients.cert_pem);
    let (alice, mallory) = (clients.client_pair("alice"), clients.client_pair("mallory"));
    let now = OffsetDateTime::now_utc();
    let until = now + Duration::days(7);
    let uri = "http://crl.example/p1.crl";
    let scoped = clients.crl_scoped(&[], now - Duration::minutes(1), until, 2, uri);
    write(&s.path("crls.pem"), &scoped);
    let cfg = s.config(
        r#"
watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: clients, type: ca-bundle, ca_file: clients.crt, crl_files: [crls.pem] }
listeners:
  - name: partners
    bind: 127.0.0.1:0
    limits: { idle_timeout: 1h }
    tls:
      certs: [{ ref: edge }]
      client_auth: { mode: require_and_verify, ca: { ref: clients } }
"#,
    );
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let open = |client: &TestPair| {
        let cfg = client_config(&edge.cert_pem, Some(client), &[b"http/1.1"]);
        async move { keep_open_h1(connect(addr, "localhost", cfg).await.unwrap()).await }
    };
    let (mut mallory_h1, mallory_conn) = open(&mallory).await;
    let (mut alice_h1, _alice_conn) = open(&alice).await;
    for h1 in [&mut mallory_h1, &mut alice_h1] {
        let status = h1.send_request(get_localhost()).await.unwrap().status();
        assert_eq!(status, 404, "served (no route for /)");
    }
    let full = clients.crl_of(&[mallory.serial], now - Duration::days(2), until, 1);
    support::writers::mv_over(&s.path("crls.pem"), &format!("{full}{scoped}"));
    within_deadline("mallory's open connection closed", mallory_conn)
        .await
        .unwrap()
        .unwrap();
    let status = alice_h1
        .send_request(get_localhost())
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "alice's connection serves on");
}
