//! Roles and Host checks: what a viewer, an editor and no token may do, and from which Host.

use serde_json::json;

use crate::common::*;

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
    // DNS rebinding / browsers: another Host or Origin is refused, even with a token.
    let localhost = format!("localhost:{}", a.api.port());
    for (header, status) in [
        (("host", "evil.example:80"), 403),
        (("origin", "http://evil.example"), 403),
        (("host", localhost.as_str()), 200),
    ] {
        let r = a
            .call_with("GET", "/api/v1/certs", Some(EDITOR), None, &[header])
            .await;
        assert_eq!(r.status, status, "{header:?}: {}", r.body);
    }
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
/// is compared as the address it names; another address stays refused.
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
    for (host, status) in [
        (mapped.as_str(), 200),
        (plain.as_str(), 200),
        (other.as_str(), 403),
        (v6.as_str(), 403),
    ] {
        let r = a
            .call_with(
                "GET",
                "/api/v1/certs",
                Some(EDITOR),
                None,
                &[("host", host)],
            )
            .await;
        assert_eq!(r.status, status, "Host {host}: {}", r.body);
    }
    a.assert_nothing_leaked(&[]);
}
