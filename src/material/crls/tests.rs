//! Tests of a bundle's CRLs: the newest of each scope, the CA certificates they revoke, those rolled back.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::*;

fn ca(cn: &str) -> Issuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    Issuer::new(p, KeyPair::generate().unwrap())
}

/// A CRL of `issuer` issued `days_ago`, numbered `number`, from `file`.
fn crl(issuer: &Issuer<'_, KeyPair>, days_ago: i64, number: u64, file: &str) -> Crl {
    revoking(issuer, days_ago, number, file, &[])
}

/// The same, revoking the certificates of `serials`.
fn revoking(
    issuer: &Issuer<'_, KeyPair>,
    days_ago: i64,
    number: u64,
    file: &str,
    serials: &[u64],
) -> Crl {
    let this_update = OffsetDateTime::now_utc() - Duration::days(days_ago);
    issued_at(issuer, this_update, number, file, serials)
}

/// The same, issued at `this_update`.
fn issued_at(
    issuer: &Issuer<'_, KeyPair>,
    this_update: OffsetDateTime,
    number: u64,
    file: &str,
    serials: &[u64],
) -> Crl {
    let params = CertificateRevocationListParams {
        this_update,
        next_update: this_update + Duration::days(30),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|&s| RevokedCertParams {
                serial_number: SerialNumber::from(s),
                revocation_time: this_update,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Crl {
        origin: file.to_owned(),
        der: params.signed_by(issuer).unwrap().der().to_vec(),
    }
}

/// Of the CRLs in use read, those older than the one of their issuer
/// in use before are rolled back, with their file: an earlier
/// thisUpdate, or the same and a lower CRL number. A newer one, one of
/// the same age, and one of an issuer not served before are not.
#[test]
fn a_crl_older_than_the_one_it_replaces_is_rolled_back() {
    let [(a_der, a), (b_der, b), (c_der, c), (_, d)] =
        ["a", "b", "c", "d"].map(|cn| ca_cert(cn, 1, None));
    let cas = [a_der, b_der, c_der];
    let t = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::days(1);
    let served: Vec<Vec<u8>> = [
        issued_at(&a, t, 5, "", &[]),
        issued_at(&b, t, 5, "", &[]),
        issued_at(&c, t, 5, "", &[]),
    ]
    .map(|c| c.der)
    .into();
    let read = [
        issued_at(&a, t - Duration::hours(1), 9, "a-earlier", &[]),
        issued_at(&b, t, 4, "b-lower", &[]),
        issued_at(&c, t, 5, "c-same", &[]),
        issued_at(&d, t - Duration::days(9), 1, "d-new", &[]),
    ];
    let files: Vec<String> = read.iter().map(|c| c.origin.clone()).collect();
    let ders: Vec<&[u8]> = read.iter().map(|c| &c.der[..]).collect();
    let back = rolled_back(&served, &cas, &ders, &files, now());
    let seen: Vec<_> = back
        .iter()
        .map(|r| {
            (
                r.file.as_str(),
                r.issuer.as_str(),
                r.previous_this_update - r.this_update,
                r.crl_number.as_deref(),
                r.previous_crl_number.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a-earlier", "CN=a", 3600, Some("9"), Some("5")),
            ("b-lower", "CN=b", 0, Some("4"), Some("5")),
        ]
    );
    assert_eq!(
        back[0].this_update,
        (t - Duration::hours(1)).unix_timestamp()
    );
    // Newer than what is served: nothing.
    assert!(rolled_back(&ders, &cas, &served, &files, now()).is_empty());
}

/// A CRL in use before that no CA of its bundle under its issuer's
/// name signed (forged), or not issued yet, ranks below any verified,
/// issued one: replacing it with an earlier one is no rollback (a
/// repair). The same CRLs are once it was verified and issued: as of
/// a `now` past the future one's thisUpdate, with the CA; or issued,
/// and no CA of the bundle under its issuer's name (an issuing CA's
/// CRL, the bundle holding its root alone): compared by age.
#[test]
fn only_a_verified_issued_crl_is_rolled_back_from() {
    let (a_der, a) = ca_cert("a", 1, None);
    let (_, imposter) = ca_cert("a", 1, None);
    let t = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let genuine = issued_at(&a, t - Duration::hours(1), 2, "genuine", &[]);
    let (file, read) = (["genuine".to_owned()], [&genuine.der[..]]);
    let forged = issued_at(&imposter, t + Duration::days(365), 9, "", &[]).der;
    let ahead = issued_at(&a, t + Duration::hours(1), 3, "", &[]).der;
    let none: [&[u8]; 0] = [];
    let now = t.unix_timestamp();
    let later = (t + Duration::hours(2)).unix_timestamp();
    // Forged: never, even once its thisUpdate has come.
    assert!(rolled_back(&[&forged], &[&a_der], &read, &file, later).is_empty());
    // Genuine and verified, dated ahead: not issued yet as of now.
    assert!(rolled_back(&[&ahead], &[&a_der], &read, &file, now).is_empty());
    // Nor with no CA of the bundle under its name.
    assert!(rolled_back(&[&ahead], &none, &read, &file, now).is_empty());
    // Verified and issued, or issued and no CA under its name: the
    // earlier CRL is rolled back.
    for cas in [&[&a_der[..]][..], &none] {
        let back = rolled_back(&[&ahead], cas, &read, &file, later);
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(back[0].previous_crl_number.as_deref(), Some("3"));
    }
}

/// A scope no CA of the bundle can verify (an issuing CA's, the
/// bundle holding its root alone) is compared by age, as long as the
/// two CRLs do not name different keys: another key's CRL (the
/// issuing CA re-keyed under its name) is no rollback of this one's.
#[test]
fn an_unverifiable_scope_is_compared_by_age_within_one_key() {
    let (root_der, root) = ca_cert("root", 1, None);
    let (_, issuing) = ca_cert("issuing", 2, Some(&root));
    let (_, re_keyed) = ca_cert("issuing", 3, Some(&root));
    let t = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(1);
    let served = [issued_at(&issuing, t, 2, "", &[]).der];
    let older = issued_at(&issuing, t - Duration::days(1), 1, "older", &[]);
    let other = issued_at(&re_keyed, t - Duration::days(1), 1, "other key", &[]);
    let files = [older.origin.clone(), other.origin.clone()];
    let back = rolled_back(
        &served,
        &[&root_der],
        &[older.der, other.der],
        &files,
        now(),
    );
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(
        (back[0].file.as_str(), back[0].issuer.as_str()),
        ("older", "CN=issuing")
    );
    // Both name their key, the same: nothing else it may be.
    assert!(!back[0].maybe_other_key);
}

/// Both CA certificates of a re-key under one name in the bundle: the
/// new key's first CRL, older than the old key's latest, is no rollback
/// of it (no key that verified that one verifies it); an older CRL of the
/// old key is.
#[test]
fn another_keys_crl_is_no_rollback() {
    let (old_der, old_key) = ca_cert("a", 1, None);
    let (new_der, new_key) = ca_cert("a", 2, None);
    let t = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(1);
    let served = [issued_at(&old_key, t, 9, "", &[]).der];
    let older = issued_at(&old_key, t - Duration::days(1), 8, "older", &[]);
    let first = issued_at(&new_key, t - Duration::days(1), 1, "new key", &[]);
    let files = [older.origin.clone(), first.origin.clone()];
    let back = rolled_back(
        &served,
        &[&old_der, &new_der],
        &[older.der, first.der],
        &files,
        now(),
    );
    let seen: Vec<&str> = back.iter().map(|r| r.file.as_str()).collect();
    assert_eq!(seen, ["older"]);
}

/// The bundle holding the root and the issuing CA's old certificate, its
/// clients sending the new one: the new key's CRL in use, verified by no
/// CA of the bundle though one bears its name, is compared by age; an
/// older one of that key is rolled back. One the old certificate verifies
/// in its place is a repair, however old.
#[test]
fn a_crl_no_named_ca_verifies_is_compared_by_age() {
    let (root_der, root) = ca_cert("root", 1, None);
    let (old_der, old_key) = ca_cert("issuing", 2, Some(&root));
    let (_, new_key) = ca_cert("issuing", 3, Some(&root));
    let t = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(1);
    let served = [issued_at(&new_key, t, 2, "", &[]).der];
    let older = issued_at(&new_key, t - Duration::days(1), 1, "older", &[]);
    let verified = issued_at(&old_key, t - Duration::days(1), 1, "verified", &[]);
    let files = [older.origin.clone(), verified.origin.clone()];
    let back = rolled_back(
        &served,
        &[&root_der, &old_der],
        &[older.der, verified.der],
        &files,
        now(),
    );
    let seen: Vec<&str> = back.iter().map(|r| r.file.as_str()).collect();
    assert_eq!(seen, ["older"]);
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn files(crls: &[Crl]) -> Vec<&str> {
    crls.iter().map(|c| c.origin.as_str()).collect()
}

/// Per issuer the newest, whatever the order; another issuer's CRL is
/// kept however old; the kept ones come newest first.
#[test]
fn the_newest_of_each_issuer_is_kept_newest_first() {
    let (a, b) = (ca("a"), ca("b"));
    let mut notes = Vec::new();
    let kept = newest(
        vec![
            crl(&a, 5, 1, "a-old"),
            crl(&b, 20, 1, "b"),
            crl(&a, 1, 3, "a-new"),
            crl(&a, 3, 2, "a-mid"),
        ],
        &[] as &[Vec<u8>],
        now(),
        &mut notes,
    );
    assert_eq!(files(&kept), ["a-new", "b"]);
    let superseded: Vec<(&str, &str)> = notes
        .iter()
        .filter_map(|n| match n {
            Note::SupersededCrl { file, by_file, .. } => Some((file.as_str(), by_file.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(superseded, [("a-old", "a-new"), ("a-mid", "a-new")]);
}

/// Issued the same second: the higher CRL number wins, then the first
/// listed (the same CRL twice keeps one).
#[test]
fn a_tie_goes_to_the_higher_number_then_the_first() {
    let a = ca("a");
    let mut notes = Vec::new();
    let kept = newest(
        vec![crl(&a, 1, 7, "seven"), crl(&a, 1, 9, "nine")],
        &[] as &[Vec<u8>],
        now(),
        &mut notes,
    );
    assert_eq!(files(&kept), ["nine"]);
    let same = crl(&a, 1, 1, "first");
    let again = Crl {
        origin: "again".into(),
        der: same.der.clone(),
    };
    assert_eq!(
        files(&newest(
            vec![same, again],
            &[] as &[Vec<u8>],
            now(),
            &mut notes
        )),
        ["first"]
    );
}

/// Two CAs under one name with different keys (a key rollover): their
/// CRLs differ by key identifier only, which webpki never reads (it
/// would read the first listed for the clients of both keys): the
/// newer is kept.
#[test]
fn one_name_two_keys_keeps_the_newest() {
    let mut old_key = CertificateParams::new(Vec::<String>::new()).unwrap();
    old_key.distinguished_name.push(DnType::CommonName, "a");
    old_key.key_identifier_method = KeyIdMethod::Sha256;
    let mut new_key = old_key.clone();
    new_key.key_identifier_method = KeyIdMethod::Sha256;
    let old_ca = Issuer::new(old_key, KeyPair::generate().unwrap());
    let new_ca = Issuer::new(new_key, KeyPair::generate().unwrap());
    let mut notes = Vec::new();
    let kept = newest(
        vec![crl(&old_ca, 5, 1, "old key"), crl(&new_ca, 1, 1, "new key")],
        &[] as &[Vec<u8>],
        now(),
        &mut notes,
    );
    assert_eq!(files(&kept), ["new key"]);
    assert!(
        matches!(&notes[..], [Note::SupersededCrl { file, by_file, .. }]
            if file == "old key" && by_file == "new key"),
        "{notes:?}"
    );
}

/// Both CA certificates of a key rollover in the bundle: the CRL of
/// the other key than the newest's is told apart (a warning), one the
/// same key replaced is superseded as usual.
#[test]
fn a_crl_of_another_key_is_told_from_one_the_same_key_replaced() {
    let (old_der, old_ca) = ca_cert("a", 1, None);
    let (new_der, new_ca) = ca_cert("a", 2, None);
    let mut notes = Vec::new();
    let kept = newest(
        vec![
            crl(&old_ca, 5, 9, "old key"),
            crl(&new_ca, 3, 1, "new key"),
            crl(&new_ca, 1, 2, "new key again"),
        ],
        &[old_der, new_der],
        now(),
        &mut notes,
    );
    assert_eq!(files(&kept), ["new key again"]);
    assert!(
        matches!(&notes[..], [
            Note::CrlOfAnotherKey { file: other, by_file: by_other, .. },
            Note::SupersededCrl { file: same, by_file: by_same, .. },
        ] if other == "old key" && by_other == "new key again"
            && same == "new key" && by_same == "new key again"),
        "{notes:?}"
    );
    assert!(notes[0].is_warning() && !notes[1].is_warning());
}

/// A CA `cn` with serial `serial`, issued by `by` (self-signed
/// without): its certificate's DER and the issuer it makes.
fn ca_cert(
    cn: &str,
    serial: u64,
    by: Option<&Issuer<'_, KeyPair>>,
) -> (Vec<u8>, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.serial_number = Some(SerialNumber::from(serial));
    let cert = match by {
        Some(by) => p.signed_by(&key, by).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    (cert.der().to_vec(), Issuer::new(p, key))
}

fn out(ders: &[&[u8]], crls: &[Crl]) -> (Vec<usize>, Vec<Note>) {
    let infos: Vec<CertInfo> = ders
        .iter()
        .map(|d| super::super::info::inspect(d).unwrap())
        .collect();
    let mut notes = Vec::new();
    let revoked = revoked_cas("bundle", ders, &infos, crls, &mut notes);
    (revoked, notes)
}

/// root -> A -> B, all in the bundle: the root's CRL revokes A, so A
/// is out, and B (issued by A alone) with it; the root stays.
#[test]
fn a_revoked_ca_and_what_it_issued_are_no_anchors() {
    let (root, root_ca) = ca_cert("root", 1, None);
    let (a, a_ca) = ca_cert("A", 2, Some(&root_ca));
    let (b, b_ca) = ca_cert("B", 3, Some(&a_ca));
    let crls = [
        revoking(&root_ca, 0, 1, "root.crl", &[2]),
        crl(&a_ca, 0, 1, "a.crl"),
        crl(&b_ca, 0, 1, "b.crl"),
    ];
    let (revoked, notes) = out(&[&root, &a, &b], &crls);
    assert_eq!(revoked, [1, 2]);
    for (note, subject) in notes.iter().zip(["CN=A", "CN=B"]) {
        let Note::RevokedCa {
            subject: s,
            revoked,
            crl_file,
            ..
        } = note
        else {
            panic!("{note:?}");
        };
        assert_eq!((s.as_str(), revoked.as_str()), (subject, "CN=A"));
        assert_eq!(crl_file, "root.crl");
    }
}

/// A CRL under the root's name signed by another key revokes nothing:
/// A stays an anchor, and is noted unchecked (no usable CRL of its
/// issuer); without any CRL in the bundle nothing is said.
#[test]
fn only_a_crl_the_issuer_signed_revokes() {
    let (root, root_ca) = ca_cert("root", 1, None);
    let (a, _) = ca_cert("A", 2, Some(&root_ca));
    let (_, imposter) = ca_cert("root", 1, None);
    let forged = [revoking(&imposter, 0, 1, "forged.crl", &[2])];
    let (revoked, notes) = out(&[&root, &a], &forged);
    assert!(revoked.is_empty());
    assert!(
        matches!(&notes[..], [Note::UncheckedCa { subject, issuer, position: 2, .. }]
            if subject == "CN=A" && issuer == "CN=root"),
        "{notes:?}"
    );
    assert_eq!(out(&[&root, &a], &[]), (Vec::new(), Vec::new()));
}

thread_local! {
    /// Signatures [`verified`] on this thread.
    pub(super) static SIGNATURE_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A CA renewed in place many times (one name, one key, every renewal
/// kept in the bundle), as many CAs it issued, and its CRL: the bundle
/// loads with one signature check per certificate and CRL, not one per
/// pair of a certificate and a copy of its issuer (quadratic: minutes
/// for a bundle under 1 MiB, the reloader waiting). The CRL still
/// revokes what it names, and only that.
#[test]
fn a_ca_listed_many_times_under_one_key_costs_one_check_per_certificate() {
    const N: u64 = 400;
    let key = KeyPair::generate().unwrap();
    let mut shared = CertificateParams::new(Vec::<String>::new()).unwrap();
    shared
        .distinguished_name
        .push(DnType::CommonName, "renewed");
    shared.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut pem = String::new();
    for serial in 1..=N {
        shared.serial_number = Some(SerialNumber::from(serial));
        pem.push_str(&shared.self_signed(&key).unwrap().pem());
    }
    let issuer = Issuer::new(shared, key);
    let issued_key = KeyPair::generate().unwrap();
    for i in 0..N {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("issued {i}"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.serial_number = Some(SerialNumber::from(10_000 + i));
        pem.push_str(&p.signed_by(&issued_key, &issuer).unwrap().pem());
    }
    let now = OffsetDateTime::now_utc();
    let crl_pem = CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::days(30),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(10_007u64),
            revocation_time: now,
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap()
    .pem()
    .unwrap();
    let names = ["ca.pem".to_owned(), "renewed.crl".to_owned()];
    SIGNATURE_CHECKS.with(|n| n.set(0));
    let material =
        super::super::bundle::parse(&names, &[pem.into_bytes(), crl_pem.into_bytes()]).unwrap();
    let checks = SIGNATURE_CHECKS.with(std::cell::Cell::get);
    let super::super::Material::Ca(bundle) = material else {
        panic!("not a CA bundle");
    };
    assert_eq!(bundle.revoked, [(N + 7) as usize]);
    let certificates = 2 * N as usize;
    assert!(checks <= certificates + 2, "{checks} signature checks");
}

/// Why a CRL newer than the one kept is not used: the rank it lost by.
/// No CA of the bundle verifies any of an issuer's CRLs (clients send
/// its CA), the newest dated in the future: not issued yet. It was said
/// that no CA certificate verifies its signature, true of the kept one
/// too. One no CA verifies beside one a CA does: that, and that it is
/// dated in the future when it is.
#[test]
fn a_newer_crl_not_used_says_why() {
    let why = |crls: Vec<Crl>, cas: &[Vec<u8>]| {
        let mut notes = Vec::new();
        newest(crls, cas, now(), &mut notes);
        let whys: Vec<(String, String)> = notes
            .into_iter()
            .filter_map(|n| match n {
                Note::UnusedCrl { file, why, .. } => Some((file, why)),
                _ => None,
            })
            .collect();
        whys
    };
    let a = ca("a");
    let ahead = OffsetDateTime::now_utc() + Duration::days(1);
    let unverified = why(
        vec![
            crl(&a, 1, 1, "issued"),
            issued_at(&a, ahead, 2, "ahead", &[]),
        ],
        &[],
    );
    assert_eq!(
        unverified,
        [("ahead".into(), "its thisUpdate is in the future".into())]
    );
    let (der, signer) = ca_cert("a", 1, None);
    let forged = [
        crl(&a, 0, 3, "forged"),
        issued_at(&a, ahead, 4, "forged ahead", &[]),
    ];
    let whys = why(
        [vec![crl(&signer, 1, 1, "genuine")], forged.to_vec()].concat(),
        &[der],
    );
    let not_verified =
        "no CA certificate of the bundle under its issuer's name verifies its signature";
    assert_eq!(whys.len(), 2, "{whys:?}");
    assert_eq!(whys[0], ("forged".into(), not_verified.into()));
    assert_eq!(
        whys[1],
        (
            "forged ahead".into(),
            format!("{not_verified}, and its thisUpdate is in the future")
        )
    );
}
