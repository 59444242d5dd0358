//! Property tests for the parsers that face operator and attacker input:
//! the configuration loader and PEM reading. Neither may panic on any
//! input; the loader must place every problem it reports.

use std::path::Path;

use hotproxy::config::{self, EntryKind, EntrySource};
use hotproxy::material::pem::{self, Raw};
use proptest::prelude::*;
use proptest::test_runner::{Config as Cases, TestRunner};

/// A configuration that uses most of the schema, for mutation.
const BASE: &str = r#"
runtime: { worker_threads: 2, shutdown_grace: 5s }
watch: { debounce: 100ms, poll_interval: 30s, settle_timeout: 2s }
admin:
  bind: 127.0.0.1:9901
  tokens: [{ role: editor, token_env: HOTPROXY_TOKEN }]
store: { path: data/store.json, key_file: data/store.key }
certs:
  - { id: edge, type: server-pair, cert_file: tls/edge.crt, key_file: tls/edge.key }
  - { id: clients, type: ca-bundle, ca_file: tls/ca.crt, crl_files: [tls/ca.crl] }
  - { id: up, type: client-pair, cert_file: tls/up.crt, key_file: tls/up.key }
upstreams:
  - name: app
    servers: ["https://127.0.0.2:8443"]
    tls: { ca: { ref: clients }, client_cert: { ref: up }, server_name: app.test }
listeners:
  - name: public
    bind: 0.0.0.0:8443
    tls:
      certs: [{ ref: edge, server_names: [a.test, "*.b.test"] }]
      client_auth: { mode: verify_if_given, ca: { ref: clients } }
      alpn: [h2, http/1.1]
    routes:
      - { host: a.test, path_prefix: /api, upstream: app }
      - { upstream: app }
"#;

/// Parse `text`; a panic fails the property, and so does a problem
/// without a location (an operator could not find it in the file).
fn parses_or_locates(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = config::parse(text, Path::new("/etc/hotproxy/config.yaml")) {
        prop_assert!(!e.problems.is_empty(), "an error without problems");
        for p in &e.problems {
            prop_assert!(
                !p.location.trim().is_empty(),
                "problem without a location: {:?} in\n{}",
                p.message,
                text
            );
            prop_assert!(!p.message.trim().is_empty());
        }
    }
    Ok(())
}

/// One edit of a text: delete, insert or replace a run of characters, or
/// cut it short. YAML is mostly punctuation and indentation, so the
/// inserted material leans on those.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, String),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let snippet = prop_oneof![
        "[ :{}\\[\\],\\-#&*!|>'\"%@`\n\t]{1,6}",
        "[a-z_]{1,10}: ",
        "\n  - ",
        Just("${NOPE}".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("-1".to_owned()),
        Just("1h".to_owned()),
        Just("~".to_owned()),
        any::<String>(),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), snippet.clone()).prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), snippet).prop_map(|(a, s)| Edit::Replace(a, s)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Apply `e` to `text` at char boundaries.
fn apply(text: &str, e: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |a: usize| a % (chars.len() + 1);
    let join = |v: &[char]| v.iter().collect::<String>();
    match e {
        Edit::Delete(a, n) => {
            let a = at(*a);
            let b = (a + n).min(chars.len());
            join(&chars[..a]) + &join(&chars[b..])
        }
        Edit::Insert(a, s) => {
            let a = at(*a);
            join(&chars[..a]) + s + &join(&chars[a..])
        }
        Edit::Replace(a, s) => {
            let a = at(*a);
            let b = (a + s.chars().count()).min(chars.len());
            join(&chars[..a]) + s + &join(&chars[b..])
        }
        Edit::Truncate(a) => join(&chars[..at(*a)]),
    }
}

proptest! {
    #![proptest_config(Cases { cases: 256, ..Cases::default() })]

    /// Mutations of a real configuration: never a panic, every problem placed.
    #[test]
    fn config_mutations_never_panic(edits in prop::collection::vec(edit(), 1..6)) {
        let text = edits.iter().fold(BASE.to_owned(), |t, e| apply(&t, e));
        parses_or_locates(&text)?;
    }

    /// Arbitrary text, and arbitrary YAML-ish text.
    #[test]
    fn config_arbitrary_text_never_panics(
        text in prop_oneof![
            any::<String>(),
            "([a-z_]{1,12}: ?[\\[\\]{}a-z0-9:,. \\-]{0,20}\n {0,6}){0,12}",
        ]
    ) {
        parses_or_locates(&text)?;
    }
}

/// The unmutated base configuration parses (else the mutations above test
/// only the error path).
#[test]
fn config_base_is_valid() {
    config::parse(BASE, Path::new("/etc/hotproxy/config.yaml")).unwrap();
}

/// A real CA, pair and CRL, generated once, as PEM.
struct Pki {
    cert: String,
    key: String,
    ca: String,
    crl: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["a.test".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let crl = CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    Pki {
        cert: leaf.pem() + &ca.pem(),
        key: key.serialize_pem(),
        ca: ca.pem(),
        crl: crl.pem().unwrap(),
    }
}

fn pair_source() -> EntrySource {
    EntrySource::PairFiles {
        cert_file: "/x/cert.pem".into(),
        key_file: "/x/key.pem".into(),
    }
}

fn ca_source() -> EntrySource {
    EntrySource::CaFiles {
        ca_file: "/x/ca.pem".into(),
        crl_files: vec!["/x/ca.crl".into()],
    }
}

/// Parse the pair and the bundle from these bytes; Ok or an error, never a
/// panic, and an error never echoes the bytes it was given.
fn parse_all(cert: &[u8], key: &[u8], ca: &[u8], crl: &[u8]) -> Result<(), TestCaseError> {
    let raw = |parts: Vec<Vec<u8>>| Raw {
        parts,
        hash: [0; 32],
    };
    let results = [
        pem::parse(
            EntryKind::ServerPair,
            &pair_source(),
            &raw(vec![cert.to_vec(), key.to_vec()]),
        )
        .err(),
        pem::parse(
            EntryKind::CaBundle,
            &ca_source(),
            &raw(vec![ca.to_vec(), crl.to_vec()]),
        )
        .err(),
    ];
    for e in results.into_iter().flatten() {
        let text = e.to_string();
        prop_assert!(!text.contains("PRIVATE KEY"), "{}", text);
        prop_assert!(
            text.starts_with("/x/"),
            "error does not name the file: {}",
            text
        );
    }
    Ok(())
}

/// Garbage, truncations and bit flips of real PEM: errors, never a panic.
#[test]
fn pem_garbage_and_truncation_never_panic() {
    let pki = pki();
    let mut runner = TestRunner::new(Cases {
        cases: 512,
        ..Cases::default()
    });
    let texts = [
        pki.cert.clone(),
        pki.key.clone(),
        pki.ca.clone(),
        pki.crl.clone(),
    ];
    let damaged = (
        0usize..4,
        any::<prop::sample::Index>(),
        prop_oneof![Just(None), any::<u8>().prop_map(Some),],
        prop::collection::vec(any::<u8>(), 0..64),
    );
    runner
        .run(&damaged, |(which, at, flip, junk)| {
            let mut parts: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
            let p = &mut parts[which];
            let i = at.index(p.len());
            match flip {
                // Cut short (a `cp` half-way), then maybe junk after.
                None => {
                    p.truncate(i);
                    p.extend_from_slice(&junk);
                }
                // One byte changed (base64, a marker, DER inside).
                Some(b) => p[i] ^= b.max(1),
            }
            parse_all(&parts[0], &parts[1], &parts[2], &parts[3])
        })
        .unwrap();
    // Pure garbage in every position.
    let mut runner = TestRunner::new(Cases {
        cases: 256,
        ..Cases::default()
    });
    let garbage = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        "(-----(BEGIN|END) [A-Z ]{0,20}-----\n[A-Za-z0-9+/=\n]{0,80}){0,6}"
            .prop_map(String::into_bytes),
    ];
    runner
        .run(&(garbage.clone(), garbage), |(a, b)| {
            parse_all(&a, &b, &a, &b)
        })
        .unwrap();
}

/// Huge inputs: megabytes of markers, of base64, of one endless section.
/// Errors or Ok, never a panic; memory stays proportional to the input.
#[test]
fn pem_huge_inputs_never_panic() {
    let pki = pki();
    let big = 4 << 20;
    let markers = "-----BEGIN CERTIFICATE-----\n".repeat(big / 28);
    let endless = format!(
        "-----BEGIN CERTIFICATE-----\n{}",
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n".repeat(big / 65)
    );
    let many = pki.ca.repeat((1 << 20) / pki.ca.len());
    let zeros = vec![0u8; big];
    for input in [
        markers.as_bytes(),
        endless.as_bytes(),
        many.as_bytes(),
        &zeros,
    ] {
        parse_all(input, input, input, input).unwrap();
    }
    // A big but valid bundle still parses: size alone is not an error here
    // (the file reader caps sizes before parsing).
    let raw = Raw {
        parts: vec![many.into_bytes(), pki.crl.into_bytes()],
        hash: [0; 32],
    };
    pem::parse(EntryKind::CaBundle, &ca_source(), &raw).unwrap();
}
