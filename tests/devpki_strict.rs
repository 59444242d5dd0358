//! `certs dev-pki` issues what a strict verifier accepts: `openssl verify
//! -x509_strict` (what Python 3.13's default context enforces) on the real
//! files the command writes, first run and re-issue.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::{output_within_deadline, run_cli};

/// `openssl verify -x509_strict -purpose PURPOSE -CAfile ca.crt CERT`.
fn strict_verify(dir: &Path, cert: &str, purpose: &str) {
    let out = output_within_deadline(
        Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
            .arg(dir.join("ca.crt"))
            .arg(dir.join(cert))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains(": OK"),
        "{cert}: {text}"
    );
}

/// The certificate as `openssl x509 -text` prints it.
fn text(path: &Path) -> String {
    let out = output_within_deadline(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(out.status.success(), "{}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dev_pki_passes_x509_strict() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    for run in 0..2 {
        let (code, stdout, stderr) = run_cli(&["certs", "dev-pki", "--out", out.to_str().unwrap()]);
        assert_eq!(code, 0, "run {run}: {stdout}{stderr}");
        strict_verify(&out, "server.crt", "sslserver");
        strict_verify(&out, "client.crt", "sslclient");
    }
    let ca = text(&out.join("ca.crt"));
    for want in [
        "X509v3 Basic Constraints: critical",
        "CA:TRUE",
        "X509v3 Key Usage: critical",
        "Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(ca.contains(want), "CA lacks {want:?}:\n{ca}");
    }
    let ca_ski = ski(&ca);
    for (leaf, usage) in [
        ("server.crt", "TLS Web Server Authentication"),
        ("client.crt", "TLS Web Client Authentication"),
    ] {
        let t = text(&out.join(leaf));
        for want in [
            "X509v3 Basic Constraints: critical",
            "CA:FALSE",
            "X509v3 Key Usage: critical",
            "Digital Signature",
            "X509v3 Extended Key Usage",
            usage,
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
        ] {
            assert!(t.contains(want), "{leaf} lacks {want:?}:\n{t}");
        }
        // The AKI names the CA's SKI: chain building by key id works.
        assert!(
            t.contains(&ca_ski),
            "{leaf}'s AKI is not the CA's SKI:\n{t}"
        );
    }
}

/// The hex line after "Subject Key Identifier".
fn ski(text: &str) -> String {
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.contains("X509v3 Subject Key Identifier"))
        .expect("an SKI");
    lines.next().expect("the SKI value").trim().to_owned()
}
