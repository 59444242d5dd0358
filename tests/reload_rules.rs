//! Reloads that change what a listener admits: connections opened under the old rules close; others stay.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
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

/// Both of a client's open connections (HTTP/1.1 and HTTP/2) still serve
/// `GET /` (404: no route for `/`).
async fn both_served(
    h1: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
    h2c: &mut h2::client::SendRequest<Bytes>,
) {
    let status = h1.send_request(get_localhost()).await.unwrap().status();
    assert_eq!(status, 404, "HTTP/1.1 served (no route for /)");
    assert_eq!(h2_get(h2c).await.unwrap(), 404, "HTTP/2 served");
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
    both_served(&mut h1, &mut h2c).await;

    // A route added: the same rules, the connections serve on.
    write(
        &cfg,
        &partners(both, "[{ path_prefix: /elsewhere, upstream: nowhere }]"),
    );
    reloaded(&mut p, 1).await;
    both_served(&mut h1, &mut h2c).await;

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
    both_served(&mut h1, &mut h2c).await;

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

/// The client-auth PUT set listener `public` to mode `none` (no route had
/// `allow`); the file then gained a route `allow` without its client_auth
/// changing, so the API's `none` stayed and every request to the route
/// would have got 403. The reload is refused, naming the listener, the
/// route and the API's mode; the running configuration keeps serving.
#[tokio::test]
async fn a_reload_adding_a_route_allow_under_an_api_mode_none_is_refused() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let clients = TestCa::new("clients");
    let backend_ca = TestCa::new("backend");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    write(&s.path("clients-ca.crt"), &clients.cert_pem);
    write(&s.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = Backend::start("app", &backend_ca.server_pair(&["backend.local"]), None).await;
    let config = |routes: &str| {
        format!(
            r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
admin: {{ bind: 127.0.0.1:0 }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: edge.crt, key_file: edge.key }}]
      client_auth: {{ mode: require_and_verify, ca: {{ ca_file: clients-ca.crt }} }}
    routes: {routes}
upstreams:
  - name: app
    servers: [https://{}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
"#,
            backend.addr
        )
    };
    let cfg = s.config(&config("[{ upstream: app }]"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let path = "/api/v1/listeners/public/client-auth";
    let r = admin(api, "PUT", path, None, Some(json!({ "mode": "none" })), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    mv_over(
        &cfg,
        &config(
            "[{ path_prefix: /ops, upstream: app, allow: [{ cn: alice }] }, { upstream: app }]",
        ),
    );
    wait_until(WAIT, "the reload's outcome", || {
        let done = p.logs().iter().any(|l| {
            l.contains("\"configuration rejected") || l.contains("\"configuration reloaded\"")
        });
        async move { done }
    })
    .await;
    // The running configuration stays: mode none, and /ops still served
    // by the catch-all route (with the reload applied it was 403).
    let r = admin(api, "GET", path, None, None, &[]).await;
    assert_eq!(r.json()["mode"], "none", "{}", r.body);
    let alice = clients.client_pair("alice");
    let status = get(
        addr,
        "localhost",
        client_config(&ca.cert_pem, Some(&alice), &[b"http/1.1"]),
        false,
        "/ops",
        &[],
    )
    .await
    .unwrap()
    .status;
    assert_eq!(status, 200, "GET /ops after the reload");
    let logs = p.logs();
    let rejected = logs
        .iter()
        .find(|l| l.contains("\"configuration rejected"))
        .unwrap_or_else(|| panic!("reload not refused:\n{}", logs.join("\n")));
    assert!(
        rejected.contains("listener public: routes[0].allow")
            && rejected.contains("admin API (mode none)")
            && rejected.contains(path),
        "{rejected}"
    );
}
