//! Trailer fields: a field the head's rules would not let through does not come through after the body.
//!
//! A trailer section (an HTTP/2 HEADERS frame after the data, an HTTP/1.1
//! chunked body's trailer) is a second set of header fields. Most
//! applications keep it apart, but some merge it into the request's headers
//! (Tomcat 8.5 does, for the names in its `allowedTrailerHeaders`), so a
//! client could send there what hotproxy
//! strips from the head: `ssl-client-verify: SUCCESS`, an
//! `X-Forwarded-For`. RFC 9110 §6.5.1 forbids generating framing, routing
//! and authentication fields as trailers and merging trailers into the
//! head unless a field's definition allows it; hotproxy drops, in both
//! directions, the fields no trailer may carry (hop-by-hop, framing,
//! `Host`), and on a request also every field it vouches for in the head
//! ([`crate::proxy::headers::is_vouched_for`]) and every field that decides
//! the request before its body (credentials, conditions, content format),
//! and refuses a client's
//! section of more fields than a head may have, or with a value padded
//! with whitespace (malformed on HTTP/2, as in a head). The rest (gRPC's
//! `grpc-status`, a checksum) passes as sent. nginx, which reads a request
//! body whole before it forwards it, sends no request trailers at all.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use http_body_util::BodyExt;

use crate::proxy::forward::ResponseBody;
use crate::proxy::headers::{Message, is_hop_by_hop, is_vouched_for, remove_where};
use crate::proxy::request::{MAX_HEADER_FIELDS, padded};

/// A client's trailer section refused as its head would be.
#[derive(Debug, thiserror::Error)]
pub enum BadTrailers {
    #[error("more than {MAX_HEADER_FIELDS} trailer fields")]
    TooMany,
    #[error("trailer field value with leading or trailing whitespace")]
    Padded,
}

/// Check a client's request trailers and drop what may not follow a body.
/// A section of more than [`MAX_HEADER_FIELDS`] fields is refused, as a
/// head is: hyper's HTTP/1.1 parser holds trailers to that count, and an
/// HTTP/2 one is held here, so the limit is the same on both protocols.
/// So is one with a value that starts or ends with SP or HTAB: malformed
/// on HTTP/2 (RFC 9113 §8.2.1), where an upstream holding to the RFC
/// refuses the request (a failure counted against its endpoint) and an
/// HTTP/1.1 one trims it. (HTTP/1.1's parser trims it on the way in.)
pub fn clean_request(trailers: &mut HeaderMap) -> Result<(), BadTrailers> {
    if trailers.len() > MAX_HEADER_FIELDS {
        return Err(BadTrailers::TooMany);
    }
    if padded(trailers) {
        return Err(BadTrailers::Padded);
    }
    remove_where(trailers, |n| {
        never_a_trailer(n) || is_vouched_for(n) || decides_the_request(n)
    });
    Ok(())
}

/// What a request's head must carry because it decides the request before
/// its body is read (RFC 9110 §6.5.1: authentication, request modifiers,
/// content format): a trailer may not carry it, and a backend merging
/// trailers into the head would read a credential or a condition that no
/// route rule, limit or log saw.
fn decides_the_request(name: &HeaderName) -> bool {
    matches!(
        *name,
        header::AUTHORIZATION
            | header::PROXY_AUTHORIZATION
            | header::COOKIE
            | header::EXPECT
            | header::MAX_FORWARDS
            | header::RANGE
            | header::IF_MATCH
            | header::IF_NONE_MATCH
            | header::IF_MODIFIED_SINCE
            | header::IF_UNMODIFIED_SINCE
            | header::IF_RANGE
            | header::CACHE_CONTROL
            | header::CONTENT_TYPE
            | header::CONTENT_ENCODING
            | header::CONTENT_RANGE
    )
}

/// Drop from an upstream's response trailers what may not follow a body
/// (HTTP/2 refuses connection-specific fields, and would reset the
/// client's stream instead of ending it), and trim the whitespace around
/// a value an HTTP/2 upstream padded, as HTTP/1.1's parser trims it
/// ([`crate::proxy::padding`]): an HTTP/2 client holding to the RFC would
/// refuse the stream.
pub fn clean_response(trailers: &mut HeaderMap) {
    remove_where(trailers, never_a_trailer);
    crate::proxy::padding::trim(trailers);
}

/// A `Trailer` value without the `named` names (those a `Connection`
/// nominated: [`crate::proxy::hop::strip_connection_nominated`]); `None`
/// when none is left.
///
/// A hostile head may name thousands on both sides (`Connection: a,a,…`,
/// `Trailer: b,b,…`, 64 KiB each): the names are looked up in a set (made
/// once for every `Trailer` field, each name once), and
/// no more `Trailer` tokens are read than a section may hold fields (as
/// [`announced`] reads them). A scan of `named` per token cost the product,
/// ~10⁸ comparisons a request before routing.
pub fn without(
    value: &HeaderValue,
    named: &std::collections::HashSet<HeaderName>,
) -> Option<HeaderValue> {
    let kept: Vec<&str> = value
        .to_str()
        .ok()?
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .take(MAX_HEADER_FIELDS)
        .filter(|t| HeaderName::from_bytes(t.as_bytes()).is_ok_and(|n| !named.contains(&n)))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// The names a request's `Connection` nominated (none: not in its
/// extensions), for its trailers to lose as its head did.
#[derive(Clone, Debug)]
pub struct Nominated(pub Vec<HeaderName>);

impl Nominated {
    /// Those a request's `extensions` hold, taken out (none: empty).
    pub fn take(extensions: &mut http::Extensions) -> Vec<HeaderName> {
        extensions
            .remove::<Nominated>()
            .map(|n| n.0)
            .unwrap_or_default()
    }
}

/// `resp` whose trailer fields named in its `Connection` (`named`, taken
/// from its head) go as the head's did: an HTTP/2 client is sent every
/// trailer field, announced or not. None named (nearly every response):
/// `resp` as it is.
pub fn lose_nominated(
    resp: http::Response<ResponseBody>,
    named: Vec<HeaderName>,
) -> http::Response<ResponseBody> {
    if named.is_empty() {
        return resp;
    }
    resp.map(|body| {
        body.map_frame(move |mut frame| {
            if let Some(t) = frame.trailers_mut() {
                remove_named(t, &named);
            }
            frame
        })
        .boxed()
    })
}

/// Remove the `named` fields from `trailers` (a `Connection` nominated
/// them: RFC 9110 §7.6.1).
pub fn remove_named(trailers: &mut HeaderMap, named: &[HeaderName]) {
    for n in named {
        trailers.remove(n);
    }
}

/// The `Trailer` header a message goes on with: of the first
/// [`MAX_HEADER_FIELDS`] names it announced (a section may not have more
/// fields), those a trailer may carry (on a request, none hotproxy vouches
/// for), each once; or none. hyper writes an HTTP/1.1 chunked body's
/// trailer fields only if the head announced them, and holds the
/// announcement to what the section may carry: a name cut here is a field
/// never sent.
pub fn announced(headers: &HeaderMap, message: Message) -> Option<HeaderValue> {
    let mut names: Vec<HeaderName> = Vec::new();
    // Bounded before anything is parsed: a 64 KiB `Trailer` of thousands
    // of names (each a name to build, and to compare with those kept)
    // must cost no more than a hundred.
    let listed = headers
        .get_all(header::TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .take(MAX_HEADER_FIELDS)
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok());
    for name in listed {
        let forbidden = never_a_trailer(&name)
            || (message == Message::Request
                && (is_vouched_for(&name) || decides_the_request(&name)));
        if !forbidden && !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return None;
    }
    let joined: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
    HeaderValue::from_str(&joined.join(", ")).ok()
}

/// Framing and routing fields, and hop-by-hop ones.
fn never_a_trailer(name: &HeaderName) -> bool {
    is_hop_by_hop(name) || name == header::CONTENT_LENGTH || name == header::HOST
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(names: &[&str]) -> HeaderMap {
        names
            .iter()
            .map(|n| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_static("x"),
                )
            })
            .collect()
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut v: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        v.sort();
        v
    }

    /// Credentials, request modifiers and content format decide what the
    /// request is before its body is read (RFC 9110 §6.5.1): a backend
    /// that merges trailers into the head (Tomcat, for the names it
    /// allows) would read an `Authorization` no route rule or log saw.
    #[test]
    fn request_trailers_carry_no_credentials_or_request_controls() {
        let forbidden = [
            "authorization",
            "proxy-authorization",
            "cookie",
            "expect",
            "max-forwards",
            "range",
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
            "if-range",
            "cache-control",
            "content-type",
            "content-encoding",
            "content-range",
        ];
        let mut t = section(&[&forbidden[..], &["grpc-status", "x-checksum"]].concat());
        clean_request(&mut t).unwrap();
        assert_eq!(names(&t), ["grpc-status", "x-checksum"]);
        let head: HeaderMap = [(
            header::TRAILER,
            HeaderValue::from_str(&format!("{}, x-checksum", forbidden.join(", "))).unwrap(),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            announced(&head, Message::Request).unwrap(),
            "x-checksum",
            "the announcement keeps only what may follow"
        );
        // A response's trailers are the upstream's: left as sent.
        let mut t = section(&["content-type", "cache-control"]);
        clean_response(&mut t);
        assert_eq!(names(&t), ["cache-control", "content-type"]);
    }

    #[test]
    fn request_trailers_carry_nothing_the_head_would_not() {
        let mut t = section(&[
            "grpc-status",
            "x-checksum",
            "content-length",
            "transfer-encoding",
            "host",
            "connection",
            "te",
            "x-forwarded-for",
            "forwarded",
            "x-original-url",
            "via",
            "x-request-id",
            "ssl-client-verify",
            "x-client-cert-subject",
            "x_client_cert_subject",
            "x-client-cert",
            "x_arr_clientcert",
            "client-cert",
            "x-forwarded-client-cert",
            "api_key",
        ]);
        clean_request(&mut t).unwrap();
        assert_eq!(names(&t), ["api_key", "grpc-status", "x-checksum"]);
    }

    #[test]
    fn request_trailer_values_padded_with_whitespace_are_refused() {
        for v in [" x", "x ", "\tx", "x\t", " "] {
            let mut t: HeaderMap = [(header::ETAG, HeaderValue::from_str(v).unwrap())]
                .into_iter()
                .collect();
            assert!(
                matches!(clean_request(&mut t), Err(BadTrailers::Padded)),
                "{v:?}"
            );
        }
        let mut t: HeaderMap = [(header::ETAG, HeaderValue::from_static("a b\tc"))]
            .into_iter()
            .collect();
        clean_request(&mut t).unwrap();
    }

    #[test]
    fn response_trailers_keep_what_an_application_sends() {
        let mut t = section(&[
            "grpc-status",
            "grpc-message",
            "x-request-id",
            "connection",
            "keep-alive",
            "content-length",
        ]);
        clean_response(&mut t);
        assert_eq!(names(&t), ["grpc-message", "grpc-status", "x-request-id"]);
    }
}
