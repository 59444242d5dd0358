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
        let anchor_issued = |c: &X509Certificate<'_>, der: &[u8]| {
            self.anchors.iter().any(|a| {
                !a.subject.is_empty()
                    && a.subject == c.issuer().as_raw()
                    && crate::material::signed_by(der, &a.key)
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
            // The signature checked with the algorithms the handshake
            // verified the chain with (rustls's provider: P-521, SHA-512,
            // Ed25519 and RSA-PSS too), not x509-parser's narrower set.
            let mut issuers = parsed.iter().enumerate().filter_map(|(i, c)| {
                let c = c.as_ref().filter(|c| {
                    !taken[i]
                        && c.subject().as_raw() == current.issuer().as_raw()
                        && may_issue(i, c)
                        && crate::material::signed_by(current_der, c.public_key().raw)
                })?;
                Some((i, c))
            });
            let Some(first) = issuers.next() else { break };
            // A second looked for lazily: a client padding its chain with
            // copies of its issuer costs one check more.
            let (i, issuer) = match issuers.next() {
                None => first,
                Some(second) => [first, second]
                    .into_iter()
                    .chain(issuers)
                    .find(|&(i, c)| anchor_issued(c, &sent[i]))
                    .unwrap_or(first),
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
        let vouched = chosen
            .iter()
            .rposition(|&(i, c)| is_anchor(i) || anchor_issued(c, &sent[i]))
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
