//! Unit tests of an upstream's endpoint set: ejections, the gauge, edits and re-resolution.

use super::*;
use crate::upstream::endpoint::tests::endpoint;

/// A name resolved to {A, B}, then re-resolution dropped B. A request
/// still holding the old set sees A reach its threshold: A is the last
/// endpoint in service (B is gone, not in service), so it stays in.
#[test]
fn last_endpoint_is_not_ejected_through_a_set_from_before_re_resolution() {
    let passive = PassiveHealth {
        consecutive_failures: 1,
        eject_for: std::time::Duration::from_secs(60),
    };
    let publishing = Arc::<Publishing>::default();
    let a = Member::new(Arc::new(endpoint(1, false, 1)));
    let b = Member::new(Arc::new(endpoint(2, false, 1)));
    let set = |members: Vec<Arc<Member>>| {
        let upstream = "last-in-after-re-resolution".into();
        Members::new(
            upstream,
            publishing.clone(),
            members,
            Balance::default(),
            passive,
        )
    };
    let old = set(vec![a.clone(), b]);
    old.publish();
    let current = set(vec![a.clone()]);
    current.publish();
    old.failure(0, "test");
    assert!(!a.health.ejected(Instant::now()), "A was ejected");
    assert!(!a.out.load(Ordering::Relaxed), "A counted as ejected");
}

/// A name resolved to {A, B}, then re-resolution dropped B. A request
/// that began on {A, B} and failed on A would find another endpoint
/// there (B), but none in the set a retry picks from: only A, tried.
/// With C added instead, C would take it.
#[test]
fn another_endpoint_is_judged_in_the_set_after_re_resolution() {
    let passive = PassiveHealth {
        consecutive_failures: 1,
        eject_for: std::time::Duration::from_secs(60),
    };
    let [a, b, c] = [1, 2, 3].map(|port| Member::new(Arc::new(endpoint(port, false, 1))));
    let set = |members: Vec<Arc<Member>>| {
        let upstream = "another-after-re-resolution".into();
        Members::new(
            upstream,
            Arc::default(),
            members,
            Balance::default(),
            passive,
        )
    };
    let first = set(vec![a.clone(), b.clone()]);
    assert!(first.another(&[], 0), "B, in the first set");
    let without_b = set(vec![a.clone()]);
    assert!(!without_b.another_after(&first, &[], 0), "only A, tried");
    let with_c = set(vec![a.clone(), c]);
    assert!(with_c.another_after(&first, &[], 0), "C, added");
    // A set of the same endpoints (re-resolved in another order, say):
    // B tried already, then A failed, none is left.
    let again = set(vec![b, a]);
    assert!(!again.another_after(&first, &[1], 0), "A and B, both tried");
}

/// A name resolved to {A, B}; a request on A holds that set while
/// re-resolution publishes {A, B, C}; then it fails and A is ejected.
/// The gauge is the newest set's, with A ejected: publishing through
/// the older set was skipped (a newer one had been published), and the
/// gauge went on saying 3 healthy, 0 ejected while A was out.
#[test]
fn an_ejection_through_an_older_set_shows_in_the_gauge() {
    let passive = PassiveHealth {
        consecutive_failures: 1,
        eject_for: std::time::Duration::from_secs(60),
    };
    let upstream: Arc<str> = "ejected-through-an-older-set".into();
    let publishing = Arc::<Publishing>::default();
    let [a, b, c] = [1, 2, 3].map(|port| Member::new(Arc::new(endpoint(port, false, 1))));
    let set = |members: Vec<Arc<Member>>| {
        let (upstream, publishing) = (upstream.clone(), publishing.clone());
        Members::new(upstream, publishing, members, Balance::default(), passive)
    };
    let gauge = |state: &str| {
        let labels = EndpointStateLabels {
            upstream: upstream.to_string(),
            state: state.to_owned(),
        };
        METRICS.upstream_endpoints.get_or_create(&labels).get()
    };
    let old = set(vec![a.clone(), b.clone()]);
    old.publish();
    let current = set(vec![a.clone(), b, c]);
    current.publish();
    assert_eq!((gauge("healthy"), gauge("ejected")), (3, 0));
    old.failure(0, "test");
    assert!(a.health.ejected(Instant::now()), "A was not ejected");
    assert_eq!(
        (gauge("healthy"), gauge("ejected"), gauge("unhealthy")),
        (2, 1, 0),
        "the gauge after A's ejection through the older set"
    );
    current.forget_gauge();
}

/// An edit replaced {A, B, C, D} by {A, B, C, E} (a server swapped).
/// A, ejected before, is ejected in the new set, counted so in its
/// gauge, and its back-off goes on (its next ejection twice as long);
/// with passive health turned off it would start in service. B failing
/// through the retired set (a request of the old upstream) counts but
/// ejects nothing (that set would have: half of its endpoints); its
/// next failure through the set in service ejects it. C ejected where
/// the new set's gauge was not told (through the old set as it was
/// retired) is counted there at the next pick.
#[test]
fn an_edit_carries_ejections_and_their_back_off() {
    let passive = PassiveHealth {
        consecutive_failures: 2,
        eject_for: std::time::Duration::from_secs(60),
    };
    let upstream: Arc<str> = "carried-over-an-edit".into();
    let gauge = |state: &str| {
        let labels = EndpointStateLabels {
            upstream: upstream.to_string(),
            state: state.to_owned(),
        };
        METRICS.upstream_endpoints.get_or_create(&labels).get()
    };
    let set = |publishing: &Arc<Publishing>, members| {
        let (upstream, publishing) = (upstream.clone(), publishing.clone());
        Members::new(upstream, publishing, members, Balance::default(), passive)
    };
    let [a, b, c, d, e] = [1, 2, 3, 4, 5].map(|port| Arc::new(endpoint(port, false, 1)));
    let replaced = Arc::<Publishing>::default();
    let old = set(
        &replaced,
        [&a, &b, &c, &d].map(|x| Member::new(x.clone())).to_vec(),
    );
    old.publish();
    old.failure(0, "test");
    old.failure(0, "test");
    let was = |i: usize| &old.members[i];
    assert!(was(0).health.ejected(Instant::now()));
    let off = Member::succeeding(a.clone(), was(0), false, true);
    assert!(!off.health.ejected(Instant::now()), "passive off");
    let new = set(
        &Arc::default(),
        vec![
            Member::succeeding(a, was(0), true, true),
            Member::succeeding(b, was(1), true, true),
            Member::succeeding(c, was(2), true, true),
            Member::new(e),
        ],
    );
    new.publish();
    replaced.retire();
    assert!(new.ejected(0, Instant::now()), "A back in service");
    assert_eq!((gauge("healthy"), gauge("ejected")), (3, 1));
    old.failure(1, "test");
    old.failure(1, "test");
    assert!(
        !new.ejected(1, Instant::now()),
        "B ejected by a retired set"
    );
    new.failure(1, "test");
    assert!(new.ejected(1, Instant::now()), "B not ejected");
    assert_eq!((gauge("healthy"), gauge("ejected")), (2, 2));
    let again = new.members[0].health.eject(Instant::now(), &passive);
    assert_eq!(again, passive.eject_for * 2, "A's back-off");
    was(2).health.eject(Instant::now(), &passive);
    assert_eq!(gauge("ejected"), 2, "C's ejection counted before a pick");
    assert!(new.ejected(2, Instant::now()), "C in service");
    assert_eq!((gauge("healthy"), gauge("ejected")), (1, 3));
    new.forget_gauge();
}

/// Every endpoint failing (a database they share is down): passive
/// health ejects half of them at most, the last one never. Each used to
/// be ejected in turn until one was left, taking all the traffic.
#[test]
fn passive_health_ejects_at_most_half() {
    let passive = PassiveHealth {
        consecutive_failures: 1,
        eject_for: std::time::Duration::from_secs(60),
    };
    for (n, most) in [(1, 0), (2, 1), (3, 1), (4, 2), (5, 2)] {
        let members = Members::new(
            "at-most-half".into(),
            Arc::default(),
            (0..n)
                .map(|port| Member::new(Arc::new(endpoint(port + 1, false, 1))))
                .collect(),
            Balance::default(),
            passive,
        );
        members.publish();
        for round in 0..3 {
            for i in 0..n as usize {
                members.failure(i, "test");
            }
            let now = Instant::now();
            let out = members
                .members
                .iter()
                .filter(|m| m.health.ejected(now))
                .count();
            assert_eq!(out, most, "{n} endpoints, round {round}");
        }
        members.forget_gauge();
    }
}

/// Two endpoints, each failing on a worker of its own at the same
/// moment: at most one is ejected, never both. Each saw the other in
/// service before either ejected itself, and both went out. The window
/// is a few instructions wide and no lock the test could hold spans
/// it, so the race is run many times.
#[test]
fn two_endpoints_failing_at_once_are_not_both_ejected() {
    let passive = PassiveHealth {
        consecutive_failures: 1,
        eject_for: std::time::Duration::from_secs(60),
    };
    let endpoints = [
        Arc::new(endpoint(1, false, 1)),
        Arc::new(endpoint(2, false, 1)),
    ];
    for round in 0..20_000 {
        let members = Members::new(
            "ejection-race".into(),
            Arc::default(),
            endpoints.iter().cloned().map(Member::new).collect(),
            Balance::default(),
            passive,
        );
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for i in 0..2 {
                let (members, start) = (&members, &start);
                s.spawn(move || {
                    start.wait();
                    members.failure(i, "test");
                });
            }
        });
        let now = Instant::now();
        let out = members
            .members
            .iter()
            .filter(|m| m.health.ejected(now))
            .count();
        assert_eq!(out, 1, "round {round}: {out} ejected");
    }
}

/// Out by its active checks, A was ejected too (panic mode sends
/// requests to endpoints out of service). The ejection ran out while
/// the checks still held it out; once they pass, the gauge counts it
/// healthy with no request picking it. The ejection used to be kept
/// in the gauge until then.
#[test]
fn an_ejection_that_ran_out_while_unhealthy_is_not_counted_after() {
    let passive = PassiveHealth {
        consecutive_failures: 1,
        eject_for: std::time::Duration::ZERO,
    };
    let active = ActiveHealth {
        path: "/healthz".into(),
        interval: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(1),
        healthy_after: 1,
        unhealthy_after: 1,
    };
    let upstream: Arc<str> = "ejected-while-unhealthy".into();
    let gauge = |state: &str| {
        let labels = EndpointStateLabels {
            upstream: upstream.to_string(),
            state: state.to_owned(),
        };
        METRICS.upstream_endpoints.get_or_create(&labels).get()
    };
    let members = Members::new(
        upstream.clone(),
        Arc::default(),
        (1..=3)
            .map(|port| Member::new(Arc::new(endpoint(port, false, 1))))
            .collect(),
        Balance::default(),
        passive,
    );
    members.publish();
    let a = members.members[0].clone();
    let failure = CheckFailure {
        cause: "status",
        status: Some(503),
        error: None,
    };
    members.checked(&a, Err(failure), &active);
    members.failure(0, "test");
    assert!(a.out.load(Ordering::Relaxed), "A was not ejected");
    assert_eq!(members.settle_ejections(), None, "an ejection still runs");
    members.checked(&a, Ok(()), &active);
    assert_eq!(
        (gauge("healthy"), gauge("ejected"), gauge("unhealthy")),
        (3, 0, 0)
    );
    members.forget_gauge();
}

/// Active checks in a row are counted up to the larger threshold, no
/// further: the count used to go on, and 2^31 passes in a row (24 days
/// of `interval: 1ms`) wrapped it to i32::MIN, read as that many
/// failures: the endpoint taken out though every check passed (in a
/// debug build, an overflow panic). Failures alike.
#[test]
fn active_check_streak_stops_at_the_larger_threshold() {
    let active = ActiveHealth {
        path: "/healthz".into(),
        interval: std::time::Duration::from_millis(1),
        timeout: std::time::Duration::from_secs(1),
        healthy_after: 2,
        unhealthy_after: 3,
    };
    let members = Members::new(
        "streak-saturates".into(),
        Arc::default(),
        vec![Member::new(Arc::new(endpoint(1, false, 1)))],
        Balance::default(),
        PassiveHealth::default(),
    );
    let a = members.members[0].clone();
    let streak = || a.checks.streak.load(Ordering::Relaxed);
    let unhealthy = || a.checks.unhealthy.load(Ordering::Relaxed);
    let failure = || CheckFailure {
        cause: "status",
        status: Some(503),
        error: None,
    };
    for _ in 0..10 {
        members.checked(&a, Ok(()), &active);
    }
    assert_eq!((streak(), unhealthy()), (3, false));
    // As long a run of passes as any, before the count stopped.
    a.checks.streak.store(i32::MAX, Ordering::Relaxed);
    members.checked(&a, Ok(()), &active);
    assert!(!unhealthy(), "taken out by a passed check");
    assert_eq!(streak(), 3);
    for _ in 0..10 {
        members.checked(&a, Err(failure()), &active);
    }
    assert_eq!((streak(), unhealthy()), (-3, true));
    a.checks.streak.store(i32::MIN, Ordering::Relaxed);
    members.checked(&a, Err(failure()), &active);
    assert_eq!((streak(), unhealthy()), (-3, true));
    members.checked(&a, Ok(()), &active);
    members.checked(&a, Ok(()), &active);
    assert_eq!((streak(), unhealthy()), (2, false));
    members.forget_gauge();
}

/// An upstream `upstream` of one member, `endpoint(n, ..)`, as a
/// resolution makes it: the member and the set.
fn one_member(upstream: &str, n: u16) -> (Arc<Member>, Members) {
    let a = Member::new(Arc::new(endpoint(n, false, 1)));
    let members = Members::new(
        upstream.into(),
        Arc::default(),
        vec![a.clone()],
        Balance::default(),
        PassiveHealth::default(),
    );
    (a, members)
}

/// Removing an endpoint's series looks up only the codes counted at its
/// address, the unusual ones too (599, 799), and leaves none of them in
/// the family. It used to look up every code from 100 to 999 (900
/// look-ups, each formatting the code and hashing three strings) per
/// address removed, on a runtime worker: a 1,000-endpoint answer replaced
/// wholesale held one for a tenth of a second.
#[test]
fn forgetting_an_endpoint_looks_up_only_the_codes_counted_at_it() {
    let upstream = "forget-looks-up-its-codes";
    let (a, members) = one_member(upstream, 7);
    let codes = [200, 599, 799];
    for code in codes {
        members.answered(0, code);
    }
    let labels = |code: u16| EndpointRequestLabels {
        upstream: upstream.to_owned(),
        endpoint: a.label.clone(),
        code: code.to_string(),
    };
    for code in codes {
        assert!(METRICS.upstream_requests.get(&labels(code)).is_some());
    }
    crate::metrics::FORGET_LOOKUPS.with(|n| n.set(0));
    a.forget_requests(upstream);
    let lookups = crate::metrics::FORGET_LOOKUPS.with(std::cell::Cell::get);
    for code in codes {
        assert!(
            METRICS.upstream_requests.get(&labels(code)).is_none(),
            "{code}"
        );
    }
    assert_eq!(lookups, codes.len());
}

/// A request that found its endpoint's series exported, answered as they
/// are removed, makes none again: the interleaving of `answered` past its
/// look at `gone`, then `forget_requests`, then the first count of a code,
/// played in that order. The series it made was never removed.
#[test]
fn a_count_racing_the_removal_makes_no_series_again() {
    let upstream = "count-racing-removal";
    let (a, members) = one_member(upstream, 8);
    members.answered(0, 200);
    // Past its look at `gone`, not yet counted:
    a.forget_requests(upstream);
    // its first count of 503 (what `answered` resolves it with) now.
    a.series.counter(upstream, &a.label, 503).inc();
    for code in [200, 503] {
        let labels = EndpointRequestLabels {
            upstream: upstream.to_owned(),
            endpoint: a.label.clone(),
            code: code.to_string(),
        };
        assert!(METRICS.upstream_requests.get(&labels).is_none(), "{code}");
    }
}
