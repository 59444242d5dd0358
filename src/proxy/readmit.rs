//! An open connection's admission, checked again under a listener's changed rules: kept if still admitted.
//!
//! A change of what a listener admits closed every connection it had
//! accepted, so a CRL re-issued with a new nextUpdate (hourly, at many
//! CAs) or a CA added to the bundle made every keep-alive mTLS client do a
//! full handshake again. Now each connection is checked as its handshake
//! would be under the rules in force: its client certificate chain against
//! the client verifier (the CA set, the CRLs, the `allow` rules) of the
//! config it shook hands under (the listener's, or its `certs` entry's),
//! and its client address against `allow_from`. Only a connection that
//! would now be refused closes (Envoy keeps connections across an SDS
//! validation-context update; "a client taken out of the rules is not
//! served on" holds). What cannot be checked again exactly (a client-auth
//! mode, PROXY protocol, trusted proxies, the names that pick an entry)
//! closes every connection as before: the reloader marks such a change
//! (`Admissions::closes_all`).

use std::sync::Arc;

use tracing::debug;

use crate::config::ClientAuthMode;
use crate::proxy::forward::RequestContext;
use crate::proxy::listener::Listener;

/// What one connection was admitted with.
pub struct Admitted {
    pub listener: Arc<Listener>,
    /// Its client address (after PROXY protocol), certificate and entry.
    pub ctx: Arc<RequestContext>,
    /// The client-auth mode it shook hands under (its entry's, per name).
    pub mode: ClientAuthMode,
}

impl Admitted {
    /// Whether the connection is admitted under the listener's rules as
    /// stored now; a debug line when it is (its close is logged by the
    /// driver, with `reason: admission_rules_changed`).
    pub fn still(&self) -> bool {
        let kept = self.check();
        if kept {
            debug!(listener = %self.listener.name, peer = %self.ctx.client_addr, "connection still admitted under the changed rules; kept");
        }
        kept
    }

    fn check(&self) -> bool {
        if !self.listener.front.load().admits(self.ctx.client_addr.ip()) {
            return false;
        }
        let tls = self.listener.tls.load();
        // The config it shook hands under, in the snapshot of now: the
        // same entry (a change of the names that pick entries closes all).
        let (mode, gate) = match (&self.ctx.entry, &tls.per_name) {
            (None, None) => (tls.mode, tls.gate.as_ref()),
            (Some((_, at)), Some(p)) => match (p.modes.get(*at), p.gates.get(*at)) {
                (Some(mode), Some(gate)) => (*mode, gate.as_ref()),
                _ => return false,
            },
            _ => return false,
        };
        if mode != self.mode {
            return false;
        }
        if !mode.verifies() {
            // `none`, `request`, `require_any`: nothing was verified at
            // the handshake, nothing is now.
            return true;
        }
        match (&self.ctx.client_cert, gate) {
            (Some(id), Some(gate)) => gate.still_admits(id),
            // No certificate presented, and the mode (`verify_if_given`)
            // still lets a client without one in.
            (None, _) => mode == ClientAuthMode::VerifyIfGiven,
            (Some(_), None) => false,
        }
    }
}
