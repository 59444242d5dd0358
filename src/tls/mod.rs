//! rustls configurations built from catalogue material: listener side and upstream side.

pub mod client;
pub mod names;
pub mod server;

/// Why a snapshot could not be built from otherwise valid material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Build(String),
}

/// A client certificate the listener verified: what is passed upstream in
/// `X-Client-Cert-Subject` / `X-Client-Cert-Fingerprint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// RFC 4514 subject of the client's leaf.
    pub subject: String,
    /// SANs of the client's leaf as text.
    pub sans: Vec<String>,
    /// SHA-256 of the leaf DER, lowercase hex.
    pub fingerprint: String,
}
