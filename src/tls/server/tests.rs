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
pub(crate) fn pair(alg: &'static rcgen::SignatureAlgorithm, names: &[&str]) -> Pair {
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

/// Names kept by [`settle_shadowed`] or the loop it replaced: (name,
/// entry, kept_by).
type Kept = Vec<(String, usize, usize)>;

/// The loop [`settle_shadowed`] replaced: settle [`shadowed`]'s first
/// conflict, then look again over every list.
fn one_at_a_time(
    lists: &mut [Vec<String>],
    policies: &[&u8],
    had: impl Fn(&str) -> Option<usize>,
    fixed: impl Fn(usize) -> bool,
    kept: &mut Kept,
) -> Result<(), Shadowed> {
    loop {
        let view: Vec<&[String]> = lists.iter().map(Vec::as_slice).collect();
        let Some(s) = shadowed(&view, policies) else {
            return Ok(());
        };
        let Some(keeper) = had(&s.name).and_then(|had| side_of(policies, had, &s)) else {
            return Err(s);
        };
        let loser = if keeper == s.earlier {
            s.later
        } else {
            s.earlier
        };
        if fixed(loser) {
            return Err(s);
        }
        lists[loser].retain(|n| name_key(n) != s.name);
        kept.push((s.name, loser, keeper));
    }
}

/// Both ways on one scene: the same lists, names kept in the same order,
/// the same conflict refused.
fn settled_alike(lists: &[Vec<String>], policies: &[u8], had: &[(&str, usize)], fixed: &[bool]) {
    let policies: Vec<&u8> = policies.iter().collect();
    let had = |name: &str| had.iter().find(|(n, _)| *n == name).map(|&(_, at)| at);
    let fixed = |at: usize| fixed[at];
    let (mut old, mut old_kept) = (lists.to_vec(), Kept::new());
    let old_result = one_at_a_time(&mut old, &policies, had, fixed, &mut old_kept);
    let (mut new, mut new_kept) = (lists.to_vec(), Kept::new());
    let kept = |name: &str, entry, kept_by| new_kept.push((name.to_owned(), entry, kept_by));
    let new_result = settle_shadowed(&mut new, &policies, had, fixed, kept);
    assert_eq!(new_result, old_result, "{lists:?}");
    assert_eq!(new_kept, old_kept, "{lists:?}");
    if new_result.is_ok() {
        assert_eq!(new, old, "{lists:?}");
    }
}

/// Several names in conflict at once, among four entries and three
/// client_auth: kept by the earlier side, by the later one (every
/// earlier entry of the other side losing it), and a name listed twice.
#[test]
fn settling_every_conflict_in_one_pass_keeps_what_one_at_a_time_kept() {
    let lists = [
        names(&["a.test", "b.test", "*.test", "c.test"]),
        names(&["b.test", "A.test.", "d.test", "c.test"]),
        names(&["a.test", "b.test", "*.test", "a.test", "d.test"]),
        names(&["c.test", "d.test", "b.test"]),
    ];
    let policies = [0, 0, 1, 2];
    let had = [("a.test", 2), ("b.test", 1), ("*.test", 0), ("c.test", 0)];
    // d.test: entry 2 has the owner's (3's) client_auth; 3 keeps none.
    let had: Vec<_> = had.into_iter().chain([("d.test", 2)]).collect();
    settled_alike(&lists, &policies, &had, &[false; 4]);
    let mut settled = lists.to_vec();
    let policies: Vec<&u8> = policies.iter().collect();
    let owner = |name: &str| had.iter().find(|(n, _)| *n == name).map(|&(_, at)| at);
    let mut kept = Kept::new();
    let keep = |name: &str, entry, kept_by| kept.push((name.to_owned(), entry, kept_by));
    settle_shadowed(&mut settled, &policies, owner, |_| false, keep).unwrap();
    let want = [
        names(&["b.test", "*.test", "c.test"]),
        names(&["b.test", "c.test"]),
        names(&["a.test", "a.test", "d.test"]),
        names(&[]),
    ];
    assert_eq!(settled, want);
    let want = [
        ("a.test", 0, 2),
        ("a.test", 1, 2),
        ("b.test", 2, 0),
        ("*.test", 2, 0),
        ("d.test", 1, 2),
        ("c.test", 3, 0),
        ("d.test", 3, 2),
        ("b.test", 3, 0),
    ];
    let want: Kept = (want.iter())
        .map(|&(n, e, k)| (n.to_owned(), e, k))
        .collect();
    assert_eq!(kept, want);
    // A loser whose names are the operator's refuses the first such conflict.
    settled_alike(&lists, &[0, 0, 1, 2], &had, &[false, true, false, false]);
    settled_alike(&lists, &[0, 0, 1, 2], &had, &[false, false, true, false]);
    // A name nobody had.
    settled_alike(&lists, &[0, 0, 1, 2], &had[1..], &[false; 4]);
}

/// [`settle_shadowed`] against [`one_at_a_time`] on random scenes.
mod one_pass {
    use super::settled_alike;
    use proptest::collection::vec;
    use proptest::prelude::*;

    proptest! {
        /// Random scenes of up to five entries, three client_auth, names
        /// spelt several ways, previous owners (some out of range) and
        /// entries with server_names.
        #[test]
        fn settling_in_one_pass_is_settling_one_at_a_time(
            scene in (1..=5usize).prop_flat_map(|n| (
                vec(vec(0..8usize, 0..7), n),
                vec(0..3u8, n),
                vec(proptest::option::of(0..6usize), 5),
                vec(proptest::bool::weighted(0.15), n),
            )),
        ) {
            let pool = ["a.test", "A.test", "a.test.", "b.test", "*.test", "c.test", "d.test", "B.TEST"];
            let (lists, policies, owners, fixed) = scene;
            let lists: Vec<Vec<String>> = (lists.iter())
                .map(|l| l.iter().map(|&i| pool[i].to_owned()).collect())
                .collect();
            let keys = ["a.test", "b.test", "*.test", "c.test", "d.test"];
            let had: Vec<(&str, usize)> = (keys.iter().zip(&owners))
                .filter_map(|(&k, at)| Some((k, (*at)?)))
                .collect();
            settled_alike(&lists, &policies, &had, &fixed);
        }
    }
}

/// A listener without client auth keeps its TLS 1.2 session IDs in the
/// expiring cache its [`sessions`] hold (tested in `tls::session_cache`),
/// not in one of rustls's, which resumes a session of any age; its tickets
/// come from the `AgedTickets` wrapper, not straight from rustls's
/// ticketer, which opens a ticket of any age while its key lives.
#[test]
fn session_ids_go_to_the_listeners_expiring_cache() {
    let yaml = "listeners:\n  - { name: session-ids, bind: 127.0.0.1:0, routes: [], tls: { certs: [{ cert_file: x.crt, key_file: x.key }] } }\n";
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::parse(yaml, &dir.path().join("config.yaml")).unwrap();
    let listener = &config.listeners[0];
    let inputs = ServerInputs {
        listener,
        mode: ClientAuthMode::None,
        client_ca: None,
        allow: None,
        allow_expired_crl: false,
        client_ca_source: None,
    };
    let (built, _) = build(&inputs, Arc::new(SniResolver::none())).unwrap();
    let held = sessions(&listener.name, listener.bind).unwrap();
    assert!(std::ptr::addr_eq(
        Arc::as_ptr(&built.session_storage),
        Arc::as_ptr(&held.cache)
    ));
    assert!(Arc::ptr_eq(&built.ticketer, &held.ticketer));
    let ticketer = format!("{:?}", built.ticketer);
    assert!(ticketer.starts_with("AgedTickets"), "{ticketer}");
}
