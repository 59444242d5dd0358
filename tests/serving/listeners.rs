//! What a listener agrees to serve: ALPN, cipher order, which of a name's pairs, the admin listener's cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::support::*;

/// A client that agreed on h2 and sends HTTP/1.1 is answered in HTTP/2
/// and nothing reaches the backend: not a request,
/// not a 300 KB head, not half a head held open. Those connections are
/// closed by hotproxy (a connection error), not by the client: they are
/// not counted as closed before a request. What the client gets is the
/// server's SETTINGS and then the close, no GOAWAY: the h2 crate refuses a
/// bad preface before its connection exists and sends nothing more (RFC
/// 9113 §3.4 lets it omit the GOAWAY; nginx sends one). SPEC §6 said a
/// GOAWAY came; it says what comes now, and this pins it.
#[tokio::test]
async fn agreed_h2_then_http1_bytes_is_an_h2_protocol_error() {
    let (w, mut p, addr) = serve("header_read_timeout: 1s, idle_timeout: 1h").await;
    let admin = p.admin_addr().await;
    let big = "x".repeat(300 * 1024);
    let mut ports = Vec::new();
    for (head, large) in [
        (
            "GET /api HTTP/1.1\r\nhost: a.example.com\r\n\r\n".to_owned(),
            false,
        ),
        (
            format!("GET /api HTTP/1.1\r\nhost: a.example.com\r\nx-big: {big}\r\n\r\n"),
            true,
        ),
        ("GET /api HTTP/1.1\r\nhost: a.exa".to_owned(), false),
    ] {
        let mut s = tls(&w, addr, &[b"h2"]).await;
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        ports.push(local_port(&s));
        // The server may close before a large head is written: that is fine.
        let _ = s.write_all(head.as_bytes()).await;
        let reply = read_to_close(&mut s).await;
        let types = h2_frame_types(&reply).unwrap_or_else(|| {
            panic!(
                "not HTTP/2 frames: {:?}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            )
        });
        // The server's SETTINGS, then the close (a reset while a large
        // head is still being written may discard them).
        if large {
            assert!(types.iter().all(|t| *t == SETTINGS), "{types:?}");
        } else {
            assert_eq!(types, [SETTINGS], "{types:?}");
        }
    }
    assert_eq!(
        w.backend.requests.load(SeqCst),
        0,
        "a request reached the backend"
    );
    for port in ports {
        assert_closed_by_us(&mut p, admin, port).await;
    }
}

/// The connection from local port `port` ended with an error (logged by
/// its driver just before the connection's close is classified), and was
/// not counted in `hotproxy_connections_closed_before_request_total`:
/// hotproxy closed it.
async fn assert_closed_by_us(p: &mut Proxy, admin: SocketAddr, port: u16) {
    p.wait_log("the connection's end", |v| {
        v["message"] == "connection ended with error" && peer_is(v, port)
    })
    .await;
    let m = metrics_text(admin).await;
    assert!(
        !m.contains("hotproxy_connections_closed_before_request_total{listener=\"public\"}"),
        "our own close counted as the client's: {m}"
    );
}

/// A listener with `alpn: [http/1.1]` never serves HTTP/2, and neither does
/// one offering http/1.1 to a client that sent no ALPN: the h2 preface is not a
/// request head, and the answer is never an HTTP/2 SETTINGS frame. hotproxy
/// closes such a connection: it is not counted as closed before a request.
#[tokio::test]
async fn h2_preface_without_agreeing_on_h2_is_not_served_as_h2() {
    let w = world().await;
    for (tls_opts, alpn) in [
        (", alpn: [http/1.1]", &[&b"http/1.1"[..]][..]),
        (", alpn: [http/1.1]", &[][..]),
        ("", &[][..]),
    ] {
        let mut p = Proxy::start(&config(&w, tls_opts, ""));
        let addr = p.listener_addr("public").await;
        let admin = p.admin_addr().await;
        let mut s = tls(&w, addr, alpn).await;
        assert_ne!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let port = local_port(&s);
        s.write_all(PREFACE).await.unwrap();
        s.write_all(EMPTY_SETTINGS).await.unwrap();
        let reply = read_to_close(&mut s).await;
        assert!(
            reply.is_empty() || reply.starts_with(b"HTTP/1.1 "),
            "listener tls {tls_opts:?}, client ALPN {alpn:?}: answered {:?}",
            h2_frame_types(&reply)
        );
        assert_closed_by_us(&mut p, admin, port).await;
    }
    assert_eq!(w.backend.requests.load(SeqCst), 0);
}

/// A listener with `alpn: [h2]` speaks only HTTP/2, to a client that sent
/// no ALPN too, as an Envoy HTTP/2-only listener does: HTTP/1.1 bytes are
/// an HTTP/2 connection error as after agreeing on h2 (nothing reaches the
/// backend, hotproxy closes), and the h2 preface is served. Such a client
/// used to be served HTTP/1.1, while one offering http/1.1 is refused in
/// the handshake (`no_alpn_match`).
#[tokio::test]
async fn an_h2_only_listener_speaks_only_http2_to_a_client_without_alpn() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, ", alpn: [h2]", ""));
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    let mut s = tls(&w, addr, &[]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    let port = local_port(&s);
    s.write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let reply = read_to_close(&mut s).await;
    let types = h2_frame_types(&reply).unwrap_or_else(|| {
        panic!(
            "not HTTP/2 frames: {:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        )
    });
    // SETTINGS, then the close, as after agreeing on h2.
    assert_eq!(types, [SETTINGS], "{types:?}");
    assert_closed_by_us(&mut p, admin, port).await;
    assert_eq!(w.backend.requests.load(SeqCst), 0, "HTTP/1.1 was served");

    let mut client = h2_client(tls(&w, addr, &[]).await).await;
    let resp = h2_request(&mut client, h2_get("/", "GET")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(w.backend.requests.load(SeqCst), 1);
}

/// The admin listener caps its connections (64; one address holds at most
/// 16: the 64 come from four) and cuts a head that does not arrive within
/// 10 s, so a slowloris on the admin port cannot hold descriptors forever;
/// with every slot taken, a newcomer evicts the connection that has
/// waited on its client longest (SPEC §4), so probes are not locked out.
#[tokio::test]
async fn admin_listener_caps_connections_and_times_out_heads() {
    let w = world().await;
    let mut p = Proxy::start(&config(&w, "", ""));
    let admin_addr = p.admin_addr().await;
    let from =
        |i: usize| async move { tcp_from(&format!("127.0.0.{}", 1 + i / 16), admin_addr).await };
    let mut held = Vec::new();
    for i in 0..63 {
        held.push(from(i).await);
    }
    let mut half = from(63).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0")
        .await
        .unwrap();
    // The 65th connection takes the slot of the one that has sent nothing
    // for longest, the first held, and is answered.
    let mut probe = from(64).await;
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = String::from_utf8(read_to_close(&mut probe).await).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let evicted = read_to_close(&mut held[0]).await;
    assert!(evicted.is_empty(), "the evicted connection got {evicted:?}");
    // The half-sent head is still cut by the header timeout.
    let _ = read_to_close(&mut half).await;
    p.wait_log("admin head timed out", |v| {
        v["message"] == "closing connection"
            && v["listener"] == "admin"
            && v["reason"] == "header_read_timeout"
    })
    .await;
    drop(held);
}

/// The server's cipher-suite order wins: a client preferring ChaCha20 or
/// AES-256-GCM gets AES-128-GCM, the first of the server's suites
/// (`tls::provider`: SHA-256 has a hardware path, SHA-384 often does not).
#[tokio::test]
async fn server_cipher_order_is_preferred() {
    use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let (w, _p, addr) = serve("").await;
    for (version, suites) in [
        (
            &rustls::version::TLS13,
            vec![
                cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS13_AES_128_GCM_SHA256,
            ],
        ),
        (
            &rustls::version::TLS13,
            vec![
                cipher_suite::TLS13_AES_256_GCM_SHA384,
                cipher_suite::TLS13_AES_128_GCM_SHA256,
            ],
        ),
        (
            &rustls::version::TLS12,
            vec![
                cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ],
        ),
    ] {
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: suites,
            ..default_provider()
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(w.ca.cert_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let s = connect(addr, "a.example.com", Arc::new(cfg)).await.unwrap();
        let chosen = s.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert!(
            format!("{chosen:?}").contains("AES_128_GCM"),
            "{version:?}: the client's first choice won: {chosen:?}"
        );
    }
}

/// Handshakes refused before TLS began get an access-log line like the
/// other refused handshakes (`authz` the metric's result): a client that
/// connects and sends nothing (`timeout`, after header_read_timeout) and
/// plain HTTP on the TLS port (`plain_http`). The plain request's line has
/// the `400` it was answered, with its body's bytes (as nginx logs it): it
/// had `status` `null`, as if nothing had been sent. The silent client's
/// `duration_ms` is the time it was held, not 0.
#[tokio::test]
async fn handshakes_refused_before_tls_are_logged() {
    let (_w, _p, addr, log) = serve_logged("header_read_timeout: 1s").await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    assert!(read_to_close(&mut silent).await.is_empty());
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\n\r\n")
        .await
        .unwrap();
    let reply = read_to_close(&mut plain).await;
    assert!(reply.starts_with(b"HTTP/1.1 400"), "{reply:?}");
    let all = wait_access_log(&log, 2, WAIT).await;
    assert_eq!(all.len(), 2, "{all:?}");
    let body = "The plain HTTP request was sent to HTTPS port\n";
    assert!(reply.ends_with(body.as_bytes()), "{reply:?}");
    let answered = serde_json::json!([null, 0, 400, body.len()]);
    for (at, (line, (port, reason))) in all
        .iter()
        .zip([(silent_port, "timeout"), (plain_port, "plain_http")])
        .enumerate()
    {
        assert_eq!(line["authz"], reason, "{line}");
        assert_eq!(line["status"], answered[2 * at], "{line}");
        assert_eq!(line["bytes_out"], answered[2 * at + 1], "{line}");
        assert!(
            line["protocol"].is_null() && line["method"].is_null(),
            "{line}"
        );
        assert_eq!(line["listener"], "public", "{line}");
        let client = line["client_addr"].as_str().unwrap();
        assert!(client.ends_with(&format!(":{port}")), "{line}");
    }
    // `duration_ms` runs from accept to the refusal, as on any line: the
    // silent client was held for the whole header_read_timeout (1 s).
    let held = all[0]["duration_ms"].as_f64().unwrap();
    assert!(held >= 1000.0, "{}", all[0]);
}

/// The `redirect_https` listener writes an access-log line for each
/// answer (its `308`, its own `400`, hyper's `400`) and for a head cut at
/// header_read_timeout, which is counted as `408` as on the TLS
/// listeners; a connection that sends nothing is neither.
#[tokio::test]
async fn redirect_listener_answers_are_logged() {
    let w = world().await;
    let (path, log) = logged_config(&w, "");
    edit_config(&path, |text| {
        let http = "  - name: http\n    bind: 127.0.0.1:0\n    redirect_https: { port: 8443 }\n    limits: { header_read_timeout: 1s }\nupstreams:";
        text.replacen("upstreams:", http, 1)
    });
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("http").await;
    let admin = p.admin_addr().await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_to_close(&mut silent).await.is_empty());
    let mut sent = Vec::new();
    for (head, status) in [
        (
            "GET /x?token=t HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
            308,
        ),
        ("GET /x HTTP/1.1\r\n\r\n", 400),
        (
            "GET / HTTP/1.1\r\nHost: a.example.com\r\nno colon\r\n\r\n",
            400,
        ),
        ("GET / HTTP/1.1\r\nHost: a.exa", 408),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        sent.push((s.local_addr().unwrap().port(), status));
        s.write_all(head.as_bytes()).await.unwrap();
        let reply = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
        match status {
            408 => assert_eq!(reply, "", "nothing is sent for a head cut short"),
            _ => assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}"),
        }
    }
    let line = "hotproxy_http_requests_total{listener=\"http\",upstream=\"\",code=\"408\"} 1";
    wait_metric(admin, line, WAIT).await;
    let all = wait_access_log(&log, 4, WAIT).await;
    assert_eq!(all.len(), 4, "{all:?}");
    for (line, (port, status)) in all.iter().zip(&sent) {
        assert_eq!(line["status"], *status, "{line}");
        assert_eq!(line["listener"], "http", "{line}");
        let client = line["client_addr"].as_str().unwrap();
        assert!(client.ends_with(&format!(":{port}")), "{line}");
    }
    assert_eq!(all[0]["method"], "GET", "{}", all[0]);
    assert_eq!(all[0]["path"], "/x", "{}", all[0]);
    assert_eq!(all[0]["authz"], "allowed", "{}", all[0]);
    // Its own 400 (no `Host`) says why, as hyper's does.
    assert_eq!(all[1]["authz"], "bad_request", "{}", all[1]);
    assert_eq!(all[2]["authz"], "bad_request", "{}", all[2]);
    assert_eq!(all[3]["authz"], "header_read_timeout", "{}", all[3]);
    let m = metrics_text(admin).await;
    assert!(
        m.contains("hotproxy_http_requests_total{listener=\"http\",upstream=\"\",code=\"308\"} 1"),
        "{m}"
    );
    // Every answer, the 308 and those to heads refused, timed as one.
    assert!(
        m.contains(
            "hotproxy_http_request_duration_seconds_count{listener=\"http\",upstream=\"\"} 4"
        ),
        "{m}"
    );
}

/// Two pairs for one name, ECDSA then RSA, as nginx serves two
/// `ssl_certificate` lines: each client gets the first pair it can verify.
/// A client offering only RSA signature schemes (old Java, embedded
/// stacks) gets the RSA pair, over TLS 1.3 and 1.2, and resumes its
/// session; a default client gets the ECDSA pair; a client that can verify
/// neither is refused as with one pair (`incompatible`). The name is
/// answered either way: no SNI miss is counted.
#[tokio::test]
async fn a_name_with_ecdsa_and_rsa_pairs_serves_each_client_one_it_can_verify() {
    use rustls::SignatureScheme as S;
    let w = world().await;
    let ecdsa = w.ca.server_pair(&["a.example.com"]);
    let rsa = w.ca.rsa_server_pair(&["a.example.com"], &[]);
    w.scene.pair("a", &ecdsa);
    w.scene.pair("a-rsa", &rsa);
    let path = config(&w, "", "");
    edit_config(&path, |text| {
        let first = "{ cert_file: a.crt, key_file: a.key }";
        let both = format!("{first}, {{ cert_file: a-rsa.crt, key_file: a-rsa.key }}");
        text.replacen(first, &both, 1)
    });
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    // The leaf served, after a request on the connection (which also
    // reads a TLS 1.3 session ticket), and how the handshake went.
    let served = |cfg: Arc<rustls::ClientConfig>| async move {
        let mut tls = connect(addr, "a.example.com", cfg).await?;
        let leaf = fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref());
        let kind = tls.get_ref().1.handshake_kind();
        tls.write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
            .await?;
        let reply = read_to_close(&mut tls).await;
        assert!(reply.starts_with(b"HTTP/1.1 200 "), "{reply:?}");
        std::io::Result::Ok((leaf, kind))
    };
    let default = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let (leaf, _) = served(default).await.unwrap();
    assert_eq!(
        leaf, ecdsa.fingerprint,
        "a default client gets the first pair"
    );
    let rsa_only = [
        S::RSA_PSS_SHA256,
        S::RSA_PSS_SHA384,
        S::RSA_PSS_SHA512,
        S::RSA_PKCS1_SHA256,
        S::RSA_PKCS1_SHA384,
        S::RSA_PKCS1_SHA512,
    ];
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = client_config_offering(&w.ca.cert_pem, &rsa_only, version, None);
        for kind in [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed] {
            let what = format!("an RSA-only {:?} client, {kind:?}", version.version);
            let got = served(cfg.clone()).await;
            let (leaf, got_kind) = got.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(leaf, rsa.fingerprint, "{what}: not the RSA pair");
            assert_eq!(got_kind, Some(kind), "{what}");
        }
    }
    let neither =
        client_config_offering(&w.ca.cert_pem, &[S::ED25519], &rustls::version::TLS13, None);
    assert!(connect(addr, "a.example.com", neither).await.is_err());
    let line = "hotproxy_tls_handshakes_total{listener=\"public\",result=\"incompatible\"} 1";
    wait_metric(admin, line, WAIT).await;
    let m = metrics_text(admin).await;
    assert!(!m.contains("hotproxy_tls_sni_default_total{"), "{m}");
}

/// A client that sends no SNI (one connecting to an IP address) gets the
/// default pair's names, and of the pairs answering them the first it can
/// verify, as nginx chooses among the default server's `ssl_certificate`
/// lines: an RSA-only client gets the RSA pair listed after the default
/// ECDSA one, over TLS 1.3 and 1.2, not an RSA pair for another name
/// listed before it; a default client gets the ECDSA pair. No SNI is no
/// SNI miss.
#[tokio::test]
async fn a_client_without_sni_gets_the_default_names_pair_it_can_verify() {
    use rustls::SignatureScheme as S;
    let w = world().await;
    let ecdsa = w.ca.server_pair(&["a.example.com"]);
    let other = w.ca.rsa_server_pair(&["b.example.com"], &[]);
    let rsa = w.ca.rsa_server_pair(&["a.example.com"], &[]);
    w.scene.pair("a", &ecdsa);
    w.scene.pair("b-rsa", &other);
    w.scene.pair("a-rsa", &rsa);
    let path = config(&w, "", "");
    edit_config(&path, |text| {
        let first = "{ cert_file: a.crt, key_file: a.key }";
        let all = format!(
            "{first}, {{ cert_file: b-rsa.crt, key_file: b-rsa.key }}, {{ cert_file: a-rsa.crt, key_file: a-rsa.key }}"
        );
        text.replacen(first, &all, 1)
    });
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("public").await;
    let admin = p.admin_addr().await;
    // The leaf served to a client sending no SNI, after a request on the
    // connection.
    let served = |cfg: Arc<rustls::ClientConfig>| async move {
        let mut tls = connect(addr, "a.example.com", without_sni(&cfg)).await?;
        let leaf = fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref());
        tls.write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
            .await?;
        let reply = read_to_close(&mut tls).await;
        assert!(reply.starts_with(b"HTTP/1.1 200 "), "{reply:?}");
        std::io::Result::Ok(leaf)
    };
    let default = client_config(&w.ca.cert_pem, None, &[b"http/1.1"]);
    let leaf = served(default).await.unwrap();
    assert_eq!(leaf, ecdsa.fingerprint, "a default client, no SNI");
    let rsa_only = [S::RSA_PSS_SHA256, S::RSA_PKCS1_SHA256];
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let what = format!("an RSA-only {:?} client without SNI", version.version);
        let cfg = client_config_offering(&w.ca.cert_pem, &rsa_only, version, None);
        let leaf = served(cfg).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            leaf, rsa.fingerprint,
            "{what}: not the default names' RSA pair"
        );
    }
    let m = metrics_text(admin).await;
    assert!(!m.contains("hotproxy_tls_sni_default_total{"), "{m}");
}

/// TLS 1.3 session tickets as OpenSSL (so nginx) sends them: two after a
/// full handshake, one after a resumed one. A client resuming holds one
/// ticket fewer and gets one back, so it resumes again, and again; a
/// ticket more would only cost the server a sealing and a record per
/// resumed connection.
#[tokio::test]
async fn a_resumed_handshake_gets_one_session_ticket_and_resumes_again() {
    use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
    use std::sync::atomic::AtomicUsize;

    /// A session store counting the TLS 1.3 tickets it is given.
    #[derive(Debug)]
    struct Counting(ClientSessionMemoryCache, AtomicUsize);
    impl ClientSessionStore for Counting {
        fn set_kx_hint(&self, n: rustls::pki_types::ServerName<'static>, g: rustls::NamedGroup) {
            self.0.set_kx_hint(n, g)
        }
        fn kx_hint(&self, n: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
            self.0.kx_hint(n)
        }
        fn set_tls12_session(
            &self,
            n: rustls::pki_types::ServerName<'static>,
            v: rustls::client::Tls12ClientSessionValue,
        ) {
            self.0.set_tls12_session(n, v)
        }
        fn tls12_session(
            &self,
            n: &rustls::pki_types::ServerName<'_>,
        ) -> Option<rustls::client::Tls12ClientSessionValue> {
            self.0.tls12_session(n)
        }
        fn remove_tls12_session(&self, n: &rustls::pki_types::ServerName<'static>) {
            self.0.remove_tls12_session(n)
        }
        fn insert_tls13_ticket(
            &self,
            n: rustls::pki_types::ServerName<'static>,
            v: rustls::client::Tls13ClientSessionValue,
        ) {
            self.1.fetch_add(1, SeqCst);
            self.0.insert_tls13_ticket(n, v)
        }
        fn take_tls13_ticket(
            &self,
            n: &rustls::pki_types::ServerName<'static>,
        ) -> Option<rustls::client::Tls13ClientSessionValue> {
            self.0.take_tls13_ticket(n)
        }
    }

    let (w, _p, addr) = serve("").await;
    let store = Arc::new(Counting(
        ClientSessionMemoryCache::new(16),
        AtomicUsize::new(0),
    ));
    let mut cfg = (*client_config(&w.ca.cert_pem, None, &[b"http/1.1"])).clone();
    cfg.resumption = Resumption::store(store.clone());
    let cfg = Arc::new(cfg);
    let mut got = Vec::new();
    for _ in 0..4 {
        let before = store.1.load(SeqCst);
        let mut tls = connect(addr, "a.example.com", cfg.clone()).await.unwrap();
        let kind = tls.get_ref().1.handshake_kind().unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        // Read to the close: the tickets come before the response.
        let reply = read_to_close(&mut tls).await;
        assert!(reply.starts_with(b"HTTP/1.1 200 "), "{reply:?}");
        got.push((kind, store.1.load(SeqCst) - before));
    }
    use rustls::HandshakeKind::{Full, Resumed};
    assert_eq!(
        got,
        [(Full, 2), (Resumed, 1), (Resumed, 1), (Resumed, 1)],
        "(handshake, tickets received) per connection"
    );
}
