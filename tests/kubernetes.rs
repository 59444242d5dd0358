//! The shipped Kubernetes example, run as kubelet lays out the pod: the
//! ConfigMap's `config.yaml`, unchanged apart from the `/etc/hotproxy` root
//! and its two binds (moved to ephemeral loopback ports, so the test needs no
//! free fixed port and opens nothing beyond loopback), with every volume
//! written by kubelet's AtomicWriter sequence.

mod support;

use std::time::Duration;

use support::writers::Kubelet;
use support::*;

const WAIT: Duration = Duration::from_secs(15);
const CONFIGMAP: &str = include_str!("../examples/kubernetes/configmap.yaml");
const DEPLOYMENT: &str = include_str!("../examples/kubernetes/deployment.yaml");

/// `data."config.yaml"` of the shipped ConfigMap.
fn shipped_config() -> String {
    let cm: serde_json::Value = serde_saphyr::from_str(CONFIGMAP).unwrap();
    cm["data"]["config.yaml"].as_str().unwrap().to_owned()
}

/// The binds the shipped config has (the listener's, the admin API's), as
/// text, each on a line of its own.
const SHIPPED_BINDS: [&str; 2] = ["bind: 0.0.0.0:8443", "bind: 0.0.0.0:9901"];

#[tokio::test]
async fn shipped_configmap_in_a_kubelet_pod_layout() {
    // The Deployment mounts exactly the directories the config reads.
    for dir in ["config", "tls", "upstream-client", "admin"] {
        assert!(
            DEPLOYMENT.contains(&format!("mountPath: /etc/hotproxy/{dir}\n")),
            "deployment.yaml does not mount /etc/hotproxy/{dir}"
        );
    }
    assert!(
        !DEPLOYMENT
            .lines()
            .any(|l| l.trim_start().starts_with("subPath:")),
        "a subPath mount never sees a Secret update"
    );

    let s = Scene::new();
    let root = s.path("etc/hotproxy");
    let pod_config = |text: &str| text.replace("/etc/hotproxy", root.to_str().unwrap());
    // The shipped binds are checked as they are written, then moved to
    // ephemeral loopback ports; the proxy's log says which it got.
    let shipped = shipped_config();
    let mut config_text = shipped.clone();
    for bind in SHIPPED_BINDS {
        assert_eq!(
            shipped.lines().filter(|l| l.trim() == bind).count(),
            1,
            "the shipped config.yaml has one line `{bind}`:\n{shipped}"
        );
        config_text = config_text.replace(bind, "bind: 127.0.0.1:0");
    }
    assert!(
        !config_text.contains("0.0.0.0"),
        "no other bind to every interface:\n{config_text}"
    );

    // Secrets as cert-manager fills them, volumes as kubelet writes them.
    let issuer = TestCa::new("internal-ca");
    let edge = issuer.server_pair(&["hotproxy.example.com", "hotproxy"]);
    let tls = Kubelet::with_mode(&root.join("tls"), 0o440);
    tls.write(
        &[
            ("tls.crt", &edge.cert_pem),
            ("tls.key", &edge.key_pem),
            ("ca.crt", &issuer.cert_pem),
        ],
        false,
    );
    let client = issuer.client_pair("hotproxy");
    let upstream = Kubelet::with_mode(&root.join("upstream-client"), 0o440);
    upstream.write(
        &[
            ("tls.crt", &client.cert_pem),
            ("tls.key", &client.key_pem),
            ("ca.crt", &issuer.cert_pem),
        ],
        false,
    );
    let token = "viewer-token-7d3c5e1f0a9b8c2d";
    Kubelet::with_mode(&root.join("admin"), 0o440).write(&[("token", token)], false);
    let config_volume = Kubelet::new(&root.join("config"));
    config_volume.write(&[("config.yaml", &pod_config(&config_text))], false);

    let mut p = Proxy::start(&root.join("config/config.yaml"));
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;

    // It serves the Secret's certificate; the probes answer.
    assert_eq!(
        served_leaf(addr, "hotproxy.example.com", &issuer.cert_pem)
            .await
            .unwrap(),
        edge.fingerprint
    );
    assert_eq!(
        admin(api, "GET", "/readyz", None, None, &[]).await.status,
        200
    );
    let r = admin(api, "GET", "/api/v1/certs/edge", Some(token), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["fingerprint_sha256"], edge.fingerprint.as_str());

    // cert-manager renews the Secret; kubelet swaps the volume.
    let renewed = issuer.server_pair(&["hotproxy.example.com", "hotproxy"]);
    tls.write(
        &[
            ("tls.crt", &renewed.cert_pem),
            ("tls.key", &renewed.key_pem),
            ("ca.crt", &issuer.cert_pem),
        ],
        false,
    );
    wait_until(WAIT, "the renewed certificate is served", || async {
        served_leaf(addr, "hotproxy.example.com", &issuer.cert_pem)
            .await
            .ok()
            .as_deref()
            == Some(renewed.fingerprint.as_str())
    })
    .await;
    // The JSON log line operators grep for, with its stable field names.
    p.wait_log("the reload logged with entry and fingerprint", |v| {
        v["message"] == "certificate reloaded"
            && v["entry"] == "edge"
            && v["fingerprint"] == renewed.fingerprint.as_str()
    })
    .await;

    // A ConfigMap edit: the `backend` Service becomes a real backend here
    // (the same edit a user makes to point the proxy at their service).
    let backend = Backend::start(
        "backend",
        &issuer.server_pair(&["backend"]),
        Some(&issuer.cert_pem),
    )
    .await;
    let edited = config_text.replace(
        "servers: [https://backend:8443]",
        &format!("servers: [https://{}]", backend.addr),
    );
    assert_ne!(edited, config_text, "the shipped upstream line changed");
    config_volume.write(&[("config.yaml", &pod_config(&edited))], false);
    let fetch = || async {
        get(
            addr,
            "hotproxy.example.com",
            client_config(&issuer.cert_pem, None, &[b"h2"]),
            true,
            "/",
            &[],
        )
        .await
        .ok()
    };
    wait_until(WAIT, "the ConfigMap edit routes to the backend", || async {
        fetch().await.is_some_and(|r| r.status == 200)
    })
    .await;
    let seen = fetch().await.unwrap().json();
    assert_eq!(seen["client_cert_fingerprint"], client.fingerprint.as_str());
    let config_path = root.join("config/config.yaml");
    p.wait_log("config reload logged with its path", |v| {
        v["message"] == "configuration reloaded" && v["path"] == config_path.to_str().unwrap()
    })
    .await;
}
