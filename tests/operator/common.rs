//! Shared here: the wait, metrics and `edge` read from the API, configs serving `edge`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::support::*;

/// A metric's value in `/metrics`, if the series exists.
pub async fn metric(api: SocketAddr, series: &str) -> Option<f64> {
    admin(api, "GET", "/metrics", None, None, &[])
        .await
        .body
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
}

/// The entry `edge` as the API shows it.
pub async fn edge_entry(api: SocketAddr) -> serde_json::Value {
    admin(api, "GET", "/api/v1/certs/edge", None, None, &[])
        .await
        .json()
}

/// The `last_reload` of the entry `edge`.
pub async fn last_reload(api: SocketAddr) -> serde_json::Value {
    edge_entry(api).await["last_reload"].clone()
}

pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The watch settings of a test that edits files and waits for the result.
pub const WATCHED: &str = "watch: { debounce: 20ms, poll_interval: 200ms }";

/// A config with the admin API, `top` (the watch settings, say), the server
/// pair `edge` (edge.crt, edge.key), then `certs` (more entries), and the
/// listener `public` serving `edge` followed by `refs` in its `certs`, then
/// `rest` (upstreams, say).
pub fn edge_yaml(top: &str, certs: &str, refs: &str, rest: &str) -> String {
    format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
{top}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
{certs}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [ {{ ref: edge }}{refs} ] }}
{rest}
"#
    )
}

/// One server pair `edge` from files, watched, with `settle_timeout`.
pub fn watched_edge(s: &Scene, ca: &TestCa, settle: &str) -> PathBuf {
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s.config(&edge_yaml(
        &format!("watch: {{ debounce: 20ms, poll_interval: 200ms, settle_timeout: {settle} }}"),
        "",
        "",
        "",
    ))
}

/// The proxy on [`watched_edge`]'s config: the config, the proxy and its
/// admin API's address.
pub async fn watched(s: &Scene, ca: &TestCa, settle: &str) -> (PathBuf, Proxy, SocketAddr) {
    let config = watched_edge(s, ca, settle);
    let mut p = Proxy::start(&config);
    let api = p.admin_addr().await;
    (config, p, api)
}
