//! What of a response body came with its head, read before the head is handed on: a body broken there is a 502, not an empty reply.
//!
//! hyper's HTTP/1.1 server writes a response's head and the body's first
//! frames into its buffer and flushes them when the body has to wait; a
//! body that fails before that drops them all, so a backend that broke its
//! body within the read that brought its head (a close after 3 of 1000
//! bytes, a chunk size that is not one) left an HTTP/1.1 client nothing,
//! not even a status line, and an HTTP/2 client a reset stream, while the
//! access log said `200`. Read here first, such a body fails the request
//! instead: the client gets the `502` nginx gives a response it cannot use
//! before sending any of it. A failure later is held back for one poll
//! ([`Early::hold_back`]) so what came before it is flushed: the response
//! is cut after its head, never left empty.

use std::collections::VecDeque;
use std::task::Poll;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::LeasedBody;
use crate::proxy::forward::BoxError;

/// At most this much of a body is read ahead of its head: a larger body
/// that is all there already goes on as it comes (a failure after it is a
/// cut, [`Early::hold_back`]).
const EARLY_BYTES: u64 = 64 * 1024;

/// The frames read with the head, in order, and an error held back.
#[derive(Default)]
pub(super) struct Early {
    /// The common case, one frame (or none), without an allocation.
    first: Option<Frame<Bytes>>,
    more: VecDeque<Frame<Bytes>>,
    /// Data bytes held.
    bytes: u64,
    held_back: Option<BoxError>,
}

impl Early {
    fn hold(&mut self, frame: Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            self.bytes += data.len() as u64;
        }
        match self.first {
            None if self.more.is_empty() => self.first = Some(frame),
            _ => self.more.push_back(frame),
        }
    }

    /// The body failed with `e`: handed on at the next poll, after the
    /// caller said it waits (its writer flushes what it has meanwhile).
    pub(super) fn hold_back(&mut self, e: BoxError) {
        self.held_back = Some(e);
    }

    /// The next frame held, then the error held back.
    pub(super) fn next(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        match self.first.take().or_else(|| self.more.pop_front()) {
            Some(frame) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes -= data.len() as u64;
                }
                Some(Ok(frame))
            }
            None => self.held_back.take().map(Err),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none() && self.more.is_empty() && self.held_back.is_none()
    }

    /// The body's size: what is held, and what the upstream has still to
    /// send (`inner`, as hyper has it: unknown for a chunked body even at
    /// its end). hyper's HTTP/1.1 server frames a response to a client by
    /// the hint it has when it writes the head: exact only if the
    /// upstream's was, so a chunked body stays chunked, with its trailers.
    pub(super) fn size_hint(&self, inner: SizeHint) -> SizeHint {
        if self.bytes == 0 {
            return inner;
        }
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + self.bytes);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + self.bytes);
        }
        hint
    }
}

impl LeasedBody {
    /// Read what of the body is here already (at most [`EARLY_BYTES`]),
    /// waiting for nothing, before the response is handed on. A body the
    /// upstream broke within it fails the request (`Err`: hyper's error,
    /// a `502` with its cause, or the client's fault if its own body broke
    /// first): none of the response has gone to the client yet.
    pub async fn read_early(&mut self) -> Result<(), hyper::Error> {
        std::future::poll_fn(|cx| {
            // A body at its declared end is not asked for more, as
            // hyper's server asks no more of it: bytes an upstream sends
            // past its `Content-Length` are not this response's.
            while !self.ended && !self.body.is_end_stream() && self.early.bytes < EARLY_BYTES {
                match self.poll_upstream(cx, true) {
                    Poll::Pending | Poll::Ready(None) => break,
                    Poll::Ready(Some(Ok(frame))) => self.early.hold(frame),
                    Poll::Ready(Some(Err(e))) => match e.downcast::<hyper::Error>() {
                        Ok(e) => return Poll::Ready(Err(*e)),
                        // `read_timeout` (logged and counted already):
                        // a cut, as for a body that waited.
                        Err(e) => {
                            self.early.hold_back(e);
                            break;
                        }
                    },
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}
