//! A client key its certificate's keyUsage does not let sign is refused in the handshake.

use std::time::Duration;

use rcgen::KeyUsagePurpose as Ku;

use crate::common::*;
use crate::support::*;

/// webpki ignores the leaf's keyUsage; OpenSSL (nginx) and BoringSSL
/// (Envoy) refuse a client whose keyUsage is present without
/// `digitalSignature`, the use a TLS client makes of its key (it signs
/// `CertificateVerify`). Such a client is refused with the
/// `unsupported_certificate` alert, counted and logged as `bad_client_cert`;
/// one whose keyUsage holds `digitalSignature`, and one with no keyUsage at
/// all, are let in.
#[tokio::test]
async fn a_client_key_that_may_not_sign_is_refused() {
    let w = world().await;
    let pki = &w.pki;
    let encipher_only = pki.client_with_key_usage("encipher", &[Ku::KeyEncipherment]);
    let cert_sign_only = pki.client_with_key_usage("certsign", &[Ku::KeyCertSign]);
    let signs = pki.client_with_key_usage("signs", &[Ku::DigitalSignature, Ku::KeyEncipherment]);
    let no_key_usage = pki.client_with_key_usage("plain", &[]);
    let (log, extra) = json_access_log(&w);
    let client_auth = "        mode: require_and_verify\n        ca: { ref: partners-ca }";
    let mut p = Proxy::start(&config(&w, client_auth, "", "", &extra));
    let addr = p.listener_addr("partners").await;
    let api = p.admin_addr().await;

    let refused = Outcome::Refused(rustls::Error::AlertReceived(
        rustls::AlertDescription::UnsupportedCertificate,
    ));
    for (what, client) in [
        ("keyUsage keyEncipherment only", &encipher_only),
        ("keyUsage keyCertSign only", &cert_sign_only),
    ] {
        assert_eq!(
            outcome(addr, cfg_for(&w, Some(client)), "/").await,
            refused,
            "{what}"
        );
    }
    for (what, client) in [
        ("keyUsage with digitalSignature", &signs),
        ("no keyUsage", &no_key_usage),
    ] {
        assert_eq!(
            outcome(addr, cfg_for(&w, Some(client)), "/").await,
            Outcome::Status(200),
            "{what}"
        );
    }

    let timeout = Duration::from_secs(10);
    wait_metric(
        api,
        r#"hotproxy_client_auth_denied_total{listener="partners",reason="bad_client_cert"} 2"#,
        timeout,
    )
    .await;
    wait_metric(
        api,
        r#"hotproxy_tls_handshakes_total{listener="partners",result="bad_client_cert"} 2"#,
        timeout,
    )
    .await;
    wait_until(timeout, "the refusal's access-log line", || async {
        read_access_log(&log)
            .iter()
            .any(|l| l["authz"] == "bad_client_cert" && l["status"].is_null())
    })
    .await;
}
