//! Upstream `ClientConfig`: CA bundle or system roots, optional client pair, ALPN.

use std::sync::Arc;

use rustls::ClientConfig;

use crate::material::{CaBundle, Pair};
use crate::tls::TlsError;

/// Build the `ClientConfig` for new connections to an upstream.
/// `ca = None` means the system trust store. ALPN offers h2 and http/1.1.
pub fn build(ca: Option<&CaBundle>, client: Option<&Pair>) -> Result<Arc<ClientConfig>, TlsError> {
    let _ = (ca, client);
    todo!("tls::client::build")
}
