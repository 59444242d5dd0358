//! Listener `ServerConfig`: SNI resolution over several pairs, the five client-auth modes.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureScheme};

use crate::config::{ClientAuthMode, ListenerConfig, TlsVersion};
use crate::identity::gate::Gate;
use crate::material::{CaBundle, Pair};
use crate::tls::TlsError;
use crate::tls::session_cache::{self, AgedTickets, ExpiringSessions};
use crate::tls::verifiers::client_verifier;

/// One server pair on a listener, with the names it answers.
pub struct ServedPair<'a> {
    pub entry: &'a str,
    pub pair: &'a Pair,
    /// Explicit `server_names`, or `None` for the leaf's DNS SANs.
    pub server_names: Option<&'a [String]>,
}

impl ServedPair<'_> {
    /// The names this pair answers, as the resolver indexes them.
    pub fn names(&self) -> &[String] {
        self.server_names.unwrap_or(&self.pair.leaf.dns_names)
    }
}

/// A name two pairs of one listener answer under different client auth:
/// the resolver picks the earlier, so the later pair's policy never applies.
#[derive(Debug, PartialEq, Eq)]
pub struct Shadowed {
    pub name: String,
    pub earlier: usize,
    pub later: usize,
}

/// The first name a later pair answers that an earlier pair already
/// answers with a different policy (`policies[i]` is pair `i`'s). Checked
/// where the names are known: a certificate's SANs are material, so this
/// runs on every build of the listener's TLS, rotations included.
pub fn shadowed<P: PartialEq>(names: &[&[String]], policies: &[&P]) -> Option<Shadowed> {
    let mut owner: HashMap<String, usize> = HashMap::new();
    for (later, list) in names.iter().enumerate() {
        for name in list.iter() {
            // Compared as the resolver keys it ("*.x" stays apart from "x").
            let name = name_key(name);
            let earlier = *owner.entry(name.clone()).or_insert(later);
            if policies[earlier] != policies[later] {
                return Some(Shadowed {
                    name,
                    earlier,
                    later,
                });
            }
        }
    }
    None
}

/// Everything a listener's TLS snapshot is made from, besides its pairs
/// (those are in the [`SniResolver`]).
pub struct ServerInputs<'a> {
    pub listener: &'a ListenerConfig,
    /// Effective mode (may be changed at runtime through the admin API).
    pub mode: ClientAuthMode,
    /// Required when `mode.verifies()`.
    pub client_ca: Option<&'a CaBundle>,
    /// `allow` rules applied in the handshake (verifying modes).
    pub allow: Option<&'a Arc<crate::identity::AllowList>>,
    /// Trust CRLs past their nextUpdate (`client_auth.allow_expired_crl`).
    pub allow_expired_crl: bool,
    /// Where `client_ca` comes from, for a warning about its CRLs.
    pub client_ca_source: Option<crate::identity::gate::CaSource>,
}

/// Refuses a listener whose pair `later` would never be chosen for a name
/// that carries its own client auth, naming both entries and the name.
pub fn refuse_shadowed<P: PartialEq>(
    pairs: &[ServedPair<'_>],
    policies: &[&P],
) -> Result<(), String> {
    let names: Vec<&[String]> = pairs.iter().map(ServedPair::names).collect();
    let entries: Vec<&str> = pairs.iter().map(|p| p.entry).collect();
    match shadowed(&names, policies) {
        None => Ok(()),
        Some(s) => Err(s.refusal(&entries)),
    }
}

impl Shadowed {
    /// Why the listener is refused, naming both entries (`entries[i]` is
    /// pair `i`'s) and the name.
    pub fn refusal(&self, entries: &[&str]) -> String {
        format!(
            "tls.certs[{}] (entry {:?}) answers {:?}, which tls.certs[{}] (entry {:?}) answers first with a different client_auth: the later entry's client_auth would never apply (drop the name from one of them, or give both the same client_auth)",
            self.later, entries[self.later], self.name, self.earlier, entries[self.earlier]
        )
    }

    /// [`Shadowed::refusal`] for a name no SNI can carry (`host.123`),
    /// which entries list rather than answer: no client selects either
    /// entry by it, so a request for it could not be told whose
    /// client_auth applies ([`crate::tls::per_name::owners_of_left_out`]).
    pub fn refusal_host_only(&self, entries: &[&str]) -> String {
        format!(
            "tls.certs[{}] (entry {:?}) lists {:?}, a name no SNI can carry, which tls.certs[{}] (entry {:?}) lists with a different client_auth: no client selects either entry by it, so a request for it could not be told whose client_auth applies (drop the name from one of them, or give both the same client_auth)",
            self.later, entries[self.later], self.name, self.earlier, entries[self.earlier]
        )
    }
}

/// Which of `s`'s two entries keeps its name when entry `had` had it
/// before: the one with `had`'s policy. Not `had` itself: it may list the
/// name no more (its renewal dropped it) while another with its policy
/// still does, and that one then stands for it against the other side.
pub fn side_of<P: PartialEq>(policies: &[&P], had: usize, s: &Shadowed) -> Option<usize> {
    let policy = policies.get(had)?;
    [s.earlier, s.later]
        .into_iter()
        .find(|&i| policies[i] == *policy)
}

/// Settles every name entries of different client_auth list in `lists`
/// (as [`shadowed`] finds them, `policies[i]` being entry `i`'s) for the
/// side of the entry that had it before (`had(name)`, [`side_of`]): the
/// other side's entries stop listing it, each reported to `kept(name,
/// entry, kept_by)` in [`shadowed`]'s order, as settling the first
/// conflict and looking again would. A conflict whose name nobody had,
/// whose previous owner's client_auth is on neither side, or whose losing
/// entry is `fixed` (its names are the operator's) is returned, the
/// first in that order. One pass over a map of each name's listers and
/// one `retain` per list: settling one conflict per pass over every list
/// was quadratic in a renewal's SANs.
pub fn settle_shadowed<P: PartialEq>(
    lists: &mut [Vec<String>],
    policies: &[&P],
    had: impl Fn(&str) -> Option<usize>,
    fixed: impl Fn(usize) -> bool,
    mut kept: impl FnMut(&str, usize, usize),
) -> Result<(), Shadowed> {
    // Per name, the entries scanned so far that still list it: one
    // client_auth, the first answering it.
    let mut listers: HashMap<String, Vec<usize>> = HashMap::new();
    // Per entry, the names it no longer lists.
    let mut taken: Vec<HashSet<String>> = vec![HashSet::new(); lists.len()];
    for (later, list) in lists.iter().enumerate() {
        for name in list {
            let name = name_key(name);
            if taken[later].contains(&name) {
                continue;
            }
            let by = listers.entry(name.clone()).or_default();
            let earlier = *by.first().unwrap_or(&later);
            if policies[earlier] == policies[later] {
                if by.last() != Some(&later) {
                    by.push(later);
                }
                continue;
            }
            let s = Shadowed {
                name,
                earlier,
                later,
            };
            let Some(keeper) = had(&s.name).and_then(|had| side_of(policies, had, &s)) else {
                return Err(s);
            };
            if keeper == earlier {
                if fixed(later) {
                    return Err(s);
                }
                kept(&s.name, later, earlier);
                taken[later].insert(s.name);
                continue;
            }
            // `later` has the previous owner's client_auth: each entry
            // listing the name before it (all with `earlier`'s) loses it
            // in turn, as each would be found next.
            for &loser in by.iter() {
                if fixed(loser) {
                    let name = s.name;
                    return Err(Shadowed {
                        name,
                        earlier: loser,
                        later,
                    });
                }
                kept(&s.name, loser, later);
                taken[loser].insert(s.name.clone());
            }
            *by = vec![later];
        }
    }
    for (list, taken) in lists.iter_mut().zip(&taken) {
        if !taken.is_empty() {
            list.retain(|n| !taken.contains(&name_key(n)));
        }
    }
    Ok(())
}

/// A name as [`shadowed`] compares it: lowercase, no trailing dot.
pub fn name_key(name: &str) -> String {
    #[cfg(test)]
    NAME_KEYED.with(|k| k.set(k.get() + 1));
    let name = name.to_ascii_lowercase();
    name.strip_suffix('.').map(str::to_owned).unwrap_or(name)
}

#[cfg(test)]
thread_local! {
    /// How many names [`name_key`] took on this thread: a test tells
    /// linear work from quadratic by it, whichever caller (a wrapper,
    /// [`answerer`], [`shadowed`]) keyed them, and release builds pay
    /// nothing.
    pub(crate) static NAME_KEYED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The position of the pair that answers `name` (as [`name_key`] has it;
/// `*.x` for a wildcard) when pair `i` lists `names[i]`, as
/// [`SniResolver`] picks it: the earliest pair naming it exactly, then the
/// earliest with the `*.` wildcard one label up, else the default (0).
pub fn answerer(names: &[&[String]], name: &str) -> usize {
    let listed = |want: &str| {
        names
            .iter()
            .position(|list| list.iter().any(|n| name_key(n) == want))
    };
    listed(name)
        .or_else(|| {
            let (_, suffix) = name.split_once('.').filter(|_| !name.starts_with("*."))?;
            listed(&format!("*.{suffix}"))
        })
        .unwrap_or(0)
}

/// Picks a certificate by SNI in O(1): exact names, then `*.suffix`
/// wildcards (one label), then the default (first) pair. Several pairs may
/// answer one name (an ECDSA and an RSA certificate, as nginx's two
/// `ssl_certificate` lines): the client gets the first of them, in the
/// listener's order, whose key can sign with a signature scheme its
/// ClientHello offers, else the first of them (which it then refuses, as
/// with one pair). A client without SNI, or with a name no pair answers,
/// chooses so among the default pair and the pairs that answer one of its
/// names.
///
/// Names map to a pair's position and the keys sit in a vector, so a
/// rotation that keeps a pair's names derives the next resolver by
/// replacing one key and sharing the name index ([`SniResolver::with_key`]):
/// no name of the other pairs is lowercased, allocated or hashed again.
#[derive(Debug)]
pub struct SniResolver {
    names: Arc<SniNames>,
    /// By position in the listener's `certs`; the first is the default.
    keys: Vec<Arc<CertifiedKey>>,
    /// Each key's URI SANs, by the same position: XFCC's `By`, which names
    /// the proxy that served the connection (read once per key, not per
    /// connection).
    uri_sans: Vec<ServedUris>,
}

/// A name an [`SniResolver`] indexes: exact, or a wildcard by its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexed<'a> {
    Exact(&'a str),
    Wildcard(&'a str),
}

/// The URI SANs of the certificate a connection was served.
pub type ServedUris = Arc<[Box<str>]>;

fn served_uris(key: &CertifiedKey) -> ServedUris {
    key.end_entity_cert()
        .map(|c| crate::tls::names::uri_sans(c.as_ref()))
        .unwrap_or_default()
        .into_iter()
        .map(String::into_boxed_str)
        .collect()
}

/// Name -> positions of the pairs that answer it, in the listener's
/// order: the first is the one whose client_auth applies ([`shadowed`]
/// keeps the others' the same).
#[derive(Debug)]
struct SniNames {
    exact: HashMap<Arc<str>, Box<[usize]>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Arc<str>, Box<[usize]>>,
    /// By position: the names that pair lists (an exact one the maps'
    /// string), each once: what a rotation of that pair is judged by.
    by_pair: Box<[Box<[Arc<str>]>]>,
    /// What a client without SNI (or with a name no pair answers) chooses
    /// from: the default pair (0), then every later pair answering one of
    /// the default pair's names, in order (nginx's default server with its
    /// `ssl_certificate` lines). Each has the default's client_auth
    /// ([`shadowed`] keeps a name's pairs' equal). Empty without pairs.
    default: Box<[usize]>,
}

thread_local! {
    /// The position of the pair the last [`SniResolver::resolve`] on this
    /// thread chose, for [`noting_choice`].
    static CHOSEN: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `start`, which hands a ClientHello to rustls, and returns what it
/// returned with the position of the pair an [`SniResolver`] chose for it
/// meanwhile (`None`: no resolver was asked). rustls tells nobody which
/// certificate it served, and the choice depends on the signature schemes
/// rustls passes the resolver (narrowed to the suites both sides have), so
/// the resolver notes it: `start` must resolve on this thread, as
/// `StartHandshake::into_stream` does before it returns.
pub fn noting_choice<R>(start: impl FnOnce() -> R) -> (R, Option<usize>) {
    CHOSEN.set(None);
    let r = start();
    (r, CHOSEN.take())
}

impl SniResolver {
    /// `None` without pairs: a listener needs at least one.
    /// A resolver with no pair, for a `redirect_https` listener, which
    /// speaks plain HTTP and never shakes hands.
    pub fn none() -> SniResolver {
        SniResolver {
            names: Arc::new(SniNames {
                exact: HashMap::new(),
                wildcard: HashMap::new(),
                by_pair: Box::new([]),
                default: Box::new([]),
            }),
            keys: Vec::new(),
            uri_sans: Vec::new(),
        }
    }

    pub fn new(pairs: &[ServedPair<'_>]) -> Option<SniResolver> {
        if pairs.is_empty() {
            return None;
        }
        let mut exact: HashMap<Arc<str>, Vec<usize>> = HashMap::with_capacity(pairs.len());
        let mut wildcard: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
        let mut by_pair = Vec::with_capacity(pairs.len());
        for (i, p) in pairs.iter().enumerate() {
            let mut listed = Vec::with_capacity(p.names().len());
            for name in p.names() {
                let name = name.to_ascii_lowercase();
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix),
                    None => (&mut exact, name.as_str()),
                };
                let known = map.get_key_value(key).map(|(k, _)| k.clone());
                let key: Arc<str> = known.unwrap_or_else(|| key.into());
                // In the listener's order: the first listed is the
                // operator's preference.
                let at = map.entry(key.clone()).or_default();
                if at.last() != Some(&i) {
                    at.push(i);
                    let wild = key.len() < name.len();
                    listed.push(if wild { name.as_str().into() } else { key });
                }
            }
            by_pair.push(listed.into_boxed_slice());
        }
        // The pairs sharing a name with the default, in the listener's
        // order (each name's list is, and the default is first in any).
        let mut default: Vec<usize> = (exact.values().chain(wildcard.values()))
            .filter(|at| at[0] == 0)
            .flatten()
            .copied()
            .collect();
        default.push(0);
        default.sort_unstable();
        default.dedup();
        let boxed = |m: HashMap<Arc<str>, Vec<usize>>| {
            m.into_iter()
                .map(|(name, at)| (name, at.into_boxed_slice()))
                .collect()
        };
        let keys: Vec<Arc<CertifiedKey>> = pairs.iter().map(|p| p.pair.key.clone()).collect();
        Some(SniResolver {
            names: Arc::new(SniNames {
                exact: boxed(exact),
                wildcard: boxed(wildcard),
                by_pair: by_pair.into_boxed_slice(),
                default: default.into_boxed_slice(),
            }),
            uri_sans: keys.iter().map(|k| served_uris(k)).collect(),
            keys,
        })
    }

    /// This resolver with the pair at each of `positions` replaced by
    /// `key`. Only for a pair that answers the same names as before (the
    /// name index is shared); otherwise build anew.
    pub fn with_key(&self, positions: &[usize], key: &Arc<CertifiedKey>) -> SniResolver {
        let mut keys = self.keys.clone();
        let mut uri_sans = self.uri_sans.clone();
        let uris = served_uris(key);
        for &i in positions {
            keys[i] = key.clone();
            uri_sans[i] = uris.clone();
        }
        SniResolver {
            names: self.names.clone(),
            keys,
            uri_sans,
        }
    }

    /// The position of the pair this resolver gives `name` (as
    /// [`name_key`] has it; `*.x` for a wildcard) to, if any: who answered
    /// a name before a rebuild. Of several pairs answering it, the first,
    /// whose client_auth applies.
    pub fn owner(&self, name: &str) -> Option<usize> {
        match name.strip_prefix("*.") {
            Some(suffix) => self.names.wildcard.get(suffix),
            None => self.names.exact.get(name),
        }
        .map(|at| at[0])
    }

    /// Every name this resolver gives a pair, with the pair's position, as
    /// [`owner`](Self::owner) takes them (`*.x` for a wildcard).
    pub fn owned(&self) -> impl Iterator<Item = (String, usize)> + '_ {
        let exact = self
            .names
            .exact
            .iter()
            .map(|(n, at)| (n.to_string(), at[0]));
        let wildcard = (self.names.wildcard.iter()).map(|(s, at)| (format!("*.{s}"), at[0]));
        exact.chain(wildcard)
    }

    /// The names that pick a pair other than the one they would get
    /// without their own entry here (for an exact name, the pair of the
    /// wildcard covering it, else the default, 0; for a wildcard, the
    /// default), with its position, sorted: two resolvers with the same
    /// picks give every name the same
    /// [`position_or_default`](Self::position_or_default).
    pub fn picks(&self) -> Vec<(String, usize)> {
        let wildcard = |suffix: &str| self.names.wildcard.get(suffix).map_or(0, |at| at[0]);
        let exact = (self.names.exact.iter()).filter_map(|(name, at)| {
            let otherwise = name.split_once('.').map_or(0, |(_, s)| wildcard(s));
            (at[0] != otherwise).then(|| (name.to_string(), at[0]))
        });
        let wildcards = (self.names.wildcard.iter())
            .filter(|(_, at)| at[0] != 0)
            .map(|(s, at)| (format!("*.{s}"), at[0]));
        let mut picks: Vec<_> = exact.chain(wildcards).collect();
        picks.sort_unstable();
        picks
    }

    /// The positions of the pairs a client asking for `name` chooses from
    /// ([`choose`](Self::choose)): for `*.x`, a name under `x` no pair
    /// lists exactly; without a name, or for one no pair answers, the
    /// default's.
    pub fn candidates(&self, name: Option<&str>) -> &[usize] {
        let answering = |name: &str| match name.strip_prefix("*.") {
            Some(suffix) => self.names.wildcard.get(suffix).map(|at| &at[..]),
            None => self.answering(name),
        };
        name.and_then(answering).unwrap_or(&self.names.default)
    }

    /// Whether one was derived from the other by [`with_key`](Self::with_key).
    pub fn shares_names(&self, other: &SniResolver) -> bool {
        Arc::ptr_eq(&self.names, &other.names)
    }

    /// How many pairs it holds.
    pub fn pairs(&self) -> usize {
        self.keys.len()
    }

    /// Every name it indexes, each once.
    pub fn names(&self) -> impl Iterator<Item = Indexed<'_>> + '_ {
        let exact = self.names.exact.keys().map(|n| Indexed::Exact(n));
        exact.chain(self.names.wildcard.keys().map(|s| Indexed::Wildcard(s)))
    }

    /// The names the pair at `at` lists, each once.
    pub fn listed_by(&self, at: usize) -> impl Iterator<Item = Indexed<'_>> + '_ {
        let wildcard: fn(&str) -> Option<Indexed<'_>> =
            |n| n.strip_prefix("*.").map(Indexed::Wildcard);
        let listed = self.names.by_pair.get(at).into_iter().flatten();
        listed.map(move |n| wildcard(n).unwrap_or(Indexed::Exact(n)))
    }

    /// Whether it indexes `name` itself.
    pub fn indexes(&self, name: Indexed<'_>) -> bool {
        match name {
            Indexed::Exact(n) => self.names.exact.contains_key(n),
            Indexed::Wildcard(s) => self.names.wildcard.contains_key(s),
        }
    }

    /// [`candidates`](Self::candidates) of a name this resolver or another indexes.
    pub fn candidates_for(&self, name: Indexed<'_>) -> &[usize] {
        match name {
            Indexed::Exact(n) => self.candidates(Some(n)),
            Indexed::Wildcard(s) => {
                let at = self.names.wildcard.get(s);
                at.map_or(&self.names.default, |at| &at[..])
            }
        }
    }

    /// The chain and key of the pair at position `at`.
    pub fn key(&self, at: usize) -> &Arc<CertifiedKey> {
        &self.keys[at]
    }

    /// The URI SANs of the pair a connection was served (XFCC's `By`):
    /// the one at `served`, as [`noting_choice`] noted it, else the one
    /// that answers `sni`.
    pub fn served_uris(&self, served: Option<usize>, sni: Option<&str>) -> ServedUris {
        self.uri_sans
            .get(served.unwrap_or_else(|| self.position_or_default(sni)))
            .cloned()
            .unwrap_or_else(|| Arc::from([]))
    }

    /// The pair for `sni` (already lowercase as rustls hands it over), for
    /// a client that can use any: the first that answers it.
    pub fn resolve_name(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        &self.keys[self.position_or_default(sni)]
    }

    /// The position of the pair a client asking for `sni` (lowercase) and
    /// offering the signature `schemes` gets: of the pairs that answer the
    /// name (exact, else through the wildcard; without SNI or with a name
    /// none answers, the default pair and those answering one of its
    /// names), the first whose key can sign with one of `schemes`, else the
    /// first.
    pub fn choose(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> usize {
        let all = sni
            .and_then(|name| self.answering(name))
            .unwrap_or(&self.names.default);
        match all {
            // One pair (the common case): nothing to weigh.
            &[at] => at,
            // Only a resolver without pairs (which never resolves) has none.
            [] => 0,
            &[first, ..] => all
                .iter()
                .copied()
                .find(|&at| self.keys[at].key.choose_scheme(schemes).is_some())
                .unwrap_or(first),
        }
    }

    /// Position in the listener's `certs` of the pair answering `sni`
    /// (lowercase), the first of several; the default (0) when none does
    /// (or no SNI). Its client_auth applies to the name.
    pub fn position_or_default(&self, sni: Option<&str>) -> usize {
        sni.and_then(|name| self.position(name)).unwrap_or(0)
    }

    /// Whether a pair answers `name` (lowercase), not the default for want
    /// of one.
    pub fn answers(&self, name: &str) -> bool {
        self.answering(name).is_some()
    }

    /// The position of the (first) pair that answers `name`, if one does.
    fn position(&self, name: &str) -> Option<usize> {
        self.answering(name).map(|at| at[0])
    }

    /// The positions of the pairs that answer `name`, if any does: those
    /// naming it exactly, else those whose `*.` wildcard covers it.
    fn answering(&self, name: &str) -> Option<&[usize]> {
        let names = &self.names;
        names
            .exact
            .get(name)
            .or_else(|| {
                let (_, suffix) = name.split_once('.')?;
                names.wildcard.get(suffix)
            })
            .map(|at| &at[..])
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.keys.is_empty() {
            return None;
        }
        let at = self.choose(hello.server_name(), hello.signature_schemes());
        CHOSEN.set(Some(at));
        Some(self.keys[at].clone())
    }
}

/// A listener's session state: the key its session tickets are sealed
/// with (TLS 1.3, and TLS 1.2 clients that take tickets) and its session-ID
/// cache (TLS 1.2 clients that do not); either way a session expires 12
/// hours after its full handshake ([`session_cache`]). Each listener has
/// its own, as nginx keys tickets per server block: rustls resumes any
/// session its ticketer opens or its cache holds whose SNI matches, so a
/// session from another listener serving the same name would resume here,
/// skipping this listener's certificate and its own policy
/// (`min_version`, ALPN).
struct Sessions {
    ticketer: Arc<dyn ProducesTickets>,
    cache: Arc<ExpiringSessions>,
}

/// The [`Sessions`] of listener `name` on `bind`: the ones its configs in
/// use hold (a rotation or reload rebuilds the config while the previous
/// one serves, so resumption survives it), else new ones. By name and
/// address: a reload that moves the listener (two swapping ports) starts
/// new ones, or the sessions made on its old port resumed on its new one,
/// where another listener of the same name had served them. Held weakly:
/// once no config of the listener is left (removed, or no longer without
/// client auth), its key goes with them.
fn sessions(name: &str, bind: SocketAddr) -> Result<Sessions, TlsError> {
    type Held = (Weak<dyn ProducesTickets>, Weak<ExpiringSessions>);
    type Listener = (String, SocketAddr);
    static BY_LISTENER: Mutex<BTreeMap<Listener, Held>> = Mutex::new(BTreeMap::new());
    let mut held = BY_LISTENER.lock().unwrap_or_else(|e| e.into_inner());
    let key = (name.to_owned(), bind);
    if let Some((t, c)) = held.get(&key)
        && let (Some(ticketer), Some(cache)) = (t.upgrade(), c.upgrade())
    {
        return Ok(Sessions { ticketer, cache });
    }
    held.retain(|_, (t, _)| t.strong_count() > 0);
    let rotating = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| TlsError::Build(format!("ticketer: {e}")))?;
    // rustls's default size for a config's own cache; its sessions expire
    // as the tickets do (rustls's own cache would resume them for days).
    let cache = Arc::new(ExpiringSessions::new(256, session_cache::LIFETIME));
    // rustls's tickets carry no age it checks (TLS 1.2) and its previous
    // key opens any ticket after a quiet spell: each is refused once its
    // session is as old as a session ID may be. Sealing one also sweeps
    // the cache: a TLS 1.3 handshake stores no session ID to sweep it.
    let ticketer: Arc<dyn ProducesTickets> =
        Arc::new(AgedTickets::new(rotating, session_cache::LIFETIME).expiring(cache.clone()));
    held.insert(key, (Arc::downgrade(&ticketer), Arc::downgrade(&cache)));
    Ok(Sessions { ticketer, cache })
}

/// Build the `ServerConfig` a listener serves new connections with.
/// Listeners without client auth get their own ticket key and session
/// cache ([`sessions`]), kept across rotations; listeners with client auth
/// get no tickets
/// and no session cache (a resumed session would skip client verification
/// after a CA or CRL change). With it, in a verifying mode, the config's
/// client verifier, which open connections are checked against again when
/// the listener's rules change ([`crate::proxy::readmit`]): rustls keeps
/// a config's verifier to itself.
pub fn build(
    inputs: &ServerInputs<'_>,
    resolver: Arc<SniResolver>,
) -> Result<(Arc<ServerConfig>, Option<Arc<Gate>>), TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match inputs.listener.min_version {
        TlsVersion::V12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(crate::tls::provider::get())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Build(e.to_string()))?;
    let mut gate = None;
    let verifier =
        client_verifier(inputs.mode, inputs.client_ca, inputs.allow_expired_crl)?.map(|inner| {
            if !inputs.mode.verifies() {
                return inner;
            }
            // Verifying modes go through the gate: it applies the `allow`
            // rules and parses the identity record once, in the handshake.
            let g = Arc::new(Gate {
                listener: inputs.listener.name.as_str().into(),
                inner,
                allow: inputs.allow.cloned(),
                ca: inputs.client_ca_source.clone().unwrap_or_default(),
                anchors: inputs
                    .client_ca
                    .map(|ca| ca.anchors().cloned().map(Into::into).collect())
                    .unwrap_or_default(),
                rechecks: Default::default(),
            });
            gate = Some(g.clone());
            g as Arc<dyn ClientCertVerifier>
        });
    let mut config = match verifier {
        None => builder.with_no_client_auth(),
        Some(v) => builder.with_client_cert_verifier(v),
    }
    // A name no pair answers is counted where the ClientHello is read
    // (`tls::accept`), not here: rustls resolves once per ClientHello, twice
    // for a handshake with a HelloRetryRequest.
    .with_cert_resolver(resolver);
    // Our order, not the client's: every suite offered is AEAD with forward
    // secrecy, strongest first (testssl.sh rates client order as a finding).
    config.ignore_client_order = true;
    config.alpn_protocols = inputs.listener.alpn_offered();
    if inputs.mode == ClientAuthMode::None {
        let sessions = sessions(&inputs.listener.name, inputs.listener.bind)?;
        config.ticketer = sessions.ticketer;
        config.session_storage = sessions.cache as Arc<dyn StoresServerSessions>;
    } else {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok((Arc::new(config), gate))
}

/// Whether a connection shaken hands under `config` speaks HTTP/2, given
/// the protocol ALPN chose (`None`: the client offered none). Without
/// ALPN that is HTTP/1.1, unless the listener offers h2 alone: it refuses
/// a client that offers http/1.1 in the handshake, so one that offers
/// nothing must not be served HTTP/1.1 either (as Envoy's HTTP/2-only
/// listener, it speaks HTTP/2 to it).
pub fn speaks_h2(config: &ServerConfig, alpn: Option<&[u8]>) -> bool {
    match alpn {
        Some(p) => p == b"h2",
        None => !config.alpn_protocols.iter().any(|p| p == b"http/1.1"),
    }
}

/// Why a listener handshake failed, as the `result` label of
/// `hotproxy_tls_handshakes_total` and the `reason` of the log line:
/// distinct causes an operator fixes differently.
pub fn handshake_failure(err: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<E>()) else {
        // The client went away mid-handshake (a TCP probe, a port scan).
        return "client_closed";
    };
    match tls {
        E::NoCertificatesPresented => "no_client_cert",
        // The `allow` gate's refusal (sent as the access_denied alert).
        E::InvalidCertificate(C::ApplicationVerificationFailure) => "not_allowed",
        E::InvalidCertificate(C::UnknownIssuer) => "unknown_ca",
        E::InvalidCertificate(C::Revoked) => "revoked",
        E::InvalidCertificate(C::UnknownRevocationStatus) => "revocation_unknown",
        // The listener's CRL is past its nextUpdate (and the listener does
        // not set client_auth.allow_expired_crl): no status is trusted.
        E::InvalidCertificate(
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. },
        ) => "crl_expired",
        E::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => "expired",
        E::InvalidCertificate(_) => "bad_client_cert",
        // A CRL of the CA bundle webpki cannot use (SHA-1 signed, signed by
        // another key, an issuer without cRLSign): every verified client is
        // refused until the operator replaces it, so it is named apart
        // from `protocol`, which would hide it at debug level.
        E::InvalidCertRevocationList(_) => "crl_invalid",
        // The client refused our certificate: it does not trust our CA, or
        // the name it asked for is not on the certificate we chose by SNI.
        E::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => "client_refused_cert",
        E::NoApplicationProtocol => "no_alpn_match",
        E::PeerIncompatible(_) => "incompatible",
        _ => "protocol",
    }
}

/// Whether a [`handshake_failure`] reason refuses the client's certificate
/// (or its absence). The server judges it after the client's last flight,
/// so over TLS 1.3 the client may already be sending its first request.
pub fn refused_client_cert(reason: &str) -> bool {
    matches!(
        reason,
        "no_client_cert"
            | "not_allowed"
            | "unknown_ca"
            | "revoked"
            | "revocation_unknown"
            | "crl_expired"
            | "expired"
            | "bad_client_cert"
            | "crl_invalid"
    )
}

#[cfg(test)]
pub(crate) mod tests;
