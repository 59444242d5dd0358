//! Fault: out of file descriptors while an admin token file is rotated, or re-read on SIGHUP: the token is read again once descriptors come free.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::fd_limit::{admin_connection, admin_on, hold_every_descriptor};
use support::writers::Kubelet;
use support::*;

const WAIT: Duration = Duration::from_secs(30);
const OLD: &str = "old-token-5f1c0e7a9b2d4c6e8f0a1b3c";
const NEW: &str = "new-token-9d8c7b6a5f4e3d2c1b0a9f8e";

async fn status(api: SocketAddr, token: &str) -> u16 {
    admin(api, "GET", "/api/v1/certs", Some(token), None, &[])
        .await
        .status
}

/// kubelet rotates the admin token's Secret (a leaked token revoked)
/// while a connection burst holds every descriptor of the proxy (`ulimit
/// -n 64`): the re-read of the token file fails with EMFILE. It was only
/// logged ("admin token file refused; the running token stays") and never
/// tried again: the new token did not work and the revoked one stayed
/// valid until the file changed again or a SIGHUP. Now it is read again
/// on the shortage back-off: once the burst is gone, the new token works
/// and the old one is refused.
#[tokio::test]
async fn a_token_rotated_while_out_of_descriptors_is_taken_once_they_are_free() {
    let s = Scene::new();
    let kubelet = Kubelet::new(&s.path("secret"));
    kubelet.write(&[("token", OLD)], false);
    let ca = TestCa::new("ca");
    s.pair("pki/edge", &ca.server_pair(&["localhost"]));
    let tokens = "[{ role: editor, token_file: secret/token }]";
    let cfg = s.admin_config("{}", tokens, "pki/edge", "");
    let mut p = Proxy::start_with_fd_limit(&cfg, 64);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    assert_eq!(status(api, OLD).await, 200);

    let flood = hold_every_descriptor(&mut p, addr).await;
    kubelet.write(&[("token", NEW)], false);
    let short = |v: &serde_json::Value| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin token file"))
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("secret/token") && e.contains("os error 24"))
    };
    // Three reads in the shortage: the first said at WARN, the retries at
    // DEBUG (each retry warned before, about 30 lines a minute).
    p.wait_logs("three reads of the token file out of descriptors", 3, short)
        .await;
    let warned = p
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| short(v) && v["level"] == "WARN")
        .count();
    assert_eq!(warned, 1, "each read of the shortage warned");
    drop(flood);
    wait_until(WAIT, "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    assert_eq!(status(api, OLD).await, 401, "the revoked token still works");
    let logs = p.logs().join("\n");
    assert!(
        !logs.contains(OLD) && !logs.contains(NEW),
        "a token in the log"
    );
}

/// The admin token written in place through a hard link in a directory
/// not watched, with `poll_interval: 0s`: no event and no poll sees it
/// (SPEC §3), so the operator sends SIGHUP, while a connection burst holds
/// every descriptor of the proxy. SIGHUP's re-read of the token file
/// failed with EMFILE, was warned about once and never tried again (only
/// the watcher's re-reads were): the new token was refused and the
/// rotated-out one kept working until another change or SIGHUP. Now
/// SIGHUP's re-read goes through the watcher's retry loop: once the burst
/// is gone, the new token works and the old one is refused.
#[tokio::test]
async fn a_token_reread_on_sighup_while_out_of_descriptors_is_taken_once_they_are_free() {
    let s = Scene::new();
    let (token, link) = (s.path("secret/token"), s.path("elsewhere/token"));
    write(&token, OLD);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::fs::hard_link(&token, &link).unwrap();
    let ca = TestCa::new("ca");
    s.pair("pki/edge", &ca.server_pair(&["localhost"]));
    let tokens = "[{ role: editor, token_file: secret/token }]";
    let cfg = s.admin_config("{ poll_interval: 0s }", tokens, "pki/edge", "");
    let mut p = Proxy::start_with_fd_limit(&cfg, 64);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;

    // Calls on one connection, opened now: no other is closed (its
    // descriptor freed) once the burst holds every descriptor.
    let mut send = admin_connection(api).await;
    assert_eq!(validate(&mut send, api, &s).await, 200);

    let flood = hold_every_descriptor(&mut p, addr).await;
    // Every descriptor is held once a read finds none: a descriptor the
    // proxy closed just after its accept failed (a read's) is free until
    // the accept's next try takes it, and lets a read through.
    let answer = within_deadline("a validation out of descriptors", async {
        loop {
            let answer = validate(&mut send, api, &s).await;
            if answer != 200 {
                return answer;
            }
        }
    })
    .await;
    assert_eq!(answer, 503);

    // In place (the same inode), by the name the watch does not see.
    std::fs::write(&link, NEW).unwrap();
    p.signal("HUP");
    let short = |v: &serde_json::Value| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin token file"))
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("secret/token") && e.contains("os error 24"))
    };
    p.wait_log("SIGHUP's read of the token file out of descriptors", short)
        .await;
    drop(flood);
    wait_until(WAIT, "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    assert_eq!(
        status(api, OLD).await,
        401,
        "the rotated-out token still works"
    );
    let logs = p.logs().join("\n");
    assert!(
        !logs.contains(OLD) && !logs.contains(NEW),
        "a token in the log"
    );
}

/// The status of a validation of the scene's `pki/edge` pair (a read of
/// its files) on `send`, with the running token.
async fn validate(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    api: SocketAddr,
    s: &Scene,
) -> u16 {
    let spec = serde_json::json!({
        "type": "server-pair", "source": "file",
        "cert_file": s.path("pki/edge.crt"), "key_file": s.path("pki/edge.key"),
    });
    let path = "/api/v1/certs/validate";
    admin_on(send, api, Some(OLD), "POST", path, spec).await.0
}
