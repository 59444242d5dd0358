//! What the API says: RFC 3339 times, a change pending at once, failures and the failing gauge, a writer that never settles refused.

use crate::common::*;
use crate::support;
use crate::support::*;
use crate::unsettled::{BOUND, warned};

/// `unix` as GNU date formats it in UTC: an implementation independent of ours.
fn gnu_date(unix: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Asserts `v[field]` is the RFC 3339 form of `v[field_unix]`.
fn assert_rfc3339(v: &serde_json::Value, field: &str) {
    let unix = v[format!("{field}_unix")]
        .as_i64()
        .unwrap_or_else(|| panic!("{field}_unix is a number: {v}"));
    let text = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string: {v}"));
    assert_eq!(text, gnu_date(unix), "{field} in {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_rfc3339_times_with_unix_seconds_beside() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    let config = s.config(&edge_yaml(
        "",
        "  - { id: cas, type: ca-bundle, ca_file: ca.crt }",
        "",
        "",
    ));
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let edge = edge_entry(api).await;
    assert_rfc3339(&edge, "not_before");
    assert_rfc3339(&edge, "not_after");
    assert_rfc3339(&edge["last_reload"], "time");
    let cas = admin(api, "GET", "/api/v1/certs/cas", None, None, &[])
        .await
        .json();
    assert_rfc3339(&cas["ca_certs"][0], "not_after");
    let served = admin(api, "GET", "/api/v1/listeners/public/cert", None, None, &[])
        .await
        .json();
    assert_rfc3339(&served["certs"][0], "not_after");
    assert_rfc3339(&served["certs"][0], "not_before");
}

/// An emptied certificate file is waited for (a writer may be half-way)
/// for settle_timeout: during that wait the API says `pending` with the
/// reason and the deadline, an info line says what is awaited, and
/// `hotproxy_cert_reload_pending` is 1. Before, the API said `success`
/// and nothing was logged or measured until the timeout. When the file
/// is whole again, all of it clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_cert_file_is_pending_at_once() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    // A long settle_timeout: whatever the test sees happens well inside it.
    let (_config, mut p, api) = watched(&s, &ca, "1h").await;
    let good = std::fs::read_to_string(s.path("edge.crt")).unwrap();
    write(&s.path("edge.crt"), "");

    wait_until(WAIT, "last_reload pending", || async move {
        last_reload(api).await["result"] == "pending"
    })
    .await;
    let last = last_reload(api).await;
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("edge.crt"),
        "the reason names the file: {last}"
    );
    assert_rfc3339(&last, "deadline");
    // The deadline is settle_timeout (1h) after the change, give or take the debounce.
    let deadline = last["deadline_unix"].as_i64().unwrap();
    let time = last["time_unix"].as_i64().unwrap();
    assert!((3500..=3600).contains(&(deadline - time)), "{last}");
    assert_eq!(
        metric(api, r#"hotproxy_cert_reload_pending{entry="edge"}"#).await,
        Some(1.0)
    );
    let line = p
        .wait_log("pending logged", |v| {
            v["message"]
                == "certificate files changed but do not load yet; waiting for the writer to finish"
        })
        .await;
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["entry"], "edge");

    // The writer finishes: the same content as before is back.
    write(&s.path("edge.crt"), &good);
    wait_until(WAIT, "pending cleared", || async move {
        metric(api, r#"hotproxy_cert_reload_pending{entry="edge"}"#).await == Some(0.0)
    })
    .await;
    let last = last_reload(api).await;
    assert_eq!(last["result"], "success", "{last}");
    assert!(last.get("deadline").is_none(), "{last}");
}

/// Past settle_timeout a key that does not match is a failure: pending
/// goes to 0 and `hotproxy_cert_reload_failing` to 1 (what the alert
/// watches); a matching pair clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_key_fails_after_settle_timeout_and_is_measured() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (_config, _p, api) = watched(&s, &ca, "300ms").await;
    let other = ca.server_pair(&["localhost"]);
    write(&s.path("edge.key"), &other.key_pem);
    wait_until(WAIT, "failing gauge", || async move {
        metric(api, r#"hotproxy_cert_reload_failing{entry="edge"}"#).await == Some(1.0)
    })
    .await;
    assert_eq!(
        metric(api, r#"hotproxy_cert_reload_pending{entry="edge"}"#).await,
        Some(0.0)
    );
    let last = last_reload(api).await;
    assert_eq!(last["result"], "failure", "{last}");
    // The pair is whole again (a new one): served, and the gauge clears.
    write(&s.path("edge.crt"), &other.cert_pem);
    wait_until(WAIT, "failing cleared", || async move {
        metric(api, r#"hotproxy_cert_reload_failing{entry="edge"}"#).await == Some(0.0)
    })
    .await;
}

/// A configuration that is rejected changes nothing, also in what the
/// alerts watch: an entry failing under the running definition stays
/// failing when a rejected edit would have redefined it with files that
/// load (the reload used to clear its gauge while still planning).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_configuration_leaves_the_failing_gauge() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (config, mut p, api) = watched(&s, &ca, "300ms").await;
    let failing = r#"hotproxy_cert_reload_failing{entry="edge"}"#;
    write(&s.path("edge.key"), &ca.server_pair(&["localhost"]).key_pem);
    wait_until(WAIT, "failing gauge", || async move {
        metric(api, failing).await == Some(1.0)
    })
    .await;
    // edge redefined with files that load, and a listener whose files are
    // not there: rejected as a whole.
    s.pair("fresh", &ca.server_pair(&["localhost"]));
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "cert_file: edge.crt, key_file: edge.key",
        "cert_file: fresh.crt, key_file: fresh.key",
    ) + "  - name: second\n    bind: 127.0.0.1:0\n    tls: { certs: [ { cert_file: missing.crt, key_file: missing.key } ] }\n";
    write(&config, &text);
    p.wait_log("rejected", |v| {
        v["message"] == "configuration rejected; the running configuration stays"
    })
    .await;
    assert_eq!(metric(api, failing).await, Some(1.0));
}

/// The leaf the listener at `addr` serves for `localhost`.
async fn served_leaf(addr: std::net::SocketAddr, ca: &str) -> String {
    let tls = connect(addr, "localhost", client_config(ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref())
}

/// `edge`'s `last_reload`: its result, and the reason or error it names.
pub(crate) async fn result_and_problem(api: std::net::SocketAddr) -> (String, String) {
    let last = last_reload(api).await;
    let problem = last["reason"].as_str().or(last["error"].as_str());
    (
        last["result"].as_str().unwrap_or_default().to_owned(),
        problem.unwrap_or_default().to_owned(),
    )
}

/// `edge`'s `last_reload` as first seen naming `problem` (awaited).
pub(crate) async fn read_as(api: std::net::SocketAddr, problem: &str) -> (String, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (result, named) = result_and_problem(api).await;
        if named.contains(problem) {
            return (result, named);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {problem} (last: {result}: {named})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A writer that keeps flipping the files between two states that do not
/// load, each another step of a writer (the certificate removed; one
/// written back that is not the key's), each change starting a
/// settle_timeout of its own, is refused once the files have not settled
/// for 5 × settle_timeout since they first changed: a failure naming the
/// file, logged once, counted and shown, the old pair served on, and the
/// files read again as they change. Such an entry used to stay pending for
/// as long as the writer went on, and the operator was never told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_never_settle_are_refused() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let first = ca.server_pair(&["localhost"]);
    s.pair("edge", &first);
    let mut p = Proxy::start(&s.config(&edge_yaml(
        "watch: { debounce: 20ms, poll_interval: 200ms, settle_timeout: 1s }",
        "",
        "",
        "",
    )));
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let (next, other) = (
        ca.server_pair(&["localhost"]),
        ca.server_pair(&["localhost"]),
    );
    let missing = "edge.crt: file not found";
    let mismatch = "edge.key: private key does not match the certificate";
    let crt = s.path("edge.crt");
    let flip = |n: usize| {
        if n.is_multiple_of(2) {
            std::fs::remove_file(&crt).unwrap();
            missing
        } else {
            support::writers::mv_over(&crt, &other.cert_pem);
            mismatch
        }
    };
    // Each change awaited read (its problem shown), before the next.
    let read = |problem: &'static str| read_as(api, problem);

    support::writers::mv_over(&s.path("edge.key"), &next.key_pem);
    read(mismatch).await;
    let started = tokio::time::Instant::now();
    let mut flips = 0;
    let error = loop {
        let (result, problem) = read(flip(flips)).await;
        flips += 1;
        if result == "failure" && problem.contains(BOUND) {
            break problem;
        }
        // A step's own wait may run out (a failure without the bound)
        // when the test or the proxy is held up for settle_timeout: the
        // flips go on, and the next one is a writer's step waited on anew.
        assert!(
            started.elapsed() < WAIT + std::time::Duration::from_secs(5),
            "not refused after {flips} flips over {:?}: {result}: {problem}",
            started.elapsed()
        );
    };
    assert!(error.contains("edge."), "the file is not named: {error}");

    // The same writer going on stays refused, said once; each change is
    // read as it comes.
    for _ in 0..2 {
        let (result, problem) = read(flip(flips)).await;
        flips += 1;
        if result != "failure" {
            assert!(
                warned(&p, false) > 0,
                "a step of the writer refused is waited on again: {result}: {problem}"
            );
            break;
        }
    }
    assert_eq!(warned(&p, true), 1, "the refusal is not logged once");
    assert_eq!(
        served_leaf(addr, &ca.cert_pem).await,
        first.fingerprint,
        "the old pair is not what is served"
    );
    let failing = r#"hotproxy_cert_reload_failing{entry="edge"}"#;
    let pending = r#"hotproxy_cert_reload_pending{entry="edge"}"#;
    let failures = r#"hotproxy_cert_reloads_total{entry="edge",result="failure"}"#;
    assert_eq!(metric(api, failing).await, Some(1.0));
    assert_eq!(metric(api, pending).await, Some(0.0));
    assert!(metric(api, failures).await.is_some_and(|n| n >= 1.0));

    // Files that load are served at once, and the next writer's step is
    // waited for again.
    support::writers::mv_over(&crt, &next.cert_pem);
    let (leaf, ca_pem) = (next.fingerprint.clone(), ca.cert_pem.clone());
    wait_until(WAIT, "the pair that loads served", || {
        let (leaf, ca_pem) = (leaf.clone(), ca_pem.clone());
        async move { served_leaf(addr, &ca_pem).await == leaf }
    })
    .await;
    assert_eq!(metric(api, failing).await, Some(0.0));
    let later = ca.server_pair(&["localhost"]);
    support::writers::mv_over(&s.path("edge.key"), &later.key_pem);
    let (result, _) = read(mismatch).await;
    assert_eq!(result, "pending");
    support::writers::mv_over(&crt, &later.cert_pem);
    let (leaf, ca_pem) = (later.fingerprint.clone(), ca.cert_pem.clone());
    wait_until(WAIT, "the next pair served", || {
        let (leaf, ca_pem) = (leaf.clone(), ca_pem.clone());
        async move { served_leaf(addr, &ca_pem).await == leaf }
    })
    .await;
}
