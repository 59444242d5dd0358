//! Distinguished names as text (`CN=billing, OU=payments`, and nginx's RFC 2253 form), values escaped as RFC 4514 says so none can pose as another attribute.
//!
//! Attributes come in the certificate's order, joined with `, ` (`+` within
//! a multi-valued RDN, as ` + `), as hotproxy has always written them. The
//! values are escaped (RFC 4514 §2.4): a client certificate whose common
//! name is `evil, OU=admins` is `CN=evil\, OU=admins`, never a second `OU`
//! to a backend that splits `X-Client-Cert-Subject` on commas.

use std::fmt::Write as _;

use x509_parser::asn1_rs::{Tag, ToDer};
use x509_parser::prelude::*;

/// `name` as text, every value escaped.
pub fn text(name: &X509Name<'_>) -> String {
    write_name(name, Style::Hotproxy)
}

/// `name` as nginx's `$ssl_client_s_dn` writes it (OpenSSL's RFC 2253
/// form): the last RDN first, `,` between RDNs and `+` within one, no
/// spaces, OpenSSL's short names (`emailAddress`), values escaped the
/// same way, UTF-8 kept. ingress-nginx sends it as `ssl-client-subject-dn`.
pub fn rfc2253(name: &X509Name<'_>) -> String {
    write_name(name, Style::Rfc2253)
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Hotproxy,
    Rfc2253,
}

fn write_name(name: &X509Name<'_>, style: Style) -> String {
    let (rdn_sep, attr_sep) = match style {
        Style::Hotproxy => (", ", " + "),
        Style::Rfc2253 => (",", "+"),
    };
    let mut rdns: Vec<_> = name.iter().collect();
    if style == Style::Rfc2253 {
        rdns.reverse();
    }
    let mut out = String::new();
    for (i, rdn) in rdns.into_iter().enumerate() {
        if i > 0 {
            out.push_str(rdn_sep);
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push_str(attr_sep);
            }
            match oid2abbrev(attr.attr_type(), oid_registry()) {
                Ok("Email") if style == Style::Rfc2253 => out.push_str("emailAddress"),
                Ok(abbrev) => out.push_str(abbrev),
                Err(_) => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            let value = attr.attr_value();
            match string_value(value.tag(), value.data) {
                Some(s) => escape_into(&mut out, &s),
                // Not a string: ours shows its content in hex, as
                // x509-parser does; RFC 2253 (and OpenSSL) `#` and the hex
                // of its whole DER encoding.
                None => {
                    let der = match style {
                        Style::Hotproxy => None,
                        Style::Rfc2253 => value.to_der_vec().ok(),
                    };
                    if der.is_some() {
                        out.push('#');
                    }
                    for b in der.as_deref().unwrap_or(value.data) {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
        }
    }
    out
}

/// The text of a string-typed attribute value.
fn string_value(tag: Tag, data: &[u8]) -> Option<String> {
    match tag {
        Tag::NumericString
        | Tag::VisibleString
        | Tag::PrintableString
        | Tag::GeneralString
        | Tag::GraphicString
        | Tag::T61String
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

/// Append `value` escaped (RFC 4514 §2.4): `"` `+` `,` `;` `<` `>` `\`
/// with a backslash, so are a leading space or `#` and a trailing space;
/// control characters as `\XX` (a header cannot carry them raw).
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
            c if c.is_control() => {
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
            ("#lead and trail ", r"\#lead and trail\ "),
            (" x\ny", r"\ x\0Ay"),
            ("zoë", "zoë"),
        ] {
            let (ours, _, nginx) = subject(&[(DnType::CommonName, utf8(value))]);
            assert_eq!(ours, format!("CN={escaped}"));
            assert_eq!(nginx, format!("CN={escaped}"));
        }
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
        assert!(ours.contains("CN=zoë") && ours.contains("O=ünï"), "{ours}");
        assert!(
            nginx.contains("CN=zoë") && nginx.contains("O=ünï"),
            "{nginx}"
        );
        // SEQUENCE { SET { SEQUENCE { commonName, INTEGER 5 } } }
        let der = [
            0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x02, 0x01, 0x05,
        ];
        let (_, name) = X509Name::from_der(&der).unwrap();
        assert_eq!(text(&name), "CN=05");
        assert_eq!(rfc2253(&name), "CN=#020105");
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
}
