//! Shared here: the wait, the base configuration and the wait for a served leaf.

use std::time::Duration;

use crate::support::*;

pub const WAIT: Duration = Duration::from_secs(10);

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
