//! Reading and validating an entry's PEM: consistent re-reads, key/leaf match.

use std::path::PathBuf;

use crate::config::{EntryKind, EntrySource};
use crate::material::{Loaded, Material};

/// Raw bytes of every source of an entry, in `EntrySource` order, with
/// their combined hash. Holds key bytes: never formatted.
pub struct Raw {
    pub parts: Vec<Vec<u8>>,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Raw([redacted])")
    }
}

/// Why material could not be loaded. Messages name the file (or
/// `inline cert_pem` etc.) and never contain PEM or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("{origin}: file not found")]
    Missing { origin: String },
    #[error("{origin}: cannot read: {reason}")]
    Unreadable { origin: String, reason: String },
    #[error("{origin}: file is empty")]
    Empty { origin: String },
    #[error("{origin}: no PEM certificate found")]
    NoCertificate { origin: String },
    #[error("{origin}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { origin: String },
    #[error("{origin}: malformed PEM: {reason}")]
    BadPem { origin: String, reason: String },
    #[error("{origin}: invalid certificate: {reason}")]
    BadCertificate { origin: String, reason: String },
    #[error("{origin}: unusable private key: {reason}")]
    BadKey { origin: String, reason: String },
    #[error("{key}: private key does not match the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("{origin}: invalid CRL: {reason}")]
    BadCrl { origin: String, reason: String },
    #[error("{origin}: kept changing while being read; no two consecutive reads agreed")]
    Unsettled { origin: String },
}

impl MaterialError {
    /// True for problems a writer in the middle of its work produces for a
    /// moment (a certbot relink leaves a link missing, or an old cert with a
    /// new key): the reloader waits `settle_timeout` before calling these a
    /// failure.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MaterialError::Missing { .. }
                | MaterialError::KeyMismatch { .. }
                | MaterialError::Unsettled { .. }
                | MaterialError::Empty { .. }
        )
    }
}

/// Where a source is, for error messages: the path, or `inline cert_pem`.
pub fn origins(source: &EntrySource) -> Vec<String> {
    let _ = source;
    todo!("pem::origins")
}

/// Read every source of the entry until two consecutive reads agree
/// (bounded attempts), so a swap between reading the cert and the key can
/// never produce a torn pair.
pub fn read_consistent(source: &EntrySource) -> Result<Raw, MaterialError> {
    let _ = source;
    todo!("pem::read_consistent")
}

/// Parse and validate raw bytes as `kind`: pairs need a certificate chain
/// and a key that matches the leaf; CA bundles need at least one
/// certificate; CRLs must parse.
pub fn parse(kind: EntryKind, source: &EntrySource, raw: &Raw) -> Result<Material, MaterialError> {
    let _ = (kind, source, raw);
    todo!("pem::parse")
}

/// `read_consistent` + `parse`.
pub fn load(kind: EntryKind, source: &EntrySource) -> Result<Loaded, MaterialError> {
    let _ = (kind, source);
    todo!("pem::load")
}

/// Every certificate in a PEM file (for `certs inspect`).
pub fn certificates_in(path: &PathBuf) -> Result<Vec<crate::material::CertInfo>, MaterialError> {
    let _ = path;
    todo!("pem::certificates_in")
}
