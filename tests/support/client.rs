//! Real clients: TLS handshakes, one GET over h1 or h2, and plain HTTP/1.1 to the admin listener.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::ServerName;

use super::pki::{certs, key};
use super::{Proxy, TestPair, fingerprint, wait_until, within_deadline};

/// A TLS client configuration trusting `ca_pem`, optionally presenting `client`.
pub fn client_config(
    ca_pem: &str,
    client: Option<&TestPair>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder().with_root_certificates(roots(ca_pem));
    finish(b, client, alpn)
}

/// A client trusting `ca_pem` that offers only `schemes` in its
/// `signature_algorithms` (rustls offers what its certificate verifier
/// supports), over TLS `version` alone, presenting `client` if given: an
/// RSA-only client, as old Java or embedded ones are.
pub fn client_config_offering(
    ca_pem: &str,
    schemes: &[rustls::SignatureScheme],
    version: &'static rustls::SupportedProtocolVersion,
    client: Option<&TestPair>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)),
        provider.clone(),
    )
    .build()
    .unwrap();
    let verifier = Verifier {
        webpki: Some(webpki),
        algorithms: provider.signature_verification_algorithms,
        schemes: schemes.to_vec(),
    };
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    finish(b, client, &[b"http/1.1"])
}

/// `cfg` sending no SNI (as a client connecting to an IP address does):
/// it still checks the certificate for the name it connects with.
pub fn without_sni(cfg: &rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut cfg = cfg.clone();
    cfg.enable_sni = false;
    Arc::new(cfg)
}

/// The roots of a client trusting the certificates of `ca_pem`.
fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem) {
        roots.add(c).unwrap();
    }
    roots
}

/// The configuration `b` builds, presenting `client` if given, offering `alpn`.
fn finish(
    b: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    client: Option<&TestPair>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut cfg = match client {
        Some(p) => b
            .with_client_auth_cert(certs(&p.cert_pem), key(&p.key_pem))
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A test client's own server certificate verifier, offering (so
/// supporting) only `schemes`: WebPKI's verification (`webpki`), or none
/// at all, a client that completes the handshake whatever certificate it
/// gets and judges the name afterwards, as curl (OpenSSL) does (or never,
/// as an attacker does). Handshake signatures are checked either way.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    schemes: Vec<rustls::SignatureScheme>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match &self.webpki {
            Some(webpki) => {
                webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            }
            None => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.clone()
    }
}

/// A client that accepts any server certificate (HTTP/1.1, no client certificate).
pub fn checks_name_later() -> Arc<rustls::ClientConfig> {
    checks_name_later_with(rustls::crypto::aws_lc_rs::default_provider(), None)
}

/// [`checks_name_later`] with `provider`, presenting `client` if given.
pub fn checks_name_later_with(
    provider: rustls::crypto::CryptoProvider,
    client: Option<&TestPair>,
) -> Arc<rustls::ClientConfig> {
    let algorithms = provider.signature_verification_algorithms;
    let verifier = Verifier {
        webpki: None,
        algorithms,
        schemes: algorithms.supported_schemes(),
    };
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    finish(b, client, &[b"http/1.1"])
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Handshake with `addr` sending `sni` (panics if the TCP connect and
/// handshake take longer than `CLIENT_DEADLINE`).
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    within_deadline(format!("TLS handshake with {addr} (SNI {sni})"), async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
    })
    .await
}

/// Fingerprint of the leaf the server presented for `sni`.
pub async fn served_leaf(addr: SocketAddr, sni: &str, ca_pem: &str) -> std::io::Result<String> {
    let tls = connect(addr, sni, client_config(ca_pem, None, &[b"http/1.1"])).await?;
    Ok(fingerprint(
        tls.get_ref().1.peer_certificates().unwrap()[0].as_ref(),
    ))
}

/// An HTTP/1.1 connection kept open over `tls`: its sender and the task
/// driving it, which ends when the proxy closes the connection.
pub async fn keep_open_h1(
    tls: Tls,
) -> (
    hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let what = format!("HTTP/1.1 handshake with {}", peer(&tls));
    let (send, conn) = within_deadline(
        what,
        hyper::client::conn::http1::handshake(TokioIo::new(tls)),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

/// `GET /` with `Host: localhost`, to send again on a kept-open connection.
pub fn get_localhost() -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap()
}

/// What a client saw for one request.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub leaf: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

/// `GET /` over HTTP/1.1 on a fresh TLS connection, no client certificate.
pub async fn get_h1(addr: SocketAddr, sni: &str, ca_pem: &str) -> std::io::Result<Reply> {
    let cfg = client_config(ca_pem, None, &[b"http/1.1"]);
    get(addr, sni, cfg, false, "/", &[]).await
}

/// One GET over a fresh TLS connection (h2 if `h2`), with extra headers
/// (panics if the whole exchange takes longer than `CLIENT_DEADLINE`).
pub async fn get(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
    h2: bool,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let version = if h2 { "HTTP/2" } else { "HTTP/1.1" };
    within_deadline(
        format!("{version} GET {path} to {addr} (SNI {sni})"),
        async move {
            let tls = connect(addr, sni, cfg).await?;
            let leaf = fingerprint(tls.get_ref().1.peer_certificates().unwrap()[0].as_ref());
            let io = TokioIo::new(tls);
            let mut req = http::Request::builder().uri(format!("https://{sni}{path}"));
            if !h2 {
                req = req.uri(path).header("host", sni);
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(Empty::<Bytes>::new()).unwrap();
            let to_io = |e: hyper::Error| std::io::Error::other(e);
            let resp = if h2 {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(to_io)?;
                tokio::spawn(conn);
                send.send_request(req).await.map_err(to_io)?
            } else {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(to_io)?;
                tokio::spawn(conn);
                send.send_request(req).await.map_err(to_io)?
            };
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(to_io)?.to_bytes();
            Ok(Reply {
                status,
                body: String::from_utf8_lossy(&body).into(),
                leaf,
            })
        },
    )
    .await
}

/// One admin API answer.
pub struct AdminReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl AdminReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("admin reply is not JSON ({e}): {}", self.body))
    }
}

/// A plain HTTP/1.1 request to the admin listener. `headers` may override
/// `Host`; `token` becomes `Authorization: Bearer`. Panics if the exchange
/// takes longer than `CLIENT_DEADLINE`.
pub async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
    headers: &[(&str, &str)],
) -> AdminReply {
    within_deadline(format!("admin {method} {path} to {addr}"), async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req = req.header("host", addr.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = send.send_request(req.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        AdminReply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into(),
        }
    })
    .await
}

/// The `/metrics` text from the admin listener.
pub async fn metrics_text(addr: SocketAddr) -> String {
    admin(addr, "GET", "/metrics", None, None, &[]).await.body
}

/// Wait, at most `timeout`, until the admin listener at `addr` exposes
/// exactly the metrics line `line` (a counter or gauge with its value).
pub async fn wait_metric(addr: SocketAddr, line: &str, timeout: std::time::Duration) {
    super::wait_until(timeout, &format!("the metrics line {line}"), || async {
        metrics_text(addr).await.lines().any(|l| l == line)
    })
    .await;
}

/// Everything the server sends until it closes (bounded by 20 s; a
/// reset after data counts as the close).
pub async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(s, &mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for 20 s; received {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// After the server's end of stream on `tcp` (the raw socket under a TLS
/// stream too), whether the server closed its socket fully rather than
/// lingering on it (reading and discarding what the client still sends,
/// src/proxy/linger.rs). Written here: the start of a TLS record (a
/// lingering TLS reader waits for its rest, a plain one discards it).
/// A socket closed with those bytes unread, or closed before they come,
/// answers them with a reset; a lingering one reads them. The kernel may
/// acknowledge them first either way (they can land between the
/// server's FIN and its close), so an acknowledgement alone says
/// nothing: awaited, within `wait`, until either the socket's error (a
/// reset) or the server's own socket shows them read while its process
/// still holds it (`/proc/net/tcp`: receive queue empty, an inode). No
/// timing between the two: a server that does not read them keeps them
/// queued until its close resets them.
pub async fn closed_fully(tcp: &tokio::net::TcpStream, wait: std::time::Duration) -> bool {
    use std::os::fd::AsRawFd;
    // A reset already (the server closed with bytes of ours unread).
    if tcp.take_error().unwrap().is_some() {
        return true;
    }
    let (server, client) = (tcp.peer_addr().unwrap(), tcp.local_addr().unwrap());
    match tcp.try_write(&[0x17, 0x03, 0x03, 0x00, 0x20]) {
        Ok(5) => {}
        Ok(n) => panic!("wrote {n} of 5 bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => panic!("a full send buffer"),
        Err(_) => return true,
    }
    let fd = tcp.as_raw_fd();
    let mut reset = false;
    wait_until(
        wait,
        "the bytes written after the end read by the server or reset",
        || {
            // SIOCOUTQ: bytes not yet acknowledged (a reset may leave them counted).
            let mut queued: libc::c_int = 0;
            let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
            reset = tcp.take_error().unwrap().is_some() || rc != 0;
            let read = !reset && queued == 0 && read_by_its_process(server, client);
            let done = reset || read;
            async move { done }
        },
    )
    .await;
    reset
}

/// Whether the TCP socket from `local` to `remote` (IPv4) has nothing in
/// its receive queue and is still held by a process (a closed one is
/// orphaned, inode 0, or gone): Linux's `/proc/net/tcp`, where the
/// kernel prints an address as the native-endian u32 of its
/// network-order bytes, then the port.
fn read_by_its_process(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> bool {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => {
            format!(
                "{:08X}:{:04X}",
                u32::from_ne_bytes(v4.ip().octets()),
                v4.port()
            )
        }
        _ => panic!("/proc/net/tcp is IPv4 only: {a}"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 9
            && f[1] == local
            && f[2] == remote
            && f[4].split_once(':').is_some_and(|(_, rx)| rx == "00000000")
            && f[9] != "0"
    })
}

/// The `GOAWAY` among the HTTP/2 frames `bytes` hold (whole frames from
/// a frame's start; a part frame at the end is left): its last stream id
/// and error code, or `None` when there is none.
pub fn h2_goaway(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let payload = bytes.get(at + 9..at + 9 + len)?;
        if bytes[at + 3] == 7 && len >= 8 {
            let word = |i: usize| u32::from_be_bytes(payload[i..i + 4].try_into().unwrap());
            return Some((word(0) & 0x7fff_ffff, word(4)));
        }
        at += 9 + len;
    }
    None
}

/// An HTTP/2 client over `tls`, its connection driven by a task of its
/// own, ready for a first request (panics if that takes longer than
/// `CLIENT_DEADLINE`).
pub async fn h2_client(tls: Tls) -> h2::client::SendRequest<Bytes> {
    let what = format!("HTTP/2 handshake with {}", peer(&tls));
    within_deadline(what, async {
        let (client, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(conn);
        client.ready().await.unwrap()
    })
    .await
}

/// The address `tls` is connected to, for messages.
fn peer(tls: &Tls) -> String {
    tls.get_ref()
        .0
        .peer_addr()
        .map_or_else(|e| format!("a closed connection ({e})"), |a| a.to_string())
}

/// A TCP connection to `to` from the local address `from` (127.0.0.x: a
/// client or pod other than 127.0.0.1).
pub async fn tcp_from(from: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// A client's kept-open HTTP/1.1 connection to the proxy ([`open_served`]):
/// its sender, its driver (ends when the proxy closes it), its local
/// address (the `peer` the proxy logs for it) and its SNI, sent as `Host`
/// too.
pub struct Open {
    pub send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    pub conn: tokio::task::JoinHandle<hyper::Result<()>>,
    pub peer: String,
    pub host: String,
}

/// `GET /` with `Host: host`.
pub fn get_to(host: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get("/")
        .header("host", host)
        .body(Empty::new())
        .unwrap()
}

/// A connection to `addr` with SNI `sni` (trusting `ca_pem`, presenting
/// `who` if any), kept open and served once (404: no route for `/`).
pub async fn open_served(
    addr: SocketAddr,
    sni: &str,
    ca_pem: &str,
    who: Option<&TestPair>,
) -> Open {
    let tls = connect(addr, sni, client_config(ca_pem, who, &[b"http/1.1"]))
        .await
        .unwrap();
    let peer = tls.get_ref().0.local_addr().unwrap().to_string();
    let (mut send, conn) = keep_open_h1(tls).await;
    let status = send.send_request(get_to(sni)).await.unwrap().status();
    assert_eq!(status, 404, "{peer} served (no route for /)");
    Open {
        send,
        conn,
        peer,
        host: sni.to_owned(),
    }
}

/// Whether the proxy logged connection `peer`'s close for `reason`.
pub fn closed_for(p: &Proxy, peer: &str, reason: &str) -> bool {
    p.logs().iter().any(|l| {
        l.contains("\"closing connection")
            && l.contains(&format!("\"peer\":\"{peer}\""))
            && l.contains(&format!("\"reason\":\"{reason}\""))
    })
}

/// Wait until `open` is closed and the close is logged for `reason`
/// (within 10 s).
pub async fn closed_logged(p: &Proxy, open: Open, reason: &str) {
    within_deadline(format!("{} closed", open.peer), open.conn)
        .await
        .unwrap()
        .unwrap();
    wait_until(
        std::time::Duration::from_secs(10),
        "the close logged with its reason",
        || {
            let logged = closed_for(p, &open.peer, reason);
            async move { logged }
        },
    )
    .await;
}

/// [`closed_logged`] for `max_connection_lifetime`.
pub async fn closed_for_lifetime(p: &Proxy, open: Open) {
    closed_logged(p, open, "max_connection_lifetime").await;
}

/// `open` serves another request (404), with no sign of a close coming:
/// no `Connection: close`, its driver not ended, and its close for
/// `max_connection_lifetime` never logged.
pub async fn served_on(p: &Proxy, open: &mut Open) {
    let again = open.send.send_request(get_to(&open.host)).await.unwrap();
    assert_eq!(again.status(), http::StatusCode::NOT_FOUND);
    assert!(again.headers().get("connection").is_none(), "{again:?}");
    assert!(!open.conn.is_finished(), "{} closed", open.peer);
    assert!(!closed_for(p, &open.peer, "max_connection_lifetime"));
}
