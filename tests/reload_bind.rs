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
    let here: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let served = || async {
        assert_eq!(
            served_leaf(here, "localhost", &ca.cert_pem).await.unwrap(),
            a.fingerprint
        );
    };
    served().await;

    write(&cfg, &on(&format!("127.0.0.1:{port}")));
    reloaded(&mut p, 1).await;
    served().await;
    // The wildcard is let go: another address of the host is not served.
    let elsewhere: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    wait_until(WAIT, "the wildcard address closed", || async {
        tokio::net::TcpStream::connect(elsewhere).await.is_err()
    })
    .await;

    write(&cfg, &on(&format!("0.0.0.0:{port}")));
    reloaded(&mut p, 2).await;
    served().await;
    served_leaf(elsewhere, "localhost", &ca.cert_pem)
        .await
        .expect("the wildcard serves every address again");
}
