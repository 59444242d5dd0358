//! `X-Request-Id` at the edge, and the trace id of a W3C `traceparent` for the access log.
//!
//! A client's id is kept when it is well-formed — 1 to 128 characters of
//! `[A-Za-z0-9._-]`, which covers UUIDs, ULIDs, hex and Heroku/nginx-style
//! ids, and keeps log lines and headers free of injection — unless the
//! listener says `request_id: { trust_client: false }`. Otherwise a 128-bit
//! random id (32 hex digits) is generated. `traceparent`/`tracestate` are
//! never touched.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// `request_id:` of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestIdConfig {
    /// Keep a well-formed client `X-Request-Id` (default); `false` always
    /// replaces it (an edge facing untrusted clients).
    #[serde(default = "yes")]
    pub trust_client: bool,
}

fn yes() -> bool {
    true
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        RequestIdConfig { trust_client: true }
    }
}

/// The longest client id kept.
pub const MAX_LEN: usize = 128;
const _: () = assert!(MAX_LEN <= u8::MAX as usize, "Kept's length is a u8");

/// Whether a client-sent id is kept as is.
pub fn well_formed(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Settle the request's id: keep the client's (if trusted and
/// well-formed; exactly one), else generate one. Returns the value now in
/// `headers`, for the response and the log (which keeps a client's
/// [`detached`]).
///
/// The value is marked sensitive: HTTP/2 then sends it as a never-indexed
/// literal (RFC 7541 §6.2.3). An id is used once, so indexing it only
/// churns the HPACK dynamic table: every response walked the chain of the
/// ~50 earlier ids the table held, comparing each, then evicted one
/// (h2's encoder: 7.5K instructions per response, half of it that).
pub fn settle(headers: &mut HeaderMap, trust_client: bool) -> HeaderValue {
    if trust_client {
        let mut all = headers.get_all(&X_REQUEST_ID).iter();
        if let (Some(v), None) = (all.next(), all.next())
            && well_formed(v.as_bytes())
            && let Some(v) = headers.get_mut(&X_REQUEST_ID)
        {
            v.set_sensitive(true);
            return v.clone();
        }
    }
    let id = generate();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// `id` ([`settle`]'s) as a value of its own, for what keeps it past the
/// request: its access-log line. A client's id, as hyper parsed it, is a
/// slice of the connection's read buffer (HTTP/1.1) or of the frame it
/// came in (HTTP/2), and a line waiting behind a slow log reader pinned
/// that whole allocation (8 KiB at least, up to `max_header_bytes` with
/// a padded head), which the queue's bounds do not count; on a
/// keep-alive connection hyper then read the next request into a fresh
/// buffer. One allocation of at most [`MAX_LEN`] bytes, as [`generate`]'s.
pub fn detached(id: &HeaderValue) -> HeaderValue {
    let bytes = id.as_bytes();
    if bytes.len() > MAX_LEN {
        // Not one `settle` returns.
        return id.clone();
    }
    let mut kept = Kept {
        len: bytes.len() as u8,
        bytes: [0; MAX_LEN],
    };
    kept.bytes[..bytes.len()].copy_from_slice(bytes);
    match HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(kept)) {
        Ok(mut copy) => {
            copy.set_sensitive(true);
            copy
        }
        // Not one `settle` returns either: its bytes are checked.
        Err(_) => id.clone(),
    }
}

/// A [`detached`] id's bytes.
struct Kept {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl AsRef<[u8]> for Kept {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// 128 random bits as 32 lowercase hex digits.
pub fn generate() -> HeaderValue {
    let bytes = random_128();
    let mut hex = [0u8; 32];
    crate::material::info::hex_into(&bytes, &mut hex);
    // One allocation, shared by the copies that go upstream, back to the
    // client and into the access log (a `Vec`-backed value would allocate
    // again on its first clone).
    let mut id = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(hex))
        .expect("hex is a valid header value");
    id.set_sensitive(true);
    id
}

/// Random bytes drawn from aws-lc's generator a batch at a time: one
/// `rand::fill` costs about as much as the rest of the request's header
/// work, so each thread fills a buffer for 256 ids and hands out 16 bytes
/// per request (the same generator and quality, as Envoy batches its
/// UUIDs). An id is a correlation handle, not a secret; the buffer is
/// never reused.
struct Batch {
    bytes: [u8; 4096],
    next: usize,
}

thread_local! {
    static BATCH: std::cell::RefCell<Batch> = const {
        std::cell::RefCell::new(Batch { bytes: [0; 4096], next: 4096 })
    };
}

/// 128 random bits for one id.
fn random_128() -> [u8; 16] {
    BATCH.with_borrow_mut(|b| {
        if b.next + 16 > b.bytes.len() {
            // The system RNG failing is not a reason to fail a request; a
            // zero id is still unique enough to be noticed.
            if aws_lc_rs::rand::fill(&mut b.bytes).is_err() {
                b.bytes = [0; 4096];
            }
            b.next = 0;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b.bytes[b.next..b.next + 16]);
        b.next += 16;
        id
    })
}

/// The trace id of a valid W3C `traceparent`
/// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), for the log:
/// exactly one field (two make it invalid, as the W3C test suite's
/// `test_traceparent_duplicated` has it), neither id all zeros (§3.2.2.3,
/// §3.2.2.4).
pub fn trace_id(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(&TRACEPARENT).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return None;
    };
    let v = v.to_str().ok()?;
    let mut parts = v.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |s: &str, n| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    ok.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detached id is the same text, sensitive, and shares nothing with
    /// the buffer the id was parsed from.
    #[test]
    fn detached_is_a_copy() {
        let head = bytes::Bytes::from(format!("x-request-id: {}", "a".repeat(MAX_LEN)));
        let v = HeaderValue::from_maybe_shared(head.slice(14..)).unwrap();
        let id = detached(&v);
        assert_eq!(id, v);
        assert!(id.is_sensitive());
        assert_ne!(id.as_bytes().as_ptr(), v.as_bytes().as_ptr());
    }

    /// Well-formed client ids are kept; anything else is replaced; two ids are one too many.
    #[test]
    fn keeps_or_replaces() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(settle(&mut h, true), "abc-123_x.y");
        assert_eq!(h["x-request-id"], "abc-123_x.y");
        let replaced = settle(&mut h, false);
        assert_ne!(replaced, "abc-123_x.y");
        assert_eq!(h["x-request-id"], replaced);
        for bad in ["", "a b", "a\"b", "é", &"a".repeat(129)] {
            let mut h = HeaderMap::new();
            h.insert(
                "x-request-id",
                HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            );
            let id = settle(&mut h, true);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert_eq!(h.get_all("x-request-id").iter().count(), 1);
        }
        let mut h = HeaderMap::new();
        h.append("x-request-id", HeaderValue::from_static("one"));
        h.append("x-request-id", HeaderValue::from_static("two"));
        let id = settle(&mut h, true);
        assert_eq!(id.len(), 32);
        assert_eq!(h.get_all("x-request-id").iter().count(), 1);
        assert!(well_formed("a".repeat(128).as_bytes()));
    }

    /// Kept or generated, the id is sensitive, in the request and in the
    /// returned copy (HTTP/2 sends it never-indexed).
    #[test]
    fn ids_are_never_indexed() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123_x.y"));
        assert!(settle(&mut h, true).is_sensitive());
        assert!(h["x-request-id"].is_sensitive());
        assert!(settle(&mut h, false).is_sensitive());
        assert!(h["x-request-id"].is_sensitive());
    }

    #[test]
    fn generated_ids_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        // Across batch refills too: no id repeats within a few batches.
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| generate()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn trace_ids() {
        let mut h = HeaderMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert("traceparent", HeaderValue::from_static(tp));
        assert_eq!(trace_id(&h), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // An all-zero parent id is invalid (W3C Trace Context §3.2.2.4).
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
        ] {
            h.insert("traceparent", HeaderValue::from_static(bad));
            assert_eq!(trace_id(&h), None, "{bad}");
        }
        h.insert(
            "traceparent",
            HeaderValue::from_static("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
        );
        assert!(trace_id(&h).is_some(), "future versions may add fields");
        // Two `traceparent` fields: neither is the request's (the W3C test
        // suite's test_traceparent_duplicated).
        let mut h = HeaderMap::new();
        h.append("traceparent", HeaderValue::from_static(tp));
        h.append("traceparent", HeaderValue::from_static(tp));
        assert_eq!(trace_id(&h), None, "duplicated");
    }
}
