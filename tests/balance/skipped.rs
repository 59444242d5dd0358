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

/// What an answer's addresses this host has no route to log.
const UNROUTED: &str = "upstream DNS answer has addresses this host has no route to; skipped";

/// A name answered its pod's address and `fe80::1`, a link-local address
/// with no interface that the kernel refuses a route (`EINVAL`), as an
/// IPv4-only host refuses every IPv6 address (`ENETUNREACH`): only the
/// pod is an endpoint, no dial fails, and the skipped address is logged.
/// Every answer's address was an endpoint: its dials failed, counted as
/// connect errors, retried or answered 502, and it was ejected (two such
/// used up the ejection cap). The test host routes IPv6, so the family
/// itself cannot be taken away here; the kernel's refusal is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_with_no_route_are_no_endpoints() {
    let dns = NameServer::start(&["127.0.0.2", "fe80::1"]).await;
    let name = own_name("unrouted");
    let mut w = app_over(&dns, &[&name], "    resolve_interval: 5s\n").await;
    for _ in 0..4 {
        let got = get_pod(&mut client(&w).await, "/").await;
        assert_eq!(got, (200, Some("pod".into())));
    }
    let m = metrics(&w).await;
    let app_lines = |word: &str| -> Vec<String> {
        (m.lines())
            .filter(|l| l.contains("upstream=\"app\"") && l.contains(word))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(app_lines("connect_error"), Vec::<String>::new(), "{m}");
    assert_eq!(app_lines("fe80"), Vec::<String>::new(), "{m}");
    let warned = w
        .proxy
        .wait_log("the unrouted address's warning", |v| {
            v["message"] == UNROUTED
        })
        .await;
    assert_eq!(warned["addresses"], "fe80::1", "{warned}");
}
