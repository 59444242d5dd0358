//! The retry budget of one upstream: its retries to other endpoints in flight, bounded by its requests in flight.
//!
//! Envoy's cluster `retry_budget`: a retry to another endpoint is sent only
//! while the upstream's retries in flight are fewer than
//! `max(min_retry_concurrency, budget_percent % of its requests in flight)`;
//! otherwise its request fails with the attempt's own failure, as if its
//! `retries.attempts` were spent, and the refusal is counted in
//! `hotproxy_upstream_retry_overflow_total{upstream}`. In an outage, where
//! every endpoint fails, each request would otherwise make `attempts + 1`
//! attempts: a retry storm that keeps a recovering backend down.
//!
//! The requests in flight are the sum of the per-endpoint counts least
//! request balances on ([`Members::in_flight`]), read only when a retry is
//! asked for: a request that is never retried counts nothing more than it
//! did. The retries in flight are one atomic, shared with the upstream an
//! edit replaces (its requests' retries still run), taken by a [`Slot`] for
//! the length of one retry's attempt and given back when it is dropped.
//!
//! Resends to the same endpoint (on a new connection: a request never
//! written, one an HTTP/2 upstream left unprocessed, an idempotent one on a
//! reused connection closed before its answer) are outside the budget: they
//! repeat nothing the endpoint processed and are at most four per attempt
//! (five sends to one endpoint, `resends`): two at most on new
//! connections (the second for an HTTP/2 request the first left
//! unprocessed too), the rest on any, of an HTTP/2 request refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::RetryBudget;
#[cfg(doc)]
use crate::upstream::members::Members;

/// An upstream's retries to other endpoints in flight.
#[derive(Clone, Default)]
pub struct Budget(Arc<AtomicUsize>);

/// One retry in flight, counted until it is dropped.
pub(super) struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Budget {
    /// The retries `config` allows in flight when `requests` are.
    fn allowed(config: RetryBudget, requests: usize) -> usize {
        let share = (requests as u64 * u64::from(config.percent) / 100) as usize;
        share.max(config.min_concurrency as usize)
    }

    /// A retry, if the budget has room for it now, with `requests` in
    /// flight (the upstream's endpoints' now: [`Members::in_flight`]).
    pub(super) fn admit(&self, config: RetryBudget, requests: usize) -> Option<Slot<'_>> {
        let allowed = Self::allowed(config, requests);
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < allowed).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(&self.0))
    }

    /// Whether [`Budget::admit`] would let a retry go now, the request
    /// asking holding `own` slot (its current attempt is a retry), which it
    /// gives back first.
    pub(super) fn open(&self, config: RetryBudget, requests: usize, own: bool) -> bool {
        let allowed = Self::allowed(config, requests);
        self.0
            .load(Ordering::Acquire)
            .saturating_sub(usize::from(own))
            < allowed
    }

    /// The retries in flight (tests).
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(percent: u32, min_concurrency: u32) -> RetryBudget {
        RetryBudget {
            percent,
            min_concurrency,
        }
    }

    /// The larger of the floor and the share, rounded down, as Envoy's.
    #[test]
    fn allowed_is_the_floor_or_the_share() {
        assert_eq!(Budget::allowed(budget(20, 3), 0), 3);
        assert_eq!(Budget::allowed(budget(20, 3), 19), 3);
        assert_eq!(Budget::allowed(budget(20, 3), 20), 4);
        assert_eq!(Budget::allowed(budget(20, 3), 100), 20);
        assert_eq!(Budget::allowed(budget(0, 1), 1000), 1);
        assert_eq!(Budget::allowed(budget(0, 0), 1000), 0);
        assert_eq!(Budget::allowed(budget(100, 0), 7), 7);
    }

    /// Slots are taken up to the bound and given back when dropped.
    #[test]
    fn slots_are_bounded_and_given_back() {
        let b = Budget::default();
        let one = b.admit(budget(0, 2), 0).unwrap();
        assert!(b.open(budget(0, 2), 0, false));
        let two = b.admit(budget(0, 2), 0).unwrap();
        assert!(b.admit(budget(0, 2), 0).is_none());
        assert!(!b.open(budget(0, 2), 0, false));
        // A request holding one of them would give it back first.
        assert!(b.open(budget(0, 2), 0, true));
        drop(one);
        assert_eq!(b.in_flight(), 1);
        assert!(b.admit(budget(0, 2), 0).is_some());
        drop(two);
        assert_eq!(b.in_flight(), 0);
        assert!(b.admit(budget(0, 0), 0).is_none());
    }
}
