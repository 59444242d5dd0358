//! A listener's connection settings: its limits and the hyper HTTP/1.1 and HTTP/2 server builders made from them.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Limits;

/// Streams an HTTP/2 client may have open at once (nginx: 128; Envoy's
/// edge guidance: 100).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Response bytes an HTTP/2 stream queues beyond what the client has taken
/// (Envoy's edge `per_connection_buffer_limit_bytes`: 32 KiB).
const STREAM_SEND_BUFFER: usize = 32 * 1024;

/// Per-listener settings that apply to new connections (limits and the
/// hyper builders derived from them). One builder per protocol: the one
/// ALPN agreed on serves the connection, nothing is sniffed.
pub struct Settings {
    pub limits: Limits,
    pub(super) h1: http1::Builder,
    pub(super) h2: http2::Builder<TokioExecutor>,
}

impl Settings {
    pub fn new(limits: Limits) -> Arc<Settings> {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            // Heads are timed by the connection driver (conn::Activity):
            // hyper's timer would also run between keep-alive requests.
            .header_read_timeout(None)
            // hyper answers 431 when a request head exceeds this.
            .max_header_size(limits.max_header_bytes)
            .max_buf_size(limits.max_header_bytes.max(8192));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
            // Envoy's edge settings: each stream holds an upstream request
            // and (below) at most 32 KiB of response waiting for the client.
            // hyper's defaults (200 streams, 400 KiB each) let one client
            // that never reads make hotproxy hold over 100 MB.
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_send_buf_size(STREAM_SEND_BUFFER)
            // Every response to an HTTP/2 client leaves the service with a
            // `date` (`date::never_indexed` adds one where it has none):
            // hyper's own check would be one more lookup per response.
            .auto_date_header(false)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            // A client that stops reading does not answer pings either.
            .keep_alive_timeout(limits.send_timeout);
        Arc::new(Settings { limits, h1, h2 })
    }
}
