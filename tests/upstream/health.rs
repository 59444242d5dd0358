//! Active checks: a bounded read of a long body, a busy endpoint checked past its connection limit.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::common::*;
use crate::support::*;

/// An active check is judged by its status; it reads at most 64 KiB of
/// the body, so a check path that streams (a `/healthz` with a long report,
/// a download named by mistake) costs little per check. It read the whole
/// body: 64 MiB every interval here, on the one connection kept for it.
/// Now each check's connection is closed at the cap and the next dials.
#[tokio::test]
async fn an_active_check_reads_a_bounded_part_of_a_long_body() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config(
        "app",
        b.addr,
        &["health: { active: { path: /mebibytes/64, interval: 100ms, timeout: 20s } }"],
    ));
    p.listener_addr("public").await;
    let accepted = || b.accepted.load(Ordering::SeqCst);
    wait_until(
        WAIT,
        "three checks, each on a connection of its own",
        || async { accepted() >= 3 },
    )
    .await;
    // Each cut connection let through at most its socket buffers.
    let sent = b.bulk_sent.load(Ordering::SeqCst);
    assert!(
        sent < accepted() * (16 << 20),
        "{sent} bytes sent for {} checks",
        accepted()
    );
}

/// An endpoint whose every connection is taken (a long poll holds the one
/// `max_connections_per_server` allows) is busy, not failing: an active
/// check is judged on a connection of its own, past the limit, and passes.
/// It counted as a failed check and took the endpoint out of service while
/// it served; then it was skipped with no verdict, blind to an endpoint
/// that stopped answering (below). That connection closes with its check,
/// not pooled: each check dials anew.
#[tokio::test]
async fn an_active_check_on_a_busy_endpoint_passes_on_a_connection_of_its_own() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let health = "{ active: { path: /echo, interval: 100ms, timeout: 300ms, unhealthy_after: 1 } }";
    let (p, addr) = one_connection(&w, b.addr, health).await;
    let held = hold_the_connection(&w, addr).await;
    let hanging = || b.slow_in_flight.load(Ordering::SeqCst);
    wait_until(WAIT, "the long poll holds the connection", || async {
        hanging() == 1
    })
    .await;
    let passed = |p: &Proxy| {
        p.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "active check" && v["passed"] == true)
            .count()
    };
    let accepted = || b.accepted.load(Ordering::SeqCst);
    let (passed_then, accepted_then) = (passed(&p), accepted());
    wait_until(
        WAIT,
        "two checks passed past the held connection, each on a new one",
        || async { passed(&p) >= passed_then + 2 && accepted() >= accepted_then + 2 },
    )
    .await;
    assert_eq!(hanging(), 1, "the long poll lost its connection");
    let logs = p.logs();
    for line in [
        "upstream endpoint failed its active checks; out of service",
        "active check skipped: every connection to the endpoint is taken",
    ] {
        assert!(!logs.iter().any(|l| l.contains(line)), "logged: {line}");
    }
    held.abort();
}

/// A proxy whose one upstream, `app`, is `backend`, with `health`, one
/// connection a server (`max_connections_per_server: 1`) and a
/// `request_timeout` of ten minutes (longer than any wait here: the one
/// connection stays held); and its address.
async fn one_connection(
    w: &World,
    backend: std::net::SocketAddr,
    health: &str,
) -> (Proxy, std::net::SocketAddr) {
    let settings = [
        "max_connections_per_server: 1",
        "request_timeout: 10m",
        &format!("health: {health}"),
    ];
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", backend, &settings));
    let addr = p.listener_addr("public").await;
    (p, addr)
}

/// `health` with passive checks off and active ones of `/healthz` every
/// 100 ms, each within `timeout`, two failed in a row taking the endpoint
/// out of service.
fn checks_every_100ms(timeout: &str) -> String {
    format!(
        "{{ passive: {{ consecutive_failures: 0 }}, active: {{ path: /healthz, interval: 100ms, timeout: {timeout}, unhealthy_after: 2 }} }}"
    )
}

/// A request for `/hang` (never answered) on a connection of its own,
/// holding an upstream connection for as long as the proxy's
/// `request_timeout` allows: no client deadline ends it first. Abort the
/// task to let go.
async fn hold_the_connection(w: &World, addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let mut sender = h1_sender(w, addr).await;
    tokio::spawn(async move {
        let _ = sender
            .send_request(h1_request("GET", "/hang", Bytes::new()))
            .await;
    })
}

/// An endpoint that stopped answering (it completes TLS, then holds every
/// request) while requests hold every connection it may have
/// (`max_connections_per_server: 1`, here one request that outlives the
/// test), passive health off: its active checks fail, on a connection of
/// their own, and take it out of service. Each check found every
/// connection taken and was skipped, every interval, so the endpoint
/// stayed in service for as long as requests kept its connections busy.
#[tokio::test]
async fn an_endpoint_answering_nothing_fails_its_checks_while_requests_hold_its_connections() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let (mut p, addr) = one_connection(&w, b.addr, &checks_every_100ms("300ms")).await;
    p.wait_log("a check passed", |v| {
        v["message"] == "active check" && v["passed"] == true
    })
    .await;
    // The one connection, held by a request the backend never answers.
    let held = hold_the_connection(&w, addr).await;
    let hanging = || b.slow_in_flight.load(Ordering::SeqCst);
    wait_until(WAIT, "the request holds the connection", || async {
        hanging() == 1
    })
    .await;
    // Only now does the endpoint stop answering: no check before this
    // point could fail, only one past the held connection.
    b.hang_all.store(true, Ordering::SeqCst);
    p.wait_log("the endpoint taken out by its checks", |v| {
        v["message"] == "upstream endpoint failed its active checks; out of service"
    })
    .await;
    held.abort();
}

/// A failed active check's debug line names why it failed, as Envoy's
/// health-check event log does: the status received (`503`), no response
/// within `timeout`, a body not finished within it, the connect refused.
/// It said only `passed: false`.
#[tokio::test]
async fn a_failed_active_check_says_why() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let endless = Backend::start_h1("endless", &w.backend_pair, None).await;
    let check = |path: &str| {
        format!(
            "health: {{ passive: {{ consecutive_failures: 0 }}, active: {{ path: {path}, interval: 100ms, timeout: 300ms }} }}"
        )
    };
    let mut p = Proxy::start(
        &w.scene
            .one_upstream_config("app", b.addr, &[&check("/healthz")]),
    );
    p.listener_addr("public").await;
    let failed = |endpoint: std::net::SocketAddr, cause: &'static str| {
        let endpoint = endpoint.to_string();
        move |v: &serde_json::Value| {
            v["message"] == "active check"
                && v["passed"] == false
                && v["endpoint"] == endpoint.as_str()
                && v["cause"] == cause
        }
    };
    p.wait_log("a check passed", |v| {
        v["message"] == "active check" && v["passed"] == true && v["cause"].is_null()
    })
    .await;
    b.answer_status.store(503, Ordering::SeqCst);
    let line = p
        .wait_log("a check failed on its 503", failed(b.addr, "status"))
        .await;
    assert_eq!(line["status"], 503, "{line}");
    b.answer_status.store(0, Ordering::SeqCst);
    b.hang_all.store(true, Ordering::SeqCst);
    let line = p
        .wait_log("a check timed out", failed(b.addr, "timeout"))
        .await;
    assert!(line["status"].is_null(), "{line}");
    b.kill();
    p.wait_log("a check refused", failed(b.addr, "connect_refused"))
        .await;
    drop(p);
    let config = w
        .scene
        .one_upstream_config("app", endless.addr, &[&check("/endless")]);
    let mut p = Proxy::start(&config);
    p.listener_addr("public").await;
    let line = p
        .wait_log("a body not finished", failed(endless.addr, "body_timeout"))
        .await;
    assert_eq!(line["status"], 200, "{line}");
}

/// An HTTP/2 endpoint that holds every request for `/hang` (a long poll
/// the one connection `max_connections_per_server: 1` allows carries
/// here) and, once told, refuses every check (`REFUSED_STREAM`, as a pod
/// that hangs requests may refuse streams on every connection): each
/// check is sent again on a new connection, past the limit as a check's
/// own is, and fails (`protocol`) once the new ones refused it too; the
/// endpoint is taken out. The check sent again waited for a slot like a
/// request's, which the long poll held: every check was skipped as
/// `busy`, and the endpoint stayed in service.
#[tokio::test]
async fn a_check_refused_while_requests_hold_every_connection_is_sent_again_past_the_limit() {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    let w = world();
    let refuse = Arc::new(AtomicBool::new(false));
    let held = Arc::new(Mutex::new(Vec::new()));
    let (r, h) = (refuse.clone(), held.clone());
    let backend = h2_backend(&w.backend_pair, move |req, mut respond| {
        let path = req.uri().path();
        if path == "/hang" {
            h.lock().unwrap().push(respond);
        } else if path == "/healthz" && r.load(Ordering::SeqCst) {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        } else {
            let head = http::Response::builder().body(()).unwrap();
            if let Ok(mut tx) = respond.send_response(head, false) {
                let _ = tx.send_data(Bytes::from_static(b"ok"), true);
            }
        }
    })
    .await;
    let (mut p, addr) = one_connection(&w, backend, &checks_every_100ms("500ms")).await;
    p.wait_log("a check passed", |v| {
        v["message"] == "active check" && v["passed"] == true
    })
    .await;
    let hold = hold_the_connection(&w, addr).await;
    wait_until(WAIT, "the long poll holds the connection", || async {
        held.lock().unwrap().len() == 1
    })
    .await;
    refuse.store(true, Ordering::SeqCst);
    let line = p
        .wait_log("a check failed on its refusals", |v| {
            v["message"] == "active check" && v["passed"] == false
        })
        .await;
    assert_eq!(line["cause"], "protocol", "{line}");
    p.wait_log("the endpoint taken out by its checks", |v| {
        v["message"] == "upstream endpoint failed its active checks; out of service"
    })
    .await;
    hold.abort();
}

/// What a [`long_then_refusing`] backend saw: checks answered, streams
/// refused, and a wake-up when a connection holds `/long`.
#[derive(Default)]
struct LongSeen {
    answered: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
    long: tokio::sync::Notify,
}

/// An HTTP/2 backend (h2, over TLS) each of whose connections answers
/// every request `200` until it is sent `/long`, which it answers with a
/// head and a body that never ends; from then on it refuses every new
/// stream on that connection (`REFUSED_STREAM`, never a `GOAWAY`: a
/// server stuck on the connection its long stream keeps). Its other
/// connections still answer.
async fn long_then_refusing(pair: &TestPair) -> (std::net::SocketAddr, std::sync::Arc<LongSeen>) {
    let seen = std::sync::Arc::new(LongSeen::default());
    let s = seen.clone();
    let (addr, _) = h2_conns("127.0.0.1:0", pair, move |mut conn, _| {
        let seen = s.clone();
        async move {
            let mut long = Vec::new();
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                if req.uri().path() == "/long" {
                    let head = http::Response::new(());
                    long.push(respond.send_response(head, false).unwrap());
                    seen.long.notify_one();
                } else if !long.is_empty() {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                    seen.refused.fetch_add(1, Ordering::SeqCst);
                } else {
                    let head = http::Response::new(());
                    if let Ok(mut tx) = respond.send_response(head, false) {
                        let _ = tx.send_data(Bytes::from_static(b"ok"), true);
                    }
                    seen.answered.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    })
    .await;
    (addr, seen)
}

/// SPEC (Health): a check refused (`REFUSED_STREAM`) on the one pooled
/// connection (`max_connections_per_server: 1`), whose long stream keeps
/// it and its slot, is sent again on a connection of its own past the
/// limit, and passes there. Since a request refused thrice by such a
/// connection gets the refusal's `502` at once, the check was failed
/// (`protocol`) at its third refusal without that connection: every check
/// failed, and a healthy endpoint was taken out of service.
#[tokio::test]
async fn a_check_refused_by_the_connection_holding_the_only_slot_passes_on_its_own() {
    let w = world();
    let (backend, seen) = long_then_refusing(&w.backend_pair).await;
    let (mut p, addr) = one_connection(&w, backend, &checks_every_100ms("2s")).await;
    p.wait_log("a check passed", |v| {
        v["message"] == "active check" && v["passed"] == true
    })
    .await;
    let mut client = h2_to(&w, addr).await;
    let _long = send_all(&mut client, ["/long".to_owned()]).await;
    tokio::time::timeout(WAIT, seen.long.notified())
        .await
        .expect("the long stream at the backend");
    let answered = seen.answered.load(Ordering::SeqCst);
    // More checks than `unhealthy_after`, each refused on the pooled
    // connection first.
    wait_until(WAIT, "three checks refused, then answered", || async {
        seen.refused.load(Ordering::SeqCst) >= 3
            && seen.answered.load(Ordering::SeqCst) >= answered + 3
    })
    .await;
    let admin = p.admin_addr().await;
    let healthy = "hotproxy_upstream_endpoints{upstream=\"app\",state=\"healthy\"} 1";
    assert!(
        metrics_text(admin).await.lines().any(|l| l == healthy),
        "the endpoint in service"
    );
    let logs = p.logs();
    let out = "upstream endpoint failed its active checks; out of service";
    assert!(!logs.iter().any(|l| l.contains(out)), "logged: {out}");
    let failed = logs.iter().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["message"] == "active check" && v["passed"] == false)
    });
    assert!(!failed, "a check failed");
}
