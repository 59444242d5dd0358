//! `verify_names`: the upstream certificate names accepted (DNS, URI, a SPIFFE trust domain) and their verifier.
//!
//! With `tls.verify_names` set, an upstream certificate is verified in two
//! steps: the chain, exactly as rustls's WebPKI verifier does it (webpki's
//! `EndEntityCert::verify_for_usage` for server auth) but *without* a name,
//! built and verified once, with the CA bundle's CRLs checking the
//! revocation of every certificate of it on the way; then its SANs against
//! the accepted names, read with x509-parser because WebPKI knows DNS and
//! IP names only, while a SPIFFE SVID names its workload by a URI SAN
//! (`spiffe://td/ns/x/sa/y`); from the same parse, a keyUsage without
//! `digitalSignature` is refused, as `tls::client` does without names. A
//! SPIFFE name accepts an X509-SVID only (one URI SAN, a valid SPIFFE ID).
//! Errors keep rustls's kinds (unknown CA,
//! expired, revoked, an unusable CRL), which `tls::client::classify` reads.
//! `server_name` is then only the SNI sent.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

// A value as a configuration problem quotes it: escaped, cut after 64 bytes.
use crate::config::found_text as shown;
use crate::tls::full_crl::FullCrlCheck;

/// One accepted name of `verify_names`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamePattern {
    /// A DNS name or IP address, checked as WebPKI checks a server name
    /// (a certificate's `*.example.com` covers `a.example.com`).
    Server(ServerName<'static>),
    /// One URI SAN, exactly (a SPIFFE ID or any other URI).
    Uri(String),
    /// `spiffe://td/**`: any SPIFFE ID of trust domain `td`; holds the
    /// prefix `spiffe://td/`.
    TrustDomain(String),
}

impl NamePattern {
    /// Parse one `verify_names` entry; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<NamePattern, String> {
        if s.parse::<IpAddr>().is_ok() || !s.contains(':') {
            return ServerName::try_from(s.to_owned())
                .map(NamePattern::Server)
                .map_err(|_| format!("{} is not a DNS name, IP address or URI", shown(s)));
        }
        let Some((scheme, rest)) = s.split_once(':') else {
            unreachable!("contains ':'")
        };
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok || rest.is_empty() || s.chars().any(|c| c.is_whitespace()) {
            return Err(format!("{} is not a DNS name, IP address or URI", shown(s)));
        }
        // `backend.local:8443` reads as a URI of scheme `backend.local`,
        // which no certificate names: every request would fail
        // name_mismatch. A URI SAN's scheme is a real one (`spiffe://`,
        // `https://`, `urn:`), never followed by a bare port.
        let port = rest.split('/').next().unwrap_or_default();
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{}: a certificate's names are matched without the port: remove \":{port}\"",
                shown(s)
            ));
        }
        if !scheme.eq_ignore_ascii_case("spiffe") {
            return Ok(NamePattern::Uri(s.to_owned()));
        }
        spiffe(s, rest)
    }

    /// Whether a certificate (`cert`, its URI SANs `uris`) carries this
    /// name: `Err` says why one it seems to carry is refused.
    fn matches(&self, cert: &ParsedCertificate<'_>, uris: &[String]) -> Result<bool, String> {
        let spiffe_id = match self {
            NamePattern::Server(name) => return Ok(verify_server_name(cert, name).is_ok()),
            NamePattern::Uri(u) if !u.starts_with("spiffe://") => {
                return Ok(uris.iter().any(|p| p == u));
            }
            NamePattern::Uri(u) => uris.iter().find(|p| *p == u),
            // Byte for byte: a SPIFFE ID's scheme and trust domain are
            // lowercase (SPIFFE ID spec §2.1, §2.2; go-spiffe refuses
            // others), so `SPIFFE://CLUSTER.LOCAL/x` is no ID of
            // `cluster.local`.
            NamePattern::TrustDomain(prefix) => uris
                .iter()
                .find(|p| p.len() > prefix.len() && p.starts_with(prefix.as_str())),
        };
        let Some(id) = spiffe_id else {
            return Ok(false);
        };
        // An X509-SVID: exactly one URI SAN (X509-SVID spec §2), a SPIFFE
        // ID by the syntax the patterns are read with (no empty, `.` or
        // `..` segment, no query), as go-spiffe requires. A second URI SAN
        // would let one certificate stand for two workloads.
        if uris.len() > 1 {
            return Err(format!(
                "a SPIFFE ID is matched only in a certificate with one URI SAN \
                 (an X509-SVID), and it has {}",
                uris.len()
            ));
        }
        let rest = id.strip_prefix("spiffe:").unwrap_or_default();
        match spiffe(id, rest) {
            Ok(NamePattern::Uri(checked)) if checked == *id => Ok(true),
            Ok(_) => Err(format!("{} is not a SPIFFE ID", shown(id))),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Server(ServerName::DnsName(d)) => write!(f, "DNS:{}", d.as_ref()),
            NamePattern::Server(ServerName::IpAddress(ip)) => {
                write!(f, "IP:{}", IpAddr::from(*ip))
            }
            NamePattern::Server(other) => write!(f, "{other:?}"),
            NamePattern::Uri(u) => write!(f, "URI:{u}"),
            NamePattern::TrustDomain(prefix) => write!(f, "URI:{prefix}**"),
        }
    }
}

/// `spiffe://td/path` (SPIFFE ID spec §2): a trust domain of lowercase
/// letters, digits, `.`, `-`, `_`; a path of non-empty segments that are
/// not `.` or `..`. `spiffe://td/**` is the whole trust domain.
fn spiffe(s: &str, rest: &str) -> Result<NamePattern, String> {
    let bad = |why: &str| Err(format!("{} is not a SPIFFE ID: {why}", shown(s)));
    let Some(rest) = rest.strip_prefix("//") else {
        return bad("expected spiffe://trust-domain/path");
    };
    let (td, path) = rest.split_once('/').unwrap_or((rest, ""));
    if td.is_empty()
        || !td
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c))
    {
        return bad("the trust domain must be lowercase letters, digits, '.', '-' or '_'");
    }
    if path == "**" {
        return Ok(NamePattern::TrustDomain(format!("spiffe://{td}/")));
    }
    if path.is_empty() {
        return bad("a workload path is needed (or /** for the whole trust domain)");
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("empty, '.' and '..' path segments are not allowed");
        }
        if seg.contains('*') {
            return bad("'**' is allowed only as the whole path: spiffe://td/**");
        }
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
        {
            return bad("path segments are letters, digits, '.', '-' or '_'");
        }
    }
    Ok(NamePattern::Uri(format!("spiffe://{td}/{path}")))
}

/// The upstream certificate is valid but names none of `verify_names`:
/// what was expected and what was presented, for the log.
#[derive(Debug)]
pub struct NameMismatch {
    pub expected: Vec<String>,
    /// Why a name it seems to carry was refused: not an X509-SVID's.
    pub refused: Option<String>,
    /// The first [`MAX_PRESENTED`] of the certificate's DNS, IP and URI
    /// SANs, each value escaped and cut as a configuration problem quotes
    /// one ([`shown`]): a SAN is any text the backend's CA signed, a line
    /// feed included, which would start a log line of its own.
    pub presented: Vec<String>,
    /// How many more it names.
    pub more: usize,
}

/// The most SANs a [`NameMismatch`] lists.
pub const MAX_PRESENTED: usize = 8;

impl fmt::Display for NameMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let presented = if self.presented.is_empty() {
            "no DNS, IP or URI SAN".to_owned()
        } else {
            match self.more {
                0 => self.presented.join(", "),
                more => format!("{} and {more} more", self.presented.join(", ")),
            }
        };
        write!(
            f,
            "upstream certificate names {presented}; tls.verify_names accepts {}",
            self.expected.join(", ")
        )?;
        match &self.refused {
            Some(why) => write!(f, ", but {why}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for NameMismatch {}

/// A certificate's URI SANs, in order (none when it does not parse).
pub fn uri_sans(der: &[u8]) -> Vec<String> {
    sans(der).uris
}

/// What [`sans`] reads of a certificate.
struct Sans {
    /// Its first [`MAX_PRESENTED`] DNS, IP and URI SANs as `DNS:`, `IP:`
    /// and `URI:` text, each value as [`shown`] quotes it.
    presented: Vec<String>,
    /// How many more it has.
    more: usize,
    /// Its URI SANs, as written.
    uris: Vec<String>,
    /// Whether its keyUsage lets its key sign
    /// ([`crate::identity::record::may_sign`]).
    may_sign: bool,
}

/// The SANs of a certificate and its keyUsage: one parse. A certificate
/// that does not parse has no SANs here, and its keyUsage is left to
/// webpki.
fn sans(der: &[u8]) -> Sans {
    let (mut presented, mut more, mut uris) = (Vec::new(), 0, Vec::new());
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Sans {
            presented,
            more,
            uris,
            may_sign: true,
        };
    };
    let mut present = |text: &dyn Fn() -> String| {
        if presented.len() < MAX_PRESENTED {
            presented.push(text());
        } else {
            more += 1;
        }
    };
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => present(&|| format!("DNS:{}", shown(d))),
                GeneralName::URI(u) => {
                    present(&|| format!("URI:{}", shown(u)));
                    uris.push((*u).to_owned());
                }
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*b).map(IpAddr::from).ok(),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        present(&|| format!("IP:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    Sans {
        presented,
        more,
        uris,
        may_sign: crate::identity::record::may_sign(&cert),
    }
}

/// WebPKI chain verification (and revocation, with CRLs), then
/// `verify_names` instead of the server name.
#[derive(Debug)]
pub struct NamesVerifier {
    roots: Arc<RootCertStore>,
    /// The CA bundle's CRLs, checked as the upstream's WebPKI verifier
    /// checks them without `verify_names` (see [`crate::tls::client::build`]).
    crls: Vec<webpki::CertRevocationList<'static>>,
    /// Their issuers' full CRLs read on webpki's path too, when an
    /// issuer's CRLs mix scopes (as the upstream's WebPKI verifier does).
    full: Option<FullCrlCheck>,
    accepted: Vec<NamePattern>,
    algs: WebPkiSupportedAlgorithms,
}

impl NamesVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        crls_der: &[CertificateRevocationListDer<'static>],
        accepted: Vec<NamePattern>,
        algs: WebPkiSupportedAlgorithms,
    ) -> Result<NamesVerifier, String> {
        let crls = crls_der
            .iter()
            .map(|der| {
                webpki::OwnedCertRevocationList::from_der(der.as_ref())
                    .map(webpki::CertRevocationList::from)
                    .map_err(|e| format!("CRL not usable: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let full = FullCrlCheck::new(crls_der, &roots.roots, false, algs)?;
        Ok(NamesVerifier {
            roots,
            crls,
            full,
            accepted,
            algs,
        })
    }

    /// The chain, verified once. With CRLs webpki checks every
    /// certificate of the path it builds against them as it goes (an
    /// unknown status and a list past its nextUpdate refused, as Envoy's
    /// `crl` and nginx's `proxy_ssl_crl` do, and as rustls's WebPKI
    /// verifier does for upstreams without `verify_names`); without, this
    /// is rustls's own check.
    fn verify_chain(
        &self,
        cert: &ParsedCertificate<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let Ok(options) = webpki::RevocationOptionsBuilder::new(&crls) else {
            // No CRLs.
            return verify_server_cert_signed_by_trust_anchor(
                cert,
                &self.roots,
                intermediates,
                now,
                self.algs.all,
            );
        };
        let options = options
            .with_depth(webpki::RevocationCheckDepth::Chain)
            .with_status_policy(webpki::UnknownStatusPolicy::Deny)
            .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
            .build();
        let leaf = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match leaf.verify_for_usage(
            self.algs.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            Some(options),
            None,
        ) {
            Ok(_) => {}
            Err(e) => return Err(self.refusal(e, cert, intermediates, now)),
        }
        // webpki passed it: only a full CRL can refuse it here.
        let usage = webpki::KeyUsage::server_auth();
        match &self.full {
            Some(full) => full.verify(&self.roots.roots, end_entity, intermediates, now, usage),
            None => Ok(()),
        }
    }

    /// The rustls error for a chain webpki refused with `e`. rustls keeps
    /// its mapping of webpki's errors to itself, so a refusal of the chain
    /// (unknown CA, expired) is named by rustls's own check of it without
    /// CRLs: a second pass, on the refusal path only. A chain that passes
    /// it was refused for its revocation.
    fn refusal(
        &self,
        e: webpki::Error,
        cert: &ParsedCertificate<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Error {
        if let Err(chain) = verify_server_cert_signed_by_trust_anchor(
            cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        ) {
            return chain;
        }
        if let Some(crl) = unusable_crl(&e) {
            return Error::InvalidCertRevocationList(crl);
        }
        Error::InvalidCertificate(match e {
            webpki::Error::CertRevoked => CertificateError::Revoked,
            webpki::Error::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
            webpki::Error::CrlExpired { .. } => CertificateError::ExpiredRevocationList,
            e => CertificateError::Other(OtherError(Arc::new(e))),
        })
    }
}

/// A CRL that webpki could not use to check the chain (its signature, or
/// its issuer's key usage), as rustls's WebPKI verifier names it, so that
/// both upstream verifiers report it alike (`crl_invalid`). What it finds
/// wrong in a CRL's encoding is refused when the CRL is loaded.
#[allow(
    deprecated,
    reason = "webpki still returns them, rustls still has their kind"
)]
fn unusable_crl(e: &webpki::Error) -> Option<rustls::CertRevocationListError> {
    use rustls::CertRevocationListError as C;
    use webpki::Error as W;
    Some(match e {
        W::InvalidCrlSignatureForPublicKey => C::BadSignature,
        W::UnsupportedCrlSignatureAlgorithm | W::UnsupportedCrlSignatureAlgorithmForPublicKey => {
            C::UnsupportedSignatureAlgorithm
        }
        W::UnsupportedCrlSignatureAlgorithmContext(cx) => C::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id: cx.signature_algorithm_id.clone(),
            supported_algorithms: cx.supported_algorithms.clone(),
        },
        W::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(cx) => {
            C::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: cx.signature_algorithm_id.clone(),
                public_key_algorithm_id: cx.public_key_algorithm_id.clone(),
            }
        }
        W::IssuerNotCrlSigner => C::IssuerInvalidForCrl,
        _ => return None,
    })
}

impl ServerCertVerifier for NamesVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        self.verify_chain(&cert, end_entity, intermediates, now)?;
        let sans = sans(end_entity.as_ref());
        let (mut matched, mut refused) = (false, None);
        for pattern in &self.accepted {
            match pattern.matches(&cert, &sans.uris) {
                Ok(true) => {
                    matched = true;
                    break;
                }
                Ok(false) => {}
                Err(why) => {
                    refused.get_or_insert(why);
                }
            }
        }
        if matched {
            // A key its keyUsage forbids to sign the handshake, as
            // without `verify_names` (`tls::client::SigningLeaf`).
            if !sans.may_sign {
                return Err(crate::tls::client::key_usage_refusal());
            }
            return Ok(ServerCertVerified::assertion());
        }
        Err(Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(NameMismatch {
                expected: self.accepted.iter().map(|p| p.to_string()).collect(),
                refused,
                presented: sans.presented,
                more: sans.more,
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert!(matches!(
            NamePattern::parse("app.prod.svc"),
            Ok(NamePattern::Server(_))
        ));
        assert!(matches!(
            NamePattern::parse("10.0.0.1"),
            Ok(NamePattern::Server(_))
        ));
        assert!(matches!(
            NamePattern::parse("::1"),
            Ok(NamePattern::Server(_))
        ));
        assert_eq!(
            NamePattern::parse("spiffe://cluster.local/ns/prod/sa/app"),
            Ok(NamePattern::Uri(
                "spiffe://cluster.local/ns/prod/sa/app".into()
            ))
        );
        assert_eq!(
            NamePattern::parse("spiffe://cluster.local/**"),
            Ok(NamePattern::TrustDomain("spiffe://cluster.local/".into()))
        );
        assert_eq!(
            NamePattern::parse("urn:example:backend"),
            Ok(NamePattern::Uri("urn:example:backend".into()))
        );
        for bad in [
            "",
            "bad name",
            "spiffe://",
            "spiffe://Cluster.local/x",
            "spiffe://td",
            "spiffe://td/",
            "spiffe://td/a/**",
            "spiffe://td/a//b",
            "spiffe://td/a/../b",
            "spiffe:td/a",
            "1http://x",
        ] {
            assert!(NamePattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// A host and port is no URI of scheme "host" (it was, and matched no
    /// certificate): refused, saying to drop the port.
    #[test]
    fn a_name_with_a_port_is_refused() {
        for (with_port, port) in [
            ("backend.local:8443", ":8443"),
            ("backend:443", ":443"),
            ("backend.local:8443/", ":8443"),
        ] {
            let e = NamePattern::parse(with_port).unwrap_err();
            assert!(e.contains(&format!("remove \"{port}\"")), "{e}");
        }
        for uri in ["https://backend.local:8443/", "urn:example:backend"] {
            assert_eq!(NamePattern::parse(uri), Ok(NamePattern::Uri(uri.into())));
        }
    }

    /// `spiffe://td/**` matches SPIFFE IDs of `td` exactly: an uppercase
    /// scheme or trust domain is no SPIFFE ID, and was accepted.
    #[test]
    fn a_trust_domain_matches_its_ids_exactly() {
        let pattern = NamePattern::parse("spiffe://cluster.local/**").unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let cert = ParsedCertificate::try_from(pair.cert.der()).unwrap();
        let matches = |uri: &str| pattern.matches(&cert, &[uri.to_owned()]) == Ok(true);
        assert!(matches("spiffe://cluster.local/ns/prod/sa/app"));
        for other in [
            "SPIFFE://CLUSTER.LOCAL/x",
            "spiffe://CLUSTER.LOCAL/x",
            "spiffe://Cluster.local/x",
            "Spiffe://cluster.local/x",
            "spiffe://cluster.local/",
            "spiffe://cluster.localx/y",
            "spiffe://other/x",
        ] {
            assert!(!matches(other), "{other:?} matched");
        }
        // Not SPIFFE IDs, and a second URI SAN: refused, saying why.
        for (uris, why) in [
            (&["spiffe://cluster.local//x"][..], "not a SPIFFE ID"),
            (&["spiffe://cluster.local/a/../b"], "not a SPIFFE ID"),
            (&["spiffe://cluster.local/x?q"], "not a SPIFFE ID"),
            (&["spiffe://cluster.local/**"], "not a SPIFFE ID"),
            (&["spiffe://cluster.local/x", "urn:x"], "one URI SAN"),
        ] {
            let uris: Vec<String> = uris.iter().map(|u| u.to_string()).collect();
            let e = pattern.matches(&cert, &uris).unwrap_err();
            assert!(e.contains(why), "{uris:?}: {e}");
        }
        let exact = NamePattern::parse("spiffe://cluster.local/x").unwrap();
        let two = [
            "spiffe://cluster.local/x".to_owned(),
            "spiffe://other/y".to_owned(),
        ];
        assert!(exact.matches(&cert, &two).is_err());
        let other = NamePattern::parse("urn:example:backend").unwrap();
        let two = ["urn:example:backend".to_owned(), "urn:x".to_owned()];
        assert_eq!(other.matches(&cert, &two), Ok(true));
    }

    thread_local! {
        /// Signatures verified on this thread (webpki verifies in the caller's).
        static SIGNATURES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A signature algorithm that counts its verifications: the cost of a
    /// chain verification, without timing.
    #[derive(Debug)]
    struct Counting(&'static dyn rustls_pki_types::SignatureVerificationAlgorithm);

    impl rustls_pki_types::SignatureVerificationAlgorithm for Counting {
        fn public_key_alg_id(&self) -> rustls_pki_types::AlgorithmIdentifier {
            self.0.public_key_alg_id()
        }
        fn signature_alg_id(&self) -> rustls_pki_types::AlgorithmIdentifier {
            self.0.signature_alg_id()
        }
        fn verify_signature(
            &self,
            public_key: &[u8],
            message: &[u8],
            signature: &[u8],
        ) -> Result<(), rustls_pki_types::InvalidSignature> {
            SIGNATURES.with(|n| n.set(n.get() + 1));
            self.0.verify_signature(public_key, message, signature)
        }
    }

    fn counting_algs() -> WebPkiSupportedAlgorithms {
        let base = crate::tls::provider::get().signature_verification_algorithms;
        let all: Vec<&'static dyn rustls_pki_types::SignatureVerificationAlgorithm> = base
            .all
            .iter()
            .map(|a| &*Box::leak(Box::new(Counting(*a))) as _)
            .collect();
        WebPkiSupportedAlgorithms {
            all: Box::leak(all.into_boxed_slice()),
            mapping: base.mapping,
        }
    }

    /// A CA and a certificate it issued to `name` with serial `serial`.
    fn issue(
        ca: &rcgen::Issuer<'_, rcgen::KeyPair>,
        name: &str,
        serial: u64,
    ) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        p.serial_number = Some(serial.into());
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        p.signed_by(&key, ca).unwrap().der().clone()
    }

    fn ca(
        cn: &str,
    ) -> (
        CertificateDer<'static>,
        rcgen::Issuer<'static, rcgen::KeyPair>,
    ) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let der = p.self_signed(&key).unwrap().der().clone();
        (der, rcgen::Issuer::new(p, key))
    }

    /// With CRLs the chain is verified once, its revocation checked on the
    /// way: one signature more than without CRLs (the CRL's), where a
    /// second pass over the chain made it two more. The verdicts: a valid
    /// certificate with an accepted name passes, a revoked one is refused
    /// as revoked, one of another CA as an unknown issuer, one naming none
    /// of `verify_names` as a name mismatch.
    #[test]
    fn with_crls_the_chain_is_verified_once() {
        let (root, issuer) = ca("names CA");
        let crl = rcgen::CertificateRevocationListParams {
            this_update: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
            next_update: time::OffsetDateTime::now_utc() + time::Duration::days(1),
            crl_number: 1u64.into(),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: 2u64.into(),
                revocation_time: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        let crl = CertificateRevocationListDer::from(crl.der().to_vec());
        let mut roots = RootCertStore::empty();
        roots.add(root).unwrap();
        let roots = Arc::new(roots);
        let accepted = vec![NamePattern::parse("backend.local").unwrap()];
        let verifier = |crls: &[CertificateRevocationListDer<'static>]| {
            NamesVerifier::new(roots.clone(), crls, accepted.clone(), counting_algs()).unwrap()
        };
        let (plain, with_crl) = (verifier(&[]), verifier(&[crl]));
        let name = ServerName::try_from("backend.local").unwrap();
        let verify = |v: &NamesVerifier, leaf: &CertificateDer<'_>| {
            SIGNATURES.with(|n| n.set(0));
            let verdict = v.verify_server_cert(leaf, &[], &name, &[], UnixTime::now());
            (verdict.map(|_| ()), SIGNATURES.with(|n| n.get()))
        };

        let good = issue(&issuer, "backend.local", 1);
        let (verdict, without_crls) = verify(&plain, &good);
        assert!(verdict.is_ok(), "{verdict:?}");
        let (verdict, with_crls) = verify(&with_crl, &good);
        assert!(verdict.is_ok(), "{verdict:?}");
        assert_eq!(
            with_crls,
            without_crls + 1,
            "with CRLs the chain's signatures were verified again"
        );

        let revoked = issue(&issuer, "backend.local", 2);
        assert!(verify(&plain, &revoked).0.is_ok());
        assert_eq!(
            verify(&with_crl, &revoked).0,
            Err(Error::InvalidCertificate(CertificateError::Revoked))
        );
        let (_, stranger) = ca("another CA");
        assert_eq!(
            verify(&with_crl, &issue(&stranger, "backend.local", 3)).0,
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
        );
        let other = verify(&with_crl, &issue(&issuer, "other.local", 4)).0;
        assert!(
            matches!(&other, Err(Error::InvalidCertificate(CertificateError::Other(o)))
                if o.0.downcast_ref::<NameMismatch>().is_some()),
            "{other:?}"
        );
    }

    #[test]
    fn mismatch_names_both_sides() {
        let m = NameMismatch {
            expected: vec!["URI:spiffe://td/a".into()],
            refused: None,
            presented: vec!["URI:\"spiffe://td/b\"".into()],
            more: 0,
        };
        let s = m.to_string();
        assert!(
            s.contains("spiffe://td/a") && s.contains("spiffe://td/b"),
            "{s}"
        );
    }
}
