//! What a listener's new connections handshake with (one value, swapped as one) and what it serves.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::ClientAuthMode;
use crate::identity::gate::Gate;
use crate::material::CertInfo;

/// What one server pair on a listener serves, for the admin API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServedCert {
    pub entry: String,
    pub server_names: Vec<String>,
    #[serde(flatten)]
    pub info: CertInfo,
}

/// A TLS snapshot and its client-auth mode, which decides whether the
/// peer certificate is a verified identity worth passing upstream. One
/// value, swapped as one: a connection read separately could shake hands
/// under a snapshot whose verifier takes any certificate (`request`) and be
/// judged by the next one's mode (`require_and_verify`), passing its
/// unverified certificate off as an identity.
///
/// The material's generation goes with them: read separately, a connection
/// could shake hands with the old snapshot and record the new generation,
/// and `max_connection_lifetime` would not count it as rotated out.
///
/// The per-entry configs and the resolver go with them too: read apart, a
/// connection accepted before a reload that sends its ClientHello after it
/// could pair the old listener-wide config (an entry with its own
/// `client_auth`, served with no client auth) with the new `per_name`
/// (none: the entry's `require_and_verify` became listener-wide) and be
/// served that entry's certificate unauthenticated.
pub struct Handshake {
    pub config: Arc<ServerConfig>,
    pub mode: ClientAuthMode,
    /// `config`'s client verifier in a verifying mode: open connections
    /// are checked against it again when the admission rules change
    /// ([`crate::proxy::readmit`]).
    pub gate: Option<Arc<Gate>>,
    pub generation: u64,
    /// Per-entry TLS configs when `certs` entries carry their own
    /// `client_auth`; then used instead of `config`.
    pub per_name: Option<Arc<crate::tls::per_name::PerName>>,
    /// The pairs `config` serves, by SNI: which certificate a connection
    /// was served, for XFCC's `By`.
    pub resolver: Arc<crate::tls::server::SniResolver>,
}
