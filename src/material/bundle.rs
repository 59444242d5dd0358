//! A CA bundle's parse: its certificates and each CRL file's CRLs, as webpki will use them (the newest of an issuer's; no revoked CA as an anchor).

use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::SectionKind;

use super::crls::{Crl, newest, revoked_cas};
use super::pem::{MaterialError, certificates, sections, text_only};
use super::{CaBundle, Material};

/// The CA certificates of `parts[0]` (named `names[0]`) and the CRLs of
/// each further part: at least one certificate, and at least one CRL in
/// each CRL source, each parsed as webpki will parse it (the
/// certificates as trust anchors); of an issuer's CRLs, the newest; a
/// CA certificate they revoke is no trust anchor.
pub(super) fn parse(names: &[String], parts: &[Vec<u8>]) -> Result<Material, MaterialError> {
    let (roots, certs) = certificates(&names[0], &parts[0])?;
    // What verifies peers is webpki, which takes each certificate as a
    // trust anchor only if it parses it (stricter than x509-parser: an
    // extension twice, say). One it refuses is refused here, where the
    // file and the certificate can be named, not when a listener's or an
    // upstream's verifier is built after the material was taken (a reload
    // failing late, naming neither; /certs/validate saying valid).
    for (position, (der, info)) in roots.iter().zip(&certs).enumerate() {
        webpki::anchor_from_trusted_cert(der).map_err(|e| MaterialError::BadAnchor {
            origin: names[0].clone(),
            position: position + 1,
            subject: info.subject.clone(),
            reason: format!("{e:?}"),
        })?;
    }
    let mut crls = Vec::new();
    let mut crl_counts = Vec::new();
    for (origin, bytes) in names.iter().zip(parts).skip(1) {
        let mut found = 0;
        for (kind, der) in sections(origin, bytes)? {
            if kind != SectionKind::Crl {
                continue;
            }
            x509_parser::parse_x509_crl(&der).map_err(|e| MaterialError::BadCrl {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
            // What verifies client certificates is webpki, which is
            // stricter (RFC 5280's profile: a v2 CRL): a CRL it refuses
            // is refused here, where the file is named, not when the
            // listener's verifier is built after the material was
            // taken (a reload failing late, an API call's 400 after
            // /certs/validate said valid).
            webpki::BorrowedCertRevocationList::from_der(&der).map_err(|e| {
                MaterialError::BadCrl {
                    origin: origin.clone(),
                    reason: format!("not usable to check revocation: {e:?}"),
                }
            })?;
            crls.push(Crl {
                origin: origin.clone(),
                der,
            });
            found += 1;
        }
        if found == 0 {
            // Text and no BEGIN line yet (`openssl crl -text > FILE` read
            // before it reaches the PEM) is waited on, as for a
            // certificate file; PEM of other sections, or DER, is not.
            return Err(MaterialError::NoCrl {
                origin: origin.clone(),
                text_only: text_only(bytes),
            });
        }
        crl_counts.push(found);
    }
    let mut notes = Vec::new();
    let crls = newest(crls, &roots, &mut notes);
    let revoked = revoked_cas(&names[0], &roots, &certs, &crls, &mut notes);
    let crls = crls
        .into_iter()
        .map(|c| CertificateRevocationListDer::from(c.der))
        .collect();
    Ok(Material::Ca(CaBundle {
        roots,
        revoked,
        crls,
        certs,
        crl_counts,
        notes,
    }))
}
