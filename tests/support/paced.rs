//! A slow but steady reader: a stream read at most 4 KiB every 100 ms, never pausing longer.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a paced reader takes per tick: 4 KiB every 100 ms, 40 KiB/s.
/// That is more than SPEC's floor of 16 KiB per `send_timeout` (1 s in
/// the tests that use it), and less than the 64 KiB rustls may hold.
pub const PACE: usize = 4 * 1024;
pub const TICK: Duration = Duration::from_millis(100);

/// A stream read at most [`PACE`] bytes per [`TICK`]: a slow but steady
/// client (or backend). After `stop_after` bytes, if set, it stops
/// reading altogether (never woken again). Writes pass through.
pub struct Paced<S> {
    inner: S,
    tick: tokio::time::Interval,
    budget: usize,
    stop_after: Option<usize>,
}

impl<S> Paced<S> {
    pub fn new(inner: S) -> Paced<S> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Paced {
            inner,
            tick,
            budget: 0,
            stop_after: None,
        }
    }

    /// The same, reading no more after `n` bytes.
    pub fn stopping_after(inner: S, n: usize) -> Paced<S> {
        Paced {
            stop_after: Some(n),
            ..Paced::new(inner)
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Paced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.stop_after == Some(0) {
            return Poll::Pending;
        }
        if this.budget == 0 {
            ready!(this.tick.poll_tick(cx));
            this.budget = PACE;
        }
        let most = this
            .budget
            .min(buf.remaining())
            .min(this.stop_after.unwrap_or(usize::MAX));
        let n = {
            let mut part = ReadBuf::new(buf.initialize_unfilled_to(most));
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
            part.filled().len()
        };
        buf.advance(n);
        this.budget -= n;
        if let Some(left) = &mut this.stop_after {
            *left -= n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
