//! The admin listener's 64 connections held by clients that stop reading or read slowly: probes are still answered.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::task::JoinHandle;

use crate::common::*;
use crate::support::*;

/// A TCP socket bound to `from`, with a small receive buffer (so that
/// few answers fill it; the kernel rounds it up).
fn socket_from(from: &str) -> tokio::net::TcpSocket {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s
}

/// A client on `socket` (bound to its address, its receive buffer small)
/// that pipelines `GET /api/v1/certs` without end and never reads: its
/// answers fill its small receive window and hotproxy's send buffer, and
/// hotproxy's writes to it stall. Returned once the first answer bytes
/// have arrived (the connection holds an admin slot and was served); the
/// task writes on until aborted.
async fn stalled_client(
    socket: tokio::net::TcpSocket,
    api: SocketAddr,
) -> (OwnedReadHalf, JoinHandle<()>) {
    let from = socket.local_addr().unwrap();
    let tcp = socket.connect(api).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let batch = format!("GET /api/v1/certs HTTP/1.1\r\nHost: {api}\r\n\r\n").repeat(64);
    let writer = tokio::spawn(async move {
        // Ends when hotproxy closes the connection (the write fails).
        while write.write_all(batch.as_bytes()).await.is_ok() {}
    });
    let mut first = [0u8; 1];
    within_deadline(format!("the first answer to {from}"), read.peek(&mut first))
        .await
        .unwrap();
    (read, writer)
}

/// One request from `from` with `Connection: close`; the whole answer, or
/// `None` if none came within `wait`.
async fn probe(from: &str, api: SocketAddr, path: &str, wait: Duration) -> Option<String> {
    let mut tcp = tcp_from(from, api).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    match tokio::time::timeout(wait, tcp.read_to_end(&mut out)).await {
        Ok(read) => {
            read.unwrap();
            Some(String::from_utf8_lossy(&out).into_owned())
        }
        Err(_) => None,
    }
}

/// Four client addresses (four pods) × 16 connections that pipeline API
/// requests and never read hold all 64 admin slots. kubelet's `/healthz`
/// and `/readyz` from a fifth address used to wait in the backlog until
/// the stalled connections were cut (`SEND_TIMEOUT`, 60 s), long enough
/// for three failed liveness probes and a restart of the whole proxy: a
/// new connection now takes the slot of the connection stalled longest.
///
/// The probes' wait is a quarter of that cut, not a bound on speed: an
/// answer within it can only come while the stalled connections still
/// hold their slots (before the fix none came at all until the cut), and
/// an answer served at once has the whole quarter minute to arrive.
#[tokio::test]
async fn probes_are_answered_while_stalled_clients_hold_every_admin_slot() {
    let a = Api::start("").await;
    let mut held = Vec::new();
    for pod in ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"] {
        for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
            held.push(stalled_client(socket_from(pod), a.api).await);
        }
    }
    assert_eq!(held.len(), hotproxy::admin::MAX_CONNECTIONS);
    let wait = hotproxy::admin::SEND_TIMEOUT / 4;
    for path in ["/healthz", "/readyz", "/healthz"] {
        let reply = probe("127.0.0.20", a.api, path, wait).await;
        let reply = reply.unwrap_or_else(|| {
            panic!(
                "{path}: no answer within {} s while stalled clients hold every admin slot",
                wait.as_secs()
            )
        });
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    }
    for (_, writer) in &held {
        writer.abort();
    }
}

/// Eviction takes the connection that has waited on its client longest,
/// never one whose request is being served: with every slot taken, an
/// editor's request whose body is still coming (the oldest connection of
/// all) keeps its slot and is answered, while the idle connection opened
/// first after it is closed for the newcomer.
#[tokio::test]
async fn a_request_being_served_is_not_evicted() {
    let a = Api::start("").await;
    let mut busy = tcp_from("127.0.0.21", a.api).await;
    let head = format!(
        "POST /api/v1/certs/validate HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {EDITOR}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        a.api
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    // hyper says 100 Continue when the handler reads the body: the
    // request is in flight from here on.
    let mut cont = [0u8; 25];
    within_deadline("100 Continue", busy.read_exact(&mut cont))
        .await
        .unwrap();
    assert!(
        cont.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{}",
        String::from_utf8_lossy(&cont)
    );
    // The other 63 slots: connections that send nothing.
    let mut idle = Vec::new();
    for pod in ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"] {
        for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
            if idle.len() + 1 < hotproxy::admin::MAX_CONNECTIONS {
                idle.push(tcp_from(pod, a.api).await);
            }
        }
    }
    let reply = probe("127.0.0.20", a.api, "/healthz", CLIENT_DEADLINE).await;
    let reply = reply.expect("/healthz answered while every admin slot is taken");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The idle connection accepted first made room: closed, nothing sent.
    evicted_unanswered(&mut idle[0]).await;
    // The request in flight goes on: its body, then its answer.
    busy.write_all(b"{}").await.unwrap();
    let mut answer = Vec::new();
    within_deadline("the busy request's answer", busy.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

/// How much a slow pipelining client reads at each turn, and how often:
/// enough, each time, for hotproxy's blocked write to move again (a third
/// of its send buffer drained) well within the 5 s a stalled write is
/// given, so that no write to it stays blocked that long; few answers
/// each time, so that hotproxy serves them in one go.
const SLOW_READ: usize = 48 * 1024;
const SLOW_PACE: Duration = Duration::from_secs(2);

/// Send buffers of a network's size (at most 64 KiB), not loopback's
/// (4 MB, a third of which a slow reader would have to drain at each
/// turn: hotproxy would serve hundreds of pipelined answers in one go,
/// and catch the connection between two).
const NETWORK_BUFFERS: &str = "net.ipv4.tcp_wmem=4096 16384 65536";

/// A TCP socket made in the network namespace `ns` (a proxy's, through
/// [`Proxy::start_in_netns`]), bound to `from`, with a network's segment
/// size and a small receive buffer.
fn socket_in(ns: &std::fs::File, from: &str) -> tokio::net::TcpSocket {
    use std::os::fd::AsRawFd;
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    // A socket belongs to the namespace of the thread that makes it.
    let s = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: a valid descriptor of a network namespace; only
                // this thread, which ends here, moves into it.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                let domain = socket2::Domain::IPV4;
                socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap()
            })
            .join()
            .unwrap()
    });
    s.set_tcp_mss(1400).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(&from.into()).unwrap();
    s.set_nonblocking(true).unwrap();
    tokio::net::TcpSocket::from_std_stream(s.into())
}

/// The admin listener of a proxy started in a network namespace of its
/// own where send buffers have a network's size ([`NETWORK_BUFFERS`]),
/// and the namespace, to make its clients' sockets in ([`socket_in`]).
struct NetnsAdmin {
    _s: Scene,
    _p: Proxy,
    api: SocketAddr,
    ns: std::fs::File,
}

impl NetnsAdmin {
    /// With one worker thread (a small pod's): the accept loop looks at
    /// the connections between their tasks' polls, never within one (with
    /// several, a look may find one between two pipelined requests, by
    /// chance, and take it for idle). `None` when not root (a network
    /// namespace needs it): `case` is skipped, but not in CI, which runs as
    /// root, where a skipped case would be a test that cannot fail.
    async fn start(case: &str) -> Option<NetnsAdmin> {
        if !is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{case} needs root (a network namespace) and CI must run it"
            );
            eprintln!("{case} skipped: a network namespace needs root");
            return None;
        }
        let s = Scene::new();
        let ca = TestCa::new("ca");
        s.pair("pki/edge", &ca.server_pair(&["localhost"]));
        write(&s.path("editor.token"), EDITOR);
        let cfg = s.admin_config(
            "{ events: false, poll_interval: 1h }",
            "[{ role: editor, token_file: editor.token }]",
            "pki/edge",
            "runtime: { worker_threads: 1 }",
        );
        let mut p = Proxy::start_in_netns(&cfg, NETWORK_BUFFERS);
        let api = p.admin_addr().await;
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", p.pid())).unwrap();
        Some(NetnsAdmin {
            _s: s,
            _p: p,
            api,
            ns,
        })
    }
}

/// A client from `from` (in `ns`) that pipelines `GET /metrics` back to
/// back without end, never waiting for an answer, and reads [`SLOW_READ`]
/// bytes of the answers every [`SLOW_PACE`]: hotproxy's writes to it
/// move again before they have been blocked long, and the next queued
/// request begins as one ends, so the connection never waits for one.
/// Returned once the first answer bytes have arrived (it holds an admin
/// slot); `steady` is told once it has read twice (hotproxy's first
/// answers, sent as fast as the connection took them, are long over),
/// `closed` when hotproxy closes it or resets it.
async fn slow_pipelining_client(
    ns: &std::fs::File,
    from: &str,
    api: SocketAddr,
    steady: tokio::sync::mpsc::UnboundedSender<()>,
    closed: tokio::sync::mpsc::UnboundedSender<String>,
) -> (JoinHandle<()>, JoinHandle<()>) {
    let tcp = socket_in(ns, from).connect(api).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let batch = format!("GET /metrics HTTP/1.1\r\nHost: {api}\r\n\r\n").repeat(64);
    let writer = tokio::spawn(async move {
        // Ends when hotproxy closes the connection (the write fails).
        while write.write_all(batch.as_bytes()).await.is_ok() {}
    });
    let mut first = [0u8; 1];
    within_deadline(format!("the first answer to {from}"), read.peek(&mut first))
        .await
        .unwrap();
    let who = format!("{from} {}", read.local_addr().unwrap());
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pace = tokio::time::interval(SLOW_PACE);
        for turn in 0.. {
            if turn == 2 {
                let _ = steady.send(());
            }
            pace.tick().await;
            let mut got = 0;
            while got < SLOW_READ {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = closed.send(who);
                        return;
                    }
                    Ok(n) => got += n,
                }
            }
        }
    });
    (writer, reader)
}

/// Four client addresses × 16 connections that pipeline `GET /metrics`
/// back to back and read the answers slowly hold all 64 admin slots. No
/// write to them stayed blocked for 5 s and none ever waited for a
/// request, so none could be evicted: `/healthz` from a fifth address
/// waited in the backlog for as long as they went on (`send_timeout` is
/// per stall, and each read moves it). A connection that has served
/// requests without a token back to back for 5 s now counts as waiting
/// on its client since the first of them: the one doing so longest makes
/// room. Run where send buffers have a network's size ([`NETWORK_BUFFERS`]).
#[tokio::test]
async fn probes_are_answered_while_slow_pipelining_readers_hold_every_admin_slot() {
    let Some(admin) = NetnsAdmin::start("the slow pipelining readers case").await else {
        return;
    };
    let (api, ns) = (admin.api, &admin.ns);
    let (steady, mut steadied) = tokio::sync::mpsc::unbounded_channel();
    let (closed, mut evicted) = tokio::sync::mpsc::unbounded_channel();
    let mut held = Vec::new();
    for pod in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
            let client = slow_pipelining_client(ns, pod, api, steady.clone(), closed.clone());
            held.push(client.await);
        }
    }
    assert_eq!(held.len(), hotproxy::admin::MAX_CONNECTIONS);
    // The probe comes once every connection reads at its slow pace: while
    // hotproxy still sends a connection's first answers at full speed, a
    // look may find it between two and take it for idle.
    for _ in 0..hotproxy::admin::MAX_CONNECTIONS {
        within_deadline("every slow reader's second read", steadied.recv()).await;
    }
    let mut probe = socket_in(ns, "127.0.0.6").connect(api).await.unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
    probe.write_all(req.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    within_deadline(
        "/healthz while slow pipelining readers hold every admin slot",
        probe.read_to_end(&mut reply),
    )
    .await
    .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // One of them made room: closed (a reset).
    let who = within_deadline("an evicted connection's close", evicted.recv()).await;
    assert!(who.is_some());
    for (writer, reader) in &held {
        writer.abort();
        reader.abort();
    }
}

/// A keep-alive connection from `from` that was served one `/healthz`
/// and now waits, idle, with its answer read.
async fn served_then_idle(from: &str, api: SocketAddr) -> tokio::net::TcpStream {
    let mut tcp = tcp_from(from, api).await;
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {api}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\nok\n") {
        let mut buf = [0u8; 1024];
        let n = within_deadline(format!("{from}'s /healthz"), tcp.read(&mut buf))
            .await
            .unwrap();
        assert!(n > 0, "{from}: closed before its answer");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    tcp
}

/// kubelet probes a pod from the node's address, which the node's own
/// agents and hostNetwork pods share: their 16 keep-alive connections,
/// idle, had every probe from that address closed unanswered (a 17th
/// from one address was refused at once, whatever the 16 were doing),
/// though the table had room. At the address's limit a newcomer now
/// takes the slot of that address's own connection waited on its client
/// longest, the one idle longest; it is refused only when none may be
/// evicted.
#[tokio::test]
async fn a_probe_is_answered_while_its_own_address_holds_16_idle_connections() {
    let a = Api::start("").await;
    let node = "127.0.0.31";
    let mut idle = Vec::new();
    for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
        idle.push(served_then_idle(node, a.api).await);
    }
    let reply = probe(node, a.api, "/healthz", CLIENT_DEADLINE).await;
    let reply = reply.expect("/healthz answered while its address holds 16 idle connections");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    // The connection idle longest made room: closed, nothing more sent.
    evicted_unanswered(&mut idle[0]).await;
}

/// An editor's `POST /api/v1/certs/validate` from `from` whose 2-byte body
/// is still to come: in flight (hyper said `100 Continue`) until the body
/// is sent, never evicted meanwhile.
async fn awaiting_its_body(from: &str, api: SocketAddr) -> tokio::net::TcpStream {
    let mut tcp = tcp_from(from, api).await;
    let head = format!(
        "POST /api/v1/certs/validate HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {EDITOR}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut cont = [0u8; 25];
    within_deadline(format!("{from}'s 100 Continue"), tcp.read_exact(&mut cont))
        .await
        .unwrap();
    assert!(
        cont.starts_with(b"HTTP/1.1 100 Continue\r\n"),
        "{}",
        String::from_utf8_lossy(&cont)
    );
    tcp
}

/// What `tcp` is sent until the server closes it (a reset after an
/// answer keeps the answer).
async fn answer_on(what: &str, tcp: &mut tokio::net::TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match within_deadline(what, tcp.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Two probes come while every slot is held by a token holder's request
/// being served; one request ends. The first probe, accepted first, was
/// evicted for the second before its request was read: its connection
/// counted as idle since it was accepted (its wait for the slot
/// included), and with no request in flight yet it was the one connection
/// that could be evicted. A connection's time now starts when it is given
/// its slot, and it may not be evicted before its first request begins
/// while no read of it has found its socket empty: the second probe waits
/// for the first's slot.
/// One worker thread: the accept loop takes the second probe right after
/// the first's slot, before the first's task has read anything (on
/// several, that read may come first, by chance).
#[tokio::test]
async fn a_probe_given_a_slot_after_waiting_is_not_evicted_for_the_next() {
    let a = Api::start("runtime: { worker_threads: 1 }").await;
    let mut busy = Vec::new();
    for pod in ["127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44"] {
        for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
            busy.push(awaiting_its_body(pod, a.api).await);
        }
    }
    assert_eq!(busy.len(), hotproxy::admin::MAX_CONNECTIONS);
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        a.api
    );
    let mut first = tcp_from("127.0.0.45", a.api).await;
    first.write_all(req.as_bytes()).await.unwrap();
    let mut second = tcp_from("127.0.0.46", a.api).await;
    second.write_all(req.as_bytes()).await.unwrap();
    // One request ends: its body, then its answer.
    busy[0].write_all(b"{}").await.unwrap();
    let answer = answer_on("the busy request's answer", &mut busy[0]).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    drop(busy.remove(0));
    let reply = answer_on("the first probe's answer", &mut first).await;
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "the first probe: {reply:?}"
    );
    let reply = answer_on("the second probe's answer", &mut second).await;
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "the second probe: {reply:?}"
    );
}

/// Connections that send nothing, opened from the node's address faster
/// than they age (a flood, or agents that keep renewing theirs): each one
/// just given its slot was spared for a second, so its address's 16 were
/// nearly always all spared, none could make room, and kubelet's probe from
/// that address was closed at once. A connection whose read finds nothing
/// on its socket, its first request not begun, has nothing more to be
/// spared for: the probe takes the slot of the one silent longest (or, if
/// none has been read yet, waits until one has). Three rounds: each one's
/// 16 take the last one's slots. One worker thread: the accept loop may
/// take the probe before any of the 16 tasks has run.
#[tokio::test]
async fn a_probe_is_answered_while_its_own_address_keeps_opening_silent_connections() {
    let a = Api::start("runtime: { worker_threads: 1 }").await;
    let node = "127.0.0.51";
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        a.api
    );
    let mut silent = Vec::new();
    for round in 0..3 {
        for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
            silent.push(tcp_from(node, a.api).await);
        }
        let mut probe = tcp_from(node, a.api).await;
        probe.write_all(req.as_bytes()).await.unwrap();
        let reply = answer_on("the probe's answer", &mut probe).await;
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "round {round}: the probe from an address opening silent connections: {reply:?}"
        );
    }
}

/// How long a run of requests without a token must have lasted before it
/// may make room for a newcomer (`RUN`, src/admin/slots.rs).
const RUN: Duration = Duration::from_secs(1);

/// kubelet's probe from the node's address, whose 16 connections are the
/// node's agents serving requests without a token back to back (busy a
/// little under 5 s at a time, then resting): in their busy part none had
/// a write stopped for 5 s nor waited for a request, so none could be
/// evicted, and the probe, the address's 17th, was closed at once (a
/// failed liveness probe; three, and kubelet restarts the pod). The rule
/// that lets a run without a token of a second make room applied only
/// when all 64 slots were taken. It now applies to an address's own too,
/// at once (the accept loop, serial, would hold every other newcomer
/// while a 17th waited), when none of them may be evicted otherwise.
/// Here the 16 pipeline API requests without a token and do not read,
/// where send buffers have a network's size ([`NETWORK_BUFFERS`]):
/// hotproxy's writes to them block within their first few hundred
/// answers (on loopback's, they moved for seconds, and a look could find
/// one between two answers and take it for idle), for less than 5 s when
/// the probe comes, once their runs have lasted a second.
#[tokio::test]
async fn a_probe_is_answered_while_its_own_address_holds_16_busy_runs_without_a_token() {
    let Some(admin) = NetnsAdmin::start("the busy runs case").await else {
        return;
    };
    let (api, ns) = (admin.api, &admin.ns);
    let node = "127.0.0.32";
    let mut busy = Vec::new();
    for _ in 0..hotproxy::admin::MAX_CONNECTIONS_PER_CLIENT {
        busy.push(stalled_client(socket_in(ns, node), api).await);
    }
    // Every run began before its first answer came.
    tokio::time::sleep(RUN).await;
    let mut probe = socket_in(ns, node).connect(api).await.unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
    probe.write_all(req.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let _ = within_deadline("the probe's answer or close", probe.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "/healthz from an address whose 16 serve requests without a token: {reply:?}"
    );
    for (_, writer) in &busy {
        writer.abort();
    }
}
