//! A tunnel's byte copy: both ways until either way ends, which ends the tunnel (nginx's "upgraded done").
//!
//! `tokio::io::copy_bidirectional` returns only once both ways have ended:
//! a backend that closes (FIN, TLS close_notify) has its close relayed to
//! the client, and then the tunnel waits, half open, for the client to
//! close too, for as long as `tunnel_idle_timeout` (1 h by default) if it
//! never does, the backend's socket in CLOSE_WAIT holding a
//! `max_connections_per_server` slot. nginx ends an upgraded connection as
//! soon as one side has reached its end and what was read from it has been
//! sent on (`ngx_http_upstream_process_upgraded`); so does [`relay`]: the
//! way that ends first flushes what it holds to the other side and shuts
//! that side's writing down, and the tunnel is over. Bytes read from the
//! side still open and not yet written are dropped with it, as nginx's are.
//!
//! Writes to the client fail after `send_timeout` without progress
//! ([`crate::proxy::client_io::ClientIo`]); [`SendBound`] bounds those to the
//! upstream alike, as nginx times an upgraded connection's upstream writes
//! (`proxy_send_timeout`): an upstream that stops reading but keeps
//! sending (pings reset the tunnel's idle clock) would otherwise hold the
//! client's bytes, and the tunnel, for ever. Progress is what reaches the
//! socket ([`Sent`]): rustls's last records drain in a flush or shutdown
//! that waits, write by write.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::tls::sent::Sent;

/// Bytes read ahead per way: tokio's `copy_bidirectional` buffer.
const BUF: usize = 8 * 1024;

/// Which side ended the tunnel by closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// `a`, the first stream given to [`relay`].
    A,
    /// `b`, the second.
    B,
}

/// Copy `a` to `b` and `b` to `a` until either reaches its end: what it
/// sent is written and flushed to the other, whose writing is shut down
/// (a FIN, a TLS close_notify). Which one ended, or the first error either
/// way. How long the other side may take to accept the last bytes is its
/// writer's business (the client's `send_timeout`).
pub async fn relay<A, B>(a: &mut A, b: &mut B) -> io::Result<Closed>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (mut a_to_b, mut b_to_a) = (Way::new(), Way::new());
    poll_fn(|cx| {
        if let Poll::Ready(done) = a_to_b.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b)) {
            return Poll::Ready(done.map(|()| Closed::A));
        }
        if let Poll::Ready(done) = b_to_a.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a)) {
            return Poll::Ready(done.map(|()| Closed::B));
        }
        Poll::Pending
    })
    .await
}

/// One way of the copy: the bytes read and not yet written.
struct Way {
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// The reader is at its end.
    read_done: bool,
    /// Written since the last flush.
    unflushed: bool,
}

impl Way {
    fn new() -> Way {
        Way {
            buf: vec![0; BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            read_done: false,
            unflushed: false,
        }
    }

    /// Copy until `reader` ends (then flush and shut `writer` down: ready
    /// with `Ok`), an error, or nothing can move now.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.pos == self.end && !self.read_done {
                let mut buf = ReadBuf::new(&mut self.buf);
                match reader.as_mut().poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        self.read_done = n == 0;
                        (self.pos, self.end) = (0, n);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing more to send for now: push out what was
                        // written (a TLS writer may hold a record back).
                        if self.unflushed {
                            ready!(writer.as_mut().poll_flush(cx))?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.end {
                let n = ready!(
                    writer
                        .as_mut()
                        .poll_write(cx, &self.buf[self.pos..self.end])
                )?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.unflushed = true;
            }
            if self.read_done {
                // A shutdown flushes first (AsyncWrite's contract; rustls
                // writes out what it holds, then its close_notify).
                ready!(writer.as_mut().poll_shutdown(cx))?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// A stream whose writes (and flushes, and shutdown) fail with `TimedOut`
/// once one has waited `timeout` without progress: a peer that stopped
/// reading. Progress of any size resets the wait, as nginx re-arms its
/// send timeouts per write: a call that is ready, or one that wrote to
/// the socket ([`Sent`]) and waits for more.
pub struct SendBound<S> {
    inner: S,
    timeout: Duration,
    /// Armed by the first write left waiting, dropped by progress.
    stalled: Option<Pin<Box<Sleep>>>,
    /// The error's text: who stopped reading.
    what: &'static str,
}

impl<S> SendBound<S> {
    pub fn new(inner: S, timeout: Duration, what: &'static str) -> SendBound<S> {
        SendBound {
            inner,
            timeout,
            stalled: None,
            what,
        }
    }

    fn sending<T>(
        &mut self,
        cx: &mut Context<'_>,
        sent_before: u64,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Sent,
    {
        if res.is_ready() {
            self.stalled = None;
            return res;
        }
        let timeout = self.timeout;
        if self.inner.sent() != sent_before
            && let Some(timer) = &mut self.stalled
        {
            timer.as_mut().reset(tokio::time::Instant::now() + timeout);
        }
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, self.what))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendBound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Sent + Unpin> AsyncWrite for SendBound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let before = self.inner.sent();
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.sending(cx, before, res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let before = self.inner.sent();
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.sending(cx, before, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let before = self.inner.sent();
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.sending(cx, before, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let before = self.inner.sent();
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.sending(cx, before, res)
    }
}

/// A stream with bytes already read from it in front (an upgrade's
/// `read_buf`: what came with the `101`), read first.
pub struct Rewound<S> {
    ahead: Bytes,
    inner: S,
}

impl<S> Rewound<S> {
    pub fn new(ahead: Bytes, inner: S) -> Rewound<S> {
        Rewound { ahead, inner }
    }
}

impl<S: Sent> Sent for Rewound<S> {
    fn sent(&self) -> u64 {
        self.inner.sent()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.ahead.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.ahead.len().min(buf.remaining());
        buf.put_slice(&self.ahead[..n]);
        self.ahead.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How long a step may take before the test calls it a hang.
    const WAIT: Duration = Duration::from_secs(10);

    /// The first side to close ends the relay, with what it sent delivered
    /// and the other side's reading at its end; the other side, still
    /// open and silent, is not waited for.
    #[tokio::test]
    async fn either_side_closing_ends_the_relay() {
        for closing in [Closed::A, Closed::B] {
            let (mut a, mut a_peer) = tokio::io::duplex(64);
            let (mut b, mut b_peer) = tokio::io::duplex(64);
            let relayed = tokio::spawn(async move { relay(&mut a, &mut b).await });
            let (closer, other) = match closing {
                Closed::A => (&mut a_peer, &mut b_peer),
                Closed::B => (&mut b_peer, &mut a_peer),
            };
            closer.write_all(b"last words").await.unwrap();
            closer.shutdown().await.unwrap();
            // Bounded: a relay that waits for the other side fails the
            // test instead of hanging it.
            let mut got = Vec::new();
            tokio::time::timeout(WAIT, other.read_to_end(&mut got))
                .await
                .unwrap_or_else(|_| panic!("{closing:?} closed: the other side never ended"))
                .unwrap();
            assert_eq!(got, b"last words");
            let ended = tokio::time::timeout(WAIT, relayed)
                .await
                .unwrap_or_else(|_| panic!("{closing:?} closed: the relay did not end"));
            assert_eq!(ended.unwrap().unwrap(), closing);
        }
    }
}
