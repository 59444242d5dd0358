//! The client as the backend and the log see it: forwarding headers, allow_from, IPv4 on dual stack, userinfo.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;
use crate::support::*;

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

/// `X-Original-URL` and `X-Rewrite-URL` are the path to IIS URL Rewrite,
/// ASP.NET and older Symfony and Zend (CVE-2018-14773), as `-Uri` and
/// `-Prefix` are to others: `GET /api/public/x` with `X-Original-URL:
/// /api/admin/x` would be routed by hotproxy (and its `allow` rules) as
/// one path and served by the application as another. From a client that
/// is not a trusted proxy they are removed, with their `_` look-alikes; a
/// trusted proxy's pass, as its `X-Forwarded-Uri` does; request trailers
/// carry none of them from anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peers_send_no_original_url() {
    let w = world().await;
    let rewritten = [
        ("x-original-url", "/api/admin/x"),
        ("x-rewrite-url", "/api/admin/x"),
    ];
    let lookalikes = ["x_original_url", "x-rewrite_url"];
    let mut request =
        String::from("GET /api/public/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in rewritten {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("X_Original_URL: /api/admin/x\r\nX-Rewrite_URL: /api/admin/x\r\n\r\n");

    let from_client = raw_over(tcp_from("127.0.0.1", w.public).await, &w, &request).await;
    let h = &from_client["headers"];
    for name in rewritten.map(|(n, _)| n).iter().chain(&lookalikes) {
        assert!(h.get(*name).is_none(), "{name} passed: {from_client}");
    }
    assert_eq!(from_client["path"], "/api/public/x", "{from_client}");

    let from_proxy = raw_over(tcp_from("127.0.0.3", w.public).await, &w, &request).await;
    let h = &from_proxy["headers"];
    for (name, value) in rewritten {
        assert_eq!(h[name], value, "{from_proxy}");
    }
    for name in lookalikes {
        assert!(h.get(name).is_none(), "{name} passed: {from_proxy}");
    }

    let upload = "POST /api/upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                  Transfer-Encoding: chunked\r\n\r\n\
                  4\r\nabcd\r\n0\r\n\
                  x-checksum: crc32c=1\r\nx-original-url: /api/admin/x\r\n\
                  x-rewrite-url: /api/admin/x\r\nx_original_url: /api/admin/x\r\n\r\n";
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

/// The client-address headers of other proxies and CDNs, which
/// frameworks and rate limiters read as the client's address.
const CLIENT_ADDRESS_CLAIMS: [&str; 21] = [
    "x-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "true-client-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-forwarded",
    "forwarded-for",
    "x-original-forwarded-for",
    "x-envoy-external-address",
    "client-ip",
    "x-appengine-user-ip",
    "cf-pseudo-ipv4",
    "fly-client-ip",
    "do-connecting-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "proxy-client-ip",
    "wl-proxy-client-ip",
];

/// Their `_` look-alikes, and CGI's names of them and of `X-Forwarded-For`
/// (`HTTP_` then the name with `_`), as a client spells them: headers by
/// those literal names are what the common Java `getIpAddr` helper reads
/// after `Proxy-Client-IP` and `WL-Proxy-Client-IP`.
const CLIENT_ADDRESS_LOOKALIKES: [&str; 8] = [
    "CF_Connecting_IP",
    "True_Client_IP",
    "Client_IP",
    "X_Remote_Addr",
    "WL_Proxy_Client_IP",
    "HTTP_CLIENT_IP",
    "HTTP_X_FORWARDED_FOR",
    "Http_X_Real_IP",
];

/// One HTTP/2 `GET /api` over TLS on `tcp` with `headers`: what the echo
/// backend saw, from a 200.
async fn h2_over(tcp: TcpStream, w: &World, headers: &[(String, &str)]) -> serde_json::Value {
    let cfg = client_config(&w.ca.cert_pem, None, &[b"h2"]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let exchange = async {
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let io = hyper_util::rt::TokioIo::new(tls);
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::get("https://localhost/api");
        for (k, v) in headers {
            req = req.header(k.as_str(), *v);
        }
        let body = http_body_util::Empty::<bytes::Bytes>::new();
        let resp = send.send_request(req.body(body).unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        seen(&String::from_utf8_lossy(&body))
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("the proxy answers over HTTP/2")
}

/// The client-address headers of other proxies and CDNs, which
/// frameworks and rate limiters read as the client's address (Cloudflare's
/// `CF-Connecting-IP`, Akamai's `True-Client-IP`, Fastly's, Envoy's, the
/// bare `X-Forwarded` and `Forwarded-For`, the `Client-IP` Django's ipware,
/// Rails' `RemoteIp` and PHP read, App Engine's, Fly's, DigitalOcean's,
/// `X-Remote-Addr`, Google's `X-ProxyUser-Ip`, and the `Proxy-Client-IP`
/// and WebLogic's `WL-Proxy-Client-IP` Java's common `getIpAddr` helper
/// reads, ...), are a trusted proxy's only: from anyone else they are
/// removed, over HTTP/1.1 and HTTP/2, with their `_` look-alikes and
/// CGI-style names (`HTTP_CLIENT_IP`, `HTTP_X_FORWARDED_FOR`, which that
/// helper reads too), as `X-Real-IP` is. A trusted proxy's pass, its
/// look-alikes do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peers_send_no_client_address_of_any_name() {
    let w = world().await;
    let mut request = String::from("GET /api HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for name in CLIENT_ADDRESS_CLAIMS
        .iter()
        .chain(&CLIENT_ADDRESS_LOOKALIKES)
    {
        request.push_str(&format!("{name}: 192.0.2.66\r\n"));
    }
    request.push_str("\r\n");
    // HTTP/2 names are lowercase.
    let fields: Vec<(String, &str)> = CLIENT_ADDRESS_CLAIMS
        .iter()
        .chain(&CLIENT_ADDRESS_LOOKALIKES)
        .map(|n| (n.to_ascii_lowercase(), "192.0.2.66"))
        .collect();
    let lookalikes = CLIENT_ADDRESS_LOOKALIKES.map(|n| n.to_ascii_lowercase());

    for h2 in [false, true] {
        let seen_from = async |peer: &str| {
            let tcp = tcp_from(peer, w.public).await;
            if h2 {
                h2_over(tcp, &w, &fields).await
            } else {
                raw_over(tcp, &w, &request).await
            }
        };
        let from_client = seen_from("127.0.0.1").await;
        let h = &from_client["headers"];
        for name in CLIENT_ADDRESS_CLAIMS
            .iter()
            .chain(&lookalikes.each_ref().map(String::as_str))
        {
            assert!(
                h.get(*name).is_none(),
                "{name} passed, h2: {h2}: {from_client}"
            );
        }
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{from_client}");

        let from_proxy = seen_from("127.0.0.3").await;
        let h = &from_proxy["headers"];
        for name in CLIENT_ADDRESS_CLAIMS {
            assert_eq!(h[name], "192.0.2.66", "{name}, h2: {h2}: {from_proxy}");
        }
        for name in &lookalikes {
            assert!(
                h.get(name).is_none(),
                "{name} passed, h2: {h2}: {from_proxy}"
            );
        }
        assert_eq!(h["x-forwarded-for"], "127.0.0.3", "{from_proxy}");
    }
}

/// An application's own `HTTP_` names pass, from any client, over HTTP/1.1
/// and HTTP/2, even those reading as a framing or hop-by-hop header after
/// the `HTTP_`: the `HTTP_` rule is for CGI's names of the headers hotproxy
/// vouches for, and CGI names `HTTP_Upgrade` `HTTP_HTTP_UPGRADE`, which no
/// backend reads as `Upgrade`. `HTTP_Via` reads as the `Via` hotproxy sets
/// and goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_own_http_names_pass() {
    let w = world().await;
    let own = [
        "HTTP_Upgrade",
        "HTTP_Connection",
        "HTTP_TE",
        "HTTP_Trailer",
        "HTTP_Keep_Alive",
        "HTTP_Content_Length",
        "HTTP_Transfer_Encoding",
        "HTTP_Proxy_Authorization",
    ];
    let mut request = String::from("GET /api HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for name in own.iter().chain(&["HTTP_Via"]) {
        request.push_str(&format!("{name}: app\r\n"));
    }
    request.push_str("\r\n");
    let fields: Vec<(String, &str)> = own
        .iter()
        .chain(&["HTTP_Via"])
        .map(|n| (n.to_ascii_lowercase(), "app"))
        .collect();
    for h2 in [false, true] {
        for peer in ["127.0.0.1", "127.0.0.3"] {
            let tcp = tcp_from(peer, w.public).await;
            let seen = if h2 {
                h2_over(tcp, &w, &fields).await
            } else {
                raw_over(tcp, &w, &request).await
            };
            // The h1 echo backend sees names lowercase.
            let h = &seen["headers"];
            for name in own {
                let name = name.to_ascii_lowercase();
                assert_eq!(h[&name], "app", "{name}, {peer}, h2: {h2}: {seen}");
            }
            assert!(h.get("http_via").is_none(), "{peer}, h2: {h2}: {seen}");
        }
    }
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
    let (scene, ca, backend) = scene_with_backend("app").await;
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

/// An absolute-form target with userinfo (`GET http://user:secret@b.test/x`)
/// is refused, and its access-log line names the host without the
/// credentials: the log drops queries because they carry tokens, and a
/// password in the authority must not reach the log shipper either.
#[tokio::test]
async fn userinfo_in_the_target_never_reaches_the_access_log() {
    let scene = Scene::new();
    let ca = TestCa::new("edge CA");
    let (_p, addr, log) = logged(&scene, &ca, "json").await;
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

/// A client offering ALPN `http/1.0` alone (curl 7.88 to 8.4 with
/// `--http1.0`) is served HTTP/1.0, as nginx does: the listener offered
/// h2 and http/1.1 only, so rustls refused the handshake
/// (no_application_protocol) though the proxy speaks HTTP/1.0.
#[tokio::test]
async fn a_client_offering_only_http_1_0_is_answered() {
    let w = world().await;
    let cfg = client_config(&w.ca.cert_pem, None, &[b"http/1.0"]);
    let mut tls = connect(w.public, "localhost", cfg).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.0"[..]));
    tls.write_all(b"GET /api HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let reply = String::from_utf8_lossy(&read_to_close(&mut tls).await).into_owned();
    assert!(
        reply.starts_with("HTTP/1.0 200 ") || reply.starts_with("HTTP/1.1 200 "),
        "{reply}"
    );
}
