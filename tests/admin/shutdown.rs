//! The admin listener during the shutdown drain: API calls answered `503` and never applied, probes answered.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::*;
use crate::support::*;

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The proxy's end of `client`'s connection to `server` (IPv4), as
/// Linux's `/proc/net/tcp` gives it: its fields, split at whitespace.
fn proxy_end(server: SocketAddr, client: SocketAddr) -> Vec<String> {
    let hex = |a: SocketAddr| {
        let SocketAddr::V4(v4) = a else {
            panic!("/proc/net/tcp is IPv4 only: {a}");
        };
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        )
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let mut rows: Vec<Vec<String>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        // Not one in TIME_WAIT (`06`): an earlier connection of the same
        // address pair, the client's port used again, stays listed there.
        .filter(|f| f.len() > 9 && f[1] == local && f[2] == remote && f[3] != "06")
        .collect();
    match rows.len() {
        1 => rows.remove(0),
        n => panic!("{n} sockets {server} <- {client}"),
    }
}

/// The bytes waiting unread in the proxy's end of `client`'s connection
/// to `server`: an established socket's receive queue is its `rx_queue`.
fn unread_by_proxy(server: SocketAddr, client: SocketAddr) -> usize {
    let f = proxy_end(server, client);
    let rx = f[4].split_once(':').expect("tx_queue:rx_queue").1;
    usize::from_str_radix(rx, 16).unwrap()
}

/// Whether the proxy has accepted `client`'s connection to `server`: a
/// socket still in the listener's accept queue has no inode (`0`), one
/// `accept()` took has that of its file descriptor.
fn accepted_by_proxy(server: SocketAddr, client: SocketAddr) -> bool {
    proxy_end(server, client)[9] != "0"
}

/// A kept-alive admin connection whose change (its head and first body
/// byte) is in flight at SIGTERM: the head of `method path` with the
/// editor token and the length of `body`, then `{`, read by the proxy
/// before this returns (nothing left unread on its side: the head read in
/// the same read is parsed, so its request is in flight).
async fn change_in_flight(api: SocketAddr, method: &str, path: &str, body: &str) -> TcpStream {
    let mut c = TcpStream::connect(api).await.unwrap();
    // Kept alive: a first request answered on it.
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = read_h1_response(&mut c).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {EDITOR}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let me = c.local_addr().unwrap();
    wait_until(WAIT, "the proxy has read the head", || async {
        unread_by_proxy(api, me) == 0
    })
    .await;
    c
}

/// One HTTP/1.1 response read from `s`: its head and a body of the
/// `content-length` it declares.
async fn read_h1_response(s: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    within_deadline("an admin response", async {
        let mut got = Vec::new();
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if got.len() >= end + 4 + length {
                    return String::from_utf8_lossy(&got).into_owned();
                }
            }
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
}

/// An `Admin` whose listener `public` routes `/hang` to a backend that
/// never answers, with such a request held there: the shutdown drain it
/// keeps going lasts until a second SIGTERM. Also the held request's
/// task, and the backend and its scene, to keep.
async fn drain_held() -> (
    Admin,
    tokio::task::JoinHandle<std::io::Result<Reply>>,
    (Scene, Backend),
) {
    let (elsewhere, _, backend) = scene_with_backend("echo").await;
    let backend_ca = elsewhere.path("backend-ca.crt");
    let a = Admin::start_edited("", |config| {
        config
            + &format!(
                "    routes: [{{ path_prefix: /hang, upstream: echo }}]\nupstreams:\n  - name: echo\n    \
                 servers: [https://{}]\n    tls: {{ ca: {{ ca_file: {} }}, server_name: backend.local }}\n",
                backend.addr,
                backend_ca.display()
            )
    })
    .await;
    let client = client_config(&a.ca.cert_pem, None, &[b"http/1.1"]);
    let addr = a.addr;
    let held =
        tokio::spawn(async move { get(addr, "localhost", client, false, "/hang", &[]).await });
    wait_until(WAIT, "the backend holds a request", || async {
        backend
            .slow_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    (a, held, (elsewhere, backend))
}

/// `GET path` on a new admin connection: the response as read, or empty
/// when the connection is refused or closed unanswered.
async fn probe(api: SocketAddr, path: &str) -> String {
    use tokio::io::AsyncReadExt;
    let Ok(mut c) = TcpStream::connect(api).await else {
        return String::new();
    };
    let get = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    if c.write_all(get.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut got = Vec::new();
    // Read to the close: a probe answered during the drain is its
    // connection's last.
    within_deadline("an admin probe's answer and close", c.read_to_end(&mut got))
        .await
        .ok();
    String::from_utf8_lossy(&got).into_owned()
}

/// SPEC §4: a call made while the process shuts down gets `503` (`the
/// proxy is shutting down`), and §1: nothing is applied while it drains.
/// While a request the backend holds keeps the drain going, two
/// kept-alive admin connections each have a change in flight at
/// SIGTERM (its head read, its body not yet sent): a client-auth PUT and
/// the creation of a stored entry. Their bodies come after the signal.
/// Both were applied during the drain and answered 200 and 201 (the
/// client-auth change even closing the draining connections it no
/// longer admitted, the entry persisted for the next start).
#[tokio::test]
async fn api_changes_during_the_drain_are_refused_and_not_applied() {
    let (mut a, _held, _backend) = drain_held().await;
    let api = a.api;
    let r = a
        .editor("GET", "/api/v1/listeners/public/client-auth", None)
        .await;
    assert_eq!(r.json()["mode"], "none");

    let auth = r#""mode": "require_and_verify", "ca": "clients"}"#;
    let auth_body = format!("{{{auth}");
    let mut put = change_in_flight(
        api,
        "PUT",
        "/api/v1/listeners/public/client-auth",
        &auth_body,
    )
    .await;
    let created = inline_ca("late", &a.clients).to_string();
    let mut post = change_in_flight(api, "POST", "/api/v1/certs", &created).await;

    a.p.signal("TERM");
    // The shutdown has begun once a probe is told so.
    wait_until(WAIT, "/readyz says draining", || async {
        probe(api, "/readyz").await.starts_with("HTTP/1.1 503")
    })
    .await;
    put.write_all(auth.as_bytes()).await.unwrap();
    post.write_all(&created.as_bytes()[1..]).await.unwrap();
    for (what, c) in [("client-auth PUT", &mut put), ("POST /certs", &mut post)] {
        let got = read_h1_response(c).await;
        assert!(got.starts_with("HTTP/1.1 503"), "{what}: {got}");
        assert!(got.contains("the proxy is shutting down"), "{what}: {got}");
    }
    // A second SIGTERM ends the drain (SPEC §1).
    a.p.signal("TERM");
    assert!(a.p.wait_exit(WAIT).await.success());
    let logs = a.p.logs();
    for applied in [
        "client authentication changed at runtime",
        "certificate entry created",
        "admin API change applied",
    ] {
        assert!(
            !logs.iter().any(|l| l.contains(applied)),
            "{applied}: {logs:#?}"
        );
    }

    // Nothing was persisted: the next start has no entry `late`.
    let (p, _, api) = start_with_admin(&a.s.path("config.yaml")).await;
    a.p = p;
    a.api = api;
    assert_eq!(
        a.editor("GET", "/api/v1/certs/late", None).await.status,
        404
    );
    assert_eq!(
        a.editor("GET", "/api/v1/listeners/public/client-auth", None)
            .await
            .json()["mode"],
        "none"
    );
    a.assert_nothing_leaked(&[]);
}

/// SPEC §4: once SIGTERM has come no call is carried out, a read
/// included: a validation is a read. With the drain held, two kept-alive
/// admin connections have a call in flight at SIGTERM (head read, body
/// sent after): a validation of a pair in files, and a POST /certs whose
/// body is refused (no `type`). The validation went on during the drain:
/// its files read and parsed on the blocking pool and answered 200; the
/// POST was answered 400, its body judged before `call` looked at the
/// shutdown. Both are 503 now, and the pair's files are not opened: the
/// test watches their directory (inotify's opens), and its own open of a
/// third file there, after the answers, marks where the proxy's would be.
#[tokio::test]
async fn a_validation_during_the_drain_reads_nothing() {
    use notify::event::{AccessKind, EventKind};
    use notify::{RecursiveMode, Watcher};

    let (mut a, _held, _backend) = drain_held().await;
    let api = a.api;
    let dir = a.s.path("late");
    let spare = a.ca.server_pair(&["spare.local"]);
    write(&dir.join("spare.crt"), &spare.cert_pem);
    write(&dir.join("spare.key"), &spare.key_pem);
    write(&dir.join("mark"), "");
    let validated = serde_json::json!({"type": "server-pair", "source": "file",
        "cert_file": dir.join("spare.crt"), "key_file": dir.join("spare.key")})
    .to_string();
    // Before the signal it is valid: the 503 below is for the shutdown.
    let r = a
        .editor(
            "POST",
            "/api/v1/certs/validate",
            Some(serde_json::from_str(&validated).unwrap()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let (tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e
            && matches!(e.kind, EventKind::Access(AccessKind::Open(_)))
        {
            let _ = tx.send(e.paths);
        }
    })
    .unwrap();
    watcher.watch(&dir, RecursiveMode::NonRecursive).unwrap();

    let mut validate = change_in_flight(api, "POST", "/api/v1/certs/validate", &validated).await;
    let refused = r#"{"id": "late"}"#;
    let mut post = change_in_flight(api, "POST", "/api/v1/certs", refused).await;
    // An idle kept-alive connection: closed once the shutdown has begun.
    let mut idle = TcpStream::connect(api).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let first = read_h1_response(&mut idle).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    a.p.signal("TERM");
    let mut rest = Vec::new();
    within_deadline("the idle admin connection's close", async {
        use tokio::io::AsyncReadExt;
        idle.read_to_end(&mut rest).await
    })
    .await
    .ok();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    validate
        .write_all(&validated.as_bytes()[1..])
        .await
        .unwrap();
    post.write_all(&refused.as_bytes()[1..]).await.unwrap();
    let answers = [
        ("validation", read_h1_response(&mut validate).await),
        ("refused POST /certs", read_h1_response(&mut post).await),
    ];

    // Opens come in order: any of the pair's precedes the mark's.
    std::fs::File::open(dir.join("mark")).unwrap();
    let mut pair_opened = Vec::new();
    loop {
        let paths = within_deadline("the mark's open event", opened.recv())
            .await
            .expect("the watcher runs");
        if paths.iter().any(|p| p.ends_with("mark")) {
            break;
        }
        pair_opened.extend(
            paths
                .into_iter()
                .filter(|p| p.starts_with(&dir) && p != &dir),
        );
    }
    assert!(
        pair_opened.is_empty(),
        "read during the drain: {pair_opened:?}; answers: {answers:#?}"
    );
    for (what, got) in &answers {
        assert!(got.starts_with("HTTP/1.1 503"), "{what}: {got}");
        assert!(got.contains("the proxy is shutting down"), "{what}: {got}");
    }
    a.p.signal("TERM");
    assert!(a.p.wait_exit(WAIT).await.success());
    a.assert_nothing_leaked(&[&spare.key_pem]);
}

/// SPEC §4: from the moment the shutdown begins until the process exits,
/// `/readyz` answers `503` (`draining`), so that endpoint controllers and
/// load balancers stop sending new connections (Kubernetes, Envoy's
/// `/ready`, Traefik's ping all do so), while `/healthz` stays `200`: a
/// failed liveness probe would have kubelet kill the pod mid-drain. The
/// admin listener closed at SIGTERM, so every probe during the drain
/// failed, liveness included; and an answer to a request on a connection
/// still open said `ready`. With the drain held, a kept-alive connection
/// answered `ready` before the signal is closed at it (idle, SPEC §1);
/// new connections then get `draining`, `ok` and the metrics, each as its
/// connection's last answer.
#[tokio::test]
async fn probes_during_the_drain_say_draining_and_alive() {
    let (mut a, held, _backend) = drain_held().await;
    let api = a.api;
    let mut kept = TcpStream::connect(api).await.unwrap();
    kept.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let before = read_h1_response(&mut kept).await;
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(before.ends_with("\r\n\r\nready\n"), "{before}");

    a.p.signal("TERM");
    // The shutdown has begun once the kept-alive connection is closed.
    let mut rest = Vec::new();
    within_deadline("the kept-alive connection's close", async {
        use tokio::io::AsyncReadExt;
        kept.read_to_end(&mut rest).await
    })
    .await
    .ok();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));

    for (path, status, body) in [
        ("/readyz", "503", "\r\n\r\ndraining\n"),
        ("/healthz", "200", "\r\n\r\nok\n"),
        ("/metrics", "200", "# EOF\n"),
        ("/readyz", "503", "\r\n\r\ndraining\n"),
    ] {
        let got = probe(api, path).await;
        assert!(
            got.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {got:?}"
        );
        assert!(got.ends_with(body), "{path}: {got:?}");
        assert!(
            got.to_lowercase().contains("\r\nconnection: close\r\n"),
            "{path}: {got:?}"
        );
    }
    assert!(!held.is_finished(), "the drain is over already");
    // A second SIGTERM ends the drain (SPEC §1).
    a.p.signal("TERM");
    assert!(a.p.wait_exit(WAIT).await.success());
}

/// SPEC §1 and §4: an admin connection with no request begun at SIGTERM
/// is answered one request, its last (`Connection: close`), as one
/// accepted during the drain is. kubelet's probe opens its connection,
/// the proxy accepts it, SIGTERM comes, then its `GET /healthz`: that
/// connection was closed at once, unanswered (nothing unread at the
/// signal), a failed liveness probe mid-drain, the thing the admin port
/// answering through the drain is there to prevent. Its `/readyz` so
/// too, where `503` `draining` is due, and a `/healthz` whose head was
/// part way in at the signal (read by the proxy). The connections are
/// accepted before the signal (their sockets have a file descriptor),
/// and their requests sent, or ended, once the shutdown has begun (a
/// probe says `draining`) and each connection's driver has seen it (its
/// debug line).
#[tokio::test]
async fn a_probe_accepted_before_sigterm_and_sent_after_is_answered() {
    use tokio::io::AsyncReadExt;
    let (mut a, held, _backend) = drain_held().await;
    let api = a.api;
    let mut health = TcpStream::connect(api).await.unwrap();
    let mut ready = TcpStream::connect(api).await.unwrap();
    let mut half = TcpStream::connect(api).await.unwrap();
    let begun = "GET /healthz HTTP/1.1\r\nHost: loc";
    half.write_all(begun.as_bytes()).await.unwrap();
    let clients = [&health, &ready, &half].map(|c| c.local_addr().unwrap());
    wait_until(WAIT, "the proxy has accepted the connections", || async {
        clients.iter().all(|&c| accepted_by_proxy(api, c))
    })
    .await;
    wait_until(WAIT, "the proxy has read half a head", || async {
        unread_by_proxy(api, clients[2]) == 0
    })
    .await;

    a.p.signal("TERM");
    wait_until(WAIT, "/readyz says draining", || async {
        probe(api, "/readyz").await.starts_with("HTTP/1.1 503")
    })
    .await;
    for client in clients {
        let peer = client.to_string();
        a.p.wait_log("the connection's driver has seen the shutdown", |v| {
            v["listener"] == "admin"
                && v["peer"] == peer.as_str()
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("shutting down"))
        })
        .await;
    }

    let healthz = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let readyz = "GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (c, sent, status, body) in [
        (&mut health, healthz, "200", "\r\n\r\nok\n"),
        (&mut ready, readyz, "503", "\r\n\r\ndraining\n"),
        (&mut half, &healthz[begun.len()..], "200", "\r\n\r\nok\n"),
    ] {
        // A write to a connection closed already may fail: what was read
        // then (nothing) says so below.
        let _ = c.write_all(sent.as_bytes()).await;
        let mut got = Vec::new();
        within_deadline("the answer and the close", c.read_to_end(&mut got))
            .await
            .ok();
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with(&format!("HTTP/1.1 {status}")),
            "{sent:?}: {got:?}"
        );
        assert!(got.ends_with(body), "{sent:?}: {got:?}");
        assert!(
            got.to_lowercase().contains("\r\nconnection: close\r\n"),
            "{sent:?}: {got:?}"
        );
    }
    assert!(!held.is_finished(), "the drain is over already");
    a.p.signal("TERM");
    assert!(a.p.wait_exit(WAIT).await.success());
}
