//! The access-log line of a request upgraded to a tunnel, submitted when the tunnel ends.
//!
//! nginx writes an upgraded connection's line when it closes, and Envoy
//! logs an upgrade at the stream's end: the line says how long the
//! WebSocket lived and what it carried, which a line written at the `101`
//! (bytes 0, the handshake's duration) never could.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{Line, RequestLine};

/// The bytes a tunnel relayed, counted at the writes onward: what a cut
/// tunnel had read but not written yet was never relayed.
#[derive(Debug, Default)]
pub struct Relayed {
    /// From the client, written to the upstream.
    pub from_client: AtomicU64,
    /// Written to the client.
    pub to_client: AtomicU64,
}

impl Relayed {
    pub fn to_upstream(&self, n: usize) {
        self.from_client.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn written(&self, n: usize) {
        self.to_client.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A tunnel's line, held by the tunnel and submitted when dropped: when
/// the tunnel ends, whatever ends it, or when its task is dropped with the
/// runtime at shutdown (before the access log closes). Each tunnel gets
/// exactly one line.
pub struct TunnelLine {
    line: Option<Box<RequestLine>>,
    /// The request body's bytes (`None`: no body).
    bytes_in: Option<Arc<AtomicU64>>,
    /// When the request began: the line's duration runs to the tunnel's end.
    started: Instant,
    relayed: Arc<Relayed>,
}

impl TunnelLine {
    /// `line` has the `101`'s status; the bytes and duration are set when
    /// the tunnel ends.
    pub fn new(
        line: Box<RequestLine>,
        bytes_in: Option<Arc<AtomicU64>>,
        started: Instant,
    ) -> TunnelLine {
        TunnelLine {
            line: Some(line),
            bytes_in,
            started,
            relayed: Arc::default(),
        }
    }

    /// The counts the tunnel adds to as bytes pass.
    pub fn relayed(&self) -> Arc<Relayed> {
        self.relayed.clone()
    }
}

impl Drop for TunnelLine {
    fn drop(&mut self) {
        let Some(mut line) = self.line.take() else {
            return;
        };
        let body = self
            .bytes_in
            .as_ref()
            .map_or(0, |b| b.load(Ordering::Relaxed));
        line.bytes_in = body + self.relayed.from_client.load(Ordering::Relaxed);
        line.bytes_out += self.relayed.to_client.load(Ordering::Relaxed);
        line.duration = self.started.elapsed();
        super::submit(Line::Request(line));
    }
}
