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
use crate::material::{CertInfo, Loaded, Material, Pair, info, keys};

pub use super::error::{MaterialError, Step};

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
        files => files.paths().iter().map(|p| super::shown_path(p)).collect(),
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
        files => {
            let mut total = 0;
            let mut parts = Vec::new();
            for path in files.paths() {
                let bytes = read_file(path)?;
                total += bytes.len() as u64;
                if total > MAX_ENTRY_BYTES {
                    return Err(MaterialError::Unreadable {
                        origin: super::shown_path(path),
                        reason: format!(
                            "the entry's files together pass the {MAX_ENTRY_BYTES}-byte limit"
                        ),
                    });
                }
                parts.push(bytes);
            }
            Ok(parts)
        }
    }
}

/// The largest PEM file read (a certificate chain, a key, a CA bundle, a
/// CRL): a system CA bundle is ~200 KiB; anything bigger is a mistake or
/// hostile, and is refused before it is loaded into memory.
pub const MAX_PEM_FILE: u64 = 1 << 20;

/// The most bytes one read of an entry's files holds together: a CA bundle
/// with up to 64 CRL files of `MAX_PEM_FILE` each, read twice to see two
/// reads agree, held over 100 MiB on the reloader's thread.
pub const MAX_ENTRY_BYTES: u64 = 8 << 20;

fn read_file(path: &Path) -> Result<Vec<u8>, MaterialError> {
    crate::fsutil::read_regular(path, MAX_PEM_FILE).map_err(|e| {
        let origin = super::shown_path(path);
        if e.problem.is_not_found() {
            MaterialError::Missing { origin }
        } else if e.problem.is_out_of_resources() {
            MaterialError::OutOfResources {
                origin,
                reason: e.problem.to_string(),
            }
        } else if e.problem.is_permission_denied() {
            MaterialError::Denied {
                origin,
                reason: e.problem.to_string(),
            }
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

/// What an entry's files hold now, as a hash a later re-read compares
/// with (`Entry::files_hash`): their content's, or, when they do not read
/// (a file missing, unreadable), one standing for that state, so a re-read
/// that finds them so still sees them unchanged and files that appear are
/// a change. `None` while a writer is at work (no two reads agree): any
/// state the files settle in differs. `Err` when the read found hotproxy
/// out of file descriptors or memory, which says nothing of the files:
/// taken for their state, files that never changed would differ from it
/// at their next read.
pub fn files_state(source: &EntrySource) -> Result<Option<[u8; 32]>, MaterialError> {
    match read_consistent(source) {
        Ok(raw) => Ok(Some(raw.hash)),
        Err(e) if e.is_out_of_resources() => Err(e),
        Err(MaterialError::Unsettled { .. }) => Ok(None),
        Err(e) => Ok(Some(unreadable_state(&e))),
    }
}

/// How many bytes an entry's files hold together now, as `stat` says (a
/// file not there or not to be looked at counts 0; inline material 0).
/// Files that hold more than at any read before since they stopped loading
/// are a writer getting on (SPEC §3).
pub fn files_size(source: &EntrySource) -> u64 {
    let size = |p: &&Path| std::fs::metadata(p).map_or(0, |m| m.len());
    source.paths().iter().map(size).sum()
}

/// The `files_state` of files that do not read with `e`. Content hashes
/// begin with a part's 8-byte big-endian length, never 0xff: the two
/// cannot collide.
pub fn unreadable_state(e: &MaterialError) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&[0xff]);
    ctx.update(e.to_string().as_bytes());
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
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
    if let Some(reason) = misplaced_marker(bytes) {
        return Err(MaterialError::BadLayout {
            origin: origin.into(),
            reason,
        });
    }
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes) {
        match item {
            // Nothing between BEGIN and END (a template, a paste that lost
            // its body): no writer leaves one on the way, so refused at
            // once, by its label, not as the DER parser's "Parsing
            // requires 1 bytes/chars".
            Ok((kind, der)) if der.is_empty() => {
                return Err(MaterialError::BadLayout {
                    origin: origin.into(),
                    reason: format!(
                        "empty {} block (nothing between its BEGIN and END lines)",
                        label_of(kind)
                    ),
                });
            }
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

/// The label a section of `kind` has in its BEGIN line.
fn label_of(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        _ => "PEM",
    }
}

/// Why a BEGIN or END line does not start its line, if one does not. The
/// PEM reader sees only lines that start with the marker, so a UTF-8
/// byte-order mark (a Windows editor's) or an indented line left its
/// section unread, which looked like a file cut short and was waited on.
fn misplaced_marker(bytes: &[u8]) -> Option<String> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    if bytes.starts_with(BOM) {
        return Some("starts with a byte-order mark (U+FEFF); save it without one".into());
    }
    let begins = marker_labels(bytes, b"-----BEGIN ").map(|(at, _)| (at, "BEGIN"));
    let ends = marker_labels(bytes, b"-----END ").map(|(at, _)| (at, "END"));
    let (at, which) = begins
        .chain(ends)
        .filter(|&(at, _)| at > 0 && bytes[at - 1] != b'\n')
        .min_by_key(|&(at, _)| at)?;
    let line_start = bytes[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |n| n + 1);
    let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
    Some(match &bytes[line_start..at] {
        BOM => format!(
            "a byte-order mark (U+FEFF) before the {which} marker on line {line} (files joined?)"
        ),
        _ => format!("{which} marker not at the start of a line (line {line})"),
    })
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
        let info = info::certificate(origin, &der)?;
        infos.push(info);
        ders.push(CertificateDer::from(der));
    }
    if ders.is_empty() {
        return Err(MaterialError::NoCertificate {
            origin: origin.into(),
            text_only: text_only(bytes),
            other_half: false,
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
        text_only: text_only(bytes),
        other_half: false,
    })
}

/// `e` as a half-written pair file's: a pair read from one file whose
/// `bytes` lack the certificates and hold a key, or the other way round,
/// is caught between a writer's two steps (`cat fullchain.pem >
/// server.pem; cat privkey.pem >> server.pem`). Two files are not.
fn half_written(mut e: MaterialError, source: &EntrySource, bytes: &[u8]) -> MaterialError {
    use SectionKind as K;
    let (origin, other_half, want_key) = match &mut e {
        MaterialError::NoCertificate {
            origin, other_half, ..
        } => (origin, other_half, false),
        MaterialError::NoKey {
            origin, other_half, ..
        } => (origin, other_half, true),
        _ => return e,
    };
    let holds_other = sections(origin, bytes).is_ok_and(|found| {
        found.iter().any(|(kind, _)| match want_key {
            true => *kind == K::Certificate,
            false => matches!(kind, K::PrivateKey | K::RsaPrivateKey | K::EcPrivateKey),
        })
    });
    *other_half = holds_other && one_file(source);
    e
}

/// Whether a pair's certificates and key come from one file: one path,
/// or two that resolve to the same file.
fn one_file(source: &EntrySource) -> bool {
    let EntrySource::PairFiles {
        cert_file,
        key_file,
    } = source
    else {
        return false;
    };
    cert_file == key_file
        || matches!(
            (std::fs::canonicalize(cert_file), std::fs::canonicalize(key_file)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// Whether `bytes` are text with no BEGIN line (yet): what a writer that
/// writes text before the PEM leaves until it gets there (`openssl x509
/// -text`'s certificate or `openssl crl -text`'s CRL as text, `openssl
/// pkcs12`'s "Bag Attributes" lines), so a file that may still be
/// changing. Not a binary file (a DER certificate or CRL, where PEM was
/// meant), which no writer of PEM leaves on the way: its control bytes
/// (tags, lengths) tell it from text.
pub(super) fn text_only(bytes: &[u8]) -> bool {
    !bytes.windows(11).any(|w| w == b"-----BEGIN ")
        && bytes
            .iter()
            .all(|&b| (b >= 0x20 && b != 0x7f) || b"\t\n\r".contains(&b))
}

/// Parse and validate raw bytes as `kind`: pairs need a certificate chain
/// and a key that matches the leaf; CA bundles need at least one
/// certificate; CRLs must parse.
pub fn parse(kind: EntryKind, source: &EntrySource, raw: &Raw) -> Result<Material, MaterialError> {
    let names = origins(source);
    if kind.is_pair() {
        let (chain, infos) = certificates(&names[0], &raw.parts[0])
            .map_err(|e| half_written(e, source, &raw.parts[0]))?;
        if super::der::leaf_signature_fails(&chain) {
            return Err(MaterialError::BadSignature {
                origin: names[0].clone(),
            });
        }
        let key = private_key(&names[1], &raw.parts[1])
            .map_err(|e| half_written(e, source, &raw.parts[1]))?;
        let provider = crate::tls::provider::get();
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| keys::refused(&names[1], &key, &e.to_string()))?;
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
        if let Some((purpose, any)) = missing_purpose(kind, &certified.cert[0]) {
            let instead = match any {
                true => " (anyExtendedKeyUsage does not stand in for it)",
                false => "",
            };
            return Err(MaterialError::BadCertificate {
                origin: names[0].clone(),
                reason: format!(
                    "not for a TLS {purpose}: its extendedKeyUsage lacks {purpose}Auth{instead}, \
                     which TLS peers require when the extension is there; \
                     re-issue it with {purpose}Auth"
                ),
            });
        }
        let leaf = infos.into_iter().next().expect("at least one certificate");
        // hotproxy staples no OCSP response: a served certificate that
        // requires one is refused by the clients that enforce it.
        let mut notes = Vec::new();
        if kind == EntryKind::ServerPair && super::der::must_staple(&certified.cert[0]) {
            notes.push(super::Note::MustStaple {
                file: names[0].clone(),
                subject: leaf.subject.clone(),
            });
        }
        Ok(Material::Pair(Pair {
            key: Arc::new(certified),
            leaf,
            notes,
        }))
    } else {
        super::bundle::parse(&names, &raw.parts)
    }
}

/// The purpose (`server`, `client`) a pair's leaf is served for and its
/// extendedKeyUsage leaves out, and whether it holds anyExtendedKeyUsage:
/// webpki, OpenSSL, Go and browsers refuse a leaf without its purpose in
/// every handshake, so loading it would only replace working material with
/// failing handshakes. A server leaf needs serverAuth itself: rustls
/// (webpki) refuses one with anyExtendedKeyUsage in its place
/// (`InvalidPurpose`), as OpenSSL does. A client leaf may have
/// anyExtendedKeyUsage instead of clientAuth: the upstream judges it, and
/// Go's and Java's servers take it. `None` without the extension (any
/// purpose), or for a leaf x509-parser does not read.
fn missing_purpose(kind: EntryKind, leaf: &[u8]) -> Option<(&'static str, bool)> {
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let eku = cert.extended_key_usage().ok()??.value;
    let (purpose, allowed) = match kind {
        EntryKind::ServerPair => ("server", eku.server_auth),
        EntryKind::ClientPair => ("client", eku.client_auth || eku.any),
        _ => return None,
    };
    (!allowed).then_some((purpose, eku.any))
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
    certificates(&super::shown_path(path), &bytes).map(|(_, infos)| infos)
}

#[cfg(test)]
mod tests;
