//! The response body wrapper that counts bytes sent and submits the access-log line when the response ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{Line, RequestLine};

pin_project! {
    /// A response body that counts the bytes sent and submits the access-log
    /// line when it ends, or when it is dropped (client gone, error): every
    /// request gets exactly one line, with what was actually sent.
    #[project = LoggedProj]
    pub struct Logged<B> {
        #[pin]
        inner: B,
        line: Option<Box<RequestLine>>,
        bytes_in: Option<Arc<AtomicU64>>,
        started: std::time::Instant,
    }

    impl<B> PinnedDrop for Logged<B> {
        fn drop(this: Pin<&mut Self>) {
            this.project().finish();
        }
    }
}

impl<B> Logged<B> {
    pub fn new(
        inner: B,
        line: Box<RequestLine>,
        bytes_in: Option<Arc<AtomicU64>>,
        started: std::time::Instant,
    ) -> Logged<B> {
        Logged {
            inner,
            line: Some(line),
            bytes_in,
            started,
        }
    }
}

impl<B> LoggedProj<'_, B> {
    fn finish(&mut self) {
        if let Some(mut line) = self.line.take() {
            line.bytes_in = self
                .bytes_in
                .as_ref()
                .map_or(0, |b| b.load(Ordering::Relaxed));
            line.duration = self.started.elapsed();
            super::submit(Line::Request(line));
        }
    }
}

impl<B: Body> Body for Logged<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(line)) = (frame.data_ref(), this.line.as_mut()) {
                    line.bytes_out += data.remaining() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
