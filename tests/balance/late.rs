//! A name server that answers every query just after the lookup's 5 s: each re-resolution's late answer is the next's, and the set refreshes.

use crate::common::*;
use crate::dns::*;
use crate::support::*;

/// A resolver that answers each lookup just after a re-resolution gives
/// up on it (glibc's `timeout:5` with the first name server down takes
/// 5.01 s every time): the lookup that timed out ends with the new
/// addresses before the next re-resolution, which takes them (they are
/// at most `resolve_interval` old) rather than asking anew. It asked
/// anew, and that lookup timed out in turn, for ever: the set never
/// refreshed, each re-resolution counted as a failure. (The answer comes
/// as soon as the timeout is counted, the next re-resolution 3 s after:
/// the margin is the test's only assumption, and a later answer, joined
/// by that re-resolution, refreshes the set too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_answer_is_the_next_re_resolutions() {
    let (dns, mut w) = app_by_name("slow", "3s").await;
    let port = w.pods[0].addr.port();

    dns.hold();
    // The next re-resolution (3 s) and its timeout (5 s), bounded generously.
    app_errors_reach(&w, 1.0, 4 * WAIT, "the lookup timed out").await;
    // Its lookup ends now, with a new pod; every later query waits again.
    dns.answer_held(&["127.0.0.2", "127.0.0.3"]).await;
    let added = format!("127.0.0.3:{port}");
    wait_until(4 * WAIT, "the new address, or a second timeout", || async {
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
