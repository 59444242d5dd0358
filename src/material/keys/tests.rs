//! Tests of naming a refused key: another kind's whole key under a label, multi-prime RSA.

use super::*;
use rustls_pki_types::pem::PemObject;

/// A key `openssl ARGS` writes to stdout, as its DER (the one PEM
/// section's body, whatever its label).
fn openssl_der(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .expect("openssl on PATH (tests/identity uses it too)");
    assert!(out.status.success(), "openssl {args:?}");
    let (_, der) =
        <(rustls_pki_types::pem::SectionKind, Vec<u8>)>::from_pem_slice(&out.stdout).unwrap();
    der
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
}

/// What `der` under `BEGIN LABEL` is refused as: the signing provider
/// refuses it (the test fails if it takes it), and [`refusal`] says why.
fn refused(label: &str, der: &[u8]) -> String {
    let key = PrivateKeyDer::from_pem_slice(pem(label, der).as_bytes()).unwrap();
    let provider = crate::tls::provider::get();
    let Err(e) = provider.key_provider.load_private_key(key.clone_key()) else {
        panic!("{label}: the provider took it");
    };
    refusal(&key, &e.to_string())
}

/// A whole key of one kind under another's label (a PKCS#1 RSA key under
/// `PRIVATE KEY`, as some tools write it or a hand edit dropping "RSA "
/// leaves it; an EC key's SEC1 body there; a PKCS#8 or PKCS#1 body under
/// `EC PRIVATE KEY`; an EC PKCS#8 key there loads, aws-lc reading
/// both) is said to be not the kind its label names: it was
/// called damaged ("could not be parsed (its DER is damaged or cut
/// short)"), sending the operator after a file that is intact.
#[test]
fn a_whole_key_under_another_label_is_named_mislabelled() {
    let pkcs1 = openssl_der(&["genrsa", "-traditional", "2048"]);
    let rsa_pkcs8 = openssl_der(&["genrsa", "2048"]);
    let sec1 = openssl_der(&["ecparam", "-name", "prime256v1", "-genkey", "-noout"]);
    for (label, kind, body, what) in [
        ("PRIVATE KEY", "PKCS#8", &pkcs1, "PKCS#1"),
        ("PRIVATE KEY", "PKCS#8", &sec1, "SEC1"),
        ("EC PRIVATE KEY", "EC", &rsa_pkcs8, "RSA PKCS#8"),
        ("EC PRIVATE KEY", "EC", &pkcs1, "PKCS#1"),
    ] {
        let e = refused(label, body);
        assert!(
            e.starts_with(&format!(
                "its body is not the {kind} key its label ({label}) says: "
            )),
            "{what} under {label}: {e}"
        );
        assert!(!e.contains("damaged"), "{what} under {label}: {e}");
    }
}

/// A multi-prime RSA key (`openssl genrsa -primes 3`: PKCS#1 version 1),
/// whole and valid, which aws-lc refuses, is named as a kind hotproxy
/// does not support, as PKCS#8 and as PKCS#1: it was "could not be
/// parsed (RSA 2048-bit; damaged or inconsistent)".
#[test]
fn a_multi_prime_rsa_key_is_named_unsupported() {
    for (label, args) in [
        ("PRIVATE KEY", &["genrsa", "-primes", "3", "2048"][..]),
        (
            "RSA PRIVATE KEY",
            &["genrsa", "-traditional", "-primes", "3", "2048"][..],
        ),
    ] {
        let e = refused(label, &openssl_der(args));
        assert_eq!(
            e,
            "multi-prime RSA keys are not supported; use RSA 2048-8192 bits, \
             ECDSA P-256/P-384/P-521 or Ed25519",
            "{label}"
        );
    }
}
