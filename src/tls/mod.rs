//! rustls configurations built from catalogue material: listener side and upstream side.

pub mod accept;
pub mod client;
pub(crate) mod full_crl;
pub mod names;
pub mod per_name;
pub mod provider;
pub mod sent;
pub mod server;
pub mod session_cache;
pub mod verifiers;

/// Why a snapshot could not be built from otherwise valid material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Build(String),
}
