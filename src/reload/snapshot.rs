//! Building TLS snapshots for listeners and upstreams, and the keys of what they are built from.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use tracing::{debug, warn};

use super::keep::{keep_dropped, keep_owners, keep_resolved};
use super::rotation::InUse;
use super::{LOG, LiveListener, Reloader};
use crate::config::{
    self, ClientAuthConfig, ClientAuthMode, ListenerCert, ListenerConfig, UpstreamCa,
    UpstreamConfig,
};
use crate::identity::gate::{CaSource, Gate};
use crate::material::Loaded;
use crate::material::catalogue::Entry;
use crate::proxy::listener::ServedCert;
use crate::tls;
use crate::tls::per_name::PerName;
use crate::tls::server::{ServedPair, SniResolver};

impl Reloader {
    /// The snapshots that depend on entry `id`, rebuilt after its material
    /// changed from `previous` (`None`: it had none), but not yet stored.
    /// Listeners that do not use `id` are not looked at beyond a lookup.
    pub(super) fn plan_entry_change(
        &self,
        id: &str,
        previous: Option<&Loaded>,
    ) -> Result<Vec<MaterialChange>, String> {
        let mut changes = Vec::new();
        for (name, l) in &self.listeners {
            let client_auth = self.client_auth_for(name, &l.config);
            if let Some(built) = listener_tls_after(l, &client_auth, &self.entries, id, previous)
                .map_err(|e| format!("listener {name}: {e}"))?
            {
                changes.push(MaterialChange::Listener(name.clone(), built));
            }
        }
        for (name, u) in &self.upstreams {
            if upstream_key(&u.config, &self.entries) != u.key {
                let (tls, key) = upstream_tls(&u.config, &self.entries)
                    .map_err(|e| format!("upstream {name}: {e}"))?;
                changes.push(MaterialChange::Upstream(name.clone(), tls, key));
            }
        }
        Ok(changes)
    }

    pub(super) fn commit_material(&mut self, changes: Vec<MaterialChange>) {
        for change in changes {
            match change {
                MaterialChange::Listener(name, built) => {
                    let l = self
                        .listeners
                        .get_mut(&name)
                        .expect("planned from live listeners");
                    l.live.set_tls(
                        built.tls,
                        built.mode,
                        built.gate,
                        built.served,
                        built.per_name,
                        built.resolver.clone(),
                        built.rotation.rotated_from(&l.rotation),
                    );
                    l.key = built.key;
                    l.rotation = built.rotation;
                    l.resolver = built.resolver;
                    debug!(target: LOG, listener = %name, "listener TLS snapshot replaced");
                    // New CA or CRL material can refuse a client admitted
                    // under the old: its connections close (the others,
                    // checked again, are kept).
                    l.readmit(built.admits);
                }
                MaterialChange::Upstream(name, tls, key) => {
                    let u = self
                        .upstreams
                        .get_mut(&name)
                        .expect("planned from live upstreams");
                    u.live.set_tls(tls);
                    u.key = key;
                    debug!(target: LOG, upstream = %name, "upstream TLS snapshot replaced");
                }
            }
        }
    }
}

pub(super) enum MaterialChange {
    Listener(String, BuiltListener),
    Upstream(String, Arc<ClientConfig>, u64),
}

/// A listener's TLS snapshot, built but not yet stored.
pub(super) struct BuiltListener {
    pub(super) tls: Arc<ServerConfig>,
    pub(super) mode: ClientAuthMode,
    /// `tls`'s client verifier in a verifying mode.
    pub(super) gate: Option<Arc<Gate>>,
    pub(super) served: Vec<Arc<ServedCert>>,
    pub(super) resolver: Arc<SniResolver>,
    pub(super) key: u64,
    /// The certificates it serves for each name and the client CA
    /// certificates it trusts for it: what a rotation is judged by.
    pub(super) rotation: InUse,
    /// What the listener admits under it ([`admission_key`]): stored
    /// with it, it closes connections other rules admitted and it does not.
    pub(super) admits: Admits,
    /// Per-entry configs when `certs` entries carry their own client auth.
    pub(super) per_name: Option<Arc<PerName>>,
}

fn loaded<'a>(entries: &'a BTreeMap<String, Entry>, id: &str) -> Result<&'a Arc<Loaded>, String> {
    entries
        .get(id)
        .ok_or_else(|| format!("entry {id:?} does not exist"))?
        .current
        .as_ref()
        .ok_or_else(|| format!("entry {id:?} has no usable material"))
}

/// What snapshots are keyed by for entry `id`: its material's
/// [`Loaded::key`] (the files' hash, and a CA bundle's CRL choices).
fn hash_of(entries: &BTreeMap<String, Entry>, id: &str) -> Option<[u8; 32]> {
    entries
        .get(id)
        .and_then(|e| e.current.as_ref())
        .map(|x| x.key())
}

/// Fingerprint of everything a listener's snapshot is built from: a term
/// for its settings and client CA plus one term per served pair, summed,
/// so that one entry's change updates it from that entry's terms alone
/// (see [`listener_tls_after`]).
fn listener_key(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    entries: &BTreeMap<String, Entry>,
) -> u64 {
    let ca_hash = client_auth
        .ca
        .as_deref()
        .and_then(|ca| hash_of(entries, ca));
    l.certs
        .iter()
        .enumerate()
        .fold(settings_term(l, client_auth, ca_hash), |key, (i, c)| {
            key.wrapping_add(pair_term(i, c, hash_of(entries, &c.entry)))
        })
        .wrapping_add(per_name_term(l, entries))
}

/// Fingerprints of what a listener admits ([`admission_key`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Admits {
    /// Everything that decides whether a client may use the listener.
    pub(super) all: u64,
    /// The part of it open connections cannot be checked against again
    /// ([`crate::proxy::readmit`]): when it changes, they all close.
    pub(super) fixed: u64,
}

/// Fingerprint of what decides whether a client may use listener `l`: its
/// client auth (mode, allow rules, the CA's and CRLs' material, per entry
/// too, with the names that pick an entry's) and what is in front of it
/// (`allow_from`, PROXY protocol, trusted proxies). When it changes, the
/// listener's open connections are checked again and those it no longer
/// admits close ([`crate::proxy::lifetime`]); when its `fixed` part
/// changes — the client-auth modes (the listener's only where an entry
/// inherits it), the names that pick an entry (by position), PROXY
/// protocol, trusted proxies: what a connection recorded at accept depends
/// on — they all close. The names that pick an entry are those `resolver`
/// (the snapshot's) gives it, its certificate's SANs included: a renewal
/// that moves a name to another entry changes them, and a connection's
/// `421` check judges a request's host by the entries of its handshake.
/// A name the default entry (or a wildcard's) answers anyway picks
/// nothing ([`SniResolver::picks`]): renewing the default entry for a
/// host no other entry answers moves no name. `left_out` is fixed too:
/// the names SNI cannot carry, each with the entry it belongs to (sorted;
/// those the default entry or a wildcard's has anyway left out:
/// [`tls::per_name::Entries::picks`]),
/// which the 421 check also reads from the handshake's entries, so a
/// renewal giving `DNS:host.123` to an entry stricter than the default
/// moves it as it would an SNI name. The certificates served are not in it: a
/// rotation that keeps each name with its entry keeps connections.
fn admission_key(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    entries: &BTreeMap<String, Entry>,
    resolver: &SniResolver,
    left_out: &[(String, usize)],
) -> Admits {
    // Name -> entry, as the snapshot's resolver has them, less what a
    // name gets without picking (the default entry, a wildcard's): none
    // without per-entry client auth, one config for all names.
    let picks = if has_per_name(l) {
        resolver.picks()
    } else {
        Vec::new()
    };
    // With per-entry client auth, by position: each entry's mode, the
    // listener's only if an entry inherits it (else no connection was
    // admitted under it), and the names that pick each entry. Not the
    // catalogue entry a position serves: one pointed at another id with
    // the same names leaves each name with its entry (the recheck below
    // sees it).
    let mut fixed = DefaultHasher::new();
    if has_per_name(l) {
        l.certs.len().hash(&mut fixed);
        for c in &l.certs {
            c.client_auth
                .as_ref()
                .map(|a| a.mode.as_str())
                .hash(&mut fixed);
        }
        if l.certs.iter().any(|c| c.client_auth.is_none()) {
            client_auth.mode.as_str().hash(&mut fixed);
        }
        picks.hash(&mut fixed);
        left_out.hash(&mut fixed);
    } else {
        client_auth.mode.as_str().hash(&mut fixed);
    }
    l.front.proxy_protocol.hash(&mut fixed);
    l.front.trusted_proxies.hash(&mut fixed);
    let mut h = DefaultHasher::new();
    client_auth.mode.as_str().hash(&mut h);
    client_auth.allow_expired_crl.hash(&mut h);
    client_auth.ca.hash(&mut h);
    client_auth
        .ca
        .as_deref()
        .and_then(|ca| hash_of(entries, ca))
        .hash(&mut h);
    client_auth.allow.hash(&mut h);
    if has_per_name(l) {
        per_name_term(l, entries).hash(&mut h);
        for c in &l.certs {
            (&c.entry, &c.server_names).hash(&mut h);
        }
        picks.hash(&mut h);
        left_out.hash(&mut h);
    }
    l.front.allow_from.hash(&mut h);
    l.front.proxy_protocol.hash(&mut h);
    l.front.trusted_proxies.hash(&mut h);
    Admits {
        all: h.finish(),
        fixed: fixed.finish(),
    }
}

/// The part of [`listener_key`] for per-entry client auth (policies and
/// their CAs' material); 0 without any.
fn per_name_term(l: &ListenerConfig, entries: &BTreeMap<String, Entry>) -> u64 {
    if !has_per_name(l) {
        return 0;
    }
    let mut h = DefaultHasher::new();
    for (i, c) in l.certs.iter().enumerate() {
        if let Some(ca) = &c.client_auth {
            (i, ca, ca.ca.as_deref().and_then(|id| hash_of(entries, id))).hash(&mut h);
        }
    }
    h.finish()
}

/// Whether each catalogue entry `certs` and `client_auth` use (the pairs,
/// their own client_auth's CAs, the listener's) has one definition in
/// `was` and `now`. Only then is a rebuild the running listener's renewal:
/// an entry redefined under its id (its `cert_file` changed in the file)
/// is new configuration, refused where `check` and a restart refuse it.
pub(super) fn defined_alike(
    certs: &[ListenerCert],
    client_auth: &ClientAuthConfig,
    was: &BTreeMap<String, Entry>,
    now: &BTreeMap<String, Entry>,
) -> bool {
    let policies = certs.iter().filter_map(|c| c.client_auth.as_ref());
    let cas = policies
        .chain([client_auth])
        .filter_map(|a| a.ca.as_deref());
    (certs.iter().map(|c| c.entry.as_str()).chain(cas))
        .all(|id| was.get(id).map(|e| &e.spec) == now.get(id).map(|e| &e.spec))
}

/// Whether any of the listener's certificate entries has its own client auth.
pub(super) fn has_per_name(l: &ListenerConfig) -> bool {
    l.certs.iter().any(|c| c.client_auth.is_some())
}

/// The part of [`listener_key`] for the settings and the client CA's material.
fn settings_term(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    ca_hash: Option<[u8; 32]>,
) -> u64 {
    let mut h = DefaultHasher::new();
    l.certs.len().hash(&mut h);
    client_auth.mode.as_str().hash(&mut h);
    client_auth.allow_expired_crl.hash(&mut h);
    if let Some(ca) = &client_auth.ca {
        ca.hash(&mut h);
        ca_hash.hash(&mut h);
    }
    client_auth.allow.hash(&mut h);
    l.alpn.hash(&mut h);
    matches!(l.min_version, config::TlsVersion::V13).hash(&mut h);
    h.finish()
}

/// The part of [`listener_key`] for the pair at position `i`, with material `hash`.
/// Its names SNI cannot carry too: they decide the 421 check's entries, so
/// a reload listing one more must replace the snapshot.
fn pair_term(i: usize, c: &ListenerCert, hash: Option<[u8; 32]>) -> u64 {
    let mut h = DefaultHasher::new();
    (i, &c.entry, &c.server_names, &c.left_out, hash).hash(&mut h);
    h.finish()
}

/// Where each entry sits in a listener's `certs`.
pub(super) fn positions(l: &ListenerConfig) -> HashMap<String, Vec<usize>> {
    let mut at: HashMap<String, Vec<usize>> = HashMap::with_capacity(l.certs.len());
    for (i, c) in l.certs.iter().enumerate() {
        at.entry(c.entry.clone()).or_default().push(i);
    }
    at
}

fn served_cert(c: &ListenerCert, pair: &crate::material::Pair) -> Arc<ServedCert> {
    Arc::new(ServedCert {
        entry: c.entry.clone(),
        server_names: c
            .server_names
            .clone()
            .unwrap_or_else(|| pair.leaf.dns_names.clone()),
        info: pair.leaf.clone(),
    })
}

/// Refuses (`rotation`: warns about) an entry after the first that answers
/// no name while its client_auth differs from the first's: no SNI selects
/// it, so its client_auth never applies (an IP-only certificate, `[]`).
fn unreachable_entries(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    pairs: &[ServedPair<'_>],
    rotation: bool,
) -> Result<(), String> {
    let policy = |i: usize| l.certs[i].client_auth.as_ref().unwrap_or(client_auth);
    for (i, p) in pairs.iter().enumerate().skip(1) {
        if !p.names().is_empty() || policy(i) == policy(0) {
            continue;
        }
        let how = crate::tls::per_name::why_no_name(&l.certs[i], p);
        if rotation {
            warn!(target: LOG, listener = %l.name, entry = %p.entry, why = %how, "a renewed certificate leaves its entry no name to answer; no client selects it, so its client_auth does not apply (give the entry server_names: check and a restart refuse this)");
            continue;
        }
        return Err(format!(
            "tls.certs[{i}] (entry {:?}) answers no name ({how}), so no client selects it: its client_auth would never apply, and clients get tls.certs[0]'s (list the names in server_names, or drop the entry's client_auth)",
            p.entry
        ));
    }
    Ok(())
}

pub(super) fn client_ca<'a>(
    client_auth: &ClientAuthConfig,
    entries: &'a BTreeMap<String, Entry>,
) -> Result<Option<&'a crate::material::CaBundle>, String> {
    match &client_auth.ca {
        Some(id) => {
            Ok(Some(loaded(entries, id)?.ca().ok_or_else(|| {
                format!("entry {id:?} is not a ca-bundle")
            })?))
        }
        None => Ok(None),
    }
}

/// A listener's snapshot from scratch: every pair, every name. `before`
/// is the live listener it replaces when the pairs and their client_auth
/// are the same as then (a rotation): see [`keep_owners`] (its resolver)
/// and [`tls::per_name::owners_of_left_out`] (its names SNI cannot carry).
pub(super) fn listener_tls(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    entries: &BTreeMap<String, Entry>,
    before: Option<&LiveListener>,
) -> Result<BuiltListener, String> {
    let mut material = Vec::with_capacity(l.certs.len());
    for c in &l.certs {
        let m = loaded(entries, &c.entry)?;
        material.push(
            m.pair()
                .ok_or_else(|| format!("entry {:?} is not a server-pair", c.entry))?,
        );
    }
    let policies: Vec<_> = (l.certs.iter())
        .map(|c| c.client_auth.as_ref().unwrap_or(client_auth))
        .collect();
    // Names can come from certificates, so a rotation can shadow a pair too.
    let kept = if has_per_name(l) {
        keep_owners(
            l,
            &policies,
            &material,
            entries,
            before.map(|b| &*b.resolver),
        )?
    } else {
        vec![None; l.certs.len()]
    };
    let mut pairs = Vec::with_capacity(l.certs.len());
    let mut served = Vec::with_capacity(l.certs.len());
    for ((c, pair), kept) in l.certs.iter().zip(material).zip(&kept) {
        pairs.push(ServedPair {
            entry: &c.entry,
            pair,
            server_names: kept.as_deref().or(c.server_names.as_deref()),
        });
        let mut cert = served_cert(c, pair);
        if let Some(names) = kept {
            Arc::make_mut(&mut cert).server_names = names.clone();
        }
        served.push(cert);
    }
    unreachable_entries(l, client_auth, &pairs, before.is_some())?;
    let resolver = Arc::new(match SniResolver::new(&pairs) {
        Some(r) => r,
        None if l.front.redirect_https.is_some() => SniResolver::none(),
        None => return Err("no server certificate".into()),
    });
    let (tls, gate) = server_config(l, client_auth, entries, &resolver)?;
    let per_name = if has_per_name(l) {
        // One config per distinct policy, shared by the entries that have it:
        // the 421 check reads that (`PerName::same_client_auth`).
        type Built<'a> = (&'a ClientAuthConfig, Arc<ServerConfig>, Option<Arc<Gate>>);
        let mut built: Vec<Built<'_>> = vec![(client_auth, tls.clone(), gate.clone())];
        let mut configs = Vec::with_capacity(l.certs.len());
        let mut modes = Vec::with_capacity(l.certs.len());
        let mut gates = Vec::with_capacity(l.certs.len());
        for (i, c) in l.certs.iter().enumerate() {
            let policy = c.client_auth.as_ref().unwrap_or(client_auth);
            let (config, gate) = match built.iter().find(|(p, _, _)| *p == policy) {
                Some((_, config, gate)) => (config.clone(), gate.clone()),
                None => {
                    // Only an entry's own client_auth gets here: name it.
                    let (config, gate) =
                        server_config(l, policy, entries, &resolver).map_err(|e| {
                            format!("tls.certs[{i}] (entry {:?}) client_auth: {e}", c.entry)
                        })?;
                    built.push((policy, config.clone(), gate.clone()));
                    (config, gate)
                }
            };
            configs.push(config);
            modes.push(policy.mode);
            gates.push(gate);
        }
        let mut listed = tls::per_name::hosts_left_out(&l.certs, &pairs);
        let had = before.and_then(|b| b.live.tls.load().per_name.clone());
        let had = had.as_ref().map(|p| &*p.entries);
        if let Some(had) = had {
            // A renewal dropping one is met as one dropping an SNI name.
            let mut moved = vec![false; listed.len()];
            let before = had.left_out();
            // Its host is routed past an SNI `*.` wildcard too.
            let sni = |n: &str| {
                resolver
                    .answers(n)
                    .then(|| resolver.position_or_default(Some(n)))
            };
            keep_dropped(l, &policies, entries, before, sni, &mut listed, &mut moved);
        }
        // A name the default or a wildcard's entry answered before is met
        // as such an SNI name is.
        let resolved = |listed: &mut [Vec<String>]| match had {
            Some(had) => {
                let mut moved = vec![false; listed.len()];
                let answered = |n: &str| had.answering(n);
                keep_resolved(l, &policies, answered, listed, &mut moved)
            }
            None => Ok(()),
        };
        let (left_out, moved) =
            tls::per_name::owners_of_left_out(&l.certs, listed, &policies, had, resolved)?;
        for m in moved {
            warn!(target: LOG, listener = %l.name, name = %m.name, entry = %l.certs[m.entry].entry, kept_by = %l.certs[m.kept_by].entry, "a certificate names a host no SNI can carry that another entry of the listener lists with a different client_auth; that entry keeps it (drop the name from one of them: check and a restart refuse this)");
        }
        let resolver = resolver.clone();
        Some(Arc::new(PerName::new(
            configs, modes, gates, resolver, left_out,
        )))
    } else {
        None
    };
    // As `picks`: a name the default entry has anyway moves nothing.
    let left_out = (per_name.iter())
        .flat_map(|p| p.entries.picks())
        .collect::<Vec<_>>();
    let admits = admission_key(l, client_auth, entries, &resolver, &left_out);
    let rotation = InUse::new(l, client_auth, entries, &resolver);
    Ok(BuiltListener {
        tls,
        mode: client_auth.mode,
        gate,
        served,
        resolver,
        key: listener_key(l, client_auth, entries),
        rotation,
        admits,
        per_name,
    })
}

/// One `ServerConfig` of listener `l` for the client-auth policy
/// `client_auth`, with its client verifier in a verifying mode.
fn server_config(
    l: &ListenerConfig,
    client_auth: &ClientAuthConfig,
    entries: &BTreeMap<String, Entry>,
    resolver: &Arc<SniResolver>,
) -> Result<(Arc<ServerConfig>, Option<Arc<Gate>>), String> {
    let inputs = tls::server::ServerInputs {
        listener: l,
        mode: client_auth.mode,
        client_ca: client_ca(client_auth, entries)?,
        allow: client_auth.allow.as_ref(),
        allow_expired_crl: client_auth.allow_expired_crl,
        client_ca_source: client_auth.ca.as_deref().map(|id| CaSource {
            entry: id.into(),
            crl_files: entries
                .get(id)
                .map(|e| e.spec.source.crl_sources_shown())
                .unwrap_or_default()
                .into(),
        }),
    };
    tls::server::build(&inputs, resolver.clone()).map_err(|e| e.to_string())
}

/// Listener `l`'s snapshot after entry `id`'s material changed from
/// `previous` (`entries` holds the new one), or `None` when `l` does not
/// use it. A pair that answers the same names as before only has its key
/// replaced in the previous resolver and its metadata in the served list;
/// the other pairs are shared, never re-read, re-indexed or re-cloned. A
/// changed client CA rebuilds the verifier around the same resolver.
fn listener_tls_after(
    l: &LiveListener,
    client_auth: &ClientAuthConfig,
    entries: &BTreeMap<String, Entry>,
    id: &str,
    previous: Option<&Loaded>,
) -> Result<Option<BuiltListener>, String> {
    let at = l.positions.get(id).map(Vec::as_slice).unwrap_or_default();
    let is_ca = client_auth.ca.as_deref() == Some(id);
    let per_name = has_per_name(&l.config);
    let is_entry_ca = per_name
        && l.config
            .certs
            .iter()
            .any(|c| c.client_auth.as_ref().and_then(|a| a.ca.as_deref()) == Some(id));
    // Keys, not the files' hashes: a CA bundle's CRLs chosen again change
    // the key and not the hash, and the listener's key was summed from it.
    let now = hash_of(entries, id);
    if (at.is_empty() && !is_ca && !is_entry_ca) || previous.map(Loaded::key) == now {
        return Ok(None);
    }
    let Some(previous) = previous else {
        return listener_tls(&l.config, client_auth, entries, Some(l)).map(Some);
    };
    if per_name {
        // Several configs share the resolver: rebuild them all (rare: a
        // listener with per-entry client auth has a handful of entries).
        return listener_tls(&l.config, client_auth, entries, Some(l)).map(Some);
    }
    let mut key = l.key;
    let (resolver, served) = if at.is_empty() {
        (l.resolver.clone(), (**l.live.served.load()).clone())
    } else {
        let pair = loaded(entries, id)?
            .pair()
            .ok_or_else(|| format!("entry {id:?} is not a server-pair"))?;
        let same_names = at.iter().all(|&i| l.config.certs[i].server_names.is_some())
            || previous
                .pair()
                .is_some_and(|p| p.leaf.dns_names == pair.leaf.dns_names);
        if !same_names {
            return listener_tls(&l.config, client_auth, entries, Some(l)).map(Some);
        }
        let mut served = (**l.live.served.load()).clone();
        for &i in at {
            let c = &l.config.certs[i];
            served[i] = served_cert(c, pair);
            key = key
                .wrapping_sub(pair_term(i, c, Some(previous.key())))
                .wrapping_add(pair_term(i, c, now));
        }
        (Arc::new(l.resolver.with_key(at, &pair.key)), served)
    };
    if is_ca {
        key = key
            .wrapping_sub(settings_term(&l.config, client_auth, Some(previous.key())))
            .wrapping_add(settings_term(&l.config, client_auth, now));
    }
    debug_assert_eq!(key, listener_key(&l.config, client_auth, entries));
    let (tls, gate) = server_config(&l.config, client_auth, entries, &resolver)?;
    // No per-entry client auth here: no name is left out to an entry.
    let admits = admission_key(&l.config, client_auth, entries, &resolver, &[]);
    let rotation = InUse::new(&l.config, client_auth, entries, &resolver);
    Ok(Some(BuiltListener {
        tls,
        mode: client_auth.mode,
        gate,
        served,
        resolver,
        key,
        rotation,
        admits,
        per_name: None,
    }))
}

fn upstream_key(u: &UpstreamConfig, entries: &BTreeMap<String, Entry>) -> u64 {
    let mut h = DefaultHasher::new();
    let hash_of = |id: &str| hash_of(entries, id);
    match &u.tls.ca {
        UpstreamCa::Entry(id) => (id, hash_of(id)).hash(&mut h),
        UpstreamCa::System => "system".hash(&mut h),
    }
    if let Some(c) = &u.tls.client_cert {
        (c, hash_of(c)).hash(&mut h);
    }
    h.finish()
}

pub(super) fn upstream_tls(
    u: &UpstreamConfig,
    entries: &BTreeMap<String, Entry>,
) -> Result<(Arc<ClientConfig>, u64), String> {
    let ca = match &u.tls.ca {
        UpstreamCa::Entry(id) => Some(
            loaded(entries, id)?
                .ca()
                .ok_or_else(|| format!("entry {id:?} is not a ca-bundle"))?,
        ),
        UpstreamCa::System => None,
    };
    let client = match &u.tls.client_cert {
        Some(id) => Some(
            loaded(entries, id)?
                .pair()
                .ok_or_else(|| format!("entry {id:?} is not a client-pair"))?,
        ),
        None => None,
    };
    let tls = tls::client::build(ca, client, &u.tls.verify_names).map_err(|e| e.to_string())?;
    Ok((tls, upstream_key(u, entries)))
}
