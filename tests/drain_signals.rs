//! SIGHUP and SIGUSR1 during the shutdown drain, on the real process: still answered.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// While SIGTERM's drain runs (the default 30 s grace, kept going by a
/// request the backend never answers), logrotate's SIGUSR1 still reopens
/// the access log: the drained request's line goes to the new file, not
/// the rotated one. An operator's SIGHUP is still answered, its "SIGHUP:
/// done" line saying the configuration is ignored while shutting down,
/// and does not end the process. Both were swallowed once the drain
/// began: the drain's lines went to the rotated (or deleted) file, and
/// the SIGHUP had no line at all.
#[tokio::test]
async fn sighup_and_sigusr1_are_answered_during_the_drain() {
    let s = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    s.pair("a", &ca.server_pair(&["localhost"]));
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = Backend::start("echo", &backend_ca.server_pair(&["backend.local"]), None).await;
    let cfg = s.one_upstream_config("echo", backend.addr, &[]);
    let log = s.path("access.log");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains("shutdown_grace"), "the 30 s default applies");
    let logged = format!("access_log: {{ path: {}, format: json }}\n", log.display());
    write(&cfg, &(logged + &text));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    // A request the backend never answers keeps the drain going.
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let held =
        tokio::spawn(async move { get(addr, "localhost", client, false, "/hang", &[]).await });
    wait_until(WAIT, "the request is at the backend", || async {
        backend.slow_in_flight.load(SeqCst) == 1
    })
    .await;
    p.signal("TERM");
    p.wait_log("shutdown began", |v| {
        v["message"] == "shutting down: no new connections, draining open ones"
    })
    .await;

    // logrotate: move the file, SIGUSR1.
    let rotated = s.path("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    p.signal("USR1");
    p.wait_log("the access log reopened during the drain", |v| {
        v["message"] == "access log reopened"
    })
    .await;

    // An operator's reload: answered, ignored, the process still runs.
    p.signal("HUP");
    let done = p
        .wait_log("SIGHUP answered during the drain", |v| {
            v["message"] == "SIGHUP: done"
        })
        .await;
    assert_eq!(done["config"], "ignored: shutting down", "{done}");
    assert!(!held.is_finished(), "the drain is over already");

    // A second SIGTERM ends the drain: the cut request's line (`499`) is
    // written into the reopened file.
    p.signal("TERM");
    assert!(p.wait_exit(WAIT).await.success());
    let lines = read_access_log(&log);
    let seen: Vec<_> = lines.iter().map(|l| (&l["path"], &l["status"])).collect();
    assert_eq!(seen, [(&"/hang".into(), &499.into())]);
    assert!(
        read_access_log(&rotated).is_empty(),
        "a line in the rotated file"
    );
    assert!(held.await.unwrap().is_err(), "the request was cut");
}
