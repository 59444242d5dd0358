//! `hotproxy demo`: dev PKI, a built-in mTLS echo backend, and the proxy.
//!
//! Runs the top-level `config.yaml` unchanged: creates the dev PKI it names
//! (`demo-pki/`) when missing (re-issues its pairs, same CA, when one has
//! expired or expires within 7 days; the server pair for the names it had),
//! starts an echo backend on the `echo` upstream's address that *requires*
//! a client certificate from the dev CA and answers with the one it saw,
//! then serves the proxy in front of it. A configuration that is not the
//! demo's (no `echo` upstream, no file in `demo-pki/`) is refused before
//! any file is written.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;
use crate::material::{info, shown_path};
use crate::shell::shell_word;

/// The configuration the demo runs: `./config.yaml`, else the one next to
/// the crate's manifest (so `cargo run -- demo` works from any directory).
fn config_path() -> PathBuf {
    let local = PathBuf::from("config.yaml");
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml")
}

pub fn run() -> ExitCode {
    let path = config_path();
    // Refused as `run` refuses it (`invalid configuration`, with `path`).
    let Some(config) = crate::server::load(&path) else {
        return ExitCode::FAILURE;
    };
    let pki = config
        .file
        .parent()
        .unwrap_or(Path::new("."))
        .join("demo-pki");
    // Checked before any file is written: run beside another
    // configuration, the demo wrote a CA private key next to it, then
    // found no `echo` upstream.
    let backend = match demo_backend(&config, &pki) {
        Ok(backend) => backend,
        Err(missing) => {
            crate::server::demo_refused(&format!(
                "{}: not the demo's configuration: {missing}; wrote nothing",
                shown_path(&config.file)
            ));
            return ExitCode::FAILURE;
        }
    };
    if !pki.join("server.crt").exists() || !pki.join("client.crt").exists() {
        if let Err(e) = crate::devpki::write(&pki, &[]) {
            crate::server::demo_refused(&format!(
                "cannot create the demo PKI in {}: {e:#}",
                shown_path(&pki)
            ));
            return ExitCode::FAILURE;
        }
        crate::outln!("created a throwaway dev PKI in {}", shown_path(&pki));
    } else if let Some(why) = expiring(&pki) {
        // The pairs last 90 days: a demo run again after that served an
        // expired certificate, and its backend refused the proxy's.
        let names = server_names(&pki);
        let shown = if names.is_empty() {
            "localhost, 127.0.0.1".to_string()
        } else {
            names.join(", ")
        };
        if let Err(e) = crate::devpki::write(&pki, &names) {
            crate::server::demo_refused(&format!(
                "cannot re-issue the demo PKI in {}: {e:#}",
                shown_path(&pki)
            ));
            return ExitCode::FAILURE;
        }
        crate::outln!(
            "{why}: re-issued the demo's server pair (for {shown}) and client pair in {} (kept its CA)",
            shown_path(&pki)
        );
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            crate::server::demo_refused(&format!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        if let Err(e) = start_echo_backend(backend, &pki).await {
            crate::server::demo_refused(&format!(
                "cannot start the demo echo backend on {backend}: {e}"
            ));
            return ExitCode::FAILURE;
        }
        let shown = instructions_for(&config, &pki);
        crate::server::serve_then(config, || crate::outln!("{shown}")).await
    });
    crate::server::finish(rt);
    code
}

/// Where the demo's echo backend listens: the `echo` upstream's first
/// server, an IP:port. Or what the configuration lacks of the demo's: that
/// upstream, or a certificate file in `pki` (its `demo-pki/`, which the
/// demo creates), naming what was looked for and where.
fn demo_backend(config: &Config, pki: &Path) -> Result<SocketAddr, String> {
    let backend = config
        .upstreams
        .iter()
        .find(|u| u.name == "echo")
        .and_then(|u| u.servers.first())
        .and_then(|s| format!("{}:{}", s.host, s.port).parse::<SocketAddr>().ok())
        .ok_or("it has no upstream named `echo` with an IP:port server")?;
    let names_pki = config
        .entries
        .iter()
        .flat_map(|e| e.source.paths())
        .any(|p| p.starts_with(pki));
    if !names_pki {
        return Err(format!(
            "it names no certificate file in {}",
            shown_path(pki)
        ));
    }
    Ok(backend)
}

/// How close to its expiry a demo pair is issued again: a demo started
/// then would stop working while it is being tried.
const RENEW_DAYS: i64 = 7;

/// Why the demo's pairs must be issued again (`server.crt expired on …`,
/// `client.crt expires on …`), or `None` while both are good for
/// [`RENEW_DAYS`] more. A file that cannot be read is left to startup,
/// which names its problem: it is not replaced.
fn expiring(pki: &Path) -> Option<String> {
    let now = crate::material::catalogue::unix(std::time::SystemTime::now());
    let reasons: Vec<String> = ["server.crt", "client.crt"]
        .into_iter()
        .filter_map(|name| {
            let leaf = crate::material::pem::certificates_in(&pki.join(name))
                .ok()?
                .into_iter()
                .next()?;
            let when = crate::check::date(leaf.not_after);
            if leaf.not_after <= now {
                Some(format!("{name} expired on {when}"))
            } else if leaf.not_after - now < RENEW_DAYS * 86_400 {
                Some(format!("{name} expires on {when}"))
            } else {
                None
            }
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

/// The DNS names and IP addresses the current `server.crt` is for, in
/// its order: what a re-issued server pair keeps, so one rotated with
/// `certs dev-pki --name myhost.test` is not issued again for `localhost`.
/// Empty (the dev PKI's defaults then) when the file cannot be read or
/// names nothing `certs dev-pki` would accept.
fn server_names(pki: &Path) -> Vec<String> {
    let Some(leaf) = crate::material::pem::certificates_in(&pki.join("server.crt"))
        .ok()
        .and_then(|certs| certs.into_iter().next())
    else {
        return Vec::new();
    };
    // `sans` also holds URIs and emails: keep the DNS names and the IPs.
    leaf.sans
        .into_iter()
        .filter(|san| {
            leaf.dns_names.contains(&san.to_ascii_lowercase())
                || san.parse::<std::net::IpAddr>().is_ok()
        })
        .filter(|san| crate::devpki::check_name(san).is_ok())
        .collect()
}

/// What the demo prints once it serves: [`instructions`] for `config`.
fn instructions_for(config: &Config, pki: &Path) -> String {
    let port = config
        .listeners
        .first()
        .map(|l| l.bind.port())
        .unwrap_or(8443);
    let admin = config
        .admin
        .as_ref()
        .map(|a| a.bind.to_string())
        .unwrap_or_else(|| "127.0.0.1:9901".into());
    // The running binary, not `cargo run`: that fails anywhere but the
    // source tree (an installed binary, the image). `hotproxy` (on PATH)
    // only when the process cannot say where it is.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hotproxy"));
    // The names the server pair is for, as the demo's own re-issue keeps
    // them: without `--name` the command re-issued it for `localhost` only.
    let names = server_names(pki);
    instructions(port, pki, &admin, &exe, &names).join("\n")
}

/// What the demo tells the operator, the commands to paste included.
/// Every path and address in a command is a [`shell_word`]: a PKI
/// directory named `my pki`, `it's` or `$(id)` was pasted as other words,
/// or ran what it named; an IPv6 admin address's `[...]` was a glob.
fn instructions(port: u16, pki: &Path, admin: &str, exe: &Path, names: &[String]) -> Vec<String> {
    let file = |name: &str| shell_word(&pki.join(name)).into_owned();
    let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
    let url = shell_word(&format!("https://localhost:{port}/hello")).into_owned();
    let metrics = shell_word(&format!("http://{admin}/metrics")).into_owned();
    let connect = shell_word(&format!("localhost:{port}")).into_owned();
    vec![
        String::new(),
        format!("hotproxy demo: https://localhost:{port} -> mTLS echo backend"),
        String::new(),
        "  try it (the backend reports the client certificate hotproxy presented):".into(),
        format!("    curl --cacert {ca} {url}"),
        "  with your own client certificate (verified, passed upstream as X-Client-Cert-*):".into(),
        format!("    curl --cacert {ca} --cert {cert} --key {key} {url}"),
        String::new(),
        "  rotate the certificates while it runs, then watch the served fingerprint change:".into(),
        format!(
            "    {} certs dev-pki --out {}{}",
            shell_word(exe),
            shell_word(pki),
            names
                .iter()
                .map(|n| format!(" --name {}", shell_word(n)))
                .collect::<String>()
        ),
        format!(
            "    openssl s_client -connect {connect} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
        ),
        format!("    curl -s {metrics} | grep hotproxy_cert_reloads"),
        String::new(),
        "  Ctrl-C stops it.".into(),
    ]
}

/// An HTTPS echo server that requires a client certificate from the dev CA.
async fn start_echo_backend(addr: SocketAddr, pki: &Path) -> Result<(), String> {
    let read = |name: &str| {
        std::fs::read(pki.join(name)).map_err(|e| format!("{}: {e}", shown_path(&pki.join(name))))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read("server.crt")?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.crt: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&read("server.key")?)
        .map_err(|e| format!("server.key: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read("ca.crt")?) {
        roots
            .add(ca.map_err(|e| format!("ca.crt: {e}"))?)
            .map_err(|e| format!("ca.crt: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let socket = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            // Out of descriptors, `accept()` fails at once for as long as
            // the connection waits in the backlog: retrying without a pause
            // spun a core. (Not the listeners' `Acceptor`: that would count
            // the failures under a listener that does not exist.)
            let Ok((stream, _)) = socket.accept().await else {
                tokio::time::sleep(crate::proxy::accept::MIN_BACKOFF * 10).await;
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let seen = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| info::inspect(c).ok());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let headers: serde_json::Map<String, serde_json::Value> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                            .collect();
                        let body = serde_json::json!({
                            "backend": "hotproxy demo echo",
                            "method": req.method().as_str(),
                            "path": req.uri().path(),
                            "proxy_client_certificate": seen.as_ref().map(|s| serde_json::json!({
                                "subject": s.subject,
                                "fingerprint_sha256": s.fingerprint_sha256,
                            })),
                            "headers": headers,
                        });
                        let text = serde_json::to_string_pretty(&body).unwrap_or_default() + "\n";
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok(())
}
