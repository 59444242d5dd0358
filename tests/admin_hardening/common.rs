//! Shared here: the admin API in front of a proxy, raw requests, CA bodies and their refusals.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::writers::mv_over;
use crate::support::*;

pub const EDITOR: &str = "editor-token-6a1f0c2d9e8b7a65";

/// A proxy with an editor token, a store, and a listener `public` serving
/// `edge` from files in the scene's `pki/` directory (so the default
/// `store.file_roots` is that directory). Nothing is watched: only the API
/// changes what is served.
pub struct Api {
    pub s: Scene,
    pub ca: TestCa,
    pub p: Proxy,
    pub addr: SocketAddr,
    pub api: SocketAddr,
}

impl Api {
    pub async fn start(extra: &str) -> Api {
        Api::with_store("{ path: data/store.json, key_file: keys/store.key }", extra).await
    }

    /// Like `start`, with this `store:` section.
    pub async fn with_store(store: &str, extra: &str) -> Api {
        let s = Scene::new();
        let ca = TestCa::new("ca");
        let edge = ca.server_pair(&["localhost"]);
        s.pair("pki/edge", &edge);
        write(&s.path("pki/ca.crt"), &ca.cert_pem);
        write(&s.path("editor.token"), EDITOR);
        let cfg = s.admin_config(
            "{ events: false, poll_interval: 1h }",
            "[{ role: editor, token_file: editor.token }]",
            "pki/edge",
            &format!("store: {store}\n{extra}"),
        );
        let (p, addr, api) = start_with_admin(&cfg).await;
        Api {
            s,
            ca,
            p,
            addr,
            api,
        }
    }

    /// Stop the proxy and start it again on the same scene (its store,
    /// its key): what a restart reads back.
    pub async fn restart(&mut self) {
        (self.p, self.addr, self.api) = start_with_admin(&self.s.path("config.yaml")).await;
    }

    pub async fn editor(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> AdminReply {
        admin(self.api, method, path, Some(EDITOR), body, &[]).await
    }

    /// New files for `edge` (key, then certificate, each renamed over the
    /// old), as a renewal writes them; nothing reads them until asked.
    pub fn renew_edge(&self) -> TestPair {
        let next = self.ca.server_pair(&["localhost"]);
        mv_over(&self.s.path("pki/edge.key"), &next.key_pem);
        mv_over(&self.s.path("pki/edge.crt"), &next.cert_pem);
        next
    }

    /// Creates the entry `body` (`POST /api/v1/certs`), which must succeed.
    pub async fn create(&self, body: serde_json::Value) -> AdminReply {
        let id = body["id"].clone();
        let r = self.editor("POST", "/api/v1/certs", Some(body)).await;
        assert_eq!(r.status, 201, "creating {id}: {}", r.body);
        r
    }
}

/// Raw request bytes to `addr`; the whole answer until the server closes
/// (bounded by a deadline, so a hang fails instead of stalling the suite).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out))
        .await
        .expect("the admin listener answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The 400 message for `ca_file: path` at `endpoint`, with the path itself
/// replaced by `PATH` (the caller gave it; what matters is the rest).
pub async fn refusal(a: &Api, endpoint: &str, path: &str) -> String {
    let body = json!({"id": "probe", "type": "ca-bundle", "source": "file", "ca_file": path});
    let r = a.editor("POST", endpoint, Some(body)).await;
    assert_eq!(r.status, 400, "{endpoint} {path}: {}", r.body);
    r.json()["message"].as_str().unwrap().replace(path, "PATH")
}

pub fn inline_ca(id: &str, ca: &TestCa) -> serde_json::Value {
    json!({"id": id, "type": "ca-bundle", "source": "inline", "ca_pem": ca.cert_pem})
}

/// Whether the tests run as root (mounts, network namespaces).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// `conn`, evicted for a newcomer, is closed with nothing (more) sent: its
/// end comes (a reset is an end too), and no byte before it.
pub async fn evicted_unanswered(conn: &mut tokio::net::TcpStream) {
    let mut rest = Vec::new();
    let _ = within_deadline(
        "the evicted connection's close",
        conn.read_to_end(&mut rest),
    )
    .await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}
