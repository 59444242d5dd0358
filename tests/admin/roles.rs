//! Roles and Host checks: what a viewer, an editor and no token may do, and from which Host.

use serde_json::json;

use crate::common::*;
use crate::support::*;

/// 401 without or with a wrong token, 403 for a viewer's mutation, 200 for
/// the right role; a foreign Host or Origin is refused before anything else.
#[tokio::test]
async fn roles_and_host_checks() {
    let mut a = Admin::start("").await;
    let r = a.call("GET", "/api/v1/certs", None, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.headers.contains_key("www-authenticate"));
    assert_eq!(r.json()["error"], "Unauthorized");
    assert_eq!(
        a.call("GET", "/api/v1/certs", Some("nope"), None)
            .await
            .status,
        401
    );
    assert_eq!(
        a.call("GET", "/api/v1/certs", Some(VIEWER), None)
            .await
            .status,
        200
    );
    assert_eq!(
        a.call("GET", "/api/v1/certs", Some(EDITOR), None)
            .await
            .status,
        200
    );
    for (method, path) in [
        ("POST", "/api/v1/rotate"),
        ("POST", "/api/v1/cacerts/reload"),
        ("POST", "/api/v1/listeners/public/rotate"),
        ("DELETE", "/api/v1/certs/clients"),
        ("PUT", "/api/v1/listeners/public/client-auth"),
    ] {
        let r = a.call(method, path, Some(VIEWER), Some(json!({}))).await;
        assert_eq!(r.status, 403, "viewer {method} {path}: {}", r.body);
    }
    assert_eq!(
        a.call("POST", "/api/v1/rotate", Some(EDITOR), None)
            .await
            .status,
        200
    );
    // DNS rebinding / browsers: another Host or Origin is refused without
    // a bearer token (which neither can attach), before the token's 401.
    let localhost = format!("localhost:{}", a.api.port());
    for (header, status) in [
        (("host", "evil.example:80"), 403),
        (("origin", "http://evil.example"), 403),
        (("host", localhost.as_str()), 401),
    ] {
        let r = a
            .call_with("GET", "/api/v1/certs", None, None, &[header])
            .await;
        assert_eq!(r.status, status, "{header:?}: {}", r.body);
    }
    let r = a
        .call_with(
            "GET",
            "/api/v1/certs",
            Some(EDITOR),
            None,
            &[("host", &localhost)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The probes stay open (no token, any Host): orchestrators call them.
    let r = a
        .call_with("GET", "/healthz", None, None, &[("host", "10.0.0.7:9901")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        a.call("GET", "/api/v1/nothing", Some(EDITOR), None)
            .await
            .status,
        404
    );
    a.assert_nothing_leaked(&[]);
}

/// With `admin.bind: "[::ffff:127.0.0.1]:…"` a client of that address
/// sends `Host: [::ffff:127.0.0.1]:<port>`; it was compared as text with
/// the canonical `127.0.0.1:<port>` and refused (403). An IP-literal Host
/// is compared as the address it names; another address stays refused
/// (without a token: a token is served through any Host).
#[tokio::test]
async fn an_ipv4_mapped_admin_bind_takes_its_own_host() {
    let mut a = Admin::start_edited("", |config| {
        config.replacen(
            "bind: 127.0.0.1:0\n  tokens",
            "bind: \"[::ffff:127.0.0.1]:0\"\n  tokens",
            1,
        )
    })
    .await;
    let port = a.api.port();
    let mapped = format!("[::ffff:127.0.0.1]:{port}");
    let plain = format!("127.0.0.1:{port}");
    let other = format!("[::ffff:127.0.0.2]:{port}");
    let v6 = format!("[::1]:{port}");
    // 401: the Host passed, the missing token did not.
    for (host, status) in [
        (mapped.as_str(), 401),
        (plain.as_str(), 401),
        (other.as_str(), 403),
        (v6.as_str(), 403),
    ] {
        let r = a
            .call_with("GET", "/api/v1/certs", None, None, &[("host", host)])
            .await;
        assert_eq!(r.status, status, "Host {host}: {}", r.body);
    }
    let r = a
        .call_with(
            "GET",
            "/api/v1/certs",
            Some(EDITOR),
            None,
            &[("host", &mapped)],
        )
        .await;
    assert_eq!(r.status, 200, "Host {mapped}: {}", r.body);
    a.assert_nothing_leaked(&[]);
}

/// `kubectl port-forward pod/x 19901:9901`: the client connects to a local
/// port of its choosing and sends `Host: localhost:19901`, which is not the
/// pod's admin address. A valid bearer token is served whatever its Host
/// (no browser page or DNS rebinding can attach one); the same Host without
/// a token stays refused (403, not a 401 that answers for the token), and a
/// wrong token is refused for it (401, counted) as on the admin address.
#[tokio::test]
async fn a_token_is_served_through_a_port_forward() {
    let mut a = Admin::start("").await;
    let forward = port_forward(a.api).await;
    let other = format!("localhost:{}", forward.port());
    let r = admin(
        forward,
        "GET",
        "/api/v1/certs/edge",
        Some(EDITOR),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "Host {forward} with a token: {}", r.body);
    let r = a
        .call_with(
            "GET",
            "/api/v1/certs",
            Some(VIEWER),
            None,
            &[("host", &other)],
        )
        .await;
    assert_eq!(r.status, 200, "Host {other} with a token: {}", r.body);
    let r = a
        .call_with(
            "POST",
            "/api/v1/rotate",
            Some(EDITOR),
            None,
            &[("host", "evil.example"), ("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(r.status, 200, "Host and Origin evil.example: {}", r.body);
    // A viewer's token is a viewer's through any Host.
    let r = a
        .call_with(
            "POST",
            "/api/v1/rotate",
            Some(VIEWER),
            None,
            &[("host", &other)],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("viewer"), "{}", r.body);
    let r = admin(forward, "GET", "/api/v1/certs", None, None, &[]).await;
    assert_eq!(r.status, 403, "Host {forward} without a token: {}", r.body);
    assert!(r.body.contains("Host header"), "{}", r.body);
    let r = admin(forward, "GET", "/api/v1/certs", Some("nope"), None, &[]).await;
    assert_eq!(
        r.status, 401,
        "Host {forward} with a wrong token: {}",
        r.body
    );
    a.assert_nothing_leaked(&[]);
}

/// Without tokens (loopback only) nothing but the Host tells a browser's
/// or a rebound name's request apart: through a port forward, or with a
/// token the API does not use, it stays refused.
#[tokio::test]
async fn without_tokens_a_port_forward_is_refused() {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("edge", &ca.server_pair(&["localhost"]));
    let cfg = s.admin_config("{ events: false, poll_interval: 1h }", "[]", "edge", "");
    let (_p, _, api) = start_with_admin(&cfg).await;
    let forward = port_forward(api).await;
    let r = admin(api, "GET", "/api/v1/certs", None, None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for token in [None, Some(EDITOR)] {
        let r = admin(forward, "GET", "/api/v1/certs", token, None, &[]).await;
        assert_eq!(r.status, 403, "Host {forward}, {token:?}: {}", r.body);
        assert!(r.body.contains("Host header"), "{}", r.body);
    }
}

/// A local port piping every connection to `to`, as `kubectl port-forward`
/// does: the client's Host names this port, not `to`'s.
async fn port_forward(to: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut pod = tokio::net::TcpStream::connect(to).await.unwrap();
            tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut pod).await;
            });
        }
    });
    at
}
