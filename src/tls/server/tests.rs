//! Tests of the listener config's parts: shadowed names, the SNI resolver's choice among a name's pairs, handshake failure results.

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

#[test]
fn a_later_pair_answering_an_earlier_name_with_other_client_auth_is_found() {
    let edge = names(&["localhost", "*.example.com"]);
    let admin = names(&["LocalHost."]);
    let (none, verify) = ("none", "require_and_verify");
    assert_eq!(
        shadowed(&[&edge, &admin], &[&none, &verify]),
        Some(Shadowed {
            name: "localhost".into(),
            earlier: 0,
            later: 1
        })
    );
    // The same policy: whichever pair answers, the client meets it.
    assert_eq!(shadowed(&[&edge, &admin], &[&none, &none]), None);
    // Exact and wildcard names are looked up apart: no shadowing.
    let apex = names(&["example.com", "a.example.com"]);
    assert_eq!(shadowed(&[&edge, &apex], &[&none, &verify]), None);
}

/// Who answers a name a pair no longer lists: exact first, then the
/// wildcard one label up, else the default; as the resolver picks.
#[test]
fn the_answerer_of_a_name_is_the_resolvers_pick() {
    let edge = names(&["a.test"]);
    let admin = names(&["*.admin.test", "B.test."]);
    let ops = names(&["b.test", "x.admin.test"]);
    let lists: [&[String]; 3] = [&edge, &admin, &ops];
    assert_eq!(answerer(&lists, "b.test"), 1);
    assert_eq!(answerer(&lists, "x.admin.test"), 2);
    assert_eq!(answerer(&lists, "y.admin.test"), 1);
    assert_eq!(answerer(&lists, "*.admin.test"), 1);
    assert_eq!(answerer(&lists, "*.test"), 0);
    assert_eq!(answerer(&lists, "c.test"), 0);
}

/// A pair answering `names` with a fresh key of `alg` (rcgen, at
/// runtime).
fn pair(alg: &'static rcgen::SignatureAlgorithm, names: &[&str]) -> Pair {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let signing = (crate::tls::provider::get().key_provider)
        .load_private_key(der.into())
        .unwrap();
    let leaf = crate::material::CertInfo {
        subject: String::new(),
        issuer: String::new(),
        sans: Vec::new(),
        dns_names: names.iter().map(|n| n.to_string()).collect(),
        dns_left_out: Vec::new(),
        serial: String::new(),
        not_before: 0,
        not_after: 0,
        fingerprint_sha256: String::new(),
        is_ca: false,
    };
    Pair {
        key: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
        leaf,
        notes: Vec::new(),
    }
}

/// Of the pairs answering a name (those naming it exactly, else those
/// whose wildcard covers it), a client gets the first whose key can
/// sign with a scheme it offers, else the first; its client_auth is
/// the first's. A client without SNI, or asking for a name no pair
/// answers, chooses so among the default pair and the pairs answering one
/// of its names (not any pair).
#[test]
fn of_the_pairs_for_a_name_the_first_the_client_can_use_answers() {
    let pairs = [
        pair(&rcgen::PKCS_ECDSA_P256_SHA256, &["a.test", "x.test"]),
        pair(&rcgen::PKCS_ED25519, &["a.test", "*.test"]),
        pair(&rcgen::PKCS_ECDSA_P256_SHA256, &["*.test"]),
        pair(&rcgen::PKCS_ECDSA_P384_SHA384, &["c.example"]),
    ];
    let served: Vec<ServedPair<'_>> = (pairs.iter())
        .map(|pair| ServedPair {
            entry: "e",
            pair,
            server_names: None,
        })
        .collect();
    let r = SniResolver::new(&served).unwrap();
    let (ecdsa, ed25519) = (
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ED25519,
    );
    let (rsa, p384) = (
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
    );
    for (sni, schemes, want) in [
        (Some("a.test"), &[ecdsa, ed25519][..], 0),
        (Some("a.test"), &[ed25519], 1),
        (Some("a.test"), &[rsa], 0),
        (Some("b.test"), &[ed25519, ecdsa], 1),
        (Some("b.test"), &[ecdsa], 2),
        // Named exactly by pair 0 alone: the wildcard pairs are not
        // weighed (their client_auth may differ).
        (Some("x.test"), &[ed25519], 0),
        (Some("c.example"), &[p384], 3),
        // The default pair's names are a.test (with pair 1) and x.test.
        (Some("other.example"), &[ed25519], 1),
        (None, &[ed25519], 1),
        (None, &[ecdsa, ed25519], 0),
        (None, &[rsa], 0),
        // Pair 3 answers none of the default's names.
        (None, &[p384], 0),
    ] {
        assert_eq!(r.choose(sni, schemes), want, "{sni:?} {schemes:?}");
    }
    assert_eq!(r.position_or_default(Some("a.test")), 0);
    assert_eq!(r.position_or_default(Some("b.test")), 1);
    assert_eq!(r.owner("*.test"), Some(1));
}

/// A name's own entry counts only when it picks another pair than
/// the wildcard covering it, or the default, would give it.
#[test]
fn picks_leave_out_names_that_get_their_pair_anyway() {
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let pairs = [
        pair(alg, &["a.test", "x.b.test", "*.c.test"]),
        pair(alg, &["*.b.test", "y.b.test", "d.test"]),
    ];
    let served: Vec<ServedPair<'_>> = (pairs.iter())
        .map(|pair| ServedPair {
            entry: "e",
            pair,
            server_names: None,
        })
        .collect();
    let picks = SniResolver::new(&served).unwrap().picks();
    let want = [("*.b.test", 1), ("d.test", 1), ("x.b.test", 0)];
    let want: Vec<_> = want.iter().map(|&(n, at)| (n.to_string(), at)).collect();
    assert_eq!(picks, want);
}

fn io(e: rustls::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// A CRL webpki rejects is its own result, not `protocol`.
#[test]
fn unusable_crl_is_crl_invalid() {
    use rustls::CertRevocationListError as C;
    for e in [C::BadSignature, C::IssuerInvalidForCrl, C::InvalidCrlNumber] {
        assert_eq!(
            handshake_failure(&io(rustls::Error::InvalidCertRevocationList(e))),
            "crl_invalid"
        );
    }
    assert_eq!(
        handshake_failure(&io(rustls::Error::HandshakeNotComplete)),
        "protocol"
    );
}
