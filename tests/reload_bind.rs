//! Reloads that move a listener to an address overlapping the one it holds (same port).

mod support;

use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// Listener `public` on `bind`, serving pair `a`.
fn on(bind: &str) -> String {
    format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
listeners:
{}
"#,
        listener_yaml("public", bind, "[]")
    )
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
