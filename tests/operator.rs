//! What an operator is told (issue 18): times people read are RFC 3339, a
//! change that is waited for shows as pending at once, every applied
//! configuration and every SIGHUP is logged and counted, and a kubelet swap
//! logs nothing above INFO.

mod support;

use support::*;

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
    let config = s.config(
        r#"
admin: { bind: "127.0.0.1:0" }
certs:
  - { id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }
  - { id: cas, type: ca-bundle, ca_file: ca.crt }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: { certs: [ { ref: edge } ] }
"#,
    );
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let edge = admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
        .await
        .json();
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

/// A metric's value in `/metrics`, if the series exists.
async fn metric(api: std::net::SocketAddr, series: &str) -> Option<f64> {
    admin(api, "GET", "/metrics", None, None, &[])
        .await
        .body
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One server pair `edge` from files, watched, with `settle_timeout`.
fn watched_edge(s: &Scene, ca: &TestCa, settle: &str) -> std::path::PathBuf {
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
watch: {{ debounce: 20ms, poll_interval: 200ms, settle_timeout: {settle} }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [ {{ ref: edge }} ] }}
"#
    ))
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
    let config = watched_edge(&s, &ca, "1h");
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let good = std::fs::read_to_string(s.path("edge.crt")).unwrap();
    write(&s.path("edge.crt"), "");

    wait_until(WAIT, "last_reload pending", || async move {
        admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
            .await
            .json()["last_reload"]["result"]
            == "pending"
    })
    .await;
    let last = admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
        .await
        .json()["last_reload"]
        .clone();
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
    let last = admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
        .await
        .json()["last_reload"]
        .clone();
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
    let config = watched_edge(&s, &ca, "300ms");
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
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
    let last = admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
        .await
        .json()["last_reload"]
        .clone();
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
    let config = watched_edge(&s, &ca, "300ms");
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
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

/// Every SIGHUP says how it went and counts; a configuration restored after
/// a rejected one is logged and counted (before: nothing moved); an applied
/// one says what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_a_restored_config_are_logged_and_counted() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let yaml = |prefix: &str| {
        format!(
            r#"
admin: {{ bind: "127.0.0.1:0" }}
watch: {{ debounce: 20ms, poll_interval: 200ms }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [ {{ ref: edge }} ] }}
    routes: [ {{ path_prefix: {prefix}, upstream: app }} ]
upstreams:
  - {{ name: app, servers: [http://127.0.0.1:9] }}
"#
        )
    };
    let good = yaml("/");
    let config = s.config(&good);
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let ok = r#"hotproxy_config_reloads_total{result="success"}"#;
    let bad = r#"hotproxy_config_reloads_total{result="failure"}"#;
    assert_eq!(metric(api, ok).await, Some(0.0));

    // SIGHUP with nothing changed: a successful reload, said and counted.
    p.signal("HUP");
    let done = p
        .wait_log("SIGHUP outcome", |v| v["message"] == "SIGHUP: done")
        .await;
    assert_eq!(done["config"], "unchanged", "{done}");
    assert_eq!(done["entries_refused"], 0, "{done}");
    assert_eq!(done["level"], "INFO");
    assert_eq!(metric(api, ok).await, Some(1.0));

    // A broken configuration: rejected, counted.
    write(&config, &good.replace("upstream: app", "upstream: nowhere"));
    wait_until(WAIT, "rejection counted", || async move {
        metric(api, bad).await == Some(1.0)
    })
    .await;
    // Restored as it was: the confirmation the operator waits for.
    write(&config, &good);
    let restored = p
        .wait_log("restored", |v| {
            v["message"]
                == "configuration restored: the file matches the running configuration again"
        })
        .await;
    assert_eq!(restored["level"], "INFO");
    wait_until(WAIT, "restore counted", || async move {
        metric(api, ok).await == Some(2.0)
    })
    .await;

    // A real change says what changed.
    write(&config, &yaml("/api"));
    let applied = p
        .wait_log("applied", |v| v["message"] == "configuration reloaded")
        .await;
    assert_eq!(
        applied["changes"], "listeners changed: public (routes)",
        "{applied}"
    );
    wait_until(WAIT, "apply counted", || async move {
        metric(api, ok).await == Some(3.0)
    })
    .await;
}

/// A kubelet Secret swap is routine: it logs nothing above INFO (before,
/// notify's "Unable to remove the path from the watches: WatchNotFound"
/// came out as a WARN on every renewal, paging log-based alerting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_swap_logs_nothing_above_info() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let kubelet = support::writers::Kubelet::new(&s.path("secret"));
    let first = ca.server_pair(&["localhost"]);
    kubelet.write(
        &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
        false,
    );
    let config = s.config(
        r#"
watch: { debounce: 20ms, poll_interval: 200ms }
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: { certs: [ { cert_file: secret/tls.crt, key_file: secret/tls.key } ] }
"#,
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    // Three swaps, each seen served; the last one's reload comes after the
    // previous swaps' directory removals were processed (events are in order).
    for _ in 0..3 {
        let next = ca.server_pair(&["localhost"]);
        kubelet.write(
            &[("tls.crt", &next.cert_pem), ("tls.key", &next.key_pem)],
            false,
        );
        let want = next.fingerprint.clone();
        let ca_pem = ca.cert_pem.clone();
        wait_until(WAIT, "the swap is served", || {
            let (want, ca_pem) = (want.clone(), ca_pem.clone());
            async move { served_leaf(addr, "localhost", &ca_pem).await.ok() == Some(want) }
        })
        .await;
    }
    let loud: Vec<String> = p
        .logs()
        .into_iter()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["level"] == "WARN" || v["level"] == "ERROR")
        })
        .collect();
    assert!(
        loud.is_empty(),
        "a routine swap logged:\n{}",
        loud.join("\n")
    );
}

/// An entry removed from the configuration leaves `/metrics` with all its
/// series (before, its reload counters stayed: dashboards and alerts kept
/// seeing an entry that no longer exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_entry_leaves_metrics() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s.pair("spare", &ca.server_pair(&["spare.example"]));
    let yaml = |spare: bool| {
        format!(
            r#"
admin: {{ bind: "127.0.0.1:0" }}
watch: {{ debounce: 20ms, poll_interval: 200ms }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
{}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [ {{ ref: edge }} ] }}
"#,
            if spare {
                "  - { id: spare, type: server-pair, cert_file: spare.crt, key_file: spare.key }"
            } else {
                ""
            }
        )
    };
    let config = s.config(&yaml(true));
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let has_spare = || async move {
        admin(api, "GET", "/metrics", None, None, &[])
            .await
            .body
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("entry=\"spare\""))
    };
    assert!(has_spare().await, "spare is measured while it exists");
    write(&config, &yaml(false));
    p.wait_log("reloaded", |v| v["message"] == "configuration reloaded")
        .await;
    wait_until(
        WAIT,
        "spare's series gone",
        || async move { !has_spare().await },
    )
    .await;
}

/// An entry redefined in the configuration reports its new definition
/// only: its old type's expiry series goes (it stayed beside the new one,
/// and the shipped expiry alert fired for a certificate nobody serves),
/// and a definition whose files do not load drops the material series and
/// says it is failing (the failing gauge stayed 0 while the API showed
/// the failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redefined_entry_reports_its_new_definition() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s.pair("spare", &ca.server_pair(&["spare.example"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    let yaml = |spare: &str| {
        format!(
            r#"
admin: {{ bind: "127.0.0.1:0" }}
watch: {{ debounce: 20ms, poll_interval: 200ms }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: spare, {spare} }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [ {{ ref: edge }} ] }}
"#
        )
    };
    let config = s.config(&yaml(
        "type: server-pair, cert_file: spare.crt, key_file: spare.key",
    ));
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let spare_lines = || async move {
        admin(api, "GET", "/metrics", None, None, &[])
            .await
            .body
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("entry=\"spare\""))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let not_after = |kind: &str| {
        format!("hotproxy_cert_not_after_timestamp_seconds{{entry=\"spare\",type=\"{kind}\"}}")
    };
    assert!(
        spare_lines()
            .await
            .iter()
            .any(|l| l.starts_with(&not_after("server-pair")))
    );
    // Another type: only the new type's expiry.
    write(&config, &yaml("type: ca-bundle, ca_file: ca.crt"));
    p.wait_log("the first reload", |v| {
        v["message"] == "configuration reloaded"
    })
    .await;
    let lines = spare_lines().await;
    assert!(
        lines.iter().any(|l| l.starts_with(&not_after("ca-bundle"))),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(&not_after("server-pair"))),
        "{lines:#?}"
    );
    // Files that do not load: no material series, and failing.
    write(&config, &yaml("type: ca-bundle, ca_file: missing.crt"));
    p.wait_log("the unused entry's failure", |v| {
        v["message"] == "unused entry has no usable material" && v["entry"] == "spare"
    })
    .await;
    // Failing once applied; pending instead if the watcher's look at the
    // new path comes first (a missing file is waited on for settle_timeout,
    // as a writer may still be at work): reported either way.
    wait_until(WAIT, "spare reported failing or pending", || async move {
        spare_lines().await.iter().any(|l| {
            l == "hotproxy_cert_reload_failing{entry=\"spare\"} 1"
                || l == "hotproxy_cert_reload_pending{entry=\"spare\"} 1"
        })
    })
    .await;
    let lines = spare_lines().await;
    assert!(
        !lines.iter().any(
            |l| l.starts_with("hotproxy_cert_not_after_timestamp_seconds")
                || l.starts_with("hotproxy_cert_last_reload_timestamp_seconds")
        ),
        "{lines:#?}"
    );
}

/// An unused entry whose files do not load is warned about when its
/// configuration applies, not when it is rejected for something else: a
/// rejected configuration changes nothing, and its retries (backoff up to
/// 30 s, for as long as it stays rejected) used to repeat the warning each
/// time. Once the configuration applies, the warning comes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_entry_is_warned_about_when_its_configuration_applies() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let yaml = |routes: &str| {
        format!(
            r#"
admin: {{ bind: "127.0.0.1:0" }}
watch: {{ debounce: 20ms, poll_interval: 200ms }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: spare, type: ca-bundle, ca_file: missing.crt }}
  - {{ id: broken, type: server-pair, cert_file: gone.crt, key_file: gone.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [ {{ ref: edge }}{routes} ] }}
"#
        )
    };
    let config = s.config(&yaml(""));
    let mut p = Proxy::start(&config);
    let warned = |p: &Proxy| {
        p.logs()
            .iter()
            .filter(|l| l.contains("unused entry has no usable material") && l.contains("spare"))
            .count()
    };
    p.wait_log("the start-up warning", |v| {
        v["message"] == "unused entry has no usable material" && v["entry"] == "spare"
    })
    .await;
    assert_eq!(warned(&p), 1);
    // `broken` referenced: the configuration is rejected, and retried;
    // spare is not warned about again. (The second retry begins after the
    // first has ended.)
    write(&config, &yaml(", { ref: broken }"));
    p.wait_log("the rejection", |v| {
        v["message"] == "configuration rejected; the running configuration stays"
    })
    .await;
    wait_until(WAIT, "two retries", || {
        let retries = p
            .logs()
            .iter()
            .filter(|l| l.contains("reading the configuration file again"))
            .count();
        async move { retries >= 2 }
    })
    .await;
    assert_eq!(warned(&p), 1, "{:#?}", p.logs());
}

/// An unused entry whose files first load during a configuration apply
/// (its definition unchanged) reports its expiry and warns that it is
/// expired; so does expired material created through the API.
#[tokio::test]
async fn an_entry_first_loaded_by_a_reload_reports_its_expiry() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    // Nothing watched: only SIGHUP applies the configuration, and its
    // apply is what loads `spare` (the entry re-reads after it find it
    // unchanged).
    let yaml = |extra: &str| {
        format!(
            r#"
admin: {{ bind: "127.0.0.1:0" }}
watch: {{ events: false, poll_interval: 1h }}
store: {{ path: data/store.json, key_file: data/store.key }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: spare, type: server-pair, cert_file: spare.crt, key_file: spare.key }}
{extra}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [ {{ ref: edge }} ] }}
"#
        )
    };
    let config = s.config(&yaml(""));
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let expired = ca.expired_server_pair(&["spare.example"]);
    s.pair("spare", &expired);
    write(
        &config,
        &yaml("  - { id: other, type: ca-bundle, ca_file: ca.crt }"),
    );
    // Written a minute ago: SIGHUP applies it at once rather than waiting
    // for a writer that might still be at work.
    std::fs::File::options()
        .write(true)
        .open(&config)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .unwrap();
    p.signal("HUP");
    let done = p
        .wait_log("SIGHUP: done", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIGHUP: done"))
        })
        .await;
    // The watcher reports the configuration file once after arming it (a
    // change between start-up's read and the watch is not lost): when the
    // edit above came first, that re-read applied it, and SIGHUP found it
    // unchanged. Either way a configuration apply loaded `spare`.
    let reloaded = p
        .logs()
        .iter()
        .any(|l| l.contains("\"configuration reloaded\""));
    assert!(
        done["config"] == "applied" || (done["config"] == "unchanged" && reloaded),
        "{done}"
    );
    let metrics = admin(api, "GET", "/metrics", None, None, &[]).await.body;
    assert!(
        metrics.contains(
            "hotproxy_cert_not_after_timestamp_seconds{entry=\"spare\",type=\"server-pair\"}"
        ),
        "{metrics}"
    );
    p.wait_log("spare's expiry warning", |v| {
        v["message"] == "certificate is expired (loaded anyway)" && v["entry"] == "spare"
    })
    .await;

    let created = ca.expired_server_pair(&["created.example"]);
    let r = admin(
        api,
        "POST",
        "/api/v1/certs",
        None,
        Some(
            serde_json::json!({"id": "created", "type": "server-pair", "source": "inline",
            "cert_pem": created.cert_pem, "key_pem": created.key_pem}),
        ),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    p.wait_log("the created entry's expiry warning", |v| {
        v["message"] == "certificate is expired (loaded anyway)" && v["entry"] == "created"
    })
    .await;
}

/// The leaf the listener serves for `localhost` and how many certificates
/// it sends with it.
async fn served_chain(addr: std::net::SocketAddr, ca: &str) -> (String, usize) {
    let tls = connect(addr, "localhost", client_config(ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    let chain = tls.get_ref().1.peer_certificates().unwrap();
    (fingerprint(chain[0].as_ref()), chain.len())
}

/// A renewal written in place in two steps (`cat leaf > edge.crt; cat
/// chain >> edge.crt`) leaves a whole leaf without its chain on disk for
/// a moment, closed after writing. That parses cleanly; it used to be
/// served at once, so clients that need the chain failed until the second
/// step. Now it is waited for (pending, saying why) and the whole chain is
/// served once written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_written_in_two_steps_is_not_served_cut() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let config = watched_edge(&s, &ca, "1h");
    let first = ca.server_pair(&["localhost"]);
    s.pair("edge", &first);
    write(
        &s.path("edge.crt"),
        &(first.cert_pem.clone() + &ca.cert_pem),
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert_eq!(
        served_chain(addr, &ca.cert_pem).await,
        (first.fingerprint.clone(), 2)
    );

    let next = ca.server_pair(&["localhost"]);
    write(&s.path("edge.key"), &next.key_pem);
    write(&s.path("edge.crt"), &next.cert_pem);
    let (leaf, ca_pem) = (next.fingerprint.clone(), ca.cert_pem.clone());
    wait_until(WAIT, "the leaf-only file looked at", || {
        let (leaf, ca_pem) = (leaf.clone(), ca_pem.clone());
        async move {
            let last = admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
                .await
                .json()["last_reload"]
                .clone();
            last["reason"]
                .as_str()
                .is_some_and(|r| r.contains("1 certificate(s) where 2 are served"))
                || served_chain(addr, &ca_pem).await.0 == leaf
        }
    })
    .await;
    assert_eq!(
        served_chain(addr, &ca.cert_pem).await.1,
        2,
        "a leaf without its chain was served"
    );

    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path("edge.crt"))
        .unwrap();
    f.write_all(ca.cert_pem.as_bytes()).unwrap();
    drop(f);
    let (leaf, ca_pem) = (next.fingerprint.clone(), ca.cert_pem.clone());
    wait_until(WAIT, "the whole renewed chain served", || {
        let (leaf, ca_pem) = (leaf.clone(), ca_pem.clone());
        async move { served_chain(addr, &ca_pem).await == (leaf, 2) }
    })
    .await;
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("certificate reload failed")),
        "the two-step write counted as a failure"
    );
}

/// A chain shortened on purpose (the same leaf, the CA certificate left
/// out) is served once it has stayed for settle_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_shortened_on_purpose_is_served_after_settle_timeout() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let config = watched_edge(&s, &ca, "300ms");
    let first = ca.server_pair(&["localhost"]);
    s.pair("edge", &first);
    write(
        &s.path("edge.crt"),
        &(first.cert_pem.clone() + &ca.cert_pem),
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert_eq!(served_chain(addr, &ca.cert_pem).await.1, 2);
    write(&s.path("edge.crt"), &first.cert_pem);
    let ca_pem = ca.cert_pem.clone();
    wait_until(WAIT, "the shorter chain served", || {
        let ca_pem = ca_pem.clone();
        async move { served_chain(addr, &ca_pem).await.1 == 1 }
    })
    .await;
    let last = admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
        .await
        .json()["last_reload"]
        .clone();
    assert_eq!(last["result"], "success", "{last}");
}

/// An entry that failed on a transient problem (its certificate file
/// missing past settle_timeout) and is then fixed in steps, the leaf
/// first and its chain after, waits on the leaf-only file for a
/// settle_timeout of its own: the proxy says it waits for the writer
/// before it serves a shorter chain. The wait used to be counted from the
/// first problem, long over, so the leaf without its chain was served at
/// its first read, with the warning and without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_cut_after_a_failure_is_waited_for_anew() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let config = watched_edge(&s, &ca, "300ms");
    let first = ca.server_pair(&["localhost"]);
    s.pair("edge", &first);
    write(
        &s.path("edge.crt"),
        &(first.cert_pem.clone() + &ca.cert_pem),
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert_eq!(
        served_chain(addr, &ca.cert_pem).await,
        (first.fingerprint.clone(), 2)
    );

    std::fs::remove_file(s.path("edge.crt")).unwrap();
    wait_until(
        WAIT,
        "the missing file counted as a failure",
        || async move {
            admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
                .await
                .json()["last_reload"]["result"]
                == "failure"
        },
    )
    .await;

    let next = ca.server_pair(&["localhost"]);
    write(&s.path("edge.key"), &next.key_pem);
    support::writers::mv_over(&s.path("edge.crt"), &next.cert_pem);
    let waits = |v: &serde_json::Value| {
        v["message"]
            == "certificate files changed but do not load yet; waiting for the writer to finish"
            && v["reason"]
                .as_str()
                .is_some_and(|r| r.contains("1 certificate(s) where 2 are served"))
    };
    let serves_cut = |v: &serde_json::Value| {
        v["message"]
            == "certificate chain is shorter than the one it replaces; serving it after settle_timeout"
    };
    p.wait_log("the leaf-only file looked at", |v| {
        waits(v) || serves_cut(v)
    })
    .await;
    let events: Vec<serde_json::Value> = p
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let waited = events.iter().position(waits);
    let served = events.iter().position(serves_cut);
    assert!(
        waited.is_some_and(|w| served.is_none_or(|s| w < s)),
        "the leaf without its chain was served without waiting for the writer"
    );

    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(s.path("edge.crt"))
        .unwrap();
    f.write_all(ca.cert_pem.as_bytes()).unwrap();
    drop(f);
    let (leaf, ca_pem) = (next.fingerprint.clone(), ca.cert_pem.clone());
    wait_until(WAIT, "the whole renewed chain served", || {
        let (leaf, ca_pem) = (leaf.clone(), ca_pem.clone());
        async move { served_chain(addr, &ca_pem).await == (leaf, 2) }
    })
    .await;
}
