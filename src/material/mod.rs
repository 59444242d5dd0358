//! TLS material: reading and validating PEM, certificate metadata, the catalogue.

mod bundle;
pub mod catalogue;
mod crls;
mod der;
pub mod dn;
mod error;
pub mod info;
pub mod keys;
pub mod pem;
pub mod store;

use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

pub use crls::CrlRollback;
pub(crate) use der::signed_by;
pub use info::{CertInfo, CrlInfo};

/// A material file's path as its messages show it (`<path>: file not
/// found`): whole, so the operator can find the file, and escaped as
/// Rust writes a string where it must be (control and bidi characters,
/// `\\`), as every shown value is: one set from `${NAME}` holding an
/// ESC reached the terminal as is. A byte that is not UTF-8 is `\xE9`,
/// as Rust writes an `OsStr`: two paths differing only there were both
/// shown with U+FFFD. An ordinary path is shown as it is.
pub fn shown_path(path: &std::path::Path) -> String {
    let bytes = path.as_os_str().as_encoded_bytes();
    let as_is = |c: char| matches!(c, '"' | '\'') || c.escape_debug().len() == 1;
    if let Ok(text) = std::str::from_utf8(bytes)
        && text.chars().all(as_is)
    {
        return text.to_owned();
    }
    let mut shown = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match as_is(c) {
                true => shown.push(c),
                false => shown.extend(c.escape_debug()),
            }
        }
        for b in chunk.invalid() {
            shown.push_str(&format!("\\x{b:02X}"));
        }
    }
    shown
}

/// Parsed, validated material of one entry: what snapshots are built from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub material: Material,
    /// SHA-256 over the raw bytes of every source, in order: what decides
    /// whether a re-read is a change (never mtime or the config text alone).
    pub hash: [u8; 32],
    pub loaded_at: SystemTime,
}

#[derive(Clone, Debug)]
pub enum Material {
    Pair(Pair),
    Ca(CaBundle),
}

/// A certificate chain (leaf first) with its matching private key.
#[derive(Clone, Debug)]
pub struct Pair {
    /// Ready for rustls: chain + signing key, the key checked against the
    /// leaf (`keys_match()`, or the leaf's SPKI when webpki cannot parse it).
    pub key: Arc<CertifiedKey>,
    /// Metadata of the leaf.
    pub leaf: CertInfo,
    /// What it does less than it may seem to (Must-Staple).
    pub notes: Vec<Note>,
}

/// Trust anchors and revocation lists.
#[derive(Clone, Debug)]
pub struct CaBundle {
    /// Every certificate of the bundle, in file order; the trust anchors
    /// are [`anchors`](Self::anchors).
    pub roots: Vec<CertificateDer<'static>>,
    /// Positions in `roots` of the CA certificates revoked by a CRL of
    /// their issuer in the bundle (or issued by one that is): no trust
    /// anchors, as webpki never checks an anchor's revocation.
    pub revoked: Vec<usize>,
    /// Of each issuer's CRLs (one scope), the newest only, newest first:
    /// webpki checks a certificate against the first CRL of its issuer
    /// it is given that covers it.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// The file of each CRL of `crls`, in the same order: what a warning
    /// about one names.
    pub crl_files: Vec<String>,
    /// How many CRLs each CRL source held (superseded ones too), in
    /// source order: a re-read source that holds fewer than served may be
    /// a writer half-way through it (see the reloader's `cut_short`).
    pub crl_counts: Vec<usize>,
    /// Metadata of each CA certificate, in file order.
    pub certs: Vec<CertInfo>,
    /// CRLs superseded, CA certificates revoked or unchecked.
    pub notes: Vec<Note>,
    /// The earliest thisUpdate in the future (Unix seconds) of the
    /// bundle's CRLs, those not used too: then the CRLs in use are chosen
    /// again ([`CaBundle::chosen_again`]), as one set aside as not issued
    /// yet may be the newest issued.
    pub crl_due: Option<i64>,
    /// What they are chosen from again, while `crl_due` is set.
    pending: Option<Arc<bundle::Pending>>,
    /// How many times choosing them again changed the CRLs in use since
    /// the files were read: in [`Loaded::key`], as the files' hash stays.
    pub rechosen: u32,
}

/// What loaded material does less than it may seem to: logged at each
/// load, and the warnings listed by `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A CRL of the same issuer (name) and scope as a newer one of the
    /// bundle, which is used instead.
    SupersededCrl {
        file: String,
        issuer: String,
        this_update: i64,
        by_file: String,
        by_this_update: i64,
    },
    /// A CRL of the same issuer (name) and scope as a newer one of the
    /// bundle, which is used instead, signed by another key of the issuer
    /// (a CA certificate of the bundle under its name; a key rollover): the
    /// clients of this one's key are checked against the newer one, whose
    /// signature their issuer's key does not verify, and refused.
    CrlOfAnotherKey {
        file: String,
        issuer: String,
        this_update: i64,
        by_file: String,
        by_this_update: i64,
    },
    /// A CRL of the same issuer and scope as an older one of the bundle,
    /// used instead because this one is not: `why` (no CA of the bundle
    /// signed it, or its thisUpdate is in the future).
    UnusedCrl {
        file: String,
        issuer: String,
        why: String,
        by_file: String,
    },
    /// A CA certificate (`position` from 1 in `file`) revoked by a CRL of
    /// its issuer in the bundle, or issued by `revoked`, which is: not a
    /// trust anchor.
    RevokedCa {
        file: String,
        position: usize,
        subject: String,
        revoked: String,
        crl_file: String,
    },
    /// A CA certificate issued by `issuer`, another of the bundle, which
    /// has no usable CRL in it: a trust anchor whose own revocation is not
    /// checked.
    UncheckedCa {
        file: String,
        position: usize,
        subject: String,
        issuer: String,
    },
    /// A served certificate that requires OCSP stapling (TLS Feature
    /// `status_request`), which hotproxy does not do.
    MustStaple { file: String, subject: String },
    /// A CA certificate (`position` from 1 in `file`) whose key (`key`:
    /// `RSA 1024-bit`) rustls verifies no signature by: a trust anchor
    /// under which every certificate is refused in the handshake, but for
    /// those under the CAs of the bundle it issued (`issued_here`:
    /// `certificate 2 (CN=…)`), anchors themselves, whose paths end there;
    /// told by key identifier or signature, and where only the issuer's
    /// name tells, the entry says so.
    UnverifiableCaKey {
        file: String,
        position: usize,
        subject: String,
        key: String,
        issued_here: Vec<String>,
    },
}

impl Note {
    /// Worth a warning (a superseded CRL is what an appended file means).
    pub fn is_warning(&self) -> bool {
        !matches!(self, Note::SupersededCrl { .. })
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::SupersededCrl {
                file,
                issuer,
                by_file,
                ..
            } => write!(
                f,
                "{file}: a CRL of {issuer} is superseded by a newer one ({by_file}) and not used"
            ),
            Note::CrlOfAnotherKey {
                file,
                issuer,
                by_file,
                ..
            } => write!(
                f,
                "{file}: a CRL of {issuer} signed by another key than the newer one used ({by_file}) is not used: clients whose issuer certificate has that key are refused (crl_invalid), as one CRL serves an issuer name"
            ),
            Note::UnusedCrl {
                file,
                issuer,
                why,
                by_file,
            } => write!(
                f,
                "{file}: a CRL of {issuer} is not used ({why}): an older one ({by_file}) is"
            ),
            Note::RevokedCa {
                file,
                position,
                subject,
                revoked,
                crl_file,
            } => write!(
                f,
                "{file}: certificate {position} ({subject}) is not a trust anchor: {revoked} is revoked by {crl_file}"
            ),
            Note::UncheckedCa {
                file,
                position,
                subject,
                issuer,
            } => write!(
                f,
                "{file}: certificate {position} ({subject}) is issued by {issuer}, and no CRL of that issuer is given that its key verifies (none, or one signed by another key, with an algorithm not supported, or by a CA without cRLSign): its revocation is not checked (list only root CAs in ca_file and let clients send the intermediate, or add the CRL of its issuer)"
            ),
            Note::MustStaple { file, subject } => write!(
                f,
                "{file}: certificate {subject} requires OCSP stapling (Must-Staple), which hotproxy does not do: clients that enforce it (Firefox) refuse it"
            ),
            Note::UnverifiableCaKey {
                file,
                position,
                subject,
                key,
                issued_here,
            } if issued_here.is_empty() => write!(
                f,
                "{file}: certificate {position} ({subject}): {key} key; rustls verifies no signature by it: every certificate it issued is refused (unknown_ca, bad_client_cert); re-issue the CA with {}",
                keys::SUPPORTED
            ),
            Note::UnverifiableCaKey {
                file,
                position,
                subject,
                key,
                issued_here,
            } => write!(
                f,
                "{file}: certificate {position} ({subject}): {key} key; rustls verifies no signature by it: the CAs it issued that this bundle holds ({}) are trust anchors themselves, what they issue is accepted; any other certificate it issued is refused (unknown_ca, bad_client_cert): leave it out of the bundle if it issues nothing else, or re-issue it with {}",
                issued_here.join(", "),
                keys::SUPPORTED
            ),
        }
    }
}

impl CaBundle {
    /// The trust anchors: the certificates of the bundle not revoked.
    pub fn anchors(&self) -> impl Iterator<Item = &CertificateDer<'static>> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.revoked.contains(i))
            .map(|(_, c)| c)
    }

    /// Metadata of each CRL, in order (unparseable ones were refused at load).
    pub fn crl_infos(&self) -> Vec<info::CrlInfo> {
        self.crls
            .iter()
            .filter_map(|c| info::inspect_crl(c).ok())
            .collect()
    }

    /// The earliest nextUpdate of the bundle's CRLs: from then on a
    /// listener that enforces CRL expiry refuses client certificates.
    pub fn crl_next_update(&self) -> Option<i64> {
        self.crl_infos().iter().filter_map(|c| c.next_update).min()
    }
}

impl Loaded {
    /// What snapshots and the API's ETag are keyed by: the sources' hash,
    /// and for a CA bundle how many times its CRLs in use changed since
    /// they were read (a CRL dated in the future became issued), which
    /// changes what is verified and not the files.
    pub fn key(&self) -> [u8; 32] {
        let mut key = self.hash;
        if let Some(ca) = self.ca() {
            for (k, r) in key.iter_mut().zip(ca.rechosen.to_be_bytes()) {
                *k ^= r;
            }
        }
        key
    }

    pub fn pair(&self) -> Option<&Pair> {
        match &self.material {
            Material::Pair(p) => Some(p),
            Material::Ca(_) => None,
        }
    }

    pub fn ca(&self) -> Option<&CaBundle> {
        match &self.material {
            Material::Ca(c) => Some(c),
            Material::Pair(_) => None,
        }
    }

    /// What the material does less than it may seem to.
    pub fn notes(&self) -> &[Note] {
        match &self.material {
            Material::Pair(p) => &p.notes,
            Material::Ca(c) => &c.notes,
        }
    }

    /// The earliest not-after of the certificates this entry serves or
    /// trusts: the [`primary`](Self::primary) certificate's.
    pub fn not_after(&self) -> i64 {
        self.primary().map_or(0, |p| p.not_after)
    }

    /// The leaf (pair), or the CA certificate that expires first (bundle;
    /// the first in file order among equals), for summaries: the API's
    /// subject, fingerprint and dates, and the expiry logs, all describe
    /// the one certificate whose not_after is shown (they mixed the first
    /// certificate's subject with another's date). Every CA certificate
    /// is in `ca_certs`.
    pub fn primary(&self) -> Option<&CertInfo> {
        match &self.material {
            Material::Pair(p) => Some(&p.leaf),
            Material::Ca(c) => c.certs.iter().min_by_key(|c| c.not_after),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{EntryKind, EntrySource};

    /// A self-signed CA named `cn`, valid until `days` from now, as PEM.
    fn ca(cn: &str, days: i64) -> String {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(days);
        p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem()
    }

    /// A bundle's summary (subject, fingerprint, not_before; the expiry
    /// log's fingerprint) is the certificate whose not_after it shows,
    /// the one that expires first: it was the first certificate's subject
    /// and fingerprint next to the earliest not_after of the bundle, two
    /// certificates as one.
    #[test]
    fn a_bundle_s_summary_is_the_certificate_that_expires_first() {
        let source = EntrySource::CaInline {
            ca_pem: format!("{}{}", ca("late", 400), ca("soon", 10)),
            crl_pem: None,
        };
        let loaded = super::pem::load(EntryKind::CaBundle, &source).unwrap();
        let soon = &loaded.ca().unwrap().certs[1];
        let primary = loaded.primary().unwrap();
        assert_eq!(primary.subject, "CN=soon");
        assert_eq!(primary, soon);
        assert_eq!(loaded.not_after(), soon.not_after);
    }
}
