//! Chains written in steps: never served cut, shortened on purpose, cut after a failure or mid-wait.

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
    serves_whole(addr, ca, next, "the whole renewed chain served").await;
}

/// Waits until the listener at `addr` serves `next` with its chain (`ca`).
async fn serves_whole(addr: SocketAddr, ca: &TestCa, next: &TestPair, what: &str) {
    let (leaf, ca_pem) = (next.fingerprint.clone(), ca.cert_pem.clone());
    wait_until(WAIT, what, || {
        let (leaf, ca_pem) = (leaf.clone(), ca_pem.clone());
        async move { served_chain(addr, &ca_pem).await == (leaf, 2) }
    })
    .await;
}

/// The entry's last reload is `pending`, its reason naming `why`.
async fn pending_on(api: SocketAddr, why: &str) -> bool {
    let last = last_reload(api).await;
    last["result"] == "pending" && last["reason"].as_str().is_some_and(|r| r.contains(why))
}

/// A log event: the proxy waits for the writer, the reason naming `why`.
fn waits_for(why: &str) -> impl Fn(&serde_json::Value) -> bool + '_ {
    move |v| v["message"] == WAITS && v["reason"].as_str().is_some_and(|r| r.contains(why))
}

/// A log event: the proxy serves a chain shorter than the one it replaces.
fn serves_cut(v: &serde_json::Value) -> bool {
    v["message"]
        == "certificate chain is shorter than the one it replaces; serving it after settle_timeout"
}

/// Waits for the log event (`looked_at`) of `waits` or of `instead`; then
/// `tested` checks the events so far (that the test's race was not lost),
/// and the proxy must have logged `waits` before any `instead`: `why`
/// otherwise.
async fn waited_first(
    p: &mut Proxy,
    looked_at: &str,
    waits: impl Fn(&serde_json::Value) -> bool,
    instead: impl Fn(&serde_json::Value) -> bool,
    tested: impl FnOnce(&[serde_json::Value]),
    why: &str,
) {
    p.wait_log(looked_at, |v| waits(v) || instead(v)).await;
    let events = events(p);
    tested(&events);
    let waited = events.iter().position(&waits);
    let other = events.iter().position(&instead);
    assert!(waited.is_some_and(|w| other.is_none_or(|o| w < o)), "{why}");
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
            last["reason"].as_str().is_some_and(|r| r.contains(CUT))
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
/// out) is served once it has stayed for settle_timeout, with a warning
/// naming the file (as the CA bundle's does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_shortened_on_purpose_is_served_after_settle_timeout() {
    let Chained {
        s,
        ca,
        first,
        mut p,
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
    let warned = p.wait_log("the shorter chain warned of", serves_cut).await;
    assert!(
        warned["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("edge.crt")),
        "the warning names no file: {warned}"
    );
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
    waited_first(
        &mut p,
        "the leaf-only file looked at",
        waits_for(CUT),
        serves_cut,
        |_| {},
        "the leaf without its chain was served without waiting for the writer",
    )
    .await;

    chain_completed(&s, &ca, addr, &next).await;
}

/// SIGSTOP the proxy and await it stopped (every thread of it); `change`
/// then edits its files, and it is let go on (SIGCONT) once `settle` has
/// passed since `seen`, when the wait in progress was seen started: its
/// first read after that comes with that wait's settle_timeout over, what
/// a writer's next step just before the deadline meets, without a race.
async fn frozen_until_settled(
    p: &Proxy,
    seen: tokio::time::Instant,
    settle: std::time::Duration,
    change: impl FnOnce(),
) {
    let pid = p.pid();
    p.signal("STOP");
    wait_until(WAIT, "the proxy stopped", || async move {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                stat.rsplit_once(')').is_some_and(|(_, rest)| {
                    matches!(rest.trim_start().chars().next(), Some('T' | 't'))
                })
            })
        })
    })
    .await;
    change();
    // A clock condition, not a guess: the proxy cannot move while stopped.
    tokio::time::sleep_until(seen + settle).await;
    p.signal("CONT");
}

/// The JSON log lines so far.
fn events(p: &Proxy) -> Vec<serde_json::Value> {
    p.logs()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

const WAITS: &str =
    "certificate files changed but do not load yet; waiting for the writer to finish";
const FAILED: &str = "certificate reload failed; keeping the previous material";
/// The reason a leaf-only file, the chain served being 2 long, is waited on.
const CUT: &str = "1 certificate(s) where 2 are served";

/// A chain cut short while the entry waits on another problem (a new key
/// written before its certificate, `cp leaf.key tls.key; cat leaf.crt >
/// tls.crt; cat chain >> tls.crt`) waits for a settle_timeout of its own.
/// It used to inherit what was left of the key's wait: the leaf-only file
/// read at the end of that wait was served at once, without its chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_cut_while_waiting_on_its_key_is_waited_for_anew() {
    let settle = std::time::Duration::from_secs(1);
    let Chained {
        s,
        ca,
        mut p,
        addr,
        api,
        ..
    } = chained("1s").await;

    let next = ca.server_pair(&["localhost"]);
    support::writers::mv_over(&s.path("edge.key"), &next.key_pem);
    wait_until(WAIT, "the key that does not match yet waited on", || {
        pending_on(api, "does not match")
    })
    .await;
    let seen = tokio::time::Instant::now();
    frozen_until_settled(&p, seen, settle, || {
        support::writers::mv_over(&s.path("edge.crt"), &next.cert_pem)
    })
    .await;

    waited_first(
        &mut p,
        "the leaf-only file looked at",
        waits_for(CUT),
        serves_cut,
        |events| {
            assert!(
                !events.iter().any(|v| v["message"] == FAILED),
                "the key's wait ended before the proxy was stopped: nothing was tested"
            )
        },
        "the leaf without its chain was served at the end of the key's wait",
    )
    .await;

    chain_completed(&s, &ca, addr, &next).await;
}

/// A certificate written back just before the wait on its missing file
/// runs out, its key following (`rm tls.crt`, then `cp new.crt tls.crt;
/// cp new.key tls.key`), is waited on anew: the certificate without its
/// key is another step of the writer. It used to inherit what was left of
/// the missing file's wait, and a failure was logged ("certificate reload
/// failed") for a write that was only half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_back_before_its_key_is_waited_for_anew() {
    let settle = std::time::Duration::from_secs(1);
    let Chained {
        s,
        ca,
        mut p,
        addr,
        api,
        ..
    } = chained("1s").await;

    std::fs::remove_file(s.path("edge.crt")).unwrap();
    wait_until(WAIT, "the missing file waited on", || {
        pending_on(api, "file not found")
    })
    .await;
    let seen = tokio::time::Instant::now();
    let next = ca.server_pair(&["localhost"]);
    let chain = next.cert_pem.clone() + &ca.cert_pem;
    frozen_until_settled(&p, seen, settle, || {
        support::writers::mv_over(&s.path("edge.crt"), &chain)
    })
    .await;

    let failed = |v: &serde_json::Value| v["message"] == FAILED;
    waited_first(
        &mut p,
        "the certificate without its key looked at",
        waits_for("does not match"),
        failed,
        |events| {
            assert!(
                !events.iter().any(|v| failed(v)
                    && v["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("file not found"))),
                "the missing file's wait ended before the proxy was stopped: nothing was tested"
            )
        },
        "the certificate without its key failed at the end of the missing file's wait",
    )
    .await;

    support::writers::mv_over(&s.path("edge.key"), &next.key_pem);
    serves_whole(addr, &ca, &next, "the new pair served").await;
}

/// A renewed certificate of the same length, its key reused, written over
/// the served one in place by a writer that does not truncate (`rsync
/// --inplace`, `dd conv=notrunc`) and read half-way: the new leaf's first
/// half on the old one's second half. Two reads agree, the DER parses and
/// the key matches: it was served, with a signature no client verifies.
/// The leaf's signature is checked against its issuer in the file: waited
/// on as a writer at work, then refused naming the file; the old leaf
/// stays served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_spliced_by_an_in_place_writer_is_not_served() {
    let Chained {
        s,
        ca,
        first,
        p: _p,
        addr,
        api,
    } = chained("300ms").await;
    let next = ca.renewed_same_length(&first, &["localhost"]);
    let half = first.der.len() / 2;
    let spliced = [&next.der[..half], &first.der[half..]].concat();
    let spliced_pem = certificate_pem(&spliced);
    let served_unverified = || async {
        let tls = connect(addr, "localhost", checks_name_later())
            .await
            .unwrap();
        fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref())
    };
    write(&s.path("edge.crt"), &(spliced_pem + &ca.cert_pem));
    wait_until(WAIT, "the spliced leaf refused or served", || async {
        last_reload(api).await["result"] == "failure"
            || served_unverified().await == fingerprint(&spliced)
    })
    .await;
    assert_eq!(
        served_unverified().await,
        first.fingerprint,
        "the spliced leaf was served"
    );
    let last = last_reload(api).await;
    let error = last["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("edge.crt") && error.contains("signature"),
        "the refusal names neither the file nor the signature: {last}"
    );
}

/// A chain whose intermediate bears the leaf's issuer name but another
/// key (an intermediate re-keyed under the same name, the chain file
/// taken from the other side): the leaf's authority key identifier names
/// a key the file does not hold, so its signature is not checked, and it
/// is served (clients that have the right intermediate verify it). It
/// used to be refused as a leaf spliced by a writer half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_with_a_same_named_intermediate_of_another_key_is_served() {
    let Chained {
        s,
        ca,
        first,
        p: _p,
        addr,
        api,
    } = chained("300ms").await;
    let next = ca.renewed_same_length(&first, &["localhost"]);
    let rekeyed = TestCa::new("ca");
    let served = || async {
        let tls = connect(addr, "localhost", checks_name_later())
            .await
            .unwrap();
        fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref())
    };
    write(
        &s.path("edge.crt"),
        &(next.cert_pem.clone() + &rekeyed.cert_pem),
    );
    wait_until(WAIT, "the chain served or refused", || async {
        last_reload(api).await["result"] == "failure" || served().await == next.fingerprint
    })
    .await;
    let last = last_reload(api).await;
    assert_eq!(served().await, next.fingerprint, "not served: {last}");
}
