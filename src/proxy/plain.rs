//! A plain TCP client stream (the redirect listener's, the admin listener's) that reads what waits on its socket itself when the driver's look at a close asks.
//!
//! The driver's look at a close from outside (`conn::Driver`, SPEC §1)
//! reads the bytes that were on the socket when the signal came, through
//! [`Unread::pull`], not through the runtime, which may not have found
//! the socket readable yet. A TLS stream pulls into rustls; a plain TCP
//! stream has no buffer of its own to pull into, so this gives it one.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::proxy::client_io::{Unread, bytes_waiting};
use crate::tls::sent::Sent;

/// The most one [`Unread::pull`] reads: the bytes a look found are read in
/// as many pulls as they take, each once the last is served.
const PULL: usize = 4 * 1024;

/// A client's plain TCP stream whose reads return first what
/// [`Unread::pull`] took from its socket.
pub struct PlainTcp {
    inner: TcpStream,
    /// What [`Unread::pull`] read from the socket at a close from outside,
    /// and how much of it the reads since have returned.
    pulled: Vec<u8>,
    served: usize,
}

impl PlainTcp {
    pub fn new(inner: TcpStream) -> PlainTcp {
        PlainTcp {
            inner,
            pulled: Vec::new(),
            served: 0,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }
}

impl Unread for PlainTcp {
    fn unread(&self) -> bool {
        bytes_waiting(&self.inner)
    }

    fn queued(&self) -> usize {
        match rustix::io::ioctl_fionread(&self.inner) {
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) => usize::from(self.unread()),
        }
    }

    /// Read from the socket itself (it is non-blocking), not through the
    /// runtime, which may not know it readable yet: the next reads return
    /// what it took first.
    fn pull(&mut self, most: usize) -> usize {
        if self.served < self.pulled.len() {
            return 0;
        }
        self.pulled.resize(most.min(PULL), 0);
        self.served = 0;
        let socket = socket2::SockRef::from(&self.inner);
        let n = std::io::Read::read(&mut &*socket, &mut self.pulled).unwrap_or(0);
        self.pulled.truncate(n);
        n
    }

    /// What [`Unread::pull`] took and no read has returned yet.
    fn read_held(&mut self, buf: &mut ReadBuf<'_>) -> Option<std::io::Result<()>> {
        let held = &self.pulled[self.served..];
        if held.is_empty() {
            return None;
        }
        let n = buf.remaining().min(held.len());
        buf.put_slice(&held[..n]);
        self.served += n;
        Some(Ok(()))
    }

    fn peek_held(&mut self) -> Option<std::io::Result<&[u8]>> {
        let held = &self.pulled[self.served..];
        (!held.is_empty()).then_some(Ok(held))
    }

    fn consume_held(&mut self, n: usize) {
        self.served += n;
    }
}

/// Plain TCP: each write's result says whether it wrote.
impl Sent for PlainTcp {
    fn sent(&self) -> u64 {
        0
    }
}

impl AsyncRead for PlainTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(res) = this.read_held(buf) {
            return Poll::Ready(res);
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
