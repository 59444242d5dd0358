//! Patterns no value a rule judges could match (`cn`, `ou`, `dns_san`, `uri_san`, `email_san`), refused.
//!
//! A rule matches only a plain value (`plain_text`, `plain_dns`,
//! `plain_uri`, `plain_email` in the parent): a pattern that no such value
//! fits, an IDN not as its A-label, a trailing dot, an address literal, a
//! quoted local part, a CN with the `\r` of a CRLF env file, a URI with a
//! `%` escape or a `..` segment, was accepted and then let no one in, every
//! client refused `access_denied` with nothing saying why. Each pattern is
//! read as its values are, a `*` standing for a run of characters a value
//! may have there. The checks are ASCII case-blind: an uppercase pattern
//! matches as before.

/// A CN or OU holding a control character matches no rule (`plain_text`).
const TEXT_CONTROL: &str = "a CN or OU holds no control character: remove it \
                            (a CRLF env file leaves a `\\r` at the end of a variable's value)";
const URI_GRAPHIC: &str = "a URI SAN a rule matches is printable ASCII: \
                           no space, control character or letter that is not ASCII";
const URI_RESERVED: &str = "a URI SAN a rule matches holds no `%`, `?`, `#`, `;` or `\\`: \
                            write the path's plain characters, with no escape, query, fragment or parameter";
const URI_DOT: &str =
    "a URI SAN a rule matches has no `.` or `..` segment: write the path as resolved";

/// A DNS SAN is ASCII: an IDN is its A-label in a certificate.
const DNS_ASCII: &str = "a host name is ASCII: write an IDN as its `xn--` A-label";
const TRAILING_DOT: &str = "no trailing dot: a SAN is written without the root's `.`";
const EMPTY_LABEL: &str = "an empty label (a leading `.` or `..`)";
const LABEL: &str = "a label is letters, digits, `-` and `_` (and `*` in a pattern)";
const EMAIL_IDN: &str = "an email SAN is ASCII: write an IDN domain as its `xn--` A-label";
/// RFC 8398: a UTF-8 local part is an SmtpUTF8Mailbox, another name type.
const EMAIL_UTF8: &str = "a UTF-8 local part (an SmtpUTF8Mailbox) is no email SAN";
const ONE_AT: &str = "a mailbox has one `@`";
const NO_AT: &str = "a mailbox is `local-part@domain`: write its `@`, or a `*` standing for it";
const EMPTY_LOCAL: &str = "empty local part";
const LOCAL: &str = "a local part is a dot-atom: letters, digits, \
                     ``!#$%&'*+-/=?^_`{|}~`` and `.` (no quoted string, no space)";
const LITERAL: &str = "no address literal: write the domain as a host name";
const EMPTY_DOMAIN: &str = "empty domain";

/// Why no DNS SAN can match the `dns_san` pattern `p` (`*` within one
/// label; a value's `*` first label is matched by a pattern's `*`).
pub(super) fn dns(p: &str) -> Result<(), &'static str> {
    if !p.is_ascii() {
        return Err(DNS_ASCII);
    }
    host(p.split('.'))
}

/// Why no CN or OU can match the `cn` or `ou` pattern `p`.
pub(super) fn text(p: &str) -> Result<(), &'static str> {
    match p.chars().any(char::is_control) {
        true => Err(TEXT_CONTROL),
        false => Ok(()),
    }
}

/// Why no URI SAN can match the `uri_san` pattern `p` (its final `/**`
/// removed): what `plain_uri` refuses in a value, read on the pattern, a
/// `*` (within one segment) being an ordinary character there. A segment
/// of `.` or `..` refuses; one with a `*` (`.*`) may still match.
pub(super) fn uri(p: &str) -> Result<(), &'static str> {
    if !p.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(URI_GRAPHIC);
    }
    if p.contains(['%', '?', '#', ';', '\\']) {
        return Err(URI_RESERVED);
    }
    let path = p.split_once("://").map_or(p, |(_, rest)| rest);
    if path.split('/').skip(1).any(|seg| seg == "." || seg == "..") {
        return Err(URI_DOT);
    }
    Ok(())
}

/// Why no email SAN can match the `email_san` pattern `p` (`*` any run of
/// characters, an `@` and dots included).
pub(super) fn email(p: &str) -> Result<(), &'static str> {
    if !p.is_ascii() {
        let local = p.split_once('@').map_or(p, |(local, _)| local);
        return Err(if local.is_ascii() {
            EMAIL_IDN
        } else {
            EMAIL_UTF8
        });
    }
    let Some((local, domain)) = p.split_once('@') else {
        return starred_mailbox(p);
    };
    if domain.contains('@') {
        return Err(ONE_AT);
    }
    if local.is_empty() {
        return Err(EMPTY_LOCAL);
    }
    if !local.bytes().all(atext) {
        return Err(LOCAL);
    }
    if domain.starts_with('[') {
        return Err(LITERAL);
    }
    if domain.is_empty() {
        return Err(EMPTY_DOMAIN);
    }
    // `*` may span labels here: still, a label the pattern leaves empty
    // between two dots (or at an end) is empty in every value it matches.
    host(domain.split('.'))
}

/// A pattern without `@`: a `*` must stand for it, so what precedes the
/// last `*` may be any of the local part's characters (a domain's are
/// among them) and what follows it is the end of a domain.
fn starred_mailbox(p: &str) -> Result<(), &'static str> {
    let Some(last) = p.rfind('*') else {
        return Err(NO_AT);
    };
    if !p.bytes().all(atext) {
        return Err(LOCAL);
    }
    // The tail's first label continues the `*`'s, so it may be empty.
    let mut tail = p[last + 1..].split('.');
    if !tail.next().unwrap_or("").bytes().all(host_byte) {
        return Err(LABEL);
    }
    host(tail)
}

/// Why the labels of a host name (with `*`s) match no plain one.
fn host<'a>(labels: impl Iterator<Item = &'a str>) -> Result<(), &'static str> {
    let mut labels = labels.peekable();
    while let Some(label) = labels.next() {
        if label.is_empty() {
            return Err(match labels.peek() {
                None => TRAILING_DOT,
                Some(_) => EMPTY_LABEL,
            });
        }
        if !label.bytes().all(host_byte) {
            return Err(LABEL);
        }
    }
    Ok(())
}

/// What a plain host name's label is made of, and a pattern's `*`.
fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*'
}

/// RFC 5321's atext and `.`, what a plain local part is made of (`*`
/// among them, here also the glob's).
fn atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_no_plain_san_fits_are_refused() {
        for (p, want) in [
            ("bücher.example", Err(DNS_ASCII)),
            ("a.example.", Err(TRAILING_DOT)),
            (".", Err(EMPTY_LABEL)),
            ("a..example", Err(EMPTY_LABEL)),
            (".example", Err(EMPTY_LABEL)),
            ("a b.example", Err(LABEL)),
            ("A*-b_C.*.EXAMPLE", Ok(())),
            ("*", Ok(())),
            ("xn--bcher-kva.example", Ok(())),
        ] {
            assert_eq!(dns(p), want, "{p:?}");
        }
        for (p, want) in [
            ("zoë@x.example", Err(EMAIL_UTF8)),
            ("ops@bücher.example", Err(EMAIL_IDN)),
            ("a@b@x.example", Err(ONE_AT)),
            ("ops.example", Err(NO_AT)),
            ("@x.example", Err(EMPTY_LOCAL)),
            ("\"a b\"@x.example", Err(LOCAL)),
            ("a b@x.example", Err(LOCAL)),
            ("ops@[10.0.0.1]", Err(LITERAL)),
            ("ops@", Err(EMPTY_DOMAIN)),
            ("ops@x.example.", Err(TRAILING_DOT)),
            ("ops@*.", Err(TRAILING_DOT)),
            ("ops@.*", Err(EMPTY_LABEL)),
            ("*.example.", Err(TRAILING_DOT)),
            ("*..example", Err(EMPTY_LABEL)),
            ("*!", Err(LABEL)),
            ("*\"", Err(LOCAL)),
            ("Ops.Team+x@Partners.EXAMPLE", Ok(())),
            ("*@*.example", Ok(())),
            ("ops@*", Ok(())),
            ("*.example", Ok(())),
            ("ops*", Ok(())),
            ("!*x", Ok(())),
            ("*", Ok(())),
        ] {
            assert_eq!(email(p), want, "{p:?}");
        }
        for (p, want) in [
            ("ops\r", Err(TEXT_CONTROL)),
            ("ops\0", Err(TEXT_CONTROL)),
            ("a\u{85}b", Err(TEXT_CONTROL)),
            ("José *", Ok(())),
            ("*.svc", Ok(())),
        ] {
            assert_eq!(text(p), want, "{p:?}");
        }
        for (p, want) in [
            ("spiffe://td/ns/prod/sa/my%20svc", Err(URI_RESERVED)),
            ("spiffe://td/ns/prod/..;/admin", Err(URI_RESERVED)),
            ("spiffe://td/a\\b", Err(URI_RESERVED)),
            ("spiffe://td/ns/../x", Err(URI_DOT)),
            ("spiffe://td/ns/*/.", Err(URI_DOT)),
            ("spiffe://td/a b", Err(URI_GRAPHIC)),
            ("spiffe://td/w\u{e9}b", Err(URI_GRAPHIC)),
            ("spiffe://td/ns/*/sa/*", Ok(())),
            ("spiffe://td", Ok(())),
            ("spiffe://td/ns/.*/x", Ok(())),
            ("spiffe://td/ns/a..b", Ok(())),
        ] {
            assert_eq!(uri(p), want, "{p:?}");
        }
    }
}
