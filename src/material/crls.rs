//! A CA bundle's CRLs as webpki is given them: per issuer and scope the newest (of those a CA of the bundle signed) only, newest first; the bundle's CA certificates they revoke.

use std::collections::HashMap;

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::Note;
use super::der::signed_by;
use super::info::{CertInfo, inspect_crl};

/// One CRL of the bundle and the file it came from.
#[derive(Clone)]
pub(super) struct Crl {
    pub origin: String,
    pub der: Vec<u8>,
}

/// What webpki finds a certificate's CRL by: the issuer's name and the
/// issuing distribution point when given (a CRL partitioned by scope is
/// one of several, all needed). Not the authority key identifier, which
/// webpki never reads: two CRLs of one issuer, one with and one without
/// (`openssl ca -gencrl` writes none by default, easy-rsa or step-ca
/// one), are of one scope, and only the first listed would be read.
#[derive(PartialEq, Eq, Hash)]
struct Scope {
    issuer: Vec<u8>,
    distribution_point: Option<Vec<u8>>,
}

/// The order of CRLs of one scope: thisUpdate, then the CRL number.
type Age = (i64, Option<Vec<u8>>);

/// How a CRL ranks among its scope's: signed by a CA of the bundle, then
/// issued already (thisUpdate not in the future), then its age.
type Rank = (bool, bool, Age);

/// What a CRL is ranked by among its scope's.
struct Fact {
    scope: Scope,
    rank: Rank,
    /// The CA certificates of the bundle (positions) whose key verifies it.
    signers: Vec<usize>,
}

/// `crl`'s scope and age.
fn scope_and_age(crl: &CertificateRevocationList<'_>) -> (Scope, Age) {
    let this_update = crl.last_update().timestamp();
    let distribution_point = crl
        .extensions()
        .iter()
        .find(|ext| ext.oid.to_id_string() == "2.5.29.28")
        .map(|ext| ext.value.to_vec());
    // Big-endian magnitude with as many bytes: compares as the number.
    let number = crl.crl_number().map(|n| {
        let bytes = n.to_bytes_be();
        let mut padded = vec![0; 32usize.saturating_sub(bytes.len())];
        padded.extend(bytes);
        padded
    });
    let scope = Scope {
        issuer: crl.issuer().as_raw().to_vec(),
        distribution_point,
    };
    (scope, (this_update, number))
}

/// `der`'s scope, rank and signers, `cas` the bundle's certificates, `now`
/// in Unix seconds.
fn fact(der: &[u8], cas: &[X509Certificate<'_>], now: i64) -> Option<Fact> {
    let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
    let signers: Vec<usize> = (0..cas.len())
        .filter(|&i| {
            let ca = &cas[i];
            ca.subject().as_raw() == crl.issuer().as_raw()
                && signs_crls(ca)
                && signed_by(der, ca.public_key().raw)
        })
        .collect();
    let verified = !signers.is_empty();
    let (scope, age) = scope_and_age(&crl);
    Some(Fact {
        scope,
        rank: (verified, age.0 <= now, age),
        signers,
    })
}

/// A CRL in use that is older than the one of its issuer and scope it
/// replaces: an earlier thisUpdate, or the same and a lower CRL number.
/// A backup restored, a stale copy pushed, a mirror out of date: clients
/// revoked since are admitted again. Applied as written all the same (an
/// operator may roll back on purpose), as a certificate that expires
/// earlier is, and warned about as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlRollback {
    /// The file the older CRL came from.
    pub file: String,
    pub issuer: String,
    /// Its thisUpdate (Unix seconds) and CRL number (decimal), if any.
    pub this_update: i64,
    pub crl_number: Option<String>,
    /// Those of the CRL it replaces.
    pub previous_this_update: i64,
    pub previous_crl_number: Option<String>,
}

/// The CRLs of `read` (in use, from `files`) older than the CRL of their
/// scope in `served` (in use before, in a bundle of the CA certificates
/// `served_cas`): compared per issuer and issuing distribution point, by
/// thisUpdate, then CRL number, as [`newest`] ranks CRLs. A scope new to
/// `read` is no rollback; nor is a CRL without a number next to one with
/// the same thisUpdate (nothing says which is older). Nor is a CRL that
/// replaces one no CA of its bundle signed or not issued as of `now`
/// (Unix seconds): [`newest`] ranks those below every verified, issued
/// CRL, and it was in use for want of one; by its age alone, a repair
/// (the issuer's CA added, a genuine CRL in place of a forged one) would
/// be warned about, and a forged CRL dated far ahead would make every
/// genuine one look rolled back until then.
pub(super) fn rolled_back(
    served: &[impl AsRef<[u8]>],
    served_cas: &[impl AsRef<[u8]>],
    read: &[impl AsRef<[u8]>],
    files: &[String],
    now: i64,
) -> Vec<CrlRollback> {
    let cas: Vec<X509Certificate<'_>> = served_cas
        .iter()
        .filter_map(|d| X509Certificate::from_der(d.as_ref()).ok().map(|(_, c)| c))
        .collect();
    let trusted = |der: &[u8]| {
        fact(der, &cas, now).is_some_and(|f| {
            let (verified, issued, _) = f.rank;
            verified && issued
        })
    };
    let parse = |der: &[u8]| {
        CertificateRevocationList::from_der(der)
            .ok()
            .map(|(_, crl)| {
                let (scope, age) = scope_and_age(&crl);
                let number = crl.crl_number().map(ToString::to_string);
                (scope, age, number, super::dn::text(crl.issuer()))
            })
    };
    let served: Vec<_> = served
        .iter()
        .filter(|d| trusted(d.as_ref()))
        .filter_map(|d| parse(d.as_ref()))
        .collect();
    let mut out = Vec::new();
    for (der, file) in read.iter().zip(files) {
        let Some((scope, (this_update, number), crl_number, issuer)) = parse(der.as_ref()) else {
            continue;
        };
        let Some((_, (was, was_number), previous_crl_number, _)) =
            served.iter().find(|(s, ..)| *s == scope)
        else {
            continue;
        };
        let lower = matches!((&number, was_number), (Some(n), Some(w)) if n < w);
        if this_update < *was || (this_update == *was && lower) {
            out.push(CrlRollback {
                file: file.clone(),
                issuer,
                this_update,
                crl_number,
                previous_this_update: *was,
                previous_crl_number: previous_crl_number.clone(),
            });
        }
    }
    out
}

/// Of the CRLs of each scope (one issuer), the one issued last: the
/// latest thisUpdate, then the highest CRL number, then the first listed
/// (as OpenSSL picks). webpki checks a certificate against the first CRL
/// of its issuer it is given, so an older CRL listed first (`crl_files:
/// [old, new]`, `cat new.crl >> crl.pem`) would decide: a certificate
/// revoked since would pass, and every one would fail once the older is
/// past its nextUpdate. Only among those a CA of the bundle (`cas`)
/// signed and issued already, when there are: one under the issuer's
/// name no CA of the bundle signed (forged, corrupt, fetched over plain
/// HTTP) would have every certificate of the issuer refused, one dated
/// in the future would decide before its time (OpenSSL too ranks the
/// CRLs valid now first; `now` in Unix seconds; it is chosen once issued,
/// at [`next_issued`]). The others are noted as superseded (warned
/// about when another key of the issuer signed it: webpki reads the kept
/// one for the clients of that key too, and refuses them), or as not used
/// when newer. The kept ones come ranked so, the newest first (the
/// first listed among equals).
pub(super) fn newest(
    crls: Vec<Crl>,
    cas: &[impl AsRef<[u8]>],
    now: i64,
    notes: &mut Vec<Note>,
) -> Vec<Crl> {
    let cas: Vec<X509Certificate<'_>> = cas
        .iter()
        .filter_map(|d| X509Certificate::from_der(d.as_ref()).ok().map(|(_, c)| c))
        .collect();
    let facts: Vec<Option<Fact>> = crls.iter().map(|c| fact(&c.der, &cas, now)).collect();
    let mut best: HashMap<&Scope, (usize, &Rank)> = HashMap::new();
    for (i, f) in facts.iter().enumerate() {
        let Some(f) = f else { continue };
        let newer = best.get(&f.scope).is_none_or(|(_, kept)| f.rank > **kept);
        if newer {
            best.insert(&f.scope, (i, &f.rank));
        }
    }
    let mut kept = vec![true; crls.len()];
    for (i, f) in facts.iter().enumerate() {
        let Some(Fact {
            scope,
            rank: (verified, issued, age),
            signers,
        }) = f
        else {
            continue;
        };
        let (by, (_, _, by_age)) = best[scope];
        if by == i {
            continue;
        }
        kept[i] = false;
        let (Ok(old), Ok(new)) = (inspect_crl(&crls[i].der), inspect_crl(&crls[by].der)) else {
            continue;
        };
        if age > by_age {
            let why = if *verified {
                debug_assert!(!issued);
                "its thisUpdate is in the future"
            } else {
                "no CA certificate of the bundle under its issuer's name verifies its signature"
            };
            notes.push(Note::UnusedCrl {
                file: crls[i].origin.clone(),
                issuer: old.issuer,
                why: why.to_owned(),
                by_file: crls[by].origin.clone(),
            });
            continue;
        }
        // Verified, so the one kept is too (it ranks first): by another
        // key when no signer of this one verifies that one.
        let by_signers = facts[by].as_ref().map_or(&[][..], |f| &f.signers[..]);
        if *verified && !signers.iter().any(|s| by_signers.contains(s)) {
            notes.push(Note::CrlOfAnotherKey {
                file: crls[i].origin.clone(),
                issuer: old.issuer,
                this_update: old.this_update,
                by_file: crls[by].origin.clone(),
                by_this_update: new.this_update,
            });
            continue;
        }
        notes.push(Note::SupersededCrl {
            file: crls[i].origin.clone(),
            issuer: old.issuer,
            this_update: old.this_update,
            by_file: crls[by].origin.clone(),
            by_this_update: new.this_update,
        });
    }
    // Newest first: webpki reads the first CRL that covers a certificate,
    // and CRLs of one issuer and two scopes may both cover it (one without
    // an issuing distribution point covers every certificate of its
    // issuer): the newest decides, not the one listed first.
    let mut kept: Vec<(Option<&Rank>, Crl)> = facts
        .iter()
        .map(|f| f.as_ref().map(|f| &f.rank))
        .zip(crls)
        .zip(kept)
        .filter_map(|(c, k)| k.then_some(c))
        .collect();
    kept.sort_by(|(a, _), (b, _)| b.cmp(a));
    kept.into_iter().map(|(_, c)| c).collect()
}

/// The earliest thisUpdate of `crls` after `now` (Unix seconds): then a
/// CRL set aside as not issued yet is, and [`newest`] may choose another.
pub(super) fn next_issued(crls: &[Crl], now: i64) -> Option<i64> {
    crls.iter()
        .filter_map(|c| CertificateRevocationList::from_der(&c.der).ok())
        .map(|(_, crl)| crl.last_update().timestamp())
        .filter(|&t| t > now)
        .min()
}

/// Whether `issuer` may sign CRLs: no key usage, or one with cRLSign.
fn signs_crls(issuer: &X509Certificate<'_>) -> bool {
    match issuer.key_usage() {
        Ok(None) => true,
        Ok(Some(ku)) => ku.value.crl_sign(),
        Err(_) => false,
    }
}

/// The positions of the bundle's certificates (`roots`, from `origin`,
/// described by `infos`) that are no trust anchors: a CA certificate
/// issued by another of the bundle, and revoked by a CRL of `crls` whose
/// signature that issuer's key verifies; then, until none is left, one
/// whose issuers in the bundle are all such. webpki takes every anchor as
/// it is and never checks its revocation, so an issuing CA listed with
/// its root ("ca-chain.pem") let its clients in after the root revoked
/// it; without it among the anchors, a client that sends it has it
/// checked against the root's CRL, and one that does not is refused
/// (unknown issuer). A CA certificate issued by another of the bundle
/// that has no usable CRL in it is noted as unchecked, when the bundle
/// has CRLs at all (without, no revocation is checked).
pub(super) fn revoked_cas(
    origin: &str,
    roots: &[impl AsRef<[u8]>],
    infos: &[CertInfo],
    crls: &[Crl],
    notes: &mut Vec<Note>,
) -> Vec<usize> {
    if crls.is_empty() {
        return Vec::new();
    }
    let certs: Vec<Option<X509Certificate<'_>>> = roots
        .iter()
        .map(|d| X509Certificate::from_der(d.as_ref()).ok().map(|(_, c)| c))
        .collect();
    let parsed_crls: Vec<Option<CertificateRevocationList<'_>>> = crls
        .iter()
        .map(|c| {
            CertificateRevocationList::from_der(&c.der)
                .ok()
                .map(|(_, l)| l)
        })
        .collect();
    // Each not self-issued certificate's issuers in the bundle: the ones
    // under its issuer's name whose key verifies its signature.
    let issuers: Vec<Vec<usize>> = certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let Some(cert) = cert else { return Vec::new() };
            if cert.issuer().as_raw() == cert.subject().as_raw() {
                return Vec::new();
            }
            certs
                .iter()
                .enumerate()
                .filter(|&(j, c)| {
                    c.as_ref().is_some_and(|c| {
                        j != i
                            && c.subject().as_raw() == cert.issuer().as_raw()
                            && signed_by(roots[i].as_ref(), c.public_key().raw)
                    })
                })
                .map(|(j, _)| j)
                .collect()
        })
        .collect();
    // Why each position is out: the revoked CA's subject and the CRL's file.
    let mut out: Vec<Option<(String, String)>> = vec![None; certs.len()];
    let mut unchecked = Vec::new();
    for (i, cert) in certs.iter().enumerate() {
        let Some(cert) = cert else { continue };
        let mut usable = false;
        for &j in &issuers[i] {
            let Some(issuer) = certs[j].as_ref().filter(|c| signs_crls(c)) else {
                continue;
            };
            for (k, crl) in parsed_crls.iter().enumerate() {
                let Some(crl) = crl else { continue };
                if crl.issuer().as_raw() != issuer.subject().as_raw()
                    || !signed_by(&crls[k].der, issuer.public_key().raw)
                {
                    continue;
                }
                usable = true;
                let serial = cert.raw_serial();
                if crl
                    .iter_revoked_certificates()
                    .any(|r| r.raw_serial() == serial)
                {
                    out[i] = Some((infos[i].subject.clone(), crls[k].origin.clone()));
                }
            }
        }
        if !usable && let Some(&j) = issuers[i].first() {
            unchecked.push((i, j));
        }
    }
    // A CA issued only by CAs that are out is out too: its chain holds a
    // revoked certificate.
    loop {
        let next = (0..certs.len()).find(|&i| {
            out[i].is_none()
                && !issuers[i].is_empty()
                && issuers[i].iter().all(|&j| out[j].is_some())
        });
        let Some(i) = next else { break };
        out[i] = out[issuers[i][0]].clone();
    }
    for (i, j) in unchecked {
        if out[i].is_none() {
            notes.push(Note::UncheckedCa {
                file: origin.to_owned(),
                position: i + 1,
                subject: infos[i].subject.clone(),
                issuer: infos[j].subject.clone(),
            });
        }
    }
    let mut revoked = Vec::new();
    for (i, why) in out.into_iter().enumerate() {
        let Some((subject, crl_file)) = why else {
            continue;
        };
        notes.push(Note::RevokedCa {
            file: origin.to_owned(),
            position: i + 1,
            subject: infos[i].subject.clone(),
            revoked: subject,
            crl_file,
        });
        revoked.push(i);
    }
    revoked
}

#[cfg(test)]
mod tests {
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

    /// A CRL in use before that no CA of its bundle signed (forged, or
    /// its CA missing from the bundle), or not issued yet, ranks below any
    /// verified, issued one: replacing it with an earlier one is no
    /// rollback (a repair). The same CRLs are once it was verified and
    /// issued: as of a `now` past the future one's thisUpdate, with the CA.
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
        // Genuine but its CA not in the bundle then: unverified.
        assert!(rolled_back(&[&ahead], &none, &read, &file, later).is_empty());
        // Genuine and verified, dated ahead: not issued yet as of now.
        assert!(rolled_back(&[&ahead], &[&a_der], &read, &file, now).is_empty());
        // Verified and issued: the earlier CRL is rolled back.
        let back = rolled_back(&[&ahead], &[&a_der], &read, &file, later);
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(back[0].previous_crl_number.as_deref(), Some("3"));
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
                Note::SupersededCrl { file, by_file, .. } => {
                    Some((file.as_str(), by_file.as_str()))
                }
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
}
