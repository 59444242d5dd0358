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
//!
//! A tunnel (or a request in flight, [`crate::proxy::host_cut`]) to a
//! host of another `certs` entry than its connection's (let through as the
//! two share a `client_auth`) is checked again at each admission change
//! against that host's entry too ([`host_refused`]): the connection's
//! check reads only the entry it shook hands under, which may still admit
//! a client the host's entry no longer does.

use std::sync::Arc;

use tracing::debug;

use crate::config::ClientAuthMode;
use crate::identity::gate::Gate;
use crate::proxy::forward::RequestContext;
use crate::proxy::listener::{Handshake, Listener};
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
        let at = self.ctx.entry.as_ref().map(|(_, at)| *at);
        match config_at(&tls, at) {
            Some((mode, gate)) if mode == self.mode => verified(&self.ctx, mode, gate, generation),
            _ => false,
        }
    }
}

/// The client-auth mode and gate of entry `at` in `tls` (the listener's
/// own without per-entry client auth); `None` if there is no such entry.
fn config_at(tls: &Handshake, at: Option<usize>) -> Option<(ClientAuthMode, Option<&Gate>)> {
    match (at, &tls.per_name) {
        (None, None) => Some((tls.mode, tls.gate.as_deref())),
        (Some(at), Some(p)) => match (p.modes.get(at), p.gates.get(at)) {
            (Some(mode), Some(gate)) => Some((*mode, gate.as_deref())),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `ctx`'s client is let in under `mode` and `gate` as they are
/// at admission `generation`.
fn verified(
    ctx: &RequestContext,
    mode: ClientAuthMode,
    gate: Option<&Gate>,
    generation: u64,
) -> bool {
    if !mode.verifies() {
        // `none`, `request`, `require_any`: nothing was verified at
        // the handshake, nothing is now.
        return true;
    }
    match (&ctx.client_cert, gate) {
        (Some(id), Some(gate)) => gate.still_admits(id, generation),
        // No certificate presented, and the mode (`verify_if_given`)
        // still lets a client without one in.
        (None, _) => mode == ClientAuthMode::VerifyIfGiven,
        (Some(_), None) => false,
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
    /// With a host of another `certs` entry than its connection's (let
    /// through as that entry shares the connection's `client_auth`:
    /// [`crate::proxy::edge::Exchange::misdirected`]): that entry's
    /// position and the admission generation read before the check.
    pub host_entry: Option<(usize, u64)>,
}

impl Routed {
    /// What the tunnel of `req`, routed under routes `generation` (and
    /// let through to `host_entry`'s host), is checked again by.
    pub fn new<B>(
        listener: &Arc<Listener>,
        ctx: &Arc<RequestContext>,
        req: &http::Request<B>,
        generation: u64,
        host_entry: Option<(usize, u64)>,
    ) -> Routed {
        Routed {
            listener: listener.clone(),
            ctx: ctx.clone(),
            host: crate::proxy::request::authority(req).map(Box::from),
            path: req.uri().path().into(),
            generation,
            host_entry,
        }
    }

    /// Ends when the listener's routes changed since the tunnel's request
    /// was routed and no longer let its client through, or, its host
    /// another entry's, when its admission rules changed and no longer
    /// admit it there ([`host_refused`]); its close is logged by
    /// the tunnel, with `reason: admission_rules_changed`. Never before
    /// they change; nothing runs until they do.
    pub async fn refused(self) {
        tokio::select! {
            () = self.route_refused() => {}
            () = self.host_refused() => {}
        }
    }

    async fn host_refused(&self) {
        match self.host_entry {
            Some((at, since)) => host_refused(&self.listener, &self.ctx, at, since, true).await,
            None => std::future::pending().await,
        }
    }

    async fn route_refused(&self) {
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

/// For a request (`tunnel`: a tunnel) on `ctx`'s connection for a host of entry
/// `host_at`, another than the connection's (let through as it shares the
/// connection's `client_auth`: [`crate::proxy::edge::Exchange::misdirected`],
/// at admission generation `since`): ends at a change of the listener's
/// admission rules after which that entry no longer shares the
/// connection's `client_auth` (a new request for the host gets 421) or no
/// longer admits its client. The connection's [`Admitted`] check reads
/// its own entry only: a client taken out of the host's entry kept what
/// it had open to that host.
pub async fn host_refused(
    listener: &Listener,
    ctx: &RequestContext,
    host_at: usize,
    since: u64,
    tunnel: bool,
) {
    let mut admission = listener.admission.subscribe();
    let mut seen = since;
    loop {
        // Read before the rules are (stored before the bump), as the
        // connection's check reads them (`lifetime::Rules`).
        let now = (admission.wait_for(|a| a.generation != seen).await).map(|a| *a);
        let Ok(now) = now else {
            // The listener gone: `removed` (or the connection's close)
            // ends what is open.
            return std::future::pending().await;
        };
        seen = now.generation;
        if now.closes_all > since || !host_still(listener, ctx, host_at, now.generation) {
            return;
        }
        match tunnel {
            true => {
                debug!(listener = %listener.name, peer = %ctx.client_addr, entry = host_at, "tunnel still admitted for its host's entry under the changed rules; kept");
            }
            false => {
                debug!(listener = %listener.name, peer = %ctx.client_addr, entry = host_at, "response in flight still admitted for its host's entry under the changed rules; kept");
            }
        }
    }
}

/// Whether the host's entry (at `host_at`, as the handshake's entries
/// placed it: a change of which names pick which entry closes all), in
/// the rules stored now, shares the connection's `client_auth` (the 421
/// check's `same_now`) and admits its client at admission `generation`.
fn host_still(listener: &Listener, ctx: &RequestContext, host_at: usize, generation: u64) -> bool {
    let Some((_, at)) = &ctx.entry else {
        return true;
    };
    let tls = listener.tls.load();
    let shares = (tls.per_name.as_deref()).is_some_and(|p| p.same_client_auth(host_at, *at));
    match config_at(&tls, Some(host_at)) {
        Some((mode, gate)) if shares => verified(ctx, mode, gate, generation),
        _ => false,
    }
}
