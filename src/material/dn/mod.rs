//! Distinguished names as text (`CN=billing, OU=payments`, and OpenSSL's RFC 2253 form that nginx and Envoy send), values escaped so none can pose as another attribute.
//!
//! Two forms, both plain ASCII, so a header can always carry them:
//! - [`text`], hotproxy's own: attributes in the certificate's order, joined
//!   with `, ` (` + ` within a multi-valued RDN), x509-parser's short names;
//!   a value that is not text (no string type, or bytes not valid in its
//!   type) is `#` and the hex of its DER, as RFC 4514 §2.4 says.
//! - [`rfc2253`], byte for byte (but for a space ending the name, below)
//!   what OpenSSL's `X509_NAME_print_ex` with `XN_FLAG_RFC2253` writes:
//!   nginx's `$ssl_client_s_dn` (ingress-nginx's `ssl-client-subject-dn`)
//!   and Envoy's XFCC `Subject`.
//!
//! Values are escaped as RFC 4514 §2.4 says: a client certificate whose
//! common name is `evil, OU=admins` is `CN=evil\, OU=admins`, never a
//! second `OU` to a backend that splits on commas. Control characters and
//! every byte of a non-ASCII character are written `\XX` (`zoë` is
//! `zo\C3\AB`), as OpenSSL does; an HTTP header cannot carry them raw, and
//! a name that was dropped for it would leave the backend without one.
//! A space that ends the name, and so the header value, is `\20`, not
//! OpenSSL's `\ `, which a backend trims or refuses.

mod short_names;

use std::fmt::Write as _;

use x509_parser::asn1_rs::{Tag, ToDer};
use x509_parser::prelude::*;

/// `name` in hotproxy's form, every value escaped.
pub fn text(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push_str(" + ");
            }
            match oid2abbrev(attr.attr_type(), oid_registry()) {
                Ok(abbrev) => out.push_str(abbrev),
                Err(_) => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            let value = attr.attr_value();
            match string_value(value.tag(), value.data) {
                Some(s) => escape_into(&mut out, &s),
                // Not text: `#` and the hex of its DER (RFC 4514 §2.4, as
                // OpenSSL writes it), never bare hex a real value could be.
                None => {
                    out.push('#');
                    hex_into(&mut out, &value.to_der_vec().unwrap_or_default());
                }
            }
        }
    }
    space_ended(out)
}

/// `name` as OpenSSL's `X509_NAME_print_ex(…, XN_FLAG_RFC2253)` writes it,
/// which is nginx's `$ssl_client_s_dn` and Envoy's XFCC `Subject`:
/// - every attribute in reverse order, the attributes of a multi-valued
///   RDN included; `,` between RDNs and `+` within one, no spaces;
/// - OpenSSL's short names (`SN`, `GN`, `street`, `emailAddress`,
///   `jurisdictionC`, …); a type OpenSSL does not name is its dotted OID
///   with the value as `#` and the hex of its DER;
/// - string values as OpenSSL reads them (one-byte types as Latin-1, BMP
///   and Universal strings as code points), escaped as above; a value of
///   any other ASN.1 type is `#` and the hex of its DER.
///
/// Footgun: the short-name table covers the arcs DNs use (X.520, RFC 1274,
/// PKCS #9, EV jurisdiction, RFC 3739). An attribute type OpenSSL knows
/// from elsewhere in its object table is written here as unknown.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    let attrs: Vec<(usize, &AttributeTypeAndValue<'_>)> = name
        .iter()
        .enumerate()
        .flat_map(|(i, rdn)| rdn.iter().map(move |a| (i, a)))
        .collect();
    let mut out = String::new();
    let mut previous = None;
    for (rdn, attr) in attrs.into_iter().rev() {
        match previous {
            Some(p) if p == rdn => out.push('+'),
            Some(_) => out.push(','),
            None => {}
        }
        previous = Some(rdn);
        let oid = attr.attr_type().to_id_string();
        let known = short_names::short_name(&oid);
        out.push_str(known.unwrap_or(&oid));
        out.push('=');
        let value = attr.attr_value();
        match known.and(openssl_string(value.tag(), value.data)) {
            Some(s) => escape_into(&mut out, &s),
            None => {
                out.push('#');
                hex_into(&mut out, &value.to_der_vec().unwrap_or_default());
            }
        }
    }
    space_ended(out)
}

/// `out` with a final escaped space (`\ `, a value's trailing space at the
/// end of the name) written `\20` (RFC 4514 §2.4 allows either): the
/// name ends a header value, and a backend would trim `\ ` to a lone
/// `\` (HTTP/1.1) or refuse it (HTTP/2, RFC 9113 §8.2.1). The only
/// departure from OpenSSL's text. (A space is never the last byte
/// otherwise: a value's last space is escaped.)
fn space_ended(mut out: String) -> String {
    if out.ends_with(' ') {
        out.pop();
        out.push_str("20");
    }
    out
}

/// A value's text as OpenSSL reads it for printing (its `tag2nbyte`):
/// UTF-8; one byte per character (Latin-1) for the printable, numeric,
/// IA5, T61, visible and time types; UCS-2 for BMP and UCS-4 for Universal
/// strings. Any other type (or a malformed value) is not text.
fn openssl_string(tag: Tag, data: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::NumericString
        | Tag::PrintableString
        | Tag::T61String
        | Tag::Ia5String
        | Tag::UtcTime
        | Tag::GeneralizedTime
        | Tag::VisibleString => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString if data.len().is_multiple_of(2) => data
            .chunks(2)
            .map(|c| char::from_u32(u32::from(u16::from_be_bytes([c[0], c[1]]))))
            .collect(),
        Tag::UniversalString if data.len().is_multiple_of(4) => data
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// The text of one attribute's value, as [`text`] writes it (before
/// escaping): what `cn` and `ou` rules compare, so the rules and the
/// subject header agree on who the client is. `None` when it is not text.
pub fn attribute_text(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = attr.attr_value();
    string_value(value.tag(), value.data)
}

/// The text of a string-typed attribute value: UTF-8, except a T61String,
/// which is Latin-1 (as OpenSSL, and so [`rfc2253`], reads it); BMP and
/// Universal strings as code points. `None` for any other type, or bytes
/// that do not decode so. The 8-bit types (PrintableString, IA5String, …)
/// are read as UTF-8, not held to their character sets: CAs put `*` and
/// non-ASCII letters in PrintableString, and x509-parser accepts them too;
/// holding them to the set would show common names as `#` and hex.
fn string_value(tag: Tag, data: &[u8]) -> Option<String> {
    match tag {
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::NumericString
        | Tag::VisibleString
        | Tag::PrintableString
        | Tag::GeneralString
        | Tag::GraphicString
        | Tag::VideotexString
        | Tag::Utf8String
        | Tag::Ia5String => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::BmpString if data.len().is_multiple_of(2) => {
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString if data.len().is_multiple_of(4) => data
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
}

/// Append `value` escaped (RFC 4514 §2.4, as OpenSSL's `ESC_2253`,
/// `ESC_CTRL` and `ESC_MSB` do it): `"` `+` `,` `;` `<` `>` `\` with a
/// backslash, so are a leading space or `#` and a trailing space; control
/// characters and each UTF-8 byte of a non-ASCII character as `\XX`. (A
/// space that ends the whole name is `\20`: [`space_ended`].)
fn escape_into(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '#' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_ascii_control() || !c.is_ascii() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair};

    /// A certificate's subject made of `entries`, written three ways:
    /// [`text`], x509-parser's `Display`, [`rfc2253`].
    fn subject(entries: &[(DnType, DnValue)]) -> (String, String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in entries {
            p.distinguished_name.push(t.clone(), v.clone());
        }
        let cert = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
        let name = parsed.subject();
        (text(name), name.to_string(), rfc2253(name))
    }

    fn utf8(v: &str) -> DnValue {
        DnValue::Utf8String(v.to_owned())
    }

    /// An ordinary name reads as before: the certificate's order, `, `.
    #[test]
    fn plain_names_are_unchanged() {
        let (ours, before, _) = subject(&[
            (DnType::CommonName, utf8("billing")),
            (DnType::OrganizationalUnitName, utf8("payments")),
        ]);
        assert_eq!(ours, "CN=billing, OU=payments");
        assert_eq!(ours, before);
    }

    /// A value cannot pose as another attribute or end the name early.
    #[test]
    fn special_characters_are_escaped() {
        for (value, escaped) in [
            ("evil, OU=admins", r"evil\, OU=admins"),
            (r#"a+b;c<d>e"f\g"#, r#"a\+b\;c\<d\>e\"f\\g"#),
            ("#lead and trail ", r"\#lead and trail\20"),
            (" x\ny\u{7f}", r"\ x\0Ay\7F"),
            ("zoë", r"zo\C3\AB"),
        ] {
            let (ours, _, nginx) = subject(&[(DnType::CommonName, utf8(value))]);
            assert_eq!(ours, format!("CN={escaped}"));
            assert_eq!(nginx, format!("CN={escaped}"));
        }
    }

    /// A space that ends the name (so the header value) is `\20`: `\ `
    /// there is trimmed by an HTTP/1.1 backend to a lone `\`, and refused
    /// by an HTTP/2 one (RFC 9113 §8.2.1). One inside the name stays `\ `,
    /// as OpenSSL writes it.
    #[test]
    fn a_space_ending_the_name_is_hex() {
        let (ours, _, nginx) = subject(&[
            (DnType::OrganizationalUnitName, utf8("ou ")),
            (DnType::CommonName, utf8("cn ")),
        ]);
        assert_eq!(ours, r"OU=ou\ , CN=cn\20");
        assert_eq!(nginx, r"CN=cn\ ,OU=ou\20");
        let (ours, _, nginx) = subject(&[(DnType::CommonName, utf8(" "))]);
        assert_eq!(ours, r"CN=\20");
        assert_eq!(nginx, r"CN=\20");
    }

    /// BMP and Universal strings are text; a value that is no string is hex
    /// (RFC 2253: `#` and its DER, as OpenSSL writes it).
    #[test]
    fn wide_strings_and_non_strings() {
        let (ours, _, nginx) = subject(&[
            (
                DnType::CommonName,
                DnValue::BmpString("zoë".try_into().unwrap()),
            ),
            (
                DnType::OrganizationName,
                DnValue::UniversalString("ünï".try_into().unwrap()),
            ),
        ]);
        assert_eq!(ours, r"CN=zo\C3\AB, O=\C3\BCn\C3\AF");
        assert_eq!(nginx, r"O=\C3\BCn\C3\AF,CN=zo\C3\AB");
        // SEQUENCE { SET { SEQUENCE { commonName, INTEGER 5 } } }
        let der = [
            0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x02, 0x01, 0x05,
        ];
        let (_, name) = X509Name::from_der(&der).unwrap();
        assert_eq!(text(&name), "CN=#020105");
        assert_eq!(rfc2253(&name), "CN=#020105");
    }

    /// A value that is not text is `#` and its DER in hex: bare hex (as
    /// it was written) could not be told from a name that is hex, so an
    /// invalid UTF8String posed as `CN=DEADBEEF`.
    #[test]
    fn values_that_are_not_text_are_marked() {
        // SEQUENCE { SET { SEQUENCE { commonName, UTF8String DE AD BE EF } } }
        let der = [
            0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x04, 0xde,
            0xad, 0xbe, 0xef,
        ];
        let (_, name) = X509Name::from_der(&der).unwrap();
        assert_eq!(text(&name), "CN=#0C04DEADBEEF");
        let (ours, _, _) = subject(&[(DnType::CommonName, utf8("DEADBEEF"))]);
        assert_eq!(ours, "CN=DEADBEEF");
    }

    /// nginx's `$ssl_client_s_dn`: the last RDN first, `,` without a
    /// space, `emailAddress` for the PKCS #9 email.
    #[test]
    fn rfc2253_as_nginx_writes_it() {
        let email = DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]);
        let (ours, _, nginx) = subject(&[
            (
                DnType::CountryName,
                DnValue::PrintableString("US".try_into().unwrap()),
            ),
            (DnType::OrganizationName, utf8("Example")),
            (DnType::CommonName, utf8("billing")),
            (
                email,
                DnValue::Ia5String("ops@example.com".try_into().unwrap()),
            ),
        ]);
        let mut rdns: Vec<String> = ours.split(", ").map(str::to_owned).collect();
        rdns.reverse();
        let expected = rdns.join(",").replace("Email=", "emailAddress=");
        assert_eq!(nginx, expected, "ours: {ours}");
        assert!(nginx.contains("emailAddress=ops@example.com"), "{nginx}");
    }

    /// OpenSSL reverses every attribute, those of a multi-valued RDN too,
    /// and names what x509-parser abbreviates otherwise.
    #[test]
    fn rfc2253_reverses_multi_valued_rdns_and_uses_openssl_names() {
        // SEQUENCE { SET { CN=a, OU=b }, SET { GN=c } }
        let der = [
            0x30, 0x22, 0x31, 0x14, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, b'a',
            0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x0b, 0x0c, 0x01, b'b', 0x31, 0x0a, 0x30, 0x08,
            0x06, 0x03, 0x55, 0x04, 0x2a, 0x0c, 0x01, b'c',
        ];
        let (rest, name) = X509Name::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(text(&name), "CN=a + OU=b, givenName=c");
        assert_eq!(rfc2253(&name), "GN=c,OU=b+CN=a");
    }

    /// A type OpenSSL does not name: its OID, the value's DER in hex.
    #[test]
    fn rfc2253_dumps_unknown_types() {
        let (ours, _, nginx) = subject(&[(DnType::CustomDnType(vec![1, 2, 3, 4]), utf8("x"))]);
        assert_eq!(ours, "1.2.3.4=x");
        assert_eq!(nginx, "1.2.3.4=#0C0178");
    }

    /// A T61String is Latin-1 to OpenSSL, and so to both forms: `text`
    /// read it as UTF-8, so `zo\xEB` was not text there.
    #[test]
    fn rfc2253_reads_one_byte_strings_as_latin1() {
        // SEQUENCE { SET { SEQUENCE { commonName, T61String "zo\xEB" } } }
        let der = [
            0x30, 0x0e, 0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x03, 0x14, 0x03, b'z',
            b'o', 0xeb,
        ];
        let (_, name) = X509Name::from_der(&der).unwrap();
        let nginx = rfc2253(&name);
        assert_eq!(nginx, r"CN=zo\C3\AB");
        assert_eq!(text(&name), r"CN=zo\C3\AB");
    }
}
