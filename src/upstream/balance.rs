//! Choosing an endpoint per request: round robin, or least request by the power of two choices.
//!
//! Only endpoints in service are candidates, for a retry too; when fewer
//! than half are in service (the others ejected or unhealthy) all of them
//! are (panic mode, as Envoy's at its default `healthy_panic_threshold`,
//! 50 %: rather than pile the load of all on the few left, spread it over
//! doubtful endpoints). Least request compares the requests in flight of
//! two random candidates and takes the less busy (Mitzenmacher's "power of
//! two choices": nearly the spread of scanning all, without a herd on the
//! one that looked idlest). Round robin gives retries a rotation of their
//! own, so an endpoint that fails while in service leaves the others'
//! shares even.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use crate::config::Balance;

/// Per-upstream balancing state.
#[derive(Debug, Default)]
pub struct Picker {
    /// Round robin's rotation for a request's first attempt.
    next: Rotation,
    /// Round robin's rotation for a retry, among the endpoints it has not
    /// tried. Taken from `next`, a retry would use up a turn of the first
    /// attempts, modulo fewer candidates: with three endpoints and one
    /// failing while in service, the two others got 1 and 3 requests in 4
    /// instead of 1 in 2 each. With turns of their own, the first attempts
    /// go round evenly (the failing one included, as often as before) and
    /// its retries go round the others evenly.
    retry: Rotation,
}

/// One round-robin rotation: its turn, a count over the candidates of
/// each pick, and the member it last went to, where a set replacing this
/// one goes on from.
#[derive(Debug, Default)]
struct Rotation {
    /// The next turn, taken modulo the number of candidates.
    turn: AtomicUsize,
    /// The member the rotation last went to, plus one (0: none yet).
    last: AtomicUsize,
    /// In a set that replaced another, until its first turn: that turn
    /// goes on after `last`, its member position turned into a place among
    /// the candidates then. A member position is no place in the turn,
    /// which counts only candidates: with A ejected in [A,B,C,D], position
    /// 3 (after C) is turn 0, B, not D.
    resume: AtomicBool,
}

impl Rotation {
    fn continued(&self, found: impl Fn(usize) -> Option<usize>) -> Rotation {
        let last = self.last.load(Ordering::Relaxed);
        let there = last.checked_sub(1).and_then(found);
        // Never gone anywhere (least request's, before an edit to round
        // robin): a random place, not every replica's first endpoint at
        // once. Bounded: the turn counts on far from wrapping around.
        let turn = if last == 0 { random() % (1 << 16) } else { 0 };
        Rotation {
            turn: AtomicUsize::new(turn),
            last: AtomicUsize::new(there.map_or(0, |i| i + 1)),
            resume: AtomicBool::new(there.is_some()),
        }
    }

    /// This pick's place among the `len` candidates of `n` members
    /// (`eligible`). A set's first turn after the set it replaced goes on
    /// after `last`: past the candidates before that member and it.
    /// The first turn is taken by moving `turn` from 0 past the skipped
    /// ones at once: a pick between a swap of `resume` and the turn's move
    /// took turn 0, the new set's first candidate, not the one after `last`.
    fn take(&self, n: usize, eligible: impl Fn(usize) -> bool, len: usize) -> usize {
        // Only read per pick: a write per pick would contend. Acquire: a
        // pick finding it cleared finds the first turn taken.
        if self.resume.load(Ordering::Acquire) {
            let after = self.last.load(Ordering::Relaxed).min(n);
            let skip = (0..after).filter(|&i| eligible(i)).count();
            let first =
                self.turn
                    .compare_exchange(0, 1 + skip, Ordering::Relaxed, Ordering::Relaxed);
            if first.is_ok() {
                self.resume.store(false, Ordering::Release);
                return skip % len;
            }
        }
        self.turn.fetch_add(1, Ordering::Relaxed) % len
    }
}

/// A random number, from the standard library's per-thread random keys
/// (no generator crate for two coin flips per request).
fn random() -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::collections::hash_map::RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
        as usize
}

/// Which endpoints are out of service, read once per pick. Health flags
/// change under a pick (another worker ejects, an active check flips one):
/// counting the candidates by one reading and finding the k-th by another
/// could find fewer than were counted. Inline up to 256 endpoints, so a
/// pick allocates nothing below that.
enum OutOfService {
    Inline([u64; 4]),
    Heap(Vec<u64>),
}

impl OutOfService {
    fn read(n: usize, ejected: impl Fn(usize) -> bool) -> OutOfService {
        let mut bits = if n <= 256 {
            OutOfService::Inline([0; 4])
        } else {
            OutOfService::Heap(vec![0; n.div_ceil(64)])
        };
        let words = match &mut bits {
            OutOfService::Inline(w) => &mut w[..],
            OutOfService::Heap(w) => &mut w[..],
        };
        for i in (0..n).filter(|&i| ejected(i)) {
            words[i / 64] |= 1 << (i % 64);
        }
        bits
    }

    fn contains(&self, i: usize) -> bool {
        let words = match self {
            OutOfService::Inline(w) => &w[..],
            OutOfService::Heap(w) => &w[..],
        };
        words[i / 64] & (1 << (i % 64)) != 0
    }
}

/// Panic mode: fewer than half of the `n` endpoints in service (Envoy's
/// `healthy_panic_threshold` at its default, 50 %); so with none in service
/// too, and never with one of two.
fn panic(n: usize, out: &OutOfService) -> bool {
    let in_service = (0..n).filter(|&i| !out.contains(i)).count();
    in_service * 2 < n
}

impl Picker {
    /// A picker for the endpoint set that replaces this one's (a
    /// re-resolution's, an edit's), going on where this one's rotation is:
    /// after the endpoint the last request went to, found in the new set
    /// by `found` (its index here to its index there, if it is still
    /// there; else the rotation starts at the new set's first endpoint; a
    /// rotation that never went anywhere, as least request's, starts at a
    /// random place).
    /// Each new set started round robin again at its first endpoint: with
    /// fewer requests between changes than endpoints, the lowest-sorted
    /// addresses took most of them, on every replica at once. Its counter
    /// carried over instead meant another place in a set of another size:
    /// sets of three and four endpoints taking turns, two requests each,
    /// sent the four's always to its third and fourth. The rotation goes
    /// on at the candidate (in service) after that endpoint, counted
    /// among the new set's candidates at its first pick; retries' rotation
    /// goes on after the endpoint the last retry went to, the same way.
    pub fn continued(&self, found: impl Fn(usize) -> Option<usize>) -> Picker {
        Picker {
            next: self.next.continued(&found),
            retry: self.retry.continued(&found),
        }
    }

    /// The index of the endpoint for the next request among `n`, never one
    /// in `tried` (a retry goes elsewhere). Only endpoints in service (not
    /// `ejected`, which covers active checks too) are candidates; when
    /// fewer than half of the `n` are in service, every untried one is
    /// (panic mode, see `panic`). Otherwise a retry never goes to an endpoint
    /// out of service: `None` when those in service are all tried (nginx's
    /// "no live upstreams"), or when `n == 0`. `in_flight(i)` is endpoint
    /// `i`'s requests in flight.
    pub fn pick(
        &self,
        balance: Balance,
        n: usize,
        ejected: impl Fn(usize) -> bool,
        tried: &[usize],
        in_flight: impl Fn(usize) -> usize,
    ) -> Option<usize> {
        // No allocation per request: candidates are counted, then the
        // k-th one found again by the same predicate over one reading.
        let out = OutOfService::read(n, ejected);
        let fresh = |i: usize| !tried.contains(&i);
        let in_service = |i: usize| fresh(i) && !out.contains(i);
        let panic = panic(n, &out);
        let eligible: &dyn Fn(usize) -> bool = if panic { &fresh } else { &in_service };
        let count = (0..n).filter(|&i| eligible(i)).count();
        let nth = |k: usize| (0..n).filter(|&i| eligible(i)).nth(k);
        let picked = match count {
            0 => None,
            1 => nth(0),
            len => match balance {
                Balance::RoundRobin => nth(self.rotation(tried).take(n, eligible, len)),
                Balance::LeastRequest => {
                    let a = random() % len;
                    let b = (a + 1 + random() % (len - 1)) % len;
                    let (a, b) = (nth(a)?, nth(b)?);
                    Some(if in_flight(b) < in_flight(a) { b } else { a })
                }
            },
        };
        // Only round robin goes on from it (least request has no
        // rotation): a store per pick is a shared cache line written by
        // every worker. A single candidate is still a turn of the rotation.
        if let (Balance::RoundRobin, Some(i)) = (balance, picked) {
            self.rotation(tried).last.store(i + 1, Ordering::Relaxed);
        }
        picked
    }

    /// A first attempt's rotation, or a retry's.
    fn rotation(&self, tried: &[usize]) -> &Rotation {
        if tried.is_empty() {
            &self.next
        } else {
            &self.retry
        }
    }

    /// Whether [`Picker::pick`] would find a member besides `current` and
    /// those `tried` (it may still not, if health changes in between).
    pub fn another(
        &self,
        n: usize,
        ejected: impl Fn(usize) -> bool,
        tried: &[usize],
        current: usize,
    ) -> bool {
        let out = OutOfService::read(n, ejected);
        let fresh = |i: usize| i != current && !tried.contains(&i);
        let panic = panic(n, &out);
        (0..n).any(|i| fresh(i) && (panic || !out.contains(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_spreads_evenly_over_healthy() {
        let p = Picker::default();
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            let i = p
                .pick(Balance::RoundRobin, 3, |_| false, &[], |_| 0)
                .unwrap();
            counts[i] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        for _ in 0..50 {
            let i = p
                .pick(Balance::RoundRobin, 3, |i| i == 1, &[], |_| 0)
                .unwrap();
            assert_ne!(i, 1, "an ejected endpoint never receives a request");
        }
    }

    #[test]
    fn retries_leave_round_robin_even_while_an_endpoint_in_service_fails() {
        // Endpoint 0 fails every request and stays in service; each of its
        // requests is retried once.
        let p = Picker::default();
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            let first = p
                .pick(Balance::RoundRobin, 3, |_| false, &[], |_| 0)
                .unwrap();
            counts[first] += 1;
            if first == 0 {
                let retry = p
                    .pick(Balance::RoundRobin, 3, |_| false, &[0], |_| 0)
                    .unwrap();
                counts[retry] += 1;
            }
        }
        assert_eq!(counts, [100, 150, 150]);
    }

    /// Sets [A,B,C] and [A,B,C,D] take turns (a name whose fourth address
    /// comes and goes), two requests each: every endpoint gets an even
    /// share. Going on from the replaced set's counter, modulo a different
    /// size, every [A,B,C,D] sent its two to C and D, and C got 5 in 12.
    #[test]
    fn round_robin_goes_on_after_the_last_endpoint_across_sets_of_other_sizes() {
        let mut counts = [0usize; 4];
        let mut p = Picker::default();
        for change in 0..60 {
            let n = if change % 2 == 0 { 3 } else { 4 };
            for _ in 0..2 {
                counts[p
                    .pick(Balance::RoundRobin, n, |_| false, &[], |_| 0)
                    .unwrap()] += 1;
            }
            // The next set: A, B, C at the same places, D only in the four.
            let next = if n == 3 { 4 } else { 3 };
            p = p.continued(|i| (i < next).then_some(i));
        }
        assert_eq!(counts, [30, 30, 30, 30]);
    }

    /// The same two sets with A ejected (the ejection carries into the new
    /// set): each set goes on at the endpoint in service after the one
    /// picked last, found among those in service. Taken as a place among
    /// all members, the new set's turn meant another endpoint: after C (3
    /// in the four), the four's candidates B, C, D gave B again, and B got
    /// 60 of 120. The three lacks D: after D it starts again at B.
    #[test]
    fn round_robin_goes_on_after_the_last_endpoint_with_one_ejected() {
        let mut counts = [0usize; 4];
        let mut p = Picker::default();
        let mut before: Option<usize> = None;
        for change in 0..60 {
            let n = if change % 2 == 0 { 3 } else { 4 };
            for _ in 0..2 {
                let i = p
                    .pick(Balance::RoundRobin, n, |i| i == 0, &[], |_| 0)
                    .unwrap();
                // The one in service after the last picked, if it is here.
                let after = match before {
                    Some(b) if b < n => (b + 1..n).chain(1..=b).find(|&j| j != 0),
                    _ => Some(1),
                };
                assert_eq!(Some(i), after, "change {change}, after {before:?}");
                before = Some(i);
                counts[i] += 1;
            }
            let next = if n == 3 { 4 } else { 3 };
            p = p.continued(|i| (i < next).then_some(i));
        }
        assert_eq!(counts, [0, 45, 45, 30]);
        // Retries go on in the new set the same way, in their own
        // rotation: after 3, the next retry (2 tried) goes to 1; after 1,
        // one with 1 tried goes to 2 (a count carried over gave 3).
        let p = Picker::default();
        assert_eq!(
            p.pick(Balance::RoundRobin, 4, |i| i == 0, &[2], |_| 0),
            Some(1)
        );
        assert_eq!(
            p.pick(Balance::RoundRobin, 4, |i| i == 0, &[2], |_| 0),
            Some(3)
        );
        let four = p.continued(|i| (i < 4).then_some(i));
        assert_eq!(
            four.pick(Balance::RoundRobin, 4, |i| i == 0, &[2], |_| 0),
            Some(1)
        );
        let four = four.continued(|i| (i < 4).then_some(i));
        assert_eq!(
            four.pick(Balance::RoundRobin, 4, |i| i == 0, &[1], |_| 0),
            Some(2)
        );
    }

    #[test]
    fn panic_mode_and_retries_skip_tried() {
        let p = Picker::default();
        // Every endpoint ejected: serve all rather than none.
        assert!(
            p.pick(Balance::LeastRequest, 2, |_| true, &[], |_| 0)
                .is_some()
        );
        // A retry goes to another endpoint; none is left once all are tried.
        assert_eq!(
            p.pick(Balance::RoundRobin, 2, |_| false, &[0], |_| 0),
            Some(1)
        );
        assert_eq!(
            p.pick(Balance::RoundRobin, 2, |_| false, &[0, 1], |_| 0),
            None
        );
        // Every endpoint out: a retry still goes to another (panic mode).
        assert_eq!(
            p.pick(Balance::RoundRobin, 2, |_| true, &[0], |_| 0),
            Some(1)
        );
    }

    #[test]
    fn a_retry_never_goes_to_an_endpoint_out_of_service_while_half_are_in() {
        let p = Picker::default();
        for balance in [Balance::RoundRobin, Balance::LeastRequest] {
            // 0 is in service and failed; 1 is out: no retry.
            assert_eq!(p.pick(balance, 2, |i| i > 0, &[0], |_| 0), None);
            // Of four, 0 and 1 in service, 0 failed: the retry goes to 1,
            // and nowhere once 1 failed too.
            for _ in 0..20 {
                assert_eq!(p.pick(balance, 4, |i| i > 1, &[0], |_| 0), Some(1));
                assert!(!p.another(4, |i| i > 1, &[0], 1));
            }
            assert_eq!(p.pick(balance, 4, |i| i > 1, &[0, 1], |_| 0), None);
        }
    }

    #[test]
    fn below_half_in_service_every_endpoint_is_a_candidate() {
        // One of three, one of four in service: panic mode, all serve in
        // turn. (Two of four, one of two: not yet, see above.)
        for n in [3, 4] {
            let p = Picker::default();
            let mut counts = vec![0usize; n];
            for _ in 0..12 * n {
                counts[p
                    .pick(Balance::RoundRobin, n, |i| i > 0, &[], |_| 0)
                    .unwrap()] += 1;
            }
            assert_eq!(counts, vec![12; n], "one in service of {n}");
            // A retry goes to one it has not tried, out of service or not.
            assert_eq!(
                p.pick(Balance::RoundRobin, n, |i| i > 0, &[0, 1], |_| 0)
                    .map(|i| i > 1),
                Some(true)
            );
            assert!(p.another(n, |i| i > 0, &[0], 1));
        }
    }

    #[test]
    fn health_changing_during_a_pick_still_picks_one() {
        // Other workers eject endpoints while a pick runs: here every
        // endpoint reads as in service once and as out after that. A pick
        // that read the flags again to find the one it counted found none.
        for balance in [Balance::RoundRobin, Balance::LeastRequest] {
            for n in [2, 3, 300] {
                let p = Picker::default();
                let reads = std::cell::Cell::new(0);
                let ejected = |_| {
                    reads.set(reads.get() + 1);
                    reads.get() > n
                };
                let i = p.pick(balance, n, ejected, &[], |_| 0);
                assert!(i.is_some_and(|i| i < n), "{balance:?} over {n}: {i:?}");
            }
        }
    }

    #[test]
    fn least_request_prefers_the_idle_one() {
        let p = Picker::default();
        // Two candidates: the less busy always wins.
        for _ in 0..100 {
            let i = p
                .pick(
                    Balance::LeastRequest,
                    2,
                    |_| false,
                    &[],
                    |i| if i == 0 { 5 } else { 1 },
                )
                .unwrap();
            assert_eq!(i, 1);
        }
        // Equal load over three: every endpoint gets a share.
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[p
                .pick(Balance::LeastRequest, 3, |_| false, &[], |_| 0)
                .unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    /// A set replacing one that never went anywhere by round robin (least
    /// request's, switched to round robin by an edit) has no endpoint to
    /// go on after: it starts at a random place. At the first endpoint,
    /// every replica reloaded at once sent its next requests there.
    #[test]
    fn a_rotation_with_no_last_endpoint_starts_at_a_random_place() {
        let starts: Vec<usize> = (0..64)
            .map(|_| {
                let least = Picker::default();
                least.pick(Balance::LeastRequest, 4, |_| false, &[], |_| 0);
                let p = least.continued(Some);
                p.pick(Balance::RoundRobin, 4, |_| false, &[], |_| 0)
                    .unwrap()
            })
            .collect();
        assert!(starts.iter().any(|&i| i != 0), "{starts:?}");
    }
}
