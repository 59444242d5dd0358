//! Shared integration-test support: runtime PKI, file writers as kubelet and certbot do it,
//! an mTLS echo backend, the real proxy process, and real TLS clients.
#![allow(dead_code)]

pub mod writers;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// SHA-256 of DER as lowercase hex (what the proxy reports as fingerprints).
pub fn fingerprint(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A test certificate authority, generated at runtime.
pub struct TestCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    next_serial: Mutex<u64>,
}

/// A certificate with its key.
#[derive(Clone)]
pub struct TestPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub fingerprint: String,
    pub serial: u64,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.key_identifier_method = KeyIdMethod::Sha256;
        let cert = p.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(p, key),
            next_serial: Mutex::new(1000),
        }
    }

    fn issue(
        &self,
        cn: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> TestPair {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let serial = {
            let mut s = self.next_serial.lock().unwrap();
            *s += 1;
            *s
        };
        p.serial_number = Some(SerialNumber::from(serial));
        if expired {
            p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
            p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        }
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        TestPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            fingerprint: fingerprint(cert.der()),
            serial,
        }
    }

    pub fn server_pair(&self, names: &[&str]) -> TestPair {
        self.issue(names[0], names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    pub fn expired_server_pair(&self, names: &[&str]) -> TestPair {
        self.issue(names[0], names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    pub fn client_pair(&self, cn: &str) -> TestPair {
        self.issue(cn, &[], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    /// A CRL from this CA revoking `revoked`.
    pub fn crl(&self, revoked: &[&TestPair]) -> String {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|p| RevokedCertParams {
                    serial_number: SerialNumber::from(p.serial),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// Write a file (plain `fs::write`, for initial layouts).
pub fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Poll `cond` every 20ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Benchmarks print their own table; tests echo the proxy's log (shown on failure).
pub static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The real proxy binary, run with JSON logs so tests can read addresses and events.
pub struct Proxy {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub fn start(config: &Path) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["run", "--config"])
            .arg(config)
            .args(["--log-format", "json", "--log-level", "debug"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hotproxy");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take().unwrap();
        let echo = !QUIET.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[hotproxy] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        Proxy { child, lines }
    }

    /// The process id, for reading `/proc/PID/*` (memory, CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn find(&self, pred: &dyn Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| pred(v))
    }

    /// Wait (bounded) for a log event matching `pred`.
    pub async fn wait_log(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self.find(&pred) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("hotproxy exited ({status}) while waiting for: {what}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for log: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address a listener bound (configs use port 0).
    pub async fn listener_addr(&mut self, name: &str) -> SocketAddr {
        let v = self
            .wait_log("listening", |v| {
                v["message"] == "listening" && v["listener"] == name
            })
            .await;
        v["addr"].as_str().unwrap().parse().unwrap()
    }

    pub async fn admin_addr(&mut self) -> SocketAddr {
        let v = self
            .wait_log("admin listening", |v| v["message"] == "admin listening")
            .await;
        v["addr"].as_str().unwrap().parse().unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "hotproxy did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hotproxy check` / any subcommand: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotproxy"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap())
        .collect()
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// A TLS client configuration trusting `ca_pem`, optionally presenting `client`.
pub fn client_config(
    ca_pem: &str,
    client: Option<&TestPair>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem) {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match client {
        Some(p) => b
            .with_client_auth_cert(certs(&p.cert_pem), key(&p.key_pem))
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Handshake with `addr` sending `sni`.
pub async fn connect(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

/// Fingerprint of the leaf the server presented for `sni`.
pub async fn served_leaf(addr: SocketAddr, sni: &str, ca_pem: &str) -> std::io::Result<String> {
    let tls = connect(addr, sni, client_config(ca_pem, None, &[b"http/1.1"])).await?;
    Ok(fingerprint(
        tls.get_ref().1.peer_certificates().unwrap()[0].as_ref(),
    ))
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

/// One GET over a fresh TLS connection (h2 if `h2`), with extra headers.
pub async fn get(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
    h2: bool,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
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
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
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
}

/// An HTTPS echo backend that (optionally) requires a client certificate
/// from `client_ca` and answers JSON: the client certificate it saw, the
/// request headers, its own name, and a connection counter.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections open right now.
    pub open: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a backend connection as open while it lives.
struct OpenGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Backend {
    pub async fn start(name: &str, server: &TestPair, client_ca: Option<&str>) -> Backend {
        Backend::with_alpn(name, server, client_ca, &[b"h2", b"http/1.1"]).await
    }

    /// A backend offering only HTTP/1.1 (like nginx without `http2`).
    pub async fn start_h1(name: &str, server: &TestPair, client_ca: Option<&str>) -> Backend {
        Backend::with_alpn(name, server, client_ca, &[b"http/1.1"]).await
    }

    async fn with_alpn(
        name: &str,
        server: &TestPair,
        client_ca: Option<&str>,
        alpn: &[&[u8]],
    ) -> Backend {
        let mut b = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(ca) {
                    roots.add(c).unwrap();
                }
                let v = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap();
                rustls::ServerConfig::builder().with_client_cert_verifier(v)
            }
            None => rustls::ServerConfig::builder().with_no_client_auth(),
        }
        .with_single_cert(certs(&server.cert_pem), key(&server.key_pem))
        .unwrap();
        b.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(b));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open_count = open.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let conn_id = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                open_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let guard = OpenGuard(open_count.clone());
                let acceptor = acceptor.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let _open = guard;
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let seen = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| fingerprint(c.as_ref()));
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            let name = name.clone();
                            async move {
                                if req.uri().path() == "/slow" {
                                    tokio::time::sleep(Duration::from_secs(2)).await;
                                }
                                if req.uri().path().starts_with("/burst") {
                                    // Long enough for concurrent requests to overlap.
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                }
                                let headers: serde_json::Map<String, serde_json::Value> = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                                    .collect();
                                let body = serde_json::json!({
                                    "backend": name,
                                    "path": req.uri().path(),
                                    "version": format!("{:?}", req.version()),
                                    "client_cert_fingerprint": seen,
                                    "headers": headers,
                                    "connection": conn_id,
                                });
                                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                    Bytes::from(body.to_string()),
                                )))
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Backend {
            addr,
            accepted,
            open,
        }
    }
}

/// A temp directory that holds a test's config and PKI.
pub struct Scene {
    pub dir: tempfile::TempDir,
}

impl Scene {
    pub fn new() -> Scene {
        Scene {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn pair(&self, stem: &str, p: &TestPair) {
        write(&self.path(&format!("{stem}.crt")), &p.cert_pem);
        write(&self.path(&format!("{stem}.key")), &p.key_pem);
    }

    pub fn config(&self, yaml: &str) -> PathBuf {
        let p = self.path("config.yaml");
        write(&p, yaml);
        p
    }
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
/// `Host`; `token` becomes `Authorization: Bearer`.
pub async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
    headers: &[(&str, &str)],
) -> AdminReply {
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
}

/// The body lines of a PEM (without the BEGIN/END markers): what a leak
/// of that PEM anywhere would contain.
pub fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .map(str::to_owned)
        .collect()
}
