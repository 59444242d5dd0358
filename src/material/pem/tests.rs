//! Tests of reading and validating PEM: sections hotproxy does not read, encrypted keys, CRLs webpki refuses, v1 leaves, oversize files.

use super::*;
use crate::fsutil::test_support::{mkfifo, within_bounded_time};
use rustls_pki_types::CertificateRevocationListDer;
use std::path::PathBuf;

/// Load `ca_file` as a CA bundle, failing the test if the read blocks.
fn load_ca(ca_file: PathBuf) -> Result<Loaded, MaterialError> {
    within_bounded_time("reading the CA bundle", move || {
        let source = EntrySource::CaFiles {
            ca_file,
            crl_files: Vec::new(),
        };
        load(EntryKind::CaBundle, &source)
    })
}

/// A FIFO named as `ca_file` is refused at once, naming the file; no
/// writer ever opens it, so a blocking read would hang.
#[test]
fn a_fifo_ca_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("ca.crt");
    mkfifo(&fifo);
    let Err(e) = load_ca(fifo.clone()) else {
        panic!("a FIFO was read")
    };
    assert_eq!(
        e,
        MaterialError::Unreadable {
            origin: fifo.display().to_string(),
            reason: "not a regular file (a FIFO)".into(),
        }
    );
}

/// A pair's files, written into `d`.
fn load_pair(d: &tempfile::TempDir, cert: &str, key: &str) -> Result<Loaded, MaterialError> {
    let (cert_file, key_file) = (d.path().join("tls.crt"), d.path().join("tls.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    load(
        EntryKind::ServerPair,
        &EntrySource::PairFiles {
            cert_file,
            key_file,
        },
    )
}

/// `openssl ecparam -name prime256v1 -genkey` writes `EC PARAMETERS`
/// before the key: skipped, as OpenSSL and Go skip it (it was refused
/// as a truncated file, and waited on). An encrypted key, or a section
/// of a kind hotproxy does not read, is refused at once by its label,
/// not waited on as a writer mid-way; a section cut off still is.
#[test]
fn sections_hotproxy_does_not_read() {
    let d = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let (cert, key) = (pair.cert.pem(), pair.signing_key.serialize_pem());
    const PARAMS: &str =
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
    assert!(load_pair(&d, &cert, &format!("{PARAMS}{key}")).is_ok());
    let whole = |label: &str| format!("-----BEGIN {label}-----\nMIIB\n-----END {label}-----\n");
    for (label, says) in [
        ("ENCRYPTED PRIVATE KEY", "an encrypted private key"),
        ("TRUSTED CERTIFICATE", "openssl x509"),
        ("DSA PARAMETERS", "hotproxy reads CERTIFICATE"),
    ] {
        let e = load_pair(&d, &cert, &format!("{}{key}", whole(label))).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("`{label}`")) && text.contains(says),
            "{text}"
        );
        assert!(!e.is_transient(), "{text}");
    }
    let e = load_pair(
        &d,
        &cert,
        &format!("{key}-----BEGIN EC PARAMETERS-----\nBggq"),
    )
    .unwrap_err();
    assert!(e.is_transient(), "{e}");
    let e = load_pair(&d, &cert, &whole("<script>")).unwrap_err();
    assert!(e.to_string().contains("section `?`"), "{e}");
}

/// A file of text and no BEGIN line yet (`openssl x509 -text > FILE`
/// read before it reaches the PEM, `openssl pkcs12`'s "Bag Attributes"
/// lines) is a writer at work, waited on; a file that holds PEM but not
/// what it should, or binary bytes (a DER certificate where PEM was
/// meant), is whole, refused at once. Each said as before.
#[test]
fn text_before_the_pem_is_waited_on() {
    let d = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let (cert, key) = (pair.cert.pem(), pair.signing_key.serialize_pem());
    let bags = "Bag Attributes\n    localKeyID: 01 00 00 00 \nsubject=CN = a.test\n";
    let text = "Certificate:\n    Data:\n        Version: 3 (0x2)\n\tSerial Number: 5 (0x5)\r\n";
    for lead_in in [bags, text, "Key Attributes: <No Attributes>\n-----BEG"] {
        let e = load_pair(&d, lead_in, &key).unwrap_err();
        assert!(
            e.to_string().ends_with("tls.crt: no PEM certificate found"),
            "{e}"
        );
        assert!(e.is_transient(), "{e}");
        let e = load_pair(&d, &cert, lead_in).unwrap_err();
        assert!(
            e.to_string().contains("tls.key: no PEM private key found"),
            "{e}"
        );
        assert!(e.is_transient(), "{e}");
    }
    for (cert, key) in [(&key, &key), (&cert, &cert)] {
        let e = load_pair(&d, cert, key).unwrap_err();
        assert!(
            matches!(
                e,
                MaterialError::NoCertificate { .. } | MaterialError::NoKey { .. }
            ),
            "{e}"
        );
        assert!(!e.is_transient(), "{e}");
    }
    std::fs::write(d.path().join("der.crt"), pair.cert.der()).unwrap();
    let source = EntrySource::PairFiles {
        cert_file: d.path().join("der.crt"),
        key_file: d.path().join("tls.key"),
    };
    let e = load(EntryKind::ServerPair, &source).unwrap_err();
    assert!(
        e.to_string().ends_with("der.crt: no PEM certificate found"),
        "{e}"
    );
    assert!(!e.is_transient(), "{e}");
}

/// A key encrypted the old way (`openssl ec -aes256` writes `EC
/// PRIVATE KEY` with `Proc-Type: 4,ENCRYPTED` and `DEK-Info:` headers)
/// is refused at once, as `ENCRYPTED PRIVATE KEY` is: its headers
/// failed base64, and it was waited on as a half-written file ("invalid
/// base64").
#[test]
fn an_old_style_encrypted_key_is_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let (cert, key) = (pair.cert.pem(), pair.signing_key.serialize_pem());
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for (label, eol) in [("EC PRIVATE KEY", "\n"), ("RSA PRIVATE KEY", "\r\n")] {
        let encrypted = [
            format!("-----BEGIN {label}-----"),
            "Proc-Type: 4,ENCRYPTED".into(),
            "DEK-Info: AES-256-CBC,6BBD6D7751A9B78DC3F7C432AA36FE53".into(),
            String::new(),
            body.clone(),
            format!("-----END {label}-----"),
            String::new(),
        ]
        .join(eol);
        let e = load_pair(&d, &cert, &encrypted).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("`{label}`")) && text.contains("an encrypted private key"),
            "{text}"
        );
        assert!(!e.is_transient(), "{text}");
    }
}

/// A file of many BEGIN lines of a kind hotproxy does not read, and
/// no END line: each used to be looked for in the rest of the file,
/// which took minutes (1 MiB of them: ~50 s in a release build, on the
/// reloader's thread); one pass now.
#[test]
fn many_unknown_begin_lines_are_read_in_one_pass() {
    let cert = rcgen::generate_simple_self_signed(vec!["a.test".into()])
        .unwrap()
        .cert
        .pem();
    let mut bytes = "-----BEGIN A-----\n".repeat(40_000);
    bytes.push_str(&cert);
    let e = sections("t.pem", bytes.as_bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.pem: malformed PEM: 40001 BEGIN markers but 1 complete sections (truncated or unknown section)"
    );
    // A whole unknown section is still refused by its label, an END
    // before its BEGIN still does not close it.
    let whole = format!("-----BEGIN A-----\nMIIB\n-----END A-----\n{cert}");
    let e = sections("t.pem", whole.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("section `A`"), "{e}");
    let backwards = format!("-----END A-----\n-----BEGIN A-----\nMIIB\n{cert}");
    let e = sections("t.pem", backwards.as_bytes()).unwrap_err();
    assert!(e.is_transient(), "{e}");
}

/// A CA, and a CRL from it, as PEM.
fn ca_and_crl() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_identifier_method = KeyIdMethod::Sha256;
    let ca = p.self_signed(&key).unwrap().pem();
    let now = time::OffsetDateTime::now_utc();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(1),
        next_update: now + time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&Issuer::new(p, key))
    .unwrap();
    (ca, crl.pem().unwrap())
}

/// The header length and content length of the DER value at `b`.
fn tlv(b: &[u8]) -> (usize, usize) {
    match b[1] {
        n if n < 0x80 => (2, n as usize),
        n => {
            let k = (n & 0x7f) as usize;
            (
                2 + k,
                b[2..2 + k].iter().fold(0, |a, &x| a << 8 | x as usize),
            )
        }
    }
}

/// `content` as a DER value of `tag`.
fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match len {
        0..0x80 => out.push(len as u8),
        0x80..0x100 => out.extend([0x81, len as u8]),
        _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
}

/// The CRL in `pem` without its version field: a v1 CRL, which
/// x509-parser reads and webpki (which checks revocation) refuses.
fn as_v1(crl: &str) -> String {
    let der = CertificateRevocationListDer::from_pem_slice(crl.as_bytes()).unwrap();
    let (outer, _) = tlv(&der);
    let tbs = &der[outer..];
    let (head, len) = tlv(tbs);
    assert_eq!(tbs[head..head + 3], [2, 1, 1], "a v2 CRL's version");
    let mut body = wrap(0x30, &tbs[head + 3..head + len]);
    body.extend_from_slice(&tbs[head + len..]);
    pem("X509 CRL", &wrap(0x30, &body))
}

/// A self-signed X.509 v1 certificate (no version field, no
/// extensions: what `openssl x509 -req` writes without `-extfile`),
/// as PEM, and its key.
fn v1_self_signed() -> (String, rcgen::KeyPair) {
    use rcgen::SigningKey;
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let der = pair.cert.der();
    let (outer, _) = tlv(der);
    let (head, len) = tlv(&der[outer..]);
    let tbs_end = outer + head + len;
    // The TBS fields; the first is the version ([0]), the last the
    // extensions ([3]).
    let mut fields = Vec::new();
    let mut at = outer + head;
    while at < tbs_end {
        let (h, l) = tlv(&der[at..]);
        fields.push(&der[at..at + h + l]);
        at += h + l;
    }
    assert_eq!((fields[0][0], fields[fields.len() - 1][0]), (0xa0, 0xa3));
    let tbs = wrap(0x30, &fields[1..fields.len() - 1].concat());
    let (h, l) = tlv(&der[tbs_end..]);
    let algorithm = &der[tbs_end..tbs_end + h + l];
    let mut signature = vec![0];
    signature.extend(pair.signing_key.sign(&tbs).unwrap());
    let cert = wrap(
        0x30,
        &[tbs, algorithm.to_vec(), wrap(0x03, &signature)].concat(),
    );
    (pem("CERTIFICATE", &cert), pair.signing_key)
}

/// An X.509 v1 leaf, which webpki (so rustls's `keys_match`) refuses
/// to parse, is checked against its key all the same: with another
/// key it was accepted unchecked, and a mismatched pair replaced good
/// material; with its own key it loads (hotproxy serves it; OpenSSL
/// clients accept v1 certificates).
#[test]
fn a_v1_leaf_is_checked_against_its_key() {
    let d = tempfile::tempdir().unwrap();
    let (cert, key) = v1_self_signed();
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert!(webpki::EndEntityCert::try_from(&der).is_err());
    let loaded = load_pair(&d, &cert, &key.serialize_pem()).unwrap();
    let Material::Pair(pair) = loaded.material else {
        panic!("not a pair")
    };
    assert_eq!(pair.leaf.subject, "CN=rcgen self signed cert");
    let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let e = load_pair(&d, &cert, &other).unwrap_err();
    assert!(matches!(e, MaterialError::KeyMismatch { .. }), "{e}");
}

/// A CRL webpki cannot use to check revocation is refused when it is
/// loaded, naming it: it used to load (x509-parser reads a v1 CRL),
/// then fail when the listener's verifier was built, after the
/// material had been taken, and `/certs/validate` called it valid.
#[test]
fn a_crl_webpki_refuses_is_refused_at_load() {
    let (ca, crl) = ca_and_crl();
    let load_with = |crl: String| {
        let source = EntrySource::CaInline {
            ca_pem: ca.clone(),
            crl_pem: Some(crl),
        };
        load(EntryKind::CaBundle, &source)
    };
    assert!(load_with(crl.clone()).is_ok());
    let e = load_with(as_v1(&crl)).unwrap_err();
    assert!(matches!(e, MaterialError::BadCrl { .. }), "{e}");
    assert!(e.to_string().contains("inline crl_pem"), "{e}");
}

/// A CRL file of text and no BEGIN line yet (`openssl crl -text > FILE`
/// read before it reaches the PEM) is a writer at work, waited on as a
/// certificate file is; text before a whole CRL's PEM is read as for
/// certificates. A CRL file that holds PEM but no CRL, or binary bytes (a
/// DER CRL, where PEM was meant), is whole, refused at once. Each said as
/// before.
#[test]
fn text_before_a_crl_s_pem_is_waited_on() {
    let d = tempfile::tempdir().unwrap();
    let (ca, crl) = ca_and_crl();
    let ca_file = d.path().join("ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    let crl_file = d.path().join("ca.crl");
    let load_with = |bytes: &[u8]| {
        std::fs::write(&crl_file, bytes).unwrap();
        let source = EntrySource::CaFiles {
            ca_file: ca_file.clone(),
            crl_files: vec![crl_file.clone()],
        };
        load(EntryKind::CaBundle, &source)
    };
    let text = "Certificate Revocation List (CRL):\n        Version 2 (0x1)\n\tSignature Algorithm: ecdsa-with-SHA256\r\n";
    let no_crl = format!(
        "{}: invalid CRL: no X509 CRL section found",
        crl_file.display()
    );
    for lead_in in [text, "Revoked Certificates:\n-----BEG"] {
        let e = load_with(lead_in.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), no_crl);
        assert!(e.is_transient(), "{e}");
    }
    let loaded = load_with(format!("{text}{crl}").as_bytes()).unwrap();
    assert_eq!(loaded.ca().expect("a CA bundle").crls.len(), 1);
    let der = CertificateRevocationListDer::from_pem_slice(crl.as_bytes()).unwrap();
    for whole in [ca.as_bytes(), der.as_ref()] {
        let e = load_with(whole).unwrap_err();
        assert_eq!(e.to_string(), no_crl);
        assert!(!e.is_transient(), "{e}");
    }
}

/// A CA file above `MAX_PEM_FILE` is refused before it is loaded.
#[test]
fn an_oversize_ca_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("ca.crt");
    std::fs::write(&big, vec![b'x'; MAX_PEM_FILE as usize + 1]).unwrap();
    let Err(e) = load_ca(big.clone()) else {
        panic!("an oversize file was read")
    };
    assert_eq!(
        e.to_string(),
        format!(
            "{}: cannot read: larger than the 1048576-byte limit",
            big.display()
        )
    );
}

/// The files of one entry are read up to `MAX_ENTRY_BYTES` together:
/// up to 64 CRL files of up to 1 MiB each, read twice (two reads must
/// agree), held 130 MiB of the reloader's memory at once.
#[test]
fn an_entry_s_files_are_bounded_together() {
    let d = tempfile::tempdir().unwrap();
    let part = vec![b'A'; MAX_PEM_FILE as usize];
    let ca_file = d.path().join("ca.crt");
    std::fs::write(&ca_file, &part).unwrap();
    let parts = (MAX_ENTRY_BYTES / MAX_PEM_FILE) as usize;
    let crl_files: Vec<PathBuf> = (0..parts)
        .map(|i| d.path().join(format!("{i}.crl")))
        .collect();
    for f in &crl_files {
        std::fs::write(f, &part).unwrap();
    }
    let last = crl_files.last().unwrap().display().to_string();
    let source = EntrySource::CaFiles { ca_file, crl_files };
    let e = load(EntryKind::CaBundle, &source).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{last}: cannot read: the entry's files together pass the 8388608-byte limit")
    );
    assert!(!e.is_transient());
}

/// A key `openssl SUBCOMMAND -out FILE ARGS` writes, as PEM.
fn openssl_key(d: &tempfile::TempDir, subcommand: &str, args: &[&str]) -> String {
    let out = d.path().join("openssl.key");
    let status = std::process::Command::new("openssl")
        .arg(subcommand)
        .arg("-out")
        .arg(&out)
        .args(args)
        .status()
        .expect("openssl on PATH (tests/identity uses it too)");
    assert!(status.success(), "openssl {subcommand} {args:?}");
    std::fs::read_to_string(out).unwrap()
}

/// A well-formed key of an algorithm or size rustls on aws-lc-rs does not
/// sign with is named, with what is supported: it was "failed to parse
/// private key as RSA, ECDSA, or EdDSA", which read as a corrupt file.
#[test]
fn a_key_hotproxy_does_not_sign_with_is_named() {
    let d = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let cert = pair.cert.pem();
    for (subcommand, args, what) in [
        ("genrsa", &["1024"][..], "RSA 1024-bit"),
        ("genrsa", &["-traditional", "1024"][..], "RSA 1024-bit"),
        (
            "genpkey",
            &["-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            "RSA-PSS 2048-bit",
        ),
        (
            "ecparam",
            &["-name", "secp256k1", "-genkey", "-noout"][..],
            "ECDSA secp256k1",
        ),
        ("genpkey", &["-algorithm", "ED448"][..], "Ed448"),
    ] {
        let key = openssl_key(&d, subcommand, args);
        let e = load_pair(&d, &cert, &key).unwrap_err();
        let key_file = d.path().join("tls.key").display().to_string();
        assert_eq!(
            e.to_string(),
            format!(
                "{key_file}: unusable private key: {what} keys are not supported; \
                 use RSA 2048-8192 bits, ECDSA P-256/P-384/P-521 or Ed25519"
            )
        );
    }
    // A supported kind that loads is not described at all.
    assert!(load_pair(&d, &cert, &pair.signing_key.serialize_pem()).is_ok());
}

/// A leaf whose signature does not verify against its issuer in the file
/// is refused as a writer half-way (`BadSignature`, waited on): a
/// self-signed leaf that says so (its authority key identifier its own),
/// its signature's last byte changed. A leaf whose issuer has its name
/// but is not in the file (rcgen's default name on the CA and the leaf,
/// the leaf served alone) is not checked, and loads.
#[test]
fn a_leaf_that_does_not_verify_against_its_issuer_in_the_file_is_waited_on() {
    use rcgen::{CertificateParams, Issuer, KeyIdMethod, KeyPair};
    let d = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["a.test".to_string()]).unwrap();
    p.key_identifier_method = KeyIdMethod::Sha256;
    p.use_authority_key_identifier_extension = true;
    // A subject key identifier too, as `openssl req -x509` writes it.
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    let cert = p.self_signed(&key).unwrap();
    assert!(load_pair(&d, &cert.pem(), &key.serialize_pem()).is_ok());
    let mut der = cert.der().to_vec();
    *der.last_mut().unwrap() ^= 1;
    let bad = pem("CERTIFICATE", &der);
    let e = load_pair(&d, &bad, &key.serialize_pem()).unwrap_err();
    assert!(matches!(e, MaterialError::BadSignature { .. }), "{e}");
    assert_eq!(e.step(), Some(Step::Partial));

    let ca_key = KeyPair::generate().unwrap();
    let ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["a.test".to_string()]).unwrap();
    assert_eq!(leaf.distinguished_name, ca_params.distinguished_name);
    let leaf = leaf
        .signed_by(&leaf_key, &Issuer::new(ca_params, ca_key))
        .unwrap();
    assert!(load_pair(&d, &leaf.pem(), &leaf_key.serialize_pem()).is_ok());
}

/// A self-signed leaf without an authority key identifier (Go's
/// crypto/x509, rcgen's default) followed by another certificate of its
/// name and another key: nothing tells the other is its issuer, so its
/// signature is not checked, and it loads. It used to be checked against
/// the other's key and refused.
#[test]
fn a_self_signed_leaf_without_key_ids_before_a_same_named_cert_loads() {
    use rcgen::{CertificateParams, KeyPair};
    let d = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["a.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let other = CertificateParams::new(vec!["a.test".to_string()])
        .unwrap()
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap();
    let chain = leaf.pem() + &other.pem();
    let loaded = load_pair(&d, &chain, &key.serialize_pem());
    assert!(loaded.is_ok(), "{}", loaded.err().unwrap());
}

/// A leaf signed by a 1024-bit RSA intermediate in the file (`openssl`
/// writes one; rustls verifies RSA keys of 2048 to 8192 bits only):
/// whether its signature verifies cannot be told, so it is not checked,
/// and it loads. It used to be refused as a leaf spliced by a writer.
#[test]
fn a_leaf_signed_by_an_rsa_key_of_a_size_rustls_does_not_verify_loads() {
    let d = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(d.path())
            .args(args)
            .output()
            .expect("openssl on PATH (tests/identity uses it too)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=weak-ca",
        "-days",
        "2",
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=a.test",
    ]);
    std::fs::write(
        d.path().join("leaf.ext"),
        "subjectAltName=DNS:a.test\nauthorityKeyIdentifier=keyid\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "7",
        "-days",
        "1",
        "-sha256",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.crt",
    ]);
    let read = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap();
    let chain = read("leaf.crt") + &read("ca.crt");
    let loaded = load_pair(&d, &chain, &read("leaf.key"));
    assert!(loaded.is_ok(), "{}", loaded.err().unwrap());
}

/// A pair in one file (its cert_file and key_file one path, or a link to
/// it) holding one half (certificates and no key, or a key and no
/// certificate) is half written, waited on; whole, it loads.
#[test]
fn one_half_of_a_pair_file_is_waited_on() {
    let d = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let (cert, key) = (pair.cert.pem(), pair.signing_key.serialize_pem());
    let file = d.path().join("server.pem");
    let link = d.path().join("key.pem");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for key_file in [&file, &link] {
        let source = EntrySource::PairFiles {
            cert_file: file.clone(),
            key_file: key_file.clone(),
        };
        for (half, missing) in [(&cert, "no PEM private key"), (&key, "no PEM certificate")] {
            std::fs::write(&file, half).unwrap();
            let e = load(EntryKind::ServerPair, &source).unwrap_err();
            assert!(e.to_string().contains(missing), "{e}");
            assert!(e.is_transient(), "{e}");
        }
        std::fs::write(&file, format!("{cert}{key}")).unwrap();
        load(EntryKind::ServerPair, &source).unwrap();
    }
}

/// A certificate with 4,000 DNS SANs, two of them again (one in capitals:
/// a CA's bundle of tenant names) loads with each name taken once, in
/// order, and each name compared with a bounded number of those taken
/// before ([`crate::material::info`]'s counted comparisons): searching the
/// names taken so far, as info::inspect did, made 130,000 of them (1 MiB
/// of PEM) cost half a minute per load. The count, not a clock, tells the
/// two apart: such a search compares some 8,000,000 here.
#[test]
fn a_certificate_with_many_names_loads_each_once() {
    let d = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = (0..4_000).map(|i| format!("{i:x}.t")).collect();
    names.extend(["0.T".to_owned(), "1.t".to_owned()]);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let compared = &crate::material::info::COMPARED;
    compared.with(|c| c.set(0));
    let loaded = load_pair(&d, &cert.pem(), &key.serialize_pem()).unwrap();
    let compared = compared.with(|c| c.get());
    let Material::Pair(pair) = &loaded.material else {
        panic!("a pair");
    };
    assert_eq!(pair.leaf.sans.len(), 4_002);
    assert_eq!(pair.leaf.dns_names.len(), 4_000);
    assert_eq!(pair.leaf.dns_names[..2], ["0.t", "1.t"]);
    assert_eq!(pair.leaf.dns_names[3_999], "f9f.t");
    // The two names taken again were compared, on this thread, and the
    // rest about once each at most (the leaf may be inspected twice).
    assert!(
        (2..=4 * 4_002).contains(&compared),
        "{compared} comparisons for 4,002 names"
    );
}

/// An RSA key whose DER is damaged (cut short, or a byte of its
/// structure flipped), as `RSA PRIVATE KEY` (PKCS#1) and as `PRIVATE KEY`
/// (PKCS#8), is refused naming the file and saying the key could not be
/// parsed: under the PKCS#1 label it was called another kind's body
/// "not the RSA key its label says", a mislabelled file, not a damaged one.
#[test]
fn a_damaged_rsa_key_is_named_unparseable_not_mislabelled() {
    use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
    let d = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let cert = pair.cert.pem();
    let key_file = d.path().join("tls.key").display().to_string();
    for (label, args) in [
        ("RSA PRIVATE KEY", &["-traditional", "2048"][..]),
        ("PRIVATE KEY", &["2048"][..]),
    ] {
        let key = openssl_key(&d, "genrsa", args);
        let der = match PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap() {
            PrivateKeyDer::Pkcs1(k) => k.secret_pkcs1_der().to_vec(),
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            other => panic!("{other:?}"),
        };
        let mut flipped = der.clone();
        // The first field's INTEGER tag (after the outer SEQUENCE's
        // four-byte head), a bit flipped.
        flipped[4] ^= 0x20;
        for (damage, body) in [("cut short", &der[..der.len() / 2]), ("flipped", &flipped)] {
            let e = load_pair(&d, &cert, &pem(label, body))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "{key_file}: unusable private key: the key could not be parsed"
                )),
                "{label}, {damage}: {e}"
            );
            assert!(!e.contains("label"), "{label}, {damage}: {e}");
        }
    }
}

/// A PKCS#8 key and an EC (SEC1) key, each relabelled `RSA PRIVATE KEY`,
/// are refused naming the file and saying the body is not what its label
/// says: their second field was taken as an RSA modulus, and they were
/// reported as "RSA 99-bit keys are not supported" and the like.
#[test]
fn a_key_under_another_label_is_not_named_an_rsa_key() {
    use rustls_pki_types::{PrivateSec1KeyDer, pem::PemObject};
    let d = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let cert = pair.cert.pem();
    let pkcs8 = pair.signing_key.serialize_der();
    let sec1 = openssl_key(&d, "ecparam", &["-name", "prime256v1", "-genkey", "-noout"]);
    let sec1 = PrivateSec1KeyDer::from_pem_slice(sec1.as_bytes()).unwrap();
    for body in [&pkcs8[..], sec1.secret_sec1_der()] {
        let e = load_pair(&d, &cert, &pem("RSA PRIVATE KEY", body)).unwrap_err();
        let key_file = d.path().join("tls.key").display().to_string();
        let e = e.to_string();
        assert!(
            e.starts_with(&format!(
                "{key_file}: unusable private key: its body is not the RSA key its label \
                 (RSA PRIVATE KEY) says: "
            )),
            "{e}"
        );
        assert!(!e.contains("-bit"), "{e}");
    }
}

/// DER under whole PEM that does not parse is what a writer that does not
/// truncate (`rsync --inplace`) leaves read half-way over material of
/// another length: a certificate cut short or followed by bytes, a key cut
/// short, or a new key's head on the old one's tail (its public key the
/// old one's). Waited on (`Torn`, worded as before); what is refused for
/// what it is (a key of a size not supported, a leaf not for TLS servers)
/// still is at once.
#[test]
fn der_that_does_not_parse_is_waited_on() {
    let d = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let (cert, key) = (pair.cert.pem(), pair.signing_key.serialize_pem());
    let der = pair.cert.der().to_vec();
    let crt = d.path().join("tls.crt").display().to_string();
    for body in [&der[..der.len() - 1], &[&der[..], &[0]].concat()] {
        let e = load_pair(&d, &pem("CERTIFICATE", body), &key).unwrap_err();
        let invalid = format!("{crt}: invalid certificate: ");
        assert!(e.to_string().starts_with(&invalid), "{e}");
        assert_eq!(e.step(), Some(Step::Partial), "{e}");
    }
    let old = pair.signing_key.serialize_der();
    let new = rcgen::KeyPair::generate().unwrap().serialize_der();
    let half = old.len() / 2;
    for body in [&old[..half], &[&new[..half], &old[half..]].concat()] {
        let e = load_pair(&d, &cert, &pem("PRIVATE KEY", body)).unwrap_err();
        let damaged = "tls.key: unusable private key: the key could not be parsed (";
        assert!(e.to_string().contains(damaged), "{e}");
        assert_eq!(e.step(), Some(Step::Partial), "{e}");
    }
    let e = load_pair(&d, &cert, &openssl_key(&d, "genrsa", &["1024"])).unwrap_err();
    assert!(matches!(e, MaterialError::BadKey { .. }), "{e}");
    assert_eq!(e.step(), None, "{e}");
    let mut p = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = p.self_signed(&pair.signing_key).unwrap();
    let e = load_pair(&d, &client.pem(), &key).unwrap_err();
    assert!(matches!(e, MaterialError::BadCertificate { .. }), "{e}");
    assert_eq!(e.step(), None, "{e}");
}
