//! A CA bundle's CRLs as webpki is given them: per issuer and scope the newest (of those a CA of the bundle signed) only, newest first; the bundle's CA certificates they revoke.

use std::collections::{HashMap, HashSet};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::Note;
use super::der::{fails_under_each, key_ids, signed_by};
use super::info::{CertInfo, inspect_crl};

/// Whether `signed` is signed by the key of `spki` ([`signed_by`]),
/// counted in tests. Callers check each (certificate or CRL, key) once:
/// a bundle may list one CA under one key many times (renewed in place,
/// each renewal kept), and a check per copy made a load quadratic in the
/// bundle's size, or worse, on the reloader's thread.
fn verified(signed: &[u8], spki: &[u8]) -> bool {
    #[cfg(test)]
    tests::SIGNATURE_CHECKS.with(|n| n.set(n.get() + 1));
    signed_by(signed, spki)
}

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
    // One check per key, however many CA certificates share it.
    let mut by_key: HashMap<&[u8], bool> = HashMap::new();
    let signers: Vec<usize> = (0..cas.len())
        .filter(|&i| {
            let ca = &cas[i];
            let key = ca.public_key().raw;
            ca.subject().as_raw() == crl.issuer().as_raw()
                && signs_crls(ca)
                && *by_key.entry(key).or_insert_with(|| verified(der, key))
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
    /// Nothing tells it from another key's CRL: no CA of the bundle
    /// verifies the one it replaces, and one of the two names no key
    /// (`openssl ca -gencrl` writes no authority key identifier by
    /// default). The issuer re-keyed under its name, the new key's first
    /// CRL may be older than the old key's latest, and re-admits no one.
    pub maybe_other_key: bool,
}

/// The CRLs of `read` (in use, from `files`) older than the CRL of their
/// scope in `served` (in use before, in a bundle of the CA certificates
/// `served_cas`): compared per issuer and issuing distribution point, by
/// thisUpdate, then CRL number, as [`newest`] ranks CRLs. A scope new to
/// `read` is no rollback; nor is a CRL without a number next to one with
/// the same thisUpdate (nothing says which is older). Nor is a CRL that
/// replaces one not issued as of `now` (Unix seconds): [`newest`] ranks
/// it below every issued CRL, and a forged CRL dated far ahead would make
/// every genuine one look rolled back until then. Nor is one a CA of the
/// bundle verifies in place of one none did (a repair: a genuine CRL in
/// place of a forged one, ranked so by [`newest`]). Nor is one no key
/// that verified the CRL it replaces verifies: the CA re-keyed under its
/// name (the bundle holding both CA certificates), the new key's first
/// CRL may be older than the old key's latest, and re-admits no one the
/// old key revoked since (webpki checks it with the key that issued the
/// client). A CRL no CA of the bundle verifies (an issuing CA's, the
/// bundle holding its root alone, or its old certificate after a re-key:
/// clients send the issuing CA, webpki checks its CRL with it) is
/// compared by age all the same, as long as the two CRLs do not name
/// different keys (authority key identifiers): a restored backup of it
/// re-admits revoked clients too. When one of the two names no key, it
/// may be another key's as well (said so: `maybe_other_key`).
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
    // The CA keys that verify a CRL compared with (none: no CA of the
    // bundle does), when it was issued.
    let signers = |der: &[u8]| {
        fact(der, &cas, now).and_then(|f| {
            let (_, issued, _) = f.rank;
            issued.then_some(f.signers)
        })
    };
    let parse = |der: &[u8]| {
        CertificateRevocationList::from_der(der)
            .ok()
            .map(|(_, crl)| {
                let (scope, age) = scope_and_age(&crl);
                let number = crl.crl_number().map(ToString::to_string);
                let key = key_id(&crl);
                (scope, age, number, super::dn::text(crl.issuer()), key)
            })
    };
    // Each with its signers.
    let served: Vec<_> = served
        .iter()
        .filter_map(|d| Some((signers(d.as_ref())?, parse(d.as_ref())?)))
        .collect();
    let mut out = Vec::new();
    for (der, file) in read.iter().zip(files) {
        let Some((scope, (this_update, number), crl_number, issuer, key)) = parse(der.as_ref())
        else {
            continue;
        };
        let Some((by, (_, (was, was_number), previous_crl_number, _, was_key))) =
            served.iter().find(|(_, (s, ..))| *s == scope)
        else {
            continue;
        };
        // Another key's CRL (the CA re-keyed under its name) is no older
        // CRL of this key's, whatever its date: a key that verified the
        // one in use must verify it, or, with no CA to tell, the key
        // identifiers, when both give one, must match.
        let other_key = match by.is_empty() {
            false => !by
                .iter()
                .map(|&i| cas[i].public_key().raw)
                .collect::<HashSet<_>>()
                .into_iter()
                .any(|key| verified(der.as_ref(), key)),
            // One a CA of the bundle verifies in place of one none did
            // is a repair, however old.
            true if fact(der.as_ref(), &cas, now).is_some_and(|f| f.rank.0) => continue,
            true => matches!((&key, was_key), (Some(k), Some(w)) if k != w),
        };
        if other_key {
            continue;
        }
        let lower = matches!((&number, was_number), (Some(n), Some(w)) if n < w);
        if this_update < *was || (this_update == *was && lower) {
            out.push(CrlRollback {
                file: file.clone(),
                issuer,
                this_update,
                crl_number,
                previous_this_update: *was,
                previous_crl_number: previous_crl_number.clone(),
                maybe_other_key: by.is_empty() && (key.is_none() || was_key.is_none()),
            });
        }
    }
    out
}

/// Whether the CRL `der` is told not to be signed by its issuer in the
/// CA bundle (`cas`): it names its key (an authority key identifier), CA
/// certificates of the bundle under its issuer's name bear that key's
/// identifier (subject key identifier), and none of their keys verifies
/// its signature ([`fails_under_each`]), as a pair's leaf is told not
/// signed by its issuer in the file. A writer that does not truncate
/// (`rsync --inplace`, `dd conv=notrunc`), read half-way over a CRL
/// re-issued at the same length, leaves the new CRL's head on the old
/// one's signature: it parses, and fails so. Used, its issuer's only CRL,
/// it had webpki refuse every client of the issuer (`crl_invalid`), and
/// passed over for an older one, re-admit clients revoked since. Not
/// told: a CRL that names no key (`openssl ca -gencrl` by default), or
/// another key than any CA of the bundle under its issuer's name (an
/// imposter's, or a re-keyed CA's other key, whose certificate clients
/// send): ranked by [`newest`] as before.
pub(super) fn signature_fails(der: &[u8], cas: &[X509Certificate<'_>]) -> bool {
    let Ok((_, crl)) = CertificateRevocationList::from_der(der) else {
        return false;
    };
    let Some(aki) = key_id(&crl) else {
        return false;
    };
    // One check per key, however many CA certificates bear it.
    let keys: HashSet<&[u8]> = cas
        .iter()
        .filter(|ca| ca.subject().as_raw() == crl.issuer().as_raw())
        .filter(|ca| key_ids(ca).1 == Some(&aki[..]))
        .map(|ca| ca.public_key().raw)
        .collect();
    fails_under_each(der, keys)
}

/// The key identifier of `crl`'s authority key identifier, if it has one.
fn key_id(crl: &CertificateRevocationList<'_>) -> Option<Vec<u8>> {
    crl.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })
        .map(|k| k.0.to_vec())
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
        let (by, (by_verified, _, by_age)) = best[scope];
        if by == i {
            continue;
        }
        kept[i] = false;
        let (Ok(old), Ok(new)) = (inspect_crl(&crls[i].der), inspect_crl(&crls[by].der)) else {
            continue;
        };
        if age > by_age {
            // The rank it lost by: verified as the kept one is (none of
            // the issuer's verifies, when its CA is not in the bundle), it
            // is not issued yet.
            const NOT_VERIFIED: &str =
                "no CA certificate of the bundle under its issuer's name verifies its signature";
            let why = match (verified == by_verified, issued) {
                (true, _) => {
                    debug_assert!(!issued);
                    "its thisUpdate is in the future".to_owned()
                }
                (false, true) => NOT_VERIFIED.to_owned(),
                (false, false) => format!("{NOT_VERIFIED}, and its thisUpdate is in the future"),
            };
            notes.push(Note::UnusedCrl {
                file: crls[i].origin.clone(),
                issuer: old.issuer,
                why,
                by_file: crls[by].origin.clone(),
            });
            continue;
        }
        // Verified, so the one kept is too (it ranks first): by another
        // key when no signer of this one verifies that one.
        let by_signers = facts[by].as_ref().map_or(&[][..], |f| &f.signers[..]);
        if *verified && !signers.iter().any(|s| by_signers.binary_search(s).is_ok()) {
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
    // The bundle's certificates by subject, and CRLs by issuer.
    let mut named: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (j, c) in certs.iter().enumerate() {
        if let Some(c) = c {
            named.entry(c.subject().as_raw()).or_default().push(j);
        }
    }
    let mut crls_of: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (k, crl) in parsed_crls.iter().enumerate() {
        if let Some(crl) = crl {
            crls_of.entry(crl.issuer().as_raw()).or_default().push(k);
        }
    }
    // Each not self-issued certificate's issuers in the bundle: the ones
    // under its issuer's name whose key verifies its signature (checked
    // once per key).
    let issuers: Vec<Vec<usize>> = certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let Some(cert) = cert else { return Vec::new() };
            if cert.issuer().as_raw() == cert.subject().as_raw() {
                return Vec::new();
            }
            let mut by_key: HashMap<&[u8], bool> = HashMap::new();
            let candidates = named
                .get(cert.issuer().as_raw())
                .map_or(&[][..], |v| &v[..]);
            candidates
                .iter()
                .copied()
                .filter(|&j| {
                    let Some(c) = certs[j].as_ref().filter(|_| j != i) else {
                        return false;
                    };
                    let key = c.public_key().raw;
                    *by_key
                        .entry(key)
                        .or_insert_with(|| verified(roots[i].as_ref(), key))
                })
                .collect()
        })
        .collect();
    // Whether CRL k is signed by a key, checked once per pair.
    let mut crl_by_key: HashMap<(usize, &[u8]), bool> = HashMap::new();
    // Why each position is out: the revoked CA's subject and the CRL's file.
    let mut out: Vec<Option<(String, String)>> = vec![None; certs.len()];
    let mut unchecked = Vec::new();
    for (i, cert) in certs.iter().enumerate() {
        let Some(cert) = cert else { continue };
        // The distinct keys of its issuers that may sign CRLs.
        let keys: HashSet<&[u8]> = issuers[i]
            .iter()
            .filter_map(|&j| certs[j].as_ref().filter(|c| signs_crls(c)))
            .map(|c| c.public_key().raw)
            .collect();
        // Its issuers' CRLs (under their name: its issuer's) one of those
        // keys verifies, in the bundle's order (newest first).
        let listed = crls_of
            .get(cert.issuer().as_raw())
            .map_or(&[][..], |v| &v[..]);
        let usable: Vec<usize> = listed
            .iter()
            .copied()
            .filter(|&k| {
                keys.iter().any(|&key| {
                    *crl_by_key
                        .entry((k, key))
                        .or_insert_with(|| verified(&crls[k].der, key))
                })
            })
            .collect();
        let serial = cert.raw_serial();
        let revoking = usable.iter().copied().find(|&k| {
            parsed_crls[k].as_ref().is_some_and(|crl| {
                crl.iter_revoked_certificates()
                    .any(|r| r.raw_serial() == serial)
            })
        });
        if let Some(k) = revoking {
            out[i] = Some((infos[i].subject.clone(), crls[k].origin.clone()));
        }
        if usable.is_empty()
            && let Some(&j) = issuers[i].first()
        {
            unchecked.push((i, j));
        }
    }
    // A CA issued only by CAs that are out is out too: its chain holds a
    // revoked certificate. Each certificate counts its issuers not out
    // yet; one that goes out lowers the count of those it issued.
    let mut issued: Vec<Vec<usize>> = vec![Vec::new(); certs.len()];
    for (i, by) in issuers.iter().enumerate() {
        for &j in by {
            issued[j].push(i);
        }
    }
    let mut left: Vec<usize> = issuers.iter().map(Vec::len).collect();
    let mut gone: Vec<usize> = (0..certs.len()).filter(|&i| out[i].is_some()).collect();
    while let Some(j) = gone.pop() {
        for &i in &issued[j] {
            left[i] -= 1;
            if left[i] == 0 && out[i].is_none() {
                out[i] = out[issuers[i][0]].clone();
                gone.push(i);
            }
        }
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
mod tests;
