//! Reading and validating an entry's PEM: consistent re-reads, key/leaf match.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::InconsistentKeys;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{EntryKind, EntrySource};
use crate::material::{CertInfo, Loaded, Material, Pair, info};

/// Raw bytes of every source of an entry, in `EntrySource` order, with
/// their combined hash. Holds key bytes: never formatted.
pub struct Raw {
    pub parts: Vec<Vec<u8>>,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Raw([redacted])")
    }
}

/// Why material could not be loaded. Messages name the file (or
/// `inline cert_pem` etc.) and never contain PEM or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("{origin}: file not found")]
    Missing { origin: String },
    #[error("{origin}: cannot read: {reason}")]
    Unreadable { origin: String, reason: String },
    #[error("{origin}: file is empty")]
    Empty { origin: String },
    #[error("{origin}: no PEM certificate found")]
    NoCertificate { origin: String },
    #[error("{origin}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { origin: String },
    #[error("{origin}: malformed PEM: {reason}")]
    BadPem { origin: String, reason: String },
    #[error("{origin}: invalid certificate: {reason}")]
    BadCertificate { origin: String, reason: String },
    #[error("{origin}: unusable private key: {reason}")]
    BadKey { origin: String, reason: String },
    #[error("{key}: private key does not match the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    /// A CA certificate x509-parser reads and webpki, which verifies
    /// peers against it, refuses as a trust anchor.
    #[error(
        "{origin}: certificate {position} ({subject}) is not usable as a trust anchor: {reason}"
    )]
    BadAnchor {
        origin: String,
        /// 1-based, in file order.
        position: usize,
        subject: String,
        reason: String,
    },
    #[error("{origin}: invalid CRL: {reason}")]
    BadCrl { origin: String, reason: String },
    #[error("{origin}: kept changing while being read; no two consecutive reads agreed")]
    Unsettled { origin: String },
    /// A whole PEM section of a kind hotproxy does not read: not a writer
    /// mid-way, so refused at once, by its label.
    #[error("{origin}: unsupported PEM section `{label}`: {hint}")]
    UnsupportedSection {
        origin: String,
        label: String,
        hint: &'static str,
    },
}

impl MaterialError {
    /// True for problems a writer in the middle of its work produces for a
    /// moment (a certbot relink leaves a link missing, or an old cert with a
    /// new key; a `cp` leaves a truncated file): the reloader waits
    /// `settle_timeout` before calling these a failure.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MaterialError::Missing { .. }
                | MaterialError::KeyMismatch { .. }
                | MaterialError::Unsettled { .. }
                | MaterialError::Empty { .. }
                | MaterialError::BadPem { .. }
        )
    }
}

/// Where each source is, for error messages: the path, or `inline cert_pem`.
pub fn origins(source: &EntrySource) -> Vec<String> {
    match source {
        EntrySource::PairInline { .. } => vec!["inline cert_pem".into(), "inline key_pem".into()],
        EntrySource::CaInline { crl_pem, .. } => {
            let mut v = vec!["inline ca_pem".to_owned()];
            if crl_pem.is_some() {
                v.push("inline crl_pem".into());
            }
            v
        }
        files => files
            .paths()
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}

fn read_once(source: &EntrySource) -> Result<Vec<Vec<u8>>, MaterialError> {
    match source {
        EntrySource::PairInline { cert_pem, key_pem } => Ok(vec![
            cert_pem.as_bytes().to_vec(),
            key_pem.expose().as_bytes().to_vec(),
        ]),
        EntrySource::CaInline { ca_pem, crl_pem } => {
            let mut v = vec![ca_pem.as_bytes().to_vec()];
            if let Some(c) = crl_pem {
                v.push(c.as_bytes().to_vec());
            }
            Ok(v)
        }
        files => files.paths().into_iter().map(read_file).collect(),
    }
}

/// The largest PEM file read (a certificate chain, a key, a CA bundle, a
/// CRL): a system CA bundle is ~200 KiB; anything bigger is a mistake or
/// hostile, and is refused before it is loaded into memory.
pub const MAX_PEM_FILE: u64 = 1 << 20;

fn read_file(path: &Path) -> Result<Vec<u8>, MaterialError> {
    crate::fsutil::read_regular(path, MAX_PEM_FILE).map_err(|e| {
        let origin = path.display().to_string();
        if e.problem.is_not_found() {
            MaterialError::Missing { origin }
        } else {
            MaterialError::Unreadable {
                origin,
                reason: e.problem.to_string(),
            }
        }
    })
}

fn hash(parts: &[Vec<u8>]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        // Length-prefixed, so moving bytes between files changes the hash.
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Read every source of the entry until two consecutive reads agree
/// (bounded attempts), so a swap between reading the cert and the key can
/// never produce a torn pair.
pub fn read_consistent(source: &EntrySource) -> Result<Raw, MaterialError> {
    let mut previous = read_once(source)?;
    for _ in 0..5 {
        let again = read_once(source)?;
        if again == previous {
            let hash = hash(&again);
            return Ok(Raw { parts: again, hash });
        }
        previous = again;
    }
    Err(MaterialError::Unsettled {
        origin: origins(source).join(", "),
    })
}

/// Count PEM sections of one kind, and fail on anything malformed: a
/// half-written file must be an error, never a silently shorter chain.
pub(super) fn sections(
    origin: &str,
    bytes: &[u8],
) -> Result<Vec<(SectionKind, Vec<u8>)>, MaterialError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(MaterialError::Empty {
            origin: origin.into(),
        });
    }
    // A key encrypted the old way (`openssl ec -aes256`, `openssl genrsa
    // -traditional -aes256`, OpenSSL 1.x's `genrsa -aes256`): RFC 1421
    // headers after the BEGIN line, which are no base64. Refused at once
    // as `ENCRYPTED PRIVATE KEY` is, not waited on as a half-written file.
    if let Some(label) = old_style_encrypted_key(bytes) {
        return Err(encrypted_key(origin, label));
    }
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes) {
        match item {
            Ok(s) => out.push(s),
            Err(e) => {
                return Err(MaterialError::BadPem {
                    origin: origin.into(),
                    reason: pem_reason(&e),
                });
            }
        }
    }
    // pem_slice_iter skips sections it does not know. A whole one is
    // skipped here too when it is `EC PARAMETERS` (what `openssl ecparam
    // -genkey` writes before the key; OpenSSL, Go, and so nginx, Envoy and
    // Traefik skip it), else refused by its label at once. A BEGIN line
    // left without its section is a truncated file: malformed, waited on.
    // Where each label's last END line is, found in one pass: searching
    // the rest of the file for every BEGIN took minutes of the reloader's
    // time on a (hostile) file of many BEGIN lines.
    let last_end: std::collections::HashMap<&[u8], usize> = marker_labels(bytes, b"-----END ")
        .map(|(at, label)| (label, at))
        .collect();
    let mut begins = 0;
    for (at, label) in marker_labels(bytes, b"-----BEGIN ") {
        begins += 1;
        if SectionKind::try_from(label).is_ok() {
            continue;
        }
        if last_end.get(label).is_none_or(|&end| end < at) {
            continue;
        }
        if label == b"EC PARAMETERS" {
            begins -= 1;
            continue;
        }
        return Err(unsupported(origin, label));
    }
    if begins != out.len() {
        return Err(MaterialError::BadPem {
            origin: origin.into(),
            reason: format!(
                "{begins} BEGIN markers but {} complete sections (truncated or unknown section)",
                out.len()
            ),
        });
    }
    Ok(out)
}

/// Each `-----BEGIN LABEL-----` (`marker` `-----BEGIN `) or `-----END
/// LABEL-----` line's position and label.
fn marker_labels<'a>(
    bytes: &'a [u8],
    marker: &'static [u8],
) -> impl Iterator<Item = (usize, &'a [u8])> {
    (0..bytes.len().saturating_sub(marker.len() - 1))
        .filter(move |&i| bytes[i..].starts_with(marker))
        .map(move |i| {
            // The label ends its line: looked for there, not in the rest
            // of a (hostile) file for every marker in it.
            let rest = &bytes[i + marker.len()..];
            let line = &rest[..rest
                .iter()
                .take(80)
                .position(|&b| b == b'\n')
                .unwrap_or(rest.len().min(80))];
            let len = line.windows(5).position(|w| w == b"-----");
            (i, &rest[..len.unwrap_or(0)])
        })
}

/// The label of the first key section (`... PRIVATE KEY`) whose BEGIN line
/// is followed by a `Proc-Type: 4,ENCRYPTED` header (RFC 1421), if any.
fn old_style_encrypted_key(bytes: &[u8]) -> Option<&[u8]> {
    marker_labels(bytes, b"-----BEGIN ")
        .filter(|(_, label)| label.ends_with(b"PRIVATE KEY"))
        .find(|&(at, _)| {
            let rest = &bytes[at..];
            let Some(eol) = rest.iter().take(80).position(|&b| b == b'\n') else {
                return false;
            };
            let next = &rest[eol + 1..];
            let next = &next[..next.len().min(80)];
            let next = &next[..next.iter().position(|&b| b == b'\n').unwrap_or(next.len())];
            next.starts_with(b"Proc-Type:") && next.windows(9).any(|w| w == b"ENCRYPTED")
        })
        .map(|(_, label)| label)
}

const ENCRYPTED_HINT: &str = "an encrypted private key; hotproxy reads unencrypted keys (decrypt it: openssl pkey -in KEY -out PLAIN)";

/// The error for an encrypted key in a section of `label`.
fn encrypted_key(origin: &str, label: &[u8]) -> MaterialError {
    section_error(origin, label, ENCRYPTED_HINT)
}

/// The error for a whole section of `label`, with what to do about it.
fn unsupported(origin: &str, label: &[u8]) -> MaterialError {
    let hint = match label {
        b"ENCRYPTED PRIVATE KEY" => ENCRYPTED_HINT,
        b"TRUSTED CERTIFICATE" => {
            "OpenSSL's trusted-certificate format; write it as a plain CERTIFICATE (openssl x509 -in FILE -out PLAIN)"
        }
        _ => {
            "hotproxy reads CERTIFICATE, X509 CRL and unencrypted private keys (PKCS#8, PKCS#1, SEC1)"
        }
    };
    section_error(origin, label, hint)
}

/// An [`MaterialError::UnsupportedSection`]. The label is echoed only when
/// it looks like one (capitals, digits, spaces, at most 40), never file
/// contents.
fn section_error(origin: &str, label: &[u8], hint: &'static str) -> MaterialError {
    let printable = label.len() <= 40
        && label
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    MaterialError::UnsupportedSection {
        origin: origin.into(),
        label: match printable {
            true => String::from_utf8_lossy(label).into_owned(),
            false => "?".into(),
        },
        hint,
    }
}

/// A PEM error as text, without echoing file contents.
fn pem_reason(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a section has no END line (truncated file?)".into(),
        E::IllegalSectionStart { .. } => "illegal section start line".into(),
        E::Base64Decode(_) => "invalid base64 in a section".into(),
        E::Io(e) => e.to_string(),
        _ => "unparseable PEM".into(),
    }
}

pub(super) fn certificates(
    origin: &str,
    bytes: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, Vec<CertInfo>), MaterialError> {
    let mut ders = Vec::new();
    let mut infos = Vec::new();
    for (kind, der) in sections(origin, bytes)? {
        if kind != SectionKind::Certificate {
            continue;
        }
        let info = info::inspect(&der).map_err(|reason| MaterialError::BadCertificate {
            origin: origin.into(),
            reason,
        })?;
        infos.push(info);
        ders.push(CertificateDer::from(der));
    }
    if ders.is_empty() {
        return Err(MaterialError::NoCertificate {
            origin: origin.into(),
        });
    }
    Ok((ders, infos))
}

fn private_key(origin: &str, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, MaterialError> {
    let mut key = None;
    for (kind, der) in sections(origin, bytes)? {
        let k = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            _ => continue,
        };
        if key.is_some() {
            return Err(MaterialError::BadKey {
                origin: origin.into(),
                reason: "more than one private key in the file".into(),
            });
        }
        key = Some(k);
    }
    key.ok_or_else(|| MaterialError::NoKey {
        origin: origin.into(),
    })
}

/// Parse and validate raw bytes as `kind`: pairs need a certificate chain
/// and a key that matches the leaf; CA bundles need at least one
/// certificate; CRLs must parse.
pub fn parse(kind: EntryKind, source: &EntrySource, raw: &Raw) -> Result<Material, MaterialError> {
    let names = origins(source);
    if kind.is_pair() {
        let (chain, infos) = certificates(&names[0], &raw.parts[0])?;
        let key = private_key(&names[1], &raw.parts[1])?;
        let provider = crate::tls::provider::get();
        let signing =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| MaterialError::BadKey {
                    origin: names[1].clone(),
                    reason: e.to_string(),
                })?;
        let certified = CertifiedKey::new(chain, signing);
        let matches = match certified.keys_match() {
            Ok(()) => Some(true),
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Some(false),
            // keys_match cannot decide: webpki refuses to parse the leaf
            // (an X.509 v1 certificate, which `openssl x509 -req` writes
            // without extensions, is one), or the key cannot give its
            // public key (InconsistentKeys::Unknown). Never accepted
            // unchecked: the leaf's SubjectPublicKeyInfo as x509-parser
            // reads it is compared with the key's instead.
            Err(_) => spki_matches(&certified),
        };
        match matches {
            Some(true) => {}
            Some(false) => {
                return Err(MaterialError::KeyMismatch {
                    cert: names[0].clone(),
                    key: names[1].clone(),
                });
            }
            None => {
                return Err(MaterialError::BadKey {
                    origin: names[1].clone(),
                    reason: "cannot tell whether it matches the certificate (the key does not give its public key)".into(),
                });
            }
        }
        Ok(Material::Pair(Pair {
            key: Arc::new(certified),
            leaf: infos.into_iter().next().expect("at least one certificate"),
        }))
    } else {
        super::bundle::parse(&names, &raw.parts)
    }
}

/// Whether the key's public key (as SubjectPublicKeyInfo DER) is the
/// leaf's, as x509-parser reads the leaf; `None` when the key cannot give
/// its public key, or the leaf does not parse.
fn spki_matches(certified: &CertifiedKey) -> Option<bool> {
    let key = certified.key.public_key()?;
    let leaf = certified.cert.first()?;
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    Some(key.as_ref() == cert.public_key().raw)
}

/// `read_consistent` + `parse`.
pub fn load(kind: EntryKind, source: &EntrySource) -> Result<Loaded, MaterialError> {
    let raw = read_consistent(source)?;
    let material = parse(kind, source, &raw)?;
    Ok(Loaded {
        material,
        hash: raw.hash,
        loaded_at: SystemTime::now(),
    })
}

/// Every certificate in a PEM file (for `certs inspect`).
pub fn certificates_in(path: &Path) -> Result<Vec<CertInfo>, MaterialError> {
    let bytes = read_file(path)?;
    certificates(&path.display().to_string(), &bytes).map(|(_, infos)| infos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::test_support::{mkfifo, within_bounded_time};
    use rustls_pki_types::CertificateRevocationListDer;
    use std::path::PathBuf;

    /// Load `ca_file` as a CA bundle, failing the test if the read blocks.
    fn load_ca(ca_file: PathBuf) -> Result<Loaded, MaterialError> {
        within_bounded_time("reading the CA bundle", move || {
            let source = EntrySource::CaFiles {
                ca_file,
                crl_files: Vec::new(),
            };
            load(EntryKind::CaBundle, &source)
        })
    }

    /// A FIFO named as `ca_file` is refused at once, naming the file; no
    /// writer ever opens it, so a blocking read would hang.
    #[test]
    fn a_fifo_ca_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("ca.crt");
        mkfifo(&fifo);
        let Err(e) = load_ca(fifo.clone()) else {
            panic!("a FIFO was read")
        };
        assert_eq!(
            e,
            MaterialError::Unreadable {
                origin: fifo.display().to_string(),
                reason: "not a regular file (a FIFO)".into(),
            }
        );
    }

    /// A pair's files, written into `d`.
    fn load_pair(d: &tempfile::TempDir, cert: &str, key: &str) -> Result<Loaded, MaterialError> {
        let (cert_file, key_file) = (d.path().join("tls.crt"), d.path().join("tls.key"));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        load(
            EntryKind::ServerPair,
            &EntrySource::PairFiles {
                cert_file,
                key_file,
            },
        )
    }

    /// `openssl ecparam -name prime256v1 -genkey` writes `EC PARAMETERS`
    /// before the key: skipped, as OpenSSL and Go skip it (it was refused
    /// as a truncated file, and waited on). An encrypted key, or a section
    /// of a kind hotproxy does not read, is refused at once by its label,
    /// not waited on as a writer mid-way; a section cut off still is.
    #[test]
    fn sections_hotproxy_does_not_read() {
        let d = tempfile::tempdir().unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let (cert, key) = (pair.cert.pem(), pair.signing_key.serialize_pem());
        const PARAMS: &str =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        assert!(load_pair(&d, &cert, &format!("{PARAMS}{key}")).is_ok());
        let whole = |label: &str| format!("-----BEGIN {label}-----\nMIIB\n-----END {label}-----\n");
        for (label, says) in [
            ("ENCRYPTED PRIVATE KEY", "an encrypted private key"),
            ("TRUSTED CERTIFICATE", "openssl x509"),
            ("DSA PARAMETERS", "hotproxy reads CERTIFICATE"),
        ] {
            let e = load_pair(&d, &cert, &format!("{}{key}", whole(label))).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(&format!("`{label}`")) && text.contains(says),
                "{text}"
            );
            assert!(!e.is_transient(), "{text}");
        }
        let e = load_pair(
            &d,
            &cert,
            &format!("{key}-----BEGIN EC PARAMETERS-----\nBggq"),
        )
        .unwrap_err();
        assert!(e.is_transient(), "{e}");
        let e = load_pair(&d, &cert, &whole("<script>")).unwrap_err();
        assert!(e.to_string().contains("section `?`"), "{e}");
    }

    /// A key encrypted the old way (`openssl ec -aes256` writes `EC
    /// PRIVATE KEY` with `Proc-Type: 4,ENCRYPTED` and `DEK-Info:` headers)
    /// is refused at once, as `ENCRYPTED PRIVATE KEY` is: its headers
    /// failed base64, and it was waited on as a half-written file ("invalid
    /// base64").
    #[test]
    fn an_old_style_encrypted_key_is_refused_at_once() {
        let d = tempfile::tempdir().unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let (cert, key) = (pair.cert.pem(), pair.signing_key.serialize_pem());
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        for (label, eol) in [("EC PRIVATE KEY", "\n"), ("RSA PRIVATE KEY", "\r\n")] {
            let encrypted = [
                format!("-----BEGIN {label}-----"),
                "Proc-Type: 4,ENCRYPTED".into(),
                "DEK-Info: AES-256-CBC,6BBD6D7751A9B78DC3F7C432AA36FE53".into(),
                String::new(),
                body.clone(),
                format!("-----END {label}-----"),
                String::new(),
            ]
            .join(eol);
            let e = load_pair(&d, &cert, &encrypted).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(&format!("`{label}`")) && text.contains("an encrypted private key"),
                "{text}"
            );
            assert!(!e.is_transient(), "{text}");
        }
    }

    /// A file of many BEGIN lines of a kind hotproxy does not read, and
    /// no END line: each used to be looked for in the rest of the file,
    /// which took minutes (1 MiB of them: ~50 s in a release build, on the
    /// reloader's thread); one pass now.
    #[test]
    fn many_unknown_begin_lines_are_read_in_one_pass() {
        let cert = rcgen::generate_simple_self_signed(vec!["a.test".into()])
            .unwrap()
            .cert
            .pem();
        let mut bytes = "-----BEGIN A-----\n".repeat(40_000);
        bytes.push_str(&cert);
        let e = sections("t.pem", bytes.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.pem: malformed PEM: 40001 BEGIN markers but 1 complete sections (truncated or unknown section)"
        );
        // A whole unknown section is still refused by its label, an END
        // before its BEGIN still does not close it.
        let whole = format!("-----BEGIN A-----\nMIIB\n-----END A-----\n{cert}");
        let e = sections("t.pem", whole.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("section `A`"), "{e}");
        let backwards = format!("-----END A-----\n-----BEGIN A-----\nMIIB\n{cert}");
        let e = sections("t.pem", backwards.as_bytes()).unwrap_err();
        assert!(e.is_transient(), "{e}");
    }

    /// A CA, and a CRL from it, as PEM.
    fn ca_and_crl() -> (String, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_identifier_method = KeyIdMethod::Sha256;
        let ca = p.self_signed(&key).unwrap().pem();
        let now = time::OffsetDateTime::now_utc();
        let crl = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::new(p, key))
        .unwrap();
        (ca, crl.pem().unwrap())
    }

    /// The header length and content length of the DER value at `b`.
    fn tlv(b: &[u8]) -> (usize, usize) {
        match b[1] {
            n if n < 0x80 => (2, n as usize),
            n => {
                let k = (n & 0x7f) as usize;
                (
                    2 + k,
                    b[2..2 + k].iter().fold(0, |a, &x| a << 8 | x as usize),
                )
            }
        }
    }

    /// `content` as a DER value of `tag`.
    fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
        let len = content.len();
        let mut out = vec![tag];
        match len {
            0..0x80 => out.push(len as u8),
            0x80..0x100 => out.extend([0x81, len as u8]),
            _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    fn pem(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    /// The CRL in `pem` without its version field: a v1 CRL, which
    /// x509-parser reads and webpki (which checks revocation) refuses.
    fn as_v1(crl: &str) -> String {
        let der = CertificateRevocationListDer::from_pem_slice(crl.as_bytes()).unwrap();
        let (outer, _) = tlv(&der);
        let tbs = &der[outer..];
        let (head, len) = tlv(tbs);
        assert_eq!(tbs[head..head + 3], [2, 1, 1], "a v2 CRL's version");
        let mut body = wrap(0x30, &tbs[head + 3..head + len]);
        body.extend_from_slice(&tbs[head + len..]);
        pem("X509 CRL", &wrap(0x30, &body))
    }

    /// A self-signed X.509 v1 certificate (no version field, no
    /// extensions: what `openssl x509 -req` writes without `-extfile`),
    /// as PEM, and its key.
    fn v1_self_signed() -> (String, rcgen::KeyPair) {
        use rcgen::SigningKey;
        let pair = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let der = pair.cert.der();
        let (outer, _) = tlv(der);
        let (head, len) = tlv(&der[outer..]);
        let tbs_end = outer + head + len;
        // The TBS fields; the first is the version ([0]), the last the
        // extensions ([3]).
        let mut fields = Vec::new();
        let mut at = outer + head;
        while at < tbs_end {
            let (h, l) = tlv(&der[at..]);
            fields.push(&der[at..at + h + l]);
            at += h + l;
        }
        assert_eq!((fields[0][0], fields[fields.len() - 1][0]), (0xa0, 0xa3));
        let tbs = wrap(0x30, &fields[1..fields.len() - 1].concat());
        let (h, l) = tlv(&der[tbs_end..]);
        let algorithm = &der[tbs_end..tbs_end + h + l];
        let mut signature = vec![0];
        signature.extend(pair.signing_key.sign(&tbs).unwrap());
        let cert = wrap(
            0x30,
            &[tbs, algorithm.to_vec(), wrap(0x03, &signature)].concat(),
        );
        (pem("CERTIFICATE", &cert), pair.signing_key)
    }

    /// An X.509 v1 leaf, which webpki (so rustls's `keys_match`) refuses
    /// to parse, is checked against its key all the same: with another
    /// key it was accepted unchecked, and a mismatched pair replaced good
    /// material; with its own key it loads (hotproxy serves it; OpenSSL
    /// clients accept v1 certificates).
    #[test]
    fn a_v1_leaf_is_checked_against_its_key() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = v1_self_signed();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert!(webpki::EndEntityCert::try_from(&der).is_err());
        let loaded = load_pair(&d, &cert, &key.serialize_pem()).unwrap();
        let Material::Pair(pair) = loaded.material else {
            panic!("not a pair")
        };
        assert_eq!(pair.leaf.subject, "CN=rcgen self signed cert");
        let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let e = load_pair(&d, &cert, &other).unwrap_err();
        assert!(matches!(e, MaterialError::KeyMismatch { .. }), "{e}");
    }

    /// A CRL webpki cannot use to check revocation is refused when it is
    /// loaded, naming it: it used to load (x509-parser reads a v1 CRL),
    /// then fail when the listener's verifier was built, after the
    /// material had been taken, and `/certs/validate` called it valid.
    #[test]
    fn a_crl_webpki_refuses_is_refused_at_load() {
        let (ca, crl) = ca_and_crl();
        let load_with = |crl: String| {
            let source = EntrySource::CaInline {
                ca_pem: ca.clone(),
                crl_pem: Some(crl),
            };
            load(EntryKind::CaBundle, &source)
        };
        assert!(load_with(crl.clone()).is_ok());
        let e = load_with(as_v1(&crl)).unwrap_err();
        assert!(matches!(e, MaterialError::BadCrl { .. }), "{e}");
        assert!(e.to_string().contains("inline crl_pem"), "{e}");
    }

    /// A CA file above `MAX_PEM_FILE` is refused before it is loaded.
    #[test]
    fn an_oversize_ca_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("ca.crt");
        std::fs::write(&big, vec![b'x'; MAX_PEM_FILE as usize + 1]).unwrap();
        let Err(e) = load_ca(big.clone()) else {
            panic!("an oversize file was read")
        };
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot read: larger than the 1048576-byte limit",
                big.display()
            )
        );
    }
}
