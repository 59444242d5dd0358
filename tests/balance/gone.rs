//! A name that stops existing (NXDOMAIN, or no address: NODATA): its endpoints go, where a failing resolver (SERVFAIL) keeps them.

use crate::common::*;
use crate::dns::*;
use crate::support::*;

/// What a removed endpoint logs.
const REMOVED: &str = "upstream endpoint removed; draining its pool";

/// A name answered the pod's address, then NXDOMAIN: the endpoint is
/// removed (its series too) and requests are answered `502` for an
/// upstream with no servers; answered again, it serves again; then
/// answered with no address (NODATA): removed again. Both kept the dead
/// pod's address for good, and a CNI gives a dead pod's IP to another
/// pod: requests went to an unrelated workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_gone_empties_its_endpoints() {
    let (dns, mut w) = app_by_name("gone", "100ms").await;
    let endpoint = format!("127.0.0.2:{}", w.pods[0].addr.port());
    let got = get_pod(&mut client(&w).await, "/").await;
    assert_eq!(got, (200, Some("pod".into())), "the name, answered");

    dns.no_such_name();
    let removed = |v: &serde_json::Value| v["message"] == REMOVED && v["endpoint"] == *endpoint;
    w.proxy
        .wait_logs("the pod removed: NXDOMAIN", 1, removed)
        .await;
    let gone = w
        .proxy
        .wait_log("the name's warning", |v| {
            v["message"] == "upstream DNS name has no addresses; its endpoints removed"
        })
        .await;
    assert_eq!(gone["upstream"], "app", "{gone}");
    let got = get_pod(&mut client(&w).await, "/").await;
    assert_eq!(got, (502, None), "no servers");
    let series = format!("endpoint=\"{endpoint}\"");
    let m = metrics(&w).await;
    let left: Vec<&str> = m.lines().filter(|l| l.contains(&series)).collect();
    assert!(left.is_empty(), "the endpoint's series stay: {left:#?}");

    dns.answer_with(&["127.0.0.2"]);
    wait_until(WAIT, "the pod back", || async {
        get_pod(&mut client(&w).await, "/").await.0 == 200
    })
    .await;
    dns.answer_with(&[]);
    w.proxy
        .wait_logs("the pod removed: NODATA", 2, removed)
        .await;
    let got = get_pod(&mut client(&w).await, "/").await;
    assert_eq!(got, (502, None), "no servers");
}
