//! A proxy at its descriptor limit (`ulimit -n 64`) serving a kubelet Secret, the connection burst that holds every descriptor, and admin calls on a connection opened before it.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;

use super::{Proxy, Scene, TestCa, TestPair, within_deadline, writers};

/// The proxy under `ulimit -n 64` serving `a.example.com` from the Secret
/// volume `secret/` (kubelet's layout, entry `a`), its scene, kubelet,
/// CA, the pair served, and the listener's and admin's addresses.
pub async fn secret_at_fd_limit() -> (
    Scene,
    writers::Kubelet,
    TestCa,
    TestPair,
    Proxy,
    SocketAddr,
    SocketAddr,
) {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let kube = writers::Kubelet::new(&scene.path("secret"));
    let first = ca.server_pair(&["a.example.com"]);
    write_secret(&kube, &first);
    let cfg = scene.config(&secret_config("120s"));
    let mut p = Proxy::start_with_fd_limit(&cfg, 64);
    let addr = p.listener_addr("public").await;
    let admin_addr = p.admin_addr().await;
    (scene, kube, ca, first, p, addr, admin_addr)
}

/// The configuration of [`secret_at_fd_limit`], the listener's
/// `header_read_timeout` `timeout` (what a test edits).
pub fn secret_config(timeout: &str) -> String {
    format!(
        r#"
runtime: {{ worker_threads: 1 }}
admin: {{ bind: "127.0.0.1:0" }}
certs:
  - {{ id: a, type: server-pair, cert_file: secret/tls.crt, key_file: secret/tls.key }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ ref: a }}] }}
    routes: []
    limits: {{ header_read_timeout: {timeout} }}
upstreams: []
"#
    )
}

/// kubelet's update of the Secret to `pair` (the `..data` swap).
pub fn write_secret(kube: &writers::Kubelet, pair: &TestPair) {
    kube.write(
        &[("tls.crt", &pair.cert_pem), ("tls.key", &pair.key_pem)],
        false,
    );
}

/// More connections to `addr` than the proxy has descriptors, held idle
/// (no ClientHello): once its accept fails, every descriptor is taken
/// and stays so until they are dropped.
pub async fn hold_every_descriptor(p: &mut Proxy, addr: SocketAddr) -> Vec<tokio::net::TcpStream> {
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    p.wait_log("the first failed accept", |v| {
        v["message"] == "accept failed; backing off" && v["listener"] == "public"
    })
    .await;
    flood
}

/// A kept-alive connection to the admin API, opened now: it goes on
/// answering once no descriptor is left for a new one.
pub async fn admin_connection(admin_addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(admin_addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// One admin call on `send` (an [`admin_connection`]), with `token` as
/// its bearer token if any: its status, `Retry-After` and JSON body.
pub async fn admin_on(
    send: &mut SendRequest<Full<Bytes>>,
    admin_addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin_addr.to_string())
        .header("content-type", "application/json");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = within_deadline(format!("admin {method} {path}"), send.send_request(req))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, retry, serde_json::from_slice(&bytes).unwrap())
}
