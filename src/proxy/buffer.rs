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
//! per request in flight.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use crate::proxy::body::{BodyFault, ClientBody, Fault};
use crate::proxy::edge::BytesIn;

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
    // Its declared length was held to `max_body_bytes` before routing.
    let (streamed, fault) = ClientBody::new(body, read_timeout, 0);
    match streamed.counted(counted).collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            let data = collected.to_bytes();
            Ok(ClientBody::whole(data, trailers, read_timeout))
        }
        Err(e) => Err(fault
            .cause()
            .cloned()
            .unwrap_or_else(|| Fault::Malformed(e.to_string()))),
    }
}
