//! Certificate and CRL metadata (x509-parser): subject, issuer, SANs, validity, fingerprint, nextUpdate.

use std::fmt::Write;

use serde::Serialize;
use x509_parser::prelude::*;

use super::pem::MaterialError;

/// What operators see about a certificate. Never holds key material.
/// Serialized with RFC 3339 times (`not_before`, `not_after`) next to
/// their Unix seconds (`*_unix`) for machines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// e.g. `CN=example.com, O=Example`: the certificate's order, values escaped (RFC 4514, [`crate::material::dn`]).
    pub subject: String,
    pub issuer: String,
    /// Every SAN as text: DNS names, URIs and emails with a backslash,
    /// control characters and non-ASCII bytes as `\XX`; IPs as `1.2.3.4`.
    pub sans: Vec<String>,
    /// The DNS SANs SNI can name, as SNI selection matches them and
    /// `server_names` are taken ([`crate::config::server_name`]):
    /// lowercase, without a final `.`, each once. Left out: an IP address
    /// written as a DNS SAN (`DNS:10.0.0.5`; SNI never carries one), a name
    /// rustls refuses as SNI (`DNS:host.123`) and what is no host name, so
    /// an entry answering only those answers no name and is refused as such.
    pub dns_names: Vec<String>,
    /// The DNS SANs left out of `dns_names`, as `sans` shows them: an
    /// entry answering no name says which it could not take.
    pub dns_left_out: Vec<String>,
    /// As OpenSSL prints it ([`serial_text`]): `8A310FC2`.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER, lowercase hex without separators.
    pub fingerprint_sha256: String,
    pub is_ca: bool,
}

/// `unix_secs` as RFC 3339 in UTC (`2026-11-30T05:00:00Z`): how times are
/// shown to people in the API, logs and reports. Out-of-range values (a
/// certificate valid until year 10000) fall back to the number.
pub fn rfc3339(unix_secs: i64) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| {
            t.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_secs.to_string())
}

impl Serialize for CertInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            subject: &'a str,
            issuer: &'a str,
            sans: &'a [String],
            serial: &'a str,
            not_before: String,
            not_before_unix: i64,
            not_after: String,
            not_after_unix: i64,
            fingerprint_sha256: &'a str,
            is_ca: bool,
        }
        Out {
            subject: &self.subject,
            issuer: &self.issuer,
            sans: &self.sans,
            serial: &self.serial,
            not_before: rfc3339(self.not_before),
            not_before_unix: self.not_before,
            not_after: rfc3339(self.not_after),
            not_after_unix: self.not_after,
            fingerprint_sha256: &self.fingerprint_sha256,
            is_ca: self.is_ca,
        }
        .serialize(s)
    }
}

/// A DNS name [`inspect`] took, as its set of taken names compares them:
/// each comparison is counted on the thread under test, so a test tells
/// a look-up per name from a search of the names taken so far without
/// timing anything.
struct Taken(String);

impl PartialEq for Taken {
    fn eq(&self, other: &Taken) -> bool {
        #[cfg(test)]
        COMPARED.with(|c| c.set(c.get() + 1));
        self.0 == other.0
    }
}

impl Eq for Taken {}

impl std::hash::Hash for Taken {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

#[cfg(test)]
thread_local! {
    /// How many times two [`Taken`] names were compared on this thread.
    pub(crate) static COMPARED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// [`inspect`] of a certificate read from `origin`. DER under whole PEM
/// that does not parse is what a writer that does not truncate (`rsync
/// --inplace`, `dd conv=notrunc`) leaves read half-way over a certificate
/// of another length (an ECDSA signature a byte longer, a serial): the new
/// PEM's head on the old one's tail, whole base64 up to the old END line,
/// a certificate cut short or followed by trailing bytes. So it is
/// [`MaterialError::Torn`], waited on, not refused at once.
pub(super) fn certificate(origin: &str, der: &[u8]) -> Result<CertInfo, MaterialError> {
    inspect(der).map_err(|reason| MaterialError::Torn {
        origin: origin.into(),
        what: "invalid certificate",
        reason,
    })
}

/// Parse one DER certificate's metadata.
pub fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    let mut sans = Vec::new();
    let mut dns_names = Vec::new();
    // What `dns_names` holds, to take each name once in one look-up: a
    // search of the list made a certificate of 130,000 SANs (1 MiB of
    // PEM) cost half a minute per load on the reloader's thread.
    let mut seen: std::collections::HashSet<Taken> = std::collections::HashSet::new();
    let mut dns_left_out = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    sans.push(san_text(d));
                    match crate::config::server_name(d) {
                        Ok(name) => {
                            if seen.insert(Taken(name.clone())) {
                                dns_names.push(name);
                            }
                        }
                        Err(_) => dns_left_out.push(san_text(d)),
                    }
                }
                GeneralName::IPAddress(b) => sans.push(ip_text(b)),
                GeneralName::URI(u) => sans.push(san_text(u)),
                GeneralName::RFC822Name(m) => sans.push(san_text(m)),
                _ => {}
            }
        }
    }
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    Ok(CertInfo {
        subject: crate::material::dn::text(cert.subject()),
        issuer: crate::material::dn::text(cert.issuer()),
        sans,
        dns_names,
        dns_left_out,
        serial: serial_text(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        fingerprint_sha256: fingerprint(der),
        is_ca,
    })
}

/// What operators see about a certificate revocation list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CrlInfo {
    /// Escaped as subjects are ([`crate::material::dn::text`]): a CRL's
    /// issuer is whatever name its signer chose, and `check` prints it.
    pub issuer: String,
    /// Unix seconds.
    pub this_update: i64,
    /// Unix seconds; past it, verifiers treat the list as stale (RFC 5280
    /// §5.1.2.5). `None` when the CRL carries none.
    pub next_update: Option<i64>,
}

/// Parse one DER CRL's metadata.
pub fn inspect_crl(der: &[u8]) -> Result<CrlInfo, String> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| e.to_string())?;
    Ok(CrlInfo {
        issuer: crate::material::dn::text(crl.issuer()),
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
    })
}

/// A name from a SAN as text people read (`certs inspect`, `check`, the
/// API): a backslash, control characters and each byte of a non-ASCII
/// character as `\XX`, as subjects are escaped ([`crate::material::dn`]),
/// so a name carrying a terminal escape (`ESC ]0;...BEL`) cannot retitle
/// or repaint the operator's terminal.
fn san_text(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            c if c == '\\' || c.is_ascii_control() || !c.is_ascii() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(b).expect("len 4")).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("len 16")).to_string(),
        _ => hex(b),
    }
}

/// A certificate serial (the DER INTEGER's content bytes) as nginx's
/// `$ssl_client_serial` and `openssl x509 -serial` print it: uppercase hex
/// of the number, without the 0x00 DER puts before a positive number whose
/// top bit is set (`00 8a 31` is `8A31`); a negative serial, which RFC 5280
/// forbids but some CAs issued, is `-` and its magnitude, as OpenSSL
/// writes it.
pub fn serial_text(der: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let push = |out: &mut String, b: u8| {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    };
    let mut out = String::with_capacity(der.len() * 2 + 1);
    match der {
        [first, ..] if first & 0x80 != 0 => {
            // Two's complement: the magnitude is !x + 1.
            let mut magnitude: Vec<u8> = der.iter().map(|b| !b).collect();
            for b in magnitude.iter_mut().rev() {
                let (sum, carry) = b.overflowing_add(1);
                *b = sum;
                if !carry {
                    break;
                }
            }
            let start = magnitude
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(magnitude.len() - 1);
            out.push('-');
            for &b in &magnitude[start..] {
                push(&mut out, b);
            }
        }
        [0, next, ..] if next & 0x80 != 0 => der[1..].iter().for_each(|&b| push(&mut out, b)),
        _ => der.iter().for_each(|&b| push(&mut out, b)),
    }
    out
}

/// Lowercase hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Lowercase hex of `bytes` into `out` (twice as long), without
/// allocating: the request path formats ids on the stack with it.
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// SHA-256 of `der` as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

#[cfg(test)]
mod tests {
    /// The serial as OpenSSL prints it: DER's sign byte of a positive
    /// number whose top bit is set is not part of it, other bytes are.
    #[test]
    fn serials_read_as_openssl_prints_them() {
        use super::serial_text;
        assert_eq!(serial_text(&[0x00, 0x8a, 0x31]), "8A31");
        assert_eq!(serial_text(&[0x7f, 0x0a]), "7F0A");
        assert_eq!(serial_text(&[0x00]), "00");
        assert_eq!(serial_text(&[0x05]), "05");
        assert_eq!(serial_text(&[0x01, 0x00]), "0100");
        assert_eq!(serial_text(&[0xff]), "-01");
        assert_eq!(serial_text(&[0x80]), "-80");
        assert_eq!(serial_text(&[0xff, 0x7f]), "-81");
        assert_eq!(serial_text(&[0xfe, 0x00]), "-0200");
    }

    /// `inspect` (the admin API, `certs inspect`, `check`) reads a
    /// certificate's serial as the upstream header does.
    #[test]
    fn inspect_reads_a_top_bit_serial_without_its_sign_byte() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x8a, 0x31, 0x0f]));
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(super::inspect(cert.der()).unwrap().serial, "8A310F");
    }

    #[test]
    fn hex_is_lowercase_and_zero_padded() {
        assert_eq!(super::hex(&[0x00, 0xab, 0x7f, 0x10]), "00ab7f10");
        assert_eq!(super::hex(&[]), "");
    }

    /// A SAN carrying control characters (a terminal escape) is shown
    /// escaped, as subjects are: it was printed as is by `certs inspect`
    /// and `check`, and written into the terminal.
    #[test]
    fn sans_are_escaped_as_subjects_are() {
        use rcgen::{CertificateParams, KeyPair, SanType, string::Ia5String};
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![
            SanType::DnsName(Ia5String::try_from("a\u{1b}]0;x\u{7}.test").unwrap()),
            SanType::URI(Ia5String::try_from("spiffe://t/a\\b").unwrap()),
            SanType::DnsName(Ia5String::try_from("plain.test").unwrap()),
        ];
        let cert = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let info = super::inspect(cert.der()).unwrap();
        assert_eq!(
            info.sans,
            ["a\\1B]0;x\\07.test", "spiffe://t/a\\5Cb", "plain.test"]
        );
    }
}
