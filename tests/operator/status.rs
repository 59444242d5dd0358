//! What the API says: RFC 3339 times, a change pending at once, failures and the failing gauge.

use crate::common::*;
use crate::support::*;

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
