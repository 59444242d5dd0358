//! Issue 16, the edge and the upstream identity: SPIFFE `verify_names`, PROXY protocol v1/v2,
//! trusted proxies, `allow_from`, the HTTPS redirect listener and response headers. Real sockets: clients
//! bind 127.0.0.2 / 127.0.0.3 to stand for a load balancer and a trusted proxy.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

const WAIT: Duration = Duration::from_secs(10);
const SPIFFE_ID: &str = "spiffe://cluster.local/ns/prod/sa/app";

struct World {
    scene: Scene,
    ca: TestCa,
    proxy: Proxy,
    public: SocketAddr,
    http: SocketAddr,
    /// `allow_from: [127.0.0.1, 127.0.0.3/32]`; its `/ops` route only 127.0.0.3.
    partners: SocketAddr,
    admin: SocketAddr,
}

/// One HTTP/1.1 GET over TLS on `tcp` (which may already carry a PROXY
/// header): status, headers and body, or the error that ended it.
async fn get_over(
    tcp: TcpStream,
    w: &World,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, http::HeaderMap, String)> {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
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
fn seen(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not the backend's JSON: {body}"))
}

/// The proxy refused the connection: the TLS handshake or the request fails.
async fn refused(tcp: TcpStream, w: &World) {
    let r = tokio::time::timeout(WAIT, get_over(tcp, w, "/api", &[])).await;
    assert!(
        matches!(r, Ok(Err(_))),
        "expected the connection to be refused, got {:?}",
        r.map(|r| r.map(|(s, _, b)| (s, b)))
    );
}

async fn world() -> World {
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

/// A URI-only SVID backend is reachable with `verify_names` (exact ID or
/// trust domain), refused with a wrong ID (502, logged with both sides),
/// and refused without `verify_names`. No SNI is sent to an IP without
/// `server_name`; `server_name` is the SNI when given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiffe_verify_names() {
    let mut w = world().await;
    let tcp = || tcp_from("127.0.0.1", w.public);

    let (status, _, body) = get_over(tcp().await, &w, "/api/x", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen(&body)["backend"], "svid");
    assert_eq!(
        seen(&body)["sni"],
        serde_json::Value::Null,
        "SNI sent to an IP"
    );

    let (status, _, body) = get_over(tcp().await, &w, "/sni", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen(&body)["sni"], "app.prod.svc");

    let (status, _, body) = get_over(tcp().await, &w, "/td", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");

    let (status, _, body) = get_over(tcp().await, &w, "/wrong", &[]).await.unwrap();
    assert_eq!(status, 502, "{body}");
    let log = w
        .proxy
        .wait_log("wrong SPIFFE ID logged", |v| {
            v["message"] == "upstream request failed" && v["upstream"] == "wrong-id"
        })
        .await;
    let error = log["error"].as_str().unwrap();
    assert_eq!(log["reason"], "name_mismatch", "{log}");
    assert!(
        error.contains(&format!("URI:{SPIFFE_ID}")),
        "presented: {error}"
    );
    assert!(
        error.contains("spiffe://cluster.local/ns/prod/sa/other")
            && error.contains("spiffe://elsewhere/**"),
        "expected: {error}"
    );

    let (status, _, _) = get_over(tcp().await, &w, "/by-ip", &[]).await.unwrap();
    assert_eq!(status, 502);
}

/// PROXY v1 and v2 from a `from` peer: the header's source is the client
/// address the backend sees. v2 LOCAL (the balancer's health check) keeps
/// the peer's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_from_allowed_peer() {
    let w = world().await;
    let v2 = |src: &str, dst: &str, command: u8| {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        ppp::v2::Builder::with_addresses(0x20 | command, ppp::v2::Protocol::Stream, (src, dst))
            .write_tlv(ppp::v2::Type::NoOp, b"pad")
            .unwrap()
            .build()
            .unwrap()
    };
    // (header from 127.0.0.2, the X-Forwarded-For the backend sees)
    for (header, client) in [
        (
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n".to_vec(),
            "203.0.113.7",
        ),
        (
            v2("[2001:db8::7]:40000", "[2001:db8::1]:443", 1),
            "2001:db8::7",
        ),
        // A dual-stack balancer (HAProxy's `v4v6`) names an IPv4 client by
        // its mapped form: it is the IPv4 address, as on a dual-stack socket.
        (
            b"PROXY TCP6 ::ffff:203.0.113.8 ::ffff:10.0.0.1 40000 443\r\n".to_vec(),
            "203.0.113.8",
        ),
        // LOCAL (the balancer's own check): the peer's address.
        (v2("192.0.2.9:1", "192.0.2.1:443", 0), "127.0.0.2"),
    ] {
        let mut tcp = tcp_from("127.0.0.2", w.public).await;
        tcp.write_all(&header).await.unwrap();
        let (status, _, body) = get_over(tcp, &w, "/api", &[]).await.unwrap();
        assert_eq!(status, 200, "{client}: {body}");
        assert_eq!(seen(&body)["headers"]["x-forwarded-for"], client);
    }

    // Outside `from`, no header: served as usual, with the socket's address.
    let tcp = tcp_from("127.0.0.1", w.public).await;
    let (status, _, body) = get_over(tcp, &w, "/api", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen(&body)["headers"]["x-forwarded-for"], "127.0.0.1");
}

/// Refused: a header from outside `from` (v1 and v2), no header from a
/// `from` peer, a malformed header, a header that never ends (bounded by
/// header_read_timeout). Each is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_refusals() {
    let w = world().await;

    let mut tcp = tcp_from("127.0.0.1", w.public).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n")
        .await
        .unwrap();
    refused(tcp, &w).await;

    let mut tcp = tcp_from("127.0.0.3", w.public).await;
    tcp.write_all(
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x0a\x00\x00\x01\x9c\x40\x01\xbb",
    )
    .await
    .unwrap();
    refused(tcp, &w).await;

    // The load balancer's peer without a header: its own address would be
    // taken for the client's.
    refused(tcp_from("127.0.0.2", w.public).await, &w).await;

    let mut tcp = tcp_from("127.0.0.2", w.public).await;
    tcp.write_all(b"PROXY TCP4 not-an-address 10.0.0.1 1 443\r\n")
        .await
        .unwrap();
    refused(tcp, &w).await;

    // A header that stops half way: closed once header_read_timeout (1s)
    // has passed, never held open.
    let mut tcp = tcp_from("127.0.0.2", w.public).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.7").await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a stalled header must be closed: {closed:?}"
    );

    let metrics = admin(w.admin, "GET", "/metrics", None, None, &[])
        .await
        .body;
    for reason in [
        "proxy_protocol_not_allowed",
        "proxy_protocol_missing",
        "proxy_protocol_malformed",
        "proxy_protocol_timeout",
    ] {
        assert!(
            metrics.contains(&format!(
                "hotproxy_tls_handshakes_total{{listener=\"public\",result=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }
}

/// Forwarding headers from a trusted proxy (directly, or as the address a
/// PROXY header carries) are kept and extended; from anyone else replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_forwarding_headers() {
    let w = world().await;
    let spoof = [
        ("x-forwarded-for", "192.0.2.1"),
        ("forwarded", "for=192.0.2.1"),
        ("x-forwarded-proto", "http"),
        ("x-real-ip", "192.0.2.1"),
    ];

    let tcp = tcp_from("127.0.0.3", w.public).await;
    let (status, _, body) = get_over(tcp, &w, "/api", &spoof).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let h = &seen(&body)["headers"];
    assert_eq!(h["x-forwarded-for"], "192.0.2.1, 127.0.0.3");
    assert_eq!(h["forwarded"], "for=192.0.2.1, for=127.0.0.3;proto=https");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-real-ip"], "192.0.2.1");

    let tcp = tcp_from("127.0.0.1", w.public).await;
    let (status, _, body) = get_over(tcp, &w, "/api", &spoof).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let h = &seen(&body)["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert!(
        h.get("forwarded").is_none() && h.get("x-real-ip").is_none(),
        "{h}"
    );

    // Behind the load balancer: trust is decided on the PROXY address.
    let mut tcp = tcp_from("127.0.0.2", w.public).await;
    tcp.write_all(b"PROXY TCP4 198.51.100.9 10.0.0.1 40000 443\r\n")
        .await
        .unwrap();
    let (_, _, body) = get_over(tcp, &w, "/api", &spoof).await.unwrap();
    assert_eq!(
        seen(&body)["headers"]["x-forwarded-for"],
        "192.0.2.1, 198.51.100.9"
    );
    let mut tcp = tcp_from("127.0.0.2", w.public).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n")
        .await
        .unwrap();
    let (_, _, body) = get_over(tcp, &w, "/api", &spoof).await.unwrap();
    assert_eq!(seen(&body)["headers"]["x-forwarded-for"], "203.0.113.7");
}

/// Raw HTTP/1.1 request bytes over TLS on `tcp` (which must ask for
/// `Connection: close`), read until the proxy closes: what the echo
/// backend saw, from a 200.
async fn raw_over(tcp: TcpStream, w: &World, request: &str) -> serde_json::Value {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A reset after the response (unread input) still leaves what was read.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes");
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(head.starts_with("HTTP/1.1 200 "), "{text}");
    seen(body)
}

/// The `X-Forwarded-*` names the backend saw, sorted.
fn x_forwarded(seen: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = seen["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("x-forwarded") || k.starts_with("x_forwarded"))
        .cloned()
        .collect();
    names.sort();
    names
}

/// Every `X-Forwarded-*` header, not only the four hotproxy sets or
/// replaces, is removed from a client that is not a trusted proxy, and
/// so is its `_` look-alike: `X-Forwarded-Prefix` is the path base of
/// ASP.NET and Spring applications, `X-Forwarded-Scheme` and
/// `X-Forwarded-Ssl` Rack's scheme, so a client could steer the redirects
/// and cached pages of an application that trusts its proxy. A trusted
/// proxy's pass (Traefik's `forwardedheaders`), its look-alikes do not;
/// request trailers carry none of them from anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peers_send_no_x_forwarded_header_of_any_name() {
    let w = world().await;
    let family = [
        ("x-forwarded-prefix", "//evil.example"),
        ("x-forwarded-scheme", "http"),
        ("x-forwarded-ssl", "off"),
        ("x-forwarded-uri", "/admin"),
        ("x-forwarded-server", "evil.example"),
        ("x-forwarded-method", "DELETE"),
    ];
    let mut request = String::from("GET /api HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in family {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("X_Forwarded_Prefix: //evil.example\r\nX-Forwarded_Scheme: http\r\n\r\n");

    let from_client = raw_over(tcp_from("127.0.0.1", w.public).await, &w, &request).await;
    assert_eq!(
        x_forwarded(&from_client),
        ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"],
        "{from_client}"
    );
    assert_eq!(from_client["headers"]["x-forwarded-proto"], "https");

    let from_proxy = raw_over(tcp_from("127.0.0.3", w.public).await, &w, &request).await;
    let h = &from_proxy["headers"];
    for (name, value) in family {
        assert_eq!(h[name], value, "{from_proxy}");
    }
    assert!(
        h.get("x_forwarded_prefix").is_none() && h.get("x-forwarded_scheme").is_none(),
        "a look-alike passed: {from_proxy}"
    );

    // After the body, from either peer: only what no head rule stops.
    let upload = "POST /api/upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                  Trailer: x-checksum, x-forwarded-prefix, x-forwarded-ssl\r\n\
                  Transfer-Encoding: chunked\r\n\r\n\
                  4\r\nabcd\r\n0\r\n\
                  x-checksum: crc32c=1\r\nx-forwarded-prefix: //evil.example\r\n\
                  x-forwarded-ssl: off\r\nx_forwarded_uri: /admin\r\n\r\n";
    for from in ["127.0.0.1", "127.0.0.3"] {
        let seen = raw_over(tcp_from(from, w.public).await, &w, upload).await;
        assert_eq!(seen["body_bytes"], 4, "{seen}");
        assert_eq!(
            seen["trailers"],
            serde_json::json!({ "x-checksum": "crc32c=1" }),
            "from {from}"
        );
    }
}

/// One raw HTTP/1.x request to the redirect listener: the response head.
async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("the redirect listener closes after one answer")
        .unwrap();
    String::from_utf8_lossy(&out).into()
}

/// The redirect listener answers only 308 to https (host without its
/// port, path and query kept), 400 without a valid Host; the response
/// headers are set on proxied and on hotproxy's own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_https_and_response_headers() {
    let w = world().await;

    let r = raw_http(
        w.http,
        "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: Example.com:8080\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    let lower = r.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nlocation: https://example.com:8443/a/b?x=1&y=%20\r\n"),
        "{r}"
    );
    assert!(lower.contains("\r\nx-frame-options: deny\r\n"), "{r}");

    let r = raw_http(
        w.http,
        "POST /form HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("location: https://[::1]:8443/form\r\n"),
        "{r}"
    );

    for bad in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a@evil.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    ] {
        let r = raw_http(w.http, bad).await;
        assert!(
            r.starts_with("HTTP/1.1 400") || r.starts_with("HTTP/1.0 400"),
            "{bad:?}: {r}"
        );
        assert!(!r.to_ascii_lowercase().contains("location:"), "{r}");
    }
    // A head hyper refuses itself (a header line without a colon) is
    // answered and counted like the 400s above.
    let r = raw_http(
        w.http,
        "GET / HTTP/1.1\r\nHost: a.example\r\nno colon\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let counted = "hotproxy_http_requests_total{listener=\"http\",upstream=\"\",code=\"400\"} 5";
    wait_metric(w.admin, counted, Duration::from_secs(10)).await;
    // TLS sent to the plain-HTTP listener gets nothing it could follow.
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    assert!(connect(w.http, "localhost", cfg).await.is_err());

    let tcp = tcp_from("127.0.0.1", w.public).await;
    let (status, headers, _) = get_over(tcp, &w, "/api", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    assert_eq!(headers["x-frame-options"], "DENY");
    let tcp = tcp_from("127.0.0.1", w.public).await;
    let (status, headers, _) = get_over(tcp, &w, "/no-route", &[]).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");

    let ready = admin(w.admin, "GET", "/readyz", None, None, &[]).await;
    assert_eq!(
        ready.status, 200,
        "a redirect listener is ready without certificates"
    );
    // `check` agrees with `run`: no certificate is needed there either.
    let config = w.scene.path("config.yaml");
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    drop(w.scene);
}

/// The redirect listener holds `limits.max_header_bytes` as the TLS
/// listeners' HTTP/1.1 does: a head over it gets `431`, counted; one under
/// it its `308`. Below hyper's 8 KiB read buffer the limit was not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_holds_max_header_bytes() {
    let w = world().await;
    let head = |pad: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: example.com\r\nx-pad: {}\r\n\r\n",
            "p".repeat(pad)
        )
    };
    let r = raw_http(w.http, &head(1500)).await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    let r = raw_http(w.http, &head(4000)).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let counted = "hotproxy_http_requests_total{listener=\"http\",upstream=\"\",code=\"431\"} 1";
    wait_metric(w.admin, counted, Duration::from_secs(10)).await;
}

/// `allow_from` (ingress-nginx's `whitelist-source-range`): a client
/// outside the listener's ranges is closed before TLS, counted and logged
/// as a refused handshake; inside them, a route's own `allow_from` narrows
/// further with `403`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_from_listener_and_route() {
    let w = world().await;
    refused(tcp_from("127.0.0.2", w.partners).await, &w).await;
    let tcp = tcp_from("127.0.0.1", w.partners).await;
    let (status, _, body) = get_over(tcp, &w, "/api", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let tcp = tcp_from("127.0.0.1", w.partners).await;
    let (status, _, body) = get_over(tcp, &w, "/ops", &[]).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("client address"), "{body}");
    let tcp = tcp_from("127.0.0.3", w.partners).await;
    let (status, _, body) = get_over(tcp, &w, "/ops", &[]).await.unwrap();
    assert_eq!(status, 200, "{body}");
    for line in [
        "hotproxy_tls_handshakes_total{listener=\"partners\",result=\"source_not_allowed\"} 1",
        "hotproxy_client_auth_denied_total{listener=\"partners\",reason=\"source_not_allowed\"} 1",
    ] {
        wait_metric(w.admin, line, WAIT).await;
    }
    drop(w.scene);
}

/// An IPv4 client of a dual-stack listener (`bind: "[::]:0"`) arrives on an
/// IPv6 socket as `::ffff:127.0.0.1`. It is its IPv4 address everywhere, as
/// Envoy reports it: `X-Forwarded-For` (a backend's IPv4 allow list would
/// not match the mapped form), the access log and `allow_from`.
#[tokio::test]
async fn ipv4_clients_of_a_dual_stack_listener_keep_their_address() {
    std::net::TcpListener::bind("[::]:0")
        .expect("this test needs IPv6 on the host: a dual-stack [::] socket");
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    let backend = Backend::start("app", &backend_ca.server_pair(&["backend.local"]), None).await;
    let log = scene.path("access.log");
    let config = scene.config(&format!(
        r#"
access_log: {{ path: {log}, format: json }}
listeners:
  - name: dual
    bind: "[::]:0"
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
    allow_from: [127.0.0.0/8]
    routes: [{{ upstream: app }}]
upstreams:
  - name: app
    servers: [https://{addr}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
"#,
        log = log.display(),
        addr = backend.addr
    ));
    let mut p = Proxy::start(&config);
    let port = p.listener_addr("dual").await.port();
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let reply = get(addr, "localhost", cfg, false, "/", &[]).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["x-forwarded-for"], "127.0.0.1");
    let line = &wait_access_log(&log, 1, WAIT).await[0];
    let client = line["client_addr"].as_str().unwrap();
    assert!(client.starts_with("127.0.0.1:"), "{line}");
}

/// A CRL in an upstream's `tls.ca` is enforced, as Envoy's `crl` and
/// nginx's `proxy_ssl_crl` are: a backend whose certificate it revokes is
/// refused (with `verify_names` too), and so is one whose issuer has no
/// CRL among them (an unknown status, as on the listener side); a backend
/// it does not revoke is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_crl_refuses_a_revoked_backend() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let mesh = TestCa::new("mesh CA");
    let stranger = TestCa::new("another CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    let revoked_pair = mesh.server_pair(&["backend.local"]);
    write(&scene.path("mesh-ca.crt"), &mesh.cert_pem);
    write(&scene.path("revokes.crl"), &mesh.crl(&[&revoked_pair]));
    write(&scene.path("stranger.crl"), &stranger.crl(&[]));
    let revoked = Backend::start("revoked", &revoked_pair, None).await;
    let good = Backend::start("good", &mesh.server_pair(&["backend.local"]), None).await;
    let upstream = |name: &str, backend: &Backend, crl: &str, extra: &str| {
        format!(
            r#"
  - name: {name}
    servers: [https://{addr}]
    tls:
      ca: {{ ca_file: mesh-ca.crt, crl_files: [{crl}] }}
      server_name: backend.local{extra}"#,
            addr = backend.addr
        )
    };
    let upstreams = [
        upstream("revoked", &revoked, "revokes.crl", ""),
        upstream(
            "revoked-names",
            &revoked,
            "revokes.crl",
            "\n      verify_names: [backend.local]",
        ),
        upstream("good", &good, "revokes.crl", ""),
        upstream(
            "good-names",
            &good,
            "revokes.crl",
            "\n      verify_names: [backend.local]",
        ),
        upstream("unknown", &good, "stranger.crl", ""),
        upstream(
            "unknown-names",
            &good,
            "stranger.crl",
            "\n      verify_names: [backend.local]",
        ),
    ]
    .concat();
    let routes: String = [
        "revoked",
        "revoked-names",
        "good",
        "good-names",
        "unknown",
        "unknown-names",
    ]
    .iter()
    .map(|u| format!("\n      - {{ path_prefix: /{u}/, upstream: {u} }}"))
    .collect();
    let mut p = Proxy::start(&scene.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: a.crt, key_file: a.key }}]
    routes:{routes}
upstreams:{upstreams}
"#
    )));
    let addr = p.listener_addr("public").await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    for (upstream, status, error) in [
        ("revoked", 502, "revoked"),
        ("revoked-names", 502, "revoked"),
        ("good", 200, ""),
        ("good-names", 200, ""),
        ("unknown", 502, "revocation status is unknown"),
        ("unknown-names", 502, "revocation status is unknown"),
    ] {
        let path = format!("/{upstream}/x");
        let reply = get(addr, "localhost", client.clone(), false, &path, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{upstream}: {}", reply.body);
        if status == 502 {
            let log = p
                .wait_log(&format!("{upstream}'s refusal logged"), |v| {
                    v["message"] == "upstream request failed" && v["upstream"] == upstream
                })
                .await;
            let said = log["error"].as_str().unwrap_or_default();
            assert!(said.contains(error), "{upstream}: {log}");
        }
    }
}

/// A CRL in an upstream's `tls.ca` that cannot be used (one under the CA's
/// name signed by another key) refuses the backend as `crl_invalid`, the
/// listener side's word for the same fault, with and without
/// `verify_names`: it was the catch-all `tls`, which names no file to fix.
/// A CRL past its nextUpdate stays `unknown_ca`, as SPEC §5 lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_upstream_crl_is_reported_as_crl_invalid() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let mesh = TestCa::new("mesh CA");
    let imposter = TestCa::new("mesh CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    write(&scene.path("mesh-ca.crt"), &mesh.cert_pem);
    write(&scene.path("forged.crl"), &imposter.crl(&[]));
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    write(&scene.path("stale.crl"), &mesh.crl_until(&[], yesterday));
    let backend = Backend::start("b", &mesh.server_pair(&["backend.local"]), None).await;
    let names = "\n      verify_names: [backend.local]";
    let cases = [
        ("forged", "forged.crl", "", "crl_invalid"),
        ("forged-names", "forged.crl", names, "crl_invalid"),
        ("stale", "stale.crl", "", "unknown_ca"),
        ("stale-names", "stale.crl", names, "unknown_ca"),
    ];
    let upstreams: String = cases
        .iter()
        .map(|(name, crl, extra, _)| {
            format!(
                r#"
  - name: {name}
    servers: [https://{addr}]
    tls:
      ca: {{ ca_file: mesh-ca.crt, crl_files: [{crl}] }}
      server_name: backend.local{extra}"#,
                addr = backend.addr
            )
        })
        .collect();
    let routes: String = cases
        .iter()
        .map(|(u, ..)| format!("\n      - {{ path_prefix: /{u}/, upstream: {u} }}"))
        .collect();
    let mut p = Proxy::start(&scene.config(&format!(
        r#"
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      certs: [{{ cert_file: a.crt, key_file: a.key }}]
    routes:{routes}
upstreams:{upstreams}
"#
    )));
    let addr = p.listener_addr("public").await;
    let api = p.admin_addr().await;
    let client = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    for (upstream, _, _, reason) in cases {
        let path = format!("/{upstream}/x");
        let reply = get(addr, "localhost", client.clone(), false, &path, &[])
            .await
            .unwrap();
        assert_eq!(reply.status, 502, "{upstream}: {}", reply.body);
        let log = p
            .wait_log(&format!("{upstream}'s refusal logged"), |v| {
                v["message"] == "upstream request failed" && v["upstream"] == upstream
            })
            .await;
        assert_eq!(log["reason"], reason, "{upstream}: {log}");
        let series = format!(
            r#"hotproxy_upstream_errors_total{{upstream="{upstream}",reason="{reason}"}} "#
        );
        let metrics = metrics_text(api).await;
        assert!(
            metrics.lines().any(|l| l.starts_with(&series)),
            "{upstream}: no {series}in\n{metrics}"
        );
    }
}

/// A reload that removes the redirect listener closes it as it closes a
/// TLS listener: its port refuses, and the connections it holds (one that
/// sent nothing yet, one whose head has begun) are closed at once. They
/// used to stay open until their `header_read_timeout`, to be answered
/// with the removed listener's settings, and held the shutdown drain as
/// long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_redirect_listener_closes_its_connections() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    let config = |http: &str| {
        format!(
            r#"
watch: {{ debounce: 50ms, poll_interval: 500ms }}
admin: {{ bind: "127.0.0.1:0" }}
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }}
    routes: [{{ upstream: app }}]
{http}upstreams:
  - name: app
    servers: [http://127.0.0.1:9]
"#
        )
    };
    // Longer than read_to_close waits: only the removal can close it.
    let http = "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: { port: 8443 }\n    limits: { header_read_timeout: 300s }\n";
    let path = scene.config(&config(http));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("http").await;
    let admin = p.admin_addr().await;
    // One that has sent nothing yet, one half a head.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut begun = TcpStream::connect(addr).await.unwrap();
    begun.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // Accepted by the listener, not waiting in the kernel's queue.
    let gauge = "hotproxy_connections_active{listener=\"http\"} 2";
    wait_metric(admin, gauge, WAIT).await;
    scene.config(&config(""));
    p.wait_log("removed", |v| {
        v["message"] == "listener removed" && v["listener"] == "http"
    })
    .await;
    for held in [&mut idle, &mut begun] {
        let got = read_to_close(held).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    wait_until(WAIT, "the removed listener's port refuses", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    drop(scene);
}

/// An absolute-form target with userinfo (`GET http://user:secret@b.test/x`)
/// is refused, and its access-log line names the host without the
/// credentials: the log drops queries because they carry tokens, and a
/// password in the authority must not reach the log shipper either.
#[tokio::test]
async fn userinfo_in_the_target_never_reaches_the_access_log() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    scene.pair("a", &ca.server_pair(&["localhost"]));
    let log = scene.path("access.log");
    let config = scene.config(&format!(
        r#"
access_log: {{ path: {log}, format: json }}
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
    ));
    let mut p = Proxy::start(&config);
    let addr = p.listener_addr("public").await;
    let cfg = client_config(&ca.cert_pem, None, &[b"http/1.1"]);
    // In the target, then in a `Host` field of an origin-form request.
    let requests: [&[u8]; 2] = [
        b"GET http://user:secret@b.test/x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: user:secret@b.test\r\nConnection: close\r\n\r\n",
    ];
    for (n, request) in requests.into_iter().enumerate() {
        let mut tls = connect(addr, "localhost", cfg.clone()).await.unwrap();
        tls.write_all(request).await.unwrap();
        let reply = String::from_utf8_lossy(&read_to_close(&mut tls).await).into_owned();
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
        let line = &wait_access_log(&log, n + 1, WAIT).await[n];
        assert_eq!(line["status"], 400, "{line}");
        assert!(!line.to_string().contains("secret"), "{line}");
        assert_eq!(line["host"], "b.test", "{line}");
    }
}
