//! Chains written in steps: never served cut, shortened on purpose, cut after a failure.

use std::net::SocketAddr;

use crate::common::*;
use crate::support;
use crate::support::*;

/// The leaf the listener serves for `localhost` and how many certificates
/// it sends with it.
async fn served_chain(addr: SocketAddr, ca: &str) -> (String, usize) {
    let tls = connect(addr, "localhost", client_config(ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    let chain = tls.get_ref().1.peer_certificates().unwrap();
    (fingerprint(chain[0].as_ref()), chain.len())
}

/// The proxy serving `edge` (watched, with `settle_timeout`) as a leaf and
/// the CA, seen served whole.
struct Chained {
    s: Scene,
    ca: TestCa,
    first: TestPair,
    p: Proxy,
    addr: SocketAddr,
    api: SocketAddr,
}

async fn chained(settle: &str) -> Chained {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let config = watched_edge(&s, &ca, settle);
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
    Chained {
        s,
        ca,
        first,
        p,
        addr,
        api,
    }
}

/// The second step of a two-step write: the CA appended to edge.crt after
/// `next`'s leaf; then `next` is served with its chain.
async fn chain_completed(s: &Scene, ca: &TestCa, addr: SocketAddr, next: &TestPair) {
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

/// A renewal written in place in two steps (`cat leaf > edge.crt; cat
/// chain >> edge.crt`) leaves a whole leaf without its chain on disk for
/// a moment, closed after writing. That parses cleanly; it used to be
/// served at once, so clients that need the chain failed until the second
/// step. Now it is waited for (pending, saying why) and the whole chain is
/// served once written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_written_in_two_steps_is_not_served_cut() {
    let Chained {
        s,
        ca,
        p,
        addr,
        api,
        ..
    } = chained("1h").await;

    let next = ca.server_pair(&["localhost"]);
    write(&s.path("edge.key"), &next.key_pem);
    write(&s.path("edge.crt"), &next.cert_pem);
    let (leaf, ca_pem) = (next.fingerprint.clone(), ca.cert_pem.clone());
    wait_until(WAIT, "the leaf-only file looked at", || {
        let (leaf, ca_pem) = (leaf.clone(), ca_pem.clone());
        async move {
            let last = last_reload(api).await;
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

    chain_completed(&s, &ca, addr, &next).await;
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
    let Chained {
        s,
        ca,
        first,
        p: _p,
        addr,
        api,
    } = chained("300ms").await;
    write(&s.path("edge.crt"), &first.cert_pem);
    let ca_pem = ca.cert_pem.clone();
    wait_until(WAIT, "the shorter chain served", || {
        let ca_pem = ca_pem.clone();
        async move { served_chain(addr, &ca_pem).await.1 == 1 }
    })
    .await;
    let last = last_reload(api).await;
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
    let Chained {
        s,
        ca,
        mut p,
        addr,
        api,
        ..
    } = chained("300ms").await;

    std::fs::remove_file(s.path("edge.crt")).unwrap();
    wait_until(
        WAIT,
        "the missing file counted as a failure",
        || async move { last_reload(api).await["result"] == "failure" },
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

    chain_completed(&s, &ca, addr, &next).await;
}
