//! An open connection's admission (and a tunnel's route rules), checked again under a listener's changed rules: kept if still admitted.
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
//!
//! A route's own `allow` and `allow_from` are checked per request, so a
//! connection needs no re-check for them: its next request is. A WebSocket
//! tunnel makes no next request: when a reload changes the listener's
//! routes, each open tunnel is checked again ([`Routed`]) against the
//! route its request takes under the new routes, and closes if that
//! route's rules refuse its client, or if no route takes it any more.

use std::sync::Arc;

use tracing::debug;

use crate::config::ClientAuthMode;
use crate::proxy::forward::RequestContext;
use crate::proxy::listener::Listener;
use crate::proxy::router::Router;

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
    /// stored now, at admission `generation`; a debug line when it is (its
    /// close is logged by the driver, with `reason: admission_rules_changed`).
    pub fn still(&self, generation: u64) -> bool {
        let kept = self.check(generation);
        if kept {
            debug!(listener = %self.listener.name, peer = %self.ctx.client_addr, "connection still admitted under the changed rules; kept");
        }
        kept
    }

    fn check(&self, generation: u64) -> bool {
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
            (Some(id), Some(gate)) => gate.still_admits(id, generation),
            // No certificate presented, and the mode (`verify_if_given`)
            // still lets a client without one in.
            (None, _) => mode == ClientAuthMode::VerifyIfGiven,
            (Some(_), None) => false,
        }
    }
}

/// What a tunnel was let through its route with: its request's host and
/// path, and its client (address and certificate, as at the upgrade).
pub struct Routed {
    pub listener: Arc<Listener>,
    pub ctx: Arc<RequestContext>,
    pub host: Option<Box<str>>,
    pub path: Box<str>,
    /// The generation of the routes it was let through under.
    pub generation: u64,
}

impl Routed {
    /// Ends when the listener's routes changed since the tunnel's request
    /// was routed and no longer let its client through (its close is
    /// logged by the tunnel, with `reason: admission_rules_changed`);
    /// never before they change. Nothing runs until they do.
    pub async fn refused(self) {
        let mut routes = self.listener.routes.subscribe();
        let mut seen = self.generation;
        loop {
            if routes.wait_for(|g| *g != seen).await.is_err() {
                // The listener gone: `removed` ends the tunnel.
                return std::future::pending().await;
            }
            let router = self.listener.router.load();
            // Stored before their bump: these are the changed routes (or
            // later ones, whose own bump then finds them seen).
            seen = router.generation;
            if !self.still(&router) {
                return;
            }
            debug!(listener = %self.listener.name, peer = %self.ctx.client_addr, "tunnel still allowed on its route under the changed routes; kept");
        }
    }

    /// Whether the route the tunnel's request takes in `router` lets its
    /// client through, as a request's would be: a request no route takes
    /// now (or that the routes refuse) is refused.
    fn still(&self, router: &Router) -> bool {
        match router.matched(self.host.as_deref(), &self.path) {
            Ok(Some(route)) => route.policy.refuses(&self.ctx).is_none(),
            Ok(None) | Err(_) => false,
        }
    }
}
