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
use crate::material::{info, pem};

/// What `write` produced.
pub struct DevPki {
    pub dir: PathBuf,
    pub ca_reused: bool,
    pub server_fingerprint: String,
    pub client_fingerprint: String,
}

impl fmt::Display for DevPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.dir.display();
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

/// A PEM file of a previous run, if there is a readable one.
fn read_pem(path: &Path) -> Option<String> {
    let bytes = read_regular(path, pem::MAX_PEM_FILE).ok()?;
    String::from_utf8(bytes).ok()
}

/// Write (or re-issue) the dev PKI in `out`. `names` are the server
/// certificate's DNS names / IPs (default `localhost`, `127.0.0.1`).
pub fn write(out: &Path, names: &[String]) -> anyhow::Result<DevPki> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let ca_crt = out.join("ca.crt");
    let ca_key = out.join("ca.key");
    let existing =
        match (read_pem(&ca_crt), read_pem(&ca_key)) {
            (Some(c), Some(k)) => {
                let key = KeyPair::from_pem(&k)
                    .with_context(|| format!("{}: not a usable CA key", ca_key.display()))?;
                Some(Issuer::from_ca_cert_pem(&c, key).with_context(|| {
                    format!("{}: not a usable CA certificate", ca_crt.display())
                })?)
            }
            _ => None,
        };
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
    )?;
    let client_fingerprint = issue(
        out,
        "client",
        &issuer,
        "hotproxy-dev-client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok(DevPki {
        dir: out.to_path_buf(),
        ca_reused,
        server_fingerprint,
        client_fingerprint,
    })
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
        let pair = pem::load(
            EntryKind::ServerPair,
            &EntrySource::PairFiles {
                cert_file: dir.path().join("server.crt"),
                key_file: dir.path().join("server.key"),
            },
        )
        .unwrap();
        let leaf = &pair.pair().unwrap().leaf;
        assert_eq!(leaf.fingerprint_sha256, second.server_fingerprint);
        assert_eq!(leaf.sans, ["localhost", "127.0.0.1"]);
    }
}
