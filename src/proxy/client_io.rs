//! The client's stream as hyper sees it: received bytes told to the connection's `Activity`, the send timeout, a look at the socket for bytes unread, read then, the hand-off to a lingering close.

use std::future::Future;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

use crate::proxy::conn::Activity;
use crate::proxy::linger::{LINGER_TIME, input_waiting, linger};
use crate::tls::sent::Sent;

/// A stream that can tell whether its socket holds bytes it has not read.
pub trait Unread {
    /// Bytes the client sent wait in the socket's receive buffer, looked
    /// at without taking them (`MSG_PEEK`): a system call, whatever the
    /// runtime last knew of the socket's readiness.
    fn unread(&self) -> bool;

    /// How many bytes [`Unread::unread`] found: all of them where the
    /// stream can read them itself ([`Unread::pull`]), else 1 or 0.
    fn queued(&self) -> usize {
        usize::from(self.unread())
    }

    /// Read what waits on the socket, at most `most` bytes, into the
    /// stream's own buffer, so that the next read returns it whatever the
    /// runtime knows of the socket's readiness: how many bytes it took.
    /// None where the stream cannot (the default).
    fn pull(&mut self, _most: usize) -> usize {
        0
    }

    /// Read into `buf` what the stream already holds, taken from its
    /// socket earlier (TLS: plaintext rustls decrypted, [`Unread::pull`]'s
    /// too), never reading the socket: `None` when it holds nothing (the
    /// default), else the read's result (TLS: an end seen, clean or not).
    fn read_held(&mut self, _buf: &mut ReadBuf<'_>) -> Option<std::io::Result<()>> {
        None
    }

    /// What [`Unread::read_held`] would read, looked at and left held:
    /// its first part (TLS: a record's plaintext), `None` when it holds
    /// nothing (the default), an empty part at a clean end, an error at
    /// another. [`Unread::consume_held`] takes what of it was read.
    fn peek_held(&mut self) -> Option<std::io::Result<&[u8]>> {
        None
    }

    /// The first `n` bytes of the part [`Unread::peek_held`] returned are read.
    fn consume_held(&mut self, _n: usize) {}
}

/// Whether `socket` has a byte to read, left there; end of stream and
/// errors (nothing yet on a non-blocking socket) are none.
pub fn bytes_waiting(socket: &impl AsFd) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit()];
    matches!(socket2::SockRef::from(socket).peek(&mut byte), Ok(n) if n > 0)
}

impl<S: AsFd> Unread for tokio_rustls::server::TlsStream<S> {
    fn unread(&self) -> bool {
        bytes_waiting(self.get_ref().0)
    }

    fn queued(&self) -> usize {
        match rustix::io::ioctl_fionread(self.get_ref().0) {
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) => usize::from(self.unread()),
        }
    }

    /// The records on the socket read and decrypted by rustls here: the
    /// socket is non-blocking, so a read finding nothing ends it, as does
    /// rustls' plaintext buffer full (hyper reads it first) or an error
    /// (the next read meets it again and returns it).
    fn pull(&mut self, most: usize) -> usize {
        let (io, session) = self.get_mut();
        let socket = socket2::SockRef::from(&*io);
        let mut from = Capped {
            socket: &socket,
            left: most,
        };
        let mut took = 0;
        while from.left > 0 {
            match session.read_tls(&mut from) {
                Ok(n) if n > 0 => took += n,
                _ => break,
            }
            if session.process_new_packets().is_err() {
                break;
            }
        }
        took
    }

    /// rustls' plaintext alone (tokio-rustls' own read would go on to the
    /// socket, as far as its buffer allows, whenever the runtime last
    /// found it readable).
    fn read_held(&mut self, buf: &mut ReadBuf<'_>) -> Option<std::io::Result<()>> {
        let (_, session) = self.get_mut();
        match std::io::Read::read(&mut session.reader(), buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                Some(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn peek_held(&mut self) -> Option<std::io::Result<&[u8]>> {
        let (_, session) = self.get_mut();
        match session.reader().into_first_chunk() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            res => Some(res),
        }
    }

    fn consume_held(&mut self, n: usize) {
        let (_, session) = self.get_mut();
        std::io::BufRead::consume(&mut session.reader(), n);
    }
}

/// A socket read no further than `left` bytes.
struct Capped<'a> {
    socket: &'a socket2::Socket,
    left: usize,
}

impl std::io::Read for Capped<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let most = buf.len().min(self.left);
        let n = std::io::Read::read(&mut &*self.socket, &mut buf[..most])?;
        self.left -= n;
        Ok(n)
    }
}

/// What a read in the driver's look took of what the stream holds
/// (HTTP/1, [`held_run`]).
enum Held {
    /// Nothing held.
    Nothing,
    /// Line ends alone (the empty lines hyper skips before a head): more
    /// held may follow them in the same read.
    LineEnds,
    /// Up to a head's first byte and with it: the last of the look.
    Head,
    /// The stream's end (clean: `Ok`), met with nothing taken.
    End(std::io::Result<()>),
}

/// Takes into `buf` the first part of what `inner` holds, as far as
/// hyper may have it in the look: CR and LF before a head, up to and
/// with the head's first byte ([`Activity::head_byte_at`]), or as much
/// as fits.
fn held_run<S: Unread>(inner: &mut S, activity: &Activity, buf: &mut ReadBuf<'_>) -> Held {
    let (n, head) = match inner.peek_held() {
        None => return Held::Nothing,
        Some(Ok([])) => return Held::End(Ok(())),
        Some(Err(e)) => return Held::End(Err(e)),
        Some(Ok(part)) => {
            let room = buf.remaining();
            let (n, head) = match activity.head_byte_at(part) {
                Some(at) if at < room => (at + 1, true),
                _ => (part.len().min(room), false),
            };
            buf.put_slice(&part[..n]);
            (n, head)
        }
    };
    inner.consume_held(n);
    if head { Held::Head } else { Held::LineEnds }
}

/// The client's stream as hyper sees it: reports received bytes to
/// [`Activity`] (HTTP/1), fails writes that make no progress for
/// `send_timeout` (a client that stopped reading), and on drop hands the
/// stream to a lingering close unless the client already closed its side
/// or nothing it may still send matters: one the driver closed at once,
/// with nothing begun, is closed fully (an HTTP/2 one sends `GOAWAY` first),
/// and so is an HTTP/1.1 one that wrote nothing, however it ended.
/// Progress is what reaches the socket ([`Sent`]): a TLS stream's flush
/// that wrote some of its records and waits for the rest made some.
pub struct ClientIo<S: AsyncRead + AsyncWrite + Sent + Unread + Unpin + Send + 'static> {
    /// Boxed: a TLS stream is kilobytes, and it moves on every step from
    /// the handshake to hyper's connection and on to the lingering close.
    inner: Option<Box<S>>,
    activity: Arc<Activity>,
    /// HTTP/1: received bytes start heads and mark pipelining. (HTTP/2
    /// frames are not requests: only walked for a header block begun.)
    reads: bool,
    send_timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    eof: bool,
    /// Our side is closed: hyper's shutdown finished (for TLS, with the
    /// close_notify alert sent).
    shut: bool,
    /// Kept alive by the lingering task (the connection slot).
    hold: Option<Box<dyn Send + Sync>>,
    /// The driver's look: bytes still to read of those the look found on
    /// the socket ([`Unread::pull`]), the most read from it until the
    /// driver decides (`ClientIo::read_in_look`).
    to_pull: usize,
}

impl<S: AsyncRead + AsyncWrite + Sent + Unread + Unpin + Send + 'static> ClientIo<S> {
    pub fn new(
        inner: Box<S>,
        activity: Arc<Activity>,
        reads: bool,
        send_timeout: Duration,
        hold: Box<dyn Send + Sync>,
    ) -> ClientIo<S> {
        ClientIo {
            inner: Some(inner),
            activity,
            reads,
            send_timeout,
            stalled: None,
            eof: false,
            shut: false,
            hold: Some(hold),
            to_pull: 0,
        }
    }

    /// Bytes read, told to [`Activity`]: HTTP/1 heads, HTTP/2 frames
    /// (a client's `RST_STREAM(NO_ERROR)` rewritten as `CANCEL` in them).
    fn received(&self, bytes: &mut [u8]) {
        if self.reads {
            self.activity.received(bytes);
        } else {
            self.activity.received_frames(bytes);
        }
    }

    /// A read while the driver, about to close at once as nothing has
    /// begun, looks for bytes the client sent before the signal
    /// ([`Activity::look_for_unread`]), until it decides on what they
    /// began ([`Activity::found_unread`]). The first such read counts
    /// what waits on the socket (`FIONREAD`): TLS records, whose content
    /// cannot be known unread. Then every read takes what the stream
    /// holds already, else pulls ([`Unread::pull`]) at most what is left
    /// of that count into it, so that the driver decides on what those
    /// bytes began (HTTP/2: streams, refused beyond; HTTP/1: a head's
    /// byte), or nothing and closed at once; never the socket's own
    /// read, which takes whatever has come by then, bytes sent after the
    /// signal too, whenever the runtime has found the socket readable
    /// (on a multi-threaded one, another worker's reactor may do so at
    /// any time). Past the count it waits, its socket not polled: it
    /// wakes its task, to be read again once the driver has decided
    /// (the connection is being closed either way). HTTP/1: none after
    /// a head's first byte: hyper holds part of the first head, never a
    /// whole one, before the driver has asked its graceful close, so the
    /// first request is answered `Connection: close` and one pipelined
    /// behind it in the same bytes is not read (hyper would answer a
    /// first request ready at once, the proxy's own `404` say,
    /// keep-alive, and go on to the next from its buffer, all in the
    /// look's poll). The empty lines before that byte come with it, in
    /// as few reads as hyper's buffer allows ([`held_run`]), not a byte
    /// a read: hyper parses its whole buffer again after every read,
    /// those lines too (httparse skips them anew each time), and never
    /// waits between reads that find bytes: a byte a read cost the
    /// square of the run (up to `max_header_bytes` of it), all in the
    /// look's one poll, the runtime's worker held meanwhile.
    fn read_in_look(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let inner = self
            .inner
            .as_deref_mut()
            .expect("stream present until drop");
        if self.activity.looking() {
            let queued = inner.queued();
            self.activity.looked(queued > 0);
            self.to_pull = queued;
        }
        let before = buf.filled().len();
        // The stream's end, or what HTTP/2's read took (returned).
        let mut end = None;
        loop {
            if self.reads {
                if self.activity.head_in_look() || buf.remaining() == 0 {
                    break;
                }
                match held_run(inner, &self.activity, buf) {
                    Held::LineEnds => continue,
                    Held::Head => break,
                    Held::End(res) => {
                        end = Some(res);
                        break;
                    }
                    Held::Nothing => {}
                }
            } else if let Some(res) = inner.read_held(buf) {
                end = Some(res);
                break;
            }
            if self.to_pull == 0 {
                break;
            }
            let took = inner.pull(self.to_pull);
            if took == 0 {
                self.to_pull = 0;
                break;
            }
            self.to_pull = self.to_pull.saturating_sub(took);
        }
        // Bytes read are returned; an end met after them is met again by
        // the next read.
        if buf.filled().len() > before {
            let got = &mut buf.filled_mut()[before..];
            if self.reads {
                self.activity.read_in_look(got);
            }
            self.received(got);
            return Poll::Ready(Ok(()));
        }
        if let Some(res) = end {
            self.eof = true;
            return Poll::Ready(res);
        }
        if self.reads {
            self.activity.read_waits();
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn io(&mut self) -> Pin<&mut S> {
        Pin::new(
            self.inner
                .as_deref_mut()
                .expect("stream present until drop"),
        )
    }

    /// What the stream has written to its socket, read before a call so
    /// that [`ClientIo::sending`] can tell whether the call wrote.
    fn sent(&self) -> u64 {
        self.inner.as_deref().map_or(0, Sent::sent)
    }

    /// Map a write attempt: progress (a call that took bytes, or wrote to
    /// the socket since `sent_before`, even if it waits now) tells
    /// [`Activity`] and resets the send timer, `Pending` arms it, and an
    /// expired timer turns into `TimedOut`.
    fn sending<T>(
        &mut self,
        cx: &mut Context<'_>,
        sent_before: u64,
        took: bool,
        res: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        let wrote = self.sent() != sent_before;
        if took || wrote {
            self.activity.wrote();
        }
        match res {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.send_timeout;
                if wrote && let Some(timer) = &mut self.stalled {
                    timer.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "send_timeout: the client stopped reading",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Sent + Unread + Unpin + Send + 'static> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // The driver's look, from its count to its decision: no read past
        // the count. Otherwise this one load.
        if this.activity.in_look() {
            return this.read_in_look(cx, buf);
        }
        let before = buf.filled().len();
        let res = this.io().poll_read(cx, buf);
        match res {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.received(&mut buf.filled_mut()[before..]);
            }
            // End of stream, or a reset / TLS EOF without close_notify:
            // the client is gone, nothing to linger for.
            Poll::Ready(_) => this.eof = true,
            Poll::Pending => {
                if this.reads {
                    this.activity.read_waits();
                }
            }
        }
        res
    }
}

impl<S: AsyncRead + AsyncWrite + Sent + Unread + Unpin + Send + 'static> AsyncWrite
    for ClientIo<S>
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let before = this.sent();
        let res = this.io().poll_write(cx, buf);
        let took = matches!(res, Poll::Ready(Ok(n)) if n > 0);
        if let (Poll::Ready(Ok(n)), false) = (&res, this.reads) {
            this.activity.sent_frames(&buf[..*n]);
        }
        this.activity.not_flushed();
        this.sending(cx, before, took, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let before = this.sent();
        let res = this.io().poll_write_vectored(cx, bufs);
        let took = matches!(res, Poll::Ready(Ok(n)) if n > 0);
        if let (Poll::Ready(Ok(n)), false) = (&res, this.reads) {
            let mut left = *n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let part = &b[..b.len().min(left)];
                this.activity.sent_frames(part);
                left -= part.len();
            }
        }
        this.activity.not_flushed();
        this.sending(cx, before, took, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = this.sent();
        let res = this.io().poll_flush(cx);
        this.activity.flushed(matches!(res, Poll::Ready(Ok(()))));
        this.sending(cx, before, false, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = this.sent();
        let res = this.io().poll_shutdown(cx);
        this.activity.not_flushed();
        this.shut |= res.is_ready();
        this.sending(cx, before, false, res)
    }
}

impl<S: AsyncRead + AsyncWrite + Sent + Unread + Unpin + Send + 'static> Drop for ClientIo<S> {
    fn drop(&mut self) {
        let (Some(mut stream), false) = (self.inner.take(), self.eof) else {
            return;
        };
        // Timed out on sending: the client is not reading; nothing to wait for.
        if self.stalled.as_mut().is_some_and(|t| t.is_elapsed()) {
            return;
        }
        // nginx's `lingering_close on`: linger only when the client may
        // still be sending. Our side closed cleanly after a request without
        // a body, and nothing more has arrived: closing now resets nothing,
        // and saves a task, a timer and a wake-up per closed connection.
        let settled = self.reads && self.activity.settled();
        if self.shut && settled && !input_waiting(&mut *stream) {
            return;
        }
        // HTTP/2 closed at once by the driver: a GOAWAY first (RFC 9113
        // §6.8). rustls takes it whole (its buffer was flushed), so the
        // write does not wait on the client; bounded all the same.
        let mut goaway = (!self.reads && !self.shut)
            .then(|| self.activity.goaway())
            .flatten()
            .map(|frame| (frame, 0));
        // HTTP/1.1 that wrote nothing (cut at header_read_timeout, silent
        // or part way into a head, or by a cut with no answer begun):
        // nothing a reset could hide, closed fully as one closed at once,
        // not held lingering for a client that may never close (nginx
        // closes at client_header_timeout without lingering). Unless bytes
        // of the client's wait unread: the close would reset them.
        let answered_nothing = self.reads && self.activity.writes() == 0 && !stream.unread();
        if (answered_nothing || self.activity.is_closed_at_once())
            && self.closed_fully(&mut *stream, &mut goaway)
        {
            return;
        }
        let (hold, shut) = (self.hold.take(), self.shut);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some((frame, from)) = goaway {
                    let _ =
                        tokio::time::timeout(LINGER_TIME, stream.write_all(&frame[from..])).await;
                }
                linger(stream, shut).await;
                drop(hold);
            });
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Sent + Unread + Unpin + Send + 'static> ClientIo<S> {
    /// A close at once from outside (shutdown, the listener removed, its
    /// admission rules changed) with no request begun (SPEC §1), or an
    /// HTTP/1.1 one that wrote nothing and has no bytes of the client's
    /// unread on its socket (cut at `header_read_timeout`, say), done as
    /// the stream drops: no lingering close, which would hold the
    /// connection's `max_connections` slot and the drain (the process's
    /// exit) up to [`LINGER_TIME`] for a client that sends nothing and
    /// never closes. Nothing was answered that a reset could hide (nginx
    /// lingers only after a request whose rest may still come): HTTP/1.1
    /// wrote nothing; HTTP/2 wrote its `SETTINGS`, answers to frames that
    /// began no request, and now its `GOAWAY`, in one try, as is our side's
    /// close (TLS: `close_notify`), neither waiting on the client. Whether
    /// it was closed so: not when HTTP/1.1 wrote anything, nor when HTTP/2
    /// began a request (one served, one h2 answered itself, or a header
    /// block part way in: its CONTINUATION is still to come), is part way
    /// into a frame or the preface (their rest is to come), has bytes of
    /// the client's unread on the socket (the close would reset them, and
    /// the `GOAWAY` with them) or its `GOAWAY` is not all taken by the
    /// socket (tokio-rustls says a write whole once rustls has it: what
    /// rustls holds after the shutdown tells); what is left of it
    /// (`goaway`: the frame, from where, or what rustls holds) is written
    /// by the lingering close then.
    fn closed_fully(&mut self, stream: &mut S, goaway: &mut Option<([u8; 17], usize)>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if self.reads {
            if self.activity.writes() != 0 {
                return false;
            }
        } else {
            // Only one that began no request, not even part way: after a
            // request, what was answered may still wait in the socket for
            // the client to read it, and a client part way into a header
            // block must send its CONTINUATION next. A closed socket
            // answers what comes with a reset, which throws away what it
            // still held of ours, the rest of a response and the GOAWAY
            // (SPEC §1: the streams in flight are served to their end).
            // A block ended that the service never took counts too: h2
            // answered it itself (431, a reset), and the GOAWAY names it.
            // So does a frame part way in, whatever its type (its header
            // read in part may not show it yet): its rest comes next, and
            // its reset would drop the GOAWAY.
            let begun = self.activity.asked()
                || self.activity.in_header_block()
                || self.activity.block_ended()
                || self.activity.mid_frame();
            if begun || !self.activity.all_written() || stream.unread() {
                return false;
            }
            if let Some((frame, from)) = goaway {
                while *from < frame.len() {
                    match Pin::new(&mut *stream).poll_write(&mut cx, &frame[*from..]) {
                        Poll::Ready(Ok(n)) if n > 0 => *from += n,
                        _ => return false,
                    }
                }
            }
        }
        if !self.shut {
            let _ = Pin::new(&mut *stream).poll_shutdown(&mut cx);
        }
        // HTTP/2: the GOAWAY (and close_notify) may have been taken by
        // rustls alone, its socket full (the client not reading): dropped
        // now, the client would get our FIN without them. The lingering
        // close's shutdown writes what rustls holds, not the GOAWAY again.
        self.reads || !stream.holds_unsent()
    }
}
