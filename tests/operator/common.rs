//! Shared here: the wait, metrics read from the API, an edge config whose files are watched.

use crate::support::*;

/// A metric's value in `/metrics`, if the series exists.
pub async fn metric(api: std::net::SocketAddr, series: &str) -> Option<f64> {
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

pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One server pair `edge` from files, watched, with `settle_timeout`.
pub fn watched_edge(s: &Scene, ca: &TestCa, settle: &str) -> std::path::PathBuf {
    s.pair("edge", &ca.server_pair(&["localhost"]));
    s.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
watch: {{ debounce: 20ms, poll_interval: 200ms, settle_timeout: {settle} }}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [ {{ ref: edge }} ] }}
"#
    ))
}
