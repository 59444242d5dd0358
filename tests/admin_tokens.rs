//! Admin API tokens from files: a rotated token file (a Kubernetes Secret
//! swapped by kubelet) takes effect without a restart, and a broken one
//! keeps the running tokens.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::writers::Kubelet;
use support::*;

const OLD: &str = "editor-token-old-3f9a1c7e5b2d4068";
const NEW: &str = "editor-token-new-8c2e6a0f4d1b9357";

/// A proxy whose editor token comes from a kubelet-written Secret volume
/// (`secret/token`, a link through `..data`), watched by events.
async fn start(s: &Scene, kubelet: &Kubelet) -> (Proxy, SocketAddr) {
    start_watching(s, kubelet, "{ events: true, poll_interval: 1h }").await
}

/// Like `start`, with this `watch:` section.
async fn start_watching(s: &Scene, kubelet: &Kubelet, watch: &str) -> (Proxy, SocketAddr) {
    let ca = TestCa::new("ca");
    s.pair("pki/edge", &ca.server_pair(&["localhost"]));
    kubelet.write(&[("token", OLD)], false);
    let cfg = s.config(&format!(
        r#"
watch: {watch}
admin:
  bind: 127.0.0.1:0
  tokens: [{{ role: editor, token_file: secret/token }}]
certs:
  - {{ id: edge, type: server-pair, cert_file: pki/edge.crt, key_file: pki/edge.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
"#
    ));
    let mut p = Proxy::start(&cfg);
    let api = p.admin_addr().await;
    (p, api)
}

async fn status(api: SocketAddr, token: &str) -> u16 {
    admin(api, "GET", "/api/v1/certs", Some(token), None, &[])
        .await
        .status
}

/// A Secret rotated after a leak: the new token works and the old one is
/// refused, without a restart or a signal.
#[tokio::test]
async fn rotated_token_file_replaces_the_token() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (p, api) = start(&s, &kubelet).await;
    assert_eq!(status(api, OLD).await, 200);
    assert_eq!(status(api, NEW).await, 401);

    kubelet.write(&[("token", NEW)], false);
    wait_until(Duration::from_secs(10), "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    assert_eq!(status(api, OLD).await, 401, "the leaked token still works");
    let logs = p.logs().join("\n");
    assert!(
        !logs.contains(OLD) && !logs.contains(NEW),
        "a token in the log"
    );
}

/// A token file that becomes empty keeps the running token, with a warning
/// naming the file; a good one after it is taken.
#[tokio::test]
async fn empty_token_file_keeps_the_running_token() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (mut p, api) = start(&s, &kubelet).await;
    assert_eq!(status(api, OLD).await, 200);

    kubelet.write(&[("token", "\n")], false);
    p.wait_log("the refused token file's warning", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin token file refused"))
            && v["error"]
                .as_str()
                .is_some_and(|e| e.contains("secret/token") && e.contains("empty"))
    })
    .await;
    assert_eq!(status(api, OLD).await, 200, "the running token was dropped");

    kubelet.write(&[("token", NEW)], false);
    wait_until(Duration::from_secs(10), "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    assert_eq!(status(api, OLD).await, 401);
    let logs = p.logs().join("\n");
    assert!(
        !logs.contains(OLD) && !logs.contains(NEW),
        "a token in the log"
    );
}

/// With nothing watching (no events, no poll), SIGHUP re-reads the token
/// files as it re-reads every certificate file.
#[tokio::test]
async fn sighup_rereads_the_token_file() {
    let s = Scene::new();
    let kubelet = Kubelet::with_mode(&s.path("secret"), 0o440);
    let (p, api) = start_watching(&s, &kubelet, "{ events: false, poll_interval: 1h }").await;
    assert_eq!(status(api, OLD).await, 200);
    kubelet.write(&[("token", NEW)], false);
    p.signal("HUP");
    wait_until(Duration::from_secs(10), "the new token works", || async {
        status(api, NEW).await == 200
    })
    .await;
    assert_eq!(status(api, OLD).await, 401, "the leaked token still works");
}
