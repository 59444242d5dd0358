//! The configuration file's wait for its writer: a FIFO put in its place, a file not readable yet, a backoff's retry, a later edit.

use crate::common::*;
use crate::support::writers::mv_over;
use crate::support::*;

/// The proxy's watch settings here: settle_timeout 2 s.
const WATCH: &str = "{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }";

/// A FIFO put where the configuration file was (`mkfifo`, then `mv` over
/// it) is refused at once, neither opened nor waited on as an empty file
/// being written (its length is 0: it was, for settle_timeout): the proxy keeps
/// serving, a SIGHUP is answered and so is a change through the admin
/// API, which the reloader thread makes. The race the reloader's open met
/// (a FIFO renamed in between its look and its open, which blocked the
/// thread for good) is put in place in `reload::tests`.
#[tokio::test]
async fn a_fifo_over_the_config_file_is_refused_and_the_reloader_goes_on() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let edge = ca.server_pair(&["localhost"]);
    s.pair("edge", &edge);
    let cfg = s.admin_config(WATCH, "[]", "edge", "");
    let (mut p, addr, api) = start_with_admin(&cfg).await;
    let fifo = s.path("config.fifo");
    mkfifo(&fifo);
    std::fs::rename(&fifo, &cfg).unwrap();
    p.wait_log("the FIFO refused", rejected("FIFO")).await;
    assert!(
        !p.logs()
            .iter()
            .any(|l| l.contains("configuration file empty")),
        "a FIFO waited on as an empty file"
    );
    p.signal("HUP");
    p.wait_log("SIGHUP answered", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SIGHUP: done"))
    })
    .await;
    let reload = admin(api, "POST", "/api/v1/certs/edge/reload", None, None, &[]).await;
    assert_eq!(reload.status, 200, "{}", reload.body);
    assert_serves(addr, "localhost", &ca.cert_pem, &edge.fingerprint).await;
}

/// A configuration file gone for good is waited on for settle_timeout,
/// then rejected; the backoff's retries that find it still missing read
/// it once each, not waiting again (SPEC §3) nor saying the wait again.
/// Before, each retry began another settle_timeout of reads every 100 ms
/// and said "configuration file missing; waiting for the writer" again,
/// at every backoff step.
#[tokio::test]
async fn a_backoff_retry_of_a_config_file_still_missing_does_not_wait_again() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    let config = base_config("a.crt", "a.key", "");
    let cfg = s.config(&config);
    let (mut p, addr) = serve(&cfg).await;
    std::fs::remove_file(&cfg).unwrap();
    p.wait_log("the missing file rejected", rejected("cannot read"))
        .await;
    // The backoff's first two retries (1 s after the rejection, then 2 s
    // after that), each a read of the file again.
    wait_until(WAIT, "two backoff retries", || async {
        let logged = messages(&p);
        let rejection = logged.iter().position(|m| m == REJECTION).unwrap();
        let again = logged[rejection..].iter();
        again
            .filter(|m| *m == "reading the configuration file again")
            .count()
            >= 2
    })
    .await;
    let waiting = "configuration file missing; waiting for the writer until settle_timeout";
    let said = messages(&p).iter().filter(|m| *m == waiting).count();
    assert_eq!(said, 1, "the wait said again by a backoff's retry");
    write(&cfg, &config);
    p.wait_log("restored", |v| {
        v["message"] == "configuration restored: the file matches the running configuration again"
    })
    .await;
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// `install -o hotproxy -m 0640 new.yaml config.yaml` (GNU install)
/// unlinks the file, creates it owned by whoever runs install, mode 0600,
/// writes it, and only then sets its owner and mode: the proxy, running
/// as another user, finds it there but not readable. That is a writer at
/// work, waited on (SPEC §3) as an entry file is, not rejected (logged,
/// counted) at once. As root the test installs the file as root and runs
/// the proxy as `nobody` (root reads any file); as another user, it
/// installs the file with no permission at all. settle_timeout is 10
/// minutes: the edit applies because the owner came, not because a wait
/// ran out.
#[tokio::test]
async fn a_config_file_installed_unreadable_for_a_moment_is_waited_on() {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let s = Scene::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca = TestCa::new("ca");
    let (a, b) = pairs_a_and_b(&s, &ca);
    let config = |stem: &str| {
        base_config(
            &format!("{stem}.crt"),
            &format!("{stem}.key"),
            "\nadmin: { bind: \"127.0.0.1:0\" }",
        )
        .replace("settle_timeout: 2s", "settle_timeout: 10m")
    };
    let cfg = s.config(&config("a"));
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let mut p = match root {
        true => Proxy::start_as(&cfg, s.dir.path(), NOBODY, NOBODY),
        false => Proxy::start(&cfg),
    };
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;

    std::fs::remove_file(&cfg).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if root { 0o600 } else { 0o000 })
        .open(&cfg)
        .unwrap();
    std::io::Write::write_all(&mut f, config("b").as_bytes()).unwrap();
    drop(f);
    let waited = "configuration file not readable; waiting for the writer until settle_timeout";
    let seen = p
        .wait_log("the unreadable file waited for or rejected", |v| {
            v["message"] == waited || v["message"] == REJECTION
        })
        .await;
    assert_eq!(seen["message"], waited, "{seen}");
    // install's last steps: the owner (the proxy's user), then the mode.
    if root {
        std::os::unix::fs::chown(&cfg, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    until_served(addr, "localhost", &ca.cert_pem, &b.fingerprint).await;
    p.wait_log("applied", |v| v["message"] == "configuration reloaded")
        .await;
    nothing_rejected(&p, admin, "rejected while the writer was at work").await;
}

/// A new configuration edit whose wait for its entry files ends in a
/// rejection is a new bad write, counted, even when it fails as the last
/// rejection did (SPEC §5: one bad write counts one). The read ending a
/// wait comes from the reloader's retries, and was taken for a backoff's
/// retry failing the same way: the second edit was neither counted nor
/// logged, and `hotproxy_config_reloads_total` said one bad write; then
/// it was counted but still not logged (no "configuration rejected" for
/// the operator's new edit).
#[tokio::test]
async fn a_new_edit_whose_wait_ends_as_the_last_rejection_did_is_counted() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let (a, _) = pairs_a_and_b(&s, &ca);
    let config = base_config("a.crt", "a.key", "\nadmin: { bind: \"127.0.0.1:0\" }");
    let cfg = s.config(&config);
    let (mut p, addr) = serve(&cfg).await;
    let admin = p.admin_addr().await;
    let failed = |n: u32| format!(r#"hotproxy_config_reloads_total{{result="failure"}} {n}"#);
    // Files that never come: waited on for settle_timeout, then rejected.
    let edit = with_new_entry(&config);
    write(&cfg, &edit);
    p.wait_log("the edit rejected", rejected("new.crt")).await;
    wait_metric(admin, &failed(1), WAIT).await;
    // Written just after a backoff's retry, so that the watcher's read,
    // not the next retry's (2 s on), begins the second edit's wait.
    wait_until(WAIT, "a backoff retry", || async {
        let logged = messages(&p);
        let rejection = logged.iter().position(|m| m == REJECTION).unwrap();
        logged[rejection..].contains(&"reading the configuration file again".to_owned())
    })
    .await;
    write(&cfg, &format!("{edit}# the second edit\n"));
    p.wait_logs("the second edit waited on", 2, |v| {
        v["message"] == WAITED_FOR_ENTRY_FILES
    })
    .await;
    wait_metric(admin, &failed(2), WAIT).await;
    // And logged: the operator's new edit is told rejected, as it is counted.
    p.wait_logs("the second edit rejected", 2, rejected("new.crt"))
        .await;
    assert_serves(addr, "localhost", &ca.cert_pem, &a.fingerprint).await;
}

/// A second, different edit read late in a running wait for entry files
/// is a new write: it is waited on for a settle_timeout of its own, not
/// the rest of the first edit's (it was rejected after a fraction of
/// settle_timeout, or at its first read). The proxy is stopped (SIGSTOP)
/// for settle_timeout after the first edit's wait began, and the second
/// edit written meanwhile: its first read comes when the first edit's
/// wait has run out. `config_file`'s unit tests cover when a new edit
/// has a wait of its own; this one, that the reload waits on it then
/// (the line said again, no rejection, applied once its files come).
/// settle_timeout is 30 s: the second edit's wait outlasts what follows
/// its first read on a loaded machine (with 3 s it could run out first).
#[tokio::test]
async fn a_second_edit_late_in_a_wait_is_waited_on_for_its_own_settle_timeout() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    let new = ca.server_pair(&["new.localhost"]);
    s.pair("a", &a);
    let config = base_config("a.crt", "a.key", "\nadmin: { bind: \"127.0.0.1:0\" }")
        .replace("settle_timeout: 2s", "settle_timeout: 30s");
    let cfg = s.config(&config);
    let (mut p, addr) = serve(&cfg).await;
    let admin = p.admin_addr().await;
    let edit = with_new_entry(&config);
    write(&cfg, &edit);
    waited_not_rejected(&mut p, 1, WAITED_FOR_ENTRY_FILES).await;
    p.signal("STOP");
    // The proxy's clock runs on while it is stopped; nothing of it can be
    // awaited meanwhile. Once it resumes, the first edit's wait is over.
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    write(&cfg, &format!("{edit}# the second edit\n"));
    p.signal("CONT");
    waited_not_rejected(&mut p, 2, WAITED_FOR_ENTRY_FILES).await;
    mv_over(&s.path("new.key"), &new.key_pem);
    mv_over(&s.path("new.crt"), &new.cert_pem);
    until_served(addr, "new.localhost", &ca.cert_pem, &new.fingerprint).await;
    nothing_rejected(&p, admin, "the second edit rejected").await;
}

/// SIGHUP's summary says what a deferred configuration read waits for:
/// the entries whose files it names that do not load yet, or the file's
/// own state (missing). Every deferral said "deferred until the file is
/// written whole", sending the operator to a file that was whole.
/// settle_timeout is 10 minutes: the waits end because the files came.
#[tokio::test]
async fn sighup_says_what_a_deferred_configuration_read_waits_for() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    let new = ca.server_pair(&["new.localhost"]);
    s.pair("a", &a);
    let config =
        base_config("a.crt", "a.key", "").replace("settle_timeout: 2s", "settle_timeout: 10m");
    let cfg = s.config(&config);
    let (mut p, addr) = serve(&cfg).await;
    let edit = with_new_entry(&config);
    mv_over(&s.path("new.crt"), &new.cert_pem);
    write(&cfg, &edit);
    waited_not_rejected(&mut p, 1, WAITED_FOR_ENTRY_FILES).await;
    let summary = sighup_summary(&mut p, 1).await;
    assert_eq!(
        summary["config"],
        "deferred until the entry files it names settle: listeners.public.tls.certs[1]",
        "{summary}"
    );
    mv_over(&s.path("new.key"), &new.key_pem);
    until_served(addr, "new.localhost", &ca.cert_pem, &new.fingerprint).await;

    std::fs::remove_file(&cfg).unwrap();
    let missing = "configuration file missing; waiting for the writer until settle_timeout";
    waited_not_rejected(&mut p, 1, missing).await;
    let summary = sighup_summary(&mut p, 2).await;
    assert_eq!(
        summary["config"], "deferred while the file is missing",
        "{summary}"
    );
    // Written back as it was before the edit: applied once there.
    write(&cfg, &config);
    p.wait_logs("the file back, applied", 2, |v| {
        v["message"] == "configuration reloaded"
    })
    .await;
    assert!(
        !messages(&p).iter().any(|m| m == REJECTION),
        "rejected while the writer was at work"
    );
}

/// Sends SIGHUP and returns its summary line, the `n`th said.
async fn sighup_summary(p: &mut Proxy, n: usize) -> serde_json::Value {
    p.signal("HUP");
    let done = |v: &serde_json::Value| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SIGHUP: done"))
    };
    p.wait_logs("SIGHUP's summary", n, done).await;
    let logs = p.logs();
    let said = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    said.filter(|v| done(v)).nth(n - 1).unwrap()
}

/// Waits until the configuration read was said waited on (`waited`, its
/// message) `n` times, and fails if it was rejected first.
async fn waited_not_rejected(p: &mut Proxy, n: usize, waited: &str) {
    let what = format!("the wait said {n} times, or a rejection");
    wait_until(WAIT, &what, || async {
        let logged = messages(p);
        logged.iter().any(|m| m == REJECTION) || logged.iter().filter(|m| *m == waited).count() >= n
    })
    .await;
    assert!(
        !messages(p).iter().any(|m| m == REJECTION),
        "rejected while the writer was at work"
    );
}

/// The user `nobody`, whom the proxy runs as when the test is root.
const NOBODY: u32 = 65534;

/// The log's word for a configuration rejected.
const REJECTION: &str = "configuration rejected; the running configuration stays";

/// Neither a rejection logged (`what` says which) nor a failure counted.
async fn nothing_rejected(p: &Proxy, admin: std::net::SocketAddr, what: &str) {
    assert!(!messages(p).iter().any(|m| m == REJECTION), "{what}");
    let failures = r#"hotproxy_config_reloads_total{result="failure"}"#;
    assert_eq!(
        metric(admin, failures).await,
        Some(0.0),
        "a failure counted"
    );
}

/// The messages the proxy logged, in order.
fn messages(p: &Proxy) -> Vec<String> {
    p.logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}
