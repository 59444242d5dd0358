//! Certificate entries over reloads: removed, redefined, unused, first loaded by a reload; Must-Staple warned about.

use crate::common::*;
use crate::support::*;

/// `/metrics`' series (no `#` lines) of the entry `spare`.
async fn spare_series(api: std::net::SocketAddr) -> Vec<String> {
    admin(api, "GET", "/metrics", None, None, &[])
        .await
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("entry=\"spare\""))
        .map(str::to_owned)
        .collect()
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
        let entry =
            "  - { id: spare, type: server-pair, cert_file: spare.crt, key_file: spare.key }";
        edge_yaml(WATCHED, if spare { entry } else { "" }, "", "")
    };
    let config = s.config(&yaml(true));
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let has_spare = || async move { !spare_series(api).await.is_empty() };
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
    let yaml = |spare: &str| edge_yaml(WATCHED, &format!("  - {{ id: spare, {spare} }}"), "", "");
    let config = s.config(&yaml(
        "type: server-pair, cert_file: spare.crt, key_file: spare.key",
    ));
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let not_after = |kind: &str| {
        format!("hotproxy_cert_not_after_timestamp_seconds{{entry=\"spare\",type=\"{kind}\"}}")
    };
    assert!(
        spare_series(api)
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
    let lines = spare_series(api).await;
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
        spare_series(api).await.iter().any(|l| {
            l == "hotproxy_cert_reload_failing{entry=\"spare\"} 1"
                || l == "hotproxy_cert_reload_pending{entry=\"spare\"} 1"
        })
    })
    .await;
    let lines = spare_series(api).await;
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
    let yaml = |refs: &str| {
        edge_yaml(
            WATCHED,
            "  - { id: spare, type: ca-bundle, ca_file: missing.crt }
  - { id: broken, type: server-pair, cert_file: gone.crt, key_file: gone.key }",
            refs,
            "",
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
        edge_yaml(
            "watch: { events: false, poll_interval: 1h }
store: { path: data/store.json, key_file: data/store.key }",
            &format!(
                "  - {{ id: spare, type: server-pair, cert_file: spare.crt, key_file: spare.key }}
{extra}"
            ),
            "",
            "",
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

/// A served certificate that requires OCSP stapling (Must-Staple), which
/// hotproxy does not do, loads with a warning naming the entry and its
/// file, and `check` lists it: it was served without a staple, silently,
/// and clients that enforce it (Firefox) refuse it. A certificate without
/// it gets no such warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_must_staple_certificate_is_warned_about() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s.pair("stapled", &ca.must_staple_server_pair(&["stapled.example"]));
    let entry =
        "  - { id: stapled, type: server-pair, cert_file: stapled.crt, key_file: stapled.key }";
    let config = s.config(&edge_yaml("", entry, ", { ref: stapled }", ""));
    let mut p = Proxy::start(&config);
    p.listener_addr("public").await;
    let warning = p
        .wait_log("the Must-Staple warning", |v| {
            v["level"] == "WARN"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("certificate requires OCSP stapling"))
        })
        .await;
    assert_eq!(warning["entry"], "stapled", "{warning}");
    let file = s.path("stapled.crt").display().to_string();
    assert_eq!(warning["file"], file.as_str(), "{warning}");
    let said = p
        .logs()
        .into_iter()
        .filter(|l| l.contains("requires OCSP stapling"))
        .count();
    assert_eq!(said, 1, "only the stapled entry is warned about");
    let (code, stdout, stderr) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let listed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("OCSP stapling"))
        .collect();
    assert_eq!(listed.len(), 1, "{stdout}");
    assert!(
        listed[0].starts_with("warning: entry stapled: "),
        "{stdout}"
    );
}
