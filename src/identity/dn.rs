//! Distinguished names as text: `CN=billing, OU=payments`, with values escaped as RFC 4514 says so none can pose as another attribute.
//!
//! Attributes come in the certificate's order, joined with `, ` (`+` within
//! a multi-valued RDN, as ` + `), as hotproxy has always written them. The
//! values are escaped (RFC 4514 §2.4): a client certificate whose common
//! name is `evil, OU=admins` is `CN=evil\, OU=admins`, never a second `OU`
//! to a backend that splits `X-Client-Cert-Subject` on commas.

use std::fmt::Write as _;

use x509_parser::asn1_rs::Tag;
use x509_parser::prelude::*;

/// `name` as text, every value escaped.
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
                // Not a string: its bytes in hex, as x509-parser shows them.
                None => {
                    for b in value.data {
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
    use rcgen::{CertificateParams, DnType, KeyPair};

    /// The subject of a certificate made with `entries`: as [`text`]
    /// writes it, and as x509-parser's `Display` does.
    fn subject(entries: &[(DnType, &str)]) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        for (t, v) in entries {
            p.distinguished_name.push(t.clone(), *v);
        }
        let cert = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
        (text(parsed.subject()), parsed.subject().to_string())
    }

    /// An ordinary name reads as before: the certificate's order, `, `.
    #[test]
    fn plain_names_are_unchanged() {
        let (ours, before) = subject(&[
            (DnType::CommonName, "billing"),
            (DnType::OrganizationalUnitName, "payments"),
        ]);
        assert_eq!(ours, "CN=billing, OU=payments");
        assert_eq!(ours, before);
    }

    /// A value cannot pose as another attribute or end the name early.
    #[test]
    fn special_characters_are_escaped() {
        let (s, _) = subject(&[(DnType::CommonName, "evil, OU=admins")]);
        assert_eq!(s, r"CN=evil\, OU=admins");
        let (s, _) = subject(&[(DnType::CommonName, r#"a+b;c<d>e"f\g"#)]);
        assert_eq!(s, r#"CN=a\+b\;c\<d\>e\"f\\g"#);
        let (s, _) = subject(&[(DnType::CommonName, "#lead and trail ")]);
        assert_eq!(s, r"CN=\#lead and trail\ ");
        let (s, _) = subject(&[(DnType::CommonName, " x\ny")]);
        assert_eq!(s, r"CN=\ x\0Ay");
        let (s, _) = subject(&[(DnType::CommonName, "zoë")]);
        assert_eq!(s, "CN=zoë");
    }
}
