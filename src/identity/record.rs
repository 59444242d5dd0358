//! The identity record: one parse of a verified client certificate that rules, headers and logs all read.
//!
//! Built once per connection (in the handshake, by [`crate::identity::gate`])
//! and carried behind an `Arc`; nothing downstream parses the certificate
//! again, so an `allow` rule, an upstream header and an access-log line can
//! never disagree about who the client is.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

use crate::material::info;

/// A client certificate's identity. Holds no key material: the chain is
/// public certificates only (forwarded upstream in `rfc9440`/`xfcc` modes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Subject DN, e.g. `CN=billing, OU=payments`: the certificate's
    /// order, values escaped as RFC 4514 says, ASCII throughout
    /// ([`crate::material::dn::text`]).
    pub subject: String,
    /// Issuer DN, written the same way.
    pub issuer: String,
    /// The subject's common names (usually one); none when one is not text.
    pub cn: Vec<String>,
    /// The subject's organizational units that are text.
    pub ou: Vec<String>,
    /// DNS SANs as written in the certificate.
    pub dns_sans: Vec<String>,
    /// URI SANs; a `spiffe://` one is the SPIFFE ID.
    pub uri_sans: Vec<String>,
    /// Email (rfc822Name) SANs.
    pub email_sans: Vec<String>,
    /// Serial number as OpenSSL prints it ([`info::serial_text`]): `8A31`.
    pub serial: String,
    /// SHA-256 of the leaf DER, lowercase hex without separators.
    pub fingerprint_sha256: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The chain as the client sent it, leaf first: what an open
    /// connection is verified again with. The backend is told only its
    /// [`Identity::issuing_chain`].
    pub chain: Vec<CertificateDer<'static>>,
    /// The trust anchors of the listener that verified the chain (its CA
    /// bundle's, revoked ones left out); empty when none did. Which of
    /// two cross-signed issuers the backend is told of
    /// ([`Identity::issuing_chain`]).
    pub anchors: std::sync::Arc<[Anchor]>,
    /// What each `forward_client_cert` mode that sends something tells the
    /// backend about this client, encoded on the connection's first request
    /// in that mode (a slot per mode: [`crate::proxy::client_cert::apply`]).
    /// Later requests clone the values, a reference count each, instead of
    /// encoding them again. Only verified clients carry it.
    pub forwarded: [std::sync::OnceLock<Vec<(http::HeaderName, http::HeaderValue)>>; 4],
    /// What the access log tells of this client, copied on the
    /// connection's first logged line and shared by its lines, which hold
    /// only that, not the chain ([`crate::access_log::LoggedIdentity::of`]).
    pub logged: std::sync::OnceLock<std::sync::Arc<crate::access_log::LoggedIdentity>>,
}

/// A trust anchor as [`Identity::issuing_chain`] asks it: parsed once, when
/// the listener's gate is built, not on each connection (a `client_auth.ca`
/// may be a bundle of a hundred roots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The certificate as the CA bundle holds it.
    pub der: CertificateDer<'static>,
    /// Its subject's DER; empty when it does not parse (it issued nothing).
    subject: Vec<u8>,
    /// Its subjectPublicKey's bits.
    key: Vec<u8>,
}

impl From<CertificateDer<'static>> for Anchor {
    fn from(der: CertificateDer<'static>) -> Anchor {
        let (subject, key) = match X509Certificate::from_der(&der) {
            Ok((_, c)) => (c.subject().as_raw().to_vec(), c.public_key().raw.to_vec()),
            Err(_) => Default::default(),
        };
        Anchor { der, subject, key }
    }
}

/// The most certificates above the leaf the backend is told of
/// ([`Identity::issuing_chain`]): webpki builds no path through more
/// intermediates than this, and a root the client sends along still fits.
pub const MAX_FORWARDED_ISSUERS: usize = 7;

/// Every value, or none when one is not text: a CN hotproxy cannot read
/// beside one it can must not make the readable one look like the only
/// one (a `cn` rule needs exactly one).
fn every(values: impl Iterator<Item = Option<String>>) -> Vec<String> {
    values.collect::<Option<Vec<_>>>().unwrap_or_default()
}

/// Whether `cert`'s keyUsage lets its key sign (RFC 5280 §4.2.1.3, RFC 8446
/// §4.4.2.2): no extension allows every use (as OpenSSL reads it); one
/// present must hold `digitalSignature`. An extension that does not parse,
/// or appears twice, allows nothing. Upstream certificates are read with
/// it too (`tls::client`, `tls::names`).
pub(crate) fn may_sign(cert: &X509Certificate<'_>) -> bool {
    key_usage_allows(cert, KeyUsage::digital_signature)
}

/// Whether `cert`'s keyUsage allows the use `bit` reads: every use when
/// the extension is absent, none when it does not parse (or appears
/// twice). [`may_sign`] and a forwarded chain's issuers (keyCertSign).
fn key_usage_allows(cert: &X509Certificate<'_>, bit: fn(&KeyUsage) -> bool) -> bool {
    match cert.key_usage() {
        Ok(None) => true,
        Ok(Some(ku)) => bit(ku.value),
        Err(_) => false,
    }
}

/// The most signatures [`Identity::issuing_chain`] checks to find the
/// issuer of one certificate of the chain, and again to choose among
/// copies of it: a real chain needs one to find it (two when the client
/// sends an old and a new issuer of one name), and one or two to choose
/// (a cross-signed issuer). Whatever a client pads its chain with, a
/// chain costs at most this many per step, not one per certificate.
const SIGNATURE_CHECKS_PER_STEP: usize = 2;

/// Takes one signature check from `budget`: false when none is left.
fn spend(budget: &mut usize) -> bool {
    let left = *budget > 0;
    *budget = budget.saturating_sub(1);
    left
}

/// Whether `signed` is signed by the key of `spki`
/// ([`crate::material::signed_by`]), counted in tests: what
/// [`Identity::issuing_chain`] spends on a client's chain.
fn verified(signed: &[u8], spki: &[u8]) -> bool {
    #[cfg(test)]
    tests::SIGNATURE_CHECKS.with(|n| n.set(n.get() + 1));
    crate::material::signed_by(signed, spki)
}

impl Identity {
    /// Parse the leaf of `chain` (leaf first, as rustls hands it over).
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Result<Identity, String> {
        Self::from_client_chain(chain).map(|(id, _)| id)
    }

    /// [`Identity::from_chain`], and whether the leaf's key may sign
    /// ([`may_sign`]): a TLS client proves its key by signing the
    /// handshake (`CertificateVerify`), which webpki does not check
    /// against the keyUsage extension. One parse for both, in the handshake.
    pub fn from_client_chain(chain: &[CertificateDer<'_>]) -> Result<(Identity, bool), String> {
        let leaf = chain.first().ok_or("no certificate")?;
        let (rest, cert) = X509Certificate::from_der(leaf).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        // As the subject header reads it: x509-parser's `as_str` knows no
        // BMP, Universal, T61 or Visible string, so a `CN=ops` from AD CS
        // (BMPString) matched no `cn: ops` rule while the header said it.
        let text = crate::material::dn::attribute_text;
        let mut id = Identity {
            subject: crate::material::dn::text(cert.subject()),
            issuer: crate::material::dn::text(cert.issuer()),
            cn: every(cert.subject().iter_common_name().map(text)),
            // An OU that is not text is left out, unlike a CN: an `ou`
            // rule matches when any OU does, so one it cannot read could
            // only fail to match, and the others judge as without it.
            ou: cert
                .subject()
                .iter_organizational_unit()
                .filter_map(text)
                .collect(),
            dns_sans: Vec::new(),
            uri_sans: Vec::new(),
            email_sans: Vec::new(),
            serial: info::serial_text(cert.raw_serial()),
            fingerprint_sha256: info::fingerprint(leaf),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            anchors: Default::default(),
            forwarded: Default::default(),
            logged: Default::default(),
        };
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => id.dns_sans.push((*d).to_owned()),
                    GeneralName::URI(u) => id.uri_sans.push((*u).to_owned()),
                    GeneralName::RFC822Name(m) => id.email_sans.push((*m).to_owned()),
                    _ => {}
                }
            }
        }
        Ok((id, may_sign(&cert)))
    }

    /// The SPIFFE ID: the first `spiffe://` URI SAN.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.uri_sans
            .iter()
            .map(String::as_str)
            .find(|u| u.starts_with("spiffe://"))
    }

    /// Subject and issuer DNs in OpenSSL's RFC 2253 form: nginx's
    /// `$ssl_client_s_dn` and `$ssl_client_i_dn`, Envoy's XFCC `Subject`;
    /// empty if the leaf does not parse. Parses the leaf again: only the
    /// `ingress_nginx` and `xfcc` modes need them, once per connection, so
    /// no handshake pays for them.
    pub fn rfc2253_dns(&self) -> (String, String) {
        match X509Certificate::from_der(self.leaf()) {
            Ok((_, c)) => (
                crate::material::dn::rfc2253(c.subject()),
                crate::material::dn::rfc2253(c.issuer()),
            ),
            Err(_) => Default::default(),
        }
    }

    /// The leaf and the certificates the client sent that it was issued
    /// through, in order: each the issuer of the one before (its subject
    /// is that one's issuer, and its key verifies that one's signature)
    /// and a CA or a trust anchor, up to a self-issued one (a root) or
    /// [`MAX_FORWARDED_ISSUERS`].
    /// Of two such issuers (a cross-signed intermediate: one subject and
    /// key, issued by two roots), the one a trust anchor of
    /// [`Identity::anchors`] issued (by name and signature) is taken, as
    /// the handshake's path went through it; otherwise the first sent.
    /// Each step checks at most [`SIGNATURE_CHECKS_PER_STEP`] signatures
    /// to find the issuer (one whose key already failed is skipped
    /// unchecked), and as many to choose among its copies (told by
    /// their key): a chain padded with CAs of its issuer's name costs no
    /// more than a real one, and a client that leads with more than that
    /// many impostors is told of with less of its chain.
    /// What `rfc9440` and `xfcc` forward: any other certificate a client
    /// pads its Certificate message with (rustls takes up to 64 KiB) is
    /// left out, so it cannot grow the backend's headers past its limits.
    /// The path is cut after its highest certificate that is a trust
    /// anchor or that a trust anchor issued (nothing above the leaf when
    /// none is): a copy of an issuer (its name and key) signed by a key of
    /// the client's own would otherwise lead on to certificates only the
    /// client signed. So what is forwarded is the CA hierarchy's, not the
    /// client's choice.
    /// Parses the chain again, asked once per connection and mode; the
    /// trust anchors were parsed with the gate ([`Anchor`]).
    pub fn issuing_chain(&self) -> Vec<&CertificateDer<'static>> {
        let Some((leaf, sent)) = self.chain.split_first() else {
            return Vec::new();
        };
        let mut path = vec![leaf];
        let Ok((_, leaf)) = X509Certificate::from_der(leaf) else {
            return path;
        };
        fn parse<'a>(c: &'a CertificateDer<'static>) -> Option<X509Certificate<'a>> {
            X509Certificate::from_der(c).ok().map(|(_, c)| c)
        }
        let parsed: Vec<Option<X509Certificate<'_>>> = sent.iter().map(parse).collect();
        // Whether a trust anchor issued `der` (`c` parsed): its subject is
        // `c`'s issuer and its key verifies `c`'s signature.
        // `budget` counts the signatures one step may still check.
        let anchor_issued = |c: &X509Certificate<'_>, der: &[u8], budget: &mut usize| {
            self.anchors.iter().any(|a| {
                !a.subject.is_empty()
                    && a.subject == c.issuer().as_raw()
                    && spend(budget)
                    && verified(der, &a.key)
            })
        };
        let is_anchor = |i: usize| {
            self.anchors
                .iter()
                .any(|a| a.der.as_ref() == sent[i].as_ref())
        };
        // Whether `c` (`sent[i]`) may issue a certificate: a CA (basic
        // constraints cA, as webpki requires of every issuer but the trust
        // anchor; and keyCertSign when it lists key usages, as RFC 5280
        // does), or a trust anchor itself (a v1 root has no extensions).
        // Otherwise the client's own leaf, which a trust anchor did issue,
        // would vouch for whatever the client signs with its key.
        let may_issue = |i: usize, c: &X509Certificate<'_>| {
            let ca = matches!(c.basic_constraints(), Ok(Some(b)) if b.value.ca);
            (ca && key_usage_allows(c, KeyUsage::key_cert_sign)) || is_anchor(i)
        };
        let mut taken = vec![false; sent.len()];
        // The issuers taken, by their index in `sent`.
        let mut chosen: Vec<(usize, &X509Certificate<'_>)> = Vec::new();
        let (mut current, mut current_der) = (&leaf, path[0]);
        while path.len() <= MAX_FORWARDED_ISSUERS
            && current.subject().as_raw() != current.issuer().as_raw()
        {
            // The candidates: certificates not yet taken, named as the
            // current one's issuer, that may issue.
            let candidates = || {
                parsed.iter().enumerate().filter_map(|(i, c)| {
                    let c = c.as_ref().filter(|c| {
                        !taken[i]
                            && c.subject().as_raw() == current.issuer().as_raw()
                            && may_issue(i, c)
                    })?;
                    Some((i, c))
                })
            };
            // The first whose key verifies the current one's signature,
            // with the algorithms the handshake verified the chain with
            // (rustls's provider: P-521, SHA-512, Ed25519 and RSA-PSS too),
            // not x509-parser's narrower set. At most
            // [`SIGNATURE_CHECKS_PER_STEP`] tried: each is a signature
            // verification on a runtime worker (an RSA-8192 key's is slow),
            // and a client may pad its chain with dozens of CAs of its
            // issuer's name, each with a key of its own. A candidate whose
            // key already failed is skipped unchecked, at no cost: it cannot
            // verify either, and copies of an old issuer (cross-signed, or
            // padding) sent ahead of a new one of its name would otherwise
            // spend the budget before the new one is tried.
            let mut budget = SIGNATURE_CHECKS_PER_STEP;
            let mut failed: Vec<&[u8]> = Vec::new();
            let Some(first) = candidates().find(|&(_, c)| {
                let key = c.public_key().raw;
                if failed.contains(&key) || !spend(&mut budget) {
                    return false;
                }
                let ok = verified(current_der, key);
                if !ok {
                    failed.push(key);
                }
                ok
            }) else {
                break;
            };
            // Copies of it (a cross-signed intermediate: one subject and
            // key, issued by two roots) verify that signature as it does:
            // told by their key, unchecked. Of those, the one a trust
            // anchor issued, as the handshake's path went through it;
            // again at most [`SIGNATURE_CHECKS_PER_STEP`] tried, otherwise
            // the first.
            let key = first.1.public_key().raw;
            let mut copies = candidates()
                .filter(|&(i, c)| i != first.0 && c.public_key().raw == key)
                .peekable();
            let (i, issuer) = match copies.peek() {
                None => first,
                Some(_) => {
                    let mut budget = SIGNATURE_CHECKS_PER_STEP;
                    std::iter::once(first)
                        .chain(copies)
                        .find(|&(i, c)| anchor_issued(c, &sent[i], &mut budget))
                        .unwrap_or(first)
                }
            };
            taken[i] = true;
            path.push(&sent[i]);
            chosen.push((i, issuer));
            (current, current_der) = (issuer, &sent[i]);
        }
        // A certificate's name and key are anyone's to copy: each one above
        // was checked against the key of the next, which may be the
        // client's own. Only what a trust anchor vouches for goes on: the
        // path up to its highest certificate that is a trust anchor, or
        // that one issued (its signature is the anchor's); nothing above
        // the leaf when none is.
        // The trust anchors of one name are the operator's: all tried.
        let vouched = chosen
            .iter()
            .rposition(|&(i, c)| {
                let mut every_anchor = self.anchors.len();
                is_anchor(i) || anchor_issued(c, &sent[i], &mut every_anchor)
            })
            .map_or(1, |at| at + 2);
        path.truncate(vouched);
        path
    }

    /// The leaf certificate's DER.
    pub fn leaf(&self) -> &[u8] {
        self.chain.first().map(|c| c.as_ref()).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    thread_local! {
        /// Signatures [`verified`] on this thread.
        pub(super) static SIGNATURE_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A CA certificate's parameters, named `cn`.
    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p
    }

    /// A client's chain padded with certificates named as its issuer costs
    /// a bounded number of signature checks, not one per certificate (each
    /// was checked on a runtime worker, on the connection's first request
    /// that forwards the chain). After the real issuer: 50 CAs of its name,
    /// each with a key of its own; the backend is told of leaf and issuer.
    /// Before it: 50 copies of it (its name and key) that say the trust
    /// anchor issued them, signed by another key; the client chose to lead
    /// with copies no anchor vouches for, so the leaf alone is told of.
    #[test]
    fn padding_costs_a_bounded_number_of_signature_checks() {
        let root_key = KeyPair::generate().unwrap();
        let root = ca_params("padding root").self_signed(&root_key).unwrap();
        let root_issuer = rcgen::Issuer::new(ca_params("padding root"), root_key);
        let forged_root =
            rcgen::Issuer::new(ca_params("padding root"), KeyPair::generate().unwrap());
        let int_key = KeyPair::generate().unwrap();
        let int = ca_params("padding issuing CA")
            .signed_by(&int_key, &root_issuer)
            .unwrap();
        let copies: Vec<CertificateDer<'static>> = (0..50u64)
            .map(|n| {
                let mut p = ca_params("padding issuing CA");
                p.serial_number = Some(n.into());
                p.signed_by(&int_key, &forged_root).unwrap().der().clone()
            })
            .collect();
        let int_issuer = rcgen::Issuer::new(ca_params("padding issuing CA"), int_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["client.test".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &int_issuer)
            .unwrap();
        let padding = (0..50).map(|_| {
            let key = KeyPair::generate().unwrap();
            ca_params("padding issuing CA")
                .self_signed(&key)
                .unwrap()
                .der()
                .clone()
        });
        let identity = |chain: Vec<CertificateDer<'static>>| {
            let mut id = Identity::from_chain(&chain).unwrap();
            id.anchors = vec![Anchor::from(root.der().clone())].into();
            id
        };
        let checked = |id: &Identity| {
            SIGNATURE_CHECKS.with(|n| n.set(0));
            let path: Vec<Vec<u8>> = id.issuing_chain().iter().map(|c| c.to_vec()).collect();
            (path, SIGNATURE_CHECKS.with(|n| n.get()))
        };

        let (leaf, int) = (leaf.der().clone(), int.der().clone());
        let padded = identity(
            [leaf.clone(), int.clone()]
                .into_iter()
                .chain(padding)
                .collect(),
        );
        let (path, checks) = checked(&padded);
        assert_eq!(path, [leaf.to_vec(), int.to_vec()]);
        assert!(checks <= 4, "{checks} signatures checked");

        let copied = identity(
            [leaf.clone()]
                .into_iter()
                .chain(copies)
                .chain([int])
                .collect(),
        );
        let (path, checks) = checked(&copied);
        assert_eq!(path, [leaf.to_vec()]);
        assert!(checks <= 6, "{checks} signatures checked");
    }

    /// An issuer whose key was rolled over: the client sends the old one,
    /// a cross-signed copy of it (same key) and then the new one of the same
    /// name, which issued the leaf. The old key fails once; its copies are
    /// skipped without a check (they cannot verify either), so the new issuer
    /// is still tried and forwarded, also behind 50 copies of the old one.
    #[test]
    fn copies_of_a_failed_key_do_not_spend_the_budget() {
        let root_key = KeyPair::generate().unwrap();
        let root = ca_params("rollover root").self_signed(&root_key).unwrap();
        let root_issuer = rcgen::Issuer::new(ca_params("rollover root"), root_key);
        let other_root = rcgen::Issuer::new(
            ca_params("rollover other root"),
            KeyPair::generate().unwrap(),
        );
        let old_key = KeyPair::generate().unwrap();
        let old = |n: u64, by: &rcgen::Issuer<'_, KeyPair>| {
            let mut p = ca_params("rollover issuing CA");
            p.serial_number = Some(n.into());
            p.signed_by(&old_key, by).unwrap().der().clone()
        };
        let new_key = KeyPair::generate().unwrap();
        let new = ca_params("rollover issuing CA")
            .signed_by(&new_key, &root_issuer)
            .unwrap()
            .der()
            .clone();
        let new_issuer = rcgen::Issuer::new(ca_params("rollover issuing CA"), new_key);
        let leaf = CertificateParams::new(vec!["client.test".to_owned()])
            .unwrap()
            .signed_by(&KeyPair::generate().unwrap(), &new_issuer)
            .unwrap()
            .der()
            .clone();
        let checked = |chain: Vec<CertificateDer<'static>>| {
            let mut id = Identity::from_chain(&chain).unwrap();
            id.anchors = vec![Anchor::from(root.der().clone())].into();
            SIGNATURE_CHECKS.with(|n| n.set(0));
            let path: Vec<Vec<u8>> = id.issuing_chain().iter().map(|c| c.to_vec()).collect();
            (path, SIGNATURE_CHECKS.with(|n| n.get()))
        };

        let cross_signed = vec![
            leaf.clone(),
            old(1, &root_issuer),
            old(2, &other_root),
            new.clone(),
        ];
        let (path, checks) = checked(cross_signed);
        assert!(
            path == [leaf.to_vec(), new.to_vec()],
            "{} certificates forwarded",
            path.len()
        );
        assert!(checks <= 4, "{checks} signatures checked");

        let padded = [leaf.clone()]
            .into_iter()
            .chain((0..50).map(|n| old(n, &root_issuer)))
            .chain([new.clone()])
            .collect();
        let (path, checks) = checked(padded);
        assert!(
            path == [leaf.to_vec(), new.to_vec()],
            "{} certificates forwarded",
            path.len()
        );
        assert!(checks <= 4, "{checks} signatures checked");
    }

    /// Every field of the record comes from the certificate.
    #[test]
    fn parses_every_field() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["api.partners.example".to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "billing");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "payments");
        p.subject_alt_names.push(SanType::URI(
            "spiffe://cluster.local/ns/prod/sa/billing"
                .try_into()
                .unwrap(),
        ));
        p.subject_alt_names.push(SanType::Rfc822Name(
            "ops@partners.example".try_into().unwrap(),
        ));
        p.serial_number = Some(rcgen::SerialNumber::from(0x1234u64));
        let cert = p.self_signed(&key).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let id = Identity::from_chain(std::slice::from_ref(&der)).unwrap();
        assert_eq!(id.cn, ["billing"]);
        assert_eq!(id.ou, ["payments"]);
        assert!(id.subject.contains("CN=billing"), "{}", id.subject);
        assert_eq!(id.dns_sans, ["api.partners.example"]);
        assert_eq!(
            id.spiffe_id(),
            Some("spiffe://cluster.local/ns/prod/sa/billing")
        );
        assert_eq!(id.email_sans, ["ops@partners.example"]);
        assert_eq!(id.serial, "1234");
        assert_eq!(id.fingerprint_sha256, info::fingerprint(&der));
        assert!(id.not_before < id.not_after);
        assert_eq!(id.leaf(), der.as_ref());
        assert!(Identity::from_chain(&[]).is_err());
        assert!(Identity::from_chain(&[CertificateDer::from(vec![0x30, 0x00])]).is_err());
    }
}
