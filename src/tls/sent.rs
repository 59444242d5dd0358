//! A TLS stream's socket, counting the bytes written to it: the progress of a write or flush that still waits.
//!
//! rustls holds up to 64 KiB of records. tokio-rustls's `poll_flush`, and
//! its `poll_write` once that buffer is full, writes some of them to the
//! socket and returns `Pending` at the first would-block: the call made
//! progress and its result cannot say so. A send timeout armed at the
//! first `Pending` ([`crate::proxy::client_io::ClientIo`],
//! [`crate::proxy::relay::SendBound`]) compares [`Sent::sent`] before and
//! after each call instead, so a peer taking bytes slowly but steadily is
//! not cut while the last 64 KiB drain. One add per socket write.

use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that tells how many bytes it has handed to its socket.
pub trait Sent {
    /// Bytes written to the socket so far (wrapping). A stream without a
    /// buffer of its own above the socket may return a constant: the
    /// result of each of its calls says whether it wrote.
    fn sent(&self) -> u64;

    /// Whether the stream holds bytes of its own its socket has not taken
    /// yet (TLS: records rustls has not written): a write that returned
    /// them as taken, or a shutdown that waits, may have left them there.
    /// Never, the default, for a stream without a buffer above its socket.
    fn holds_unsent(&self) -> bool {
        false
    }
}

/// The socket under a TLS stream, counting what is written to it.
pub struct Counted<S> {
    inner: S,
    sent: u64,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Counted<S> {
        Counted { inner, sent: 0 }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    fn count(&mut self, polled: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = polled {
            self.sent = self.sent.wrapping_add(n as u64);
        }
        polled
    }
}

impl<S> Sent for Counted<S> {
    fn sent(&self) -> u64 {
        self.sent
    }
}

impl<S: Sent> Sent for tokio_rustls::server::TlsStream<S> {
    fn sent(&self) -> u64 {
        self.get_ref().0.sent()
    }

    /// tokio-rustls' `poll_write` hands the plaintext to rustls and
    /// returns it written even when the socket took none of its records.
    fn holds_unsent(&self) -> bool {
        self.get_ref().1.wants_write()
    }
}

impl<S: Sent> Sent for tokio_rustls::client::TlsStream<S> {
    fn sent(&self) -> u64 {
        self.get_ref().0.sent()
    }
}

impl<S: Sent> Sent for hyper_util::rt::TokioIo<S> {
    fn sent(&self) -> u64 {
        self.inner().sent()
    }
}

impl<S: AsFd> AsFd for Counted<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count(polled)
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
