//! A CRL's revoked entries as webpki reads them: a CRL with an entry it refuses is refused at load, naming its file.

mod support;

use support::*;

/// A CRL whose one entry has reasonCode 7 (unused by RFC 5280: x509-parser
/// reads it, webpki refuses it) is refused by `check` as an invalid CRL
/// naming its file and webpki's reason. The load check parsed the CRL's
/// header alone (webpki reads the entries only when the verifier is
/// built): `check` said the configuration was valid, and a start or a
/// reload failed later building the listener's client verifier, naming
/// the listener, not the file.
#[test]
fn a_crl_with_an_entry_webpki_refuses_is_refused_naming_its_file() {
    let s = Scene::new();
    let edge = TestCa::new("edge");
    s.pair("edge", &edge.server_pair(&["localhost"]));
    let clients = TestCa::new("clients");
    let mallory = clients.client_pair("mallory");
    write(&s.path("clients.crt"), &clients.cert_pem);
    write(
        &s.path("clients.crl"),
        &clients.crl_with_reason(mallory.serial, 7),
    );
    let cfg = s.config(
        r#"admin: { bind: 127.0.0.1:0 }
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: clients, type: ca-bundle, ca_file: clients.crt, crl_files: [clients.crl] }
listeners:
  - name: mtls
    bind: 127.0.0.1:0
    tls:
      certs: [{ ref: edge }]
      client_auth: { mode: require_and_verify, ca: { ref: clients } }
"#,
    );
    let (code, stdout, stderr) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    let out = format!("{stdout}{stderr}");
    let line = out
        .lines()
        .find(|l| l.contains("clients.crl: invalid CRL"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("UnsupportedRevocationReason"), "{out}");
}
