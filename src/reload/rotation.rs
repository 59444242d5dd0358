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
//! what it was served, is none. Computed once per snapshot rebuild, never
//! per connection or request; a rebuild that keeps the name index (one
//! pair's key replaced) looks only at the names of the pairs whose key or
//! trust changed, and a CA bundle's certificates are compared only when
//! the bundle changed, once per rebuild.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::config::{ClientAuthConfig, ListenerConfig};
use crate::material::Loaded;
use crate::material::catalogue::Entry;
use crate::tls::server::SniResolver;

/// What a listener's handshakes use: the pairs that answer each name
/// (its snapshot's resolver) and the client CA bundle each pair's
/// client_auth trusts.
#[derive(Clone)]
pub(super) struct InUse {
    resolver: Arc<SniResolver>,
    /// The listener-wide client_auth's.
    wide: Trust,
    /// By position in `certs`, in order: the entries with a client_auth
    /// of their own (a handful), and its.
    own: Vec<(usize, Trust)>,
}

/// What a client_auth checks a client certificate against.
#[derive(Clone)]
enum Trust {
    /// Nothing: its mode verifies nothing (`none`, `request`,
    /// `require_any`). A `ca` given there checks no client, so its
    /// certificates are no material any connection was made with.
    Unchecked,
    /// The CA bundle of its `ca` (`None`: none loaded, nothing trusted).
    Bundle(Option<Arc<Loaded>>),
}

impl Trust {
    /// The same material (by identity, not content).
    fn is(&self, other: &Trust) -> bool {
        match (self, other) {
            (Trust::Unchecked, Trust::Unchecked) => true,
            (Trust::Bundle(a), Trust::Bundle(b)) => match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (a, b) => a.is_none() && b.is_none(),
            },
            _ => false,
        }
    }

    fn identity(&self) -> usize {
        match self {
            Trust::Bundle(Some(b)) => Arc::as_ptr(b) as usize,
            _ => 0,
        }
    }

    /// The CA certificates it trusts, sorted (by reference: no bytes copied).
    fn sorted_roots(&self) -> Vec<&[u8]> {
        let Trust::Bundle(Some(loaded)) = self else {
            return Vec::new();
        };
        let mut roots: Vec<&[u8]> = (loaded.ca().iter())
            .flat_map(|ca| ca.roots.iter().map(|r| r.as_ref()))
            .collect();
        roots.sort_unstable();
        roots
    }
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
        let trust = |policy: &ClientAuthConfig| {
            if !policy.mode.verifies() {
                return Trust::Unchecked;
            }
            let bundle = (policy.ca.as_deref())
                .and_then(|id| entries.get(id))
                .and_then(|e| e.current.clone())
                .filter(|x| x.ca().is_some());
            Trust::Bundle(bundle)
        };
        let own = (l.certs.iter().enumerate())
            .filter_map(|(at, c)| Some((at, trust(c.client_auth.as_ref()?))))
            .collect();
        InUse {
            resolver: resolver.clone(),
            wide: trust(client_auth),
            own,
        }
    }

    /// What the client_auth of the pair at `at` trusts.
    fn trust_at(&self, at: usize) -> &Trust {
        match self.own.binary_search_by_key(&at, |(i, _)| *i) {
            Ok(i) => &self.own[i].1,
            Err(_) => &self.wide,
        }
    }

    /// Whether going from `before` to this rotated material out: for some
    /// name (or the default), a certificate a client asking for it was
    /// served is not what the same client gets now, or a client CA
    /// certificate trusted for it is not trusted for it now.
    pub(super) fn rotated_from(&self, before: &InUse) -> bool {
        let (old, new) = (&*before.resolver, &*self.resolver);
        let kept = Kept::default();
        let rotated = |was: &[usize], now: &[usize]| {
            !serves_as_before(old, was, new, now)
                || !kept.trusts(
                    first(was).map(|at| before.trust_at(at)),
                    first(now).map(|at| self.trust_at(at)),
                )
        };
        if new.shares_names(old) {
            // Each name has the same pairs: only the names of a pair whose
            // key or trust changed can be served otherwise.
            let changed: Vec<usize> = (0..new.pairs())
                .filter(|&at| {
                    !same(old.key(at), new.key(at))
                        || !kept.trusts(Some(before.trust_at(at)), Some(self.trust_at(at)))
                })
                .collect();
            let default = old.candidates(None);
            return (changed.iter().any(|at| default.contains(at)) && rotated(default, default))
                || (changed.iter().flat_map(|&at| old.listed_by(at))).any(|name| {
                    let pairs = old.candidates_for(name);
                    rotated(pairs, pairs)
                });
        }
        let pairs = |name| (old.candidates_for(name), new.candidates_for(name));
        rotated(old.candidates(None), new.candidates(None))
            || old.names().any(|name| {
                let (was, now) = pairs(name);
                rotated(was, now)
            })
            || (new.names().filter(|&name| !old.indexes(name))).any(|name| {
                let (was, now) = pairs(name);
                rotated(was, now)
            })
    }
}

fn first(pairs: &[usize]) -> Option<usize> {
    pairs.first().copied()
}

/// Whether one client CA bundle still trusts each CA certificate another
/// trusted, each pair of bundles compared once per rebuild however many
/// names share them.
#[derive(Default)]
struct Kept {
    known: RefCell<Vec<((usize, usize), bool)>>,
}

impl Kept {
    /// Whether a client that `was` (for a name: its first pair's; `None`:
    /// no pair) let in would be let in by `now` as far as the CA
    /// certificates go: `now` verifies nothing, or trusts every
    /// certificate `was` trusted (nothing when it verified nothing).
    fn trusts(&self, was: Option<&Trust>, now: Option<&Trust>) -> bool {
        let (Some(was), Some(now)) = (was, now) else {
            return true;
        };
        if matches!(was, Trust::Unchecked) || matches!(now, Trust::Unchecked) || was.is(now) {
            return true;
        }
        let key = (was.identity(), now.identity());
        if let Some((_, kept)) = self.known.borrow().iter().find(|(k, _)| *k == key) {
            return *kept;
        }
        let trusted = now.sorted_roots();
        let kept = (was.sorted_roots().iter()).all(|root| trusted.binary_search(root).is_ok());
        self.known.borrow_mut().push((key, kept));
        kept
    }
}

/// The same certificate chain: the same key shared, or one re-read.
fn same(a: &Arc<CertifiedKey>, b: &Arc<CertifiedKey>) -> bool {
    Arc::ptr_eq(a, b) || a.cert == b.cert
}

/// Whether a client that chose among `was` (positions in `old`) gets the
/// same certificate choosing among `now` (in `new`), whatever signature
/// schemes it offers: each certificate of `was` is in `now`, with none
/// before it that was not before it in `was` (the first that can sign
/// for the client is taken, else the first). Several pairs answer a name
/// only for different key types (ECDSA and RSA), so an order that puts no
/// new certificate ahead keeps every client's.
fn serves_as_before(old: &SniResolver, was: &[usize], new: &SniResolver, now: &[usize]) -> bool {
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
