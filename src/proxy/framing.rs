//! An upstream response's length as a client would read it: a response hyper's client accepts but a client could read otherwise is refused (502).
//!
//! hyper's HTTP/1.1 client reads a response with both `Content-Length` and
//! `Transfer-Encoding` by its chunks (RFC 9112 §6.3) and keeps both fields;
//! one whose last transfer coding is not `chunked` it reads to the
//! connection's end, that coding still applied. Forwarded, the transfer
//! coding removed as hop-by-hop, the client is told a length the body does
//! not have (the rest read as the next response on its connection), or gets
//! a coded body with nothing saying so. nginx answers both with a 502
//! ("upstream sent "Content-Length" and "Transfer-Encoding" headers at the
//! same time", "upstream sent unknown "Transfer-Encoding""), and so does
//! hotproxy: [`refused`], as [`crate::proxy::failure::Failure::Framing`].
//!
//! `Content-Length` reaches a client once, or not at all where it may not
//! be (RFC 9110 §8.6): hyper's client takes it twice, or as a list (`5,
//! 5`), when the values agree, and h2's reads the first of several; nghttp2
//! resets such a stream and llhttp refuses the response. nginx answers a
//! duplicate with a 502 ("upstream sent duplicate header line"), as
//! [`refused`] does, and removes it from a `204` ([`unsent_length`]); a
//! value that is no number too ("upstream sent invalid "Content-Length"
//! header"), which hyper's client never reads on a `HEAD`'s answer, a
//! `204` or a `304`, or one too large for a length ([`is_length`]).
//!
//! An HTTP/1.1 response head over [`MAX_RESPONSE_HEAD`] is refused too
//! ([`head_bytes`]): hyper bounds its read buffer only between reads, and
//! a head that came in one read (a backend writing its whole response at
//! once) passed at up to twice the bound.

use http::{HeaderMap, Response, StatusCode, Version, header};

use crate::upstream::conn::MAX_RESPONSE_HEAD;

/// Why a response must not reach the client as the upstream framed it;
/// `None` when it may.
pub fn refused<B>(resp: &Response<B>) -> Option<&'static str> {
    let headers = resp.headers();
    // One pass over the fields: a hash and a probe each for the two
    // framing names cost more than reading every name once.
    let fields = Fields::of(headers);
    if resp.version() < Version::HTTP_2 && head_bytes(resp, fields.bytes) > MAX_RESPONSE_HEAD {
        return Some("upstream response head is over 64 KiB");
    }
    if fields.lengths > 1 {
        return Some("upstream sent more than one Content-Length");
    }
    if fields.bad_length {
        return Some("upstream sent an invalid Content-Length");
    }
    if resp.version() < Version::HTTP_2 && fields.transfer_coding {
        if fields.lengths > 0 || headers.contains_key(header::CONTENT_LENGTH) {
            return Some("upstream sent both Content-Length and Transfer-Encoding");
        }
        if !chunked_once(headers) {
            return Some("upstream sent a Transfer-Encoding other than chunked");
        }
    }
    None
}

/// What [`refused`] reads of a response's fields, in one pass.
struct Fields {
    /// Each field's `name: value` line, as read.
    bytes: usize,
    /// `Content-Length` values: fields, and items of a list in one.
    lengths: usize,
    /// A `Content-Length` value is not a length ([`is_length`]): hyper's
    /// client reads no length of a `HEAD`'s answer, a `204` or a `304`, so
    /// it never refuses one there.
    bad_length: bool,
    /// A `Transfer-Encoding` field is there.
    transfer_coding: bool,
}

impl Fields {
    fn of(headers: &HeaderMap) -> Fields {
        let mut fields = Fields {
            bytes: 0,
            lengths: 0,
            bad_length: false,
            transfer_coding: false,
        };
        for (name, value) in headers {
            fields.bytes += name.as_str().len() + value.len() + 4;
            if name == header::CONTENT_LENGTH {
                fields.lengths += length_items(value);
                fields.bad_length |= !is_length(value.as_bytes());
            } else if name == header::TRANSFER_ENCODING {
                fields.transfer_coding = true;
            }
        }
        fields
    }
}

/// Whether a `Content-Length` value is a length a client reads: one run of
/// digits no greater than `i64::MAX`, the largest `off_t`. nginx refuses a
/// larger one as it refuses `abc` (`ngx_atoof`), and so do curl and
/// nghttp2; h2 reads at most 19 digits. All digits was not enough:
/// `18446744073709551616` on a `HEAD`'s answer reached an HTTP/2 client
/// as sent, and h2 reset its stream.
fn is_length(digits: &[u8]) -> bool {
    !digits.is_empty()
        && digits
            .iter()
            .try_fold(0i64, |n, &d| {
                if !d.is_ascii_digit() {
                    return None;
                }
                n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
            })
            .is_some()
}

/// The bytes of an HTTP/1.1 response head as read: the status line
/// (`HTTP/1.1 200 OK`), the fields' lines (`fields` bytes, [`Fields`]),
/// the empty line.
fn head_bytes<B>(resp: &Response<B>, fields: usize) -> usize {
    let reason = match resp.extensions().get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => reason.as_bytes().len(),
        None => resp.status().canonical_reason().map_or(0, str::len),
    };
    "HTTP/1.1 200 \r\n".len() + reason + fields + 2
}

/// How many `Content-Length` values one field holds: the items of a list.
fn length_items(value: &http::HeaderValue) -> usize {
    match value.to_str() {
        Ok(v) => v.split(',').filter(|n| !n.trim().is_empty()).count(),
        Err(_) => 1,
    }
}

/// A `1xx` or `204` has no body, and a sender must not give it a
/// `Content-Length` (RFC 9110 §8.6): a backend's is removed.
pub fn unsent_length(status: StatusCode, headers: &mut HeaderMap) {
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// The response's transfer codings are `chunked`, once (nginx's one
/// accepted value): a coding before it (`gzip, chunked`) would stay on the
/// body hyper decodes, unsaid.
fn chunked_once(headers: &HeaderMap) -> bool {
    let mut codings = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                return false;
            }
            codings += 1;
        }
    }
    codings == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(version: Version, fields: &[(&str, &str)]) -> Response<()> {
        let mut resp = Response::new(());
        *resp.version_mut() = version;
        for (name, value) in fields {
            resp.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        resp
    }

    #[test]
    fn transfer_coding_must_be_chunked_once_and_alone() {
        let h1 = Version::HTTP_11;
        for ok in [
            &[][..],
            &[("content-length", "5")],
            &[("transfer-encoding", "chunked")],
            &[("transfer-encoding", "Chunked")],
        ] {
            assert_eq!(refused(&response(h1, ok)), None, "{ok:?}");
        }
        for bad in [
            &[("transfer-encoding", "chunked"), ("content-length", "5")][..],
            &[("transfer-encoding", "gzip")],
            &[("transfer-encoding", "gzip, chunked")],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "identity")],
        ] {
            assert!(refused(&response(h1, bad)).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn content_length_once_on_either_protocol() {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let once = response(version, &[("content-length", "5")]);
            assert_eq!(refused(&once), None, "{version:?}");
            for bad in [
                &[("content-length", "5"), ("content-length", "5")][..],
                &[("content-length", "5, 5")],
                &[("content-length", "5,5")],
            ] {
                assert!(refused(&response(version, bad)).is_some(), "{bad:?}");
            }
        }
    }

    /// A length is a run of digits up to `i64::MAX` (nginx's `off_t`):
    /// past it, all digits or not, it is refused as `abc` is.
    #[test]
    fn a_length_is_digits_up_to_i64_max() {
        for (value, ok) in [
            ("0", true),
            ("007", true),
            ("9223372036854775807", true),
            ("9223372036854775808", false),
            ("18446744073709551615", false),
            ("18446744073709551616", false),
            ("123456789012345678901", false),
            ("", false),
            ("+5", false),
            ("-1", false),
            ("abc", false),
        ] {
            assert_eq!(is_length(value.as_bytes()), ok, "{value:?}");
        }
        let huge = response(
            Version::HTTP_11,
            &[("content-length", "18446744073709551616")],
        );
        assert_eq!(
            refused(&huge),
            Some("upstream sent an invalid Content-Length")
        );
    }

    /// An HTTP/1.1 head is measured as read, and refused past 64 KiB;
    /// an HTTP/2 one is h2's to bound (its header list size).
    #[test]
    fn an_http1_head_over_64_kib_is_refused() {
        // "HTTP/1.1 200 OK\r\n", "x-fat: …\r\n", "\r\n".
        let fits = MAX_RESPONSE_HEAD - 17 - 2 - "x-fat: \r\n".len();
        for (len, version, ok) in [
            (fits, Version::HTTP_11, true),
            (fits + 1, Version::HTTP_11, false),
            (fits + 1, Version::HTTP_10, false),
            (fits + 1, Version::HTTP_2, true),
        ] {
            let fat = "f".repeat(len);
            let resp = response(version, &[("x-fat", &fat)]);
            let fields = Fields::of(resp.headers()).bytes;
            assert_eq!(head_bytes(&resp, fields), MAX_RESPONSE_HEAD - fits + len);
            assert_eq!(refused(&resp).is_none(), ok, "{len} {version:?}");
        }
    }

    #[test]
    fn no_length_on_a_1xx_or_204() {
        for (status, kept) in [(204, false), (101, false), (200, true), (304, true)] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_LENGTH, "12".parse().unwrap());
            unsent_length(StatusCode::from_u16(status).unwrap(), &mut headers);
            assert_eq!(
                headers.contains_key(header::CONTENT_LENGTH),
                kept,
                "{status}"
            );
        }
    }
}
