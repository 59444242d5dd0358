//! SIGTERM closes the listening ports at once, whatever the reloader has
//! queued: a burst of SIGHUPs is one re-read, not one each.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// Entries on listener `public`, each its own pair: every SIGHUP re-reads
/// them all, which keeps the reloader busy for a while.
const ENTRIES: usize = 1000;

/// SIGHUPs sent in the burst, 20 ms apart (a script looping `kill -HUP`).
const SIGHUPS: usize = 50;

/// A burst of SIGHUPs, then SIGTERM with a request held in flight (the
/// drain goes on): a connect to the listener is refused while that
/// request is still held, and the burst was answered by fewer re-reads
/// than signals. Each SIGHUP queued its own re-read of every file, and
/// the port closed only when the reloader, behind all of them, let go of
/// its duplicate of the socket: the kernel went on completing handshakes
/// nobody would accept for seconds (11.5 s seen with 1,000 entries).
#[tokio::test]
async fn sigterm_refuses_new_clients_at_once_after_a_burst_of_sighups() {
    let (s, ca, backend) = scene_with_backend("echo").await;
    let mut certs = String::new();
    for i in 0..ENTRIES {
        s.pair(&format!("e{i}"), &ca.server_pair(&[&format!("e{i}.test")]));
        certs += &format!("\n        - {{ cert_file: e{i}.crt, key_file: e{i}.key }}");
    }
    let cfg = s.config(&format!(
        "listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ cert_file: a.crt, key_file: a.key }}{certs}
    routes: [{{ upstream: echo }}]
upstreams:
  - name: echo
    servers: [https://{}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
",
        backend.addr
    ));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;

    // A request the backend never answers keeps the drain going.
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let held =
        tokio::spawn(async move { get(addr, "localhost", client, false, "/hang", &[]).await });
    wait_until(WAIT, "the request is at the backend", || async {
        backend.slow_in_flight.load(SeqCst) == 1
    })
    .await;

    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..SIGHUPS {
        pace.tick().await;
        p.signal("HUP");
    }
    p.signal("TERM");
    p.wait_log("shutdown began", |v| {
        v["message"] == "shutting down: no new connections, draining open ones"
    })
    .await;

    // An upper bound only: what tells is the reloader's progress below.
    let refused = tokio::time::timeout(WAIT * 6, async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Err(e) => panic!("connect: {e}"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the port still completes handshakes while SIGTERM's drain runs"
    );
    // The port closed while the reloader still works through the burst:
    // not waiting for it (it let go of its duplicate of the socket only
    // after every re-read queued before SIGTERM).
    let logs = p.logs();
    let count = |text: &str| logs.iter().filter(|l| l.contains(text)).count();
    let (begun, done) = (count("SIGHUP: re-reading"), count("\"SIGHUP: done"));
    assert!(
        begun > done,
        "refused only once the burst's {done} re-reads were over"
    );
    assert!(!held.is_finished(), "the drain is over already");

    // A second SIGTERM ends the drain.
    p.signal("TERM");
    assert!(p.wait_exit(WAIT * 3).await.success());
    let done = p
        .logs()
        .iter()
        .filter(|l| l.contains("\"SIGHUP: done"))
        .count();
    assert!(
        (1..SIGHUPS).contains(&done),
        "{done} re-reads for {SIGHUPS} SIGHUPs"
    );
    assert!(held.await.unwrap().is_err(), "the request was cut");
}
