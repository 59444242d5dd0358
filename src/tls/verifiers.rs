//! The client verifiers a listener's client-auth mode builds: webpki's against a CA bundle (its full CRLs read on webpki's path too, when they mix scopes), or any certificate.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use crate::config::ClientAuthMode;
use crate::material::CaBundle;
use crate::tls::TlsError;
use crate::tls::full_crl::FullCrlCheck;

/// A mode's verifier.
pub(super) type Verifiers = Arc<dyn ClientCertVerifier>;

pub(super) fn client_verifier(
    mode: ClientAuthMode,
    ca: Option<&CaBundle>,
    allow_expired_crl: bool,
) -> Result<Option<Verifiers>, TlsError> {
    let any = |mandatory| -> Arc<dyn ClientCertVerifier> {
        Arc::new(AnyClientCert {
            mandatory,
            provider: crate::tls::provider::get(),
        })
    };
    Ok(match mode {
        ClientAuthMode::None => None,
        ClientAuthMode::Request => Some(any(false)),
        ClientAuthMode::RequireAny => Some(any(true)),
        ClientAuthMode::VerifyIfGiven | ClientAuthMode::RequireAndVerify => {
            let ca = ca.ok_or_else(|| {
                TlsError::Build(format!(
                    "client_auth mode {} needs a CA bundle",
                    mode.as_str()
                ))
            })?;
            // A CA certificate of the bundle revoked by its issuer's CRL is
            // no anchor (webpki never checks an anchor's revocation).
            let mut roots = RootCertStore::empty();
            for root in ca.anchors() {
                roots.add(root.clone()).map_err(|e| {
                    TlsError::Build(format!("CA certificate not usable as a trust anchor: {e}"))
                })?;
            }
            let roots = Arc::new(roots);
            let inner = webpki(mode, roots.clone(), &ca.crls, allow_expired_crl)?;
            let algs = crate::tls::provider::get().signature_verification_algorithms;
            // An issuer whose CRLs mix a full and a scoped one: its full
            // CRL is read on webpki's path too (`tls::full_crl`).
            match FullCrlCheck::new(&ca.crls, &roots.roots, allow_expired_crl, algs)
                .map_err(TlsError::Build)?
            {
                None => Some(inner),
                Some(check) => Some(Arc::new(FullCrlChecked {
                    inner,
                    roots,
                    check,
                })),
            }
        }
    })
}

/// webpki's verifier for a verifying `mode` against `roots` and `crls`,
/// webpki reading them in that order.
fn webpki(
    mode: ClientAuthMode,
    roots: Arc<RootCertStore>,
    crls: &[CertificateRevocationListDer<'static>],
    allow_expired_crl: bool,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    // Unknown revocation status stays refused (the rustls default):
    // a CRL set that does not cover the issuer must not pass.
    let mut b = WebPkiClientVerifier::builder_with_provider(roots, crate::tls::provider::get())
        .with_crls(crls.iter().cloned());
    // A CRL past its nextUpdate may miss newer revocations: refuse
    // (like an unknown status) unless the operator opted out.
    if !allow_expired_crl {
        b = b.enforce_revocation_expiration();
    }
    if mode == ClientAuthMode::VerifyIfGiven {
        b = b.allow_unauthenticated();
    }
    b.build()
        .map_err(|e| TlsError::Build(format!("client verifier: {e}")))
}

/// webpki's verifier `inner`, then [`FullCrlCheck`]: a chain passes only
/// on a path both webpki's CRL check and its issuers' full CRLs pass.
#[derive(Debug)]
struct FullCrlChecked {
    inner: Arc<dyn ClientCertVerifier>,
    roots: Arc<RootCertStore>,
    check: FullCrlCheck,
}

impl ClientCertVerifier for FullCrlChecked {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        // webpki passed it, so only a full CRL can refuse it here: a
        // client it revokes is refused as such (`revoked`).
        let usage = webpki::KeyUsage::client_auth();
        self.check
            .verify(&self.roots.roots, end_entity, intermediates, now, usage)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `request` / `require_any`: any certificate is accepted without chain
/// verification, but the client must still prove it holds the key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
