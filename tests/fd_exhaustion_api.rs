//! Fault: out of file descriptors during admin API calls that read an entry's files: `503` with `Retry-After`, nothing changed or recorded.

mod support;

use serde_json::json;
use support::fd_limit::*;
use support::*;

/// While a connection burst holds every descriptor, the admin API could
/// not open an entry's files: that was answered as the caller's fault, a
/// `400` for a validation ("cannot read now ...": the files were fine)
/// and a `422` "...; the previous material stays" for a reload. Now it is
/// hotproxy's own shortage: `503` with `Retry-After`, naming the file,
/// nothing changed.
#[tokio::test]
async fn admin_calls_that_read_files_while_out_of_descriptors_get_503() {
    let (scene, _kube, _ca, first, mut p, addr, admin_addr) = secret_at_fd_limit().await;
    let mut send = admin_connection(admin_addr).await;
    let crt = scene.path("secret/tls.crt");
    let key = scene.path("secret/tls.key");
    let spec = json!({
        "type": "server-pair", "source": "file",
        "cert_file": crt.to_str().unwrap(), "key_file": key.to_str().unwrap(),
    });
    let validate = "/api/v1/certs/validate";
    let (status, _, ok) =
        admin_on(&mut send, admin_addr, None, "POST", validate, spec.clone()).await;
    assert_eq!(status, 200, "{ok}");

    let flood = hold_every_descriptor(&mut p, addr).await;
    for path in [validate, "/api/v1/certs/a/reload"] {
        let (status, retry, body) = until_refused(&mut send, admin_addr, "POST", path, &spec).await;
        assert_short(path, status, retry, &body);
    }
    drop(flood);
    let api = admin(admin_addr, "GET", "/api/v1/certs/a", None, None, &[]).await;
    assert_eq!(
        api.json()["fingerprint_sha256"],
        first.fingerprint,
        "{}",
        api.body
    );
}

/// An inline PUT over an entry of the configuration file (material to
/// bridge files that are broken or late) reads the entry's files, to
/// keep its material over them until they change from what they hold
/// then. While a connection burst held every descriptor that read failed
/// with EMFILE, and the failure was recorded as what the files hold
/// (`200`): at their next re-read (a SIGHUP, a chmod) the files, though
/// unchanged, were taken for changed and replaced the API's material.
/// Now the PUT is `503` with `Retry-After`, as the other calls that read
/// files in a shortage, and records nothing.
#[tokio::test]
async fn an_inline_put_while_out_of_descriptors_gets_503_and_records_nothing() {
    let (_scene, _kube, ca, _first, mut p, addr, admin_addr) = secret_at_fd_limit().await;
    let mut send = admin_connection(admin_addr).await;
    let bridge = ca.server_pair(&["a.example.com"]);
    let body = json!({
        "type": "server-pair", "source": "inline",
        "cert_pem": bridge.cert_pem, "key_pem": bridge.key_pem,
    });
    let path = "/api/v1/certs/a";

    let flood = hold_every_descriptor(&mut p, addr).await;
    let (status, retry, reply) = until_refused(&mut send, admin_addr, "PUT", path, &body).await;
    assert_short(path, status, retry, &reply);
    drop(flood);
    // Served now: the files' pair, or the bridge if a PUT got through (a
    // descriptor free for a moment), which then stays: the files did not
    // change.
    let fingerprint = || async {
        let api = admin(admin_addr, "GET", path, None, None, &[]).await;
        assert_eq!(api.status, 200, "{}", api.body);
        api.json()["fingerprint_sha256"].clone()
    };
    let before = fingerprint().await;
    p.signal("HUP");
    p.wait_log("SIGHUP's end", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SIGHUP: done"))
    })
    .await;
    assert_eq!(
        fingerprint().await,
        before,
        "the files, unchanged, replaced the API's material"
    );
}

/// `method path` with `body` on `send` until it is answered other than
/// `200`: a descriptor the proxy frees for a moment (its accept back-off
/// leaves it free) lets a read through, so a `200` is asked again; any
/// other answer is one to a read that found the proxy short.
async fn until_refused(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    admin_addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    within_deadline(
        format!("{method} {path} while short (answered 200 each time)"),
        async {
            loop {
                let reply = admin_on(send, admin_addr, None, method, path, body.clone()).await;
                if reply.0 != 200 {
                    return reply;
                }
            }
        },
    )
    .await
}

/// The answer to a call whose read of `secret/tls.crt` found hotproxy
/// out of descriptors: `503`, `Retry-After: 1`, naming the file and the
/// errno.
fn assert_short(path: &str, status: u16, retry: Option<String>, body: &serde_json::Value) {
    assert_eq!(status, 503, "{path}: {body}");
    assert_eq!(retry.as_deref(), Some("1"), "{path}: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("tls.crt"),
        "{path}: the file not named: {message}"
    );
    assert!(message.contains("os error 24"), "{path}: {message}");
}
