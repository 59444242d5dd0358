//! An issuer's full CRL read on the path webpki verified, for a certificate that names no CRL distribution point, where webpki reads a newer CRL of one scope alone.
//!
//! webpki checks a certificate against the first CRL of its issuer that
//! covers it, and takes a CRL with an issuing distribution point (one
//! scope) to cover a certificate that names no CRL distribution point.
//! A CA bundle's CRLs come newest first, so when an issuer's scoped CRL
//! is newer than its full one, a certificate the full one revokes and
//! the scoped one does not list passed. Such a certificate is in no
//! partition (RFC 5280 §6.3.3: OpenSSL reads the full CRL for it, nginx
//! refuses it). [`FullCrlCheck`] verifies the chain once more, with the
//! same anchors, CRLs and policies, and a `verify_path` callback that
//! reads the full CRL on the very path webpki built: the chain passes
//! only on a path both checks pass. The full CRL is read past its
//! nextUpdate too: it may miss newer revocations, but what it lists stays
//! revoked. It is built only for a bundle with an issuer whose CRLs mix
//! a full and a scoped one; others cost nothing.

use std::cell::Cell;
use std::collections::HashMap;

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use rustls::{CertRevocationListError, CertificateError};
use webpki::{
    Cert, CertRevocationList, EndEntityCert, ExpirationPolicy, KeyUsage, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy, VerifiedPath,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// A full CRL (no issuing distribution point) of an issuer whose CRLs
/// mix scopes.
#[derive(Debug)]
struct FullCrl {
    /// Its place among the bundle's CRLs.
    index: usize,
    der: CertificateRevocationListDer<'static>,
    /// A CA certificate (trust anchor) of the bundle under its issuer's
    /// name verifies its signature: a path issuer's key that does not is
    /// another key of a re-keyed CA, whose own full CRL was set aside.
    bundle_signed: bool,
}

/// Why a path's full-CRL check refuses it: the worse over the paths
/// tried is the chain's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    /// The issuer's full CRL in use is another key's of the bundle.
    CrlInvalid,
    Revoked,
}

/// The second verification of a chain against a CA bundle whose CRLs
/// mix scopes for some issuer.
#[derive(Debug)]
pub(crate) struct FullCrlCheck {
    /// The bundle's CRLs, in the order the verifier it follows is given
    /// them: its own revocation check, done again, must pass on the path.
    crls: Vec<CertRevocationList<'static>>,
    /// Per issuer name (its DER contents, as webpki compares names) whose
    /// CRLs mix scopes, its full CRLs in the bundle's order (newest first).
    full: HashMap<Vec<u8>, Vec<FullCrl>>,
    /// An expired CRL read by webpki's own check is let pass
    /// (`allow_expired_crl`), as the verifier it follows does. The full
    /// CRL read on the path is read expired or not: a revocation does
    /// not expire with its list.
    allow_expired: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl FullCrlCheck {
    /// The check for `crls` (a CA bundle's, in the order its verifier is
    /// given them), `None` when no issuer's CRLs mix a full and a scoped
    /// one: then webpki's own check reads every CRL that can decide.
    pub(crate) fn new(
        crls: &[CertificateRevocationListDer<'static>],
        anchors: &[TrustAnchor<'_>],
        allow_expired: bool,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<Option<FullCrlCheck>, String> {
        let parsed = crls
            .iter()
            .map(|der| {
                OwnedCertRevocationList::from_der(der.as_ref())
                    .map(CertRevocationList::from)
                    .map_err(|e| format!("CRL not usable: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut scoped: HashMap<&[u8], bool> = HashMap::new();
        for crl in &parsed {
            let any = scoped.entry(crl.issuer()).or_default();
            *any |= crl.issuing_distribution_point().is_some();
        }
        let mut full: HashMap<Vec<u8>, Vec<FullCrl>> = HashMap::new();
        for (index, (der, crl)) in crls.iter().zip(&parsed).enumerate() {
            if crl.issuing_distribution_point().is_some() || !scoped[crl.issuer()] {
                continue;
            }
            let bundle_signed = anchors
                .iter()
                .filter(|a| a.subject.as_ref() == crl.issuer())
                .any(|a| {
                    let spki = webpki::spki_for_anchor(a);
                    crate::material::signed_by(der.as_ref(), spki.as_ref())
                });
            full.entry(crl.issuer().to_vec())
                .or_default()
                .push(FullCrl {
                    index,
                    der: der.clone(),
                    bundle_signed,
                });
        }
        if full.is_empty() {
            return Ok(None);
        }
        Ok(Some(FullCrlCheck {
            crls: parsed,
            full,
            allow_expired,
            algs,
        }))
    }

    /// `end_entity` with `intermediates` verified for `usage` at `now`
    /// against `anchors` as the verifier it follows does (the same CRLs,
    /// order and policies: a revocation status unknown refused, an
    /// expired CRL refused unless `allow_expired`), on a path whose
    /// certificates its issuers' full CRLs do not revoke either.
    pub(crate) fn verify(
        &self,
        anchors: &[TrustAnchor<'_>],
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<(), rustls::Error> {
        let revoked = rustls::Error::InvalidCertificate(CertificateError::Revoked);
        let leaf = EndEntityCert::try_from(end_entity).map_err(|_| revoked.clone())?;
        let crls: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let expiration = match self.allow_expired {
            true => ExpirationPolicy::Ignore,
            false => ExpirationPolicy::Enforce,
        };
        let revocation = RevocationOptionsBuilder::new(&crls)
            .map_err(|_| revoked.clone())?
            .with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(UnknownStatusPolicy::Deny)
            .with_expiration_policy(expiration)
            .build();
        let refusal = Cell::new(None);
        let on_path = |path: &VerifiedPath<'_>| {
            self.on_path(path).map_err(|r| {
                refusal.set(refusal.get().max(Some(r)));
                webpki::Error::CertRevoked
            })
        };
        let verified = leaf.verify_for_usage(
            self.algs.all,
            anchors,
            intermediates,
            now,
            usage,
            Some(revocation),
            Some(&on_path),
        );
        // webpki passed the chain: only a full CRL refuses it here, as
        // revoked, or as webpki refuses a CRL of another key.
        match (verified, refusal.get()) {
            (Ok(_), _) => Ok(()),
            (Err(_), Some(Refusal::CrlInvalid)) => Err(rustls::Error::InvalidCertRevocationList(
                CertRevocationListError::BadSignature,
            )),
            (Err(_), _) => Err(revoked),
        }
    }

    /// Whether no certificate of `path` that names no CRL distribution
    /// point is revoked by its issuer's full CRL, of an issuer whose CRLs
    /// mix scopes: the newest one the issuer's key on the path verifies,
    /// past its nextUpdate or not (an expired CRL may miss newer
    /// revocations, never undo the ones it lists); one it does not,
    /// forged, is passed over; one another CA key of the bundle verifies
    /// refuses it as `crl_invalid` (a re-keyed CA: the full CRL of the
    /// path's key was set aside for it, warned about as refusing so).
    fn on_path(&self, path: &VerifiedPath<'_>) -> Result<(), Refusal> {
        let end_entity: &Cert<'_> = path.end_entity();
        let certs: Vec<&Cert<'_>> = std::iter::once(end_entity)
            .chain(path.intermediate_certificates())
            .collect();
        for (i, cert) in certs.iter().enumerate() {
            let Some(full) = self.full.get(cert.issuer()) else {
                continue;
            };
            if names_distribution_point(&cert.der()) {
                continue;
            }
            let issuer_key = match certs.get(i + 1) {
                Some(issuer) => issuer.subject_public_key_info(),
                None => webpki::spki_for_anchor(path.anchor()),
            };
            let ours = full
                .iter()
                .find(|c| crate::material::signed_by(c.der.as_ref(), issuer_key.as_ref()));
            match ours {
                Some(crl) => {
                    let listed = self.crls[crl.index].find_serial(cert.serial());
                    if !matches!(listed, Ok(None)) {
                        return Err(Refusal::Revoked);
                    }
                }
                None if full.iter().any(|c| c.bundle_signed) => {
                    return Err(Refusal::CrlInvalid);
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// Whether the certificate `der` has a CRL distribution points extension:
/// then webpki reads the CRL whose issuing distribution point it names.
fn names_distribution_point(der: &[u8]) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, cert)| {
        cert.extensions()
            .iter()
            .any(|ext| ext.oid == x509_parser::oid_registry::OID_X509_EXT_CRL_DISTRIBUTION_POINTS)
    })
}
