//! Unit tests of the metrics: the status-code counter cache.

use super::*;

/// Every status code (100..=999) is resolved once, then cached: one
/// past 599 was resolved (the family locked) on every count.
#[test]
fn every_status_code_is_resolved_once() {
    let c = CodeCounters::default();
    let resolved = std::cell::Cell::new(0);
    let resolve = || {
        resolved.set(resolved.get() + 1);
        Counter::default()
    };
    for code in [100, 599, 600, 799, 999] {
        for _ in 0..3 {
            assert!(c.get(code, resolve).is_some(), "{code}");
        }
        assert!(c.cached(code).is_some(), "{code}");
    }
    assert_eq!(resolved.get(), 5);
    assert!(c.get(99, resolve).is_none() && c.get(1000, resolve).is_none());
    assert_eq!(resolved.get(), 5);
}
