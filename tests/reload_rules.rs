//! Reloads that change what a listener admits: connections opened under the old rules close; others stay.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use support::writers::mv_over;
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// A scene with the listener's pair `a` (localhost, from `ca`) and the
/// client CA `clients` in clients-ca.crt; with an empty clients.crl when
/// `crl`.
fn partners_scene(crl: bool) -> (Scene, TestCa, TestCa) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    let clients = TestCa::new("clients");
    s.pair("a", &ca.server_pair(&["localhost"]));
    write(&s.path("clients-ca.crt"), &clients.cert_pem);
    if crl {
        write(&s.path("clients.crl"), &clients.crl(&[]));
    }
    (s, ca, clients)
}

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
    let (s, ca, clients) = partners_scene(false);
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
        rejected.contains("listener public: listeners[0].routes[0].allow")
            && rejected.contains("admin API (mode none)")
            && rejected.contains(path),
        "{rejected}"
    );
}

/// Listener `partners` as in [`partners`] (no routes: `GET /` is 404),
/// with `clients.crl` as the client CA's CRL.
fn partners_with_crl(allow: &str) -> String {
    partners(allow, "[]").replace(
        "ca: { ca_file: clients-ca.crt }",
        "ca: { ca_file: clients-ca.crt, crl_files: [clients.crl] }",
    )
}

/// A client's connection to `addr` with SNI `localhost`, presenting
/// `who` ([`open_served`]).
async fn open(addr: std::net::SocketAddr, ca_pem: &str, who: &TestPair) -> Open {
    open_served(addr, "localhost", ca_pem, Some(who)).await
}

/// `config` with `max_connection_lifetime: 1ms` on the listener: a
/// connection is older than that before any reload can come (the
/// watcher's debounce alone is 50ms).
fn with_lifetime(config: String) -> String {
    let edited = config.replace(
        "limits: { idle_timeout: 1h }",
        "limits: { idle_timeout: 1h, max_connection_lifetime: 1ms }",
    );
    assert_ne!(edited, config, "the limit was not put in the listener");
    edited
}

/// `config` (of [`partners`]) with the listener's `certs` list `certs`.
fn with_certs(config: String, certs: &str) -> String {
    let edited = config.replace(
        "certs: [{ cert_file: a.crt, key_file: a.key }]",
        &format!("certs: {certs}"),
    );
    assert_ne!(edited, config, "the certs were not put in the listener");
    edited
}

/// Wait until the proxy has re-checked connection `peer` under changed
/// admission rules and kept it; then it serves a second request.
async fn kept_and_served(p: &Proxy, open: &mut Open) {
    let peer = open.peer.clone();
    wait_until(
        WAIT,
        &format!("connection {peer} re-checked and kept"),
        || {
            let kept = p.logs().iter().any(|l| {
                l.contains("\"connection still admitted under the changed rules; kept\"")
                    && l.contains(&format!("\"peer\":\"{peer}\""))
            });
            async move { kept }
        },
    )
    .await;
    let status = open.send.send_request(get_to(&open.host)).await;
    assert_eq!(
        status.map(|r| r.status()).ok(),
        Some(http::StatusCode::NOT_FOUND),
        "{peer} served on after the change"
    );
    assert!(!open.conn.is_finished(), "{peer} closed");
    assert!(!closed_for(p, &peer, "admission_rules_changed"));
}

/// Wait until connection `open` is closed for the changed rules.
async fn closed_for_rules(p: &Proxy, open: Open) {
    closed_logged(p, open, "admission_rules_changed").await;
}

/// A CRL publisher re-issues the CRL (a new nextUpdate, no new
/// revocations): the admission rules changed on paper, but an open mTLS
/// connection is still admitted under them and serves on. It used to be
/// closed at every refresh, and every keep-alive client had to make a
/// full handshake again.
#[tokio::test]
async fn a_reissued_crl_revoking_nobody_new_keeps_open_connections() {
    let (s, ca, clients) = partners_scene(true);
    let alice = clients.client_pair("alice");
    let cfg = s.config(&partners_with_crl("[{ cn: alice }]"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let mut conn = open(addr, &ca.cert_pem, &alice).await;

    let next_update = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    mv_over(&s.path("clients.crl"), &clients.crl_until(&[], next_update));
    kept_and_served(&p, &mut conn).await;
}

/// With `max_connection_lifetime`, a re-issued CRL that revokes nobody
/// new is no rotation: an open mTLS connection older than the limit is
/// re-checked, kept and served on (it used to be closed as made with
/// "rotated-out material" at every re-issue); a rotation of the served
/// certificate still closes it, for the lifetime.
#[tokio::test]
async fn a_reissued_crl_is_no_rotation_for_max_connection_lifetime() {
    let (s, ca, clients) = partners_scene(true);
    let alice = clients.client_pair("alice");
    let cfg = s.config(&with_lifetime(partners_with_crl("[{ cn: alice }]")));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let mut conn = open(addr, &ca.cert_pem, &alice).await;

    let next_update = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    mv_over(&s.path("clients.crl"), &clients.crl_until(&[], next_update));
    kept_and_served(&p, &mut conn).await;
    served_on(&p, &mut conn).await;

    let next = ca.server_pair(&["localhost"]);
    s.pair("a", &next);
    closed_for_lifetime(&p, conn).await;
}

/// With `max_connection_lifetime`, a client CA certificate no longer
/// trusted is a rotation: the end of a CA rollover (the old CA taken out
/// of the bundle) still admits alice, whose CA stays, yet her connection,
/// older than the limit and made while the old CA was trusted, closes for
/// the lifetime.
#[tokio::test]
async fn a_client_ca_change_is_a_rotation_for_max_connection_lifetime() {
    let (s, ca, clients) = partners_scene(false);
    let other = TestCa::new("other");
    let bundle = format!("{}{}", clients.cert_pem, other.cert_pem);
    write(&s.path("clients-ca.crt"), &bundle);
    let alice = clients.client_pair("alice");
    let cfg = s.config(&with_lifetime(partners("[{ cn: alice }]", "[]")));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let conn = open(addr, &ca.cert_pem, &alice).await;

    mv_over(&s.path("clients-ca.crt"), &clients.cert_pem);
    closed_for_lifetime(&p, conn).await;
}

/// With `max_connection_lifetime`, a CA certificate added to the client
/// CA bundle (a CA rollover starting) is no rotation: every certificate
/// trusted before still is. Alice's connection, older than the limit, is
/// re-checked, kept and served on (it used to be closed); a rotation of
/// the served certificate still closes it, for the lifetime.
#[tokio::test]
async fn a_client_ca_added_is_no_rotation_for_max_connection_lifetime() {
    let (s, ca, clients) = partners_scene(false);
    let alice = clients.client_pair("alice");
    let cfg = s.config(&with_lifetime(partners("[{ cn: alice }]", "[]")));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let mut conn = open(addr, &ca.cert_pem, &alice).await;

    let other = TestCa::new("other");
    let bundle = format!("{}{}", clients.cert_pem, other.cert_pem);
    mv_over(&s.path("clients-ca.crt"), &bundle);
    kept_and_served(&p, &mut conn).await;
    served_on(&p, &mut conn).await;

    s.pair("a", &ca.server_pair(&["localhost"]));
    closed_for_lifetime(&p, conn).await;
}

/// With `max_connection_lifetime`, a CA certificate taken out of the
/// client CA bundle of a listener whose mode verifies nothing
/// (`require_any`, with a `ca`) is no rotation: no handshake checked a
/// client against it. Alice's connection, older than the limit, serves on
/// after the listener's TLS is rebuilt (it used to be closed); a rotation
/// of the served certificate still closes it, for the lifetime.
#[tokio::test]
async fn a_client_ca_removed_under_require_any_is_no_rotation_for_max_connection_lifetime() {
    let (s, ca, clients) = partners_scene(false);
    let other = TestCa::new("other");
    let bundle = format!("{}{}", clients.cert_pem, other.cert_pem);
    write(&s.path("clients-ca.crt"), &bundle);
    let alice = clients.client_pair("alice");
    let config = with_lifetime(partners("[{ cn: alice }]", "[]"));
    let edited = (config.replace("mode: require_and_verify", "mode: require_any"))
        .replace("        allow: [{ cn: alice }]\n", "");
    assert!(edited.contains("require_any") && !edited.contains("allow:"));
    let cfg = s.config(&edited);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let mut conn = open(addr, &ca.cert_pem, &alice).await;

    let rebuilt = || {
        p.logs()
            .iter()
            .filter(|l| l.contains("listener TLS snapshot replaced"))
            .count()
    };
    let before = rebuilt();
    mv_over(&s.path("clients-ca.crt"), &clients.cert_pem);
    wait_until(WAIT, "the listener's TLS rebuilt without the CA", || {
        let done = rebuilt() > before;
        async move { done }
    })
    .await;
    served_on(&p, &mut conn).await;

    s.pair("a", &ca.server_pair(&["localhost"]));
    closed_for_lifetime(&p, conn).await;
}

/// Listener `partners` with pairs `a` (localhost: the default), `b` and
/// `c`, each answering the names `names` gives it, in that order.
fn three_pairs(names: [(&str, &str); 3]) -> String {
    let certs: Vec<String> = (names.iter())
        .map(|(stem, names)| {
            format!("{{ cert_file: {stem}.crt, key_file: {stem}.key, server_names: {names} }}")
        })
        .collect();
    let certs = format!("[{}]", certs.join(", "));
    with_lifetime(with_certs(partners("[{ cn: alice }]", "[]"), &certs))
}

/// With `max_connection_lifetime`, a name moved to another pair by
/// `server_names` is a rotation, though no pair's files changed: a
/// client asking for it gets another certificate now. A connection made
/// to it, older than the limit, closes for the lifetime (it used to be
/// kept for good, with a certificate no longer served for its name).
#[tokio::test]
async fn a_name_moved_to_another_pair_is_a_rotation_for_max_connection_lifetime() {
    let (s, ca, clients) = partners_scene(false);
    s.pair("b", &ca.server_pair(&["b.example", "moved.example"]));
    s.pair("c", &ca.server_pair(&["c.example", "moved.example"]));
    let alice = clients.client_pair("alice");
    let before = [
        ("a", "[localhost]"),
        ("b", "[b.example, moved.example]"),
        ("c", "[c.example]"),
    ];
    let cfg = s.config(&three_pairs(before));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let conn = open_served(addr, "moved.example", &ca.cert_pem, Some(&alice)).await;

    let after = [
        ("a", "[localhost]"),
        ("b", "[b.example]"),
        ("c", "[c.example, moved.example]"),
    ];
    write(&cfg, &three_pairs(after));
    reloaded(&mut p, 1).await;
    closed_for_lifetime(&p, conn).await;
}

/// With `max_connection_lifetime`, a reorder of `certs` that leaves every
/// name (and the default) the certificate it had is no rotation: an open
/// connection older than the limit serves on (it used to be closed); a
/// name moved afterwards still closes it, for the lifetime.
#[tokio::test]
async fn a_reorder_of_certs_is_no_rotation_for_max_connection_lifetime() {
    let (s, ca, clients) = partners_scene(false);
    s.pair("b", &ca.server_pair(&["b.example"]));
    s.pair("c", &ca.server_pair(&["c.example", "b.example"]));
    let alice = clients.client_pair("alice");
    let (a, b, c) = (
        ("a", "[localhost]"),
        ("b", "[b.example]"),
        ("c", "[c.example]"),
    );
    let cfg = s.config(&three_pairs([a, b, c]));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let mut conn = open_served(addr, "b.example", &ca.cert_pem, Some(&alice)).await;

    write(&cfg, &three_pairs([a, c, b]));
    reloaded(&mut p, 1).await;
    served_on(&p, &mut conn).await;

    let moved = [a, ("c", "[c.example, b.example]"), ("b", "[b2.example]")];
    write(&cfg, &three_pairs(moved));
    reloaded(&mut p, 2).await;
    closed_for_lifetime(&p, conn).await;
}

/// A CRL that revokes alice closes her open connection; bob's, under the
/// same listener and CA, is re-checked and serves on.
#[tokio::test]
async fn a_crl_revoking_a_client_closes_only_its_connections() {
    let (s, ca, clients) = partners_scene(true);
    let (alice, bob) = (clients.client_pair("alice"), clients.client_pair("bob"));
    let cfg = s.config(&partners_with_crl("[{ cn: alice }, { cn: bob }]"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let alices = open(addr, &ca.cert_pem, &alice).await;
    let mut bobs = open(addr, &ca.cert_pem, &bob).await;

    mv_over(&s.path("clients.crl"), &clients.crl(&[&alice]));
    closed_for_rules(&p, alices).await;
    kept_and_served(&p, &mut bobs).await;
}

/// An `allow` change that takes alice out but not bob closes only
/// alice's open connection.
#[tokio::test]
async fn an_allow_change_closes_only_the_connections_it_excludes() {
    let (s, ca, clients) = partners_scene(false);
    let (alice, bob) = (clients.client_pair("alice"), clients.client_pair("bob"));
    let cfg = s.config(&partners("[{ cn: alice }, { cn: bob }]", "[]"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let alices = open(addr, &ca.cert_pem, &alice).await;
    let mut bobs = open(addr, &ca.cert_pem, &bob).await;

    write(&cfg, &partners("[{ cn: bob }]", "[]"));
    reloaded(&mut p, 1).await;
    closed_for_rules(&p, alices).await;
    kept_and_served(&p, &mut bobs).await;
}

/// With client auth per `certs` entry, an open connection is checked
/// again under the entry that admitted it: bob, admitted by entry `b`
/// (SNI b.example), whose `allow` lets him in, is kept when the
/// listener-wide `allow` (entry `a`'s, which never let him in) changes; and
/// alice's connection to `a` closes when that change takes her out, while
/// carol's, whom it keeps, serves on.
#[tokio::test]
async fn per_name_connections_are_checked_under_their_own_entry() {
    let (s, ca, clients) = partners_scene(false);
    s.pair("b", &ca.server_pair(&["b.example"]));
    let (alice, bob, carol) = (
        clients.client_pair("alice"),
        clients.client_pair("bob"),
        clients.client_pair("carol"),
    );
    let config = |listener_allow: &str| {
        format!(
            r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
listeners:
  - name: partners
    bind: 127.0.0.1:0
    limits: {{ idle_timeout: 1h }}
    tls:
      certs:
        - {{ cert_file: a.crt, key_file: a.key, server_names: [localhost] }}
        - cert_file: b.crt
          key_file: b.key
          server_names: [b.example]
          client_auth:
            mode: require_and_verify
            ca: {{ ca_file: clients-ca.crt }}
            allow: [{{ cn: bob }}]
      client_auth:
        mode: require_and_verify
        ca: {{ ca_file: clients-ca.crt }}
        allow: {listener_allow}
    routes: []
"#
        )
    };
    let cfg = s.config(&config("[{ cn: alice }, { cn: carol }]"));
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let alices = open(addr, &ca.cert_pem, &alice).await;
    let mut carols = open(addr, &ca.cert_pem, &carol).await;
    let mut bobs = open_served(addr, "b.example", &ca.cert_pem, Some(&bob)).await;

    write(&cfg, &config("[{ cn: carol }]"));
    reloaded(&mut p, 1).await;
    closed_for_rules(&p, alices).await;
    kept_and_served(&p, &mut carols).await;
    kept_and_served(&p, &mut bobs).await;
}

/// Listener `partners` with client auth per `certs` entry: `a`
/// (localhost) letting alice in, then the catalogue entry `b` (b.example)
/// letting bob in, both verified by the clients' CA; the listener-wide
/// client auth in `listener_mode`, which neither entry uses.
fn own_auth_per_entry(b: &str, listener_mode: &str) -> String {
    format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
certs:
  - {{ id: b, type: server-pair, cert_file: b.crt, key_file: b.key }}
  - {{ id: b2, type: server-pair, cert_file: b2.crt, key_file: b2.key }}
listeners:
  - name: partners
    bind: 127.0.0.1:0
    limits: {{ idle_timeout: 1h }}
    tls:
      certs:
        - cert_file: a.crt
          key_file: a.key
          server_names: [localhost]
          client_auth:
            mode: require_and_verify
            ca: {{ ca_file: clients-ca.crt }}
            allow: [{{ cn: alice }}]
        - ref: {b}
          server_names: [b.example]
          client_auth:
            mode: require_and_verify
            ca: {{ ca_file: clients-ca.crt }}
            allow: [{{ cn: bob }}]
      client_auth:
        mode: {listener_mode}
        ca: {{ ca_file: clients-ca.crt }}
    routes: []
"#
    )
}

/// With client auth per `certs` entry, `before` then `after` (of
/// [`own_auth_per_entry`]): alice's connection to `a` and bob's to `b`,
/// open across the reload, are checked again and kept.
async fn both_kept_across(before: String, after: String) {
    let (s, ca, clients) = partners_scene(false);
    s.pair("b", &ca.server_pair(&["b.example"]));
    s.pair("b2", &ca.server_pair(&["b.example"]));
    let (alice, bob) = (clients.client_pair("alice"), clients.client_pair("bob"));
    let cfg = s.config(&before);
    let mut p = Proxy::start(&cfg);
    let addr = p.listener_addr("partners").await;
    let mut alices = open(addr, &ca.cert_pem, &alice).await;
    let mut bobs = open_served(addr, "b.example", &ca.cert_pem, Some(&bob)).await;

    write(&cfg, &after);
    reloaded(&mut p, 1).await;
    kept_and_served(&p, &mut alices).await;
    kept_and_served(&p, &mut bobs).await;
}

/// A `certs` entry pointed at another catalogue entry answering the same
/// names (a renewed pair under a new id) leaves each name with its entry
/// (SPEC §3): open connections are kept. It closed every connection of
/// the listener, the entry's id counting as a change of the names that
/// pick an entry.
#[tokio::test]
async fn a_certs_entry_given_another_id_with_the_same_names_closes_nothing() {
    let mode = "require_and_verify";
    both_kept_across(
        own_auth_per_entry("b", mode),
        own_auth_per_entry("b2", mode),
    )
    .await;
}

/// The listener-wide client-auth mode changed while every `certs` entry
/// has its own client auth: no connection was admitted under it, and
/// they are kept. It closed every connection of the listener.
#[tokio::test]
async fn a_listener_mode_no_entry_uses_closes_nothing() {
    both_kept_across(
        own_auth_per_entry("b", "require_and_verify"),
        own_auth_per_entry("b", "verify_if_given"),
    )
    .await;
}
