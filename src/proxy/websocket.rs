//! The WebSocket opening handshake (RFC 6455 §4) a tunnel needs: the request's key and version, the `101`'s accept.
//!
//! A request hotproxy would tunnel ([`crate::proxy::tunnel::is_tunnelled`])
//! is one only with a `Sec-WebSocket-Key` (16 bytes in base64) and
//! `Sec-WebSocket-Version: 13`; otherwise it is answered `400`, as RFC 6455
//! §4.2.1 has a server answer a handshake that is not one (with
//! `Sec-WebSocket-Version: 13` when the version is what is wrong, §4.2.2).
//! A `101` to it switches only with the `Sec-WebSocket-Accept` the key asks
//! for (base64 of the SHA-1 of the key and the protocol's GUID): any other
//! is refused as a switch nobody asked for is (`502`). Without both checks
//! a client could have a backend that answers `101` to anything (or keeps
//! speaking HTTP/1.1 after it) take what it wrote next as tunnel bytes: a
//! request past routing, `allow` and header hygiene ("WebSocket
//! smuggling"). Read only for upgrade requests, never on the common path.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::proxy::forward::{ResponseBody, error_response};

/// RFC 6455 §1.3: appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The one version RFC 6455 defines.
const VERSION: &str = "13";

/// The `Sec-WebSocket-Accept` a `101` must carry: base64 of a SHA-1 (20
/// bytes), 28 characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept([u8; 28]);

/// Why a tunnelled upgrade's request is not a WebSocket handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `Sec-WebSocket-Version` missing, repeated or not `13`.
    Version,
    /// `Sec-WebSocket-Key` missing, repeated, or not 16 bytes in base64.
    Key,
    /// Its connection is closing (its listener removed or bound elsewhere
    /// by a reload, its `max_connection_lifetime` over): its tunnel would
    /// be cut as it begins, after the backend opened its side and the
    /// client had its `101`. A `503` with `Connection: close`, not forwarded.
    Closing,
}

impl Refused {
    /// What is wrong, for the log and the `400`'s body.
    pub fn message(self) -> &'static str {
        match self {
            Refused::Version => "unsupported Sec-WebSocket-Version (13 is)",
            Refused::Key => "missing or malformed Sec-WebSocket-Key",
            Refused::Closing => "the connection is closing",
        }
    }

    /// `400`, or `503` for [`Refused::Closing`].
    pub fn status(self) -> StatusCode {
        match self {
            Refused::Closing => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The access log's `authz`: `bad_request` for the `400`, as a refused
    /// head's; `unavailable` for the `503` of a closing connection.
    pub fn authz(self) -> &'static str {
        match self {
            Refused::Closing => "unavailable",
            _ => "bad_request",
        }
    }

    /// The `400`: with `Sec-WebSocket-Version: 13` for a wrong version;
    /// the `503` with `Connection: close`.
    pub fn response(self) -> Response<ResponseBody> {
        let mut resp = error_response(self.status(), self.message());
        let (name, value) = match self {
            Refused::Version => (header::SEC_WEBSOCKET_VERSION, VERSION),
            Refused::Closing => (header::CONNECTION, "close"),
            Refused::Key => return resp,
        };
        resp.headers_mut()
            .insert(name, HeaderValue::from_static(value));
        resp
    }
}

/// The only value of `name` in `headers`, if there is exactly one.
fn only<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    all.next().is_none().then_some(first)
}

/// Check a tunnelled upgrade's request: the `Sec-WebSocket-Accept` its
/// `101` must carry, or why it is refused. The version first: another
/// version's key need not look like this one's.
pub fn handshake(headers: &HeaderMap) -> Result<Accept, Refused> {
    if only(headers, &header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != VERSION.as_bytes())
    {
        return Err(Refused::Version);
    }
    let key = only(headers, &header::SEC_WEBSOCKET_KEY).ok_or(Refused::Key)?;
    let mut nonce = [0u8; 18];
    match STANDARD.decode_slice(key.as_bytes(), &mut nonce) {
        Ok(16) => {}
        _ => return Err(Refused::Key),
    }
    Ok(accept_of(key.as_bytes()))
}

/// base64(SHA-1(key ++ GUID)), RFC 6455 §4.2.2 item 5.
fn accept_of(key: &[u8]) -> Accept {
    use aws_lc_rs::digest;
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    let mut out = [0u8; 28];
    // 20 bytes are 28 in base64: the buffer fits.
    let _ = STANDARD.encode_slice(ctx.finish().as_ref(), &mut out);
    Accept(out)
}

impl Accept {
    /// Whether a `101`'s headers carry this accept, once.
    pub fn answered_in(&self, headers: &HeaderMap) -> bool {
        only(headers, &header::SEC_WEBSOCKET_ACCEPT).is_some_and(|v| v.as_bytes() == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const KEY: (&str, &str) = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    const V13: (&str, &str) = ("sec-websocket-version", "13");

    /// RFC 6455 §1.3's example: its key, its accept.
    #[test]
    fn the_rfcs_example_is_accepted() {
        let accept = handshake(&headers(&[KEY, V13])).unwrap();
        let ok = headers(&[("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")]);
        assert!(accept.answered_in(&ok));
        for wrong in [
            "",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo",
            "dGhlIHNhbXBsZSBub25jZQ==",
        ] {
            let h = headers(&[("sec-websocket-accept", wrong)]);
            assert!(!accept.answered_in(&h), "{wrong}");
        }
        assert!(!accept.answered_in(&HeaderMap::new()));
        let twice = headers(&[
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ]);
        assert!(!accept.answered_in(&twice));
    }

    #[test]
    fn keys_and_versions_that_are_no_handshake_are_refused() {
        let version = [
            vec![KEY],
            vec![KEY, ("sec-websocket-version", "8")],
            vec![KEY, ("sec-websocket-version", "13, 8")],
            vec![KEY, V13, V13],
        ];
        for h in version {
            assert_eq!(handshake(&headers(&h)), Err(Refused::Version), "{h:?}");
        }
        let key = [
            vec![V13],
            vec![V13, ("sec-websocket-key", "dGVzdA==")],
            vec![V13, ("sec-websocket-key", "AAAAAAAAAAAAAAAAAAAAAAAAAA==")],
            vec![V13, ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ")],
            vec![V13, ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZR==")],
            vec![V13, ("sec-websocket-key", "")],
            vec![V13, KEY, KEY],
        ];
        for h in key {
            assert_eq!(handshake(&headers(&h)), Err(Refused::Key), "{h:?}");
        }
        let r = Refused::Version.response();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["sec-websocket-version"], "13");
        let r = Refused::Key.response();
        assert_eq!(r.status(), 400);
        assert!(r.headers().get("sec-websocket-version").is_none());
    }
}
