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
