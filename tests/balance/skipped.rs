//! An answer's unspecified addresses: their warning logged once, not again by each reload that builds the upstream anew.

use crate::common::*;
use crate::dns::{NameServer, app_over, own_name};
use crate::support::*;

/// The warning for an answer's skipped addresses.
const SKIPPED: &str = "upstream DNS answer has unspecified or multicast addresses; skipped";

/// A name answered `0.0.0.0` beside its pod: the warning is logged at
/// start, and not again by two rejected reloads that edit the upstream
/// nor by an edit applied. Each built the upstream anew, its skipped
/// addresses starting empty, and logged the same ones again: the SPEC
/// logs them when they change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_addresses_are_logged_once_across_reloads() {
    let dns = NameServer::start(&["127.0.0.2", "0.0.0.0"]).await;
    let name = own_name("skipped");
    let mut w = app_over(&dns, &[&name], "    resolve_interval: 5s\n").await;
    let port = w.pods[0].addr.port();
    let warned = w
        .proxy
        .wait_log("the skipped addresses' warning", |v| {
            v["message"] == SKIPPED
        })
        .await;
    assert_eq!(warned["addresses"], "0.0.0.0", "{warned}");
    // The upstream edited (its connect_timeout), so each reload builds it.
    let app = |timeout: &str| {
        let settings = format!("    resolve_interval: 5s\n    connect_timeout: {timeout}\n");
        upstream("app", &format!("https://{name}:{port}"), &settings)
    };
    // A listener on an address taken: rejected once the upstreams are built.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap();
    for k in 0..2 {
        let listener = format!("taken{k}");
        w.scene.config(&format!(
            "\nadmin: {{ bind: \"127.0.0.1:0\" }}\nlisteners:\n{}\n{}\nupstreams:{}\n",
            listener_yaml("public", "127.0.0.1:0", "[{ upstream: app }]"),
            listener_yaml(&listener, &taken.to_string(), "[{ upstream: app }]"),
            app("3s"),
        ));
        w.proxy
            .wait_log("the reload rejected", |v| {
                v["message"] == "configuration rejected; the running configuration stays"
                    && v["error"].as_str().unwrap_or("").contains(&listener)
            })
            .await;
    }
    w.scene.public_config("[{ upstream: app }]", &app("4s"));
    w.wait_reloaded("the edit applied").await;
    let logs = w.proxy.logs();
    let again: Vec<&String> = logs.iter().filter(|l| l.contains(SKIPPED)).collect();
    assert_eq!(
        again.len(),
        1,
        "the same skipped addresses logged again: {again:#?}"
    );
}
