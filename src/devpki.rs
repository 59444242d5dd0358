//! Throwaway dev PKI for `certs dev-pki` and the demo: a CA, a server pair, a client pair.
//!
//! Re-running over an existing directory keeps the CA and re-issues both
//! pairs (a rotation), each file replaced atomically (temp file, fsync,
//! rename), so a proxy watching the directory sees whole files only.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::fsutil::{read_regular, write_atomic};
use crate::material::{info, pem, shown_path};

/// What `write` produced.
pub struct DevPki {
    pub dir: PathBuf,
    pub ca_reused: bool,
    pub server_fingerprint: String,
    pub client_fingerprint: String,
}

impl fmt::Display for DevPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = shown_path(&self.dir);
        writeln!(
            f,
            "{} CA in {d}/ca.crt",
            if self.ca_reused {
                "kept the"
            } else {
                "created a"
            }
        )?;
        writeln!(
            f,
            "server pair {d}/server.crt {d}/server.key  sha256 {}",
            self.server_fingerprint
        )?;
        write!(
            f,
            "client pair {d}/client.crt {d}/client.key  sha256 {}",
            self.client_fingerprint
        )
    }
}

/// A PEM file of a previous run; unreadable is an error naming it. Every
/// path here is shown as a material path is ([`shown_path`]): whole,
/// escaped as Rust writes a string (an ESC in `--out` never reaches the
/// terminal as is), as the file helpers' own errors show them.
fn read_pem(path: &Path) -> anyhow::Result<String> {
    let bytes = read_regular(path, pem::MAX_PEM_FILE)
        .map_err(|e| anyhow::anyhow!("{}: {}", shown_path(path), e.problem))?;
    String::from_utf8(bytes).with_context(|| format!("{}: not a PEM file", shown_path(path)))
}

/// Whether anything is at `path` (a dangling link too: it is not absent).
fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The CA of a previous run, or `None` when there was none. A new CA
/// replaces `ca.crt`, breaking every client that trusts the old one, so
/// it is made only when neither file is there: half a CA, an unreadable
/// one, or a key not of the certificate is an error naming the file(s).
fn existing_ca(ca_crt: &Path, ca_key: &Path) -> anyhow::Result<Option<Issuer<'static, KeyPair>>> {
    match (present(ca_crt), present(ca_key)) {
        (false, false) => return Ok(None),
        (true, false) | (false, true) => {
            let (there, missing) = if present(ca_crt) {
                (ca_crt, ca_key)
            } else {
                (ca_key, ca_crt)
            };
            anyhow::bail!(
                "{} is missing but {} exists: a new CA would replace the one clients trust (restore it, or remove both to start over)",
                shown_path(missing),
                shown_path(there)
            );
        }
        (true, true) => {}
    }
    let (c, k) = (read_pem(ca_crt)?, read_pem(ca_key)?);
    let key = KeyPair::from_pem(&k)
        .with_context(|| format!("{}: not a usable CA key", shown_path(ca_key)))?;
    // rcgen signs with whatever key it is given: pairs signed by a key
    // not of `ca.crt` verify against nothing that trusts it, and would
    // overwrite the working pairs.
    let public = key.public_key_raw().to_vec();
    let issuer = Issuer::from_ca_cert_pem(&c, key)
        .with_context(|| format!("{}: not a usable CA certificate", shown_path(ca_crt)))?;
    if certified_key(&c).as_deref() != Some(public.as_slice()) {
        anyhow::bail!(
            "{} does not match the CA certificate {}: pairs signed with it would verify against nothing that trusts {} (restore the CA's key, or remove both to start over)",
            shown_path(ca_key),
            shown_path(ca_crt),
            shown_path(ca_crt)
        );
    }
    Ok(Some(issuer))
}

/// The public key the first certificate of `pem` certifies (the bits of
/// its SubjectPublicKeyInfo, as `KeyPair::public_key_raw` gives them).
fn certified_key(pem: &str) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

/// How long the pairs are valid by default: what a public CA issues
/// (Let's Encrypt), so expiry alerts and renewals can be tried with them.
pub const DEFAULT_DAYS: u32 = 90;

/// The longest `--days` accepted (and the CA's own lifetime at least).
pub const MAX_DAYS: u32 = 3650;

/// [`write_for`] with pairs valid for [`DEFAULT_DAYS`].
pub fn write(out: &Path, names: &[String]) -> anyhow::Result<DevPki> {
    write_for(out, names, DEFAULT_DAYS)
}

/// A `--name` that can go into a certificate: an IP address, or a DNS
/// name (a `*.` wildcard allowed in front). Anything else (spaces, a URL,
/// an empty label) is refused with the reason.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    let valid = rustls_pki_types::DnsName::try_from(host).is_ok()
        && !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--name {name:?} is not a DNS name or an IP address (letters, digits and '-' in dot-separated labels, optionally starting with '*.')"
        ))
    }
}

/// Write (or re-issue) the dev PKI in `out`. `names` are the server
/// certificate's DNS names / IPs (default `localhost`, `127.0.0.1`); the
/// pairs are valid for `days` from an hour ago (clock skew), the CA for
/// [`MAX_DAYS`] (or `days`, if longer).
pub fn write_for(out: &Path, names: &[String], days: u32) -> anyhow::Result<DevPki> {
    anyhow::ensure!(
        (1..=MAX_DAYS).contains(&days),
        "--days {days}: between 1 and {MAX_DAYS}"
    );
    for name in names {
        check_name(name).map_err(anyhow::Error::msg)?;
    }
    let validity = Validity::days(days);
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", shown_path(out)))?;
    let ca_crt = out.join("ca.crt");
    let ca_key = out.join("ca.key");
    let existing = existing_ca(&ca_crt, &ca_key)?;
    let ca_reused = existing.is_some();
    let issuer = match existing {
        Some(i) => i,
        None => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = dn("hotproxy dev CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.serial_number = Some(serial());
            Validity::days(days.max(MAX_DAYS)).apply(&mut params);
            let cert = params.self_signed(&key)?;
            write_atomic(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
            write_atomic(&ca_crt, cert.pem().as_bytes(), 0o644)?;
            Issuer::new(params, key)
        }
    };
    let names: Vec<String> = if names.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into()]
    } else {
        names.to_vec()
    };
    let server_fingerprint = issue(
        out,
        "server",
        &issuer,
        &names[0],
        &names,
        ExtendedKeyUsagePurpose::ServerAuth,
        validity,
    )?;
    let client_fingerprint = issue(
        out,
        "client",
        &issuer,
        "hotproxy-dev-client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        validity,
    )?;
    Ok(DevPki {
        dir: out.to_path_buf(),
        ca_reused,
        server_fingerprint,
        client_fingerprint,
    })
}

/// A certificate's validity: from an hour ago (a client whose clock is a
/// little behind still accepts it) to `days` from now.
#[derive(Clone, Copy)]
struct Validity {
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

impl Validity {
    fn days(days: u32) -> Validity {
        let now = time::OffsetDateTime::now_utc();
        Validity {
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(i64::from(days)),
        }
    }

    fn apply(self, params: &mut CertificateParams) {
        params.not_before = self.not_before;
        params.not_after = self.not_after;
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "hotproxy dev");
    dn
}

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn issue(
    out: &Path,
    stem: &str,
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    names: &[String],
    usage: ExtendedKeyUsagePurpose,
    validity: Validity,
) -> anyhow::Result<String> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn(cn);
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.extended_key_usages = vec![usage];
    // What a public CA puts in a leaf, and what `openssl verify -x509_strict`
    // and Python 3.13's default context require: CA:FALSE (critical), a
    // critical KeyUsage, and key identifiers linking it to the CA.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial());
    validity.apply(&mut params);
    let cert = params.signed_by(&key, issuer)?;
    // Key first: a watcher that sees the new cert before the new key gets a
    // mismatched pair, which it waits out (settle_timeout) either way.
    write_atomic(
        &out.join(format!("{stem}.key")),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(
        &out.join(format!("{stem}.crt")),
        cert.pem().as_bytes(),
        0o644,
    )?;
    Ok(info::fingerprint(cert.der()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EntryKind, EntrySource};
    use crate::material::pem;
    use std::os::unix::fs::PermissionsExt;

    /// The server pair `write` left in `dir`, loaded as the proxy loads it.
    fn load_server_pair(dir: &Path) -> crate::material::Loaded {
        pem::load(
            EntryKind::ServerPair,
            &EntrySource::PairFiles {
                cert_file: dir.join("server.crt"),
                key_file: dir.join("server.key"),
            },
        )
        .unwrap()
    }

    /// A second run keeps the CA, issues new pairs, and keys stay 0600.
    #[test]
    fn reissue_is_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), &[]).unwrap();
        assert!(!first.ca_reused);
        let second = write(dir.path(), &[]).unwrap();
        assert!(second.ca_reused);
        assert_ne!(first.server_fingerprint, second.server_fingerprint);
        for key in ["ca.key", "server.key", "client.key"] {
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }
        let pair = load_server_pair(dir.path());
        let leaf = &pair.pair().unwrap().leaf;
        assert_eq!(leaf.fingerprint_sha256, second.server_fingerprint);
        assert_eq!(leaf.sans, ["localhost", "127.0.0.1"]);
        // 90 days like a public CA (not 1975..4096): expiry alerts can be tried.
        let now = crate::material::catalogue::unix(std::time::SystemTime::now());
        let days = (leaf.not_after - now) as f64 / 86_400.0;
        assert!((89.9..=90.0).contains(&days), "{days} days");
        assert!(leaf.not_before <= now);
    }

    /// Why `write` refused `dir` (a test failure if it did not).
    fn refused(dir: &Path) -> String {
        match write(dir, &[]) {
            Ok(_) => panic!(
                "write was not refused: it issued pairs over {}",
                dir.display()
            ),
            Err(e) => format!("{e:#}"),
        }
    }

    /// Half a CA, or an unreadable one, once made a new CA silently and
    /// overwrote ca.crt; now it is an error naming the file, and ca.crt
    /// stays as it was.
    #[test]
    fn half_a_ca_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &[]).unwrap();
        let (ca_crt, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        let before = fs::read(&ca_crt).unwrap();
        fs::remove_file(&ca_key).unwrap();
        let e = refused(dir.path());
        assert!(e.contains(&ca_key.display().to_string()), "{e}");
        assert_eq!(fs::read(&ca_crt).unwrap(), before);
        // A directory in the key's place: present, but unreadable.
        fs::create_dir(&ca_key).unwrap();
        let e = refused(dir.path());
        assert!(e.contains(&ca_key.display().to_string()), "{e}");
        assert_eq!(fs::read(&ca_crt).unwrap(), before);
        fs::remove_dir(&ca_key).unwrap();
        fs::remove_file(&ca_crt).unwrap();
        assert!(!write(dir.path(), &[]).unwrap().ca_reused);
    }

    /// Every file of `dir` and its bytes.
    fn contents(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    /// A `ca.key` of another CA beside `ca.crt` (a key copied from the
    /// wrong directory): the pairs issued with it verify against nothing
    /// that trusts `ca.crt`, and they overwrote the working ones. Refused,
    /// naming both files; nothing is written.
    #[test]
    fn a_ca_key_not_of_the_ca_certificate_is_refused() {
        let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(dir.path(), &[]).unwrap();
        write(other.path(), &[]).unwrap();
        let (ca_crt, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        fs::copy(other.path().join("ca.key"), &ca_key).unwrap();
        let before = contents(dir.path());
        let e = refused(dir.path());
        assert!(
            e.contains(&ca_key.display().to_string()) && e.contains(&ca_crt.display().to_string()),
            "{e}"
        );
        assert!(e.contains("does not match"), "{e}");
        assert_eq!(contents(dir.path()), before, "files were written");
    }

    #[test]
    fn days_and_names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let pki = write_for(dir.path(), &["app.example".into()], 3).unwrap();
        let pair = load_server_pair(dir.path());
        let leaf = &pair.pair().unwrap().leaf;
        assert_eq!(leaf.fingerprint_sha256, pki.server_fingerprint);
        let now = crate::material::catalogue::unix(std::time::SystemTime::now());
        assert!((leaf.not_after - now) <= 3 * 86_400 && (leaf.not_after - now) > 2 * 86_400);
        for bad in [
            "not a name",
            "https://x.example",
            "a..b",
            "-a.example",
            "",
            "x_y.example",
        ] {
            assert!(
                write_for(dir.path(), &[bad.into()], 90).is_err(),
                "{bad:?} accepted"
            );
        }
        for good in [
            "*.apps.example",
            "10.0.0.1",
            "::1",
            "localhost",
            "a-b.example",
        ] {
            check_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        assert!(write_for(dir.path(), &[], 0).is_err());
        assert!(write_for(dir.path(), &[], MAX_DAYS + 1).is_err());
    }
}
