//! Shared here: the world (edge and backend PKI), the proxy in front of a backend, clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::support::*;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct World {
    pub scene: Scene,
    pub ca: TestCa,
    pub backend_pair: TestPair,
}

pub fn world() -> World {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["a.example.com"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    World {
        backend_pair: backend_ca.server_pair(&["backend.local"]),
        scene,
        ca,
    }
}

/// The proxy in front of the backend at `backend` (upstream `app`), and
/// the address of its listener `public`.
pub async fn proxy_for(w: &World, backend: SocketAddr) -> (Proxy, SocketAddr) {
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", backend, &[]));
    let addr = p.listener_addr("public").await;
    (p, addr)
}

/// The test backend (HTTP/2 and HTTP/1.1) behind a proxy whose one
/// upstream, `app`, has `extra` settings; and the proxy's address.
pub async fn behind_proxy(w: &World, extra: &[&str]) -> (Backend, Proxy, std::net::SocketAddr) {
    let b = Backend::start("b", &w.backend_pair, None).await;
    let mut p = Proxy::start(&w.scene.one_upstream_config("app", b.addr, extra));
    let addr = p.listener_addr("public").await;
    (b, p, addr)
}

/// One request over a fresh HTTP/1.1 client connection: status and body.
pub async fn send(
    addr: std::net::SocketAddr,
    w: &World,
    method: &str,
    body: &str,
) -> (u16, String) {
    let mut sender = h1_sender(w, addr).await;
    let req = h1_request(method, "/x", body.to_owned());
    let (status, body) = exchange(&mut sender, req).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The TLS settings of an HTTP/1.1 client of the proxy.
pub fn h1_config(w: &World) -> Arc<rustls::ClientConfig> {
    client_config(&w.ca.cert_pem, None, &[b"http/1.1"])
}

/// GET `path` on a fresh HTTP/1.1 connection to the proxy at `addr` (the
/// support's `get`, bounded by `CLIENT_DEADLINE`).
pub async fn h1_get(w: &World, addr: SocketAddr, path: &str) -> Reply {
    get(addr, "a.example.com", h1_config(w), false, path, &[])
        .await
        .unwrap()
}

/// [`h1_get`] on a task of its own: a request a test holds open (a long
/// poll the backend never answers) while it does more.
pub fn spawn_get(
    w: &World,
    addr: SocketAddr,
    path: &'static str,
) -> tokio::task::JoinHandle<std::io::Result<Reply>> {
    let cfg = h1_config(w);
    tokio::spawn(async move { get(addr, "a.example.com", cfg, false, path, &[]).await })
}

/// A kept-open HTTP/1.1 client connection to the proxy at `addr`.
pub async fn h1_sender(w: &World, addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let tls = connect(addr, "a.example.com", h1_config(w)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// A `method` request for `path` of `a.example.com` with a whole `body`.
pub fn h1_request(method: &str, path: &str, body: impl Into<Bytes>) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "a.example.com")
        .body(Full::new(body.into()))
        .unwrap()
}

/// Send `req` on `sender`: its response head, within `WAIT`.
pub async fn exchange_head(
    sender: &mut SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> http::Response<hyper::body::Incoming> {
    tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("answered")
        .unwrap()
}

/// Send `req` on `sender`: the status and whole body of its response.
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> (u16, Bytes) {
    let resp = exchange_head(sender, req).await;
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Send the proxy SIGHUP and wait for its `configuration reloaded` line
/// (`what`: the change).
pub async fn reload(p: &mut Proxy, what: &str) {
    p.signal("HUP");
    p.wait_log(what, |v| v["message"] == "configuration reloaded")
        .await;
}

/// An `upstreams:` entry `name` over the backends at `servers`, trusting
/// the backend CA, with more `settings` lines.
pub fn backend_upstream(name: &str, servers: &[SocketAddr], settings: &[&str]) -> String {
    let servers: Vec<String> = servers.iter().map(|a| format!("https://{a}")).collect();
    let mut entry = format!(
        "\n  - name: {name}\n    servers: [{}]\n    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}",
        servers.join(", ")
    );
    for setting in settings {
        entry.push_str(&format!("\n    {setting}"));
    }
    entry
}

/// A proxy with an HTTP/1.1-only backend under `/h1/` and an HTTP/2 one
/// for everything else, both upstreams with `extra`.
pub async fn h1_and_h2_upstreams(w: &World, extra: &str) -> (Proxy, Backend, Backend) {
    let h1 = Backend::start_h1("h1", &w.backend_pair, None).await;
    let h2 = Backend::start("h2", &w.backend_pair, None).await;
    let upstream = |name: &str, b: &Backend| backend_upstream(name, &[b.addr], &[extra]);
    let p = Proxy::start(&w.scene.public_config(
        "\n      - { path_prefix: /h1/, upstream: h1 }\n      - { upstream: h2 }",
        &[upstream("h1", &h1), upstream("h2", &h2)].concat(),
    ));
    (p, h1, h2)
}

/// A raw HTTP/2 client of the proxy at `addr`: its streams need not be read.
pub async fn h2_to(w: &World, addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    h2_client(connect(addr, "a.example.com", cfg).await.unwrap()).await
}

/// One GET over HTTP/2 first: the upstream connection then exists, and the
/// server's settings have been read with its response.
pub async fn warm_up(w: &World, addr: std::net::SocketAddr) {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let r = get(addr, "a.example.com", cfg, true, "/", &[]).await;
    assert_eq!(r.unwrap().status, 200);
}

/// GETs of `paths` sent at once on `client` (in one write, they reach the
/// proxy together), answers not awaited.
pub async fn send_all(
    client: &mut h2::client::SendRequest<Bytes>,
    paths: impl IntoIterator<Item = String>,
) -> Vec<h2::client::ResponseFuture> {
    let mut sent = Vec::new();
    for path in paths {
        let req = http::Request::get(format!("https://a.example.com{path}"))
            .body(())
            .unwrap();
        *client = client.clone().ready().await.unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        sent.push(resp);
    }
    sent
}

/// Each answer's head, in order. Dropping one with its request's handle
/// resets the stream: keep them while a test needs the streams open.
pub async fn heads(
    answers: Vec<h2::client::ResponseFuture>,
) -> Vec<http::Response<h2::RecvStream>> {
    let mut out = Vec::new();
    for resp in answers {
        out.push(tokio::time::timeout(WAIT, resp).await.unwrap().unwrap());
    }
    out
}

/// The status of each answer, in order.
pub async fn statuses(answers: Vec<h2::client::ResponseFuture>) -> Vec<u16> {
    heads(answers)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect()
}
