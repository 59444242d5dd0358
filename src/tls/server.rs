//! Listener `ServerConfig`: SNI resolution over several pairs, the five client-auth modes.

use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::{ClientAuthMode, ListenerConfig};
use crate::material::{CaBundle, Pair};
use crate::tls::TlsError;

/// One server pair on a listener, with the names it answers.
pub struct ServedPair<'a> {
    pub entry: &'a str,
    pub pair: &'a Pair,
    /// Explicit `server_names`, or `None` for the leaf's DNS SANs.
    pub server_names: Option<&'a [String]>,
}

/// Everything a listener's TLS snapshot is made from.
pub struct ServerInputs<'a> {
    pub listener: &'a ListenerConfig,
    /// At least one; the first is the default for no or unknown SNI.
    pub pairs: Vec<ServedPair<'a>>,
    /// Effective mode (may be changed at runtime through the admin API).
    pub mode: ClientAuthMode,
    /// Required when `mode.verifies()`.
    pub client_ca: Option<&'a CaBundle>,
}

/// Build the `ServerConfig` a listener serves new connections with.
/// Listeners without client auth share the process-wide ticketer so
/// resumption survives rotations; listeners with client auth get no tickets
/// and no session cache (a resumed session would skip client verification
/// after a CA or CRL change).
pub fn build(inputs: &ServerInputs<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    let _ = inputs;
    todo!("tls::server::build")
}

/// The verified identity of a client's leaf certificate. (stub until merged)
pub fn client_identity(
    certs: &[rustls_pki_types::CertificateDer<'_>],
) -> Option<crate::tls::ClientIdentity> {
    let _ = certs;
    None
}
