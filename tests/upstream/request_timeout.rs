//! request_timeout and passive health: an endpoint is blamed only for the time it had (a slow small body, a retry's remainder).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

/// Streams an HTTP/2 backend holds unanswered until a test answers them.
type Held = Arc<Mutex<Vec<h2::server::SendResponse<Bytes>>>>;

/// An HTTP/2 backend at `at` that answers nothing until told: its requests
/// wait in the list returned.
async fn holding_backend(w: &World, at: &str) -> (SocketAddr, Held) {
    let held: Held = Arc::default();
    let h = held.clone();
    let addr = h2_backend_at(at, &w.backend_pair, move |_req, respond| {
        h.lock().unwrap().push(respond);
    })
    .await;
    (addr, held)
}

/// Once the first endpoint holds the request, at `at` refuse it
/// (`REFUSED_STREAM`): a retry that begins then, with what is left.
async fn refuse_at(held_first: &Held, at: tokio::time::Instant) {
    wait_until(WAIT, "the first has the request", || async {
        held_first.lock().unwrap().len() == 1
    })
    .await;
    tokio::time::sleep_until(at).await;
    for mut respond in held_first.lock().unwrap().drain(..) {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
    }
}

/// An endpoint whose TLS handshake never comes: the kernel's backlog
/// completes the connect, nothing answers the ClientHello (a dial that
/// runs into `connect_timeout`). Kept open while the listener lives.
async fn silent_endpoint(ip: &str) -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap()
}

/// One ejection ends passive health's count (`consecutive_failures: 1`).
const EJECT_AT_ONCE: &str = "health: { passive: { consecutive_failures: 1, eject_for: 1m } }";

/// A client sends its head, takes three quarters of `request_timeout`
/// over a 10-byte body (read whole first: under `body_buffer_bytes`,
/// within `body_read_timeout`), and the backend, which gets the request
/// once that body is in, answers when `request_timeout` counted from the
/// request is past, well within it counted from the body's end. The
/// answer reaches the client, and the endpoint stays in service. Counted
/// from the request, the endpoint was left a quarter of the time: the
/// client got `504` and the endpoint was ejected for a timeout it never
/// had the time to avoid, so clients finishing slow uploads together
/// ejected healthy endpoints.
#[tokio::test]
async fn a_slow_small_body_leaves_the_endpoint_its_whole_request_timeout() {
    let w = world();
    let (backend, held) = holding_backend(&w, "127.0.0.1:0").await;
    let mut p = Proxy::start(&w.scene.one_upstream_config(
        "app",
        backend,
        &["request_timeout: 2s", EJECT_AT_ONCE],
    ));
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let tls = connect(addr, "a.example.com", h1_config(&w)).await.unwrap();
    let (mut rx, mut tx) = tokio::io::split(tls);
    let start = tokio::time::Instant::now();
    tx.write_all(
        b"POST /x HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 10\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    // The slow client: its body comes 1.5 s after its head.
    tokio::time::sleep_until(start + Duration::from_millis(1500)).await;
    tx.write_all(b"0123456789").await.unwrap();
    wait_until(WAIT, "the backend has the request", || async {
        held.lock().unwrap().len() == 1
    })
    .await;
    // Past 2 s from the request; 1 s before 2 s from the body's end.
    tokio::time::sleep_until(start + Duration::from_millis(2500)).await;
    for mut respond in held.lock().unwrap().drain(..) {
        let _ = respond.send_response(http::Response::new(()), true);
    }
    let answer = tokio::time::timeout(WAIT, read_to_close(&mut rx))
        .await
        .expect("an answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let m = metrics_text(admin).await;
    assert!(
        m.contains("hotproxy_upstream_endpoints{upstream=\"app\",state=\"healthy\"} 1"),
        "{m}"
    );
    assert!(!m.contains("reason=\"timeout\""), "{m}");
}

/// A proxy whose upstream `app` has the endpoints `first` and `second`
/// (picked in that order), `connect_timeout: 1s`, `request_timeout:
/// 1500ms` and one failure ejecting an endpoint: a request whose dial to
/// `first` times out is retried on `second` with 500 ms left.
async fn retried_after_a_dial(
    w: &World,
    first: SocketAddr,
    second: SocketAddr,
) -> (Proxy, SocketAddr) {
    let settings = [
        "connect_timeout: 1s",
        "request_timeout: 1500ms",
        EJECT_AT_ONCE,
    ];
    let upstream = backend_upstream("app", &[first, second], &settings);
    let mut p = Proxy::start(&w.scene.public_config("[{ upstream: app }]", &upstream));
    let addr = p.listener_addr("public").await;
    (p, addr)
}

/// Once the request's last failure (`reason`) is logged: that the first
/// endpoint was ejected (it had the whole `connect_timeout`), and that
/// nothing was counted against the second. Counted, it was found the last
/// endpoint in service, and so said (with more endpoints, ejected).
async fn only_the_first_blamed(p: &mut Proxy, reason: &str) {
    p.wait_log("the request's failure", |v| {
        v["message"] == "upstream request failed" && v["reason"] == reason
    })
    .await;
    let logs = p.logs();
    let said = |what: &str| logs.iter().filter(|l| l.contains(what)).count();
    assert_eq!(said("\"upstream endpoint ejected\""), 1, "{logs:#?}");
    assert_eq!(said("upstream endpoint failing"), 0, "{logs:#?}");
}

/// The first endpoint's dial runs into `connect_timeout` (its failure:
/// it had the whole of it) and the request goes to the second, which
/// holds it; `request_timeout` ends it there (`504`). That retry had a
/// third of `request_timeout`: its endpoint stays in service. It was
/// ejected as a hung one.
#[tokio::test]
async fn a_retry_request_timeout_ends_is_no_failure_of_its_endpoint() {
    let w = world();
    let first = silent_endpoint("127.0.0.1").await;
    let (second, held) = holding_backend(&w, "127.0.0.2:0").await;
    let (mut p, addr) = retried_after_a_dial(&w, first.local_addr().unwrap(), second).await;
    let r = h1_get(&w, addr, "/").await;
    assert_eq!((r.status, r.body.as_str()), (504, "upstream timed out\n"));
    assert_eq!(
        held.lock().unwrap().len(),
        1,
        "the retry reached the second"
    );
    only_the_first_blamed(&mut p, "timeout").await;
}

/// The same with the second endpoint's dial, too, never answered: the
/// request's deadline cuts it short after half a `connect_timeout`. That
/// is no `connect_timeout` of the second endpoint, which stays in
/// service; it was ejected for it.
#[tokio::test]
async fn a_retrys_dial_cut_short_by_request_timeout_is_no_failure_of_its_endpoint() {
    let w = world();
    let first = silent_endpoint("127.0.0.1").await;
    let second = silent_endpoint("127.0.0.2").await;
    let (first_at, second_at) = (first.local_addr().unwrap(), second.local_addr().unwrap());
    let (mut p, addr) = retried_after_a_dial(&w, first_at, second_at).await;
    let r = h1_get(&w, addr, "/").await;
    assert_eq!((r.status, r.body.as_str()), (504, "upstream timed out\n"));
    only_the_first_blamed(&mut p, "connect_timeout").await;
}

/// The same for a WebSocket upgrade (a connection of its own per
/// attempt): its retry's dial to the second endpoint, cut short by the
/// request's deadline, is no `connect_timeout` of the second endpoint. The
/// upgrade counted it as one (the deadline was excused only for an
/// upgrade waiting for a connection slot), ejecting the second endpoint.
#[tokio::test]
async fn an_upgrades_retry_dial_cut_short_by_request_timeout_is_no_failure_of_its_endpoint() {
    let w = world();
    let first = silent_endpoint("127.0.0.1").await;
    let second = silent_endpoint("127.0.0.2").await;
    let (first_at, second_at) = (first.local_addr().unwrap(), second.local_addr().unwrap());
    let (mut p, addr) = retried_after_a_dial(&w, first_at, second_at).await;
    let mut tls = connect(addr, "a.example.com", h1_config(&w)).await.unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nhost: a.example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut tls, &mut byte))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(n, 1, "closed before a head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 504 "), "{head}");
    only_the_first_blamed(&mut p, "connect_timeout").await;
}

/// The first endpoint refuses the connect (nothing listens: refused at
/// once) and the request goes to the second, which holds it until
/// `request_timeout` ends it. That retry began with nearly all of
/// `request_timeout` left, at least what a first attempt has after a full
/// `connect_timeout`: the timeout is its endpoint's failure, as a first
/// attempt's is. It was excused for being a retry, whatever time it had,
/// so a hung endpoint behind a dead one was never found.
#[tokio::test]
async fn a_retry_that_had_a_first_attempts_time_is_blamed_for_its_timeout() {
    let w = world();
    let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first = refusing.local_addr().unwrap();
    drop(refusing);
    let (second, held) = holding_backend(&w, "127.0.0.2:0").await;
    let (mut p, addr) = retried_after_a_dial(&w, first, second).await;
    let r = h1_get(&w, addr, "/").await;
    assert_eq!((r.status, r.body.as_str()), (504, "upstream timed out\n"));
    assert_eq!(
        held.lock().unwrap().len(),
        1,
        "the retry reached the second"
    );
    p.wait_log("the second's timeout counted", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("upstream endpoint failing"))
            && v["endpoint"] == second.to_string()
            && v["cause"] == "timeout"
    })
    .await;
}

/// A proxy whose upstream `app` has the endpoints `first` and `second`
/// (picked in that order), `request_timeout: 2s` shorter than
/// `connect_timeout: 5s` (accepted), and one failure ejecting an endpoint.
async fn shorter_than_a_dial(
    w: &World,
    first: SocketAddr,
    second: SocketAddr,
) -> (Proxy, SocketAddr) {
    let settings = ["connect_timeout: 5s", "request_timeout: 2s", EJECT_AT_ONCE];
    let upstream = backend_upstream("app", &[first, second], &settings);
    let mut p = Proxy::start(&w.scene.public_config("[{ upstream: app }]", &upstream));
    let addr = p.listener_addr("public").await;
    (p, addr)
}

/// `request_timeout` shorter than `connect_timeout`: the first endpoint
/// holds the request three quarters of `request_timeout`, then refuses it
/// (`REFUSED_STREAM`: unprocessed, retried), and the second holds the
/// retry until `request_timeout` ends it with a quarter left. That retry
/// had less than half a first attempt's time: its endpoint stays in
/// service. With `request_timeout` no longer than `connect_timeout` no
/// retry was short, and the second was ejected for the first's delay.
#[tokio::test]
async fn a_retry_left_a_quarter_of_a_short_request_timeout_is_no_failure_of_its_endpoint() {
    let w = world();
    let (first, held_first) = holding_backend(&w, "127.0.0.1:0").await;
    let (second, held) = holding_backend(&w, "127.0.0.2:0").await;
    let (mut p, addr) = shorter_than_a_dial(&w, first, second).await;
    let start = tokio::time::Instant::now();
    let refuse = refuse_at(&held_first, start + Duration::from_millis(1500));
    let (r, ()) = tokio::join!(h1_get(&w, addr, "/"), refuse);
    assert_eq!((r.status, r.body.as_str()), (504, "upstream timed out\n"));
    assert_eq!(
        held.lock().unwrap().len(),
        1,
        "the retry reached the second"
    );
    p.wait_log("the request's failure", |v| {
        v["message"] == "upstream request failed" && v["reason"] == "timeout"
    })
    .await;
    assert_not_blamed(&p, second);
}

/// `request_timeout` shorter than `connect_timeout`: the first endpoint
/// refuses the connect at once, and the retry's dial to the second never
/// completes, until the request's deadline ends it. That retry began with
/// nearly all of `request_timeout`, as much as a first attempt's dial has:
/// its `connect_timeout` counts. Excused for being a retry the deadline
/// cut short, whatever time it had, a black-holed endpoint behind a dead
/// one was never ejected.
#[tokio::test]
async fn a_retrys_dial_with_a_first_attempts_time_is_blamed_when_the_deadline_ends_it() {
    let w = world();
    let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let first = refusing.local_addr().unwrap();
    drop(refusing);
    let silent = silent_endpoint("127.0.0.2").await;
    let second = silent.local_addr().unwrap();
    let (mut p, addr) = shorter_than_a_dial(&w, first, second).await;
    let r = h1_get(&w, addr, "/").await;
    assert_eq!(r.status, 504, "{}", r.body);
    p.wait_log("the second's connect_timeout counted", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("upstream endpoint failing"))
            && v["endpoint"] == second.to_string()
            && v["cause"] == "connect_timeout"
    })
    .await;
}

/// `request_timeout: 3s` between `connect_timeout: 2s` and twice it: the
/// first endpoint holds the request 1.25 s, then refuses it
/// (`REFUSED_STREAM`), and the retry's dial to the second, whose TLS
/// handshake never comes, is cut short by the request's deadline some
/// 1.75 s later. That dial had less than a first attempt's dial has (all
/// of `connect_timeout`): no `connect_timeout` of the second endpoint,
/// which stays in service. Judged by what the response wait has (more
/// than half of `request_timeout` left: not short), it was counted, and a
/// slow-handshaking endpoint was ejected for the client's budget.
#[tokio::test]
async fn a_retrys_dial_left_less_than_connect_timeout_is_no_failure_of_its_endpoint() {
    let w = world();
    let (first, held_first) = holding_backend(&w, "127.0.0.1:0").await;
    let silent = silent_endpoint("127.0.0.2").await;
    let second = silent.local_addr().unwrap();
    let settings = ["connect_timeout: 2s", "request_timeout: 3s", EJECT_AT_ONCE];
    let upstream = backend_upstream("app", &[first, second], &settings);
    let mut p = Proxy::start(&w.scene.public_config("[{ upstream: app }]", &upstream));
    let addr = p.listener_addr("public").await;
    let start = tokio::time::Instant::now();
    let refuse = refuse_at(&held_first, start + Duration::from_millis(1250));
    let (r, ()) = tokio::join!(h1_get(&w, addr, "/"), refuse);
    assert_eq!((r.status, r.body.as_str()), (504, "upstream timed out\n"));
    p.wait_log("the request's failure", |v| {
        v["message"] == "upstream request failed"
    })
    .await;
    assert_not_blamed(&p, second);
}

/// No log line counts a failure against, or ejects, the endpoint at `at`.
fn assert_not_blamed(p: &Proxy, at: SocketAddr) {
    let blamed: Vec<String> = (p.logs().into_iter())
        .filter(|l| l.contains(&at.to_string()))
        .filter(|l| l.contains("upstream endpoint failing") || l.contains("ejected"))
        .collect();
    assert!(blamed.is_empty(), "{blamed:#?}");
}
