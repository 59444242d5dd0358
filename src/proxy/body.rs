//! The client's request body on its way upstream, remembering whether the client broke it.
//!
//! When a forwarded request fails, hyper's error alone does not say which
//! side caused it: a malformed chunked body from the client and a reset from
//! the upstream both surface from the upstream client's `request()`. The
//! body the upstream client reads is this wrapper, so the forwarder knows
//! for certain that the client's body failed (a client error, 400) rather
//! than the upstream (502). It also says when the upstream client has read
//! it to its end ([`BodySent`]): an upstream may answer before it has the
//! whole body, and until the body is through its connection is still busy.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use std::error::Error as _;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A client request body that records why reading it failed.
pub struct ClientBody {
    /// `None`: an empty body (a request replayed from its head alone).
    inner: Option<Incoming>,
    /// `None` for a request without a body.
    state: Option<Arc<State>>,
    /// The access log's count of body bytes read (when it is on).
    counted: Option<crate::proxy::edge::BytesIn>,
}

/// What the forwarder and the upstream connection learn of a body.
struct State {
    failed: OnceLock<String>,
    /// Read to its end by the upstream client.
    read: AtomicBool,
}

/// The forwarder's side of [`ClientBody`]: did the client's body fail, and why?
pub struct BodyFault(Option<Arc<State>>);

impl BodyFault {
    /// The client's body error, if reading it failed.
    pub fn cause(&self) -> Option<&str> {
        self.0
            .as_ref()
            .and_then(|s| s.failed.get())
            .map(String::as_str)
    }
}

/// The upstream connection's side of [`ClientBody`]: has its request's
/// body been read to its end (or had none)?
pub struct BodySent(Option<Arc<State>>);

impl BodySent {
    pub fn done(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|s| s.read.load(Ordering::Relaxed))
    }
}

impl ClientBody {
    /// Wrap `inner`. A request without a body (most GETs) cannot fail and
    /// costs no allocation.
    pub fn new(inner: Incoming) -> (ClientBody, BodyFault) {
        let state = (!inner.is_end_stream()).then(|| {
            Arc::new(State {
                failed: OnceLock::new(),
                read: AtomicBool::new(false),
            })
        });
        let fault = BodyFault(state.clone());
        (
            ClientBody {
                inner: Some(inner),
                state,
                counted: None,
            },
            fault,
        )
    }

    /// No body: a bodyless request sent again on a fresh connection.
    pub fn empty() -> ClientBody {
        ClientBody {
            inner: None,
            state: None,
            counted: None,
        }
    }

    /// Whether this body has been read to its end, asked later.
    pub fn sent(&self) -> BodySent {
        BodySent(self.state.clone())
    }

    /// Add the bytes read to `counter` (the access log's `bytes_in`).
    pub fn counted(mut self, counter: Option<crate::proxy::edge::BytesIn>) -> ClientBody {
        self.counted = counter;
        self
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        if let (Some(c), Poll::Ready(Some(Ok(frame)))) = (&this.counted, &polled)
            && let Some(data) = frame.data_ref()
        {
            c.add(data.len());
        }
        if let Some(state) = &this.state {
            match &polled {
                // Set before the upstream client sees the error, so the
                // forwarder reads it once `request()` has failed.
                Poll::Ready(Some(Err(e))) => {
                    let _ = state
                        .failed
                        .set(e.source().map_or_else(|| e.to_string(), |s| s.to_string()));
                }
                Poll::Ready(None) => state.read.store(true, Ordering::Relaxed),
                Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => {
                    state.read.store(true, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}
