//! A CA bundle's CRLs per issuer: the newest of an issuer's CRLs decides,
//! however they are listed.

mod support;

use support::*;
use time::{Duration, OffsetDateTime};

/// A proxy with one listener per ca-bundle entry of `bundles` (`id`,
/// `ca_file`, `crl_files`), each named as its entry and requiring a
/// client certificate verified against it. Routes are absent: a client
/// let in gets 404, one refused gets no answer.
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
    s.config(&format!(
        "admin: {{ bind: 127.0.0.1:0 }}\ncerts:\n  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}{certs}\nlisteners:{listeners}\n"
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

/// Two CRLs of one CA, the older listed first: in two files
/// (`crl_files: [old, new]`), or in one (`cat new.crl >> clients.crl`).
/// The newer decides: a client it alone revokes is refused, and one it
/// does not revoke is let in even where the older is past its nextUpdate.
/// The first listed decided (webpki takes the first CRL of the issuer):
/// the newly revoked client got in, or, behind a stale older CRL, every
/// client was refused as `crl_expired`.
#[tokio::test]
async fn the_newest_crl_of_an_issuer_decides() {
    let s = Scene::new();
    let clients = TestCa::new("clients");
    let alice = clients.client_pair("alice");
    let mallory = clients.client_pair("mallory");
    let now = OffsetDateTime::now_utc();
    let fresh_old = clients.crl_of(&[], now - Duration::days(2), now + Duration::days(1), 1);
    let stale_old = clients.crl_of(&[], now - Duration::days(9), now - Duration::days(2), 1);
    let until = now + Duration::days(7);
    let new = clients.crl_of(&[mallory.serial], now - Duration::minutes(1), until, 2);
    write(&s.path("clients.crt"), &clients.cert_pem);
    write(&s.path("old.crl"), &fresh_old);
    write(&s.path("new.crl"), &new);
    write(&s.path("appended.crl"), &format!("{stale_old}{new}"));
    let cfg = scene(
        &s,
        &[
            ("two-files", "clients.crt", "old.crl, new.crl"),
            ("one-file", "clients.crt", "appended.crl"),
        ],
    );
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    for listener in ["two-files", "one-file"] {
        let addr = p.listener_addr(listener).await;
        assert!(
            !admitted(&s, addr, &mallory).await,
            "{listener}: a client the newer CRL revokes got in"
        );
        assert!(
            admitted(&s, addr, &alice).await,
            "{listener}: a client no CRL revokes was refused"
        );
    }
    // The older CRL is named as replaced, with its file.
    let old = s.path("old.crl").display().to_string();
    let note = p
        .wait_log("the superseded CRL", |v| {
            v["entry"] == "two-files"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("CRL superseded"))
        })
        .await;
    assert_eq!(note["file"], old.as_str(), "{note}");
    assert_eq!(
        note["by_file"],
        s.path("new.crl").display().to_string().as_str()
    );
    // What is exported and warned about is the CRL in use.
    let metrics = admin(api, "GET", "/metrics", None, None, &[]).await.body;
    let gauge = format!(
        r#"hotproxy_crl_next_update_timestamp_seconds{{entry="one-file"}} {}"#,
        until.unix_timestamp()
    );
    assert!(metrics.contains(&gauge), "{gauge} not in:\n{metrics}");
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("CRL is past its nextUpdate")),
        "the superseded stale CRL was warned about as in use"
    );
}
