//! What is logged and counted: SIGHUP, a restored config, a kubelet swap with nothing above INFO.

use crate::common::*;
use crate::support;
use crate::support::*;

/// Every SIGHUP says how it went and counts; a configuration restored after
/// a rejected one is logged and counted (before: nothing moved); an applied
/// one says what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_a_restored_config_are_logged_and_counted() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let yaml = |prefix: &str| {
        edge_yaml(
            WATCHED,
            "",
            "",
            &format!(
                "    routes: [ {{ path_prefix: {prefix}, upstream: app }} ]
upstreams:
  - {{ name: app, servers: [http://127.0.0.1:9] }}"
            ),
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
    assert_eq!(done["entries_pending"], 0, "{done}");
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

/// A SIGHUP while a writer is half-way (a new key written, its
/// certificate not yet) counts the entry as pending, not refused, and its
/// line stays INFO: it used to say "some certificate files were refused"
/// (WARN, `entries_refused` 1) for files the API showed as waited on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_mid_write_counts_the_entry_pending_not_refused() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    // A long settle_timeout: the wait outlasts the test.
    let (_config, mut p, api) = watched(&s, &ca, "1h").await;
    let next = ca.server_pair(&["localhost"]);
    support::writers::mv_over(&s.path("edge.key"), &next.key_pem);
    wait_until(
        WAIT,
        "the key that does not match yet waited on",
        || async move { last_reload(api).await["result"] == "pending" },
    )
    .await;

    p.signal("HUP");
    let done = p
        .wait_log("SIGHUP outcome", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIGHUP: done"))
        })
        .await;
    assert_eq!(done["message"], "SIGHUP: done", "{done}");
    assert_eq!(done["level"], "INFO", "{done}");
    assert_eq!(done["entries_refused"], 0, "{done}");
    assert_eq!(done["entries_pending"], 1, "{done}");
    assert_eq!(last_reload(api).await["result"], "pending");
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
    // What the swaps log, not the start's lines: the warning that the
    // host's open file limit is below what 10,000 connections may need
    // depends on the host (SPEC §1), not on the swap.
    let started = p.logs().len();
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
        .skip(started)
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

/// A SIGHUP whose read is deferred (the file looks mid-write: here an mtime
/// ahead, as `cp -p` from a host ahead in time leaves it) counts when the
/// read is done. The deferred read ran as a retry, not as asked, so an
/// unchanged file (or one failing as before) was not counted at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_sighup_is_counted() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    // Nothing watched but the watcher's one report after arming.
    let config = s.config(&edge_yaml(
        "watch: { events: false, poll_interval: 1h }",
        "",
        "",
        "",
    ));
    let ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let set_mtime = |at| {
        std::fs::File::options()
            .write(true)
            .open(&config)
            .unwrap()
            .set_modified(at)
            .unwrap()
    };
    set_mtime(ahead);
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    let again = |p: &Proxy| {
        p.logs()
            .iter()
            .filter(|l| l.contains("\"reading the configuration file again\""))
            .count()
    };
    // That report's look at the file is deferred too, then read: from
    // here on only SIGHUP looks.
    wait_until(WAIT, "the watcher's first read", || async {
        again(&p) == 1
    })
    .await;
    let ok = r#"hotproxy_config_reloads_total{result="success"}"#;
    assert_eq!(metric(api, ok).await, Some(0.0));
    set_mtime(ahead + std::time::Duration::from_secs(1));
    p.signal("HUP");
    let done = p
        .wait_log("SIGHUP outcome", |v| v["message"] == "SIGHUP: done")
        .await;
    assert_eq!(
        done["config"], "deferred until the file is written whole",
        "{done}"
    );
    wait_until(WAIT, "the deferred read", || async { again(&p) == 2 }).await;
    wait_until(WAIT, "the SIGHUP counted", || async move {
        metric(api, ok).await == Some(1.0)
    })
    .await;
}
