//! A proxy run through its admin API: its config (tokens, the entry `edge` a listener serves) and start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{Proxy, Scene};

impl Scene {
    /// The config of a proxy run through its admin API: `watch` (a YAML
    /// value), the admin listener on 127.0.0.1 with `tokens` (a YAML list),
    /// the certificate entry `edge` (the pair `{edge}.crt`, `{edge}.key` in
    /// the scene), then `more` (further `certs:` items, each on its own line
    /// indented two spaces, then any other top-level sections, such as
    /// `store:`), and a listener `public` serving `edge`.
    pub fn admin_config(&self, watch: &str, tokens: &str, edge: &str, more: &str) -> PathBuf {
        self.config(&format!(
            r#"
watch: {watch}
admin:
  bind: 127.0.0.1:0
  tokens: {tokens}
certs:
  - {{ id: edge, type: server-pair, cert_file: {edge}.crt, key_file: {edge}.key }}
{more}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: edge }}]
"#
        ))
    }
}

/// The proxy of `config` once it serves: it, the address of its listener
/// `public`, and its admin API's.
pub async fn start_with_admin(config: &Path) -> (Proxy, SocketAddr, SocketAddr) {
    let mut p = Proxy::start(config);
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    (p, addr, api)
}
