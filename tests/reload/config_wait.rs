//! The configuration file's wait for its writer: a FIFO put in its place, a file not readable yet, a backoff's retry, a later edit.

use crate::common::*;
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
