//! Field values an HTTP/2 upstream padded with whitespace, trimmed as an HTTP/1.1 upstream's parser trims them.
//!
//! RFC 9113 §8.2.1 calls a field value that starts or ends with SP or HTAB
//! malformed; h2 (0.4.20) takes it as it is. hotproxy refuses such a value
//! from a client ([`crate::proxy::request::padded`]), but an upstream's
//! passed through to HTTP/2 clients that hold to the RFC (nghttp2's: curl
//! `--http2`, browsers) and refused the stream, while the access log said
//! `200`. The same backend behind an HTTP/1.1 upstream works: httparse
//! trims the whitespace around a value (RFC 9112 §5), so trimming it here
//! is what HTTP/1.1 delivers, and what RFC 9110 §5.5 lets a recipient do.

use http::{HeaderMap, HeaderValue};

use crate::proxy::request::padded;

/// `headers` with SP and HTAB trimmed around every value. Two bytes a
/// value looked at; a map is rebuilt value by value only when one needs it.
pub fn trim(headers: &mut HeaderMap) {
    if !padded(headers) {
        return;
    }
    for value in headers.values_mut() {
        if let Some(trimmed) = trimmed(value) {
            *value = trimmed;
        }
    }
}

/// A response's head with [`trim`] applied.
pub fn trimmed_head<B>(mut resp: http::Response<B>) -> http::Response<B> {
    trim(resp.headers_mut());
    resp
}

/// `value` without the SP and HTAB around it; `None` when it has none.
fn trimmed(value: &HeaderValue) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    if (start, end) == (0, bytes.len()) {
        return None;
    }
    // A part of a valid value is valid (no control byte was added).
    let mut trimmed = HeaderValue::from_bytes(&bytes[start..end]).ok()?;
    trimmed.set_sensitive(value.is_sensitive());
    Some(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed_of_sp_and_htab_only_when_padded() {
        let mut h = HeaderMap::new();
        h.append("a", HeaderValue::from_static(" abc\t"));
        h.append("a", HeaderValue::from_static("in side"));
        h.append("b", HeaderValue::from_static(" \t "));
        h.append("c", HeaderValue::from_static("plain"));
        trim(&mut h);
        let a: Vec<_> = h.get_all("a").iter().collect();
        assert_eq!(a, ["abc", "in side"]);
        assert_eq!(h["b"], "");
        assert_eq!(h["c"], "plain");
        assert!(trimmed(&HeaderValue::from_static("plain")).is_none());
    }
}
