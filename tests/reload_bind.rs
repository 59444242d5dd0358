//! Reloads that move a listener to an address overlapping the one it holds (same port),
//! or remove it or move it elsewhere while clients wait in its accept queue.

mod support;

use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A configuration of `listeners` (YAML list items), watched closely.
fn of(listeners: &str) -> String {
    format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
listeners:
{listeners}
"#
    )
}

/// Listener `public` on `bind`, serving pair `a`.
fn on(bind: &str) -> String {
    of(&listener_yaml("public", bind, "[]"))
}

/// A port of 127.0.0.1 nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A proxy whose listener `public` is on `0.0.0.0:P` (P a free port),
/// serving pair `a` of CA `ca`: the move these tests make starts there.
struct OnWildcard {
    s: Scene,
    ca: TestCa,
    a: TestPair,
    port: u16,
    cfg: std::path::PathBuf,
    p: Proxy,
}

async fn on_wildcard() -> OnWildcard {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    let port = free_port();
    let cfg = s.config(&on(&format!("0.0.0.0:{port}")));
    let mut p = Proxy::start(&cfg);
    assert_eq!(p.listener_addr("public").await.port(), port);
    OnWildcard {
        s,
        ca,
        a,
        port,
        cfg,
        p,
    }
}

/// Wait until the proxy has logged `n` successful configuration reloads,
/// failing at once on a rejected one.
async fn reloaded(p: &mut Proxy, n: usize) {
    wait_until(WAIT, &format!("configuration reload {n} applied"), || {
        let logs = p.logs();
        if let Some(rejected) = logs.iter().find(|l| l.contains("\"configuration rejected")) {
            panic!("{rejected}");
        }
        let done = logs
            .iter()
            .filter(|l| l.contains("\"configuration reloaded\""))
            .count()
            >= n;
        async move { done }
    })
    .await;
}

/// A listener moved from `0.0.0.0:P` to `127.0.0.1:P`, and back, applies
/// live and serves on the new address. Binding the new address failed
/// ("Address already in use") while the old one still listened, so every
/// retry was rejected and the move needed a restart.
#[tokio::test]
async fn a_listener_moves_to_an_overlapping_address_on_its_port() {
    let OnWildcard {
        s: _s,
        ca,
        a,
        port,
        cfg,
        mut p,
    } = on_wildcard().await;
    let here: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let served = || async {
        assert_eq!(
            served_leaf(here, "localhost", &ca.cert_pem).await.unwrap(),
            a.fingerprint
        );
    };
    served().await;

    writers::mv_over(&cfg, &on(&format!("127.0.0.1:{port}")));
    reloaded(&mut p, 1).await;
    served().await;
    // The wildcard is let go: another address of the host is not served.
    let elsewhere: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    wait_until(WAIT, "the wildcard address closed", || async {
        tokio::net::TcpStream::connect(elsewhere).await.is_err()
    })
    .await;

    writers::mv_over(&cfg, &on(&format!("0.0.0.0:{port}")));
    reloaded(&mut p, 2).await;
    served().await;
    served_leaf(elsewhere, "localhost", &ca.cert_pem)
        .await
        .expect("the wildcard serves every address again");
}

/// Clients connecting to `127.0.0.1:P` while the listener moves between
/// `0.0.0.0:P` and `127.0.0.1:P`, back and forth, are all served: none is
/// reset. The socket given up was closed with connections still in its
/// queue (the more specific address keeps every connection to it until it
/// closes), and the kernel reset each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_is_reset_while_a_listener_moves_to_an_overlapping_address() {
    let OnWildcard {
        s: _s,
        ca,
        a,
        port,
        cfg,
        mut p,
    } = on_wildcard().await;
    let wildcard = format!("0.0.0.0:{port}");
    let here: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Clients, a few in flight at any time, until the moves are done (a
    // bounded number of them in all).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = tokio::spawn({
        let done = done.clone();
        let ca_pem = ca.cert_pem.clone();
        let want = a.fingerprint.clone();
        async move {
            let mut in_flight = tokio::task::JoinSet::new();
            let mut made = 0usize;
            while made < 20_000 && !done.load(std::sync::atomic::Ordering::Relaxed) {
                while in_flight.len() < 8 {
                    let ca_pem = ca_pem.clone();
                    in_flight.spawn(async move { served_leaf(here, "localhost", &ca_pem).await });
                    made += 1;
                }
                let leaf = in_flight.join_next().await.unwrap().unwrap();
                assert_eq!(leaf.expect("a client connecting during the move"), want);
            }
            while let Some(leaf) = in_flight.join_next().await {
                assert_eq!(
                    leaf.unwrap().expect("a client connecting during the move"),
                    want
                );
            }
            made
        }
    });
    let specific = format!("127.0.0.1:{port}");
    for n in 0..6 {
        let to = if n % 2 == 0 { &specific } else { &wildcard };
        writers::mv_over(&cfg, &on(to));
        reloaded(&mut p, n + 1).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let made = clients.await.unwrap();
    assert!(made > 0);
    assert_eq!(
        served_leaf(here, "localhost", &ca.cert_pem).await.unwrap(),
        a.fingerprint
    );
}

/// A client on `addr` that sent one request (answered `404`) and keeps
/// its connection open: the sender and the connection's task.
async fn held_client(
    addr: std::net::SocketAddr,
    ca_pem: &str,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tls = connect(
        addr,
        "localhost",
        client_config(ca_pem, None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (mut send, held) = keep_open_h1(tls).await;
    let answer = within_deadline(
        "the held client's request",
        send.send_request(get_localhost()),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 404);
    (send, held)
}

/// The listener `public` (one connection at a time) holding a client
/// (`held_client`) and, queued behind it, an HTTP/2 client, when the
/// configuration becomes `moved` (the listener removed or bound
/// elsewhere): the held client's sender and task, and the queued client's
/// TLS stream, its handshake done with the listener taken from the queue.
async fn h2_queued_at_removal(
    p: &mut Proxy,
    cfg: &std::path::Path,
    moved: &str,
    ca_pem: &str,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
    Tls,
) {
    let addr = p.listener_addr("public").await;
    let (send, held) = held_client(addr, ca_pem).await;
    let tls = client_config(ca_pem, None, &[b"h2"]);
    let queued = tokio::spawn(async move { connect(addr, "localhost", tls).await });
    wait_until(WAIT, "the h2 client queued", || async {
        accept_queue(addr) == 1
    })
    .await;
    writers::mv_over(cfg, moved);
    reloaded(p, 1).await;
    let c = within_deadline("the queued client's handshake", queued)
        .await
        .unwrap()
        .expect("the queued client shook hands");
    (send, held, c)
}

/// A client waiting in an accept queue: its GET's reply, once served.
type Queued = tokio::task::JoinHandle<std::io::Result<Reply>>;

/// `n` clients each GETting `/` over TLS (HTTP/2 if `h2`), returned once
/// all `n` wait in `addr`'s accept queue (the listener at its limit).
async fn queue_clients(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    n: usize,
    h2: bool,
) -> Vec<Queued> {
    queue_clients_on(addr, &[addr], ca_pem, n, h2).await
}

/// As [`queue_clients`], `n` clients to each of `to`, returned once all
/// wait in the accept queue of the socket listening on `listening` (a
/// wildcard address covering each of `to`).
async fn queue_clients_on(
    listening: std::net::SocketAddr,
    to: &[std::net::SocketAddr],
    ca_pem: &str,
    n: usize,
    h2: bool,
) -> Vec<Queued> {
    let queued = to
        .iter()
        .flat_map(|&addr| std::iter::repeat_n(addr, n))
        .map(|addr| {
            let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
            let cfg = client_config(ca_pem, None, alpn);
            tokio::spawn(async move { get(addr, "localhost", cfg, h2, "/", &[]).await })
        })
        .collect();
    wait_until(WAIT, "the clients queued on public", || async {
        accept_queue(listening) == n * to.len()
    })
    .await;
    queued
}

/// Every queued client got an HTTP answer (`404`, no route), none a
/// reset: the replies, in the order the clients were queued.
async fn all_answered(queued: Vec<Queued>) -> Vec<Reply> {
    let mut replies = Vec::new();
    for (i, client) in queued.into_iter().enumerate() {
        let reply = client
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("client {i}, queued as the reload applied: {e}"));
        assert_eq!(reply.status, 404, "client {i}: {}", reply.body);
        replies.push(reply);
    }
    replies
}

/// Listener `kept` on a port of its own and, on `public` if given,
/// listener `public` with room for one connection at a time.
fn one_at_a_time(public: Option<&str>) -> String {
    let mut listeners = listener_yaml("kept", "127.0.0.1:0", "[]");
    if let Some(bind) = public {
        listeners.push('\n');
        listeners.push_str(&listener_yaml("public", bind, "[]"));
        listeners.push_str("\n    limits: { max_connections: 1 }");
    }
    of(&listeners)
}

/// How many clients wait in `public`'s accept queue as the reload applies.
const QUEUED: usize = 6;

/// `public` (on `127.0.0.1:0`, one connection at a time) holds one client
/// and [`QUEUED`] more wait in its accept queue (their TCP handshakes done
/// by the kernel, their TLS ClientHellos sent, HTTP/2 if `h2`), when a
/// reload removes it (`moved_to` None) or moves it to `moved_to`: each queued client gets an
/// HTTP answer (`404`, no route), the one held sees its connection closed
/// cleanly, and the old socket closes then. It was closed with the queue
/// in it, and the kernel reset every client there (and served without a
/// first request's answer, each was closed as the removed listener's
/// others: no answer either).
async fn queued_clients_answered(moved_to: Option<&str>, h2: bool) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    let cfg = s.config(&one_at_a_time(Some("127.0.0.1:0")));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    let (send, held) = held_client(addr, &ca.cert_pem).await;
    let queued = queue_clients(addr, &ca.cert_pem, QUEUED, h2).await;

    writers::mv_over(&cfg, &one_at_a_time(moved_to));
    reloaded(&mut p, 1).await;
    all_answered(queued).await;
    within_deadline("the held client's connection", held)
        .await
        .unwrap()
        .expect("the held client's connection closed cleanly");
    drop(send);
    wait_until(
        WAIT,
        "the old socket closed once its queue was served",
        || async { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    if let Some(to) = moved_to {
        let reply = get_h1(to.parse().unwrap(), "localhost", &ca.cert_pem)
            .await
            .expect("served on the new address");
        assert_eq!(reply.status, 404);
    }
}

/// A reload that removes a listener serves the clients waiting in its
/// accept queue (under its own configuration and `max_connections`), then
/// closes its socket: none is reset.
#[tokio::test]
async fn a_removed_listener_answers_the_clients_in_its_queue() {
    queued_clients_answered(None, false).await;
}

/// As [`a_removed_listener_answers_the_clients_in_its_queue`], the clients
/// speaking HTTP/2: each gets its answer before the `GOAWAY`.
#[tokio::test]
async fn a_removed_listener_answers_the_h2_clients_in_its_queue() {
    queued_clients_answered(None, true).await;
}

/// As [`a_removed_listener_answers_the_clients_in_its_queue`], for a
/// listener moved to another port: the old socket's queue is served before
/// it closes.
#[tokio::test]
async fn a_listener_moved_to_another_port_answers_the_clients_in_its_old_queue() {
    let to = format!("127.0.0.1:{}", free_port());
    queued_clients_answered(Some(&to), false).await;
}

/// `public` at its `max_connections` (held by a client that connected and
/// sent nothing, within its `header_read_timeout`) with [`QUEUED`] clients
/// waiting in its accept queue, when a reload removes it: the socket closes
/// at once, its queue taken (a client connecting then is refused, not left
/// sending SYNs the socket drops), a second reload adds `public` on the
/// same address again and it serves there, and each client taken from the
/// queue is answered once the held one's slot is free. The given-up socket
/// waited for a slot before each `accept()`, open until the held client's
/// `header_read_timeout` ended: a client connecting meanwhile hung, and
/// the second reload was rejected ("address in use").
#[tokio::test]
async fn a_removed_listener_at_its_limit_lets_its_address_go_at_once() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    let at_limit = |bind: Option<&str>| {
        one_at_a_time(bind).replace(
            "max_connections: 1 }",
            "max_connections: 1, header_read_timeout: 60s }",
        )
    };
    let cfg = s.config(&at_limit(Some("127.0.0.1:0")));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    // Silent: its slot is held until its header_read_timeout, or it goes.
    let held = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_until(WAIT, "the held client accepted", || async {
        accept_queue(addr) == 0
    })
    .await;
    let queued = queue_clients(addr, &ca.cert_pem, QUEUED, false).await;

    writers::mv_over(&cfg, &at_limit(None));
    reloaded(&mut p, 1).await;
    // A check that hangs (a SYN dropped) fails at WAIT.
    wait_until(WAIT, "a client to the removed listener refused", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;

    writers::mv_over(&cfg, &at_limit(Some(&addr.to_string())));
    reloaded(&mut p, 2).await;
    let reply = get_h1(addr, "localhost", &ca.cert_pem)
        .await
        .expect("served on the address again");
    assert_eq!(reply.status, 404);

    drop(held);
    all_answered(queued).await;
}

/// SIGTERM while a removed listener serves the clients taken from its
/// queue, two of them silent (one sent nothing, one shook hands and sent
/// half a request head): both close at once and the process exits as soon
/// as nothing else is open, not when `shutdown_grace` ends. Its listener's
/// `closing`, set already, was all they watched: the one before TLS waited
/// out its `header_read_timeout`, the other was not closed before its
/// request (and hyper's graceful close waits for a head begun), and the
/// drain held on to both until the grace ended.
#[tokio::test]
async fn shutdown_closes_the_silent_clients_a_removed_listener_took_from_its_queue() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    let config = |bind: Option<&str>| {
        let yaml = one_at_a_time(bind).replace(
            "max_connections: 1 }",
            "max_connections: 2, header_read_timeout: 60s }",
        );
        // Longer than a lingering close (5 s), which the drain waits for.
        format!("runtime: {{ shutdown_grace: 20s }}\n{yaml}")
    };
    let cfg = s.config(&config(Some("127.0.0.1:0")));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    // Both slots held by clients idle after a request, which the removal closes.
    let mut held = Vec::new();
    for _ in 0..2 {
        let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
        let tls = connect(addr, "localhost", cfg).await.unwrap();
        let (mut send, conn) = keep_open_h1(tls).await;
        let answer = within_deadline(
            "a held client's request",
            send.send_request(get_localhost()),
        )
        .await
        .unwrap();
        assert_eq!(answer.status(), 404);
        held.push((send, conn));
    }
    wait_until(WAIT, "both slots taken", || async {
        accept_queue(addr) == 0
    })
    .await;
    // Queued in this order: the silent one is given its slot first.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_until(WAIT, "the silent client queued", || async {
        accept_queue(addr) == 1
    })
    .await;
    let cfg_tls = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let shook_hands = tokio::spawn(async move { connect(addr, "localhost", cfg_tls).await });
    wait_until(WAIT, "the client shaking hands queued", || async {
        accept_queue(addr) == 2
    })
    .await;

    writers::mv_over(&cfg, &config(None));
    reloaded(&mut p, 1).await;
    for (send, conn) in held {
        within_deadline("a held client's connection", conn)
            .await
            .unwrap()
            .expect("a held client's connection closed cleanly");
        drop(send);
    }
    let mut begun = within_deadline("the queued client's handshake", shook_hands)
        .await
        .unwrap()
        .expect("the queued client shook hands");
    tokio::io::AsyncWriteExt::write_all(&mut begun, b"GET / HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::flush(&mut begun).await.unwrap();

    p.signal("TERM");
    assert!(p.wait_exit(WAIT).await.success());
    // Its last line read: the logs are all in.
    p.wait_log("stopped", |v| v["message"] == "stopped").await;
    let logs = p.logs();
    assert!(
        !logs.iter().any(|l| l.contains("shutdown grace elapsed")),
        "the drain waited for the silent clients: {logs:#?}"
    );
}

/// Out of file descriptors while a removed listener takes its queue: the
/// accept()s that fail are retried after a pause, as those taken first are
/// served and close, and every client queued is answered. The first
/// failure (EMFILE) closed the socket, and the kernel reset every client
/// still queued on it.
#[tokio::test]
async fn a_removed_listener_out_of_descriptors_still_answers_its_whole_queue() {
    const NOFILE: usize = 64;
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    let cfg = s.config(&one_at_a_time(Some("127.0.0.1:0")));
    let mut p = Proxy::start_with_fd_limit(&cfg, NOFILE as u32);
    let addr = p.listener_addr("public").await;

    let (send, held) = held_client(addr, &ca.cert_pem).await;
    // More than the descriptors left: taking them all runs out.
    let open = std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
        .unwrap()
        .count();
    let queued_n = NOFILE.saturating_sub(open) + 8;
    let queued = queue_clients(addr, &ca.cert_pem, queued_n, false).await;

    writers::mv_over(&cfg, &one_at_a_time(None));
    reloaded(&mut p, 1).await;
    all_answered(queued).await;
    within_deadline("the held client's connection", held)
        .await
        .unwrap()
        .expect("the held client's connection closed cleanly");
    drop(send);
    p.wait_log("an accept() out of descriptors", |v| {
        v["message"] == "accept failed; backing off" && v["listener"] == "public"
    })
    .await;
}

/// Listener `name` on `bind`, serving pair `pair` (`{pair}.crt`).
fn serving(name: &str, bind: &str, pair: &str) -> String {
    listener_yaml(name, bind, "[]")
        .replace("a.crt", &format!("{pair}.crt"))
        .replace("a.key", &format!("{pair}.key"))
}

/// `public` on `0.0.0.0:P` (pair `p`, one connection at a time, held by a
/// client) with [`QUEUED`] clients queued for `127.0.0.1:P` and as many
/// for `127.0.0.2:P`, when a reload replaces it by `a` on `127.0.0.1:P`
/// (pair `a`) and, if `split`, `b` on `127.0.0.2:P` (pair `b`), both bound
/// beside the wildcard: each queued client is answered with the
/// certificate of the listener now on the address it connected to; one no
/// new listener covers (`127.0.0.2:P` without `b`) as `public`'s own, as a
/// removed listener answers its queue. `a`, first in the file, took the
/// wildcard socket over and served every client queued on it with its own
/// certificate, routes and limits.
async fn wildcard_replaced_by_specific_addresses(split: bool) {
    wildcard_replaced_with_limits(split, "").await;
}

/// As [`wildcard_replaced_by_specific_addresses`], each new listener with
/// `limits` (YAML flow mapping items; none if empty).
async fn wildcard_replaced_with_limits(split: bool, limits: &str) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let pairs: Vec<TestPair> = ["p", "a", "b"]
        .iter()
        .map(|stem| {
            let pair = ca.server_pair(&["localhost"]);
            s.pair(stem, &pair);
            pair
        })
        .collect();
    let port = free_port();
    let wildcard: std::net::SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let one: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let two: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let public =
        serving("public", &wildcard.to_string(), "p") + "\n    limits: { max_connections: 1 }";
    let cfg = s.config(&of(&public));
    let mut p = Proxy::start(&cfg);
    assert_eq!(p.listener_addr("public").await, wildcard);

    let (send, held) = held_client(one, &ca.cert_pem).await;
    let queued = queue_clients_on(wildcard, &[one, two], &ca.cert_pem, QUEUED, false).await;

    let limited = |name: &str, bind: std::net::SocketAddr| {
        let l = serving(name, &bind.to_string(), name);
        if limits.is_empty() {
            l
        } else {
            l + &format!("\n    limits: {{ {limits} }}")
        }
    };
    let mut split_into = limited("a", one);
    if split {
        split_into.push('\n');
        split_into.push_str(&limited("b", two));
    }
    writers::mv_over(&cfg, &of(&split_into));
    reloaded(&mut p, 1).await;
    let replies = all_answered(queued).await;
    let on_two = if split { &pairs[2] } else { &pairs[0] };
    for (i, reply) in replies.iter().enumerate() {
        let (to, want) = if i < QUEUED {
            (one, &pairs[1])
        } else {
            (two, on_two)
        };
        assert_eq!(
            reply.leaf, want.fingerprint,
            "client {i}, queued for {to}, served another listener's certificate"
        );
    }
    within_deadline("the held client's connection", held)
        .await
        .unwrap()
        .expect("the held client's connection closed cleanly");
    drop(send);
    assert_eq!(
        served_leaf(one, "localhost", &ca.cert_pem).await.unwrap(),
        pairs[1].fingerprint
    );
    if split {
        assert_eq!(
            served_leaf(two, "localhost", &ca.cert_pem).await.unwrap(),
            pairs[2].fingerprint
        );
    }
}

/// A wildcard listener replaced by two on specific addresses of its port
/// in one reload: the clients queued on the wildcard socket are each
/// served by the listener on the address they connected to.
#[tokio::test]
async fn a_wildcard_split_into_two_listeners_serves_each_queued_client_by_its_address() {
    wildcard_replaced_by_specific_addresses(true).await;
}

/// A wildcard listener replaced by one on a specific address of its port:
/// the clients queued for another address, which no listener covers now,
/// are answered by the old listener, not served the new one's certificate.
#[tokio::test]
async fn a_wildcard_narrowed_answers_the_clients_queued_for_other_addresses_as_removed() {
    wildcard_replaced_by_specific_addresses(false).await;
}

/// A wildcard listener replaced by two whose `max_connections` is 1: the
/// clients queued on the wildcard socket are each served in turn by the
/// listener on their address. Each new accept loop took its one slot at
/// once and held it waiting in accept(), so the clients handed over from
/// the old socket waited for a slot that never came free and were closed
/// unread at their `header_read_timeout`, which the kernel turned into a
/// reset (handed-over clients got M-1 of M slots).
#[tokio::test]
async fn a_wildcard_split_into_listeners_of_one_slot_serves_each_queued_client() {
    wildcard_replaced_with_limits(true, "max_connections: 1, header_read_timeout: 3s").await;
}

/// An HTTP/2 client a removed listener took from its queue, answered once
/// and sent `GOAWAY` (keep-alive off), that never acknowledges the
/// `GOAWAY`'s PING and goes on opening streams: once it has had the PING
/// `header_read_timeout`, a new one is refused (`REFUSED_STREAM`). Each was
/// served, under the removed listener's routes, until `shutdown_grace` cut
/// the connection.
#[tokio::test]
async fn a_removed_listeners_queued_h2_client_has_new_streams_refused_after_its_goaway() {
    use support::h2raw::{self, frame, next_frame};
    use tokio::io::AsyncWriteExt;
    const HEADERS: u8 = 1;
    const GOAWAY: u8 = 7;
    const WINDOW_UPDATE: u8 = 8;
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let a = ca.server_pair(&["localhost"]);
    s.pair("a", &a);
    let config = |bind: Option<&str>| {
        let yaml = one_at_a_time(bind).replace(
            "max_connections: 1 }",
            "max_connections: 1, header_read_timeout: 1s }",
        );
        format!("runtime: {{ shutdown_grace: 20s }}\n{yaml}")
    };
    let cfg = s.config(&config(Some("127.0.0.1:0")));
    let mut p = Proxy::start(&cfg);
    let (send, held, mut c) = h2_queued_at_removal(&mut p, &cfg, &config(None), &ca.cert_pem).await;
    // GET https://localhost/ (`:path /` is static entry 4).
    let get = [&[0x82, 0x87, 0x84, 0x01, 9][..], b"localhost"].concat();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    // Room for every answer (this client never updates its window).
    out.extend(frame(WINDOW_UPDATE, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    out.extend(frame(HEADERS, 0x5, 1, &get));
    c.write_all(&out).await.unwrap();
    // Its answer, and the GOAWAY (with the PING it never answers).
    while next_frame(&mut c).await.0 != GOAWAY {}
    // New streams, a tenth of a second apart, until one is refused.
    h2raw::streams_until_refused(&mut c, 3, &get)
        .await
        .expect("the removed listener served new streams 20 s after its GOAWAY");
    within_deadline("the held client's connection", held)
        .await
        .unwrap()
        .expect("the held client's connection closed cleanly");
    drop(send);
}

/// An HTTP/2 client a removed listener took from its queue that always
/// keeps a stream open (calls to `/echo` whose request bodies go on, each
/// next one opened and echoed before the last ends): it is sent `GOAWAY`
/// as soon as its first stream has begun, and the calls it opened are
/// served to their end. Keep-alive off, it was sent `GOAWAY` only once no
/// stream was open, so it never was, and was served, new streams and all,
/// until `shutdown_grace` cut it.
#[tokio::test]
async fn a_removed_listeners_queued_h2_client_never_idle_is_sent_goaway_at_once() {
    use support::h2raw::{frame, post_block, preface, until_on};
    use tokio::io::AsyncWriteExt;
    const DATA: u8 = 0;
    let (s, ca, backend) = scene_with_backend("b").await;
    let route = "routes: [{ path_prefix: /echo, upstream: b }]";
    let limits = "max_connections: 1, header_read_timeout: 1s }";
    let tls = "{ ca: { ca_file: backend-ca.crt }, server_name: backend.local }";
    let b = format!(
        "{{ name: b, servers: [\"https://{}\"], tls: {tls} }}",
        backend.addr
    );
    let config = |bind: Option<&str>| {
        let yaml = one_at_a_time(bind).replace("routes: []", route);
        let yaml = yaml.replace("max_connections: 1 }", limits);
        format!("runtime: {{ shutdown_grace: 30s }}\n{yaml}\nupstreams: [{b}]\n")
    };
    let cfg = s.config(&config(Some("127.0.0.1:0")));
    let mut p = Proxy::start(&cfg);
    let (send, held, mut c) = h2_queued_at_removal(&mut p, &cfg, &config(None), &ca.cert_pem).await;
    c.write_all(&preface()).await.unwrap();
    let call = post_block("/echo");
    let echoed = |kind: u8, _: u8, payload: &[u8]| kind == DATA && payload == b"x";
    let ended = |_: u8, flags: u8, _: &[u8]| flags & 1 != 0;
    // Calls 1, 3, 5…, a tenth of a second apart, each one's piece echoed
    // before the one before it ends (its end echoed too), until a GOAWAY.
    let mut open = Vec::new();
    let calls = async {
        for id in (1u32..).step_by(2) {
            let mut out = frame(1, 0x4, id, &call);
            out.extend(frame(DATA, 0, id, b"x"));
            c.write_all(&out).await.unwrap();
            open.push(id);
            let mut goaway = until_on(&mut c, id, echoed).await;
            if open.len() > 1 {
                let last = open.remove(0);
                c.write_all(&frame(DATA, 1, last, b"")).await.unwrap();
                goaway |= until_on(&mut c, last, ended).await;
            }
            if goaway {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), calls)
        .await
        .expect("no GOAWAY 5 s into the calls (shutdown_grace: 30 s)");
    // The calls in flight at the GOAWAY still end, their ends echoed.
    for id in open {
        c.write_all(&frame(DATA, 1, id, b"")).await.unwrap();
        until_on(&mut c, id, ended).await;
    }
    within_deadline("the held client's connection", held)
        .await
        .unwrap()
        .expect("the held client's connection closed cleanly");
    drop(send);
}
