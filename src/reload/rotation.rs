//! What `max_connection_lifetime` counts as a rotation: a certificate no longer served for a name it was, or a client CA certificate no longer trusted where it was.
//!
//! A listener's connections are bounded by age only once material they
//! may have been made with is gone: compared name by name (every name
//! either snapshot answers, exact or through a wildcard, and the default
//! for a client without SNI or with a name none answers), not as a
//! fingerprint of the files in order. So a name moved to another pair
//! (by `server_names`, or a renewal's SANs) is a rotation, though every
//! pair's files are the same; a CA certificate added to a client CA
//! bundle (a CA rollover starting), one taken out of a bundle a mode that
//! verifies nothing names, or a reorder of `certs` that leaves each name
//! what it was served, is none. Computed once per snapshot
//! rebuild, never per connection or request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;

use crate::config::{ClientAuthConfig, ListenerConfig};
use crate::material::catalogue::Entry;
use crate::tls::server::SniResolver;

/// What a listener's handshakes use: the pairs that answer each name
/// (its snapshot's resolver) and the client CA certificates each pair's
/// client_auth trusts.
#[derive(Clone)]
pub(super) struct InUse {
    resolver: Arc<SniResolver>,
    /// By position in `certs`: the CA certificates of its client_auth's
    /// `ca` (its own, else the listener's), sorted, when its mode verifies
    /// clients; `None` when it verifies nothing (`none`, `request`,
    /// `require_any`: a `ca` given there checks no client, so its
    /// certificates are no material any connection was made with).
    trusted: Vec<Option<Arc<[CertificateDer<'static>]>>>,
}

impl InUse {
    /// Listener `l`'s, under `client_auth` (the listener-wide one in
    /// effect), `entries`' material and its snapshot's `resolver`.
    pub(super) fn new(
        l: &ListenerConfig,
        client_auth: &ClientAuthConfig,
        entries: &BTreeMap<String, Entry>,
        resolver: &Arc<SniResolver>,
    ) -> InUse {
        let roots = |policy: &ClientAuthConfig| -> Option<Arc<[CertificateDer<'static>]>> {
            if !policy.mode.verifies() {
                return None;
            }
            let bundle = (policy.ca.as_deref())
                .and_then(|id| entries.get(id))
                .and_then(|e| e.current.as_ref())
                .and_then(|x| x.ca());
            let mut roots: Vec<_> = bundle.iter().flat_map(|ca| ca.roots.clone()).collect();
            roots.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
            Some(roots.into())
        };
        let wide = roots(client_auth);
        let trusted = (l.certs.iter())
            .map(|c| c.client_auth.as_ref().map_or_else(|| wide.clone(), roots))
            .collect();
        InUse {
            resolver: resolver.clone(),
            trusted,
        }
    }

    /// Whether going from `before` to this rotated material out: for some
    /// name (or the default), a certificate a client asking for it was
    /// served is not what the same client gets now, or a client CA
    /// certificate trusted for it is not trusted for it now.
    pub(super) fn rotated_from(&self, before: &InUse) -> bool {
        let (old, new) = (&*before.resolver, &*self.resolver);
        let names: BTreeSet<String> = (old.owned().chain(new.owned()))
            .map(|(name, _)| name)
            .collect();
        std::iter::once(None)
            .chain(names.iter().map(|n| Some(n.as_str())))
            .any(|name| {
                let (was, now) = (old.candidates(name), new.candidates(name));
                !serves_as_before(old, was, new, now)
                    || !(before.trusted_for(was).unwrap_or_default())
                        .iter()
                        .all(|root| self.trusts(now, root))
            })
    }

    /// The CA certificates trusted for a name `pairs` answer: those of
    /// the first's client_auth, which applies to it; `None` when that
    /// verifies nothing.
    fn trusted_for(&self, pairs: &[usize]) -> Option<&[CertificateDer<'static>]> {
        match pairs.first().and_then(|&at| self.trusted.get(at)) {
            Some(Some(roots)) => Some(&roots[..]),
            Some(None) => None,
            None => Some(&[]),
        }
    }

    /// Whether a connection whose client could have been verified against
    /// `root` for a name `pairs` answer would be let in now: `root` is
    /// still trusted for it, or its client_auth verifies nothing.
    fn trusts(&self, pairs: &[usize], root: &CertificateDer<'_>) -> bool {
        self.trusted_for(pairs).is_none_or(|roots| {
            roots
                .binary_search_by(|r| r.as_ref().cmp(root.as_ref()))
                .is_ok()
        })
    }
}

/// Whether a client that chose among `was` (positions in `old`) gets the
/// same certificate choosing among `now` (in `new`), whatever signature
/// schemes it offers: each certificate of `was` is in `now`, with none
/// before it that was not before it in `was` (the first that can sign
/// for the client is taken, else the first). Several pairs answer a name
/// only for different key types (ECDSA and RSA), so an order that puts no
/// new certificate ahead keeps every client's.
fn serves_as_before(old: &SniResolver, was: &[usize], new: &SniResolver, now: &[usize]) -> bool {
    let same = |a: &Arc<CertifiedKey>, b: &Arc<CertifiedKey>| Arc::ptr_eq(a, b) || a.cert == b.cert;
    was.iter().enumerate().all(|(i, &w)| {
        let served = old.key(w);
        let Some(j) = now.iter().position(|&n| same(new.key(n), served)) else {
            return false;
        };
        now[..j]
            .iter()
            .all(|&n| was[..i].iter().any(|&e| same(old.key(e), new.key(n))))
    })
}
