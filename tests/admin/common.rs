//! Shared here: the tokens and the Admin world, a proxy with its admin API and an encrypted store.

use std::net::SocketAddr;

use crate::support::writers::mv_over;
use crate::support::*;

pub const EDITOR: &str = "editor-token-6a1f0c2d9e8b7a65";
pub const VIEWER: &str = "viewer-token-0b9c8d7e6f5a4b3c";

/// A scene with two tokens, a store, and a listener `public` serving
/// `edge`; nothing is watched (events off, an hourly poll), so only the
/// API can change what is served.
pub struct Admin {
    pub s: Scene,
    pub ca: TestCa,
    pub edge: TestPair,
    pub clients: TestCa,
    pub p: Proxy,
    pub addr: SocketAddr,
    pub api: SocketAddr,
    /// Every response body seen, for the key-material check.
    pub seen: Vec<String>,
}

impl Admin {
    pub async fn start(extra_certs: &str) -> Admin {
        Self::start_edited(extra_certs, |config| config).await
    }

    /// [`Admin::start`] with its configuration file's text passed through
    /// `edit` first.
    pub async fn start_edited(extra_certs: &str, edit: impl FnOnce(String) -> String) -> Admin {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        let clients = TestCa::new("clients");
        let edge = ca.server_pair(&["localhost"]);
        s.pair("edge", &edge);
        write(&s.path("clients-ca.crt"), &clients.cert_pem);
        write(&s.path("editor.token"), &format!("{EDITOR}\n"));
        write(&s.path("viewer.token"), VIEWER);
        let cfg = s.admin_config(
            "{ events: false, poll_interval: 1h }",
            "[{ role: editor, token_file: editor.token }, { role: viewer, token_file: viewer.token }]",
            "edge",
            &format!(
                "  - {{ id: clients, type: ca-bundle, ca_file: clients-ca.crt }}\n{extra_certs}\n\
                 store: {{ path: data/store.json, key_file: data/store.key }}"
            ),
        );
        write(&cfg, &edit(std::fs::read_to_string(&cfg).unwrap()));
        let (p, addr, api) = start_with_admin(&cfg).await;
        Admin {
            s,
            ca,
            edge,
            clients,
            p,
            addr,
            api,
            seen: Vec::new(),
        }
    }

    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> AdminReply {
        self.call_with(method, path, token, body, &[]).await
    }

    /// [`Admin::call`] with these request headers.
    pub async fn call_with(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> AdminReply {
        let r = admin(self.api, method, path, token, body, headers).await;
        self.seen.push(r.body.clone());
        r
    }

    pub async fn editor(
        &mut self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> AdminReply {
        self.call(method, path, Some(EDITOR), body).await
    }

    /// No response and no log line carried a private key, a key PEM line or a token.
    pub fn assert_nothing_leaked(&self, keys: &[&str]) {
        let logs = self.p.logs();
        for text in self.seen.iter().chain(logs.iter()) {
            assert!(!text.contains("PRIVATE KEY"), "key marker in: {text}");
            assert!(
                !text.contains(EDITOR) && !text.contains(VIEWER),
                "token in: {text}"
            );
            for key in keys {
                for line in pem_body_lines(key) {
                    assert!(!text.contains(&line), "key material in: {text}");
                }
            }
        }
    }
}

/// An inline `ca-bundle` entry `id` holding `ca`'s certificate.
pub fn inline_ca(id: &str, ca: &TestCa) -> serde_json::Value {
    serde_json::json!({"id": id, "type": "ca-bundle", "source": "inline", "ca_pem": ca.cert_pem})
}

/// An inline body of `kind` (`server-pair`, `client-pair`) holding `pair`.
pub fn inline_pair(kind: &str, pair: &TestPair) -> serde_json::Value {
    serde_json::json!({"type": kind, "source": "inline",
        "cert_pem": pair.cert_pem, "key_pem": pair.key_pem})
}

/// New files for the pair `stem` (`stem.key`, then `stem.crt`, each
/// renamed over the old), as a renewal writes them.
pub fn renew(s: &Scene, stem: &str, pair: &TestPair) {
    mv_over(&s.path(&format!("{stem}.key")), &pair.key_pem);
    mv_over(&s.path(&format!("{stem}.crt")), &pair.cert_pem);
}
