//! A CA bundle's CRLs as webpki is given them: per issuer and scope the newest only.

use std::collections::HashMap;

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::Note;
use super::info::inspect_crl;

/// One CRL of the bundle and the file it came from.
pub(super) struct Crl {
    pub origin: String,
    pub der: Vec<u8>,
}

/// What tells whose CRL it is and what it covers: the issuer's name, its
/// key identifier when given, the issuing distribution point when given
/// (a CRL partitioned by scope is one of several, all needed).
#[derive(PartialEq, Eq, Hash)]
struct Scope {
    issuer: Vec<u8>,
    key_id: Option<Vec<u8>>,
    distribution_point: Option<Vec<u8>>,
}

/// The order of CRLs of one scope: thisUpdate, then the CRL number.
type Age = (i64, Option<Vec<u8>>);

fn scope_and_age(der: &[u8]) -> Option<(Scope, Age)> {
    let (_, crl) = CertificateRevocationList::from_der(der).ok()?;
    let mut key_id = None;
    let mut distribution_point = None;
    for ext in crl.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ if ext.oid.to_id_string() == "2.5.29.28" => {
                distribution_point = Some(ext.value.to_vec());
            }
            _ => {}
        }
    }
    // Big-endian magnitude with as many bytes: compares as the number.
    let number = crl.crl_number().map(|n| {
        let bytes = n.to_bytes_be();
        let mut padded = vec![0; 32usize.saturating_sub(bytes.len())];
        padded.extend(bytes);
        padded
    });
    let scope = Scope {
        issuer: crl.issuer().as_raw().to_vec(),
        key_id,
        distribution_point,
    };
    Some((scope, (crl.last_update().timestamp(), number)))
}

/// Of the CRLs of each scope (one issuer), the one issued last: the
/// latest thisUpdate, then the highest CRL number, then the first listed
/// (as OpenSSL picks). webpki checks a certificate against the first CRL
/// of its issuer it is given, so an older CRL listed first (`crl_files:
/// [old, new]`, `cat new.crl >> crl.pem`) would decide: a certificate
/// revoked since would pass, and every one would fail once the older is
/// past its nextUpdate. The others are noted as superseded; the kept
/// ones stay in file order.
pub(super) fn newest(crls: Vec<Crl>, notes: &mut Vec<Note>) -> Vec<Crl> {
    let facts: Vec<Option<(Scope, Age)>> = crls.iter().map(|c| scope_and_age(&c.der)).collect();
    let mut best: HashMap<&Scope, (usize, &Age)> = HashMap::new();
    for (i, (scope, age)) in facts
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|(s, a)| (i, (s, a))))
    {
        let newer = best.get(scope).is_none_or(|(_, kept)| age > *kept);
        if newer {
            best.insert(scope, (i, age));
        }
    }
    let mut kept = vec![true; crls.len()];
    for (i, fact) in facts.iter().enumerate() {
        let Some((scope, _)) = fact else { continue };
        let by = best[scope].0;
        if by == i {
            continue;
        }
        kept[i] = false;
        let (Ok(old), Ok(new)) = (inspect_crl(&crls[i].der), inspect_crl(&crls[by].der)) else {
            continue;
        };
        notes.push(Note::SupersededCrl {
            file: crls[i].origin.clone(),
            issuer: old.issuer,
            this_update: old.this_update,
            by_file: crls[by].origin.clone(),
            by_this_update: new.this_update,
        });
    }
    crls.into_iter()
        .zip(kept)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
        KeyIdMethod, KeyPair, SerialNumber,
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
        let this_update = OffsetDateTime::now_utc() - Duration::days(days_ago);
        let params = CertificateRevocationListParams {
            this_update,
            next_update: this_update + Duration::days(30),
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Crl {
            origin: file.to_owned(),
            der: params.signed_by(issuer).unwrap().der().to_vec(),
        }
    }

    fn files(crls: &[Crl]) -> Vec<&str> {
        crls.iter().map(|c| c.origin.as_str()).collect()
    }

    /// Per issuer the newest, whatever the order; another issuer's CRL is
    /// kept however old; the kept ones stay in file order.
    #[test]
    fn the_newest_of_each_issuer_is_kept_in_file_order() {
        let (a, b) = (ca("a"), ca("b"));
        let mut notes = Vec::new();
        let kept = newest(
            vec![
                crl(&a, 5, 1, "a-old"),
                crl(&b, 20, 1, "b"),
                crl(&a, 1, 3, "a-new"),
                crl(&a, 3, 2, "a-mid"),
            ],
            &mut notes,
        );
        assert_eq!(files(&kept), ["b", "a-new"]);
        let superseded: Vec<(&str, &str)> = notes
            .iter()
            .map(|n| match n {
                Note::SupersededCrl { file, by_file, .. } => (file.as_str(), by_file.as_str()),
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
            &mut notes,
        );
        assert_eq!(files(&kept), ["nine"]);
        let same = crl(&a, 1, 1, "first");
        let again = Crl {
            origin: "again".into(),
            der: same.der.clone(),
        };
        assert_eq!(files(&newest(vec![same, again], &mut notes)), ["first"]);
    }

    /// Two CAs under one name with different keys (a key rollover): their
    /// CRLs differ by key identifier, and both are kept.
    #[test]
    fn one_name_two_keys_keeps_both() {
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
            &mut notes,
        );
        assert_eq!(files(&kept), ["old key", "new key"]);
        assert!(notes.is_empty(), "{notes:?}");
    }
}
