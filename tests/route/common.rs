//! Shared here: the world (PKI, backends), upstreams and configs, and the raw and HTTP/2 clients.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct World {
    pub scene: Scene,
    pub ca: TestCa,
    pub backend_pair: TestPair,
    pub pub_backend: Backend,
    pub other: Backend,
    pub b: Backend,
}

pub async fn world() -> World {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com", "b.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let pair = backend_ca.server_pair(&["backend.local"]);
    World {
        pub_backend: Backend::start("pub", &pair, None).await,
        // HTTP/1.1 only: a request the upstream gets must carry Host there.
        other: Backend::start_h1("other", &pair, None).await,
        b: Backend::start("b", &pair, None).await,
        backend_pair: pair,
        scene,
        ca,
    }
}

pub fn upstream(name: &str, backend: &Backend, extra: &str) -> String {
    format!(
        r#"
  - name: {name}
    servers: [https://{addr}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
    {extra}"#,
        addr = backend.addr
    )
}

pub fn config(w: &World, pub_extra: &str) -> std::path::PathBuf {
    w.scene.public_config(
        r#"
      - { host: b.example.com, upstream: b }
      - { path_prefix: /pub/, upstream: pub }
      - { path_prefix: /slow, upstream: pub }
      - { upstream: other }"#,
        &[
            upstream("pub", &w.pub_backend, pub_extra),
            upstream("other", &w.other, ""),
            upstream("b", &w.b, ""),
        ]
        .concat(),
    )
}

/// An HTTP/2 client of the proxy at `addr`, for `a.example.com`.
pub async fn h2_to(w: &World, addr: std::net::SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    h2_client(connect(addr, "a.example.com", cfg).await.unwrap()).await
}

/// What a client saw for raw request bytes: status, head, body.
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
    /// The body as it came, chunked or not.
    pub wire: String,
}

impl Raw {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.body))
    }
}

/// Send `bytes` as they are over TLS (HTTP/1.1 by ALPN) and read until the
/// proxy closes; requests carry `Connection: close`.
pub async fn raw(w: &World, addr: std::net::SocketAddr, bytes: &[u8]) -> Raw {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let mut tls = connect(addr, "a.example.com", cfg).await.unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    // A reset after the response (unread input) still leaves what was read.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut out))
        .await
        .expect("proxy answered and closed");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body_on_the_wire = body;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Raw {
        status,
        head: head.to_owned(),
        body,
        wire: body_on_the_wire.to_owned(),
    }
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A listener routing everything to one upstream `capped` in front of
/// `backend`, with `extra` upstream settings.
pub fn capped_config(w: &World, backend: &Backend, extra: &[&str]) -> std::path::PathBuf {
    w.scene.one_upstream_config("capped", backend.addr, extra)
}

/// The proxy on the configuration file `cfg`, and its listener `public`.
pub async fn serve(cfg: &std::path::Path) -> (Proxy, std::net::SocketAddr) {
    let mut p = Proxy::start(cfg);
    let addr = p.listener_addr("public").await;
    (p, addr)
}
