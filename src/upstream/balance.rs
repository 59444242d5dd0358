//! Choosing an endpoint per request: round robin, or least request by the power of two choices.
//!
//! Only endpoints in service are candidates; when every endpoint is ejected
//! all of them are (panic mode, as Envoy: better a request to a doubtful
//! endpoint than none). Least request compares the requests in flight of
//! two random candidates and takes the less busy (Mitzenmacher's "power of
//! two choices": nearly the spread of scanning all, without a herd on the
//! one that looked idlest).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use crate::config::Balance;

/// Per-upstream balancing state.
#[derive(Debug, Default)]
pub struct Picker {
    next: AtomicUsize,
}

/// A random number, from the standard library's per-thread random keys
/// (no generator crate for two coin flips per request).
fn random() -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::collections::hash_map::RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
        as usize
}

impl Picker {
    /// The index of the endpoint for the next request among `n`, skipping
    /// those `excluded` (ejected, or already tried by this request) unless
    /// that leaves none; `None` only when `n == 0` or every endpoint is in
    /// `tried`. `in_flight(i)` is endpoint `i`'s requests in flight.
    pub fn pick(
        &self,
        balance: Balance,
        n: usize,
        ejected: impl Fn(usize) -> bool,
        tried: &[usize],
        in_flight: impl Fn(usize) -> usize,
    ) -> Option<usize> {
        // No allocation per request: candidates are counted, then the
        // k-th one found again by the same predicate.
        let fresh = |i: usize| !tried.contains(&i);
        let healthy = |i: usize| fresh(i) && !ejected(i);
        let in_service = (0..n).filter(|&i| healthy(i)).count();
        // Panic mode: nothing in service, so everything untried is.
        let (count, eligible): (usize, &dyn Fn(usize) -> bool) = if in_service > 0 {
            (in_service, &healthy)
        } else {
            ((0..n).filter(|&i| fresh(i)).count(), &fresh)
        };
        let nth = |k: usize| (0..n).filter(|&i| eligible(i)).nth(k);
        match count {
            0 => None,
            1 => nth(0),
            len => match balance {
                Balance::RoundRobin => nth(self.next.fetch_add(1, Ordering::Relaxed) % len),
                Balance::LeastRequest => {
                    let a = random() % len;
                    let b = (a + 1 + random() % (len - 1)) % len;
                    let (a, b) = (nth(a)?, nth(b)?);
                    Some(if in_flight(b) < in_flight(a) { b } else { a })
                }
            },
        }
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
    fn panic_mode_and_retries_skip_tried() {
        let p = Picker::default();
        // Every endpoint ejected: serve all rather than none.
        assert!(
            p.pick(Balance::LeastRequest, 2, |_| true, &[], |_| 0)
                .is_some()
        );
        // A retry goes to another endpoint, ejected or not.
        assert_eq!(
            p.pick(Balance::RoundRobin, 2, |_| false, &[0], |_| 0),
            Some(1)
        );
        assert_eq!(
            p.pick(Balance::RoundRobin, 2, |_| false, &[0, 1], |_| 0),
            None
        );
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
}
