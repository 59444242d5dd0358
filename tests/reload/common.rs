//! Shared here: the wait, a metric's value, the base configuration and the wait for a served leaf.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::support::writers::Kubelet;
use crate::support::*;

pub const WAIT: Duration = Duration::from_secs(10);

/// The value of the metrics series `series` (name and labels), if shown.
pub async fn metric(api: SocketAddr, series: &str) -> Option<f64> {
    metrics_text(api).await.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Wait until the leaf served for `sni` has fingerprint `want`.
pub async fn until_served(addr: std::net::SocketAddr, sni: &str, ca: &str, want: &str) {
    wait_until(WAIT, &format!("{sni} serves {want}"), || async {
        served_leaf(addr, sni, ca).await.ok().as_deref() == Some(want)
    })
    .await;
}

pub fn base_config(cert: &str, key: &str, extra: &str) -> String {
    format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 300ms, settle_timeout: 2s }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: {cert}, key_file: {key} }}]
{extra}
"#
    )
}

/// `config` (a [`base_config`] of `a.crt`/`a.key`) with a second entry,
/// `new.crt`/`new.key`: an edit naming files the tests write later, or never.
pub fn with_new_entry(config: &str) -> String {
    config.replace(
        "certs: [{ cert_file: a.crt, key_file: a.key }]",
        "certs: [{ cert_file: a.crt, key_file: a.key }, { cert_file: new.crt, key_file: new.key }]",
    )
}

/// The log line of a configuration edit waited on for the entry files it names.
pub const WAITED_FOR_ENTRY_FILES: &str = "configuration names certificate files not settled yet; waiting for the writer until settle_timeout";

/// The proxy on the configuration file `cfg`, and its listener `public`.
pub async fn serve(cfg: &Path) -> (Proxy, SocketAddr) {
    let mut p = Proxy::start(cfg);
    let addr = p.listener_addr("public").await;
    (p, addr)
}

/// `sni` is served the leaf `want` now, with no wait.
pub async fn assert_serves(addr: SocketAddr, sni: &str, ca: &str, want: &str) {
    assert_eq!(served_leaf(addr, sni, ca).await.unwrap(), want);
}

/// A TLS connection to `localhost` at `addr`, HTTP/1.1 by ALPN.
pub async fn connect_localhost(addr: SocketAddr, ca: &str) -> Tls {
    connect(addr, "localhost", client_config(ca, None, &[b"http/1.1"]))
        .await
        .unwrap()
}

/// Kubelet writes `pair` as the Secret's tls.crt and tls.key.
pub fn write_secret(kube: &Kubelet, pair: &TestPair) {
    kube.write(
        &[("tls.crt", &pair.cert_pem), ("tls.key", &pair.key_pem)],
        false,
    );
}

/// The Secret `secret/`, written by kubelet, holding a new pair for localhost.
pub fn localhost_secret(s: &Scene, ca: &TestCa) -> (Kubelet, TestPair) {
    let kube = Kubelet::new(&s.path("secret"));
    let first = ca.server_pair(&["localhost"]);
    write_secret(&kube, &first);
    (kube, first)
}

/// A configuration the reloader refused, with `what` in its error.
pub fn rejected(what: &str) -> impl Fn(&serde_json::Value) -> bool + '_ {
    move |v| {
        v["message"] == "configuration rejected; the running configuration stays"
            && v["error"].as_str().is_some_and(|e| e.contains(what))
    }
}

/// Two pairs for localhost, written to the scene as `a` and `b`.
pub fn pairs_a_and_b(s: &Scene, ca: &TestCa) -> (TestPair, TestPair) {
    let (a, b) = (
        ca.server_pair(&["localhost"]),
        ca.server_pair(&["localhost"]),
    );
    s.pair("a", &a);
    s.pair("b", &b);
    (a, b)
}

/// A backend for backend.local that asks for a client certificate from
/// `backend_ca`.
pub async fn mtls_backend(backend_ca: &TestCa) -> Backend {
    Backend::start(
        "b",
        &backend_ca.server_pair(&["backend.local"]),
        Some(&backend_ca.cert_pem),
    )
    .await
}

/// Listener `public`'s route to upstream `b` at `backend`, trusting
/// `ca_file`, with the client pair `{client_dir}/tls.crt` and `tls.key`;
/// `more` ends the upstream's `tls` (YAML lines, or none).
pub fn route_to_b(backend: SocketAddr, ca_file: &str, client_dir: &str, more: &str) -> String {
    format!(
        r#"    routes: [{{ upstream: b }}]
upstreams:
  - name: b
    servers: [https://{backend}]
    tls:
      ca: {{ ca_file: {ca_file} }}
      client_cert: {{ cert_file: {client_dir}/tls.crt, key_file: {client_dir}/tls.key }}
      server_name: backend.local{more}"#
    )
}
