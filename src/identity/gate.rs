//! The handshake gate: a client verifier that applies a listener's `allow` rules after the chain check.
//!
//! rustls has one `ClientCertVerifier` per `ServerConfig`; this one wraps
//! the WebPKI verifier. A certificate that chains to the CA but matches no
//! rule is refused with `CertificateError::ApplicationVerificationFailure`,
//! which rustls sends as the `access_denied` alert. Before the rules, a
//! leaf whose keyUsage does not allow `digitalSignature` is refused
//! (`InvalidPurpose`, the `unsupported_certificate` alert): webpki ignores
//! keyUsage, OpenSSL and BoringSSL do not. The rules live in the
//! `ServerConfig`, so a rule change is a new snapshot and the very next
//! handshake sees it; listeners with client auth issue no tickets and keep
//! no session cache (see `tls::server::build`), so no resumed session can
//! skip this check.
//!
//! The verifier parses the leaf into an [`Identity`] anyway, so it hands
//! that record to the connection ([`take`]) instead of having the
//! connection parse the certificate a second time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use tracing::{debug, warn};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::identity::{AllowList, Identity};

/// A verifying client-auth policy with optional `allow` rules.
#[derive(Debug)]
pub struct Gate {
    pub listener: Arc<str>,
    pub inner: Arc<dyn ClientCertVerifier>,
    /// `None`: every certificate that chains to the CA is let in.
    pub allow: Option<Arc<AllowList>>,
    /// The CA bundle `inner` verifies against, as configured.
    pub ca: CaSource,
    /// Its trust anchors: each record's [`Identity::anchors`].
    pub anchors: Arc<[crate::identity::record::Anchor]>,
    /// Its verdicts on open connections' chains, once per chain per change
    /// of the listener's rules ([`Gate::still_admits`]).
    pub rechecks: crate::identity::rechecks::Rechecks,
}

/// Where a listener's client CA bundle comes from: what the operator must
/// fix when one of its CRLs cannot be used.
#[derive(Debug, Clone, Default)]
pub struct CaSource {
    /// The catalogue entry (type ca-bundle).
    pub entry: Arc<str>,
    /// Its CRL files as configured (`inline` for inline PEM), escaped as
    /// log lines show a path.
    pub crl_files: Arc<[String]>,
}

impl ClientCertVerifier for Gate {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.verify_chain(end_entity, intermediates, now)?;
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let (mut id, may_sign) = Identity::from_client_chain(&chain)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if !may_sign {
            // A keyUsage without digitalSignature (only keyEncipherment,
            // only keyCertSign): the key may not sign the handshake. OpenSSL
            // (nginx) and BoringSSL (Envoy) refuse it as an unsuitable
            // purpose, with the `unsupported_certificate` alert, as this
            // error is sent; counted as `bad_client_cert`.
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        id.anchors = self.anchors.clone();
        if let Some(allow) = &self.allow
            && !allow.permits(&id)
        {
            log_denied(&self.listener, &id);
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        hand_over(Arc::new(id));
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl Gate {
    /// Whether the client `id` (a connection's verified identity) would be
    /// let in now: its chain verified as in the handshake, at the present
    /// time, against this gate's CA set and CRLs, then its `allow` rules.
    /// For an open connection when the listener's rules changed
    /// ([`crate::proxy::readmit`]), to admission `generation`: nothing is
    /// handed over, and a client refused here is not logged as a handshake
    /// refusal. The connections that wake for one change share each
    /// chain's verification ([`crate::identity::rechecks`]).
    pub fn still_admits(&self, id: &Identity, generation: u64) -> bool {
        let Some((leaf, intermediates)) = id.chain.split_first() else {
            return false;
        };
        let verified = self.rechecks.verdict(generation, &id.chain, || {
            debug!(listener = %self.listener, "client certificate chain verified again under the changed rules");
            self.verify_chain(leaf, intermediates, UnixTime::now()).is_ok()
        });
        verified && self.allow.as_ref().is_none_or(|allow| allow.permits(id))
    }

    /// The chain verified by `inner`: a CRL webpki cannot use is warned
    /// about.
    fn verify_chain(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let intermediates = &distinct(intermediates);
        let warn = |e: &rustls::Error| {
            if let rustls::Error::InvalidCertRevocationList(_) = e {
                warn_crl_invalid(&self.listener, &self.ca, e);
            }
        };
        self.inner
            .verify_client_cert(leaf, intermediates, now)
            .inspect_err(warn)
    }
}

/// The certificates of one subject name webpki is given at most: an
/// issuer and its cross-signed copy, each possibly renewed. Two valid
/// encodings of one ECDSA certificate exist (its signature's `s` or
/// `n - s`), so copies by DER alone do not bound them.
const MAX_PER_NAME: usize = 4;

/// The certificates of `intermediates` webpki is given, in their order:
/// each once (by DER), and the first [`MAX_PER_NAME`] of a subject name.
/// webpki tries a path through every certificate under the issuer's name,
/// and a path refused (a revoked leaf) does not end the search: a client
/// that sent its issuing CA 60 times (64 KiB of them fit in a handshake)
/// had it check the leaf's and the CRL's signatures (the CRL hashed whole)
/// once per copy, until its budget of 100 signature checks ran out, and a
/// revoked client was refused as such only when its copies were fewer.
/// Certificates of other names cost it a name comparison, and are kept
/// (a client may pad its chain with them, as in `only_the_issuing_chain_is_forwarded`),
/// as is what does not parse (webpki skips it).
fn distinct<'a>(intermediates: &'a [CertificateDer<'_>]) -> Vec<CertificateDer<'a>> {
    let mut seen = HashSet::new();
    let mut per_name: HashMap<Vec<u8>, usize> = HashMap::new();
    intermediates
        .iter()
        .map(|c| c.as_ref())
        .filter(|der| seen.insert(*der))
        .filter(|der| {
            let Ok((_, cert)) = X509Certificate::from_der(der) else {
                return true;
            };
            let n = per_name
                .entry(cert.subject().as_raw().to_vec())
                .or_default();
            *n += 1;
            *n <= MAX_PER_NAME
        })
        .map(CertificateDer::from)
        .collect()
}

/// Records parsed in the handshake, waiting for their connection.
static HANDOFF: LazyLock<Mutex<Handoff>> = LazyLock::new(|| Mutex::new(Handoff::default()));
const HANDOFF_MAX: usize = 4096;
/// What the records may hold in all (with [`record_bytes`]): a client's
/// usual chain is a few KiB, so thousands of handshakes in flight fit.
const HANDOFF_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Records parsed in the handshake, waiting for their connection, by leaf
/// DER. Bounded: a handshake that fails after the certificate check (a bad
/// signature, a client gone) leaves its record behind, so the map is
/// cleared when full, by count ([`HANDOFF_MAX`]) or by the bytes its
/// records hold ([`HANDOFF_MAX_BYTES`]): a chain may be 64 KiB, so 4096
/// records alone could hold 256 MiB. A record cleared away costs its
/// connection a second parse ([`take`]), nothing more.
#[derive(Default)]
struct Handoff {
    records: HashMap<Vec<u8>, Arc<Identity>>,
    /// [`record_bytes`] of every record.
    bytes: usize,
}

impl Handoff {
    fn insert(&mut self, id: Arc<Identity>) {
        let size = record_bytes(&id);
        if size > HANDOFF_MAX_BYTES {
            return;
        }
        if self.records.len() >= HANDOFF_MAX || self.bytes + size > HANDOFF_MAX_BYTES {
            self.records.clear();
            self.bytes = 0;
        }
        if let Some(old) = self.records.insert(id.leaf().to_vec(), id) {
            self.bytes = self.bytes.saturating_sub(record_bytes(&old));
        }
        self.bytes += size;
    }

    fn remove(&mut self, leaf: &[u8]) -> Option<Arc<Identity>> {
        let id = self.records.remove(leaf)?;
        self.bytes = self.bytes.saturating_sub(record_bytes(&id));
        Some(id)
    }

    /// The bytes its records hold, counted again.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let counted = self.records.values().map(|id| record_bytes(id)).sum();
        assert_eq!(self.bytes, counted, "the running count drifted");
        counted
    }
}

/// The bytes a record holds: its key (the leaf), its chain and the text
/// parsed from the leaf.
fn record_bytes(id: &Identity) -> usize {
    let texts = |v: &[String]| v.iter().map(String::len).sum::<usize>();
    id.leaf().len()
        + id.chain.iter().map(|c| c.len()).sum::<usize>()
        + id.subject.len()
        + id.issuer.len()
        + id.serial.len()
        + id.fingerprint_sha256.len()
        + texts(&id.cn)
        + texts(&id.ou)
        + texts(&id.dns_sans)
        + texts(&id.uri_sans)
        + texts(&id.email_sans)
}

fn hand_over(id: Arc<Identity>) {
    HANDOFF.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
}

/// The identity record of a connection's verified peer chain: the one the
/// gate parsed, or (if two connections with the same certificate raced, or
/// the record was evicted) a fresh parse. `gate`: the one that verified
/// it, whose trust anchors the record carries.
pub fn take(chain: &[CertificateDer<'_>], gate: Option<&Gate>) -> Option<Arc<Identity>> {
    let leaf = chain.first()?;
    let anchors = gate.map(|g| g.anchors.clone()).unwrap_or_default();
    let handed = HANDOFF
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(leaf.as_ref())
        // Keyed by the leaf alone, a record may be another handshake's with
        // the same (public) leaf and other intermediates, one that failed
        // its signature check afterwards: only this very chain is ours.
        // Or another listener's, verified against other anchors.
        .filter(|id| {
            id.chain
                .iter()
                .map(AsRef::as_ref)
                .eq(chain.iter().map(AsRef::as_ref))
                && id.anchors == anchors
        });
    handed.or_else(|| {
        let mut id = Identity::from_chain(chain).ok()?;
        id.anchors = anchors;
        Some(Arc::new(id))
    })
}

/// Once per (listener, certificate) per minute: a client retrying in a
/// loop must not flood the log, but every new identity is seen. The
/// subject and SANs are the client's text, given as `&str` so the text
/// format writes them quoted and escaped (a common name `x fingerprint=…`
/// must not read as a field of the line), and JSON as plain strings.
fn log_denied(listener: &str, id: &Identity) {
    if !RECENT_DENIALS.first_in_window(format!("{listener} {}", id.fingerprint_sha256)) {
        return;
    }
    warn!(
        listener = %listener,
        subject = id.subject.as_str(),
        uri_san = id.uri_sans.first().map(String::as_str).unwrap_or(""),
        dns_san = id.dns_sans.first().map(String::as_str).unwrap_or(""),
        fingerprint = %id.fingerprint_sha256,
        "client certificate matches no allow rule: refused"
    );
}

static CRL_INVALID: LazyLock<RateLimit> = LazyLock::new(|| RateLimit::new(Duration::from_secs(60)));

/// A CRL webpki cannot use (signed by another key or with SHA-1, an
/// issuer without cRLSign) is the operator's fault, not the client's, and
/// refuses every verified client: a warning naming the CA entry and its
/// CRL files, the things to fix, once per listener and entry per minute,
/// as each client retrying would repeat it.
fn warn_crl_invalid(listener: &str, ca: &CaSource, err: &rustls::Error) {
    if !CRL_INVALID.first_in_window(format!("{listener} {}", ca.entry)) {
        return;
    }
    warn!(
        listener = %listener,
        ca_entry = %ca.entry,
        crl_files = %ca.crl_files.join(", "),
        reason = "crl_invalid",
        error = %err,
        "a CRL of ca-bundle entry {:?} cannot be used: every client certificate verified against it is refused until the CRL is replaced",
        ca.entry
    );
}

static RECENT_DENIALS: LazyLock<RateLimit> =
    LazyLock::new(|| RateLimit::new(Duration::from_secs(60)));

/// Keys a [`RateLimit`] remembers at most.
const MAX_KEYS: usize = 10_000;

/// "Once per key per window", bounded in memory.
pub struct RateLimit {
    window: Duration,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    keys: HashMap<String, Instant>,
    /// When the oldest key remembered expires: full before then, a sweep
    /// would free nothing.
    oldest_expires: Option<Instant>,
}

impl RateLimit {
    pub fn new(window: Duration) -> RateLimit {
        RateLimit {
            window,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// True the first time `key` is seen in the current window.
    pub fn first_in_window(&self, key: String) -> bool {
        self.admit(key) == Window::First
    }

    /// Whether `key` is let through, and if not, why.
    pub fn admit(&self, key: String) -> Window {
        let now = Instant::now();
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = &mut *guard;
        if seen.keys.len() >= MAX_KEYS {
            // Under a flood of distinct keys (refusals from many source
            // addresses) every call used to sweep all 10,000 under the
            // lock. A sweep now runs only once the oldest key has expired.
            if seen.oldest_expires.is_some_and(|at| now < at) {
                return Self::known_or_full(&seen.keys, &key, now, self.window);
            }
            seen.keys
                .retain(|_, t| now.duration_since(*t) < self.window);
            seen.oldest_expires = seen.keys.values().min().map(|t| *t + self.window);
            if seen.keys.len() >= MAX_KEYS {
                // Let nothing new through until then rather than grow
                // without bound.
                return Self::known_or_full(&seen.keys, &key, now, self.window);
            }
        }
        let seen = &mut seen.keys;
        match seen.get(&key) {
            Some(t) if now.duration_since(*t) < self.window => Window::Again,
            _ => {
                seen.insert(key, now);
                Window::First
            }
        }
    }

    /// A full map's answer: a key seen in its window is a repeat, as ever.
    fn known_or_full(
        keys: &HashMap<String, Instant>,
        key: &str,
        now: Instant,
        window: Duration,
    ) -> Window {
        match keys.get(key) {
            Some(t) if now.duration_since(*t) < window => Window::Again,
            _ => Window::Full,
        }
    }
}

/// What [`RateLimit::admit`] says of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The first time in its window: let through.
    First,
    /// Seen within its window already: the limit holds it back.
    Again,
    /// New, but the map is full: held back only for want of room.
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record handed over by another handshake with the same leaf but
    /// other intermediates (someone replaying a victim's public leaf with
    /// a chain of their choosing, whose handshake then fails) is not
    /// attached to the victim's connection: its record is its own chain.
    #[test]
    fn a_record_with_another_chain_is_not_taken() {
        let cert = |cn: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            CertificateDer::from(p.self_signed(&key).unwrap().der().to_vec())
        };
        let (leaf, junk) = (cert("victim"), cert("chosen by someone else"));
        hand_over(Arc::new(
            Identity::from_chain(&[leaf.clone(), junk.clone()]).unwrap(),
        ));
        let victim = [leaf.clone()];
        let id = take(&victim, None).unwrap();
        assert_eq!(id.chain, victim, "another handshake's chain was attached");
        // The victim's own record is taken as handed over.
        let own = Arc::new(Identity::from_chain(&[leaf.clone(), junk.clone()]).unwrap());
        hand_over(own.clone());
        assert!(Arc::ptr_eq(&take(&[leaf, junk], None).unwrap(), &own));
    }

    /// Records left behind by handshakes that failed after the
    /// certificate check (each up to a 64 KiB chain) are bounded by the
    /// bytes they hold, not only by their count: 4096 of them held about
    /// 256 MiB. The newest record is still there to take.
    #[test]
    fn the_handoff_is_bounded_in_bytes() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        let leaf = CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec());
        let mut id = Identity::from_chain(&[leaf]).unwrap();
        // An intermediate a client may send, as large as a handshake allows.
        id.chain.push(CertificateDer::from(vec![0x30; 60 * 1024]));
        let mut handoff = Handoff::default();
        let mut last = Vec::new();
        for i in 0u32..(2 * HANDOFF_MAX_BYTES / (60 * 1024)) as u32 {
            let mut id = id.clone();
            // Another leaf each (the key), as many clients' would be.
            let mut der = id.chain[0].to_vec();
            der.extend_from_slice(&i.to_be_bytes());
            id.chain[0] = CertificateDer::from(der);
            last = id.leaf().to_vec();
            handoff.insert(Arc::new(id));
            assert!(
                handoff.bytes() <= HANDOFF_MAX_BYTES,
                "{} bytes after {i}",
                handoff.bytes()
            );
        }
        // The same leaf handed over again replaces its record.
        let again = handoff.records[&last].clone();
        handoff.insert(again);
        handoff.bytes();
        assert!(
            handoff.remove(&last).is_some(),
            "the newest record was dropped"
        );
        handoff.bytes();
    }

    /// Copies of a certificate are given once, in the order first sent,
    /// and at most [`MAX_PER_NAME`] certificates of one subject name;
    /// those of other names and what does not parse are all given.
    #[test]
    fn intermediates_are_given_once_each_and_bounded_per_name() {
        let ca = |cn: &str| {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            CertificateDer::from(p.self_signed(&key).unwrap().der().to_vec())
        };
        let named: Vec<CertificateDer<'static>> = (0..6).map(|_| ca("issuer")).collect();
        let (other, junk) = (ca("other"), CertificateDer::from(vec![0x30, 0]));
        let mut sent = vec![named[0].clone(), named[0].clone(), other.clone()];
        sent.extend(named.iter().cloned());
        sent.extend([junk.clone(), other.clone(), junk.clone()]);
        let given = distinct(&sent);
        let mut want = vec![named[0].clone(), other];
        want.extend(named[1..MAX_PER_NAME].iter().cloned());
        want.push(junk);
        assert_eq!(given, want);
    }

    /// A key is let through once per window; others are independent.
    #[test]
    fn rate_limit_once_per_window() {
        let r = RateLimit::new(Duration::from_secs(60));
        assert!(r.first_in_window("a".into()));
        assert!(!r.first_in_window("a".into()));
        assert!(r.first_in_window("b".into()));
        let r = RateLimit::new(Duration::ZERO);
        assert!(r.first_in_window("a".into()));
        assert!(r.first_in_window("a".into()));
        // Full: nothing new is remembered (nor logged) until the oldest
        // key expires; known keys still answer as before.
        let r = RateLimit::new(Duration::from_secs(60));
        for i in 0..MAX_KEYS {
            assert!(r.first_in_window(format!("k{i}")));
        }
        assert_eq!(r.admit("new".into()), Window::Full);
        assert_eq!(
            r.admit("k0".into()),
            Window::Again,
            "known: the window's own limit"
        );
        let oldest = r.seen.lock().unwrap().oldest_expires;
        assert!(oldest.is_some(), "the sweep noted when to look again");
        assert!(!r.first_in_window("newer".into()));
        assert_eq!(
            r.seen.lock().unwrap().oldest_expires,
            oldest,
            "no sweep before then"
        );
    }
}
