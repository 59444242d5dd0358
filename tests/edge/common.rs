//! Shared here: the world (edge, backend and SPIFFE PKI, echo backend, proxy), a proxy with an access log, and the TLS clients.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::support::*;

pub const WAIT: Duration = Duration::from_secs(10);

pub const SPIFFE_ID: &str = "spiffe://cluster.local/ns/prod/sa/app";

pub struct World {
    pub scene: Scene,
    pub ca: TestCa,
    pub proxy: Proxy,
    pub public: SocketAddr,
    pub http: SocketAddr,
    /// `allow_from: [127.0.0.1, 127.0.0.3/32]`; its `/ops` route only 127.0.0.3.
    pub partners: SocketAddr,
    pub admin: SocketAddr,
}

/// One HTTP/1.1 GET over TLS on `tcp` (which may already carry a PROXY
/// header): status, headers and body, or the error that ended it.
pub async fn get_over(
    tcp: TcpStream,
    w: &World,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, http::HeaderMap, String)> {
    get_trusting(tcp, &w.ca, path, headers).await
}

/// [`get_over`] for a proxy other than the world's: `ca` signed its certificate.
pub async fn get_trusting(
    tcp: TcpStream,
    ca: &TestCa,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, http::HeaderMap, String)> {
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into()))
}

/// What the echo backend saw, from a 200 reply body.
pub fn seen(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not the backend's JSON: {body}"))
}

/// The proxy refused the connection: the TLS handshake or the request fails.
pub async fn refused(tcp: TcpStream, w: &World) {
    let r = tokio::time::timeout(WAIT, get_over(tcp, w, "/api", &[])).await;
    assert!(
        matches!(r, Ok(Err(_))),
        "expected the connection to be refused, got {:?}",
        r.map(|r| r.map(|(s, _, b)| (s, b)))
    );
}

pub async fn world() -> World {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("mesh CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    scene.pair("proxy-client", &backend_ca.client_pair("hotproxy"));
    write(&scene.path("mesh-ca.crt"), &backend_ca.cert_pem);
    // A workload whose certificate names it only by its SPIFFE ID.
    let svid = Backend::start(
        "svid",
        &backend_ca.svid(SPIFFE_ID),
        Some(&backend_ca.cert_pem),
    )
    .await;
    let upstream = |name: &str, extra: &str| {
        format!(
            r#"
  - name: {name}
    servers: [https://{addr}]
    tls:
      ca: {{ ref: mesh-ca }}
      client_cert: {{ cert_file: proxy-client.crt, key_file: proxy-client.key }}
{extra}"#,
            addr = svid.addr
        )
    };
    let upstreams = [
        upstream("svid", &format!("      verify_names: [\"{SPIFFE_ID}\"]")),
        upstream(
            "svid-sni",
            &format!("      server_name: app.prod.svc\n      verify_names: [\"{SPIFFE_ID}\"]"),
        ),
        upstream(
            "trust-domain",
            "      verify_names: [\"spiffe://cluster.local/**\"]",
        ),
        upstream(
            "wrong-id",
            "      verify_names: [\"spiffe://cluster.local/ns/prod/sa/other\", \"spiffe://elsewhere/**\"]",
        ),
        // Without verify_names the URL's IP is the name checked: a
        // URI-only SVID cannot pass (what the issue reports).
        upstream("by-ip", ""),
    ]
    .concat();
    let config = scene.config(&format!(
        r#"
watch: {{ debounce: 50ms, poll_interval: 500ms }}
admin: {{ bind: "127.0.0.1:0" }}
certs:
  - {{ id: a, type: server-pair, cert_file: a.crt, key_file: a.key }}
  - {{ id: mesh-ca, type: ca-bundle, ca_file: mesh-ca.crt }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: a }}]
    proxy_protocol: {{ from: [127.0.0.2/32] }}
    trusted_proxies: [127.0.0.3, 198.51.100.0/24]
    response_headers:
      set: {{ Strict-Transport-Security: "max-age=31536000", X-Frame-Options: DENY }}
    limits: {{ header_read_timeout: 1s }}
    routes:
      - {{ path_prefix: /api, upstream: svid }}
      - {{ path_prefix: /sni, upstream: svid-sni }}
      - {{ path_prefix: /td, upstream: trust-domain }}
      - {{ path_prefix: /wrong, upstream: wrong-id }}
      - {{ path_prefix: /by-ip, upstream: by-ip }}
  - name: partners
    bind: 127.0.0.1:0
    tls:
      certs: [{{ ref: a }}]
    allow_from: [127.0.0.1, 127.0.0.3/32]
    routes:
      - {{ path_prefix: /ops, upstream: svid, allow_from: [127.0.0.3] }}
      - {{ upstream: svid }}
  - name: http
    bind: 127.0.0.1:0
    redirect_https: {{ port: 8443 }}
    response_headers:
      set: {{ X-Frame-Options: DENY }}
    limits: {{ max_header_bytes: 2048 }}
upstreams:{upstreams}
"#
    ));
    let mut proxy = Proxy::start(&config);
    let public = proxy.listener_addr("public").await;
    let http = proxy.listener_addr("http").await;
    let partners = proxy.listener_addr("partners").await;
    let admin = proxy.admin_addr().await;
    // The backend's accept task lives on in the test's runtime.
    drop(svid);
    World {
        scene,
        ca,
        proxy,
        public,
        http,
        partners,
        admin,
    }
}

/// A proxy with one listener (`public`, its upstream refusing
/// connections) and an access log in `format`: the proxy, its address,
/// the log's path and the edge CA (held by the scene).
pub async fn logged(
    scene: &Scene,
    ca: &TestCa,
    format: &str,
) -> (Proxy, SocketAddr, std::path::PathBuf) {
    let log = scene.path("access.log");
    let (p, addr) = logged_to(scene, ca, format, &log).await;
    (p, addr, log)
}

/// [`logged`] with its access log at `log` (a FIFO, say).
pub async fn logged_to(
    scene: &Scene,
    ca: &TestCa,
    format: &str,
    log: &std::path::Path,
) -> (Proxy, SocketAddr) {
    let mut p = Proxy::start(&logged_config(scene, ca, format, log));
    let addr = p.listener_addr("public").await;
    (p, addr)
}

/// The configuration of [`logged_to`], written to the scene: its path.
pub fn logged_config(
    scene: &Scene,
    ca: &TestCa,
    format: &str,
    log: &std::path::Path,
) -> std::path::PathBuf {
    scene.pair("a", &ca.server_pair(&["localhost"]));
    scene.config(&format!(
        r#"
access_log: {{ path: {log}, format: {format} }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
    routes: [{{ upstream: app }}]
upstreams:
  - name: app
    servers: [http://127.0.0.1:9]
"#,
        log = log.display(),
    ))
}
