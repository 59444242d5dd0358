//! Small request bodies read whole before an upstream is chosen (nginx's request buffering).
//!
//! A body whose declared length is at most `limits.body_buffer_bytes` is
//! read from the client, each read within `body_read_timeout` and the
//! whole within the upstream's `request_timeout` (the forwarder's clock),
//! before any upstream connection is taken. A client that uploads slowly then holds
//! only its own connection, never an upstream one (nginx's
//! `proxy_request_buffering`, HAProxy's `option http-buffer-request`), and
//! the request can be sent again like a bodyless one.
//!
//! Only a declared length is waited for. A body of unknown length (HTTP/1.1
//! chunked, an HTTP/2 stream without `content-length`) may be a stream the
//! client continues only after it sees a response (gRPC), so it is streamed,
//! as is a body over the cap. What this holds in memory is at most the cap
//! per request in flight: the body's bytes in one buffer ([`gather`]),
//! however many pieces they came in.

use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::proxy::body::{BodyFault, ClientBody, Fault};
use crate::proxy::edge::BytesIn;
use crate::proxy::forward::BoxError;

/// Whether `body` is read whole first: it has content, of a declared
/// length of at most `cap` bytes (`0` turns buffering off).
pub fn wanted(body: &Incoming, cap: usize) -> bool {
    !body.is_end_stream() && body.size_hint().exact().is_some_and(|n| n <= cap as u64)
}

/// Read `body` to its end; the client's fault (malformed, stalled past
/// `read_timeout`) if it does not arrive whole.
pub async fn read_whole(
    body: Incoming,
    read_timeout: Duration,
    counted: Option<BytesIn>,
) -> Result<(ClientBody, BodyFault), Fault> {
    // Its declared length was held to `max_body_bytes` before routing, and
    // to the cap by `wanted`.
    let declared = body
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let (streamed, fault) = ClientBody::new(body, read_timeout, 0);
    match gather(streamed.counted(counted), declared).await {
        Ok((data, trailers)) => Ok(ClientBody::whole(data, trailers, read_timeout)),
        Err(e) => Err(fault
            .cause()
            .cloned()
            .unwrap_or_else(|| Fault::Malformed(e.to_string()))),
    }
}

/// More body than its declared length (hyper and h2 stop that first: this
/// keeps the buffer's bound from resting on them alone).
#[derive(Debug, thiserror::Error)]
#[error("the request body is longer than its declared length of {0} bytes")]
pub struct Overlong(pub usize);

/// What a gathering buffer takes at first when a body comes in more than
/// one piece (or the declared length, if less): a default-sized body
/// (`body_buffer_bytes`, 16 KiB) fits it with no reallocation.
const FIRST_ROOM: usize = 16 * 1024;

/// The data of `body` (of `declared` bytes at most) in one [`Bytes`], and
/// its trailers.
///
/// A body that comes in one piece (the common case: a small body in the
/// read or the DATA frame that brought it) is that piece, with no copy and
/// no allocation. One in more pieces is copied into one buffer as they
/// come: an HTTP/1.1 client sending a byte per TLS record, or an HTTP/2
/// one a byte per DATA frame, is a piece per byte, and keeping each piece
/// (what `Collected` does) held about 32 bytes of bookkeeping per byte
/// (512 KiB for a 16 KiB body). The buffer starts at `FIRST_ROOM` (or
/// what came, if more; the declared length, if less) and grows by
/// doubling up to the declared length, so what a client makes hotproxy
/// hold is at most 16 KiB or the declared length to start, then at most
/// twice what came, never more than `declared`.
pub async fn gather<B>(body: B, declared: usize) -> Result<(Bytes, Option<HeaderMap>), BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    let mut held = Held::Nothing;
    let mut len = 0usize;
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame.map_err(Into::into)?.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    match &mut trailers {
                        Some(held) => held.extend(t),
                        None => trailers = Some(t),
                    }
                }
                continue;
            }
        };
        if frame.is_empty() {
            continue;
        }
        len = match len.checked_add(frame.len()) {
            Some(n) if n <= declared => n,
            _ => return Err(Overlong(declared).into()),
        };
        held = match held {
            Held::Nothing => Held::One(frame),
            Held::One(first) => {
                let mut buf = Vec::new();
                room(&mut buf, len, declared);
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&frame);
                Held::Gathered(buf)
            }
            Held::Gathered(mut buf) => {
                room(&mut buf, len, declared);
                buf.extend_from_slice(&frame);
                Held::Gathered(buf)
            }
        };
    }
    let data = match held {
        Held::Nothing => Bytes::new(),
        Held::One(data) => data,
        // Filled to its capacity (the declared length, when that is what
        // came): no copy.
        Held::Gathered(buf) => Bytes::from(buf),
    };
    Ok((data, trailers))
}

/// A body's data so far.
enum Held {
    Nothing,
    /// The first piece, kept as it came.
    One(Bytes),
    /// Every piece so far, copied.
    Gathered(Vec<u8>),
}

/// Make room in `buf` for `len` bytes in all (at most `declared`):
/// doubling, at least [`FIRST_ROOM`], never past `declared`.
fn room(buf: &mut Vec<u8>, len: usize, declared: usize) {
    if len <= buf.capacity() {
        return;
    }
    let want = len
        .max(buf.capacity().saturating_mul(2))
        .max(FIRST_ROOM)
        .min(declared);
    // Exact: `reserve` may round up past the declared length.
    buf.reserve_exact(want - buf.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_doubles_up_to_the_declared_length() {
        let mut buf = Vec::new();
        room(&mut buf, 2, 100);
        assert_eq!(buf.capacity(), 100);
        let mut buf = Vec::new();
        let declared = 100_000;
        room(&mut buf, 2, declared);
        assert_eq!(buf.capacity(), FIRST_ROOM);
        buf.resize(FIRST_ROOM, 0);
        room(&mut buf, FIRST_ROOM + 1, declared);
        assert_eq!(buf.capacity(), 2 * FIRST_ROOM);
        buf.resize(4 * FIRST_ROOM, 0);
        room(&mut buf, 4 * FIRST_ROOM + 1, declared);
        assert_eq!(buf.capacity(), declared);
    }
}
