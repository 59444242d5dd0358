//! The crypto provider every TLS config is built with: aws-lc-rs, AES-128-GCM first.
//!
//! rustls's aws-lc-rs provider lists `TLS13_AES_256_GCM_SHA384` first, and a
//! listener picks by its own order. SHA-384 has no hardware path on the CPUs
//! we run on (aws-lc uses SHA-512's portable code on AMD, where its AVX path
//! is not enabled), and a full handshake's transcript and key schedule hash
//! a lot: it was 14 % of the proxy's CPU in a handshake-per-request run.
//! AES-128-GCM with SHA-256 (SHA extensions) is what Mozilla's TLS
//! guidelines, HAProxy's defaults and Go's crypto/tls prefer, at the same
//! AEAD and forward-secrecy guarantees; AES-256-GCM and ChaCha20-Poly1305
//! stay offered after it, for clients that only speak those.
//!
//! Default: the provider installed as the process default, if any,
//! otherwise aws-lc-rs's; only the order of its suites changes.

use std::sync::{Arc, OnceLock};

use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;

/// The provider, built once.
pub fn get() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut p = CryptoProvider::get_default()
                .map(|p| CryptoProvider::clone(p))
                .unwrap_or_else(rustls::crypto::aws_lc_rs::default_provider);
            // A stable sort: TLS 1.3 suites first, then by rank; within a
            // rank the provider's order stays.
            p.cipher_suites
                .sort_by_key(|s| (s.tls13().is_none(), rank(s.suite())));
            Arc::new(p)
        })
        .clone()
}

/// AES-128-GCM, then AES-256-GCM, then the rest (ChaCha20-Poly1305).
fn rank(suite: CipherSuite) -> u8 {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        CipherSuite::TLS13_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_gcm_first_nothing_dropped() {
        let ours: Vec<CipherSuite> = get().cipher_suites.iter().map(|s| s.suite()).collect();
        let mut theirs: Vec<CipherSuite> = rustls::crypto::aws_lc_rs::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(ours[0], CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(ours[1], CipherSuite::TLS13_AES_256_GCM_SHA384);
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| u16::from(*s));
        theirs.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, theirs);
    }
}
