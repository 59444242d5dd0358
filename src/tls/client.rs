//! Upstream `ClientConfig`: CA bundle or system roots, optional client pair, ALPN.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::warn;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::material::{CaBundle, Pair};
use crate::tls::TlsError;
use crate::tls::full_crl::FullCrlCheck;
use crate::tls::names::{NameMismatch, NamePattern, NamesVerifier};

/// What `run` warns when the operating system's trust store holds no
/// certificate webpki takes (and `check` prints: [`system_roots_warning`]).
const NO_SYSTEM_ROOTS: &str = "no system CA certificates found: https upstreams with \
    `ca: { system: true }` will fail verification";

/// [`NO_SYSTEM_ROOTS`] when the system's trust store is empty (loaded
/// now, if it was not).
pub fn system_roots_warning() -> Option<&'static str> {
    system_roots().is_empty().then_some(NO_SYSTEM_ROOTS)
}

/// The operating system's trust store, loaded once.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                warn!("{NO_SYSTEM_ROOTS}");
            }
            Arc::new(roots)
        })
        .clone()
}

/// Hands rustls the client pair as loaded (no re-parsing per connection).
#[derive(Debug)]
struct ClientPair(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientPair {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The refusal of an upstream certificate whose keyUsage does not allow
/// `digitalSignature` ([`crate::identity::record::may_sign`]): its key may
/// not sign the handshake (TLS 1.3 `CertificateVerify`, an ECDHE key
/// exchange, all hotproxy offers), and webpki does not look. nginx
/// (`proxy_ssl_verify`, OpenSSL's sslserver purpose) and Envoy refuse it;
/// [`classify`] names it `invalid_purpose`.
pub(crate) fn key_usage_refusal() -> Error {
    Error::InvalidCertificate(CertificateError::InvalidPurpose)
}

/// Whether the leaf `der` may sign, by its keyUsage (one x509-parser
/// parse). A leaf x509-parser cannot read at all, which webpki verified,
/// is left to webpki's verdict.
fn leaf_may_sign(der: &[u8]) -> bool {
    X509Certificate::from_der(der)
        .map_or(true, |(_, cert)| crate::identity::record::may_sign(&cert))
}

/// rustls's WebPKI server verifier (with or without CRLs), then the
/// leaf's keyUsage: a key that may not sign is refused
/// ([`key_usage_refusal`]) once the chain and the name are verified;
/// before, with `full`, the chain's issuers' full CRLs are read on
/// webpki's path too (their CRLs mix scopes: [`FullCrlCheck`]).
#[derive(Debug)]
struct SigningLeaf(Arc<WebPkiServerVerifier>, Option<FullCrls>);

/// A [`FullCrlCheck`] and the anchors it verifies chains against.
#[derive(Debug)]
struct FullCrls {
    roots: Arc<RootCertStore>,
    check: FullCrlCheck,
}

impl ServerCertVerifier for SigningLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified = self.0.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Some(full) = &self.1 {
            // webpki passed it: only a full CRL can refuse it here.
            let usage = webpki::KeyUsage::server_auth();
            full.check
                .verify(&full.roots.roots, end_entity, intermediates, now, usage)?;
        }
        if !leaf_may_sign(end_entity.as_ref()) {
            return Err(key_usage_refusal());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

/// Build the `ClientConfig` for new connections to an upstream.
/// `ca = None` means the system trust store. ALPN offers h2 and http/1.1.
/// A non-empty `verify_names` replaces the server-name check with
/// [`NamesVerifier`] (chain verified the same way, names from the list).
pub fn build(
    ca: Option<&CaBundle>,
    client: Option<&Pair>,
    verify_names: &[NamePattern],
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca {
        Some(ca) => {
            // Without the CA certificates the bundle's CRLs revoke.
            let mut roots = RootCertStore::empty();
            for r in ca.anchors() {
                roots.add(r.clone()).map_err(|e| {
                    TlsError::Build(format!("CA certificate not usable as a trust anchor: {e}"))
                })?;
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    // The bundle's CRLs: a revoked upstream certificate is refused, and so
    // is one whose status they do not give, or given by a list past its
    // nextUpdate (as Envoy's `crl` and nginx's `proxy_ssl_crl`; rustls's
    // default would ignore the date).
    let crls = ca.map_or(&[][..], |ca| &ca.crls[..]);
    let provider = crate::tls::provider::get();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Build(e.to_string()))?;
    // Every verifier refuses a leaf whose keyUsage forbids signing, after
    // its own verdict (`SigningLeaf`; `NamesVerifier` itself).
    let builder = if !verify_names.is_empty() {
        let verifier = NamesVerifier::new(
            roots,
            crls,
            verify_names.to_vec(),
            provider.signature_verification_algorithms,
        )
        .map_err(TlsError::Build)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    } else if roots.is_empty() {
        // An empty system store (warned above): rustls's verifier, which
        // its builder will not make without an anchor, refuses every
        // certificate as from an unknown CA, before any keyUsage.
        builder.with_root_certificates(roots)
    } else {
        let algs = provider.signature_verification_algorithms;
        let full = FullCrlCheck::new(crls, &roots.roots, false, algs)
            .map_err(TlsError::Build)?
            .map(|check| FullCrls {
                roots: roots.clone(),
                check,
            });
        let mut webpki = WebPkiServerVerifier::builder_with_provider(roots, provider);
        if !crls.is_empty() {
            webpki = webpki
                .with_crls(crls.iter().cloned())
                .enforce_revocation_expiration();
        }
        let webpki = webpki
            .build()
            .map_err(|e| TlsError::Build(format!("upstream certificate verifier: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SigningLeaf(webpki, full)))
    };
    let mut config = match client {
        Some(pair) => builder.with_client_cert_resolver(Arc::new(ClientPair(pair.key.clone()))),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A failed upstream handshake as a metric reason and a human description.
pub fn classify(err: &rustls::Error) -> (&'static str, String) {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match err {
        E::InvalidCertificate(C::UnknownIssuer) => (
            "unknown_ca",
            "upstream certificate is signed by an unknown CA".into(),
        ),
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => (
            "name_mismatch",
            "upstream certificate is not valid for the server name (check tls.server_name)".into(),
        ),
        // verify_names: the message names the expected and the presented SANs.
        E::InvalidCertificate(C::Other(o)) if o.0.downcast_ref::<NameMismatch>().is_some() => {
            ("name_mismatch", o.0.to_string())
        }
        // Not for a TLS server's key: a keyUsage without digitalSignature
        // (`SigningLeaf`, `NamesVerifier`), or an extendedKeyUsage without
        // serverAuth (webpki), OpenSSL's "unsupported certificate purpose".
        E::InvalidCertificate(C::InvalidPurpose) => (
            "invalid_purpose",
            "upstream certificate's keyUsage does not allow digitalSignature: its key may not sign the TLS handshake"
                .into(),
        ),
        // Not rustls's text, which names every extendedKeyUsage the
        // backend presents, each OID as its arcs: webpki checks them
        // before the chain, so anyone answering TLS at the address could
        // make each failed request log ~100 KB.
        E::InvalidCertificate(C::InvalidPurposeContext {
            required,
            presented,
        }) => (
            "invalid_purpose",
            format!(
                "upstream certificate is not for a TLS server: its extendedKeyUsage does not allow {}, allows {}",
                purpose(required),
                purposes(presented)
            ),
        ),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            ("expired", "upstream certificate has expired".into())
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            ("expired", "upstream certificate is not valid yet".into())
        }
        E::InvalidCertificate(C::Revoked) => {
            ("unknown_ca", "upstream certificate is revoked".into())
        }
        E::InvalidCertificate(C::UnknownRevocationStatus) => (
            "unknown_ca",
            "upstream certificate's revocation status is unknown: no CRL of tls.ca is from its issuer"
                .into(),
        ),
        E::InvalidCertificate(C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. }) => (
            "unknown_ca",
            "a CRL of tls.ca is past its nextUpdate: upstream certificates are not trusted until it is renewed"
                .into(),
        ),
        // A CRL of tls.ca webpki cannot use (signed by another key or with
        // an unsupported algorithm, an issuer without cRLSign): every
        // connection to the upstream fails until the operator replaces it,
        // so it is named apart from `tls`, with the listener side's word.
        E::InvalidCertRevocationList(e) => (
            "crl_invalid",
            format!(
                "a CRL of tls.ca cannot be used to check the upstream certificate ({e:?}): replace it"
            ),
        ),
        E::AlertReceived(
            a @ (A::BadCertificate
            | A::CertificateRequired
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::CertificateUnknown
            | A::AccessDenied
            | A::DecryptError),
        ) => (
            "client_cert_refused",
            format!("our client certificate was refused by the upstream (alert: {a:?})"),
        ),
        other => (
            "tls",
            format!("TLS handshake with the upstream failed: {}", cut(other.to_string())),
        ),
    }
}

/// The most extendedKeyUsage OIDs a refusal names, as
/// [`crate::tls::names::MAX_PRESENTED`] SANs.
const MAX_PURPOSES: usize = crate::tls::names::MAX_PRESENTED;

/// The most bytes of one OID, or of a TLS error's own text, a refusal shows.
const MAX_SHOWN: usize = 64;
const MAX_ERROR_TEXT: usize = 512;

/// The first [`MAX_PURPOSES`] of a certificate's extendedKeyUsages, then
/// how many more.
fn purposes(presented: &[rustls::ExtendedKeyPurpose]) -> String {
    if presented.is_empty() {
        return "none".into();
    }
    let mut shown: Vec<String> = presented.iter().take(MAX_PURPOSES).map(purpose).collect();
    let more = presented.len().saturating_sub(MAX_PURPOSES);
    if more > 0 {
        shown.push(format!("and {more} more"));
    }
    shown.join(", ")
}

/// One extendedKeyUsage: its name, or its OID dotted (cut after
/// [`MAX_SHOWN`] bytes: an OID may have any number of arcs).
fn purpose(p: &rustls::ExtendedKeyPurpose) -> String {
    use rustls::ExtendedKeyPurpose as P;
    match p {
        P::ServerAuth => "serverAuth (server authentication)".into(),
        P::ClientAuth => "clientAuth (client authentication)".into(),
        P::Other(arcs) => {
            let mut oid = String::new();
            for arc in arcs {
                if oid.len() >= MAX_SHOWN {
                    oid.push('…');
                    break;
                }
                if !oid.is_empty() {
                    oid.push('.');
                }
                oid.push_str(&arc.to_string());
            }
            oid
        }
    }
}

/// A TLS error's text, cut after [`MAX_ERROR_TEXT`] bytes.
fn cut(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("… (cut)");
    }
    text
}
