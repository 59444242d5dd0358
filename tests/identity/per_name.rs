//! Client auth per certificate entry, chosen by SNI, with 421 and one snapshot across a reload.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::support::*;

/// The world with two more pairs of the edge CA: `public` (public.example,
/// localhost) and `admin` (admin.example).
async fn mixed_world() -> World {
    let w = world().await;
    w.scene.pair(
        "public",
        &w.edge_ca.server_pair(&["public.example", "localhost"]),
    );
    w.scene
        .pair("admin", &w.edge_ca.server_pair(&["admin.example"]));
    w
}

/// The top of the listeners' configurations here: one worker thread, the
/// admin API, the partners' CA as an entry; `listeners:` follow.
const PARTNERS_HEAD: &str = "runtime: { worker_threads: 1 }
admin: { bind: 127.0.0.1:0 }
certs:
  - { id: partners-ca, type: ca-bundle, ca_file: partners-ca.crt }
listeners:
";

/// `upstreams:` with `app`, the world's backend.
fn app_upstream(w: &World) -> String {
    format!(
        "upstreams:\n  - name: app\n    servers: [https://{}]\n    \
         tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}\n",
        w.backend.addr
    )
}

/// A config with one listener `mixed` serving `public`, then `admin` with
/// `admin_auth` under its entry, and `listener_auth` as its client_auth.
fn mixed(w: &World, admin_auth: &str, listener_auth: &str) -> String {
    format!(
        r#"
{PARTNERS_HEAD}  - name: mixed
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ cert_file: public.crt, key_file: public.key }}
        - cert_file: admin.crt
          key_file: admin.key
{admin_auth}
      client_auth: {listener_auth}
    routes: [{{ upstream: app }}]
{app}"#,
        app = app_upstream(w)
    )
}

/// An `admin_auth` for [`mixed`]: a verified client certificate of CN ops.
const ALLOW_OPS: &str = "          client_auth:
            mode: require_and_verify
            ca: { ref: partners-ca }
            allow: [{ cn: ops }]";

/// An `admin_auth` for [`mixed`]: a verified client certificate.
const VERIFY_PARTNERS: &str =
    "          client_auth: { mode: require_and_verify, ca: { ref: partners-ca } }";

/// What a client without a certificate gets where one is required.
const CERT_REQUIRED: Outcome = Outcome::Refused(rustls::Error::AlertReceived(
    rustls::AlertDescription::CertificateRequired,
));

/// Client auth per certificate entry (crt-list style): the policy is chosen
/// by SNI; a `Host` belonging to another entry than the SNI selected gets
/// 421; a client without SNI gets the default (first) entry's policy.
#[tokio::test]
async fn per_name_client_auth_and_421() {
    let w = mixed_world().await;
    let path = w.scene.config(&mixed(&w, ALLOW_OPS, "{ mode: none }"));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("mixed").await;
    let anon = cfg_for(&w, None);
    let ops = cfg_for(&w, Some(&w.pki.client("ops", None, &[])));
    let intern = cfg_for(&w, Some(&w.pki.client("intern", None, &[])));
    let (ok, misdirected) = (Outcome::Status(200), Outcome::Status(421));
    // One case a line: what, SNI, Host, client, outcome.
    #[rustfmt::skip]
    let cases = [
        ("public, no cert", "public.example", "public.example", &anon, &ok),
        ("public SNI, admin Host", "public.example", "admin.example", &anon, &misdirected),
        ("public SNI, admin Host with a port", "public.example", "ADMIN.example:443", &ops, &misdirected),
        ("admin with an allowed cert", "admin.example", "admin.example", &ops, &ok),
        ("admin SNI, public Host", "admin.example", "public.example", &ops, &misdirected),
        ("admin with a cert no rule allows", "admin.example", "admin.example", &intern, &DENIED),
        ("admin without a cert", "admin.example", "admin.example", &anon, &CERT_REQUIRED),
    ];
    for (what, sni, host, cfg, want) in cases {
        assert_eq!(
            &outcome_for(addr, sni, host, (*cfg).clone(), "/").await,
            want,
            "{what}"
        );
    }
    // What the backend is told follows the entry: the admin entry verifies.
    let r = get(addr, "admin.example", ops.clone(), false, "/", &[])
        .await
        .unwrap();
    assert_eq!(r.json()["headers"]["x-client-cert-subject"], "CN=ops");
    let r = get(addr, "public.example", ops, false, "/", &[])
        .await
        .unwrap();
    assert!(r.json()["headers"].get("x-client-cert-subject").is_none());
    // No SNI: the default entry's policy (no client auth), its names only.
    let no_sni = without_sni(&anon);
    for (host, want) in [("public.example", ok), ("admin.example", misdirected)] {
        let got = outcome_for(addr, "public.example", host, no_sni.clone(), "/").await;
        assert_eq!(got, want, "no SNI, {host} Host");
    }
}

/// An SNI with a final `.` (`admin.example.`, as a client sends for a
/// fully qualified name: rustls clients drop it, OpenSSL's and others do
/// not) selects the entry of the name without it: its certificate and its
/// client auth, and it is no SNI miss. rustls keeps the dot of a received
/// SNI, so `admin.example.` matched no entry: the default pair was served
/// under the default entry's client auth (none), and it was counted in
/// `hotproxy_tls_sni_default_total`. SPEC §2 compares server names as SNI
/// is: case and a final `.` do not matter.
#[tokio::test]
async fn an_sni_with_a_final_dot_selects_its_names_entry() {
    let w = world().await;
    let public = w.edge_ca.server_pair(&["public.example"]);
    let admin = w.edge_ca.server_pair(&["admin.example", "*.ops.example"]);
    w.scene.pair("public", &public);
    w.scene.pair("admin", &admin);
    let path = w
        .scene
        .config(&mixed(&w, VERIFY_PARTNERS, "{ mode: none }"));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("mixed").await;
    let admin_addr = p.admin_addr().await;
    let (to_admin, to_public) = (
        (admin.fingerprint.as_str(), true),
        (public.fingerprint.as_str(), false),
    );
    for (sni, want) in [
        ("admin.example", to_admin),
        ("admin.example.", to_admin),
        ("Admin.Example.", to_admin),
        ("x.ops.example.", to_admin),
        ("public.example.", to_public),
        ("nobody.example.", to_public),
    ] {
        let got = tls12_server_flight(addr, sni).await;
        assert_eq!((got.0.as_str(), got.1), want, "SNI {sni:?}");
    }
    // Only the name no entry answers went to the default pair.
    let line = r#"hotproxy_tls_sni_default_total{listener="mixed"} 1"#;
    let metrics = metrics_text(admin_addr).await;
    let counted: Vec<&str> = (metrics.lines())
        .filter(|l| l.starts_with("hotproxy_tls_sni_default_total{"))
        .collect();
    assert_eq!(counted, [line]);
}

/// The server's first flight to a TLS 1.2 ClientHello carrying `sni` as
/// given (a rustls client drops a final `.`), read in the clear: the
/// fingerprint of the leaf it serves, and whether it asks for a client
/// certificate (a CertificateRequest).
async fn tls12_server_flight(addr: std::net::SocketAddr, sni: &str) -> (String, bool) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&tls12_client_hello(sni)).await.unwrap();
    let read = async {
        let (mut handshake, mut leaf, mut asks) = (Vec::new(), None, false);
        loop {
            let mut head = [0u8; 5];
            tcp.read_exact(&mut head).await.unwrap();
            let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[3], head[4]]))];
            tcp.read_exact(&mut body).await.unwrap();
            assert_eq!(head[0], 22, "SNI {sni:?}: not a handshake record: {body:?}");
            handshake.extend_from_slice(&body);
            while handshake.len() >= 4 {
                let len = usize::from(handshake[1]) << 16
                    | usize::from(handshake[2]) << 8
                    | usize::from(handshake[3]);
                if handshake.len() < 4 + len {
                    break;
                }
                let msg: Vec<u8> = handshake.drain(..4 + len).collect();
                match msg[0] {
                    // Certificate: a 3-byte list length, then the leaf's.
                    11 => {
                        let n = usize::from(msg[7]) << 16
                            | usize::from(msg[8]) << 8
                            | usize::from(msg[9]);
                        leaf = Some(fingerprint(&msg[10..10 + n]));
                    }
                    13 => asks = true,
                    // ServerHelloDone: the end of the server's flight.
                    14 => return (leaf.expect("a Certificate message"), asks),
                    _ => {}
                }
            }
        }
    };
    within_deadline(format!("the server's flight for SNI {sni:?}"), read).await
}

/// A TLS 1.2 ClientHello naming `sni` byte for byte: ECDHE suites,
/// x25519 and P-256, ECDSA and RSA signatures, extended master secret.
fn tls12_client_hello(sni: &str) -> Vec<u8> {
    fn with_len(len_bytes: usize, body: &[u8]) -> Vec<u8> {
        let mut out = body.len().to_be_bytes()[8 - len_bytes..].to_vec();
        out.extend_from_slice(body);
        out
    }
    let ext = |kind: u16, data: &[u8]| [&kind.to_be_bytes()[..], &with_len(2, data)].concat();
    let name = [&[0u8][..], &with_len(2, sni.as_bytes())].concat();
    let extensions = [
        ext(0x0000, &with_len(2, &name)),
        ext(0x000a, &with_len(2, &[0x00, 0x1d, 0x00, 0x17])),
        ext(0x000b, &[1, 0]),
        ext(0x000d, &with_len(2, &[0x04, 0x03, 0x08, 0x04, 0x04, 0x01])),
        ext(0x0017, &[]),
        ext(0xff01, &[0]),
    ]
    .concat();
    let suites = [
        0xc0, 0x2b, 0xc0, 0x2c, 0xcc, 0xa9, 0xc0, 0x2f, 0xc0, 0x30, 0xcc, 0xa8,
    ];
    let hello = [
        &[0x03, 0x03][..],
        &[7u8; 32],
        &[0],
        &with_len(2, &suites),
        &[1, 0],
        &with_len(2, &extensions),
    ]
    .concat();
    let handshake = [&[1u8][..], &with_len(3, &hello)].concat();
    [&[22u8, 0x03, 0x01][..], &with_len(2, &handshake)].concat()
}

/// A connection accepted before a reload and shaking hands after it gets
/// the new configuration as a whole: here the admin entry's own
/// `require_and_verify` became listener-wide, so a client without a
/// certificate is refused. Read in two steps, the old listener-wide config
/// (no client auth) met the new `per_name` (none) and served the admin
/// certificate to anyone.
#[tokio::test]
async fn reload_between_accept_and_client_hello_is_one_snapshot() {
    let w = mixed_world().await;
    let path = w
        .scene
        .config(&mixed(&w, VERIFY_PARTNERS, "{ mode: none }"));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("mixed").await;
    // Accepted now; the ClientHello follows the reload.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    w.scene.config(&mixed(
        &w,
        "",
        "{ mode: require_and_verify, ca: { ref: partners-ca } }",
    ));
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    let name = rustls::pki_types::ServerName::try_from("admin.example").unwrap();
    let got = async {
        let mut tls = tokio_rustls::TlsConnector::from(cfg_for(&w, None))
            .connect(name, tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nhost: admin.example\r\nconnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match within_deadline("the held connection's request", got).await {
        Ok(text) => panic!("served without a client certificate: {text:?}"),
        Err(e) => assert_eq!(Outcome::Refused(tls_error(&e)), CERT_REQUIRED),
    }
}

/// A `Host` or `:authority` with an empty label (`.public.example`, `.`)
/// names no host: 400 before routing, on HTTP/1.1 and HTTP/2. The entry
/// lookup read `.public.example` as one label under `*.public.example`, so
/// no 421, while the router's wildcard wants a non-empty label and sent
/// the request to the host-less route: a client without a certificate on
/// the public name reached the internal upstream, whose entry requires one.
#[tokio::test]
async fn a_host_with_an_empty_label_is_refused() {
    let w = world().await;
    w.scene
        .pair("internal", &w.edge_ca.server_pair(&["internal.example"]));
    w.scene
        .pair("public", &w.edge_ca.server_pair(&["*.public.example"]));
    let pub_ca = TestCa::new("public backend CA");
    write(&w.scene.path("pub-ca.crt"), &pub_ca.cert_pem);
    let public = Backend::start("pub", &pub_ca.server_pair(&["backend.local"]), None).await;
    let path = w.scene.config(&format!(
        r#"
{PARTNERS_HEAD}  - name: mixed
    bind: 127.0.0.1:0
    tls:
      certs:
        - cert_file: internal.crt
          key_file: internal.key
          client_auth: {{ mode: require_and_verify, ca: {{ ref: partners-ca }} }}
        - cert_file: public.crt
          key_file: public.key
          client_auth: {{ mode: none }}
      client_auth: {{ mode: none }}
    routes:
      - {{ host: "*.public.example", upstream: pub }}
      - {{ upstream: internal }}
upstreams:
  - name: internal
    servers: [https://{internal}]
    tls: {{ ca: {{ ca_file: backend-ca.crt }}, server_name: backend.local }}
  - name: pub
    servers: [https://{public}]
    tls: {{ ca: {{ ca_file: pub-ca.crt }}, server_name: backend.local }}
"#,
        internal = w.backend.addr,
        public = public.addr,
    ));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("mixed").await;
    for h2 in [false, true] {
        for (host, status, backend) in [
            ("www.public.example", 200, Some("pub")),
            ("internal.example", 421, None),
            (".public.example", 400, None),
            (".public.example.", 400, None),
            (".public.example:443", 400, None),
            (".", 400, None),
        ] {
            let (got, body) = exchange(&w, addr, "www.public.example", host, h2).await;
            let what = format!("h2 {h2}, host {host:?}: {body}");
            assert_eq!(got, status, "{what}");
            if let Some(backend) = backend {
                let seen: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(seen["backend"], backend, "{what}");
            }
        }
    }
    // The internal upstream was never reached.
    assert_eq!(
        w.backend.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// `GET /` for `host` (in `Host` on HTTP/1.1, `:authority` on HTTP/2) on a
/// fresh connection made to `sni` without a client certificate: the
/// status and the body.
async fn exchange(
    w: &World,
    addr: std::net::SocketAddr,
    sni: &str,
    host: &str,
    h2: bool,
) -> (u16, String) {
    use http_body_util::BodyExt;
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let tls = connect(addr, sni, client_config(&w.edge_ca.cert_pem, None, &[alpn]))
        .await
        .unwrap();
    let io = hyper_util::rt::TokioIo::new(tls);
    let req = if h2 {
        http::Request::get(format!("https://{host}/"))
    } else {
        http::Request::get("/").header("host", host)
    }
    .body(http_body_util::Empty::<bytes::Bytes>::new())
    .unwrap();
    let resp = within_deadline(format!("GET / for {host:?}"), async {
        if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        }
    })
    .await;
    let status = resp.status().as_u16();
    let body = within_deadline("the body", resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Two entries for one name, ECDSA then RSA, under the same `client_auth`:
/// a client offering only RSA signature schemes is served the RSA entry's
/// certificate, under that `client_auth` (refused without a certificate),
/// and XFCC's `By` names the certificate each client was served, with SNI
/// or without (the default entry's names, then the same choice). Two such
/// entries with different `client_auth` are still refused: which of them
/// a client gets depends on what it can verify, not on its name.
#[tokio::test]
async fn ecdsa_and_rsa_entries_for_one_name_share_its_client_auth() {
    use rustls::SignatureScheme as S;
    let w = world().await;
    let ecdsa = w
        .edge_ca
        .server_pair_with_uris(&["localhost"], &["spiffe://edge/ecdsa"]);
    w.scene.pair("ec", &ecdsa);
    let rsa = w
        .edge_ca
        .rsa_server_pair(&["localhost"], &["spiffe://edge/rsa"]);
    w.scene.pair("rsa", &rsa);
    let verify = "{ mode: require_and_verify, ca: { ref: partners-ca } }";
    let dual = |rsa_auth: &str| {
        format!(
            r#"
{PARTNERS_HEAD}  - name: dual
    bind: 127.0.0.1:0
    forward_client_cert: xfcc
    tls:
      certs:
        - {{ cert_file: ec.crt, key_file: ec.key, client_auth: {verify} }}
        - {{ cert_file: rsa.crt, key_file: rsa.key, client_auth: {rsa_auth} }}
      client_auth: {{ mode: none }}
    routes: [{{ upstream: app }}]
{app}"#,
            app = app_upstream(&w)
        )
    };
    let path = w.scene.config(&dual(verify));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("dual").await;
    let ops = w.pki.client("ops", None, &[]);
    let rsa_only = [S::RSA_PSS_SHA256, S::RSA_PKCS1_SHA256];
    let tls13 = &rustls::version::TLS13;
    let rsa_client = |c| client_config_offering(&w.edge_ca.cert_pem, &rsa_only, tls13, c);
    for (who, cfg, by) in [
        (
            "a default client",
            cfg_for(&w, Some(&ops)),
            "spiffe://edge/ecdsa",
        ),
        (
            "an RSA-only client",
            rsa_client(Some(&ops.pair)),
            "spiffe://edge/rsa",
        ),
        (
            "an RSA-only client without SNI",
            without_sni(&rsa_client(Some(&ops.pair))),
            "spiffe://edge/rsa",
        ),
    ] {
        let h = seen(addr, cfg, "/", &[]).await;
        let xfcc = h["x-forwarded-client-cert"].as_str().unwrap();
        let by_part = xfcc.split(";Hash=").next();
        assert_eq!(by_part, Some(&*format!("By={by}")), "{who}");
    }
    assert_eq!(
        outcome(addr, rsa_client(None), "/").await,
        CERT_REQUIRED,
        "the RSA entry's client_auth applies"
    );
    assert_eq!(
        outcome(addr, without_sni(&rsa_client(None)), "/").await,
        CERT_REQUIRED,
        "without SNI too"
    );
    drop(p);
    let path = w.scene.config(&dual("{ mode: none }"));
    let (code, out, err) = run_cli(&["check", "--config", path.to_str().unwrap()]);
    let text = format!("{out}{err}");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("answers \"localhost\", which tls.certs[0] (entry"),
        "{text}"
    );
}

/// A refused handshake's access-log line names the SNI the ClientHello
/// asked for: with client auth per entry, that is which entry's policy
/// refused the client. It was `null` for every refusal. Here: a client no
/// rule of `admin.example` allows, one refusing the certificate it was
/// served for `public.example`, and one that sent its ClientHello for
/// `public.example` on the listener `slow` and nothing more until
/// `header_read_timeout`. A connection refused before any ClientHello
/// (plain HTTP) still has none.
#[tokio::test]
async fn a_refused_handshake_is_logged_with_its_sni() {
    let w = mixed_world().await;
    let intern = w.pki.client("intern", None, &[]);
    let (log, extra) = json_access_log(&w);
    let slow = "  - name: slow
    bind: 127.0.0.1:0
    limits: { header_read_timeout: 1s }
    tls:
      certs: [{ cert_file: public.crt, key_file: public.key }]
    routes: [{ upstream: app }]
upstreams:";
    let text = mixed(&w, ALLOW_OPS, "{ mode: none }")
        .replacen("certs:\n", &format!("{extra}\ncerts:\n"), 1)
        .replace("upstreams:", slow);
    let mut p = Proxy::start(&w.scene.config(&text));
    let addr = p.listener_addr("mixed").await;
    let slow_addr = p.listener_addr("slow").await;
    let intern_cfg = cfg_for(&w, Some(&intern));
    let refused = outcome_for(addr, "admin.example", "admin.example", intern_cfg, "/").await;
    assert_eq!(refused, DENIED);
    let distrustful = client_config(&w.pki.root_pem, None, &[b"http/1.1"]);
    assert!(connect(addr, "public.example", distrustful).await.is_err());
    // A ClientHello alone, then silence: the proxy closes at the timeout.
    let mut hello = Vec::new();
    let name = rustls::pki_types::ServerName::try_from("public.example").unwrap();
    rustls::ClientConnection::new(cfg_for(&w, None), name)
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    let mut stalled = tokio::net::TcpStream::connect(slow_addr).await.unwrap();
    stalled.write_all(&hello).await.unwrap();
    let mut rest = Vec::new();
    within_deadline(
        "the stalled handshake's close",
        stalled.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    within_deadline("the plain request's answer", plain.read_to_end(&mut rest))
        .await
        .unwrap();
    let lines = wait_access_log(&log, 4, CLIENT_DEADLINE).await;
    let sni = |authz: &str| {
        let line = lines
            .iter()
            .find(|l| l["authz"] == authz)
            .unwrap_or_else(|| panic!("no {authz} line: {lines:?}"));
        line["sni"].clone()
    };
    assert_eq!(sni("not_allowed"), "admin.example", "{lines:?}");
    assert_eq!(sni("client_refused_cert"), "public.example", "{lines:?}");
    assert_eq!(sni("timeout"), "public.example", "{lines:?}");
    assert_eq!(sni("plain_http"), serde_json::Value::Null, "{lines:?}");
}

/// The world with three more pairs of the edge CA: `wild`
/// (`*.example.com`), `api` (api.example.com), `adm` (admin.example.com).
async fn three_world() -> World {
    let w = world().await;
    for (id, name) in [
        ("wild", "*.example.com"),
        ("api", "api.example.com"),
        ("adm", "admin.example.com"),
    ] {
        w.scene.pair(id, &w.edge_ca.server_pair(&[name]));
    }
    w
}

/// A listener `three` of [`three_world`]'s pairs: `*.example.com` under
/// the listener's `client_auth` (`listener_auth`), `api.example.com` under
/// the listener's too or its own (`api_auth`: `, client_auth: …`),
/// `admin.example.com` under its own [`VERIFY`].
fn three_entries(w: &World, api_auth: &str, listener_auth: &str) -> String {
    format!(
        r#"
{PARTNERS_HEAD}  - name: three
    bind: 127.0.0.1:0
    tls:
      certs:
        - {{ cert_file: wild.crt, key_file: wild.key }}
        - {{ cert_file: api.crt, key_file: api.key{api_auth} }}
        - {{ cert_file: adm.crt, key_file: adm.key, client_auth: {VERIFY} }}
      client_auth: {listener_auth}
    routes: [{{ upstream: app }}]
{app}"#,
        app = app_upstream(w)
    )
}

/// The admin entry's `client_auth` in [`three_entries`].
const VERIFY: &str = "{ mode: require_and_verify, ca: { ref: partners-ca } }";

/// A request whose host belongs to another entry with the same
/// `client_auth` as the connection's is served, as nginx serves it: a
/// client without SNI (a front with `proxy_ssl_server_name off`, a health
/// check by address) asking for `api.example.com`, or an HTTP/2 browser
/// coalescing `api.example.com` onto its `www.example.com` connection (the
/// wildcard certificate covers it). Both got 421 on every request: the
/// entries' positions were compared, not their policies. A host of an
/// entry with another `client_auth` still gets 421, both ways.
#[tokio::test]
async fn a_host_of_an_entry_with_the_same_client_auth_is_served() {
    let w = three_world().await;
    let path = w.scene.config(&three_entries(&w, "", "{ mode: none }"));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("three").await;
    for h2 in [false, true] {
        for (sni, host, status) in [
            ("www.example.com", "api.example.com", 200),
            ("api.example.com", "www.example.com", 200),
            ("api.example.com", "nobody.example.org", 200),
            ("www.example.com", "admin.example.com", 421),
            ("api.example.com", "admin.example.com:443", 421),
        ] {
            let (got, body) = exchange(&w, addr, sni, host, h2).await;
            assert_eq!(got, status, "h2 {h2}, SNI {sni}, host {host}: {body}");
        }
    }
    let no_sni = without_sni(&cfg_for(&w, None));
    let ops = cfg_for(&w, Some(&w.pki.client("ops", None, &[])));
    let (ok, misdirected) = (Outcome::Status(200), Outcome::Status(421));
    // One case a line: what, SNI (to verify the served name by), Host,
    // client, outcome.
    #[rustfmt::skip]
    let cases = [
        ("no SNI, api Host", "www.example.com", "api.example.com", &no_sni, &ok),
        ("no SNI, admin Host", "www.example.com", "admin.example.com", &no_sni, &misdirected),
        ("admin SNI, api Host", "admin.example.com", "api.example.com", &ops, &misdirected),
        ("admin SNI, wildcard Host", "admin.example.com", "www.example.com", &ops, &misdirected),
        ("admin", "admin.example.com", "admin.example.com", &ops, &ok),
    ];
    for (what, sni, host, cfg, want) in cases {
        let got = outcome_for(addr, sni, host, (*cfg).clone(), "/").await;
        assert_eq!(&got, want, "{what}");
    }
}

/// Which entries share a `client_auth` is read in the rules in force too:
/// a connection kept across a reload that gave the host's entry another
/// `client_auth` than the connection's entry gets 421 for that host. Here
/// `api.example.com` has its own `client_auth`, the listener's (which
/// `*.example.com` takes) at first; a reload lets only CN admins in under
/// the listener's, and an `ops` connection to `api.example.com`, kept (its
/// entry still admits it), no longer reaches `www.example.com`.
#[tokio::test]
async fn a_reload_that_parts_two_entries_client_auth_gives_421() {
    let w = three_world().await;
    let allow = |cn: &str| {
        format!(
            "{{ mode: require_and_verify, ca: {{ ref: partners-ca }}, allow: [{{ cn: {cn} }}] }}"
        )
    };
    let api_auth = format!(", client_auth: {}", allow("ops"));
    let path = w.scene.config(&three_entries(&w, &api_auth, &allow("ops")));
    let mut p = Proxy::start(&path);
    let addr = p.listener_addr("three").await;
    let ops = w.pki.client("ops", None, &[]);
    let tls = connect(addr, "api.example.com", cfg_for(&w, Some(&ops)))
        .await
        .unwrap();
    let (mut send, conn) = keep_open_h1(tls).await;
    assert_eq!(
        status_on(&mut send, "www.example.com").await,
        200,
        "same client_auth"
    );
    w.scene
        .config(&three_entries(&w, &api_auth, &allow("admins")));
    p.signal("HUP");
    p.wait_log("the reload", |v| v["message"] == "configuration reloaded")
        .await;
    assert_eq!(
        status_on(&mut send, "www.example.com").await,
        421,
        "after the reload"
    );
    assert_eq!(
        status_on(&mut send, "api.example.com").await,
        200,
        "its own entry"
    );
    assert!(!conn.is_finished(), "the connection was kept");
}

/// The status of `GET /` for `host` on the kept-open connection `send`.
async fn status_on(
    send: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    host: &str,
) -> u16 {
    let resp = within_deadline(format!("GET / for {host}"), send.send_request(get_to(host)));
    resp.await.unwrap().status().as_u16()
}
