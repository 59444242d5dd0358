//! The bytes of one upstream connection: plain or TLS, its server slot, and a switch that closes it from outside its task (and tells what its TLS failed on).
//!
//! On an HTTP/2 connection they also tell the task watching it when the
//! server's SETTINGS are in, and when a later SETTINGS frame has been
//! applied ([`Settling`]), and bound the header blocks a stream gets
//! before its body (`1xx` floods), refuse a `101` (no HTTP/2 status),
//! and turn a `RST_STREAM(NO_ERROR)` that
//! would end a response before its `END_STREAM` into a
//! `PROTOCOL_ERROR` one (hyper would end the body as if whole), as
//! they do the code of a `GOAWAY(NO_ERROR)` that ends such a response
//! ([`frames`]). On an
//! HTTP/1.1 connection, they bound
//! what is read while a request waits for its response head ([`HeadWait`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::tls::sent::{Counted, Sent};

mod frames;

pub use frames::H2_BLOCK_BYTES;
use frames::SettingsFrames;

/// A plain or TLS upstream stream.
pub enum MaybeTls {
    Plain(TcpStream),
    /// Over its socket counting what is written (a tunnel's `SendBound`).
    Tls(Box<tokio_rustls::client::TlsStream<Counted<TcpStream>>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl MaybeTls {
    /// The bytes a TLS stream has written to its socket (wrapping); 0
    /// for a plain one, whose writes say themselves what they wrote.
    fn socket_sent(&self) -> u64 {
        match self {
            MaybeTls::Plain(_) => 0,
            MaybeTls::Tls(tls) => tls.sent(),
        }
    }

    /// Whether a write, `before` being [`MaybeTls::socket_sent`] ahead of
    /// it, put bytes on the socket (a TLS stream's `Ok` may have left all
    /// it took in rustls, and its error come after records went out).
    fn reached(&self, before: u64, polled: &Poll<std::io::Result<usize>>) -> bool {
        match self {
            MaybeTls::Plain(_) => matches!(polled, Poll::Ready(Ok(n)) if *n > 0),
            MaybeTls::Tls(_) => self.socket_sent() != before,
        }
    }
}

/// The bytes of one upstream connection plus its server slot
/// (`max_connections_per_server`), freed when the connection closes —
/// also when it ends as an upgraded tunnel.
pub struct UpstreamIo {
    io: TokioIo<Framed>,
    slot: Option<OwnedSemaphorePermit>,
    /// Set for an HTTP/2 connection, whose I/O hyper drives in a task of
    /// its own that hotproxy cannot reach otherwise.
    kill: Option<Arc<Kill>>,
    /// Set for an HTTP/2 connection: wakes its watcher at each read and
    /// write until the server's SETTINGS are in.
    settling: Option<Arc<Settling>>,
    /// Dropped after `io` (a field before it): says its socket is closed.
    closed: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The stream and, on an HTTP/2 connection, where the server's SETTINGS
/// frames end in what is read from it ([`SettingsFrames`]); on an HTTP/1.1
/// one, what is read while a request waits for its response head
/// ([`HeadWait`]).
struct Framed {
    io: MaybeTls,
    frames: Option<SettingsFrames>,
    head: Option<Arc<HeadWait>>,
}

/// What an HTTP/1.1 connection may read while its request waits for the
/// response head: that head (at most 64 KiB, hyper's read buffer) and
/// as much again of informational (`1xx`) responses before it. hyper's
/// client reads and drops every `1xx` it is sent, with no bound: an
/// upstream sending them without end held the request past
/// `request_timeout` and its worker thread parsing them, megabytes per
/// poll. The read that would go past this fails instead: the request
/// gets its `502`, and the connection is closed.
pub const HEAD_WAIT_BYTES: usize = 128 * 1024;

/// The bytes an HTTP/1.1 connection has read while its request waits for
/// the response head, held to [`HEAD_WAIT_BYTES`]. A pooled connection's
/// reads happen in the task of the request that holds it, which also
/// starts and stops the count ([`HeadWait::count`]). An `Upgrade`
/// request's connection is read in a task of its own: the count starts
/// before the request is handed to hyper, whose channel orders it before
/// any read of the response, and a read never undoes a stop made
/// meanwhile (it adds with a compare-exchange).
///
/// It also keeps the head of the request as written ([`HeadWait::sent`]):
/// a request hyper has written is gone, and one the upstream may not have
/// processed is sent again from these bytes ([`crate::proxy::forward`]).
/// And whether the connection's last write or flush waited on its socket
/// ([`HeadWait::unflushed`]), and whether hyper began to shut it down
/// ([`HeadWait::shutting`]).
pub struct HeadWait(AtomicUsize, Mutex<SentHead>, AtomicBool, AtomicBool);

/// [`HeadWait`]'s value while no request waits for a head.
const NOT_WAITING: usize = usize::MAX;

/// The bytes written since the last [`HeadWait::count`], up to the end of
/// the request's head (an empty line; a head with no body is written
/// alone), and no more than [`SENT_HEAD_KEPT`]: `whole` once the head is
/// in, `over` once that many bytes came without it; `reached` once any
/// byte written since reached the socket (a TLS stream's records too).
#[derive(Default)]
struct SentHead {
    bytes: Vec<u8>,
    whole: bool,
    over: bool,
    reached: bool,
}

/// The most of a request's head kept as written.
pub(crate) const SENT_HEAD_KEPT: usize = 4096;

impl Default for HeadWait {
    fn default() -> HeadWait {
        HeadWait(
            AtomicUsize::new(NOT_WAITING),
            Mutex::default(),
            AtomicBool::new(false),
            AtomicBool::new(false),
        )
    }
}

impl HeadWait {
    /// A request is handed over: count from here until the guard is
    /// dropped (its head is in, or the wait given up); reads of the body
    /// are not counted. What is written from here is its head.
    pub fn count(self: &Arc<HeadWait>) -> HeadCount {
        {
            let mut sent = self.sent_head();
            sent.bytes.clear();
            sent.whole = false;
            sent.over = false;
            sent.reached = false;
        }
        self.0.store(0, Ordering::Relaxed);
        HeadCount(self.clone())
    }

    /// The head of the last request handed over, as written, if all of it
    /// was: request line and fields, up to and with the empty line.
    pub fn sent(&self) -> Option<Vec<u8>> {
        let sent = self.sent_head();
        sent.whole.then(|| sent.bytes.clone())
    }

    /// [`HeadWait::sent`], and whether none of what was written since the
    /// request was handed over reached the socket: a write that failed
    /// first (an idle connection the upstream reset, its reset not yet
    /// read), the upstream got no byte of this request.
    pub fn written(&self) -> Option<(Vec<u8>, bool)> {
        let sent = self.sent_head();
        sent.whole.then(|| (sent.bytes.clone(), !sent.reached))
    }

    /// Whether some of the request handed over was given to a write and
    /// none of what was written since reached the socket: the upstream got
    /// no byte of it. Apart from [`HeadWait::written`]: a head over
    /// [`SENT_HEAD_KEPT`] is not kept, and was sent no less unwritten (a
    /// `POST` with a big cookie got a `502`, counted against the endpoint).
    pub fn unreached(&self) -> bool {
        let sent = self.sent_head();
        (sent.whole || sent.over || !sent.bytes.is_empty()) && !sent.reached
    }

    /// Whether the connection's last write or flush waited on its socket:
    /// hyper holds bytes it has not written, maybe the tail of a request
    /// body it took whole (`BodySent::done`) that the upstream stopped
    /// reading once it had answered. Pooled, the connection would hold
    /// the next request behind them.
    pub fn unflushed(&self) -> bool {
        self.2.load(Ordering::Relaxed)
    }

    /// Whether hyper began to shut the connection down (it does so only
    /// once it will not keep the connection): a TLS connection's
    /// close_notify may wait on a full socket, the upstream reading
    /// nothing more, and until it is written the connection future stays
    /// pending, as an open connection's does.
    pub fn shutting(&self) -> bool {
        self.3.load(Ordering::Relaxed)
    }

    fn sent_head(&self) -> std::sync::MutexGuard<'_, SentHead> {
        self.1.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a write of `bufs` did: the bytes it took are kept; a write
    /// that failed keeps all it was given, the rest of the head hyper
    /// meant to write. hyper hands back no request it has taken, so a
    /// bodyless request whose first write failed (a connection reset just
    /// as it was reused) is sent again from these bytes: never written,
    /// as the SPEC's resend promise says. `reached`: the call put bytes
    /// on the socket.
    fn polled(
        &self,
        bufs: &[std::io::IoSlice<'_>],
        polled: &Poll<std::io::Result<usize>>,
        reached: bool,
    ) {
        match polled {
            Poll::Ready(Ok(n)) => self.wrote(bufs, *n, reached),
            Poll::Ready(Err(_)) => self.wrote(bufs, bufs.iter().map(|b| b.len()).sum(), reached),
            Poll::Pending if reached => self.wrote(bufs, 0, true),
            Poll::Pending => {}
        }
    }

    /// `n` bytes of `bufs` were written: kept until the head is whole.
    /// Its end is an empty line, the only one in a head, so the bytes in
    /// are the whole head once they end with one. `reached`: some bytes
    /// reached the socket.
    fn wrote(&self, bufs: &[std::io::IoSlice<'_>], mut n: usize, reached: bool) {
        if self.0.load(Ordering::Relaxed) == NOT_WAITING {
            return;
        }
        let mut sent = self.sent_head();
        sent.reached |= reached;
        for buf in bufs {
            if sent.whole || sent.over || n == 0 {
                return;
            }
            let take = n.min(buf.len());
            if sent.bytes.len() + take > SENT_HEAD_KEPT {
                sent.over = true;
                return;
            }
            sent.bytes.extend_from_slice(&buf[..take]);
            n -= take;
            sent.whole = sent.bytes.ends_with(b"\r\n\r\n");
        }
    }
}

/// A request's wait for its response head, counted ([`HeadWait::count`]).
pub struct HeadCount(Arc<HeadWait>);

impl Drop for HeadCount {
    fn drop(&mut self) {
        self.0.0.store(NOT_WAITING, Ordering::Relaxed);
    }
}

/// The read error of an HTTP/1.1 connection whose upstream went past
/// [`HEAD_WAIT_BYTES`] before its response head; the failed request is
/// logged with these words alone ([`crate::proxy::failure::diagnose_request`]).
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent more than 64 KiB of informational (1xx) responses before its response")]
pub struct InformationalFlood;

/// A read of `io` while a request waits for its head, `read` bytes in so
/// far: counted in `head`, and refused once [`HEAD_WAIT_BYTES`] are in.
/// Only what precedes the read that completes the head counts, and of
/// that at most 64 KiB is the head's: more than 64 KiB of informational
/// responses came first. (A function of the connection's parts, not of
/// [`Framed`]: borrowing `head` from it costs no `Arc` clone per read.)
fn read_head(
    io: &mut MaybeTls,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    head: &HeadWait,
    read: usize,
) -> Poll<std::io::Result<()>> {
    if read >= HEAD_WAIT_BYTES {
        return Poll::Ready(Err(std::io::Error::other(InformationalFlood)));
    }
    let before = buf.filled().len();
    let polled = Pin::new(io).poll_read(cx, buf);
    if let Poll::Ready(Ok(())) = polled {
        let n = buf.filled().len() - before;
        // Not over a stop from the request's task (an `Upgrade`'s
        // connection is read in another).
        let _ = head
            .0
            .compare_exchange(read, read + n, Ordering::Relaxed, Ordering::Relaxed);
    }
    polled
}

impl AsyncRead for Framed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(head) = &this.head {
            let read = head.0.load(Ordering::Relaxed);
            if read != NOT_WAITING {
                return read_head(&mut this.io, cx, buf, head, read);
            }
        }
        let Some(frames) = &mut this.frames else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        frames.reading();
        if frames.flooded {
            return Poll::Ready(Err(std::io::Error::other(InformationalFlood)));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            frames.read(&mut buf.filled_mut()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Framed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let before = this.io.socket_sent();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Some(head) = &this.head {
            let reached = this.io.reached(before, &polled);
            head.polled(&[std::io::IoSlice::new(buf)], &polled, reached);
            head.2.store(polled.is_pending(), Ordering::Relaxed);
        }
        if let (Some(frames), Poll::Ready(Ok(n))) = (&mut this.frames, &polled) {
            frames.wrote(&[std::io::IoSlice::new(buf)], *n);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let before = this.io.socket_sent();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Some(head) = &this.head {
            let reached = this.io.reached(before, &polled);
            head.polled(bufs, &polled, reached);
            head.2.store(polled.is_pending(), Ordering::Relaxed);
        }
        if let (Some(frames), Poll::Ready(Ok(n))) = (&mut this.frames, &polled) {
            frames.wrote(bufs, *n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = this.io.socket_sent();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        if let Some(head) = &this.head {
            // A TLS stream's records written now (a plain one's flush writes none).
            if this.io.socket_sent() != before {
                head.wrote(&[], 0, true);
            }
            head.2.store(polled.is_pending(), Ordering::Relaxed);
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(head) = &this.head {
            head.3.store(true, Ordering::Relaxed);
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// What the connection has written to its socket: a TLS connection's
/// count; a plain one's writes say themselves whether they wrote.
impl Sent for UpstreamIo {
    fn sent(&self) -> u64 {
        self.io.inner().io.socket_sent()
    }
}

impl UpstreamIo {
    /// Its server slot, taken out: it goes with the connection closed
    /// for it ([`crate::upstream::conn::H1::into_slot`]), or an HTTP/2
    /// connection keeps it apart, to hand it over when it is closed for it.
    pub fn take_slot(&mut self) -> Option<OwnedSemaphorePermit> {
        self.slot.take()
    }

    pub fn new(io: MaybeTls, slot: Option<OwnedSemaphorePermit>) -> UpstreamIo {
        UpstreamIo {
            io: TokioIo::new(Framed {
                io,
                frames: None,
                head: None,
            }),
            slot,
            kill: None,
            settling: None,
            closed: None,
        }
    }

    /// Ends once this is dropped, its socket closed: hyper's HTTP/2 client
    /// drops it in a task of its own, not the connection's.
    pub fn closed(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        let (closed, rx) = tokio::sync::oneshot::channel();
        self.closed = Some(closed);
        rx
    }

    /// From now on each read and write wakes whoever waits on the
    /// returned [`Settling`], until it is settled; and after that, each
    /// read that follows a SETTINGS frame.
    pub fn settling(&mut self) -> Arc<Settling> {
        let settling = self.settling.get_or_insert_with(Arc::default).clone();
        self.io.inner_mut().frames = Some(SettingsFrames::new(settling.clone()));
        settling
    }

    /// An HTTP/1.1 connection: what it reads while a request waits for
    /// its head is counted in the returned [`HeadWait`], and bounded.
    pub fn head_wait(&mut self) -> Arc<HeadWait> {
        self.io
            .inner_mut()
            .head
            .get_or_insert_with(Arc::default)
            .clone()
    }

    /// From now on the connection can be closed with `kill`.
    pub fn killable(&mut self) -> Arc<Kill> {
        self.kill.get_or_insert_with(Arc::default).clone()
    }

    /// Once killed, every read and write fails, so whichever task drives
    /// the connection ends it and drops these bytes (and the slot). The
    /// waker is kept only when the connection waits, not per call.
    fn guard<T>(
        &self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if let Some(s) = &self.settling
            && !s.is_settled()
        {
            s.waker.wake();
        }
        let Some(kill) = &self.kill else {
            return polled;
        };
        if polled.is_pending() {
            kill.waker.register(cx.waker());
        }
        if kill.killed.load(Ordering::Acquire) {
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionAborted.into()));
        }
        if let Poll::Ready(Err(e)) = &polled {
            kill.failed(e);
        }
        polled
    }

    /// A write failed (HTTP/2): the peer is gone. An upstream refusing our
    /// client certificate after a TLS 1.3 handshake says so in an alert,
    /// then closes; hyper writes its preface and request before it reads,
    /// so a write after the close fails (a broken pipe) with the alert
    /// still unread, and the connection ends on that. The alert is read
    /// here, from the socket itself: tokio reads only once its driver has
    /// seen the socket readable, and it has not looked since. (The socket
    /// does not block; what is read is the connection's last bytes.)
    fn read_the_alert(&mut self) {
        let Some(kill) = &self.kill else {
            return;
        };
        let MaybeTls::Tls(tls) = &mut self.io.inner_mut().io else {
            return;
        };
        // Killed: our own close, nothing to learn.
        if kill.tls_error.get().is_some() || kill.killed.load(Ordering::Acquire) {
            return;
        }
        let (tcp, session) = tls.get_mut();
        let socket = socket2::SockRef::from(&*tcp);
        let mut raw = [0u8; 4096];
        let Ok(n) = std::io::Read::read(&mut &*socket, &mut raw) else {
            return;
        };
        if session.read_tls(&mut &raw[..n]).is_ok()
            && let Err(e) = session.process_new_packets()
        {
            let _ = kill.tls_error.set(e);
        }
    }

    /// The write's result, looking for the alert behind a failed one.
    fn wrote<T>(&mut self, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if matches!(&polled, Poll::Ready(Err(_))) {
            self.read_the_alert();
        }
        polled
    }
}

/// Closes an upstream connection from outside the task that drives it.
#[derive(Default)]
pub struct Kill {
    killed: AtomicBool,
    waker: AtomicWaker,
    /// The TLS error the connection's I/O failed on. hyper's HTTP/2 task
    /// only logs it, and the requests the connection then drops unsent
    /// come back as "operation was canceled", with no cause: an upstream
    /// refusing our client certificate after a TLS 1.3 handshake is seen
    /// only here. Set before the connection ends, so before they fail.
    tls_error: std::sync::OnceLock<rustls::Error>,
}

impl Kill {
    /// Its next read or write fails; a task waiting on it is woken. A
    /// connection stuck writing to a peer that no longer reads (a
    /// black-holed IP with megabytes unacknowledged) would otherwise stay,
    /// with its slot, until the kernel gives up on the socket.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Poll the task driving the connection once more. hyper's HTTP/2
    /// keep-alive (without `keep_alive_while_idle`) schedules its first
    /// PING only when that task is polled with a request in flight, and
    /// counts a request in flight only once the dispatching task has taken
    /// it in, which happens after the request's HEADERS were queued and
    /// the connection's task woken to write them. On a multi-threaded
    /// runtime that task can run in between, see no request, write the
    /// HEADERS and wait for the peer: a peer silent from then on was never
    /// PINGed, and the request waited out `request_timeout` instead of
    /// `http2_keepalive.timeout`. A wake after the hand-over closes that
    /// gap (a no-op when the task is already due to run); one each
    /// `interval` covers a wake that came while the task was mid-poll.
    pub fn nudge(&self) {
        self.waker.wake();
    }

    /// The connection's I/O failed with `e`: kept if TLS is the cause.
    fn failed(&self, e: &std::io::Error) {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            let _ = self.tls_error.set(tls.clone());
        }
    }

    /// The TLS error the connection failed on, if it did.
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        self.tls_error.get()
    }
}

/// Wakes the task watching a new HTTP/2 connection at each of its reads and
/// writes until the server's SETTINGS are in, and after that once h2 has
/// applied each later SETTINGS frame ([`SettingsFrames`]). hyper reads them
/// in a task of its own and tells nobody; the watcher asks after each.
/// Writes count too: h2 applies the SETTINGS after the read that brought
/// them, before the write of their acknowledgement, so a look after that
/// write sees them.
///
/// Its flag is the only record of whether the SETTINGS are in: the I/O
/// reads it (in hyper's task) to stop the wake-ups, the watcher to know
/// whether to keep looking, and the pool ([`crate::upstream::conn::H2::settled`])
/// to hold other requests back until then.
#[derive(Default)]
pub struct Settling {
    settled: AtomicBool,
    waker: AtomicWaker,
    /// The connection ended.
    over: AtomicBool,
    /// Told when the SETTINGS are in, or the connection ended before them:
    /// the dial that opened it waits for one or the other.
    done: tokio::sync::Notify,
}

impl Settling {
    /// Wake the task polling with `cx` at the next read or write (until
    /// settled), or SETTINGS frame applied.
    pub fn register(&self, cx: &Context<'_>) {
        self.waker.register(cx.waker());
    }

    /// h2 has applied a SETTINGS frame: the watcher looks at it.
    fn applied(&self) {
        self.waker.wake();
    }

    /// The SETTINGS are in: no more wake-ups at each read and write (only
    /// after each later SETTINGS frame). Release: whoever sees it
    /// settled sees what the watcher stored before (the stream limit).
    pub fn settle(&self) {
        self.settled.store(true, Ordering::Release);
        self.done.notify_waiters();
    }

    /// The connection ended (settled or not).
    pub fn ended(&self) {
        self.over.store(true, Ordering::Release);
        self.done.notify_waiters();
    }

    /// Wait until the SETTINGS are in or the connection has ended: true
    /// for the first.
    pub async fn wait(&self) -> bool {
        let mut told = std::pin::pin!(self.done.notified());
        // Enabled before the flags are read: a notice after it is kept.
        told.as_mut().enable();
        if !self.is_settled() && !self.over.load(Ordering::Acquire) {
            told.await;
        }
        self.is_settled()
    }

    /// Are the server's SETTINGS in?
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.guard(cx, polled)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        let polled = this.guard(cx, polled);
        this.wrote(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        let polled = this.guard(cx, polled);
        this.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        let polled = this.guard(cx, polled);
        this.wrote(polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.guard(cx, polled)
    }
}

#[cfg(test)]
mod tests;
