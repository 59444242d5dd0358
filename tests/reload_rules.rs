//! Reloads that change what a listener admits: connections opened under the old rules close; others stay.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::writers::mv_over;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// Listener `partners`: server pair `a`, clients of `clients-ca.crt`
/// verified and matched against `allow`, and `routes`.
fn partners(allow: &str, routes: &str) -> String {
    format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
listeners:
  - name: partners
    bind: 127.0.0.1:0
    limits: {{ idle_timeout: 1h }}
    tls:
      certs: [{{ cert_file: a.crt, key_file: a.key }}]
      client_auth:
        mode: require_and_verify
        ca: {{ ca_file: clients-ca.crt }}
        allow: {allow}
    routes: {routes}
upstreams:
  - name: nowhere
    servers: [http://127.0.0.1:9]
"#
    )
}

/// Wait until the proxy has logged `n` successful configuration reloads.
async fn reloaded(p: &mut Proxy, n: usize) {
    wait_until(WAIT, &format!("configuration reload {n} applied"), || {
        let done = p
            .logs()
            .iter()
            .filter(|l| l.contains("\"configuration reloaded\""))
            .count()
            >= n;
        async move { done }
    })
    .await;
}

/// `GET /` on an open HTTP/2 connection: its status.
async fn h2_get(client: &mut h2::client::SendRequest<Bytes>) -> Result<u16, h2::Error> {
    let mut ready = client.clone().ready().await?;
    let (resp, _) = ready.send_request(
        http::Request::get("https://localhost/").body(()).unwrap(),
        true,
    )?;
    Ok(resp.await?.status().as_u16())
}

/// Taking a client out of the listener's `allow` closes the connections it
/// opened before: its kept-alive HTTP/1.1 connection is closed, its HTTP/2
/// connection gets GOAWAY, and a new one is refused in the handshake. A
/// reload of an unrelated field (a route) and a certificate rotation leave
/// them serving. They used to serve the revoked client until it left.
#[tokio::test]
async fn revoking_a_client_closes_its_open_connections() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let clients = TestCa::new("clients");
    s.pair("a", &ca.server_pair(&["localhost"]));
    write(&s.path("clients-ca.crt"), &clients.cert_pem);
    let bob = clients.client_pair("bob");
    let both = "[{ cn: alice }, { cn: bob }]";
    let cfg = s.config(&partners(both, "[]"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let h1_cfg = client_config(&ca.cert_pem, Some(&bob), &[b"http/1.1"]);
    let h2_cfg = client_config(&ca.cert_pem, Some(&bob), &[b"h2"]);

    let tls = connect(addr, "localhost", h1_cfg.clone()).await.unwrap();
    let (mut h1, h1_conn) = keep_open_h1(tls).await;
    let tls = connect(addr, "localhost", h2_cfg.clone()).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2c, h2_conn) = h2::client::handshake(tls).await.unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    let served = |status: u16| assert_eq!(status, 404, "served (no route for /)");
    served(
        h1.send_request(get_localhost())
            .await
            .unwrap()
            .status()
            .as_u16(),
    );
    served(h2_get(&mut h2c).await.unwrap());

    // A route added: the same rules, the connections serve on.
    write(
        &cfg,
        &partners(both, "[{ path_prefix: /elsewhere, upstream: nowhere }]"),
    );
    reloaded(&mut p, 1).await;
    served(
        h1.send_request(get_localhost())
            .await
            .unwrap()
            .status()
            .as_u16(),
    );
    served(h2_get(&mut h2c).await.unwrap());

    // The server certificate rotated: they serve on too.
    let next = ca.server_pair(&["localhost"]);
    mv_over(&s.path("a.key"), &next.key_pem);
    mv_over(&s.path("a.crt"), &next.cert_pem);
    wait_until(WAIT, "the rotated certificate served", || async {
        served_leaf(addr, "localhost", &ca.cert_pem)
            .await
            .ok()
            .as_deref()
            == Some(&*next.fingerprint)
    })
    .await;
    served(
        h1.send_request(get_localhost())
            .await
            .unwrap()
            .status()
            .as_u16(),
    );
    served(h2_get(&mut h2c).await.unwrap());

    // Bob taken out of `allow`: both of his connections close.
    write(
        &cfg,
        &partners(
            "[{ cn: alice }]",
            "[{ path_prefix: /elsewhere, upstream: nowhere }]",
        ),
    );
    reloaded(&mut p, 2).await;
    within_deadline("bob's HTTP/1.1 connection closed", h1_conn)
        .await
        .unwrap()
        .unwrap();
    assert!(h1.send_request(get_localhost()).await.is_err());
    within_deadline("bob's HTTP/2 connection closed", h2_conn)
        .await
        .unwrap()
        .unwrap();
    let refused = h2_get(&mut h2c).await;
    assert!(refused.is_err(), "served after GOAWAY: {refused:?}");
    // And a new connection is refused in the handshake (TLS 1.3: the
    // alert comes with the first read).
    let again = match connect(addr, "localhost", h1_cfg).await {
        Ok(tls) => {
            let (mut send, _conn) = keep_open_h1(tls).await;
            send.send_request(get_localhost()).await.map(|r| r.status())
        }
        Err(e) => panic!("refused before the handshake ended: {e}"),
    };
    assert!(again.is_err(), "a new connection was served: {again:?}");
}

/// Taking a client's range out of `allow_from` closes its open connection
/// too (checked only at accept, it served on); a new one is refused.
#[tokio::test]
async fn a_range_taken_out_of_allow_from_closes_its_open_connections() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    let ranges = |allow_from: &str| {
        format!(
            "watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}\nlisteners:\n{}\n    allow_from: {allow_from}\n",
            listener_yaml("public", "127.0.0.1:0", "[]")
        )
    };
    let cfg = s.config(&ranges("[127.0.0.0/8]"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let tls_from = |from: &'static str| {
        let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
        async move {
            let tcp = tcp_from(from, addr).await;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
        }
    };
    let (mut send, conn) = keep_open_h1(tls_from("127.0.0.2").await.unwrap()).await;
    assert_eq!(
        send.send_request(get_localhost()).await.unwrap().status(),
        404
    );
    write(&cfg, &ranges("[127.0.0.1/32]"));
    reloaded(&mut p, 1).await;
    within_deadline("the connection from 127.0.0.2 closed", conn)
        .await
        .unwrap()
        .unwrap();
    assert!(send.send_request(get_localhost()).await.is_err());
    assert!(tls_from("127.0.0.2").await.is_err(), "a new one was let in");
}
