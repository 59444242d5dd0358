//! Passive health of one endpoint: consecutive failures, ejection with exponential back-off.
//!
//! An endpoint that fails `consecutive_failures` times in a row (connect
//! errors, resets, 502/503/504 from the server) is ejected for `eject_for`,
//! doubled for each ejection in a row up to 32 times (Envoy's outlier
//! detection: `base_ejection_time` times the ejection count). A request it
//! serves well after coming back resets the count of failures; the back-off
//! decays once it has stayed in for as long as its last ejection lasted,
//! whether or not requests came meanwhile; time active checks held it out
//! is not time in: that stay starts again when they put it back.
//! Whether an endpoint may be ejected at all (never the last one in
//! service, nor one past half of them ejected) is the caller's decision: it
//! knows the other endpoints. A refused ejection (`kept`) starts the count
//! again, as an ejection does: the next attempt comes after as many
//! failures more, not with each one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

pub use crate::config::PassiveHealth as Passive;

/// The longest ejection: `eject_for` doubled at most this many times.
const MAX_DOUBLINGS: u32 = 5;

#[derive(Debug, Default)]
struct State {
    failures: u32,
    /// Attempts in a row it left unprocessed (`unprocessed`), with no
    /// request served in between.
    unprocessed: u32,
    /// Ejections in a row (decides the back-off).
    ejections: u32,
    ejected_until: Option<Instant>,
    /// When the last ejection ended (for the back-off to decay).
    back_since: Option<Instant>,
    last_ejection: Duration,
}

impl State {
    /// The back-off starts over once the endpoint has been back in
    /// service for as long as its last ejection lasted, as Envoy decays
    /// its ejection multiplier on its timer, whether or not requests came.
    fn decay(&mut self, now: Instant) {
        if let Some(back) = self.back_since
            && now.saturating_duration_since(back) >= self.last_ejection
        {
            self.ejections = 0;
            self.back_since = None;
        }
    }
}

/// One endpoint's passive health.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
    /// The end of the current ejection as nanoseconds since [`EPOCH`]
    /// (0 = none): read on every request for every endpoint, so no lock.
    until: AtomicU64,
}

/// The reference point of `until`.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// `t` as nanoseconds since [`EPOCH`], saturated: an ejection ending past
/// `u64::MAX` nanoseconds (about 584 years: `eject_for` over 73 years at
/// its fourth ejection in a row; `876000h` is allowed) ends at `u64::MAX`,
/// still out of service (`ejected` compares with `<`), where a wrapped
/// value could end it within hours, or at once.
fn nanos(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(*EPOCH).as_nanos()).unwrap_or(u64::MAX)
}

/// What a failure did.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still in service.
    Healthy,
    /// Reached the threshold: the caller may eject it (`eject`).
    Failing,
}

impl Health {
    /// Whether the endpoint is out of service at `now`.
    pub fn ejected(&self, now: Instant) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        until != 0 && nanos(now) < until
    }

    /// When the current (or last) ejection ends, if it ever was ejected.
    pub fn ejected_until(&self) -> Option<Instant> {
        match self.until.load(Ordering::Relaxed) {
            0 => None,
            n => Some(*EPOCH + Duration::from_nanos(n)),
        }
    }

    /// A request it served (any response but 502/503/504).
    pub fn success(&self, now: Instant) {
        let mut s = self.state.lock().expect("health lock");
        s.failures = 0;
        s.unprocessed = 0;
        s.decay(now);
    }

    /// An attempt it left unprocessed (`REFUSED_STREAM`, past a `GOAWAY`'s
    /// last stream id, handed back unsent): whether it counts as a failure
    /// ([`Health::failure`]), which it does once more than
    /// `consecutive_failures` attempts in a row were left so, with no
    /// request served in between. One such attempt says nothing (a server
    /// draining a connection gracefully); a run of them, an endpoint that
    /// processes nothing (every stream refused, the connection kept open):
    /// each excused, it was never ejected, and, answering at once, it took
    /// every request first under `least_request`.
    pub fn unprocessed(&self, p: &Passive) -> bool {
        if p.consecutive_failures == 0 {
            return false;
        }
        let mut s = self.state.lock().expect("health lock");
        s.unprocessed = s.unprocessed.saturating_add(1);
        s.unprocessed > p.consecutive_failures
    }

    /// A connect error, reset, or 502/503/504 from the server. Not
    /// counted while passive health is off (`consecutive_failures: 0`):
    /// an edit that turns it on carries the count over, and failures
    /// from while it was off would eject at the first one after.
    pub fn failure(&self, now: Instant, p: &Passive) -> Verdict {
        if p.consecutive_failures == 0 {
            return Verdict::Healthy;
        }
        let mut s = self.state.lock().expect("health lock");
        if s.ejected_until.is_some_and(|until| now < until) {
            // Requests sent before the ejection finishing badly.
            return Verdict::Healthy;
        }
        s.failures += 1;
        if s.failures >= p.consecutive_failures {
            Verdict::Failing
        } else {
            Verdict::Healthy
        }
    }

    /// Its ejection refused (the last one in service, or half of them
    /// ejected already): the count of failures starts again, so the next
    /// attempt, and the caller's log line, come `consecutive_failures`
    /// failures later, not with every failure while the others stay out.
    /// So does the run of unprocessed attempts ([`Health::unprocessed`]).
    pub fn kept(&self) {
        let mut s = self.state.lock().expect("health lock");
        s.failures = 0;
        // A run of unprocessed attempts too: left as it was, the next one
        // counted as a failure at once.
        s.unprocessed = 0;
    }

    /// Active checks take it out of service at `now`: a back-off its stay
    /// in service has decayed by then stays decayed.
    pub fn held_out(&self, now: Instant) {
        self.state.lock().expect("health lock").decay(now);
    }

    /// Active checks put it back in service at `now`: time they held it
    /// out is not time in service, so the stay the back-off decays after
    /// starts again now (or at the end of an ejection still running).
    pub fn back_in_service(&self, now: Instant) {
        let mut s = self.state.lock().expect("health lock");
        if let Some(back) = s.back_since {
            s.back_since = Some(back.max(now));
        }
    }

    /// Take it out of service; returns for how long.
    pub fn eject(&self, now: Instant, p: &Passive) -> Duration {
        let mut s = self.state.lock().expect("health lock");
        // Back in service for as long as the last ejection, with or
        // without a request served since: the back-off starts over.
        s.decay(now);
        let d = p.eject_for * 2u32.pow(s.ejections.min(MAX_DOUBLINGS));
        s.ejections += 1;
        s.failures = 0;
        s.unprocessed = 0;
        s.ejected_until = Some(now + d);
        self.until.store(nanos(now + d).max(1), Ordering::Relaxed);
        s.back_since = Some(now + d);
        s.last_ejection = d;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Passive = Passive {
        consecutive_failures: 3,
        eject_for: Duration::from_secs(10),
    };

    #[test]
    fn ejects_after_consecutive_failures_with_back_off() {
        let h = Health::default();
        let t0 = Instant::now();
        assert_eq!(h.failure(t0, &P), Verdict::Healthy);
        h.success(t0);
        assert_eq!(h.failure(t0, &P), Verdict::Healthy);
        assert_eq!(h.failure(t0, &P), Verdict::Healthy);
        assert_eq!(h.failure(t0, &P), Verdict::Failing);
        assert_eq!(h.eject(t0, &P), Duration::from_secs(10));
        assert!(h.ejected(t0 + Duration::from_secs(9)));
        assert!(!h.ejected(t0 + Duration::from_secs(10)));
        // Failing again right after coming back: twice as long.
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..2 {
            assert_eq!(h.failure(t1, &P), Verdict::Healthy);
        }
        assert_eq!(h.failure(t1, &P), Verdict::Failing);
        assert_eq!(h.eject(t1, &P), Duration::from_secs(20));
        // Healthy for as long as the last ejection: the back-off decays.
        let t2 = t1 + Duration::from_secs(20 + 20);
        h.success(t2);
        for _ in 0..2 {
            h.failure(t2, &P);
        }
        assert_eq!(h.failure(t2, &P), Verdict::Failing);
        assert_eq!(h.eject(t2, &P), Duration::from_secs(10));
    }

    /// A run of unprocessed attempts starts again, as the failures do,
    /// when an ejection is refused (`kept`) or made (`eject`): left as it
    /// was, the first attempt left unprocessed after it counted as a
    /// failure at once, a run of one.
    #[test]
    fn a_kept_or_ejected_endpoint_runs_unprocessed_from_zero() {
        let h = Health::default();
        let t0 = Instant::now();
        for eject in [false, true] {
            for _ in 0..P.consecutive_failures {
                assert!(!h.unprocessed(&P));
            }
            assert!(h.unprocessed(&P));
            match eject {
                false => h.kept(),
                true => drop(h.eject(t0, &P)),
            }
            assert!(!h.unprocessed(&P), "ejected: {eject}");
            h.success(t0);
        }
    }

    #[test]
    fn a_refused_ejection_counts_again_from_zero() {
        let h = Health::default();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(h.failure(t0, &P), Verdict::Healthy);
        }
        assert_eq!(h.failure(t0, &P), Verdict::Failing);
        h.kept();
        for _ in 0..2 {
            assert_eq!(h.failure(t0, &P), Verdict::Healthy);
        }
        assert_eq!(h.failure(t0, &P), Verdict::Failing);
        assert!(!h.ejected(t0));
    }

    /// Back in service for as long as the last ejection, with no request
    /// served since: the next ejection is `eject_for` again.
    #[test]
    fn back_off_decays_without_a_success() {
        let h = Health::default();
        let t0 = Instant::now();
        assert_eq!(h.eject(t0, &P), Duration::from_secs(10));
        let t1 = t0 + Duration::from_secs(10 + 10);
        for _ in 0..2 {
            assert_eq!(h.failure(t1, &P), Verdict::Healthy);
        }
        assert_eq!(h.failure(t1, &P), Verdict::Failing);
        assert_eq!(h.eject(t1, &P), Duration::from_secs(10));
    }

    /// An ejection that ends past what `until` holds in nanoseconds
    /// (about 584 years) still ejects. `eject_for: 640513h` (73 years)
    /// doubled three times at its fourth ejection in a row is just over
    /// 2^64 nanoseconds: wrapped, that ejection ended some eight hours in.
    #[test]
    fn an_ejection_past_584_years_still_ejects() {
        let p = Passive {
            consecutive_failures: 3,
            eject_for: Duration::from_secs(640_513 * 3600),
        };
        let h = Health::default();
        let t0 = Instant::now();
        let day = t0 + Duration::from_secs(24 * 3600);
        for n in 0..6 {
            let d = h.eject(t0, &p);
            assert_eq!(d, p.eject_for * 2u32.pow(n));
            assert!(h.ejected(day), "ejection {} of {d:?} over in a day", n + 1);
            assert!(h.ejected_until().is_some_and(|until| until > day));
        }
    }

    /// Time held out by active checks is not time in service: the
    /// back-off decays only after a stay in service as long as the last
    /// ejection, counted from when the checks put it back.
    #[test]
    fn time_held_out_by_active_checks_is_not_in_service() {
        let h = Health::default();
        let t0 = Instant::now();
        assert_eq!(h.eject(t0, &P), Duration::from_secs(10));
        // Back at t0 + 10 s, held out by active checks from t0 + 11 s to
        // t0 + 40 s: in service 1 s, then 5 s.
        h.held_out(t0 + Duration::from_secs(11));
        let back = t0 + Duration::from_secs(40);
        h.back_in_service(back);
        let t1 = back + Duration::from_secs(5);
        assert_eq!(h.eject(t1, &P), Duration::from_secs(20));
        // In service as long as that ejection since it ended: decayed.
        let t2 = t1 + Duration::from_secs(20 + 20);
        assert_eq!(h.eject(t2, &P), Duration::from_secs(10));
        // Put back by active checks while still ejected: the ejection's
        // end still counts.
        let t3 = t2 + Duration::from_secs(10 + 10);
        h.held_out(t2 + Duration::from_secs(1));
        h.back_in_service(t2 + Duration::from_secs(5));
        assert_eq!(h.eject(t3, &P), Duration::from_secs(10));
        // In service as long as that ejection before active checks held it
        // out: decayed then, still after.
        let t4 = t3 + Duration::from_secs(10 + 10);
        h.held_out(t4);
        h.back_in_service(t4 + Duration::from_secs(100));
        let t5 = t4 + Duration::from_secs(101);
        assert_eq!(h.eject(t5, &P), Duration::from_secs(10));
    }

    #[test]
    fn back_off_is_bounded() {
        let h = Health::default();
        let mut now = Instant::now();
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = h.eject(now, &P);
            now += last;
        }
        assert_eq!(last, Duration::from_secs(10 * 32));
    }
}
