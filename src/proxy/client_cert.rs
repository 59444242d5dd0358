//! What the backend is told about the client certificate: `forward_client_cert` modes and their header encoders.
//!
//! Every encoder reads the connection's [`Identity`] record. Client-sent
//! copies of every header any mode writes are removed first, in every mode
//! (including `none`), so a backend never sees a spoofed identity.

use std::fmt::Write;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::tls::server::ServedUris;

/// `forward_client_cert:` of a listener or route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardClientCert {
    /// Nothing about the certificate is sent (spoofed copies still removed).
    None,
    /// `X-Client-Cert-*` headers, one field each.
    #[default]
    Headers,
    /// RFC 9440 `Client-Cert` / `Client-Cert-Chain` structured-field byte sequences.
    Rfc9440,
    /// Envoy's `X-Forwarded-Client-Cert`.
    Xfcc,
    /// ingress-nginx's `ssl-client-verify`, `ssl-client-subject-dn`,
    /// `ssl-client-issuer-dn` and `ssl-client-cert`, as it writes them, for
    /// backends moved from it unchanged.
    #[serde(rename = "ingress_nginx")]
    IngressNginx,
}

impl ForwardClientCert {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardClientCert::None => "none",
            ForwardClientCert::Headers => "headers",
            ForwardClientCert::Rfc9440 => "rfc9440",
            ForwardClientCert::Xfcc => "xfcc",
            ForwardClientCert::IngressNginx => "ingress_nginx",
        }
    }

    /// Its slot in [`Identity::forwarded`]; `None` sends nothing.
    fn slot(self) -> Option<usize> {
        match self {
            ForwardClientCert::None => None,
            ForwardClientCert::Headers => Some(0),
            ForwardClientCert::Rfc9440 => Some(1),
            ForwardClientCert::Xfcc => Some(2),
            ForwardClientCert::IngressNginx => Some(3),
        }
    }
}

pub static X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
pub static X_CLIENT_CERT_FINGERPRINT: HeaderName =
    HeaderName::from_static("x-client-cert-fingerprint");
pub static X_CLIENT_CERT_URI_SANS: HeaderName = HeaderName::from_static("x-client-cert-uri-sans");
pub static X_CLIENT_CERT_DNS_SANS: HeaderName = HeaderName::from_static("x-client-cert-dns-sans");
pub static X_CLIENT_CERT_ISSUER: HeaderName = HeaderName::from_static("x-client-cert-issuer");
pub static X_CLIENT_CERT_SERIAL: HeaderName = HeaderName::from_static("x-client-cert-serial");
pub static X_CLIENT_CERT_NOT_AFTER: HeaderName = HeaderName::from_static("x-client-cert-not-after");
pub static CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
pub static CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
pub static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
pub static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
pub static SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
pub static SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

/// Name prefixes of client-certificate headers: hotproxy's own, and those
/// the proxies its users move from write, which a backend moved behind
/// hotproxy may still trust: ingress-nginx (`ssl-client-verify: SUCCESS`,
/// `ssl-client-subject-dn`, `ssl-client-cert`), Traefik
/// (`X-Forwarded-Tls-Client-Cert`, `-Info`), the `X-SSL-Client-*` of
/// nginx and HAProxy recipes, and AWS ALB's mTLS headers
/// (`X-Amzn-Mtls-Clientcert`, `-Leaf`, `-Subject`, `-Issuer`,
/// `-Serial-Number`, `-Validity`). Those proxies always overwrite them;
/// passing a client's copy would let it claim any identity.
const SPOOFABLE: [&str; 5] = [
    "x-client-cert-",
    "ssl-client-",
    "x-ssl-client-",
    "x-forwarded-tls-client-cert",
    "x-amzn-mtls-clientcert",
];

/// Name prefixes of Cloudflare's client-certificate headers: its "Add TLS
/// client auth headers" Managed Transform (`Cf-Cert-Verified`,
/// `Cf-Cert-Presented`, `Cf-Cert-Subject-DN`,
/// `Cf-Cert-Fingerprint-SHA256`, …) and Access's certificate forwarding
/// (`Cf-Client-Cert-Der-Base64`, `Cf-Client-Cert-Sha256`). Cloudflare
/// overwrites them; a backend moved from behind it may still trust them.
const CLOUDFLARE: [&str; 2] = ["cf-cert-", "cf-client-cert-"];

/// Whole names of client-certificate headers hotproxy never writes but
/// frameworks take as the verified certificate when their proxy is
/// trusted: the bare `X-Client-Cert` (ASP.NET Core's
/// `CertificateForwarding` default, base64 DER), `X-SSL-Cert` (the nginx
/// recipe in ASP.NET's docs) and `X-ARR-ClientCert` (IIS ARR, Azure App
/// Service). A certificate is public: a client's copy of someone else's
/// would make it that someone to such a backend. And Puppet Server's
/// `X-Client-DN` and `X-Client-Verify` (its `ssl-client-header` and
/// `ssl-client-verify-header` defaults, trusted with
/// `allow-header-cert-info`), and HAProxy's recipe's `X-SSL-Issuer`: a
/// client's `X-Client-Verify: SUCCESS` with any DN would be that DN to
/// Puppet. (The recipe's bare `X-SSL`, "the connection was TLS", is a
/// forwarding claim: `headers::claims_origin`.)
const TRUSTED_ELSEWHERE: [&str; 6] = [
    "x-client-cert",
    "x-ssl-cert",
    "x-arr-clientcert",
    "x-client-dn",
    "x-client-verify",
    "x-ssl-issuer",
];

/// Remove every client-certificate header a client may have sent: the
/// ones any mode writes, any other `X-Client-Cert-*` (a backend may read a
/// name we never write, e.g. `X-Client-Cert-CN`), other proxies' and load
/// balancers' (`SPOOFABLE`, `CLOUDFLARE`) and other frameworks'
/// (`TRUSTED_ELSEWHERE`).
pub fn strip(headers: &mut HeaderMap) {
    // One pass over the names; the common request has none of them, and
    // collecting none allocates nothing.
    let named: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_identity_header(k.as_str()))
        .cloned()
        .collect();
    for n in named {
        headers.remove(n);
    }
}

/// Whether a (lowercase) header name is one [`strip`] removes.
pub fn is_identity_header(n: &str) -> bool {
    // Every request's every name passes here: the first byte settles most.
    match n.as_bytes().first() {
        Some(b'x' | b's') => {
            SPOOFABLE.iter().any(|p| n.starts_with(p))
                || n == X_FORWARDED_CLIENT_CERT.as_str()
                || TRUSTED_ELSEWHERE.contains(&n)
        }
        Some(b'c') => {
            n == CLIENT_CERT.as_str()
                || n == CLIENT_CERT_CHAIN.as_str()
                || (n.starts_with("cf-") && CLOUDFLARE.iter().any(|p| n.starts_with(p)))
        }
        _ => false,
    }
}

/// Strip client copies, then describe `id` (if any) the way `mode` says.
/// `served` gives the URI SANs of the certificate hotproxy served the
/// connection (XFCC's `By`), asked only when the connection's first
/// request in that mode is encoded.
pub fn apply(
    headers: &mut HeaderMap,
    mode: ForwardClientCert,
    id: Option<&Identity>,
    served: &dyn Fn() -> ServedUris,
) {
    strip(headers);
    let Some(id) = id else {
        // ingress-nginx tells the backend there was none (`$ssl_client_verify`).
        if mode == ForwardClientCert::IngressNginx {
            headers.insert(SSL_CLIENT_VERIFY.clone(), HeaderValue::from_static("NONE"));
        }
        return;
    };
    let Some(slot) = mode.slot() else { return };
    // The identity is the connection's: a keep-alive client's headers are
    // encoded once (XFCC's PEMs took 4 µs a request), then cloned.
    let encoded = id.forwarded[slot].get_or_init(|| encode(mode, id, served));
    for (name, value) in encoded {
        headers.insert(name.clone(), value.clone());
    }
}

/// `mode`'s headers for `id`, as (name, value) pairs to insert.
fn encode(
    mode: ForwardClientCert,
    id: &Identity,
    served: &dyn Fn() -> ServedUris,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = HeaderMap::new();
    match mode {
        ForwardClientCert::None => {}
        ForwardClientCert::IngressNginx => write_ingress_nginx(&mut headers, id),
        ForwardClientCert::Headers => write_headers(&mut headers, id),
        ForwardClientCert::Rfc9440 => write_rfc9440(&mut headers, id),
        ForwardClientCert::Xfcc => {
            if let Ok(v) = HeaderValue::from_str(&xfcc(id, &served())) {
                headers.insert(X_FORWARDED_CLIENT_CERT.clone(), v);
            }
        }
    }
    headers
        .into_iter()
        .filter_map(|(name, value)| {
            // The first clone of bytes made from a Vec moves them to a
            // shared, reference-counted block; done here, not per request.
            drop(value.clone());
            Some((name?, value))
        })
        .collect()
}

fn put(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    // A DN with bytes a header cannot carry is left out rather than mangled.
    if !value.is_empty()
        && let Ok(v) = HeaderValue::from_str(value)
    {
        headers.insert(name.clone(), v);
    }
}

fn write_headers(headers: &mut HeaderMap, id: &Identity) {
    put(headers, &X_CLIENT_CERT_SUBJECT, &id.subject);
    put(headers, &X_CLIENT_CERT_FINGERPRINT, &id.fingerprint_sha256);
    put(headers, &X_CLIENT_CERT_URI_SANS, &san_list(&id.uri_sans));
    put(headers, &X_CLIENT_CERT_DNS_SANS, &san_list(&id.dns_sans));
    put(headers, &X_CLIENT_CERT_ISSUER, &id.issuer);
    put(headers, &X_CLIENT_CERT_SERIAL, &id.serial);
    put(headers, &X_CLIENT_CERT_NOT_AFTER, &rfc3339(id.not_after));
}

/// What a SAN in a comma-separated list header must not hold raw: a `,`
/// (a URI may hold one, and a CA may sign any), a space, control bytes,
/// and `%` itself: left raw, a backend that decodes entries would read a
/// URI SAN `.../sa/%61dmin` as `.../sa/admin`, and a literal `%2C` as a
/// comma.
const SAN_IN_LIST: &AsciiSet = &CONTROLS.add(b',').add(b' ').add(b'%');

/// SANs joined with `, `, each percent-encoded where it holds a comma, a
/// space or a `%`: a URI SAN `spiffe://a/x,spiffe://td/admin` stays one
/// entry to a backend that splits the header on commas, and decoding an
/// entry gives the SAN back exactly (no DNS name or SPIFFE ID ever holds
/// any of them, so real names are unchanged; a URI that percent-encodes
/// has its `%` sent as `%25`).
fn san_list(sans: &[String]) -> String {
    let mut out = String::new();
    for (i, san) in sans.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{}", utf8_percent_encode(san, SAN_IN_LIST));
    }
    out
}

/// ingress-nginx's `proxy_set_header` lines for a verified client:
/// `$ssl_client_verify`, `$ssl_client_s_dn`, `$ssl_client_i_dn` (RFC 2253,
/// [`crate::material::dn::rfc2253`]) and `$ssl_client_escaped_cert` (the
/// leaf's PEM, URL-encoded).
fn write_ingress_nginx(headers: &mut HeaderMap, id: &Identity) {
    headers.insert(
        SSL_CLIENT_VERIFY.clone(),
        HeaderValue::from_static("SUCCESS"),
    );
    let (subject, issuer) = id.rfc2253_dns();
    put(headers, &SSL_CLIENT_SUBJECT_DN, &subject);
    put(headers, &SSL_CLIENT_ISSUER_DN, &issuer);
    let pem = utf8_percent_encode(&pem_of(id.leaf()), XFCC_PEM).to_string();
    put(headers, &SSL_CLIENT_CERT, &pem);
}

/// RFC 9440: `Client-Cert: :<base64 DER>:` (an sf-binary Item) and, when
/// the client sent the certificates it was issued through,
/// `Client-Cert-Chain` (an sf-list of them, without the leaf; others it
/// sent are left out: [`Identity::issuing_chain`]).
fn write_rfc9440(headers: &mut HeaderMap, id: &Identity) {
    let leaf = sfv::ItemSerializer::new().bare_item(id.leaf()).finish();
    put(headers, &CLIENT_CERT, &leaf);
    let mut chain = sfv::ListSerializer::new();
    for c in id.issuing_chain().into_iter().skip(1) {
        chain.bare_item(c.as_ref());
    }
    if let Some(chain) = chain.finish() {
        put(headers, &CLIENT_CERT_CHAIN, &chain);
    }
}

/// RFC 3986 unreserved characters stay; everything else in a PEM
/// (newlines, spaces, `+/=`) is percent-encoded, as Envoy does.
const XFCC_PEM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Envoy's `X-Forwarded-Client-Cert` element for one client:
/// `By=…;Hash=…;Cert="…";Chain="…";Subject="…";URI=…;DNS=…`, with one
/// `By=` per URI SAN of the certificate hotproxy served (`by`), as Envoy
/// names itself, and none when it has no URI SAN.
pub fn xfcc(id: &Identity, by: &[Box<str>]) -> String {
    let mut s = String::new();
    for b in by {
        let _ = write!(s, "By={};", value(b));
    }
    let _ = write!(s, "Hash={}", id.fingerprint_sha256);
    let pem = |der: &[u8]| pem_of(der);
    let _ = write!(
        s,
        ";Cert=\"{}\"",
        utf8_percent_encode(&pem(id.leaf()), XFCC_PEM)
    );
    // The leaf and its issuers, not everything the client sent.
    let chain: String = id
        .issuing_chain()
        .into_iter()
        .map(|c| pem(c.as_ref()))
        .collect();
    let _ = write!(s, ";Chain=\"{}\"", utf8_percent_encode(&chain, XFCC_PEM));
    // Envoy's form: OpenSSL's RFC 2253 DN in quotes, as it stands. Its
    // `"` and `\` are already escaped, so the quoted string is well formed.
    let _ = write!(s, ";Subject=\"{}\"", id.rfc2253_dns().0);
    for u in &id.uri_sans {
        let _ = write!(s, ";URI={}", value(u));
    }
    for d in &id.dns_sans {
        let _ = write!(s, ";DNS={}", value(d));
    }
    s
}

/// A value quoted only when it holds a separator (Envoy's rule). A
/// control byte (a CA may sign a SAN holding `\n` or DEL, and WebPKI
/// does not look at a client's SANs) is percent-encoded, as the `headers`
/// mode's SAN lists do: no header can carry one, and the whole header
/// used to be dropped for it, leaving the backend no identity at all.
/// One holding a space is quoted too: a SAN ending in one, last in the
/// header, was trimmed by an HTTP/1.1 backend (another identity) and
/// refused by an HTTP/2 one. Quoting is Envoy's only escape for these
/// values; percent-encoding it would make `%20` ambiguous (`%` is sent
/// as it is, as Envoy does). One holding a `\` is quoted as well, so a
/// backslash only ever stands inside a quoted string, where `\\` is its
/// one reading: bare, `URI=urn:a\;DNS=x` read by a parser that takes `\`
/// as an escape was the single value `urn:a;DNS=x`.
fn value(v: &str) -> String {
    let v: std::borrow::Cow<'_, str> = utf8_percent_encode(v, CONTROLS).into();
    if v.contains([',', ';', '=', '"', ' ', '\\']) {
        quoted(&v)
    } else {
        v.into_owned()
    }
}

fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A certificate as PEM (64-column base64, `\n` line ends).
fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Unix seconds as RFC 3339 UTC (`2026-11-30T05:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;

    fn id() -> Identity {
        Identity {
            subject: "CN=billing, OU=payments".into(),
            issuer: "CN=partners CA".into(),
            cn: vec!["billing".into()],
            ou: vec!["payments".into()],
            dns_sans: vec!["a.example".into(), "b.example".into()],
            uri_sans: vec!["spiffe://td/ns/prod/sa/billing".into()],
            email_sans: vec![],
            serial: "0A1B".into(),
            fingerprint_sha256: "ab".repeat(32),
            not_before: 0,
            not_after: 1_800_000_000,
            chain: vec![
                CertificateDer::from(vec![1u8, 2, 3, 250]),
                CertificateDer::from(vec![9u8; 5]),
            ],
            anchors: Default::default(),
            forwarded: Default::default(),
            logged: Default::default(),
        }
    }

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in [
            "x-client-cert-subject",
            "x-client-cert-fingerprint",
            "x-client-cert-uri-sans",
            "x-client-cert-cn",
            "client-cert",
            "client-cert-chain",
            "x-forwarded-client-cert",
            "ssl-client-verify",
            "ssl-client-subject-dn",
            "x-forwarded-tls-client-cert-info",
            "x-ssl-client-dn",
            "x-client-cert",
            "x-ssl-cert",
            "x-arr-clientcert",
            "x-amzn-mtls-clientcert-leaf",
            "cf-cert-verified",
            "cf-client-cert-sha256",
        ] {
            h.append(n, HeaderValue::from_static("spoofed"));
            h.append(n, HeaderValue::from_static("spoofed twice"));
        }
        h.insert("accept", HeaderValue::from_static("*/*"));
        h
    }

    /// Other frameworks' names are removed whole; a longer name that only
    /// begins as one is the application's.
    #[test]
    fn other_frameworks_names_are_identity_headers() {
        for n in TRUSTED_ELSEWHERE {
            assert!(is_identity_header(n), "{n}");
        }
        for n in [
            "x-client-certainty",
            "x-ssl-certified",
            "x-arr-clientcerts",
            "x-client-dnssec",
            "x-ssl-issuers",
            "x-sslv3",
        ] {
            assert!(!is_identity_header(n), "{n}");
        }
    }

    /// The cloud load balancers' families are removed by prefix; their
    /// other headers (`CF-Ray`, `CF-Connecting-IP`) are not identities.
    /// (`CF-Connecting-IP` is a forwarding header, removed from all but a
    /// trusted proxy in `proxy::headers`, whose own copy passes.)
    #[test]
    fn cloud_load_balancers_names_are_identity_headers() {
        for n in [
            "x-amzn-mtls-clientcert",
            "x-amzn-mtls-clientcert-serial-number",
            "cf-cert-verified",
            "cf-cert-subject-dn-rfc2253",
            "cf-client-cert-der-base64",
        ] {
            assert!(is_identity_header(n), "{n}");
        }
        for n in [
            "x-amzn-tls-version",
            "cf-ray",
            "cf-connecting-ip",
            "cf-certainly",
        ] {
            assert!(!is_identity_header(n), "{n}");
        }
    }

    /// Each mode that sends something has its own slot in the identity's
    /// cache (a new mode needs one).
    #[test]
    fn every_mode_has_its_own_slot() {
        let slots: Vec<usize> = [
            ForwardClientCert::Headers,
            ForwardClientCert::Rfc9440,
            ForwardClientCert::Xfcc,
            ForwardClientCert::IngressNginx,
        ]
        .iter()
        .map(|m| m.slot().unwrap())
        .collect();
        assert_eq!(slots, [0, 1, 2, 3]);
        assert_eq!(id().forwarded.len(), slots.len());
        assert_eq!(ForwardClientCert::None.slot(), None);
    }

    /// A connection served a certificate without URI SANs.
    fn unserved() -> ServedUris {
        std::sync::Arc::from([])
    }

    /// A connection's second request gets the same headers as its first
    /// (from the cache), in every mode.
    #[test]
    fn encoded_once_per_identity() {
        let id = id();
        for mode in [
            ForwardClientCert::Headers,
            ForwardClientCert::Rfc9440,
            ForwardClientCert::Xfcc,
            ForwardClientCert::IngressNginx,
        ] {
            let (mut first, mut second) = (HeaderMap::new(), HeaderMap::new());
            apply(&mut first, mode, Some(&id), &unserved);
            apply(&mut second, mode, Some(&id), &unserved);
            assert!(!first.is_empty(), "{mode:?}");
            assert_eq!(first, second, "{mode:?}");
            assert!(id.forwarded[mode.slot().unwrap()].get().is_some());
        }
    }

    /// In every mode, with or without a certificate, no spoofed copy survives.
    #[test]
    fn spoofed_copies_never_survive() {
        for mode in [
            ForwardClientCert::None,
            ForwardClientCert::Headers,
            ForwardClientCert::Rfc9440,
            ForwardClientCert::Xfcc,
            ForwardClientCert::IngressNginx,
        ] {
            for cert in [None, Some(id())] {
                let mut h = spoofed();
                apply(&mut h, mode, cert.as_ref(), &unserved);
                for v in h.values() {
                    assert!(!v.to_str().unwrap().contains("spoofed"), "{mode:?}: {h:?}");
                }
                assert_eq!(h["accept"], "*/*");
                match (mode, &cert) {
                    // ingress-nginx says there was no certificate.
                    (ForwardClientCert::IngressNginx, None) => {
                        assert_eq!(h["ssl-client-verify"], "NONE");
                        assert_eq!(h.len(), 2, "{h:?}");
                    }
                    (ForwardClientCert::None, _) | (_, None) => {
                        assert_eq!(h.len(), 1, "{mode:?}: {h:?}");
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn headers_mode() {
        let mut h = HeaderMap::new();
        apply(&mut h, ForwardClientCert::Headers, Some(&id()), &unserved);
        assert_eq!(h["x-client-cert-subject"], "CN=billing, OU=payments");
        assert_eq!(h["x-client-cert-fingerprint"], "ab".repeat(32).as_str());
        assert_eq!(
            h["x-client-cert-uri-sans"],
            "spiffe://td/ns/prod/sa/billing"
        );
        assert_eq!(h["x-client-cert-dns-sans"], "a.example, b.example");
        assert_eq!(h["x-client-cert-issuer"], "CN=partners CA");
        assert_eq!(h["x-client-cert-serial"], "0A1B");
        assert_eq!(h["x-client-cert-not-after"], "2027-01-15T08:00:00Z");
    }

    /// A CA and a leaf it issued, and a CA that issued nothing of it.
    fn issued() -> [CertificateDer<'static>; 3] {
        let ca_params = |cn: &str| {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p
        };
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params("issuing CA").self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params("issuing CA"), ca_key);
        let leaf = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        let other = ca_params("other CA")
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        [leaf.der().clone(), ca.der().clone(), other.der().clone()]
    }

    #[test]
    fn rfc9440_mode() {
        let mut h = HeaderMap::new();
        apply(&mut h, ForwardClientCert::Rfc9440, Some(&id()), &unserved);
        assert_eq!(h["client-cert"], ":AQID+g==:");
        // Bytes that are no certificate issued the leaf of nothing.
        assert!(!h.contains_key("client-cert-chain"), "{h:?}");
        // Only the leaf's issuer is sent, whatever else came with it (the
        // issuer is the listener's trust anchor, sent along).
        let [leaf, ca, other] = issued();
        let mut padded = id();
        padded.chain = vec![leaf, other.clone(), ca.clone(), other];
        padded.anchors = std::sync::Arc::from([ca.clone().into()]);
        let mut h = HeaderMap::new();
        apply(&mut h, ForwardClientCert::Rfc9440, Some(&padded), &unserved);
        let b64 = |der: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(der)
        };
        assert_eq!(h["client-cert-chain"], format!(":{}:", b64(&ca)).as_str());
        let mut only_leaf = id();
        only_leaf.chain.truncate(1);
        let mut h = HeaderMap::new();
        apply(
            &mut h,
            ForwardClientCert::Rfc9440,
            Some(&only_leaf),
            &unserved,
        );
        assert!(!h.contains_key("client-cert-chain"));
    }

    #[test]
    fn xfcc_mode() {
        // Subject comes from the leaf itself, in Envoy's (OpenSSL's) form.
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "billing");
        p.distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "payments");
        let leaf = p.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        let mut id = id();
        id.chain[0] = leaf.der().clone();
        let x = xfcc(&id, &[]);
        assert!(
            x.starts_with(&format!(
                "Hash={};Cert=\"-----BEGIN%20CERTIFICATE-----%0A",
                "ab".repeat(32)
            )),
            "{x}"
        );
        // hotproxy's own URI SANs come first, one `By=` each, as Envoy's.
        let by: [Box<str>; 2] = ["spiffe://td/ns/edge/sa/hotproxy".into(), "urn:a;b".into()];
        let x = xfcc(&id, &by);
        assert!(
            x.starts_with("By=spiffe://td/ns/edge/sa/hotproxy;By=\"urn:a;b\";Hash="),
            "{x}"
        );
        assert!(x.contains(";Subject=\"OU=payments,CN=billing\";URI=spiffe://td/ns/prod/sa/billing;DNS=a.example;DNS=b.example"), "{x}");
        assert_eq!(quoted(r#"CN=a "b"\c"#), r#""CN=a \"b\"\\c""#);
        assert_eq!(value("a;b"), "\"a;b\"");
        // A SAN with a control byte: percent-encoded, and the header made.
        id.uri_sans = vec!["urn:x\ny\u{7f}".into()];
        let x = xfcc(&id, &[]);
        assert!(x.contains(";URI=urn:x%0Ay%7F;"), "{x}");
        assert!(http::HeaderValue::from_str(&x).is_ok());
    }

    /// A SAN ending in a space, last in the element, ended the header with
    /// it: an HTTP/1.1 backend trims it (another identity), an HTTP/2 one
    /// refuses the request. Quoted, as Envoy escapes values, it is kept.
    #[test]
    fn xfcc_value_with_a_space_is_quoted() {
        let mut id = id();
        id.dns_sans = vec!["a.example".into(), "api.example ".into()];
        let x = xfcc(&id, &[]);
        assert!(x.ends_with(";DNS=a.example;DNS=\"api.example \""), "{x}");
        assert_eq!(value("urn:a b"), "\"urn:a b\"");
        assert_eq!(value("spiffe://td/ns/a"), "spiffe://td/ns/a");
    }

    #[test]
    fn xfcc_value_with_a_backslash_is_quoted() {
        let mut id = id();
        id.uri_sans = vec!["urn:a\\".into()];
        id.dns_sans = vec!["x".into()];
        let x = xfcc(&id, &[]);
        assert!(x.ends_with(";URI=\"urn:a\\\\\";DNS=x"), "{x}");
    }
}
