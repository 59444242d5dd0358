//! Why an entry's material did not load, and which step of a writer's work a passing problem is.

/// Why material could not be loaded. Messages name the file (or
/// `inline cert_pem` etc.) and never contain PEM or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("{origin}: file not found")]
    Missing { origin: String },
    #[error("{origin}: cannot read: {reason}")]
    Unreadable { origin: String, reason: String },
    /// The system refused the read (EACCES, EPERM), said as `Unreadable`
    /// is. An installer leaves this for a moment: `install -o USER -m
    /// MODE` creates the file its own user's, mode 0600, writes it, and
    /// only then changes its owner and mode.
    #[error("{origin}: cannot read: {reason}")]
    Denied { origin: String, reason: String },
    /// hotproxy itself was out of what a read takes (file descriptors,
    /// its own or the system's, or memory: EMFILE, ENFILE, ENOMEM): the
    /// proxy's shortage, which says nothing of the file. Never the
    /// material's failure: the read is tried again (SPEC §3).
    #[error("{origin}: cannot read now: {reason}")]
    OutOfResources { origin: String, reason: String },
    #[error("{origin}: file is empty")]
    Empty { origin: String },
    /// `text_only`: the file holds text and no BEGIN line at all (see
    /// `text_only()`); `other_half`: it is the key file too and holds a
    /// key (`pem::half_written`); either is waited on; else it is whole.
    #[error("{origin}: no PEM certificate found")]
    NoCertificate {
        origin: String,
        text_only: bool,
        other_half: bool,
    },
    /// `text_only` and `other_half` (the file is the certificate file too
    /// and holds certificates) as for [`MaterialError::NoCertificate`].
    #[error("{origin}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        origin: String,
        text_only: bool,
        other_half: bool,
    },
    #[error("{origin}: malformed PEM: {reason}")]
    BadPem { origin: String, reason: String },
    #[error("{origin}: invalid certificate: {reason}")]
    BadCertificate { origin: String, reason: String },
    #[error("{origin}: unusable private key: {reason}")]
    BadKey { origin: String, reason: String },
    /// The leaf's signature does not verify against its issuer in the
    /// same file (or itself, self-signed): a file written over in place,
    /// not truncated, read half-way (the new leaf's head on the old one's
    /// tail, which parses when the two are of one length), waited on.
    #[error(
        "{origin}: the certificate's signature does not verify against its issuer in the file (written over in place half-way?)"
    )]
    BadSignature { origin: String },
    /// A CRL its issuer's key in the CA bundle, told by key identifier,
    /// does not verify: a file written over in place, not truncated, read
    /// half-way (the new CRL's head on the old one's signature, which
    /// parses when the two are of one length), waited on (SPEC §3).
    #[error(
        "{origin}: invalid CRL: its signature does not verify against its issuer's CA certificate in the bundle (written over in place half-way?)"
    )]
    CrlSignature { origin: String },
    /// DER of a certificate or key that does not parse, said as `BadCertificate` or
    /// `BadKey` (`what`): a file written over in place read half-way (SPEC §3), waited on.
    #[error("{origin}: {what}: {reason}")]
    Torn {
        origin: String,
        what: &'static str,
        reason: String,
    },
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
    /// A CRL file with no `X509 CRL` section; `text_only` as for
    /// [`MaterialError::NoCertificate`] (`openssl crl -text` writes the
    /// CRL as text before its PEM).
    #[error("{origin}: invalid CRL: no X509 CRL section found")]
    NoCrl { origin: String, text_only: bool },
    #[error("{origin}: kept changing while being read; no two consecutive reads agreed")]
    Unsettled { origin: String },
    /// PEM no writer leaves for a moment (a byte-order mark, an indented
    /// BEGIN line): refused at once, saying what to fix.
    #[error("{origin}: malformed PEM: {reason}")]
    BadLayout { origin: String, reason: String },
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
    /// new key; a `cp` leaves a truncated file; an `install -o -m` a file
    /// the proxy's user may not read yet; `openssl x509 -text > FILE` or
    /// `openssl crl -text > FILE` the text before the PEM): the reloader
    /// waits `settle_timeout` before calling these a failure.
    pub fn is_transient(&self) -> bool {
        self.step().is_some()
    }

    /// Whether the read failed for want of hotproxy's own resources
    /// ([`MaterialError::OutOfResources`]), not for anything of the files.
    pub fn is_out_of_resources(&self) -> bool {
        matches!(self, MaterialError::OutOfResources { .. })
    }

    /// The step of a writer's work this problem is, for a transient one
    /// ([`MaterialError::is_transient`]); `None` for the others.
    pub fn step(&self) -> Option<Step> {
        match self {
            MaterialError::Missing { .. } => Some(Step::Missing),
            MaterialError::Denied { .. } => Some(Step::Denied),
            MaterialError::KeyMismatch { .. } => Some(Step::Mismatch),
            MaterialError::NoCertificate {
                text_only: true, ..
            }
            | MaterialError::NoKey {
                text_only: true, ..
            }
            | MaterialError::NoCertificate {
                other_half: true, ..
            }
            | MaterialError::NoKey {
                other_half: true, ..
            }
            | MaterialError::NoCrl {
                text_only: true, ..
            }
            | MaterialError::Unsettled { .. }
            | MaterialError::Empty { .. }
            | MaterialError::BadPem { .. }
            | MaterialError::BadSignature { .. }
            | MaterialError::CrlSignature { .. }
            | MaterialError::Torn { .. } => Some(Step::Partial),
            _ => None,
        }
    }
}

/// A step of a writer's work that leaves an entry's files not loading
/// for a moment. Each is waited on for a `settle_timeout` of its own, from
/// the first read that finds it: a writer's next step (a certificate back
/// before its key, a leaf before its chain) is not counted against the
/// wait of the step before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A file not there (removed, a link relinked).
    Missing,
    /// A file the proxy may not read yet (`install -o USER -m MODE`).
    Denied,
    /// A file being written: empty, cut inside a PEM section, text before
    /// its PEM, or changing while read.
    Partial,
    /// A certificate and a key of different generations.
    Mismatch,
    /// A file with fewer certificates or CRLs than are served from it (a
    /// chain or bundle written in steps).
    Cut,
}

impl Step {
    /// How many kinds of step there are (the variants above). Each step
    /// lasts less than `settle_timeout` (else its wait ends), so files
    /// still not settled `KINDS` × `settle_timeout` after they first
    /// changed, holding no more than they did then or at a read since,
    /// have been through more steps than there are kinds without getting
    /// on: the writer went back to a kind of step it had left (a leaf
    /// without its chain, a certificate without its key, the leaf again
    /// ...). They are refused then (SPEC §3). Files that grow (a bundle
    /// written in place section by section, read cut inside one and at
    /// its end in turn) count from their last read that held more.
    pub const KINDS: u32 = 5;
}
