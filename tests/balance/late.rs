//! A name server that answers each query after the lookup's 5 s: no failure counted or logged for an answer that comes before the next re-resolution, and the set follows each change.

use crate::common::*;
use crate::dns::*;
use crate::support::*;

/// What a re-resolution logs (at debug) when its lookup outlasts 5 s and
/// is kept for the next.
const OUTLASTED: &str = "upstream DNS lookup outlasted 5 s; the next re-resolution waits for it";

/// What a re-resolution logs when an answer's skipped addresses change.
const SKIPPED: &str = "upstream DNS answer has unspecified or multicast addresses; skipped";

/// How many of the proxy's log lines so far contain `text`.
fn logged(w: &World, text: &str) -> usize {
    w.proxy.logs().iter().filter(|l| l.contains(text)).count()
}

/// A lookup that runs past a re-resolution's 5 s and then past the next
/// one's wait for it too (its name server silent) is a failure, counted
/// once per re-resolution past that second bound; once the server answers
/// it, its addresses are taken (the next re-resolution's own lookup held
/// past 5 s too) and the name recovers, with no more failures counted.
/// Before a late answer was taken, the name was asked anew each time and
/// every lookup timed out: the set never refreshed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_is_the_next_re_resolutions() {
    let (dns, mut w) = app_by_name("slow", "3s").await;
    let port = w.pods[0].addr.port();

    dns.hold();
    // The first re-resolution's 5 s, then the next one's wait for that
    // lookup (5 s), bounded generously.
    app_errors_reach(&w, 1.0, 4 * WAIT, "the lookup timed out twice").await;
    // Its lookup ends now, with a new pod; every later query waits again.
    dns.answer_held(&["127.0.0.2", "127.0.0.3"]).await;
    let added = format!("127.0.0.3:{port}");
    wait_until(4 * WAIT, "the new address, or a second failure", || async {
        let seen = w
            .proxy
            .logs()
            .iter()
            .any(|l| l.contains("upstream endpoint added") && l.contains(added.as_str()));
        seen || errors_of(&w, "app").await >= 2.0
    })
    .await;
    assert_eq!(
        errors_of(&w, "app").await,
        1.0,
        "the late answer was dropped and the name asked anew: it timed out again"
    );
    w.wait_recovered("app").await;
}

/// A resolver that answers every lookup a little after a re-resolution's
/// 5 s (glibc's `timeout:5` with the first name server of resolv.conf
/// down: 5.01 s each time), each answer before the next re-resolution:
/// no failure is logged or counted, and the set follows the answers (an
/// address added, then removed). The lookup that timed out was counted
/// and logged (`upstream DNS lookup failed`) and the next re-resolution's
/// taking its answer logged `recovered`: a warning, a recovery and an
/// error every other re-resolution. (Each answer comes as soon as its
/// lookup is given up on, the next re-resolution 2 s after: the margin
/// is the test's only assumption.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_always_late_log_no_failure() {
    let (dns, w) = app_by_name("always-late", "2s").await;
    let port = w.pods[0].addr.port();
    let third = format!("127.0.0.3:{port}");

    dns.hold();
    let steps = [
        (&["127.0.0.2", "127.0.0.3"][..], "upstream endpoint added"),
        (&["127.0.0.2"][..], "upstream endpoint removed"),
    ];
    for (k, (ips, change)) in steps.into_iter().enumerate() {
        // The re-resolution gives up on its lookup (5 s), bounded generously.
        wait_until(4 * WAIT, "a lookup given up on", || async {
            logged(&w, OUTLASTED) > k || logged(&w, FAILED) > 0
        })
        .await;
        assert_eq!(logged(&w, FAILED), 0, "a late lookup was logged as failed");
        dns.answer_held(ips).await;
        wait_until(4 * WAIT, change, || async {
            let seen = w
                .proxy
                .logs()
                .iter()
                .any(|l| l.contains(change) && l.contains(third.as_str()));
            seen || logged(&w, FAILED) > 0
        })
        .await;
    }
    assert_eq!(logged(&w, FAILED), 0, "a late lookup was logged as failed");
    assert_eq!(errors_of(&w, "app").await, 0.0, "a late lookup was counted");
}

/// A lookup kept past a re-resolution's 5 s that then ends with a new
/// address, the next re-resolution's own lookup failing at once (the
/// name server answering SERVFAIL): the kept answer, the newest good one
/// there is, is applied, and the fresh failure counted. It was taken
/// only when the new lookup outlasted 5 s: a failure dropped it, and the
/// set kept the older addresses for as long as the server failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_is_taken_when_the_next_lookup_fails() {
    let (dns, w) = app_by_name("late-then-failing", "3s").await;
    let added = format!("127.0.0.3:{}", w.pods[0].addr.port());
    let seen = || {
        let logs = w.proxy.logs();
        logs.iter()
            .any(|l| l.contains("upstream endpoint added") && l.contains(added.as_str()))
    };

    dns.hold();
    wait_until(4 * WAIT, "a lookup given up on", || async {
        logged(&w, OUTLASTED) > 0
    })
    .await;
    // Every query from now on fails at once; the kept lookup ends with a
    // new pod, before the next re-resolution (3 s after it was kept).
    dns.fail();
    dns.answer_held(&["127.0.0.2", "127.0.0.3"]).await;
    wait_until(4 * WAIT, "the new address, or a second failure", || async {
        seen() || errors_of(&w, "app").await >= 2.0
    })
    .await;
    assert!(seen(), "the kept answer was dropped for the failed lookup");
    assert_eq!(logged(&w, FAILED), 1, "the fresh failure was not logged");
    assert_eq!(
        errors_of(&w, "app").await,
        1.0,
        "the fresh failure was not counted"
    );
}

/// As above, the next re-resolution's own lookup answering at once with
/// nothing usable (`0.0.0.0`, what a filtering resolver answers): a
/// failed lookup too (SPEC §7), so the kept answer is applied, and the
/// fresh failure counted once, its skipped address logged. It went as any
/// answer and was counted a failure, the kept answer dropped: the set
/// kept the older addresses as long as the resolver filtered the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_is_taken_when_the_next_has_none_usable() {
    let (dns, w) = app_by_name("late-then-filtered", "3s").await;
    let added = format!("127.0.0.3:{}", w.pods[0].addr.port());
    let seen = || {
        let logs = w.proxy.logs();
        logs.iter()
            .any(|l| l.contains("upstream endpoint added") && l.contains(added.as_str()))
    };

    dns.hold();
    wait_until(4 * WAIT, "a lookup given up on", || async {
        logged(&w, OUTLASTED) > 0
    })
    .await;
    // The kept lookup ends with a new pod; every query from now on is
    // answered at once with `0.0.0.0` alone.
    dns.release_as(&["127.0.0.2", "127.0.0.3"], &["0.0.0.0"])
        .await;
    wait_until(4 * WAIT, "the new address, or a second failure", || async {
        seen() || errors_of(&w, "app").await >= 2.0
    })
    .await;
    assert!(seen(), "the kept answer was dropped for the unusable one");
    assert_eq!(logged(&w, FAILED), 1, "the fresh failure was not logged");
    assert_eq!(logged(&w, SKIPPED), 1, "the skipped 0.0.0.0 was not logged");
    assert_eq!(
        errors_of(&w, "app").await,
        1.0,
        "the fresh failure was not counted"
    );
}

/// A lookup counted failed (it outlasted two re-resolutions) that then
/// ends with nothing usable (`0.0.0.0`) while the next re-resolution's own
/// lookup is held past 5 s: still one failed lookup (SPEC §7), counted
/// once. Its answer went as any ended one and was counted again, where
/// one that ended with an error was not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_lookup_ending_unusable_is_not_counted_again() {
    let (dns, w) = app_by_name("counted-then-filtered", "3s").await;
    let added = format!("127.0.0.3:{}", w.pods[0].addr.port());

    dns.hold();
    app_errors_reach(&w, 1.0, 4 * WAIT, "the lookup timed out twice").await;
    // The counted lookup ends with `0.0.0.0` alone; the next one is held.
    dns.answer_held(&["0.0.0.0"]).await;
    wait_until(4 * WAIT, "a lookup given up on again", || async {
        logged(&w, OUTLASTED) > 1
    })
    .await;
    // That lookup and every later one answer a new pod: once its address
    // is added, the re-resolution that took the `0.0.0.0` is over.
    dns.release_as(&["127.0.0.2", "127.0.0.3"], &["127.0.0.2", "127.0.0.3"])
        .await;
    wait_until(4 * WAIT, "the new address", || async {
        let logs = w.proxy.logs();
        logs.iter()
            .any(|l| l.contains("upstream endpoint added") && l.contains(added.as_str()))
    })
    .await;
    assert_eq!(
        errors_of(&w, "app").await,
        1.0,
        "the counted lookup's unusable answer was counted again"
    );
}
