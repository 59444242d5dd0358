//! An upstream's endpoints as a set: health, requests in flight, picking one per request, their metrics.
//!
//! Requests are balanced per request ([`crate::upstream::balance`]), never
//! per connection, so every endpoint gets its share whatever the pools
//! hold. Passive health ([`crate::upstream::health`]) ejects an endpoint
//! after consecutive failures, but never the last one in service, nor more
//! than half of them (Envoy's `max_ejection_percent` at 50): with fewer
//! than half in service, all of them serve (panic mode, see
//! [`crate::upstream::balance`]). An ejected endpoint receives no request
//! until its ejection ends, unless in panic mode. An edit that replaces
//! the upstream hands each endpoint's health to the member at its address
//! in the new set ([`Member::succeeding`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use tracing::{debug, info, warn};

use crate::config::{ActiveHealth, Balance, PassiveHealth};
use crate::metrics::{EndpointRequestLabels, EndpointStateLabels, METRICS};
use crate::upstream::balance::Picker;
use crate::upstream::endpoint::Endpoint;
use crate::upstream::health::{Health, Verdict};

/// Why an active check failed, for its log line (Envoy's health-check
/// event log names the cause too).
#[derive(Debug)]
pub struct CheckFailure {
    /// `status` (not 2xx/3xx), `timeout` (no response head within
    /// `timeout`), `body_timeout` (the body not finished within it),
    /// `body_error`, or the request's failure reason as its metric label
    /// says it (`connect_refused`, `connect_timeout`, a TLS reason, ...).
    pub cause: &'static str,
    /// The status received, when a response head came.
    pub status: Option<u16>,
    /// A description, for the failures that have one.
    pub error: Option<String>,
}

/// The states of `hotproxy_upstream_endpoints`, in the order `publish` counts them.
const STATES: [&str; 3] = ["healthy", "ejected", "unhealthy"];

/// One endpoint with its health and load.
pub struct Member {
    pub endpoint: Arc<Endpoint>,
    /// `host:port` as dialled: the `endpoint` metric label and log field.
    pub label: String,
    /// `hotproxy_upstream_requests_total` of this member, by status.
    answered: crate::metrics::CodeCounters,
    /// Its passive health: shared with the member at its address (same
    /// server, same `host:port`) in the upstream an edit replaces, as long
    /// as passive health stays on ([`Member::succeeding`]). The ejection,
    /// its back-off and the failures so far are the endpoint's, not one
    /// configuration's.
    health: Arc<Health>,
    /// Counted as ejected in this set's gauge (each upstream its own).
    out: AtomicBool,
    checks: Arc<Checks>,
    in_flight: AtomicUsize,
    /// Its address's series: one for every member at its address
    /// (`label`) in its upstream and the upstreams edits replaced it with,
    /// as long as the address stays an endpoint ([`Member::beside`],
    /// [`Member::succeeding`]): the series are theirs too, and the last one
    /// to drop the address removes them.
    series: Arc<Series>,
}

/// The `hotproxy_upstream_requests_total` series of one address of an
/// upstream, shared by the members at it (`Member::series`).
#[derive(Default)]
struct Series {
    /// They were removed ([`Member::forget_requests`]). A request still in
    /// flight on a member of a replaced upstream, or of an older set, made
    /// them again when it was answered.
    gone: AtomicBool,
    /// The status codes a series was made of, by any member at the
    /// address: removing them looks up only these. Two servers at one
    /// address share the series, and a member an edit made anew shares
    /// those of the member it replaced, so no member alone knows which
    /// exist; looking for every code from 100 to 999 instead took 900
    /// family look-ups per address removed, on a runtime worker (a
    /// 1,000-endpoint answer replaced wholesale held it a tenth of a
    /// second). Taken on a code's first count through a member only.
    made: std::sync::Mutex<std::collections::BTreeSet<u16>>,
}

impl Series {
    /// The counter of `code` at `endpoint` of `upstream`, made (and its
    /// code kept) if it is not exported yet.
    fn counter(&self, upstream: &str, endpoint: &str, code: u16) -> Counter {
        let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
        // Looked at again under the lock removing them takes: a request
        // that found them exported may have been answered as they went,
        // and would make one again, never removed. Counted nowhere then.
        if self.gone.load(Ordering::Acquire) {
            return Counter::default();
        }
        made.insert(code);
        let labels = EndpointRequestLabels {
            upstream: upstream.to_owned(),
            endpoint: endpoint.to_owned(),
            code: code.to_string(),
        };
        METRICS.upstream_requests.get_or_create(&labels).clone()
    }
}

/// What an endpoint's active checks said of it. Shared as its passive
/// health is, as long as active checks stay configured.
#[derive(Default)]
struct Checks {
    /// Out by active checks (`health.active`).
    unhealthy: AtomicBool,
    /// Active checks passed (positive) or failed (negative) in a row, up
    /// to the larger of `healthy_after` and `unhealthy_after`.
    streak: std::sync::atomic::AtomicI32,
}

/// Which of an upstream's endpoint sets may write its gauge: the newest
/// one published, and none once the upstream is retired. A request or an
/// active check holds the set it started with; its failure must not write
/// an older set's counts over the current one's, nor bring back the
/// series of an upstream that was removed or replaced meanwhile.
#[derive(Default)]
pub struct Publishing {
    sets: std::sync::atomic::AtomicU64,
    newest: std::sync::atomic::AtomicU64,
    retired: AtomicBool,
    /// The members of the newest set published (`None` before the first):
    /// the others in service are counted among these, not among the set a
    /// request started with, which may still hold addresses re-resolution
    /// removed since. Counting those would eject the last endpoint left.
    /// Held from counting the others in service to ejecting, by every
    /// endpoint set of the upstream: a request still holding the set from
    /// before a re-resolution shares its members (and this lock) with the
    /// new set, so two members failing at once across the two sets cannot
    /// both be ejected.
    ejecting: std::sync::Mutex<Option<Vec<Arc<Member>>>>,
    /// Told of each ejection, and of the retirement: wakes the task that
    /// puts endpoints back in service as their ejections run out
    /// ([`Members::settle_ejections`]).
    pub ejections: tokio::sync::Notify,
}

impl Publishing {
    /// The upstream is out of service: no set of it writes the gauge again.
    pub fn retire(&self) {
        // Under the lock `publish` writes the gauge in: one that looked
        // before has written by now, not over a successor's published next.
        let _writing = self.ejecting.lock().unwrap_or_else(|p| p.into_inner());
        self.retired.store(true, Ordering::Release);
        self.ejections.notify_one();
    }

    /// Retired: replaced by an edit or removed.
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// The endpoints of one upstream.
pub struct Members {
    upstream: Arc<str>,
    /// This set's place among its upstream's, and who may publish.
    set: u64,
    publishing: Arc<Publishing>,
    pub members: Vec<Arc<Member>>,
    picker: Picker,
    balance: Balance,
    passive: PassiveHealth,
}

/// The same server at the same address, in two sets of one upstream.
fn same_member(m: &Member, o: &Member) -> bool {
    m.label == o.label && m.endpoint.url == o.endpoint.url
}

/// A request in flight on a member (least_request reads the count), until
/// its response is over: held by its response body
/// ([`crate::upstream::endpoint::LeasedBody`]) or its tunnel, as Envoy's
/// least request counts a stream until it ends. Dropped at the response
/// head, a server-sent-events stream, a download or a WebSocket tunnel
/// counted nothing, and the endpoint holding them got as many new requests
/// as an idle one. It holds its member, not the set picked from: the body
/// outlives the request's hold on that set.
pub struct InFlight(Arc<Member>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Member {
    /// Remove this endpoint's `hotproxy_upstream_requests_total` series:
    /// its address is gone (re-resolution removed it, an edit dropped its
    /// servers, or its upstream was removed). A headless Service's pods come
    /// and go with every rollout; their series would pile up for the life
    /// of the process. Called only when no endpoint in service has the
    /// address: its series are theirs too. All of them go, also those
    /// counted by another member at that address (see `Series::made`).
    pub fn forget_requests(&self, upstream: &str) {
        let mut made = self.series.made.lock().unwrap_or_else(|p| p.into_inner());
        // Before the series go: a request still in flight on it must not
        // make them again with a status it had not answered yet.
        self.series.gone.store(true, Ordering::Release);
        let codes = std::mem::take(&mut *made);
        crate::metrics::forget_endpoint_requests(upstream, &self.label, codes);
    }

    pub fn new(endpoint: Arc<Endpoint>) -> Arc<Member> {
        Self::with(endpoint, Arc::default(), Arc::default(), Arc::default())
    }

    /// A new member of `endpoint`, counted in the series of the members of
    /// `among` at its address (another server's in its set, the set it
    /// replaces, the upstream an edit replaces) while those are exported:
    /// whichever of them drops the address last removes them, for all.
    pub fn beside<'a>(
        endpoint: Arc<Endpoint>,
        among: impl IntoIterator<Item = &'a Arc<Member>>,
    ) -> Arc<Member> {
        let label = endpoint.authority.to_string();
        let series = among
            .into_iter()
            .find(|m| m.label == label && !m.series.gone.load(Ordering::Acquire))
            .map_or_else(Arc::default, |m| m.series.clone());
        Self::with(endpoint, Arc::default(), Arc::default(), series)
    }

    /// The member of `endpoint` in the upstream an edit puts in service,
    /// where `from` was the member at its address in the one it replaces:
    /// it shares `from`'s passive health (an ejection, its back-off, the
    /// failures so far) while `passive` health is on, and the verdict of
    /// its checks while `active` checks are configured; otherwise it
    /// starts in service, as a new endpoint does. Its pool is its own; its
    /// series are `from`'s (see [`Member::beside`]).
    /// An edit (a server added, a `read_timeout` changed) used to put an
    /// ejected endpoint back in rotation at once.
    pub fn succeeding(
        endpoint: Arc<Endpoint>,
        from: &Member,
        passive: bool,
        active: bool,
    ) -> Arc<Member> {
        let health = if passive {
            from.health.clone()
        } else {
            Arc::default()
        };
        let checks = if active {
            from.checks.clone()
        } else {
            Arc::default()
        };
        let series = if from.series.gone.load(Ordering::Acquire) {
            Arc::default()
        } else {
            from.series.clone()
        };
        let member = Self::with(endpoint, health, checks, series);
        let out = member.health.ejected(Instant::now());
        member.out.store(out, Ordering::Relaxed);
        member
    }

    fn with(
        endpoint: Arc<Endpoint>,
        health: Arc<Health>,
        checks: Arc<Checks>,
        series: Arc<Series>,
    ) -> Arc<Member> {
        Arc::new(Member {
            label: endpoint.authority.to_string(),
            endpoint,
            answered: Default::default(),
            health,
            out: AtomicBool::new(false),
            checks,
            in_flight: AtomicUsize::new(0),
            series,
        })
    }
}

impl Members {
    /// The set of `members` (kept from a previous set where their address
    /// stayed, with their health). Its gauge is published once it is in
    /// use ([`Members::publish`]): a set built for a configuration that is
    /// then rejected must not show in the metrics.
    pub fn new(
        upstream: Arc<str>,
        publishing: Arc<Publishing>,
        members: Vec<Arc<Member>>,
        balance: Balance,
        passive: PassiveHealth,
    ) -> Members {
        Members {
            upstream,
            set: publishing.sets.fetch_add(1, Ordering::Relaxed) + 1,
            publishing,
            members,
            picker: Picker::default(),
            balance,
            passive,
        }
    }

    /// This set, its round robin going on where `replaced`'s is: the set
    /// it replaces (re-resolution), or the one of the upstream an edit
    /// replaces. A new set does not start the rotation again at its first
    /// endpoint, but after the one its last request went to, found here
    /// by server and address ([`Picker::continued`]).
    pub fn going_on_from(mut self, replaced: &Members) -> Members {
        let found = |i: usize| {
            let last = &replaced.members[i];
            self.members.iter().position(|m| same_member(m, last))
        };
        self.picker = replaced.picker.continued(found);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The upstream is gone: its `hotproxy_upstream_endpoints` series too.
    /// Remove every series of this upstream's endpoints (it was removed).
    pub fn forget(&self) {
        self.forget_gauge();
        for m in &self.members {
            m.forget_requests(&self.upstream);
        }
    }

    pub fn forget_gauge(&self) {
        for state in STATES {
            METRICS.upstream_endpoints.remove(&EndpointStateLabels {
                upstream: self.upstream.to_string(),
                state: state.to_owned(),
            });
        }
    }

    /// `hotproxy_upstream_endpoints{upstream,state}` from the members'
    /// flags: this set's, or the newest set's when a newer one was
    /// published (a request or check still holding this one changed a
    /// member they share: an ejection, a return to service); nothing once
    /// the upstream is retired.
    pub fn publish(&self) {
        let p = &self.publishing;
        // Checked, stored and counted under the lock: an older set passing
        // the check just before a newer one must not store its members
        // after it, nor counts made before a change after those made since.
        let mut in_service = p.ejecting.lock().unwrap_or_else(|p| p.into_inner());
        if p.retired.load(Ordering::Acquire) {
            return;
        }
        let members = if p.newest.fetch_max(self.set, Ordering::AcqRel) > self.set {
            // A newer set was published, and stored its members.
            in_service.as_deref().unwrap_or(&self.members)
        } else {
            in_service.insert(self.members.clone())
        };
        let unhealthy = members
            .iter()
            .filter(|m| m.checks.unhealthy.load(Ordering::Relaxed))
            .count();
        let ejected = members
            .iter()
            .filter(|m| {
                m.out.load(Ordering::Relaxed) && !m.checks.unhealthy.load(Ordering::Relaxed)
            })
            .count();
        let counts = [members.len() - ejected - unhealthy, ejected, unhealthy];
        for (state, n) in STATES.into_iter().zip(counts) {
            METRICS
                .upstream_endpoints
                .get_or_create(&EndpointStateLabels {
                    upstream: self.upstream.to_string(),
                    state: state.to_owned(),
                })
                .set(n as i64);
        }
    }

    /// The member for the next request, not one of `tried` (a retry goes
    /// elsewhere), with its in-flight count taken.
    pub fn pick(&self, tried: &[usize]) -> Option<(usize, InFlight)> {
        let i = self.pick_index(tried)?;
        Some((i, InFlight(self.members[i].clone())))
    }

    /// The requests in flight on this set's endpoints, until their
    /// responses are over ([`InFlight`]): the share a retry budget is of
    /// ([`crate::proxy::budget`], Envoy's active requests), read only for
    /// a retry.
    pub fn in_flight(&self) -> usize {
        self.members
            .iter()
            .map(|m| m.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    fn pick_index(&self, tried: &[usize]) -> Option<usize> {
        let now = Instant::now();
        let i = self.picker.pick(
            self.balance,
            self.members.len(),
            |i| self.ejected(i, now),
            tried,
            |i| self.members[i].in_flight.load(Ordering::Relaxed),
        )?;
        self.members[i].in_flight.fetch_add(1, Ordering::Relaxed);
        Some(i)
    }

    /// The positions here of `other`'s members at `tried`: the same
    /// server at the same address (a set re-resolution made after
    /// `other` keeps those members, or has them no more).
    pub fn tried_of(&self, other: &Members, tried: &[usize]) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| {
                let m = &self.members[i];
                tried.iter().any(|&t| same_member(m, &other.members[t]))
            })
            .collect()
    }

    /// Whether a retry of a request that failed on `current` would find
    /// another member to go to (see [`Members::pick`]).
    pub fn another(&self, tried: &[usize], current: usize) -> bool {
        let now = Instant::now();
        self.picker
            .another(self.members.len(), |i| self.ejected(i, now), tried, current)
    }

    /// [`Members::another`] for a request that began on `other`, a set of
    /// this upstream before re-resolution made this one: `tried` and
    /// `current` are positions there, found here by server and address
    /// (or gone).
    pub fn another_after(&self, other: &Members, tried: &[usize], current: usize) -> bool {
        let mut tried = self.tried_of(other, tried);
        tried.extend(self.tried_of(other, &[current]));
        let n = self.members.len();
        let now = Instant::now();
        // Every endpoint tried is in `tried`: no current one besides (`n`
        // is past the last).
        self.picker.another(n, |i| self.ejected(i, now), &tried, n)
    }

    /// Whether member `i` is out at `now`. An ejection that ran out puts
    /// it back (logged and counted once) through the set in service only:
    /// a retired set (its upstream replaced by an edit) shares the
    /// member's health with its successor, which logs it. An ejection this
    /// set's gauge does not count yet is counted now: one made through the
    /// set an edit replaces, after this one was built and before that one
    /// was retired (its gauge written no more).
    fn ejected(&self, i: usize, now: Instant) -> bool {
        let m = &self.members[i];
        let unhealthy = m.checks.unhealthy.load(Ordering::Relaxed);
        let out = m.out.load(Ordering::Relaxed);
        if m.health.ejected(now) {
            if !out && !m.out.swap(true, Ordering::Relaxed) {
                self.publish();
            }
            return true;
        }
        // Also while out by active checks: an ejection that ran out then
        // was counted again once the checks passed. Their line says it is
        // back in service; this one only when nothing else holds it out.
        if out && !self.publishing.retired() && m.out.swap(false, Ordering::Relaxed) {
            if !unhealthy {
                info!(upstream = %self.upstream, endpoint = %m.label, "upstream endpoint back in service");
            }
            self.publish();
        }
        unhealthy
    }

    /// Put back in service (logged, and the gauge written) every member
    /// whose ejection has run out, as a request's pick would; returns when
    /// the next ejection still running ends. Without it an ejection that
    /// ran out stayed in the gauge, and unlogged, until a request came.
    pub fn settle_ejections(&self) -> Option<Instant> {
        let now = Instant::now();
        (0..self.members.len())
            .filter_map(|i| {
                self.ejected(i, now);
                self.members[i]
                    .health
                    .ejected_until()
                    .filter(|&until| until > now)
            })
            .min()
    }

    /// Count the status a request through member `i` was answered with.
    pub fn answered(&self, i: usize, code: u16) {
        let m = &self.members[i];
        if m.series.gone.load(Ordering::Acquire) {
            // Counted where it was cached (not exported any more), never
            // made again.
            if let Some(counter) = m.answered.cached(code) {
                counter.inc();
            }
            return;
        }
        let resolve = || m.series.counter(&self.upstream, &m.label, code);
        match m.answered.get(code, resolve) {
            Some(counter) => counter.inc(),
            None => resolve().inc(),
        };
    }

    /// The server answered (any status but 502/503/504).
    pub fn success(&self, i: usize) {
        self.members[i].health.success(Instant::now());
    }

    /// An attempt it left unprocessed: a failure ([`Members::failure`],
    /// `cause`) only past a run of them ([`Health::unprocessed`]).
    pub fn unprocessed(&self, i: usize, cause: &str) {
        if self.members[i].health.unprocessed(&self.passive) {
            self.failure(i, cause);
        }
    }

    /// Whether `m` is a member of the newest set published (this one's
    /// own before any), not one a re-resolution removed since.
    fn in_service(&self, m: &Member) -> bool {
        let published = (self.publishing.ejecting.lock()).unwrap_or_else(|p| p.into_inner());
        let members = published.as_deref().unwrap_or(&self.members);
        members.iter().any(|o| std::ptr::eq(&**o, m))
    }

    /// A connect error, reset, or 502/503/504 from the server: may eject
    /// the member, never the last one in service, nor one past half of
    /// them ejected (Envoy's `max_ejection_percent`, here 50: with every
    /// endpoint failing at once, a shared database down, each used to be
    /// ejected in turn until the last took all the traffic). Passive
    /// health alone so never brings an upstream below its panic threshold
    /// while its endpoints stay; a re-resolution or an edit that drops
    /// some in service can (the ejections of the others run on).
    pub fn failure(&self, i: usize, cause: &str) {
        let now = Instant::now();
        let m = &self.members[i];
        if m.health.failure(now, &self.passive) != Verdict::Failing {
            return;
        }
        // A request of the upstream an edit replaced: the failure counts
        // under this set's settings (the health is the endpoint's, shared
        // with the successor while its passive health is on too), but
        // only the set in service ejects, against its own endpoints: the
        // next failure through it does. Half of a retired set's endpoints
        // may be all of its successor's.
        if self.publishing.retired() {
            return;
        }
        // Rare (an endpoint reaching its threshold), so a plain lock.
        let ejecting = self
            .publishing
            .ejecting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let in_service = ejecting.as_deref().unwrap_or(&self.members);
        // A request of a set from before a re-resolution that removed this
        // endpoint: out of service already, there is nothing to eject it
        // from. It was ejected against endpoints it is not one of (logged
        // `ejected`, or `the last one in service`).
        if !in_service.iter().any(|o| Arc::ptr_eq(o, m)) {
            return;
        }
        let others = || in_service.iter().filter(|o| !Arc::ptr_eq(o, m));
        let others_in = others()
            .filter(|o| !o.health.ejected(now) && !o.checks.unhealthy.load(Ordering::Relaxed))
            .count();
        // A refusal starts the count again: with the others out for
        // long, each further failure would take this lock and log the
        // line (four endpoints answering 503 at 2,000 requests a second
        // logged about 1,000 lines a second); Envoy logs none per request.
        if others_in == 0 {
            m.health.kept();
            warn!(upstream = %self.upstream, endpoint = %m.label, cause, "upstream endpoint failing, but it is the last one in service: not ejected");
            return;
        }
        // Counted as Envoy does: ejections only (not active checks' verdicts),
        // this one included, against every endpoint.
        let ejected = others().filter(|o| o.health.ejected(now)).count() + 1;
        if ejected * 2 > in_service.len() {
            m.health.kept();
            warn!(upstream = %self.upstream, endpoint = %m.label, cause, "upstream endpoint failing, but half the endpoints are ejected already: not ejected");
            return;
        }
        let d = m.health.eject(now, &self.passive);
        drop(ejecting);
        m.out.store(true, Ordering::Relaxed);
        warn!(upstream = %self.upstream, endpoint = %m.label, cause, eject_for = ?d, "upstream endpoint ejected");
        self.publish();
        self.publishing.ejections.notify_one();
    }

    /// The result of one active check of member `m` (`Err`: why it
    /// failed); none from a retired set (a check still in flight as an
    /// edit replaced its upstream: the successor's checks, with its
    /// settings, decide), nor for a member a re-resolution removed while
    /// its check ran (out of service already: it was logged `failed its
    /// active checks; out of service` after its removal).
    pub fn checked(&self, m: &Member, result: Result<(), CheckFailure>, active: &ActiveHealth) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.publishing.retired() || !self.in_service(m) {
            return;
        }
        let passed = result.is_ok();
        // Counted up to the larger threshold, no further: 2^31 passes in
        // a row wrapped to i32::MIN, read as as many failures. Both are
        // at most MAX_ACTIVE_COUNT (the configuration refuses more).
        let most = active.healthy_after.max(active.unhealthy_after);
        let most = i32::try_from(most).unwrap_or(i32::MAX).max(1);
        let streak = if passed {
            m.checks.streak.fetch_max(0, Relaxed).clamp(0, most - 1) + 1
        } else {
            m.checks.streak.fetch_min(0, Relaxed).clamp(1 - most, 0) - 1
        };
        m.checks.streak.store(streak, Relaxed);
        match &result {
            Ok(()) => {
                debug!(upstream = %self.upstream, endpoint = %m.label, passed, "active check")
            }
            Err(f) => {
                debug!(upstream = %self.upstream, endpoint = %m.label, passed, cause = f.cause, status = f.status, error = f.error.as_deref(), "active check");
            }
        }
        let was = m.checks.unhealthy.load(Relaxed);
        if !was && i64::from(streak) <= -i64::from(active.unhealthy_after) {
            m.checks.unhealthy.store(true, Relaxed);
            m.health.held_out(Instant::now());
            warn!(upstream = %self.upstream, endpoint = %m.label, path = %active.path, "upstream endpoint failed its active checks; out of service");
            self.publish();
        } else if was && i64::from(streak) >= i64::from(active.healthy_after) {
            m.checks.unhealthy.store(false, Relaxed);
            m.health.back_in_service(Instant::now());
            info!(upstream = %self.upstream, endpoint = %m.label, "upstream endpoint passed its active checks; back in service");
            self.publish();
        }
    }
}

#[cfg(test)]
mod tests;
