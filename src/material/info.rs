//! Certificate metadata (x509-parser): subject, issuer, SANs, validity, fingerprint.

use serde::Serialize;

/// What operators see about a certificate. Never holds key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// RFC 4514 string, e.g. `CN=example.com, O=Example`.
    pub subject: String,
    pub issuer: String,
    /// Every SAN as text: DNS names as is, IPs as `1.2.3.4`, URIs, emails.
    pub sans: Vec<String>,
    /// The DNS SANs only (lowercase): what SNI selection matches.
    #[serde(skip)]
    pub dns_names: Vec<String>,
    /// Hex, lowercase, no separators.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER, lowercase hex without separators.
    pub fingerprint_sha256: String,
    pub is_ca: bool,
}

/// Parse one DER certificate's metadata.
pub fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    let _ = der;
    todo!("info::inspect")
}

/// SHA-256 of `der` as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    let _ = der;
    todo!("info::fingerprint")
}
