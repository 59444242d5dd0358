//! A writer that never settles, refused: how its waits and failures are counted and logged.

use std::path::Path;

use crate::common::*;
use crate::status::{read_as, result_and_problem};
use crate::support;
use crate::support::*;

const MISSING: &str = "edge.crt: file not found";
const MISMATCH: &str = "edge.key: private key does not match the certificate";
/// What the error of files refused for not settling names.
pub(crate) const BOUND: &str = "5 × settle_timeout";
const FAILURES: &str = r#"hotproxy_cert_reloads_total{entry="edge",result="failure"}"#;

/// The proxy serving `edge` (a pair from files, watched, settle_timeout 1s)
/// with the admin API, the key of another pair written over `edge.key`
/// (waited on as a writer's step) and awaited read.
async fn writer_at_work(s: &Scene, ca: &TestCa) -> (Proxy, std::net::SocketAddr) {
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let mut p = Proxy::start(&s.config(&edge_yaml(
        "watch: { debounce: 20ms, poll_interval: 200ms, settle_timeout: 1s }",
        "",
        "",
        "",
    )));
    let api = p.admin_addr().await;
    support::writers::mv_over(&s.path("edge.key"), &ca.server_pair(&["localhost"]).key_pem);
    read_as(api, MISMATCH).await;
    (p, api)
}

/// Flips `edge.crt` from `*flips` on, between removed (an even flip) and
/// `cert` (not the key's; an odd flip), each change awaited read before
/// the next, until the files are refused for not settling: that error.
async fn flip_until_refused(
    api: std::net::SocketAddr,
    crt: &Path,
    cert: &str,
    flips: &mut usize,
) -> String {
    let started = tokio::time::Instant::now();
    loop {
        let problem = if flips.is_multiple_of(2) {
            std::fs::remove_file(crt).unwrap();
            MISSING
        } else {
            support::writers::mv_over(crt, cert);
            MISMATCH
        };
        let (result, named) = read_as(api, problem).await;
        *flips += 1;
        if result == "failure" && named.contains(BOUND) {
            return named;
        }
        // A step's own wait may run out (a failure without the bound)
        // when the test or the proxy is held up for settle_timeout: the
        // flips go on, and the next one is a writer's step waited on anew.
        assert!(
            started.elapsed() < WAIT + std::time::Duration::from_secs(5),
            "not refused after {flips} flips over {:?}: {result}: {named}",
            started.elapsed()
        );
    }
}

/// The warnings that `edge`'s files were refused: those naming the bound
/// (`refusal`) or the others.
pub(crate) fn warned(p: &Proxy, refusal: bool) -> usize {
    p.logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["message"] == "certificate reload failed; keeping the previous material"
                && v["level"] == "WARN"
                && v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(BOUND) == refusal)
        })
        .count()
}

/// A writer refused for not settling that then stops on one step is one
/// bad write: the failure its step's wait ends in (the problem without
/// the bound's words, logged as such) counts nothing more. The refusal
/// counted the error with those words, and the failure counted again, the
/// plain problem differing from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_refused_then_stopped_counts_its_failure_once() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (p, api) = writer_at_work(&s, &ca).await;
    let other = ca.server_pair(&["localhost"]);
    let crt = s.path("edge.crt");
    let mut flips = 0;
    let refusal = flip_until_refused(api, &crt, &other.cert_pem, &mut flips).await;

    // The writer stops: the step's wait ends in a failure of its own.
    let problem = refusal.split(" (not settled").next().unwrap().to_owned();
    wait_until(WAIT, "the step's wait over, a failure", || async {
        result_and_problem(api).await == ("failure".to_owned(), problem.clone())
    })
    .await;
    wait_until(WAIT, "that failure logged", || async {
        p.logs().iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                v["level"] == "WARN" && v["error"].as_str() == Some(problem.as_str())
            })
        })
    })
    .await;
    // Every wait ended, refused or failed, was logged and counted once
    // (a step's wait running out while the test was held up too), but for
    // the last failure: the refused bad write again.
    let logged = warned(&p, true) + warned(&p, false);
    assert_eq!(warned(&p, true), 1, "the refusal logged once");
    assert_eq!(
        metric(api, FAILURES).await,
        Some((logged - 1) as f64),
        "the refused write counted again when its step's wait ended ({logged} failures logged)"
    );
}

/// Files refused for not settling that then grow are a writer getting on,
/// waited on anew (pending); when that wait too ends in a refusal for not
/// settling, it is a new bad write: counted and logged, as any wait that
/// ends in a failure. It was counted and shown, but not logged (said
/// once for the writer), so the log said nothing of the second refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_refused_again_after_growing_are_logged_again() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (p, api) = writer_at_work(&s, &ca).await;
    let other = ca.server_pair(&["localhost"]);
    let crt = s.path("edge.crt");
    let mut flips = 0;
    flip_until_refused(api, &crt, &other.cert_pem, &mut flips).await;
    wait_until(WAIT, "the refusal logged", || async {
        warned(&p, true) == 1
    })
    .await;

    // The certificate removed (if it is not), then one written that holds
    // more than any before (not the key's either): the files grew.
    if crt.exists() {
        std::fs::remove_file(&crt).unwrap();
    }
    read_as(api, MISSING).await;
    let names = [
        "localhost",
        "a-name-the-other-certificates-do-not-have.example",
    ];
    let bigger = ca.server_pair(&names);
    assert!(bigger.cert_pem.len() > other.cert_pem.len());
    support::writers::mv_over(&crt, &bigger.cert_pem);
    // Waited on (pending; failed already if the test was held up for
    // settle_timeout, a wait over that the next one does not follow).
    wait_until(WAIT, "the grown files read", || async {
        let (_, problem) = result_and_problem(api).await;
        problem.contains(MISMATCH) && !problem.contains(BOUND)
    })
    .await;
    let counted = metric(api, FAILURES).await.unwrap();

    // The writer goes back and forth again, no bigger: refused again.
    let mut flips = 0;
    flip_until_refused(api, &crt, &bigger.cert_pem, &mut flips).await;
    wait_until(WAIT, "the second refusal logged", || async {
        warned(&p, true) == 2
    })
    .await;
    assert!(metric(api, FAILURES).await.unwrap() > counted);
}
