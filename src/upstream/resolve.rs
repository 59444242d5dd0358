//! Server hostnames to endpoints: every address of a server is one, re-resolved every `resolve_interval`.
//!
//! A headless Service name resolves to one address per ready pod; each
//! address is an endpoint with its own pool and health, so new pods get
//! traffic at the next resolution and gone ones stop getting it. A
//! re-resolution that drops an address drains that endpoint's pool: idle
//! connections close now, busy ones when their requests end (requests in
//! flight hold the endpoint). A failed lookup keeps the last good set,
//! logged once per failure streak and counted
//! (`hotproxy_upstream_errors_total{reason="resolve"}`). A lookup still
//! pending when a reload retires the upstream comes to nothing: neither
//! logged nor counted nor stored. An IP server is one endpoint, never
//! resolved. Each name is re-resolved on its own, beside the others (one
//! that hangs holds back no other), their changed answers applied one at
//! a time, each to the set the one before stored; and a name's lookups
//! never overlap:
//! its next starts `resolve_interval` after its last ended, and one that
//! outlasted its 5 s is kept, neither counted nor logged: the next
//! re-resolution waits for it again and counts a failure only past that
//! second bound (or if it failed); one that has ended by then is that
//! re-resolution's answer only if its own new lookup outlasts 5 s too
//! or fails (that failure counted too), so a tiny interval costs a busy
//! resolver, never a false failure, and a resolver always a little slower
//! than the bound still refreshes the set, with no failure logged. A lookup made
//! at configuration time still running after 5 s is the first
//! re-resolution's to wait for, under the same rule: a [`Lookup`] of a
//! `host:port` still running is joined by whoever asks for it in the
//! process (an edit's replacement, a rejected reload's upstream, another
//! upstream naming it), never started beside.
//! At most 64 lookups run at once in the process; one past that fails at
//! once, as any failed lookup ([`crate::upstream::lookup::MAX_LOOKUPS`]),
//! and its name is asked again no sooner than [`REFUSED_WAIT`] after
//! (unless a place frees).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{debug, info, warn};

use crate::config::UpstreamConfig;
use crate::metrics;
use crate::upstream::conn::Dialer;
use crate::upstream::endpoint::Endpoint;
use crate::upstream::lookup::{Answer, Failure, Lookup};
use crate::upstream::members::{Member, Members, Publishing};
use crate::upstream::reach;

/// What [`Resolution::refresh`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The addresses stay (or the lookup failed, the last good ones kept).
    Same,
    /// They changed: [`Resolution::next`] makes the new set.
    Changed,
    /// Its lookup was refused a place (64 running): asked again no sooner
    /// than [`REFUSED_WAIT`] after, whatever `resolve_interval` is.
    Refused,
}

/// The least wait after a lookup refused a place before the name is
/// asked again, unless a place frees sooner (never sooner than
/// `resolve_interval`): asked every interval, a `1ms` one counted about a
/// thousand failures a second while 64 lookups hung.
pub const REFUSED_WAIT: Duration = Duration::from_secs(1);

/// An upstream's servers and what their names last resolved to.
pub struct Resolution {
    upstream: Arc<str>,
    config: UpstreamConfig,
    dialer: Dialer,
    /// Per server: the last good addresses (`None` for an IP server, or a
    /// name never resolved yet: dialled by name then).
    last: Mutex<Vec<Option<Vec<SocketAddr>>>>,
    /// Per server: its lookup that timed out (or outlasted [`Resolution::initial`]'s
    /// wait), for the next re-resolution: joined while it runs, its
    /// addresses taken once it has ended with some.
    late: Mutex<Vec<Option<Kept>>>,
    /// Per server: in a failure streak (logged once).
    failing: Mutex<Vec<bool>>,
    /// Per server: the addresses its last answer had that are skipped
    /// (unspecified, multicast), logged when they change.
    skipped: Mutex<Vec<Vec<SocketAddr>>>,
    /// Per server: the addresses its last answer had that this host has
    /// no route to ([`reach::routed`]), logged when they change.
    unrouted: Mutex<Vec<Vec<SocketAddr>>>,
    /// Held by [`Resolution::apply`] from reading the set in service to
    /// storing the one it makes: one name's answer at a time.
    applying: Mutex<()>,
    /// Shared by every endpoint set this resolution makes.
    pub publishing: Arc<Publishing>,
}

/// A lookup that outlasted a re-resolution's wait (or
/// [`Resolution::initial`]'s), for the next re-resolution.
struct Kept {
    lookup: Arc<Lookup>,
    /// A failure was counted for it already (it ran past a second bound):
    /// its own failure, when it ends, is not counted again.
    counted: bool,
}

fn is_name(host: &str) -> bool {
    host.parse::<IpAddr>().is_err()
}

/// How long an upstream's lookups at configuration time may hold the
/// reloader (which also applies certificate rotations), together: the
/// reload builds upstreams one after another, so each new or edited
/// upstream whose names hang adds its own 5 s. And how long a
/// re-resolution waits for each of its lookups, whatever
/// `resolve_interval` is: bounded by the interval, a 1 ms one timed out
/// most lookups of a working resolver and logged a failure and a
/// recovery for each.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether an answer's address can be sent a request: not unspecified
/// (`0.0.0.0` reaches this host), nor multicast.
pub fn dialable(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    !ip.is_unspecified() && !ip.is_multicast()
}

/// A dial by name's addresses: the [`dialable`] ones this host has a
/// route to ([`reach::routed`]), in the resolver's order (`0.0.0.0` was
/// dialled, as the endpoints of a re-resolved name).
pub fn to_dial(host: &str, mut addrs: Vec<SocketAddr>) -> std::io::Result<Vec<SocketAddr>> {
    addrs.retain(|a| dialable(a.ip()));
    let (addrs, _) = reach::split(addrs);
    if addrs.is_empty() {
        let none = format!("no usable addresses for {host}");
        return Err(std::io::Error::other(none));
    }
    Ok(addrs)
}

/// An answer's addresses, sorted and without duplicates so two lookups
/// compare equal, an IPv4-mapped IPv6 one as its IPv4 address (one pod
/// answered both ways was two endpoints: twice its share of requests,
/// counted twice toward the ejection cap); apart, those no request can
/// be sent to, unspecified or multicast (`0.0.0.0` was dialled, reaching
/// this host): (usable, skipped). Loopback is usable (sidecars).
fn normalise(addrs: Vec<SocketAddr>) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let plain = |a: SocketAddr| match a {
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map_or(a, |v4| SocketAddr::from((v4, a.port()))),
        SocketAddr::V4(_) => a,
    };
    let (mut usable, mut skipped): (Vec<_>, Vec<_>) =
        addrs.into_iter().map(plain).partition(|a| dialable(a.ip()));
    for addrs in [&mut usable, &mut skipped] {
        addrs.sort();
        addrs.dedup();
    }
    (usable, skipped)
}

/// Whether `found` has no address to dial (none [`dialable`] that this
/// host has a route to): a failed lookup (SPEC §7).
fn unusable(found: &[SocketAddr]) -> bool {
    !found
        .iter()
        .any(|a| dialable(a.ip()) && reach::routed(a.ip()))
}

/// `set`'s members by server URL and address (the first of each).
fn by_key(set: &[Arc<Member>]) -> HashMap<(&str, &str), &Arc<Member>> {
    let mut index = HashMap::with_capacity(set.len());
    for m in set {
        index
            .entry((&*m.endpoint.url, m.label.as_str()))
            .or_insert(m);
    }
    index
}

impl Resolution {
    pub fn new(upstream: Arc<str>, config: UpstreamConfig, dialer: Dialer) -> Resolution {
        let n = config.servers.len();
        Resolution {
            upstream,
            config,
            dialer,
            last: Mutex::new(vec![None; n]),
            late: Mutex::new((0..n).map(|_| None).collect()),
            failing: Mutex::new(vec![false; n]),
            skipped: Mutex::new(vec![Vec::new(); n]),
            unrouted: Mutex::new(vec![Vec::new(); n]),
            applying: Mutex::new(()),
            publishing: Arc::default(),
        }
    }

    /// Whether any server is a name to re-resolve.
    pub fn has_names(&self) -> bool {
        !self.config.resolve_interval.is_zero()
            && self.config.servers.iter().any(|s| is_name(&s.host))
    }

    pub fn interval(&self) -> Duration {
        self.config.resolve_interval
    }

    /// The first set, resolved now (blocking: configuration time, like
    /// nginx resolving its upstreams at start), all names at once, for at
    /// most 5 s (`LOOKUP_TIMEOUT`) for this upstream, on top of any other
    /// upstream the same reload builds before it; one still running then
    /// is the first re-resolution's to wait for, not to ask beside (its
    /// lookups would overlap it): [`Lookup::start`] joins the lookup of a
    /// `host:port` running anywhere in the process (`previous`'s, a
    /// rejected reload's), and each edit or rejected attempt added a
    /// blocked lookup per name of a hung resolver.
    /// A lookup that fails keeps what `previous` (the
    /// upstream this one replaces, after an edit) had for the same
    /// `host:port`, as a failed re-resolution keeps the last good set; a
    /// name with neither is one endpoint dialled by name. An endpoint at
    /// the address of one of that upstream's endpoints (same server, same
    /// `host:port`) carries its health over ([`Member::succeeding`]);
    /// round robin goes on where that upstream's was. Its skipped
    /// addresses per `host:port` are this one's last: the same ones are
    /// not logged again (each rejected attempt and edit logged them anew).
    pub fn initial(&self, previous: Option<(&Resolution, Arc<Members>)>) -> Members {
        if self.has_names() {
            let kept = previous.as_ref().map(|(p, _)| p.last_by_server());
            if let Some((p, _)) = &previous {
                self.skipped_from(p);
            }
            // All names at once: one slow name does not add to another's
            // wait. One whose lookup runs already (the replaced
            // upstream's, a rejected reload's) joins it.
            let lookups: Vec<_> = self
                .config
                .servers
                .iter()
                .map(|s| is_name(&s.host).then(|| Lookup::start(&s.host, s.port)))
                .collect();
            // One deadline for all of them, not one each in turn.
            let deadline = std::time::Instant::now() + LOOKUP_TIMEOUT;
            let mut last = self.last.lock().expect("resolution lock");
            let mut late = self.late.lock().expect("resolution lock");
            for ((i, s), lookup) in self.config.servers.iter().enumerate().zip(lookups) {
                let Some(lookup) = lookup else {
                    continue;
                };
                // No such name: not the replaced upstream's addresses
                // (dead pods' IPs, recycled for other workloads).
                let mut gone = false;
                let found = match lookup.wait_until(deadline) {
                    Some(Ok(found)) => Some(self.usable(i, found)).filter(|f| !f.is_empty()),
                    Some(Err(e)) => {
                        gone = e.no_such_name;
                        None
                    }
                    None => {
                        late[i] = Some(Kept {
                            lookup,
                            counted: false,
                        });
                        None
                    }
                };
                // Still running: the first re-resolution's to join.
                last[i] = found.or_else(|| {
                    kept.as_ref()
                        .filter(|_| !gone)?
                        .iter()
                        .find(|(host, port, _)| *host == s.host && *port == s.port)
                        .map(|(_, _, addrs)| addrs.clone())
                });
            }
        }
        let replaced = previous.as_ref().map_or(&[][..], |(_, m)| &m.members[..]);
        let set = self.members(&[], replaced);
        match &previous {
            Some((_, m)) => set.going_on_from(m),
            None => set,
        }
    }

    /// Per server with good addresses: its host, port and those addresses.
    fn last_by_server(&self) -> Vec<(String, u16, Vec<SocketAddr>)> {
        let last = self.last.lock().expect("resolution lock");
        self.config
            .servers
            .iter()
            .zip(last.iter())
            .filter_map(|(s, a)| Some((s.host.clone(), s.port, a.clone()?)))
            .collect()
    }

    /// Each server's last skipped addresses: those `previous` had for
    /// the same `host:port`, as [`Resolution::last_by_server`] carries
    /// its addresses over.
    fn skipped_from(&self, previous: &Resolution) {
        let theirs = previous.skipped.lock().expect("resolution lock").clone();
        let by_server: HashMap<(&str, u16), Vec<SocketAddr>> = (previous.config.servers.iter())
            .zip(theirs)
            .map(|(s, skipped)| ((s.host.as_str(), s.port), skipped))
            .collect();
        let mut mine = self.skipped.lock().expect("resolution lock");
        for (s, skipped) in self.config.servers.iter().zip(mine.iter_mut()) {
            if let Some(theirs) = by_server.get(&(s.host.as_str(), s.port)) {
                skipped.clone_from(theirs);
            }
        }
        let theirs = previous.unrouted.lock().expect("resolution lock").clone();
        let by_server: HashMap<(&str, u16), Vec<SocketAddr>> = (previous.config.servers.iter())
            .zip(theirs)
            .map(|(s, unrouted)| ((s.host.as_str(), s.port), unrouted))
            .collect();
        let mut mine = self.unrouted.lock().expect("resolution lock");
        for (s, unrouted) in self.config.servers.iter().zip(mine.iter_mut()) {
            if let Some(theirs) = by_server.get(&(s.host.as_str(), s.port)) {
                unrouted.clone_from(theirs);
            }
        }
    }

    /// The servers whose names are re-resolved, by index: none with
    /// `resolve_interval: 0s`.
    pub fn names(&self) -> Vec<usize> {
        if self.config.resolve_interval.is_zero() {
            return Vec::new();
        }
        let servers = self.config.servers.iter().enumerate();
        servers
            .filter_map(|(i, s)| is_name(&s.host).then_some(i))
            .collect()
    }

    /// Resolve server `i`'s name again; whether its addresses changed
    /// (then [`Resolution::next`] makes the new set), or its lookup was
    /// refused a place. Each server's name is
    /// re-resolved on its own, beside the others': one whose lookups hang
    /// delays no other's. A lookup may take `LOOKUP_TIMEOUT`; one still
    /// running then is kept, neither counted nor logged as a failure: the
    /// next call for that server waits for it again, a second bound, and
    /// counts a failure only if it runs past that too (or ended failed).
    /// One kept that has ended by the next call is not its lookup: that
    /// call asks anew, on schedule, and only if the new one outlasts its
    /// bound, or fails, is the kept one's answer taken (the newest there
    /// is; the new one's failure counted too).
    pub async fn refresh(&self, i: usize) -> Refreshed {
        let s = &self.config.servers[i];
        let kept = self.late.lock().expect("resolution lock")[i].take();
        let lookup = Lookup::start(&s.host, s.port);
        let failed = if lookup.refused() {
            Refreshed::Refused
        } else {
            Refreshed::Same
        };
        // The kept one, still running: this is its second bound.
        let again = kept.as_ref().filter(|k| Arc::ptr_eq(&k.lookup, &lookup));
        // Its answer if it has ended: read after the new lookup started,
        // as one not joined had left the table, ended (its answer is set
        // as it leaves). Read before, one ending in between was neither
        // read nor joined, and its answer was lost.
        let ended = match again {
            Some(_) => None,
            None => kept.as_ref().and_then(|k| k.lookup.ended()),
        };
        let counted = again.is_some_and(|k| k.counted);
        let outcome = tokio::time::timeout(LOOKUP_TIMEOUT, lookup.answer()).await;
        // Retired while the lookup was pending (a reload replaced or
        // removed the upstream): its successor resolves for itself (and
        // has this answer too if it took this lookup over).
        // The answer was logged, counted and stored as this one's
        // endpoints: `endpoint added` for an upstream no longer
        // configured, a failure counted twice under its name.
        if self.publishing.retired() {
            debug!(upstream = %self.upstream, server = %s.url, "upstream retired while its names were resolved again; the answer is dropped");
            return Refreshed::Same;
        }
        match (outcome, &ended) {
            // The name has no address: whatever was kept, its endpoints go.
            (Ok(Err(e)), _) if e.no_such_name => return self.answered(i, Err(e), failed),
            // Its failure to end in time was counted already: one failed
            // lookup is one count (SPEC §7), an answer with nothing usable
            // as much a failure as an error (its skipped addresses logged).
            (Ok(Err(_)), _) if counted => return Refreshed::Same,
            (Ok(Ok(found)), _) if counted && unusable(&found) => {
                self.usable(i, found);
                return Refreshed::Same;
            }
            // The kept one's addresses are the newest good ones there
            // are: a failure at once (SERVFAIL, refused a place) dropped
            // them, and the set kept older ones while the resolver failed.
            (Ok(Err(error)), Some(Ok(kept))) => {
                return self.failed_after(i, kept.clone(), Err(error), failed);
            }
            // An answer with nothing usable is a failed lookup (a
            // filtering resolver's `0.0.0.0`): it dropped the kept
            // addresses as SERVFAIL did, so it goes the same way.
            (Ok(Ok(found)), Some(Ok(kept))) if unusable(&found) && !unusable(kept) => {
                return self.failed_after(i, kept.clone(), Ok(found), failed);
            }
            (Ok(answer), _) => return self.answered(i, answer, failed),
            (Err(_elapsed), _) => {}
        }
        // Kept for the next call rather than counted now: a resolver that
        // answered every lookup just past the bound (glibc's `timeout:5`,
        // its first name server down: 5.01 s) logged a failure and a
        // recovery, and counted an error, every other re-resolution.
        let past_second = again.is_some();
        self.late.lock().expect("resolution lock")[i] = Some(Kept {
            lookup,
            counted: counted || past_second,
        });
        if past_second {
            let timed_out = Failure::other("lookup timed out");
            return self.answered(i, Err(timed_out), Refreshed::Same);
        }
        debug!(upstream = %self.upstream, server = %s.url, "upstream DNS lookup outlasted 5 s; the next re-resolution waits for it");
        match (ended, kept) {
            // Counted once already, for outlasting its second bound.
            (Some(Err(_)), Some(k)) if k.counted => Refreshed::Same,
            (Some(Ok(found)), Some(k)) if k.counted && unusable(&found) => {
                self.usable(i, found);
                Refreshed::Same
            }
            (Some(answer), _) => self.answered(i, answer, Refreshed::Same),
            (None, _) => Refreshed::Same,
        }
    }

    /// Server `i`'s new lookup failed (`fresh`: an error, or an answer
    /// with nothing usable) after its kept one ended with `kept`: those
    /// addresses are stored (the set follows them), then the failure is
    /// counted and logged as any (its skipped addresses too), the newest
    /// news of the name; once in all if `kept` had none usable (counted
    /// so). `Changed` if they changed, else `failed`: a refusal's longer
    /// wait before the next is lost once rather than the change.
    fn failed_after(
        &self,
        i: usize,
        kept: Vec<SocketAddr>,
        fresh: Answer,
        failed: Refreshed,
    ) -> Refreshed {
        let applied = self.answered(i, Ok(kept), Refreshed::Same);
        if applied == Refreshed::Changed {
            self.answered(i, fresh, failed);
            return applied;
        }
        // A good answer ends a failure streak; one still on was `kept`'s.
        if self.failing.lock().expect("resolution lock")[i] {
            return failed;
        }
        self.answered(i, fresh, failed)
    }

    /// Server `i`'s lookup answered `found` (`failed`: what a failure
    /// returns): stored as its last good addresses if any, or counted
    /// and logged as a failure; no such name ([`Resolution::gone`])
    /// empties them.
    fn answered(&self, i: usize, found: Answer, failed: Refreshed) -> Refreshed {
        let s = &self.config.servers[i];
        let found = match found.map(|f| self.usable(i, f)) {
            Ok(f) if !f.is_empty() => f,
            Err(e) if e.no_such_name => return self.gone(i, e),
            other => {
                let error = other
                    .err()
                    .map_or_else(|| "no usable addresses".to_owned(), |e| e.why);
                metrics::upstream_error(&self.upstream, "resolve");
                let mut failing = self.failing.lock().expect("resolution lock");
                if !failing[i] {
                    failing[i] = true;
                    warn!(upstream = %self.upstream, server = %s.url, error, "upstream DNS lookup failed; keeping the last good addresses");
                }
                return failed;
            }
        };
        if std::mem::take(&mut self.failing.lock().expect("resolution lock")[i]) {
            info!(upstream = %self.upstream, server = %s.url, "upstream DNS lookup recovered");
        }
        let mut last = self.last.lock().expect("resolution lock");
        if last[i].as_ref() == Some(&found) {
            return Refreshed::Same;
        }
        last[i] = Some(found);
        Refreshed::Changed
    }

    /// Server `i`'s name has no address (`failure`: NXDOMAIN, or no
    /// record): its set empties, its endpoints drained and their series
    /// removed, requests answered as for an upstream with no servers
    /// (Envoy's STRICT_DNS). Kept, the addresses were dead pods' IPs, which
    /// a CNI gives to other pods: requests went to an unrelated workload.
    /// Counted as a failed lookup; logged when the set empties, and as a
    /// failure streak's start (a good answer logs the recovery).
    fn gone(&self, i: usize, failure: Failure) -> Refreshed {
        let s = &self.config.servers[i];
        metrics::upstream_error(&self.upstream, "resolve");
        let mut last = self.last.lock().expect("resolution lock");
        let emptied = last[i].as_ref().is_none_or(|a| !a.is_empty());
        let mut failing = self.failing.lock().expect("resolution lock");
        if emptied || !failing[i] {
            warn!(upstream = %self.upstream, server = %s.url, error = %failure, "upstream DNS name has no addresses; its endpoints removed");
        }
        failing[i] = true;
        if !emptied {
            return Refreshed::Same;
        }
        last[i] = Some(Vec::new());
        Refreshed::Changed
    }

    /// Server `i`'s answer `found`, [`normalise`]d, less those this host
    /// has no route to ([`reach::split`], probed anew each answer: routes
    /// change): the addresses to dial. Those skipped are logged, naming
    /// the upstream and server, when they differ from the last answer's
    /// (not at every re-resolution).
    fn usable(&self, i: usize, found: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let (usable, skipped) = normalise(found);
        let mut last = self.skipped.lock().expect("resolution lock");
        if last[i] != skipped {
            if !skipped.is_empty() {
                let addresses: Vec<String> = skipped.iter().map(|a| a.ip().to_string()).collect();
                warn!(upstream = %self.upstream, server = %self.config.servers[i].url, addresses = %addresses.join(", "), "upstream DNS answer has unspecified or multicast addresses; skipped");
            }
            last[i] = skipped;
        }
        drop(last);
        let (usable, unrouted) = reach::split(usable);
        let mut last = self.unrouted.lock().expect("resolution lock");
        if last[i] != unrouted {
            if !unrouted.is_empty() {
                let addresses: Vec<String> = unrouted.iter().map(|a| a.ip().to_string()).collect();
                warn!(upstream = %self.upstream, server = %self.config.servers[i].url, addresses = %addresses.join(", "), "upstream DNS answer has addresses this host has no route to; skipped");
            }
            last[i] = unrouted;
        }
        usable
    }

    /// After [`Resolution::refresh`] changed a name's addresses: the set
    /// for the addresses now, made from the set in service (`current`'s
    /// members where their addresses stay, and its round robin's turn),
    /// published and stored there; the set in service as it is when
    /// another name's answer applied this one already. Made and stored
    /// under the upstream's one `applying` lock: two names' answers
    /// applied at once each made its set from the one before both and the
    /// later store won, losing the other's change for good (that name's
    /// next answers equal its last) and keeping the address it dropped,
    /// whose pool it had retired.
    pub fn apply(&self, current: &ArcSwap<Members>) -> Arc<Members> {
        let _applying = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        let now = current.load_full();
        let next = self.members(&now.members, &[]).going_on_from(&now);
        let same = next.members.len() == now.members.len()
            && (next.members.iter().zip(&now.members)).all(|(n, m)| Arc::ptr_eq(n, m));
        if same {
            return now;
        }
        let next = Arc::new(next);
        next.publish();
        current.store(next.clone());
        next
    }

    /// The set for the last good addresses, keeping the members (pool,
    /// health) of addresses already in `previous`; logs what came and went
    /// and drains the pools of those gone. A member is one server's
    /// address: two names resolving to one address are two members, each
    /// dialled with its own name, as they are when not resolved here.
    /// A new member at the address of one of `replaced` (the upstream an
    /// edit replaces) carries that one's health over, not its pool.
    /// Members are found by server and address, and by address, in hash
    /// maps: each was looked for in every member so far, in `previous`
    /// and in `replaced`, quadratic in a name's addresses.
    fn members(&self, previous: &[Arc<Member>], replaced: &[Arc<Member>]) -> Members {
        let (previous_at, replaced_at) = (by_key(previous), by_key(replaced));
        // The members of `previous` and `replaced` at each address, in order.
        let mut beside_at: HashMap<&str, Vec<&Arc<Member>>> = HashMap::new();
        for m in previous.iter().chain(replaced) {
            beside_at.entry(m.label.as_str()).or_default().push(m);
        }
        let last = self.last.lock().expect("resolution lock").clone();
        let mut members: Vec<Arc<Member>> = Vec::new();
        // Those made so far: by server and address, and by address.
        let mut made: HashSet<(&str, String)> = HashSet::new();
        let mut made_at: HashMap<String, Vec<Arc<Member>>> = HashMap::new();
        for (s, addrs) in self.config.servers.iter().zip(&last) {
            let targets: Vec<(String, u16)> = match addrs {
                Some(addrs) => addrs
                    .iter()
                    .map(|a| (a.ip().to_string(), a.port()))
                    .collect(),
                None => vec![(s.host.clone(), s.port)],
            };
            for (host, port) in targets {
                let label = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                if !made.insert((&s.url, label.clone())) {
                    continue;
                }
                if let Some(&m) = previous_at.get(&(&*s.url, &*label)) {
                    made_at.entry(label).or_default().push(m.clone());
                    members.push(m.clone());
                    continue;
                }
                // Dialled by address, verified (and SNI) by the server's name.
                let mut dialer = self.dialer.clone();
                if dialer.server_name.is_none() && is_name(&s.host) {
                    dialer.server_name = Some(s.host.as_str().into());
                }
                let Some(endpoint) =
                    Endpoint::new(s.url.clone(), s.https, host, port, dialer, &self.config)
                else {
                    // The configuration refuses such a host: should one
                    // come by anyway, the operator learns which server is
                    // missing rather than seeing only 502s for no servers.
                    warn!(upstream = %self.upstream, server = %s.url, endpoint = %label, "upstream server skipped: its host cannot address a request");
                    continue;
                };
                if !previous.is_empty() {
                    info!(upstream = %self.upstream, endpoint = %label, "upstream endpoint added");
                }
                let endpoint = Arc::new(endpoint);
                let member = match replaced_at.get(&(&*s.url, &*label)) {
                    Some(from) => {
                        let health = &self.config.health;
                        let passive = health.passive.consecutive_failures > 0;
                        Member::succeeding(endpoint, from, passive, health.active.is_some())
                    }
                    // Another server's at this address, here or in the set
                    // this one replaces: their series are this one's too.
                    None => {
                        let here = made_at.get(&label).into_iter().flatten();
                        let before = beside_at.get(&*label).into_iter().flatten().copied();
                        Member::beside(endpoint, here.chain(before))
                    }
                };
                made_at.entry(label).or_default().push(member.clone());
                members.push(member);
            }
        }
        let kept: HashSet<*const Member> = members.iter().map(Arc::as_ptr).collect();
        for gone in previous.iter().filter(|p| !kept.contains(&Arc::as_ptr(p))) {
            info!(upstream = %self.upstream, endpoint = %gone.label, "upstream endpoint removed; draining its pool");
            // For good: a request in flight that dials there closes its
            // connection after its response.
            gone.endpoint.pool.retire();
            // A retired upstream's series are its successor's too (same
            // labels): only the one in service removes them. Another
            // server's member at the same address shares them too.
            if !self.publishing.retired() && !made_at.contains_key(&gone.label) {
                gone.forget_requests(&self.upstream);
            }
        }
        Members::new(
            self.upstream.clone(),
            self.publishing.clone(),
            members,
            self.config.balance,
            self.config.health.passive,
        )
    }
}

#[cfg(test)]
mod tests;
