//! Client auth per server name (HAProxy crt-list style): one `ServerConfig` per certificate entry, chosen by SNI before the handshake.
//!
//! rustls has one client verifier per `ServerConfig`, so a listener whose
//! `certs` entries carry their own `client_auth` gets one config per entry
//! (all sharing the listener's SNI resolver) and the ClientHello is read
//! first (`tls::accept`) to pick the config of the entry the SNI
//! selects — no SNI, or a name no entry answers, selects the default (first)
//! entry, exactly as certificate selection does. Requests are then held to
//! that entry: a `Host`/`:authority` that belongs to an entry with another
//! `client_auth` gets 421 (otherwise per-name mTLS is bypassed by
//! `Host: admin.example` on a connection made to `public.example`).

use std::sync::Arc;

use rustls::ServerConfig;

use crate::config::ClientAuthMode;
use crate::tls::server::SniResolver;

/// A listener's per-entry TLS configs.
pub struct PerName {
    /// By position in the listener's `certs`; the first is the default.
    /// Entries with the same `client_auth` share one (one config is built
    /// per distinct policy): [`PerName::same_client_auth`] reads that.
    pub configs: Vec<Arc<ServerConfig>>,
    /// Each entry's client-auth mode (whether its peer certificate is a
    /// verified identity).
    pub modes: Vec<ClientAuthMode>,
    /// Each entry's client verifier in a verifying mode, which open
    /// connections are checked against again when the rules change.
    pub gates: Vec<Option<Arc<crate::identity::gate::Gate>>>,
    pub resolver: Arc<SniResolver>,
}

impl PerName {
    /// Position of the entry answering `host` (a `Host` value, perhaps
    /// with a port); unknown names belong to the default entry.
    pub fn position_of_host(&self, host: &str) -> usize {
        let name = strip_port(host).trim_end_matches('.');
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.resolver
                .position_or_default(Some(&name.to_ascii_lowercase()))
        } else {
            self.resolver.position_or_default(Some(name))
        }
    }

    /// Whether entries `a` and `b` admit clients alike: the same
    /// `client_auth` (mode, CA entry and so its CA set and CRLs, `allow`,
    /// `allow_expired_crl`), whose entries share one config, verifier and
    /// all; every other setting of a listener's configs is the listener's.
    pub fn same_client_auth(&self, a: usize, b: usize) -> bool {
        match (self.configs.get(a), self.configs.get(b)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}
