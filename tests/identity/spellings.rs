//! Identity and forwarding headers under other spellings: punctuation look-alikes, other servers' names.

use crate::common::*;
use crate::support::*;

/// The headers the backend saw for `GET /nginx` with `headers`, over
/// HTTP/2 (`h2`) or HTTP/1.1, from a client without a certificate.
async fn seen_over(
    w: &World,
    addr: std::net::SocketAddr,
    h2: bool,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let cfg = client_config(&w.edge_ca.cert_pem, None, alpn);
    let r = get(addr, "localhost", cfg, h2, "/nginx", headers)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["headers"].clone()
}

/// A proxy for [`seen_over`]: `/nginx` forwards the client certificate
/// as ingress-nginx does (`ssl-client-verify`, ...).
fn start(w: &World) -> Proxy {
    let auth = "        mode: verify_if_given\n        ca: { ref: partners-ca }";
    let routes =
        r#"      - { path_prefix: /nginx, upstream: app, forward_client_cert: ingress_nginx }"#;
    Proxy::start(&config(w, auth, "", routes, ""))
}

/// A name that reads, any byte but a letter, digit or `-` taken as `-`, as
/// a header hotproxy sets, replaces or removes is removed, over HTTP/1.1
/// and HTTP/2: lighttpd names `X.Client.Cert.Subject` and `X+Forwarded+For`
/// `HTTP_X_CLIENT_CERT_SUBJECT` and `HTTP_X_FORWARDED_FOR` for CGI, FastCGI
/// and SCGI, and PHP makes `.` and ` ` in `$_SERVER` keys `_`, so either
/// would reach such a backend as, or override, the header hotproxy wrote.
/// An application's own name with `.` passes.
#[tokio::test]
async fn punctuation_lookalikes_of_stripped_headers_are_removed() {
    let w = world().await;
    let mut p = start(&w);
    let addr = p.listener_addr("partners").await;
    let lookalikes = [
        ("X.Client.Cert.Subject", "CN=admin"),
        ("Ssl.Client.Verify", "SUCCESS"),
        ("X.Forwarded.For", "127.0.0.1"),
        ("x+forwarded+host", "evil.example"),
        ("x~real~ip", "6.6.6.6"),
        ("x!request!id", "forged"),
        ("HTTP.X.Forwarded.For", "6.6.6.6"),
        ("http.client.ip", "6.6.6.6"),
        ("ssl.client-subject_dn", "CN=admin"),
        ("transfer.encoding", "chunked"),
    ];
    let mut sent = lookalikes.to_vec();
    sent.push(("X-Custom.Thing", "kept"));
    sent.push(("api.key", "k1"));
    for h2 in [false, true] {
        let h = seen_over(&w, addr, h2, &sent).await;
        none_reached(&h, h2, &lookalikes);
        assert_eq!(h["x-custom.thing"], "kept", "h2: {h2}: {h}");
        assert_eq!(h["api.key"], "k1", "h2: {h2}: {h}");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "h2: {h2}: {h}");
        assert_eq!(h["x-forwarded-host"], "localhost", "h2: {h2}: {h}");
    }
    drop(p);
}

/// Client-certificate headers of Puppet Server (`X-Client-DN`,
/// `X-Client-Verify`: its `ssl-client-header` and
/// `ssl-client-verify-header` defaults, trusted with
/// `allow-header-cert-info`) and of HAProxy's recipe (`X-SSL-Issuer`; its
/// bare `X-SSL`, an origin claim, from a client that is no trusted proxy)
/// never reach the backend, nor their look-alikes, in the head, over
/// HTTP/1.1 and HTTP/2. A name they only begin (`X-Client-DNSSEC`) passes.
#[tokio::test]
async fn puppet_and_haproxy_client_cert_headers_are_removed() {
    let w = world().await;
    let mut p = start(&w);
    let addr = p.listener_addr("partners").await;
    let forged = [
        ("X-Client-DN", "CN=admin"),
        ("X-Client-Verify", "SUCCESS"),
        ("X-SSL-Issuer", "CN=partners issuing CA"),
        ("X-SSL", "1"),
        ("x_client_dn", "CN=admin"),
        ("X.Client.Verify", "SUCCESS"),
        ("x_ssl_issuer", "CN=partners issuing CA"),
        ("x_ssl", "1"),
    ];
    let mut sent = forged.to_vec();
    sent.push(("x-client-dnssec", "kept"));
    for h2 in [false, true] {
        let h = seen_over(&w, addr, h2, &sent).await;
        none_reached(&h, h2, &forged);
        assert_eq!(h["x-client-dnssec"], "kept", "h2: {h2}: {h}");
    }
    drop(p);
}

/// None of the headers `sent` (by name, any case) is in `h`, what the
/// backend saw.
fn none_reached(h: &serde_json::Value, h2: bool, sent: &[(&str, &str)]) {
    for (name, _) in sent {
        let lower = name.to_ascii_lowercase();
        assert!(
            h.get(&lower).is_none(),
            "h2: {h2}: {name} reached the backend: {h}"
        );
    }
}
