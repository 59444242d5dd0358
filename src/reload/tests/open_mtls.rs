//! Open mTLS connections across CRL changes, on real sockets: what they keep of the snapshot they shook hands under, how often their chains are verified again.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use rcgen::{
    CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Scene;
use crate::config::{self, Config};
use crate::identity::gate::Gate;
use crate::proxy::listener::Listener;

/// A client CA (`mtls.crt`, ca-bundle entry `mtls`), its CRL
/// (`mtls.crl`), and clients it issued (`NAME.crt`, `NAME.key`).
pub(super) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    /// The CRL number of the last CRL written.
    crls: u64,
    clients: u64,
}

impl Pki {
    pub(super) fn new(s: &Scene) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "mtls clients");
        p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(s.path().join("mtls.crt"), cert.pem()).unwrap();
        let mut pki = Pki {
            issuer: Issuer::new(p, key),
            crls: 0,
            clients: 0,
        };
        pki.write_crl(s, &[]);
        pki
    }

    /// A client certificate for `name`, written as `NAME.crt`, `NAME.key`;
    /// its serial number.
    pub(super) fn client(&mut self, s: &Scene, name: &str) -> u64 {
        self.clients += 1;
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.serial_number = Some(SerialNumber::from(self.clients));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(s.path().join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(s.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        self.clients
    }

    /// A new CRL revoking the clients of serial numbers `revoked`, over
    /// `mtls.crl` (written whole elsewhere, renamed over it, as certbot's
    /// hooks and kubelet write).
    pub(super) fn write_crl(&mut self, s: &Scene, revoked: &[u64]) {
        self.crls += 1;
        let now = OffsetDateTime::now_utc();
        // Each newer than the last, all issued already.
        let this_update =
            now - time::Duration::hours(2) + time::Duration::minutes(self.crls as i64);
        let crl = CertificateRevocationListParams {
            this_update,
            next_update: now + time::Duration::days(30),
            crl_number: SerialNumber::from(self.crls),
            issuing_distribution_point: None,
            revoked_certs: (revoked.iter())
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: this_update,
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let pem = crl.signed_by(&self.issuer).unwrap().pem().unwrap();
        let tmp = s.path().join(".mtls.crl.tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(tmp, s.path().join("mtls.crl")).unwrap();
    }
}

/// Listener `public` on 127.0.0.1 verifying clients against entry `mtls`:
/// its own `client_auth`, or (`per_entry`) its one pair's.
pub(super) fn config(s: &Scene, per_entry: bool) -> Config {
    let client_auth = "client_auth: { mode: require_and_verify, ca: { ref: mtls } }";
    let (pair_auth, listener_auth) = match per_entry {
        true => (format!(", {client_auth}"), String::new()),
        false => (String::new(), format!(", {client_auth}")),
    };
    let yaml = format!(
        "certs:\n  - {{ id: mtls, type: ca-bundle, ca_file: mtls.crt, crl_files: [mtls.crl] }}\n\
         listeners:\n  - {{ name: public, bind: 127.0.0.1:0, routes: [], tls: {{ certs: [{{ cert_file: server.crt, key_file: server.key{pair_auth} }}]{listener_auth} }} }}\n"
    );
    config::parse(&yaml, &s.path().join("config.yaml")).unwrap()
}

/// A TLS connection to `addr` as client `name` (its `NAME.crt`).
pub(super) async fn connect(s: &Scene, addr: SocketAddr, name: &str) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(s.path().join("server.crt")).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain =
        rustls_pki_types::CertificateDer::pem_file_iter(s.path().join(format!("{name}.crt")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(s.path().join(format!("{name}.key")))
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider::get())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// The status line of `GET /` on the open connection `c` (kept open), or
/// `None` if the connection ended instead.
pub(super) async fn get(c: &mut TlsStream<TcpStream>) -> Option<String> {
    let sent = c
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    sent.ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // The head, then as much body as it says.
    let head_end = loop {
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    let length: usize = (head.lines())
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while answer.len() < head_end + length {
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    Some(head.lines().next().unwrap_or_default().to_owned())
}

/// The client verifier new connections to `listener` are checked by: its
/// own, or its first pair's.
fn gate(listener: &Listener) -> Arc<Gate> {
    let tls = listener.tls.load();
    match &tls.per_name {
        Some(p) => p.gates[0].clone(),
        None => tls.gate.clone(),
    }
    .expect("a verifying mode has a gate")
}

/// An mTLS connection left open across a CRL change (re-issued, nobody
/// newly revoked) keeps nothing of the snapshot it shook hands under: the
/// old client verifier, which holds the CA bundle's parsed CRLs (some
/// 30 MB for a large CRL), is freed while the connection stays open and
/// served, with the listener's client auth and with its pair's. The
/// connection kept the whole snapshot (and with per-entry client auth, its
/// configs and verifiers), so every CRL change kept one more parsed CRL in
/// memory for as long as any connection made before it was open.
#[test]
fn an_open_connection_keeps_no_verifier_a_crl_change_replaced() {
    for per_entry in [false, true] {
        let s = Scene::new();
        let mut pki = Pki::new(&s);
        pki.client(&s, "alice");
        let mut r = s.reloader(config(&s, per_entry));
        let addr = r.listeners["public"].bound;
        let listener = r.listeners["public"].live.clone();
        let first: Weak<Gate> = Arc::downgrade(&gate(&listener));
        let mut c = s.rt.block_on(async {
            let mut c = connect(&s, addr, "alice").await;
            let status = get(&mut c).await;
            assert_eq!(status.as_deref(), Some("http/1.1 404 not found"));
            c
        });
        pki.write_crl(&s, &[]);
        assert_eq!(r.reload_entry("mtls", false), Ok(true), "the CRL applied");
        let second = gate(&listener);
        assert!(
            !std::ptr::eq(first.as_ptr(), Arc::as_ptr(&second)),
            "the CRL change built another verifier"
        );
        // The connection's task sees the change, checks its client again
        // and keeps it; it is still served.
        let status = s.rt.block_on(get(&mut c));
        assert_eq!(
            status.as_deref(),
            Some("http/1.1 404 not found"),
            "per entry: {per_entry}"
        );
        assert!(
            first.upgrade().is_none(),
            "per entry: {per_entry}: the replaced verifier (and its parsed CRLs) is kept by the open connection"
        );
        drop(c);
    }
}

/// Whether the open connection `c` ends (the server closes it) with
/// nothing sent on it.
async fn closed(c: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0u8; 256];
    matches!(c.read(&mut buf).await, Ok(0) | Err(_))
}

/// After a CRL change, the open connections sharing a chain have it
/// verified once, not once each: six of alice's and three of bob's, two
/// verifications. All of alice's are kept and served; all of bob's, whom
/// the new CRL revokes, close. Each connection verified its chain again,
/// the issuer's CRLs hashed each time: 10,000 connections at once times a
/// few milliseconds with a large CRL stalled the runtime's workers.
#[test]
fn open_connections_sharing_a_chain_have_it_verified_once_per_change() {
    let s = Scene::new();
    let mut pki = Pki::new(&s);
    pki.client(&s, "alice");
    let bob = pki.client(&s, "bob");
    let r = &mut s.reloader(config(&s, false));
    let addr = r.listeners["public"].bound;
    let (mut alices, mut bobs) = s.rt.block_on(async {
        let mut open = Vec::new();
        for name in ["alice"; 6].into_iter().chain(["bob"; 3]) {
            let mut c = connect(&s, addr, name).await;
            let status = get(&mut c).await;
            assert_eq!(status.as_deref(), Some("http/1.1 404 not found"), "{name}");
            open.push(c);
        }
        let bobs = open.split_off(6);
        (open, bobs)
    });
    pki.write_crl(&s, &[bob]);
    assert_eq!(r.reload_entry("mtls", false), Ok(true), "the CRL applied");
    let ((), text) = crate::logging::test_support::logged(tracing::Level::DEBUG, || {
        s.rt.block_on(async {
            for c in &mut bobs {
                assert!(closed(c).await, "a revoked client's connection was kept");
            }
            for c in &mut alices {
                let status = get(c).await;
                assert_eq!(status.as_deref(), Some("http/1.1 404 not found"));
            }
        })
    });
    let kept = text.matches("still admitted under the changed rules; kept");
    assert_eq!(kept.count(), 6, "each of alice's checked again: {text}");
    let verified = text.matches("client certificate chain verified again");
    assert_eq!(verified.count(), 2, "once per chain: {text}");
}
