//! Shared here: the client PKI (with an intermediate), the world, the config, request outcomes.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    SigningKey,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

pub const EDITOR: &str = "editor-token-0123456789abcdef";

/// A client PKI with an intermediate: root -> intermediate -> clients, so a
/// client sends a chain (leaf + intermediate), as real fleets do.
pub struct Pki {
    pub root_pem: String,
    pub intermediate_der: Vec<u8>,
    pub intermediate_pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and the chain it presents.
pub struct Client {
    pub pair: TestPair,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = |cn: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca("partners root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate().unwrap();
        let int_params = ca("partners issuing CA");
        let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
        Pki {
            root_pem: root.pem(),
            intermediate_der: int.der().to_vec(),
            intermediate_pem: int.pem(),
            issuer: Issuer::new(int_params, int_key),
        }
    }

    /// A client certificate with these subject fields and SANs; its
    /// `cert_pem` holds the leaf and the intermediate.
    pub fn client(&self, cn: &str, ou: Option<&str>, sans: &[SanType]) -> Client {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        if let Some(ou) = ou {
            dn.push(DnType::OrganizationalUnitName, ou);
        }
        self.client_named(dn, sans)
    }

    /// A client certificate with this subject.
    pub fn client_named(&self, dn: DistinguishedName, sans: &[SanType]) -> Client {
        self.issue(dn, sans, None, &[], Vec::new())
    }

    /// A client certificate with the common name `cn` and the extension
    /// `ext` as written: DER built by hand, for what rcgen will not encode.
    pub fn client_with_extension(&self, cn: &str, ext: CustomExtension) -> Client {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        self.issue(dn, &[], None, &[], vec![ext])
    }

    /// A client certificate with the common name `cn` and this serial
    /// (big-endian magnitude; DER adds a 0x00 when its top bit is set).
    pub fn client_with_serial(&self, cn: &str, serial: &[u8]) -> Client {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        self.issue(
            dn,
            &[],
            Some(SerialNumber::from_slice(serial)),
            &[],
            Vec::new(),
        )
    }

    /// A client certificate with the common name `cn` and the keyUsage
    /// `usages` (none: no keyUsage extension at all).
    pub fn client_with_key_usage(&self, cn: &str, usages: &[KeyUsagePurpose]) -> Client {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        self.issue(dn, &[], None, usages, Vec::new())
    }

    /// `client`'s certificate with the bytes `from` of its to-be-signed
    /// part replaced by `to` (as long), signed again by the issuing CA:
    /// what rcgen will not encode (a string value whose bytes are not
    /// valid in its type), as a CA that signs what it is asked issues it.
    pub fn patched(&self, client: &Client, from: &[u8], to: &[u8]) -> Client {
        assert_eq!(from.len(), to.len());
        let der = &client.pair.der;
        let (header, _) = der_element(der);
        let body = &der[header..];
        let (_, tbs_len) = der_element(body);
        let mut tbs = body[..tbs_len].to_vec();
        let (_, alg_len) = der_element(&body[tbs_len..]);
        let alg = &body[tbs_len..tbs_len + alg_len];
        let at = tbs.windows(from.len()).position(|w| w == from).unwrap();
        tbs[at..at + to.len()].copy_from_slice(to);
        let mut bits = vec![0];
        bits.extend(self.issuer.key().sign(&tbs).unwrap());
        let der = der_encode(0x30, &[tbs, alg.to_vec(), der_encode(0x03, &bits)].concat());
        let pem = certificate_pem(&der);
        Client {
            pair: TestPair {
                cert_pem: format!("{pem}{}", self.intermediate_pem),
                key_pem: client.pair.key_pem.clone(),
                fingerprint: fingerprint(&der),
                der,
                serial: 0,
            },
        }
    }

    fn issue(
        &self,
        dn: DistinguishedName,
        sans: &[SanType],
        serial: Option<SerialNumber>,
        usages: &[KeyUsagePurpose],
        extensions: Vec<CustomExtension>,
    ) -> Client {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn;
        p.subject_alt_names = sans.to_vec();
        p.serial_number = serial;
        p.key_usages = usages.to_vec();
        p.custom_extensions = extensions;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Client {
            pair: TestPair {
                cert_pem: format!("{}{}", cert.pem(), self.intermediate_pem),
                key_pem: key.serialize_pem(),
                der: cert.der().to_vec(),
                fingerprint: fingerprint(cert.der()),
                serial: 0,
            },
        }
    }
}

/// A DER element at the start of `b`: its header's length and its whole length.
fn der_element(b: &[u8]) -> (usize, usize) {
    let first = usize::from(b[1]);
    if first < 0x80 {
        return (2, 2 + first);
    }
    let n = first & 0x7f;
    let len = b[2..2 + n]
        .iter()
        .fold(0, |len, &byte| len << 8 | usize::from(byte));
    (2 + n, 2 + n + len)
}

/// The DER element of tag `tag` holding `body`.
fn der_encode(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len().to_be_bytes();
    match body.len() {
        0..0x80 => out.push(len[len.len() - 1]),
        _ => {
            let bytes: Vec<u8> = len.into_iter().skip_while(|&b| b == 0).collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }
    out.extend_from_slice(body);
    out
}

pub fn uri(u: &str) -> SanType {
    SanType::URI(u.try_into().unwrap())
}

pub fn dns(d: &str) -> SanType {
    SanType::DnsName(d.try_into().unwrap())
}

pub struct World {
    pub scene: Scene,
    pub edge_ca: TestCa,
    pub pki: Pki,
    pub backend: Backend,
}

pub async fn world() -> World {
    let scene = Scene::new();
    let edge_ca = TestCa::new("edge CA");
    let backend_ca = TestCa::new("backend CA");
    scene.pair(
        "edge",
        &edge_ca.server_pair(&["localhost", "public.example", "admin.example"]),
    );
    let pki = Pki::new();
    write(&scene.path("partners-ca.crt"), &pki.root_pem);
    write(&scene.path("backend-ca.crt"), &backend_ca.cert_pem);
    write(&scene.path("editor.token"), EDITOR);
    let backend = Backend::start("app", &backend_ca.server_pair(&["backend.local"]), None).await;
    World {
        scene,
        edge_ca,
        pki,
        backend,
    }
}

/// `client_auth` verifying against the partners' CA and letting in the
/// common name `cn` only.
pub fn allow_cn(cn: &str) -> String {
    format!(
        "        mode: require_and_verify\n        ca: {{ ref: partners-ca }}\n        allow: [{{ cn: {cn} }}]"
    )
}

/// An access log in JSON to `access.log` of the scene: its path, and the
/// `access_log:` line for [`config`]'s `extra`.
pub fn json_access_log(w: &World) -> (std::path::PathBuf, String) {
    let log = w.scene.path("access.log");
    let extra = format!("access_log: {{ path: {}, format: json }}", log.display());
    (log, extra)
}

/// A config with one `partners` listener (client auth `client_auth`,
/// routes `routes`) plus `extra` at the top level.
pub fn config(
    w: &World,
    client_auth: &str,
    listener_extra: &str,
    routes: &str,
    extra: &str,
) -> std::path::PathBuf {
    w.scene.config(&format!(
        r#"
runtime: {{ worker_threads: 1 }}
watch: {{ debounce: 50ms, poll_interval: 500ms }}
admin:
  bind: 127.0.0.1:0
  tokens: [{{ role: editor, token_file: editor.token }}]
{extra}
certs:
  - {{ id: edge, type: server-pair, cert_file: edge.crt, key_file: edge.key }}
  - {{ id: partners-ca, type: ca-bundle, ca_file: partners-ca.crt }}
listeners:
  - name: partners
    bind: 127.0.0.1:0
{listener_extra}
    tls:
      certs: [{{ ref: edge }}]
      client_auth:
{client_auth}
    routes:
{routes}
      - {{ upstream: app }}
upstreams:
  - name: app
    servers: [https://{backend}]
    tls:
      ca: {{ ca_file: backend-ca.crt }}
      server_name: backend.local
"#,
        backend = w.backend.addr,
    ))
}

pub fn cfg_for(w: &World, c: Option<&Client>) -> Arc<rustls::ClientConfig> {
    client_config(&w.edge_ca.cert_pem, c.map(|c| &c.pair), &[b"http/1.1"])
}

/// What a client gets for `GET path`: a status, or the TLS error the
/// server's alert produced.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Status(u16),
    Refused(rustls::Error),
    /// Closed with no answer: opened just before a rule change, which
    /// closes the connections admitted under the old rules.
    Closed,
}

/// One raw HTTP/1.1 request on a fresh connection. In TLS 1.3 the server
/// checks the client certificate after the client's Finished, so a refusal
/// shows up as an alert on the first read.
pub async fn outcome(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> Outcome {
    outcome_for(addr, "localhost", "localhost", cfg, path).await
}

/// [`outcome`] with the SNI sent in the handshake and the `Host` of the request.
pub async fn outcome_for(
    addr: std::net::SocketAddr,
    sni: &str,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
) -> Outcome {
    let mut tls = match connect(addr, sni, cfg).await {
        Ok(t) => t,
        Err(e) => return Outcome::Refused(tls_error(&e)),
    };
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    if let Err(e) = tls.write_all(req.as_bytes()).await {
        return Outcome::Refused(tls_error(&e));
    }
    let mut buf = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await {
        Ok(Err(e)) => Outcome::Refused(tls_error(&e)),
        Ok(Ok(_)) if buf.is_empty() => Outcome::Closed,
        Ok(Ok(_)) => {
            let text = String::from_utf8_lossy(&buf);
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no status line in {text:?}"));
            Outcome::Status(status)
        }
        Err(_) => panic!("no answer to GET {path}"),
    }
}

pub fn tls_error(e: &std::io::Error) -> rustls::Error {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned()
        .unwrap_or_else(|| panic!("not a TLS error: {e}"))
}

pub const DENIED: Outcome = Outcome::Refused(rustls::Error::AlertReceived(
    rustls::AlertDescription::AccessDenied,
));

/// The headers the backend saw for `GET path` with `headers`.
pub async fn seen(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let r = get(addr, "localhost", cfg, false, path, headers)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["headers"].clone()
}

/// `Key=value;Key="quoted value";…` as Envoy writes XFCC (one element).
/// A quoted value is kept as it stands, backslashes included: Envoy puts
/// OpenSSL's RFC 2253 `Subject` in quotes without unescaping it, so its
/// `\,` and `\"` are the DN's own escapes.
pub fn parse_xfcc(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        value.push('\\');
                        value.extend(chars.next());
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
            chars.next(); // the `;` after the closing quote
        } else {
            value = chars.by_ref().take_while(|c| *c != ';').collect();
        }
        out.push((key, value));
    }
}

/// Each `(field, pattern, said)` PUT at `put` (a listener's client-auth)
/// as its only allow rule: refused `400`, the message naming
/// `allow[0].<field>` and saying `said`, never repeating the pattern.
pub async fn each_rule_refused_by_put(
    api: std::net::SocketAddr,
    put: &str,
    rules: &[(&str, &str, &str)],
) {
    for (field, pattern, said) in rules {
        let body = serde_json::json!({"mode": "require_and_verify", "allow": [{*field: pattern}]});
        let r = admin(api, "PUT", put, Some(EDITOR), Some(body), &[]).await;
        assert_eq!(r.status, 400, "{field}: {pattern:?}: {}", r.body);
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            m.contains(&format!("allow[0].{field}: ")) && m.contains(said),
            "{field}: {pattern:?}: {m}"
        );
        assert!(!m.contains(pattern), "the value repeated: {m}");
    }
}
