//! A stream that calls hooks with the bytes read from it and written to it: a tunnel's idle clock and byte counts, a redirect head begun.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// No hook for writes.
fn ignore(_: usize) {}

/// `inner`, with `on_read(n)` called after each read that brought `n`
/// bytes (not at end of stream, not on an error) and `on_write(n)` after
/// each write that took `n`.
pub struct OnRead<S, R, W = fn(usize)> {
    inner: S,
    on_read: R,
    on_write: W,
}

impl<S, R: Fn(usize)> OnRead<S, R> {
    /// Reads hooked; writes pass straight through.
    pub fn new(inner: S, on_read: R) -> Self {
        OnRead {
            inner,
            on_read,
            on_write: ignore,
        }
    }
}

impl<S, R: Fn(usize), W: Fn(usize)> OnRead<S, R, W> {
    /// Reads and writes hooked.
    pub fn both(inner: S, on_read: R, on_write: W) -> Self {
        OnRead {
            inner,
            on_read,
            on_write,
        }
    }
}

impl<S: AsyncRead + Unpin, R: Fn(usize) + Unpin, W: Unpin> AsyncRead for OnRead<S, R, W> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if matches!(res, Poll::Ready(Ok(()))) && n > 0 {
            (self.on_read)(n);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin, R: Unpin, W: Fn(usize) + Unpin> AsyncWrite for OnRead<S, R, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            (self.on_write)(n);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            (self.on_write)(n);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
