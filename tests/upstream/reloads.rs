//! Upstreams edited or removed by a reload: their idle connections, endpoint gauges and active checks.

use std::sync::atomic::Ordering;

use crate::common::*;
use crate::support::*;

/// A request still in flight on a removed upstream does not bring its
/// endpoint gauge back: its failure, at an endpoint of a set no longer in
/// service, used to eject it and publish that set's counts again, for
/// good. (A retired set ejects nothing now: the failure is counted toward
/// the endpoint's health, which a successor would share.)
#[tokio::test]
async fn a_request_on_a_removed_upstream_does_not_bring_its_gauge_back() {
    let w = world();
    let (b1, b2) = (
        Backend::start_h1("b1", &w.backend_pair, None).await,
        Backend::start_h1("b2", &w.backend_pair, None).await,
    );
    let app = backend_upstream("app", &[b1.addr], &[]);
    let spare = backend_upstream(
        "spare",
        &[b1.addr, b2.addr],
        &[
            "request_timeout: 1s",
            "retries: { attempts: 0 }",
            "health: { passive: { consecutive_failures: 1 } }",
        ],
    );
    let config = w.scene.public_config(
        "[{ path_prefix: /hang, upstream: spare }, { upstream: app }]",
        &format!("{app}{spare}"),
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    let gauge = "hotproxy_upstream_endpoints{upstream=\"spare\",state=\"healthy\"} 2";
    wait_metric(admin_addr, gauge, WAIT).await;
    let held = spawn_get(&w, addr, "/hang");
    let hanging =
        || b1.slow_in_flight.load(Ordering::SeqCst) + b2.slow_in_flight.load(Ordering::SeqCst);
    wait_until(WAIT, "the request is at a backend", || async {
        hanging() == 1
    })
    .await;
    // spare removed while its request waits out request_timeout.
    assert_eq!(w.scene.public_config("[{ upstream: app }]", &app), config);
    reload(&mut p, "the removal").await;
    assert_eq!(held.await.unwrap().unwrap().status, 504);
    // Logged once the failure is counted.
    p.wait_log("the failure", |v| {
        v["message"] == "upstream request failed" && v["upstream"] == "spare"
    })
    .await;
    metrics_without_spare(admin_addr).await;
}

/// An upstream edited by a reload gives back the old one's idle
/// connections at once. They used to stay open (never used again, in
/// CLOSE_WAIT once the backend closed them, outside the new endpoints'
/// `max_connections_per_server`) for as long as any request still held
/// the old upstream: a long poll, a server-sent-events stream.
#[tokio::test]
async fn an_edited_upstream_closes_its_idle_connections() {
    use std::sync::atomic::Ordering::SeqCst;
    let w = world();
    let (b, config, mut p, addr) = h1_app(&w).await;
    // A request that holds the old upstream through the edit ...
    let hanging = hang_at(&w, addr, &b).await;
    // ... and, beside it, one idle pooled connection.
    assert_eq!(send(addr, &w, "GET", "").await.0, 200);
    assert_eq!(b.open.load(SeqCst), 2);
    edit_app(&config);
    reload(&mut p, "the edit").await;
    wait_until(WAIT, "the old idle connection closed", || async {
        b.open.load(SeqCst) == 1
    })
    .await;
    hanging.abort();
}

/// A request of an upstream an edit replaced, that dials only after the
/// edit (its small body was still being read whole), closes that
/// connection after its response instead of pooling it. The drain had
/// already bumped the pool's generation, which the dial took for its own:
/// the connection was pooled, and nothing swept it once the request was
/// over, for as long as another request held the endpoint (open beside
/// the successor's connections, in CLOSE_WAIT once the backend closed it).
#[tokio::test]
async fn a_replaced_upstream_does_not_pool_a_connection_dialled_after_the_edit() {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    let w = world();
    let (b, config, mut p, addr) = h1_app(&w).await;
    // A request that holds the old upstream's endpoint through the edit.
    let hanging = hang_at(&w, addr, &b).await;
    // A request whose body is read whole before it takes a connection: the
    // `100 Continue` says the old upstream is reading it.
    let mut posting = half_posted(&w, addr, "/x").await;
    edit_app(&config);
    reload(&mut p, "the edit").await;
    // The rest of the body: the request dials under the old upstream.
    posting.write_all(b"56789").await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut posting).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(b.accepted.load(SeqCst), 2, "not dialled for the request");
    wait_until(
        WAIT,
        "the connection dialled after the edit closed",
        || async { b.open.load(SeqCst) == 1 },
    )
    .await;
    let_go(&b, hanging);
}

/// Requests of an upstream an edit replaced that dial only after the edit
/// share an HTTP/2 connection still, and it closes when the last of them
/// ends. Such a connection was not shared at all: with
/// `max_connections_per_server: 1`, the second request waited for the slot
/// the first one's connection held, and failed `504` after
/// `connect_timeout` (with the default limits, one connection per request,
/// dialled one after another).
#[tokio::test]
async fn requests_of_a_replaced_upstream_share_an_h2_connection_dialled_after_the_edit() {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    let w = world();
    let b = Backend::start("b", &w.backend_pair, None).await;
    let config = w.scene.one_upstream_config(
        "app",
        b.addr,
        &["max_connections_per_server: 1", "connect_timeout: 1s"],
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    // Two requests whose bodies are read whole before they take a
    // connection, half read when the edit comes.
    let mut held = half_posted(&w, addr, "/hang").await;
    let mut answered = half_posted(&w, addr, "/x").await;
    // A third, never sent on, holds the old upstream's endpoint (and its
    // pool) to the end.
    let holding = half_posted(&w, addr, "/x").await;
    edit_app(&config);
    reload(&mut p, "the edit").await;
    // The first dials under the old upstream, the one slot; the backend
    // holds its request.
    held.write_all(b"56789").await.unwrap();
    wait_until(WAIT, "the held request at the backend", || async {
        b.slow_in_flight.load(SeqCst) == 1
    })
    .await;
    answered.write_all(b"56789").await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut answered).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(b.accepted.load(SeqCst), 1, "not shared");
    assert_eq!(b.open.load(SeqCst), 1);
    // Its last stream ends: the connection closes, though the pool that
    // shared it is still held.
    drop(held);
    wait_until(WAIT, "the shared connection closed", || async {
        b.open.load(SeqCst) == 0
    })
    .await;
    assert_eq!(b.slow_in_flight.load(SeqCst), 0);
    drop(holding);
}

/// An HTTP/2 connection pooled before an edit replaced its upstream is
/// still shared by that upstream's requests in flight, and closes when the
/// last of them ends, as one dialled after the edit is. The retirement
/// dropped it from the pool: with `max_connections_per_server: 1`, a
/// request that took its connection after the edit waited for the slot
/// that connection held, and failed `504` after `connect_timeout`.
#[tokio::test]
async fn requests_of_a_replaced_upstream_share_an_h2_connection_pooled_before_the_edit() {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    let w = world();
    let b = Backend::start("b", &w.backend_pair, None).await;
    let config = w.scene.one_upstream_config(
        "app",
        b.addr,
        &["max_connections_per_server: 1", "connect_timeout: 1s"],
    );
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    // The connection, dialled before the edit; the backend holds its
    // request.
    let hanging = hang_at(&w, addr, &b).await;
    // A request whose body is read whole before it takes a connection,
    // half read when the edit comes.
    let mut answered = half_posted(&w, addr, "/x").await;
    edit_app(&config);
    reload(&mut p, "the edit").await;
    answered.write_all(b"56789").await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut answered).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(b.accepted.load(SeqCst), 1, "not shared");
    // Its last stream ends: the connection closes.
    let_go(&b, hanging);
    wait_until(WAIT, "the shared connection closed", || async {
        b.open.load(SeqCst) == 0
    })
    .await;
}

/// A `GET /hang` to the proxy at `addr` on a task of its own, once it is
/// at `b` (which holds it): a request that holds its upstream's endpoint
/// (and its pool) through an edit.
async fn hang_at(
    w: &World,
    addr: std::net::SocketAddr,
    b: &Backend,
) -> tokio::task::JoinHandle<std::io::Result<Reply>> {
    let hanging = spawn_get(w, addr, "/hang");
    wait_until(WAIT, "the hanging request at the backend", || async {
        b.slow_in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    hanging
}

/// `hanging` ([`hang_at`]) still held at `b` at the end, then let go.
fn let_go(b: &Backend, hanging: tokio::task::JoinHandle<std::io::Result<Reply>>) {
    assert_eq!(
        b.slow_in_flight.load(Ordering::SeqCst),
        1,
        "the request lost its hold"
    );
    hanging.abort();
}

/// A `POST path` of 10 bytes on a new HTTP/1.1 connection to the proxy at
/// `addr`, its first 5 sent once the `100 Continue` says the proxy reads
/// it (its upstream chosen).
async fn half_posted(w: &World, addr: std::net::SocketAddr, path: &str) -> Tls {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect(addr, "a.example.com", h1_config(w)).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: a.example.com\r\ncontent-length: 10\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut cont = [0u8; 25];
    within_deadline("100 Continue", s.read_exact(&mut cont))
        .await
        .unwrap();
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"01234").await.unwrap();
    s
}

/// `app`'s entry in `config` edited (its `request_timeout`): a reload
/// replaces the upstream.
fn edit_app(config: &std::path::Path) {
    let edited = std::fs::read_to_string(config).unwrap().replace(
        "server_name: backend.local }",
        "server_name: backend.local }\n    request_timeout: 59s",
    );
    write(config, &edited);
}

/// An upstream replaced by an edit stops its active checks at once, also
/// while a request still holds it. They went on every `interval` beside
/// its successor's for as long as such a request lasted (up to
/// `request_timeout`): every endpoint got both sets' checks, and the old
/// set's verdicts were logged under the same upstream name.
#[tokio::test]
async fn an_edited_upstream_stops_its_active_checks() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let checking = |path: &str| {
        let check =
            format!("health: {{ active: {{ path: {path}, interval: 100ms, timeout: 200ms }} }}");
        w.scene
            .one_upstream_config("app", b.addr, &["request_timeout: 10m", &check])
    };
    let config = checking("/old-check");
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let (old, new) = (
        || b.requests_for("/old-check"),
        || b.requests_for("/new-check"),
    );
    wait_until(WAIT, "the first check", || async { old() > 0 }).await;
    // A request that holds the old upstream through the edit.
    let hanging = hang_at(&w, addr, &b).await;
    assert_eq!(checking("/new-check"), config);
    reload(&mut p, "the edit").await;
    // Past an old check that was under way at the edit (its `timeout` is
    // two of the new checks' intervals).
    wait_until(WAIT, "three new checks", || async { new() >= 3 }).await;
    let old_then = old();
    wait_until(WAIT, "five more new checks", || async { new() >= 8 }).await;
    assert_eq!(old(), old_then, "checks of the replaced upstream");
    let_go(&b, hanging);
}

/// An upstream removed by a reload takes its `hotproxy_upstream_endpoints`
/// series with it (they stayed for the life of the process: a dashboard
/// kept showing it, an alert on ejected endpoints kept firing).
#[tokio::test]
async fn a_removed_upstream_leaves_the_endpoint_gauge() {
    let w = world();
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let spare = backend_upstream("spare", &[b.addr], &[]);
    let config = w.scene.one_upstream_config("app", b.addr, &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    write(&config, &format!("{}{spare}\n", text.trim_end()));
    let mut p = Proxy::start(&config);
    let admin_addr = p.admin_addr().await;
    let gauge = "hotproxy_upstream_endpoints{upstream=\"spare\",state=\"healthy\"} 1";
    wait_metric(admin_addr, gauge, WAIT).await;
    write(&config, &text);
    reload(&mut p, "the removal").await;
    let m = metrics_without_spare(admin_addr).await;
    assert!(m.contains("hotproxy_upstream_endpoints{upstream=\"app\",state=\"healthy\"} 1"));
}

/// The metrics at `admin`, which must have no `hotproxy_upstream_endpoints`
/// series of upstream `spare` (removed).
async fn metrics_without_spare(admin: std::net::SocketAddr) -> String {
    let m = metrics_text(admin).await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("hotproxy_upstream_endpoints{upstream=\"spare\"")),
        "{m}"
    );
    m
}

/// An HTTP/1.1 backend behind upstream `app`: the backend, the
/// configuration file (to edit), the proxy and its listener's address.
async fn h1_app(w: &World) -> (Backend, std::path::PathBuf, Proxy, std::net::SocketAddr) {
    let b = Backend::start_h1("b", &w.backend_pair, None).await;
    let config = w.scene.one_upstream_config("app", b.addr, &[]);
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    (b, config, p, addr)
}
