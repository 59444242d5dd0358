//! The configuration file itself: hot reload, files that come later, SIGHUP, a missing file, a future mtime.

use std::time::Duration;

use crate::common::*;
use crate::support::writers::mv_over;
use crate::support::*;

/// A configuration edit applies live; a broken one is rejected whole and the old one keeps serving.
#[tokio::test]
async fn config_hot_reload() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b) = pairs_a_and_b(&s, &ca);
    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let (mut p, addr) = serve(&cfg).await;
    write(
        &cfg,
        &base_config("b.crt", "b.key", "").replace("debounce: 50ms", "debounse: 50ms"),
    );
    p.wait_log("rejected", rejected("debounse")).await;
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    write(&cfg, &base_config("b.crt", "b.key", ""));
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;

    // An in-place writer that stops mid-way: an empty file, then one cut
    // before its listeners (valid YAML). Neither may stop what is served.
    write(&cfg, "");
    p.wait_log("empty file rejected", rejected("the file is empty"))
        .await;
    let full = base_config("b.crt", "b.key", "");
    write(&cfg, &full[..full.find("listeners:").unwrap()]);
    p.wait_log("cut file rejected", rejected("has no listeners"))
        .await;
    assert_serves(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    // A listener added by an edit is bound (on the reloader thread) and
    // serves; the existing one keeps its socket.
    let second = "  - name: second\n    bind: 127.0.0.1:0\n    tls:\n      certs: [{ cert_file: a.crt, key_file: a.key }]";
    write(&cfg, &base_config("b.crt", "b.key", second));
    let added = p.listener_addr("second").await;
    assert_serves(added, "localhost", &ca.cert_pem, &a.fingerprint).await;
    assert_serves(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
}

/// A configuration rejected for what it names that is not there yet is
/// applied once it is, with no further edit and nothing watching the new
/// files (kubelet updates a ConfigMap and a Secret separately: the
/// configuration naming the new key often lands first).
#[tokio::test]
async fn a_rejected_configuration_is_applied_once_its_files_come() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    let new = ca.server_pair(&["new.localhost"]);
    s.pair("a", &a);
    // No events and a one-hour poll: only the retry can see the new files.
    let unwatched = base_config("a.crt", "a.key", "\nadmin: { bind: \"127.0.0.1:0\" }").replace(
        "debounce: 50ms, poll_interval: 300ms",
        "events: false, poll_interval: 1h",
    );
    let cfg = s.config(&unwatched);
    let (mut p, addr) = serve(&cfg).await;
    let admin = p.admin_addr().await;
    let edited = with_new_entry(&unwatched);
    write(&cfg, &edited);
    p.signal("HUP");
    p.wait_log("rejected", rejected("new.crt")).await;
    let failures = r#"hotproxy_config_reloads_total{result="failure"}"#;
    // The key first, then the certificate, each renamed in whole: a retry
    // in between still finds only new.crt missing, the same rejection, not
    // counted again (a key missing after the certificate came, or a key
    // read half written, would be a rejection of another kind, counted:
    // seen under load).
    mv_over(&s.path("new.key"), &new.key_pem);
    mv_over(&s.path("new.crt"), &new.cert_pem);
    until_served(addr, "new.localhost", &ca.cert_pem, &new.fingerprint).await;
    let failed = format!("{failures} 1");
    assert!(
        metrics_text(admin).await.lines().any(|l| l == failed),
        "one rejection counted"
    );
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// A configuration edit naming files still being installed (a key not
/// there yet when the configuration lands, certbot relinking one link at
/// a time) is a writer at work, as it is for an entry's reload: the read
/// is deferred until the files load, bounded by settle_timeout, not
/// rejected at once (before: "configuration rejected" logged and a failure
/// counted, then applied at the next retry). settle_timeout is 10 minutes
/// here: the edit applies because the key came, not because a wait ran out.
#[tokio::test]
async fn a_config_edit_naming_a_key_still_being_installed_is_waited_for() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    let new = ca.server_pair(&["new.localhost"]);
    s.pair("a", &a);
    let config = base_config("a.crt", "a.key", "\nadmin: { bind: \"127.0.0.1:0\" }")
        .replace("settle_timeout: 2s", "settle_timeout: 10m");
    let cfg = s.config(&config);
    let (mut p, addr) = serve(&cfg).await;
    let admin = p.admin_addr().await;
    mv_over(&s.path("new.crt"), &new.cert_pem);
    write(&cfg, &with_new_entry(&config));
    waited_not_rejected(
        &mut p,
        "the edit waited for or rejected",
        WAITED_FOR_ENTRY_FILES,
    )
    .await;
    mv_over(&s.path("new.key"), &new.key_pem);
    until_served(addr, "new.localhost", &ca.cert_pem, &new.fingerprint).await;
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    let failures = r#"hotproxy_config_reloads_total{result="failure"}"#;
    let metrics = metrics_text(admin).await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with(failures) && l != format!("{failures} 0")),
        "a failure counted while the key was being installed:\n{metrics}"
    );
    assert!(
        !p.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["message"] == REJECTION),
        "rejected while the writer was at work"
    );
}

/// SIGHUP re-reads every file and the configuration even when nothing
/// watches them (no events, a one-hour poll).
#[tokio::test]
async fn sighup_rereads_everything() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b, c) = (
        ca.server_pair(&["localhost"]),
        ca.server_pair(&["localhost"]),
        ca.server_pair(&["localhost"]),
    );
    s.pair("a", &a);
    s.pair("c", &c);
    let unwatched = |cert: &str, key: &str| {
        base_config(cert, key, "").replace(
            "watch: { debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }",
            "watch: { events: false, poll_interval: 1h }",
        )
    };
    let cfg = s.config(&unwatched("a.crt", "a.key"));
    let (p, addr) = serve(&cfg).await;
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    // New material under the same names: only the signal can reveal it.
    mv_over(&s.path("a.key"), &b.key_pem);
    mv_over(&s.path("a.crt"), &b.cert_pem);
    p.signal("HUP");
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    // A configuration edit pointing elsewhere.
    write(&cfg, &unwatched("c.crt", "c.key"));
    p.signal("HUP");
    until_served(addr, "localhost", &ca.cert_pem, &c.fingerprint).await;
}

/// A configuration file briefly missing (`rm` then `cp`) is a writer at
/// work: waited on for settle_timeout, not rejected at once; missing for
/// longer, it is rejected and the running configuration stays.
#[tokio::test]
async fn a_briefly_missing_config_file_is_waited_for() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (_, b) = pairs_a_and_b(&s, &ca);
    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let (mut p, addr) = serve(&cfg).await;
    std::fs::remove_file(&cfg).unwrap();
    p.wait_log("the missing file waited for", |v| {
        v["message"] == "configuration file missing; waiting for the writer until settle_timeout"
    })
    .await;
    write(&cfg, &base_config("b.crt", "b.key", ""));
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    let any_rejection = |v: &serde_json::Value| {
        v["message"] == "configuration rejected; the running configuration stays"
    };
    assert!(
        !p.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| any_rejection(&v)),
        "rejected while the writer was at work"
    );
    // Gone for good: rejected once settle_timeout (2 s) has passed.
    std::fs::remove_file(&cfg).unwrap();
    p.wait_log("the missing file rejected", any_rejection).await;
    assert_serves(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
}

/// An empty configuration file is a truncating writer at work even when
/// its mtime reads as old (a coarse or lagging clock, `cp -p` setting the
/// source's): waited on until settle_timeout like a missing one, not
/// rejected at once. Before, the quiet check trusted the mtime alone and
/// the write that followed a moment later found a rejection logged (seen
/// in CI: a test's in-place write raced the watch).
#[tokio::test]
async fn an_empty_config_file_with_an_old_mtime_is_waited_for() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (_, b) = pairs_a_and_b(&s, &ca);
    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let (mut p, addr) = serve(&cfg).await;
    write(&cfg, "");
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&cfg)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let waited = "configuration file empty; waiting for the writer until settle_timeout";
    waited_not_rejected(&mut p, "the empty file waited for or rejected", waited).await;
    write(&cfg, &base_config("b.crt", "b.key", ""));
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    assert!(
        !p.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["message"] == REJECTION),
        "rejected while the writer was at work"
    );
}

/// A configuration file whose mtime is in the future (a host ahead in time:
/// `rsync -t`, `cp -p`, `tar x`, clock skew on a network filesystem) is
/// applied like any other, not deferred as a writer at work until its mtime
/// passes or settle_timeout runs out. settle_timeout is 10 minutes here, so
/// a proxy that defers on such an mtime does not apply it within the wait.
#[tokio::test]
async fn a_config_file_with_a_future_mtime_is_applied() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b) = pairs_a_and_b(&s, &ca);
    let config = |stem: &str| {
        base_config(&format!("{stem}.crt"), &format!("{stem}.key"), "")
            .replace("settle_timeout: 2s", "settle_timeout: 10m")
    };
    let cfg = s.config(&config("a"));
    let (_p, addr) = serve(&cfg).await;
    let ahead = std::time::SystemTime::now() + Duration::from_secs(3600);
    // `rsync -t`: a temp file with the sender's mtime, renamed over.
    let tmp = s.path("config.yaml.rsync");
    write(&tmp, &config("b"));
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(ahead)
        .unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    // `cp -p` in place: the same inode rewritten, then its mtime set.
    write(&cfg, &config("a"));
    std::fs::File::options()
        .write(true)
        .open(&cfg)
        .unwrap()
        .set_modified(ahead + Duration::from_secs(1))
        .unwrap();
    until_served(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// `hotproxy_config_last_reload_successful` is 1 after startup, 0 for as
/// long as the file on disk is rejected (a retry that fails the same way
/// counts nothing more, so the failure counter alone cannot say it still
/// is), and 1 again once the file applies or the running one is put back.
#[tokio::test]
async fn the_last_reload_gauge_is_0_while_the_file_is_rejected() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (_, b) = pairs_a_and_b(&s, &ca);
    let config = |stem: &str| {
        base_config(
            &format!("{stem}.crt"),
            &format!("{stem}.key"),
            "\nadmin: { bind: \"127.0.0.1:0\" }",
        )
    };
    let broken = |stem: &str| config(stem).replace("debounce: 50ms", "debounse: 50ms");
    let cfg = s.config(&config("a"));
    let (mut p, addr) = serve(&cfg).await;
    let admin = p.admin_addr().await;
    let gauge = |v: u8| format!("hotproxy_config_last_reload_successful {v}");
    wait_metric(admin, &gauge(1), WAIT).await;
    write(&cfg, &broken("b"));
    wait_metric(admin, &gauge(0), WAIT).await;
    // Read again (SIGHUP) and rejected the same way: still 0.
    p.signal("HUP");
    p.wait_log("SIGHUP rejected", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SIGHUP: done"))
            && v["config"] == "rejected"
    })
    .await;
    let metrics = metrics_text(admin).await;
    assert!(metrics.lines().any(|l| l == gauge(0)), "{metrics}");
    // The running configuration put back: restored, 1.
    write(&cfg, &config("a"));
    wait_metric(admin, &gauge(1), WAIT).await;
    // Rejected again, then a good new file: applied, 1.
    write(&cfg, &broken("b"));
    wait_metric(admin, &gauge(0), WAIT).await;
    write(&cfg, &config("b"));
    wait_metric(admin, &gauge(1), WAIT).await;
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
}

/// One anchor used in many places (a network list every route shares) is
/// what anchors are for, far below the 50,000 events aliases may replay:
/// such an edit applies. Over 100 uses of one anchor were refused as
/// "budget breached: AliasAnchorRatio { aliases: 120, anchors: 1 }", the
/// YAML parser's default guard against alias bombs, whatever they expanded
/// to.
#[tokio::test]
async fn one_anchor_used_by_many_routes_applies() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, b) = pairs_a_and_b(&s, &ca);
    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let (mut p, addr) = serve(&cfg).await;
    let routes: String = (0..120)
        .map(|i| format!("      - {{ path_prefix: /r{i}/, upstream: api, allow_from: *nets }}\n"))
        .collect();
    let shared = format!(
        "    routes:\n      - {{ path_prefix: /first/, upstream: api, allow_from: &nets [127.0.0.0/8, 10.0.0.0/8] }}\n{routes}upstreams:\n  - {{ name: api, servers: [\"http://127.0.0.1:9\"] }}"
    );
    mv_over(&cfg, &base_config("b.crt", "b.key", &shared));
    p.wait_log("the reload", |v| {
        v["message"] == "configuration reloaded"
            || v["message"] == "configuration rejected; the running configuration stays"
    })
    .await;
    assert_serves(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    assert_ne!(a.fingerprint, b.fingerprint);
}

/// A listener or upstream name goes into log lines, metric labels and the
/// admin API's paths (`/api/v1/listeners/{name}/cert`): one holding a line
/// break split a text log line (`listener removed ...`) in two, one with a
/// `/` could never be asked for. `check` refuses such names, naming the
/// field and showing the name escaped; a reload to one is rejected and the
/// running configuration stays. A Kubernetes label value passes.
#[tokio::test]
async fn names_that_logs_labels_or_paths_cannot_carry_are_refused() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    let upstream = |name: &str| {
        format!("upstreams:\n  - {{ name: {name}, servers: [\"http://127.0.0.1:9\"] }}")
    };
    let listener = |name: &str, upstream_name: &str| {
        base_config("a.crt", "a.key", &upstream(upstream_name))
            .replace("- name: public", &format!("- name: {name}"))
    };
    let check = |yaml: &str| {
        let cfg = s.config(yaml);
        run_cli(&["check", "--config", cfg.to_str().unwrap()])
    };
    let (code, out, err) = check(&listener("Edge_1.public-2", "api.v1_B-2"));
    assert_eq!(code, 0, "a Kubernetes label value is a name: {out}{err}");
    // A long one is shown as every value is: its first 64 bytes and `…`.
    let (long, long_shown) = ("u".repeat(254), format!("\"{}…\"", "u".repeat(64)));
    for (listener_name, upstream_name, at, shown) in [
        // A line break: the value is withheld (it may be a pasted key).
        (
            "\"pub\\nx\"",
            "api",
            "listeners[0].name",
            "<withheld: text of 2 lines>",
        ),
        (
            "\"pub\\u0007\"",
            "api",
            "listeners[0].name",
            "\"pub\\u{7}\"",
        ),
        ("\"pub x\"", "api", "listeners[0].name", "\"pub x\""),
        ("public", "api/v1", "upstreams[0].name", "\"api/v1\""),
        ("public", "\"..\"", "upstreams[0].name", "\"..\""),
        ("public", "café", "upstreams[0].name", "\"café\""),
        ("public", &long, "upstreams[0].name", &long_shown),
    ] {
        let (code, out, err) = check(&listener(listener_name, upstream_name));
        assert_eq!(code, 1, "{listener_name} / {upstream_name}: {out}{err}");
        assert!(
            err.contains(&format!("{at}: invalid name {shown}")),
            "{listener_name} / {upstream_name}: {err}"
        );
    }

    let cfg = s.config(&base_config("a.crt", "a.key", ""));
    let (mut p, addr) = serve(&cfg).await;
    write(
        &cfg,
        &base_config("a.crt", "a.key", "").replace("- name: public", "- name: \"pub\\nx\""),
    );
    p.wait_log("rejected", rejected("listeners[0].name: invalid name"))
        .await;
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    assert!(
        !p.logs().iter().any(|l| l.contains("listener removed")),
        "the running listener stays"
    );
}

/// A client-side timeout too small for any client to meet
/// (`header_read_timeout: 1ms`) is refused by `hotproxy check`, naming the
/// file and field, and a live edit to it is rejected: the running
/// configuration keeps serving, its own header_read_timeout unchanged.
#[tokio::test]
async fn a_header_read_timeout_below_its_floor_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    let limits = |t: &str| format!("    limits: {{ header_read_timeout: {t} }}");
    let cfg = s.config(&base_config("a.crt", "a.key", &limits("2s")));
    let (mut p, addr) = serve(&cfg).await;
    write(&cfg, &base_config("a.crt", "a.key", &limits("1ms")));
    let file = format!("{}: line 8: ", cfg.display());
    let field = format!("{file}listeners[0].limits.header_read_timeout: \"1ms\" is less than 1s");
    let (code, out, err) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    assert!(all.contains(&field), "{all}");
    p.wait_log("rejected", rejected(&field)).await;
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
    // A head sent well within the running 2s is still served.
    let mut c = connect_localhost(addr, &ca.cert_pem).await;
    c.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    c.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 "), "{first:?}");
}

/// The variable the proxy and `check` are given a value of 2 KiB in.
const BIG: &str = "HOTPROXY_TEST_BIG";

/// `${HOTPROXY_TEST_BIG}` written `n` times: a few bytes each in the file,
/// 2 KiB each expanded.
fn big_refs(n: usize) -> String {
    format!("${{{BIG}}}").repeat(n)
}

/// `${NAME}` is expanded within limits: a name of 3,000 references to a
/// 2 KiB value (6 MB expanded, from 60 KB of file) is refused at its line
/// and field, and five more listeners' of 2,000 each (4 MB each, 20 MB
/// together) at the one past the file's total, neither value shown; a reload to the first
/// is rejected and the old configuration keeps serving. Unbounded, a
/// million references in a 4 MiB file asked for 2 GB, and the process
/// (on a reload, the serving proxy) aborted.
#[tokio::test]
async fn env_expansion_past_its_limits_is_refused() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    let value = "v".repeat(2048);
    let env = [(BIG, value.as_str())];
    let base = base_config("a.crt", "a.key", "");
    let cfg = s.config(&base);
    let mut p = Proxy::start_logging(&cfg, "debug", &env);
    let addr = p.listener_addr("public").await;

    let check = |text: &str| {
        let path = s.path("check.yaml");
        write(&path, text);
        let out = output_within_deadline(
            std::process::Command::new(env!("CARGO_BIN_EXE_hotproxy"))
                .args(["check", "--config", path.to_str().unwrap()])
                .envs(env)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped()),
        );
        let printed = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{printed}");
        assert!(!printed.contains(&value[..64]), "{printed}");
        printed
    };
    let line_of = |text: &str, on: &str| text.lines().position(|l| l.contains(on)).unwrap() + 1;

    let one = base.replace("name: public", &format!("name: \"p{}\"", big_refs(3000)));
    let printed = check(&one);
    let at = line_of(&one, "name: \"p");
    assert!(
        printed.contains(&format!(
            "line {at}: listeners[0].name: with each `${{NAME}}` replaced, this value is \
             more than the 4194304 bytes a value may be; refused"
        )),
        "{printed}"
    );

    let five: String = (0..5)
        .map(|i| {
            format!(
                "  - name: \"l{i}{}\"\n    bind: 127.0.0.1:0\n    tls:\n      certs: [{{ cert_file: a.crt, key_file: a.key }}]\n",
                big_refs(2000)
            )
        })
        .collect();
    let many = base_config("a.crt", "a.key", &five);
    let printed = check(&many);
    let at = line_of(&many, "name: \"l4");
    assert!(
        printed.contains(&format!(
            "line {at}: listeners[5].name: with each `${{NAME}}` replaced, this value and \
             those before it come to more than the 16777216 bytes a file's values set from \
             the environment may; refused"
        )),
        "{printed}"
    );
    assert!(
        !printed.contains("listeners[4].name: with each"),
        "{printed}"
    );

    write(&cfg, &one);
    let event = p
        .wait_log("rejected", rejected("listeners[0].name: with each"))
        .await;
    assert!(!event.to_string().contains(&value[..64]), "{event}");
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// The log's word for a configuration rejected.
const REJECTION: &str = "configuration rejected; the running configuration stays";

/// Waits for the log's word that the configuration read was waited on
/// (`waited`, its message), and fails if it was rejected first.
async fn waited_not_rejected(p: &mut Proxy, what: &str, waited: &str) {
    let rejection = "configuration rejected; the running configuration stays";
    let seen = p
        .wait_log(what, |v| {
            v["message"] == waited || v["message"] == rejection
        })
        .await;
    assert_eq!(seen["message"], waited, "{seen}");
}
