//! One upstream connection: dialling (TCP, TLS snapshot, slot) and the h1/h2 handles on hyper's conn API.
//!
//! An HTTP/1.1 connection is a [`H1`]: its `SendRequest` *and* its
//! connection future, owned together and polled by whoever holds the
//! lease (the forwarding request, then its response body), so it runs in
//! the client connection's task: no task and no cross-task wake-up per
//! upstream connection. Idle in the pool it is not polled at all; taking it
//! out polls it once, which is what notices an upstream that closed it.
//! An HTTP/2 connection is shared: its connection future runs in a task of
//! its own and requests use clones of its `SendRequest`, at most
//! [`H2_MAX_STREAMS`] at a time (fewer if the server says so, none while
//! it allows none; none until the server's SETTINGS are in, which the dial
//! waits for), and is let go after `idle_timeout` without one. One whose request goes unanswered is
//! retired ([`StreamGuard::retire`]): a silent peer is not shared further.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::TokioTimer;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::config::Http2Keepalive;
use crate::proxy::body::ClientBody;
use crate::proxy::slots::ConnectionLimit;
use crate::tls::sent::Counted;
use crate::upstream::io::{HeadWait, Kill, MaybeTls, Settling, UpstreamIo};
use crate::upstream::pool::Wakes;

/// Streams one shared HTTP/2 upstream connection carries at once before
/// the pool opens another, unless the server's `SETTINGS_MAX_CONCURRENT_STREAMS`
/// is lower.
pub const H2_MAX_STREAMS: usize = 100;

/// What hyper reports as the server's stream limit until the server's first
/// SETTINGS are in: a value no server can set (the setting is 32 bits; h2
/// takes one that omits it as `usize::MAX`), so that any other, zero too,
/// is the server's. On a 32-bit target a server setting exactly
/// `u32::MAX - 1` would read as not in yet (its dial times out).
const SETTINGS_NOT_IN: usize = usize::MAX - 1;

/// Why no upstream connection could be had: the 502/504's cause.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(transparent)]
    Limit(#[from] ConnectionLimit),
    #[error("connect timed out")]
    Timeout,
    #[error("connection refused")]
    Refused,
    #[error("cannot connect: {0}")]
    Io(std::io::Error),
    /// The proxy itself is out of what a connection needs (descriptors,
    /// socket buffers, memory): nothing reached the endpoint.
    #[error("out of local resources to connect: {0}")]
    LocalResources(std::io::Error),
    #[error("{0}")]
    Tls(rustls::Error),
    #[error("invalid server name {0:?}")]
    ServerName(String),
    #[error("HTTP handshake failed: {0}")]
    Handshake(hyper::Error),
    /// Another request's dial, which this one waited for, failed or was
    /// still in progress at this one's deadline: its cause, shared by
    /// every request that waited. That dial is the endpoint's one verdict;
    /// this is none (nor the connection limit: no slot was waited for).
    #[error("{}", .0.description)]
    Waited(Arc<DialCause>),
}

/// Why a dial others waited for got no connection, as each of them
/// reports it (the `DialError` itself is the dialler's, and not `Clone`).
#[derive(Debug)]
pub struct DialCause {
    /// The metric and log reason (`connect_timeout`, `connect_refused`,
    /// the TLS causes...).
    pub reason: &'static str,
    pub description: String,
    /// `504` for a timeout, `502` for the rest.
    pub status: http::StatusCode,
}

/// How new connections to one endpoint are made.
#[derive(Clone)]
pub struct Dialer {
    /// The upstream's TLS snapshot, loaded once per new connection.
    pub tls: Arc<ArcSwap<ClientConfig>>,
    /// The SNI and name checked; the URL's host when absent.
    pub server_name: Option<Arc<str>>,
    pub connect_timeout: Duration,
    /// PINGs on an HTTP/2 connection with requests in flight (`http2_keepalive`).
    pub h2_keepalive: Option<Http2Keepalive>,
    /// Each HTTP/2 stream's flow-control window (`http2_stream_window_bytes`).
    pub h2_stream_window: u32,
}

/// A freshly dialled connection, before the HTTP handshake.
pub struct Dialled {
    pub io: UpstreamIo,
    /// ALPN chose h2.
    pub h2: bool,
}

impl Dialer {
    /// TCP (`TCP_NODELAY`, bounded by `deadline`) and, for https, TLS with
    /// the snapshot current now. `h1_only` offers only http/1.1 (upgrades).
    pub async fn dial(
        &self,
        host: &str,
        port: u16,
        https: bool,
        slot: Option<OwnedSemaphorePermit>,
        deadline: tokio::time::Instant,
        h1_only: bool,
    ) -> Result<Dialled, DialError> {
        let tcp =
            match tokio::time::timeout_at(deadline, serial::connect(host, port, deadline)).await {
                Err(_) => return Err(DialError::Timeout),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(DialError::Refused);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(DialError::Timeout);
                }
                Ok(Err(e)) if out_of_local_resources(&e) => {
                    return Err(DialError::LocalResources(e));
                }
                Ok(Err(e)) => return Err(DialError::Io(e)),
                Ok(Ok(tcp)) => tcp,
            };
        tcp.set_nodelay(true).map_err(DialError::Io)?;
        if !https {
            return Ok(Dialled {
                io: UpstreamIo::new(MaybeTls::Plain(tcp), slot),
                h2: false,
            });
        }
        let mut config = self.tls.load_full();
        if h1_only {
            let mut c = (*config).clone();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            config = Arc::new(c);
        }
        let name = self.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| DialError::ServerName(name.to_owned()))?;
        // The handshake shares connect_timeout too: a server that accepts
        // TCP and never answers must not hold a request (and its slot).
        let tls = tokio::time::timeout_at(
            deadline,
            tokio_rustls::TlsConnector::from(config).connect(server_name, Counted::new(tcp)),
        )
        .await
        .map_err(|_| DialError::Timeout)?
        .map_err(|e| {
            match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(tls) => DialError::Tls(tls.clone()),
                None => DialError::Io(e),
            }
        })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Dialled {
            io: UpstreamIo::new(MaybeTls::Tls(Box::new(tls)), slot),
            h2,
        })
    }
}

/// A connect that failed here, in `socket()` or `connect()`, for want of
/// the proxy's own resources: descriptors (the process's or the system's),
/// socket buffers, kernel memory. The endpoint was never reached, so it is
/// not the endpoint's failure, and another endpoint would fail alike
/// (nginx answers `500` when `socket()` fails, and does not mark the peer).
pub fn out_of_local_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The largest upstream response head, over either protocol (Envoy's
/// limit is 60 KiB, nginx's 4-8 KiB). A larger one is a `502`. hyper's
/// HTTP/1.1 read buffer is held to it only between reads (one read may
/// fill the room its buffer grew to, past it): the head is measured once
/// parsed too ([`crate::proxy::framing::refused`]).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The most header fields an upstream response may have, over either
/// protocol (Envoy's and hyper's default; HAProxy's is 101). More is a
/// `502`. hyper's HTTP/1.1 parser stops there; an HTTP/2 response is
/// counted by the forwarder.
pub const MAX_RESPONSE_FIELDS: usize = 100;

/// The HTTP/1.1 client settings of every upstream connection.
fn h1_builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    // Queue (writev) head and body instead of copying them into one buffer.
    b.writev(true);
    // hyper's default lets its read buffer, and the body chunks that share
    // it, grow to 400 KiB per connection.
    b.max_buf_size(MAX_RESPONSE_HEAD);
    b.max_headers(MAX_RESPONSE_FIELDS);
    b
}

/// A pooled HTTP/1.1 upstream connection: the request handle and the
/// connection future, driven by whoever holds it.
pub struct H1 {
    send: http1::SendRequest<ClientBody>,
    /// The connection future; `None` once it has finished (the connection
    /// is closed). Dropped then, not kept: a request queued on it comes
    /// back only when the dispatcher is dropped (see [`H1::send`]).
    pub conn: Option<http1::Connection<UpstreamIo, ClientBody>>,
    /// When it last went back to the pool; `None` = never used yet.
    pub idle_since: Option<Instant>,
    /// The pool generation it was made in (`drain_on_rotation`).
    pub generation: u64,
    /// An active check's connection past `max_connections_per_server`:
    /// closed when the check is done, never handed to a request.
    pub unpooled: bool,
    /// What it reads while a request waits for the response head.
    pub head: Arc<HeadWait>,
}

impl H1 {
    pub async fn handshake(mut d: Dialled, generation: u64) -> Result<H1, DialError> {
        let head = d.io.head_wait();
        let (send, conn) = h1_builder()
            .handshake(d.io)
            .await
            .map_err(DialError::Handshake)?;
        Ok(H1 {
            send,
            conn: Some(conn),
            idle_since: None,
            generation,
            unpooled: false,
            head,
        })
    }

    /// The head of the request last sent on it, as written, if all of it
    /// was, and whether none of it reached the socket ([`HeadWait::written`]).
    pub fn sent_head(&self) -> Option<(Vec<u8>, bool)> {
        self.head.written()
    }

    /// Closed, its server slot kept for a new connection: a request sent
    /// again on a new connection found every slot taken, this idle one's
    /// too ([`crate::upstream::endpoint::Endpoint::checkout`]). `None` if
    /// it holds none (no limit), or closed already (its slot freed then).
    pub fn into_slot(self) -> Option<OwnedSemaphorePermit> {
        let mut io = self.conn?.into_parts().io;
        io.take_slot()
    }

    /// Was this connection used before (the upstream may have closed it)?
    pub fn reused(&self) -> bool {
        self.idle_since.is_some()
    }

    /// Drive the connection; true while it is open and not closing (a
    /// close_notify waiting on a full socket: [`HeadWait::shutting`]).
    pub fn poll_conn(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(conn) = &mut self.conn
            && Pin::new(conn).poll(cx).is_ready()
        {
            self.conn = None;
        }
        self.conn.is_some() && !self.head.shutting()
    }

    /// Wait until it can take a request; false if it closed meanwhile
    /// (the upstream closed an idle connection: a FIN already read).
    /// Ready, the request is to be sent at once ([`H1::send`], in the
    /// same poll), which drives the connection with the task's waker.
    pub async fn ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            // Looked at with a waker that does nothing: the request sent
            // next would wake the waker the dispatcher keeps, and this
            // task's would poll the whole request (and with HTTP/1.1 its
            // client connection) once more for nothing.
            if !self.poll_conn(&mut Context::from_waker(std::task::Waker::noop())) {
                return Poll::Ready(false);
            }
            if let Poll::Ready(r) = self.send.poll_ready(cx) {
                return Poll::Ready(r.is_ok());
            }
            // Waiting: the connection must wake this task.
            if !self.poll_conn(cx) {
                return Poll::Ready(false);
            }
            self.send.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Send `req` and drive the connection until the response head is in.
    /// A request that was never written comes back in the error.
    pub async fn send(
        &mut self,
        req: Request<ClientBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<ClientBody>>> {
        // Stopped when the head is in, or the wait dropped.
        let _counted = self.head.count();
        let mut fut = std::pin::pin!(self.send.try_send_request(req));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = fut.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            // Driving the connection may read the response head: it is
            // taken at once, not on the wake-up its answer sends, which
            // would poll the whole request (and its stream) again.
            // Closed, the dispatcher is dropped with it: the request is
            // answered too (an error, or the message itself when it was
            // never written). An upstream's FIN read while hyper is
            // keep-alive idle is a clean close to it, which ends the
            // dispatcher without looking at the request queued meanwhile;
            // only its drop hands that back.
            self.poll_conn(cx);
            fut.as_mut().poll(cx)
        })
        .await
    }
}

/// A shared HTTP/2 upstream connection.
#[derive(Clone)]
pub struct H2 {
    pub send: http2::SendRequest<ClientBody>,
    /// What the pool and the connection's streams share.
    shared: Arc<H2Shared>,
    pub generation: u64,
}

/// The state of one shared HTTP/2 connection.
struct H2Shared {
    /// Requests in flight on it (until their response bodies end), with
    /// the flags [`CLOSE_AT_IDLE`] and [`CLOSED`] in the same word: the one
    /// compare-and-swap that counts the last stream out, or marks the
    /// connection to close when idle, sees the other's mark or count.
    streams: AtomicUsize,
    /// How many it may carry: [`H2_MAX_STREAMS`], or fewer if the server
    /// says so (none while it allows none). hyper would queue the rest on this connection, one behind
    /// the other, where another connection serves them at once. One (the
    /// request that opened it) until the server's SETTINGS are in.
    max_streams: AtomicUsize,
    /// Whether the server's SETTINGS are in: the one record of it, shared
    /// with the connection's I/O (which wakes the watcher until then, in
    /// hyper's task) and read by the watcher and the pool. Until then the
    /// connection is a dial still in progress to the pool: requests wait
    /// for it.
    settling: Arc<Settling>,
    /// When its last stream ended (or it was made), for `idle_timeout`.
    idle_since: AtomicU64,
    /// It takes no new stream: one of its requests went unanswered.
    retired: AtomicBool,
    /// Responses (heads) it has served.
    answered: AtomicU64,
    /// Whether it took its one step in a run of unprocessed attempts.
    stepped: AtomicBool,
    /// Streams the server refused on it since its last response on a
    /// stream opened after a refusal ([`StreamGuard::refused`]).
    refusals: AtomicUsize,
    /// Streams taken on it so far: the next one's sequence number.
    opened: AtomicU64,
    /// `opened` at its last refusal: streams numbered from it on came after it.
    refused_at: AtomicU64,
    /// Its open streams with no response head yet ([`StreamGuard::others_awaiting`]).
    awaiting: AtomicUsize,
    /// Its run of refusals, which begins at a refusal and ends at a response on a
    /// stream opened after the last: the run's number in the high half (odd while
    /// one lasts), and in the low half the streams opened in that run still open.
    runs: AtomicU64,
    /// Closes it once it is retired and idle.
    kill: Arc<Kill>,
    /// The pool's: wakes a request waiting for a connection when a stream
    /// of this one ends while it was full, and a resend waiting for a
    /// server slot when its last stream ends.
    wakes: Arc<Wakes>,
    /// Its server slot, kept out of its I/O, freed when its task ends
    /// (after its socket closed); and where to send it then instead, if
    /// it was closed for it ([`H2::close_for_slot`]).
    slot: std::sync::Mutex<HeldSlot>,
}

/// An HTTP/2 connection's server slot, and who it goes to ([`H2Shared`]).
type HeldSlot = (
    Option<OwnedSemaphorePermit>,
    Option<oneshot::Sender<OwnedSemaphorePermit>>,
);

impl H2 {
    pub async fn handshake(
        mut d: Dialled,
        generation: u64,
        keepalive: Option<Http2Keepalive>,
        stream_window: u32,
        wakes: Arc<Wakes>,
    ) -> Result<H2, DialError> {
        let kill = d.io.killable();
        let settling = d.io.settling();
        let slot = std::sync::Mutex::new((d.io.take_slot(), None));
        let closed = d.io.closed();
        // tokio's, keeping each request body's sending task (`pipe`).
        let mut builder = http2::Builder::new(crate::upstream::pipe::Exec);
        builder
            .timer(TokioTimer::new())
            // The same head limit as HTTP/1.1: hyper's HTTP/2 default is
            // 16 KiB, so a backend that turned on HTTP/2 would have its
            // 20 KiB of Set-Cookie and CSP answered 502.
            .max_header_list_size(MAX_RESPONSE_HEAD as u32)
            // A stream's window bounds what a client that stops reading
            // leaves here; the connection's is every stream's at once, so
            // that unread streams never hold up the others sharing it
            // (hyper's 5 MiB against 2 MiB a stream let three unread
            // responses stall every other one). Go's transport makes the
            // same promise (1 GiB against 4 MiB a stream).
            .initial_stream_window_size(stream_window)
            .initial_connection_window_size(stream_window * H2_MAX_STREAMS as u32)
            // No stream until the server's SETTINGS say how many it takes
            // (RFC 9113 §5.1.2: its limit holds from its first frame, a
            // round trip after ours): the dial waits for them before it
            // sends its request, and other requests wait for the dial. With
            // hyper's default of 100, every request shared onto a new
            // connection was sent at once, and a server allowing fewer
            // refused the rest (`REFUSED_STREAM`): a `502` for each whose
            // body could not be sent twice (gRPC calls). Any count but this
            // one is then the server's, which is how the watcher below knows
            // they are in (a zero too: it used to be the initial count, so a
            // server allowing no stream was never settled, and its dial
            // ended as `connect_timeout`); the price is that round trip,
            // once per new connection.
            .initial_max_send_streams(SETTINGS_NOT_IN)
            // No cap on the streams h2 resets itself for what the server
            // sent (a head over the limit above, DATA not matching
            // content-length): each is that one request's 502. hyper's
            // 1024 a connection is a server's defence against clients
            // (MadeYouReset); here it closed the shared connection with
            // GOAWAY, failing every other stream on it. A client resets
            // only streams it opened itself, as Envoy's and Go's
            // upstream sides, which keep no such count.
            .max_local_error_reset_streams(None);
        if let Some(k) = keepalive {
            // hyper pings only when nothing was read for `interval`, and
            // (`keep_alive_while_idle` false) only with requests in flight:
            // an idle connection never pings a gRPC server into GOAWAY.
            builder
                .keep_alive_interval(k.interval)
                .keep_alive_timeout(k.timeout)
                .keep_alive_while_idle(false);
        }
        let (send, conn) = builder
            .handshake(d.io)
            .await
            .map_err(DialError::Handshake)?;
        let shared = Arc::new(H2Shared {
            streams: AtomicUsize::new(0),
            max_streams: AtomicUsize::new(1),
            settling,
            idle_since: AtomicU64::new(clock()),
            retired: AtomicBool::new(false),
            answered: AtomicU64::new(0),
            stepped: AtomicBool::new(false),
            refusals: AtomicUsize::new(0),
            opened: AtomicU64::new(0),
            refused_at: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            awaiting: AtomicUsize::new(0),
            kill,
            wakes,
            slot,
        });
        let watch = shared.clone();
        // See `Kill::nudge`: after a poll that may have handed a request
        // over (more streams than at the last look), and once an interval
        // while streams are open, in case that wake-up came while the
        // connection's task was running. An idle connection is left alone.
        let mut nudges = keepalive.map(|k| (k.interval, Box::pin(tokio::time::sleep(k.interval))));
        let mut seen = 0;
        tokio::spawn(async move {
            let mut conn = Box::pin(conn);
            let ended = std::future::poll_fn(|cx| {
                // Only this task settles it, so this holds for the whole poll.
                let settled = watch.settling.is_settled();
                // Before polling: until settled a read or write from now on
                // wakes us, and after it each SETTINGS frame h2 has applied.
                watch.settling.register(cx);
                let polled = crate::upstream::pipe::scope(|| conn.as_mut().poll(cx));
                if let Some((every, next)) = &mut nudges {
                    let streams = watch.open_streams();
                    if streams > seen {
                        watch.kill.nudge();
                    }
                    seen = streams;
                    while streams > 0 && next.as_mut().poll(cx).is_ready() {
                        let at = tokio::time::Instant::now() + *every;
                        next.as_mut().reset(at);
                        watch.kill.nudge();
                    }
                }
                // The server's SETTINGS_MAX_CONCURRENT_STREAMS, which it may
                // change at any time; read each time a request is handed
                // over, at each read and write until its first SETTINGS, and
                // after each later SETTINGS frame.
                let now = conn.current_max_send_streams();
                if !settled && now == SETTINGS_NOT_IN {
                    return polled;
                }
                // Zero (RFC 9113 §6.5.2: for short durations, a server
                // draining, say) is a limit reached like any other, not a
                // special case: the pool hands it no new request, and dials
                // another connection if it may. It used to be taken as one,
                // so the next request was handed to hyper, which held it
                // unsent until the server allowed a stream again, and it
                // waited out `request_timeout`.
                let max = now.min(H2_MAX_STREAMS);
                let before = watch.max_streams.swap(max, Ordering::AcqRel);
                if max == 0 && before != 0 {
                    tracing::debug!("upstream h2 connection takes no new stream: the server's SETTINGS_MAX_CONCURRENT_STREAMS is 0");
                }
                let newly = !settled;
                if newly {
                    // After the limit: a request that sees it settled must
                    // not find it full on the opener's one stream and dial.
                    watch.settling.settle();
                }
                if newly || max > before {
                    // A request waiting for this connection (or room on it)
                    // looks again, and passes it on.
                    watch.wakes.freed();
                }
                polled
            })
            .await;
            // Its socket closed (by hyper's own task, which has ended), then
            // its slot freed, or sent to whoever closed it for it.
            drop(conn);
            let _ = closed.await;
            let held = std::mem::take(&mut *watch.slot.lock().expect("slot lock"));
            if let (Some(slot), Some(to)) = held {
                let _ = to.send(slot);
            }
            watch.settling.ended();
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        Ok(H2 {
            send,
            shared,
            generation,
        })
    }

    /// Can it take new streams (open, not retired, not closed at its
    /// last stream)?
    pub fn usable(&self) -> bool {
        !self.send.is_closed()
            && !self.shared.retired.load(Ordering::Acquire)
            && self.shared.streams.load(Ordering::Acquire) & CLOSED == 0
    }

    /// Shared still, it closes when its last stream ends (now, if it has
    /// none): the connection of a retired pool, which the requests still
    /// in flight under its endpoint share, and which nothing sweeps once
    /// they are over. Whether it closed now, with no stream.
    ///
    /// The mark is a bit of the stream count ([`CLOSE_AT_IDLE`]), set by
    /// the same SeqCst compare-and-swap that sees the count: either this
    /// finds no stream and closes it, or the last stream's drop finds the
    /// mark and does. With the mark a flag of its own, stored before the
    /// count was looked at, a last stream counted out between the two read
    /// the flag unset while this read a stream still open: neither closed
    /// it, and it stayed open for as long as the endpoint was held.
    pub fn close_when_idle(&self) -> bool {
        let mut close = false;
        // `None` when it is closed already.
        let _ = self
            .shared
            .streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                if n & CLOSED != 0 {
                    return None;
                }
                close = n & COUNT == 0;
                Some(if close { CLOSED } else { n | CLOSE_AT_IDLE })
            });
        if close {
            self.shared.kill.kill();
        }
        close
    }

    /// Closed now if it carries no stream ([`H2::close_when_idle`], which
    /// says whether it did), its server slot sent for a new connection
    /// once its socket is closed (its task, killed, ends at once), as
    /// [`H1::into_slot`] gives it: to the caller, not to whoever waits for
    /// a slot (a request woken before then closed another idle connection
    /// for the same need). Handed over as it was only told to close, the
    /// new connection reached the server while this one was still open.
    /// `None`: a stream opened on it meanwhile (it closes at its last), it
    /// ended already (its slot freed then), or it holds none.
    pub fn close_for_slot(&self) -> Option<oneshot::Receiver<OwnedSemaphorePermit>> {
        if !self.close_when_idle() {
            return None;
        }
        let mut held = self.shared.slot.lock().expect("slot lock");
        held.0.as_ref()?;
        let (to, slot) = oneshot::channel();
        held.1 = Some(to);
        Some(slot)
    }

    /// The server's SETTINGS are in: it takes as many streams as they say.
    pub fn settled(&self) -> bool {
        self.shared.settling.is_settled()
    }

    /// Wait for the server's first SETTINGS until `deadline`, as part of
    /// setting the connection up (Envoy's connect timeout covers the HTTP/2
    /// handshake too). A server that completes TLS and never sends them
    /// held the request that opened it for `request_timeout`, and every
    /// other request waiting for it to settle; it fails as a dial now,
    /// and the connection is closed.
    pub async fn settings_within(&self, deadline: tokio::time::Instant) -> Result<(), DialError> {
        let settled = tokio::time::timeout_at(deadline, self.shared.settling.wait()).await;
        if settled == Ok(true) {
            return Ok(());
        }
        self.shared.kill.kill();
        match settled {
            Err(_) => Err(DialError::Timeout),
            // TLS 1.3: a server refusing our client certificate says so
            // after our side of the handshake ended, before its SETTINGS.
            Ok(_) if let Some(tls) = self.shared.kill.tls_error() => {
                Err(DialError::Tls(tls.clone()))
            }
            Ok(_) => Err(DialError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "HTTP/2 connection closed before the server's SETTINGS",
            ))),
        }
    }

    /// It carries no stream now and would take one (a pooled connection
    /// that is idle, not merely one its server allows none on).
    pub fn idle_with_room(&self) -> bool {
        self.shared.open_streams() == 0
            && self.shared.max_streams.load(Ordering::Acquire) > 0
            && self.usable()
    }

    /// It has had no stream for `timeout` or more.
    pub fn idle_for(&self, timeout: Duration) -> bool {
        self.shared.open_streams() == 0
            && clock().saturating_sub(self.shared.idle_since.load(Ordering::Acquire))
                >= timeout.as_nanos() as u64
    }

    /// The stream of the request that dialled it, its SETTINGS in. A
    /// server that allows none fails the dial (`connect_error`), and the
    /// connection is closed: nothing can be sent on it, and the requests
    /// waiting for the dial would wait out `connect_timeout` for a stream
    /// the server may never allow (RFC 9113 §6.5.2: a server that does not
    /// wish to accept requests should close the connection instead). So
    /// does one whose connection ended right after its SETTINGS (a
    /// `GOAWAY` with them, a close): TCP and TLS succeeded, so it is no
    /// `connect_refused`, which it used to be.
    pub fn first_stream(&self) -> Result<StreamGuard, DialError> {
        if let Some(guard) = self.try_stream() {
            return Ok(guard);
        }
        self.shared.kill.kill();
        if self.shared.max_streams.load(Ordering::Acquire) > 0 {
            // Not full (no other request has it yet): ended.
            return Err(DialError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "HTTP/2 connection ended right after the server's SETTINGS (a GOAWAY or a close), before any request",
            )));
        }
        Err(DialError::Io(std::io::Error::other(
            "the server's HTTP/2 SETTINGS allow no stream (SETTINGS_MAX_CONCURRENT_STREAMS 0)",
        )))
    }

    /// Take a stream if it has room; the guard gives it back.
    ///
    /// Counted only if taken (no count taken back, as a guard's drop
    /// would, waking a waiter that would probe again, and wake another):
    /// a stream's last guard that closes the connection sees every stream
    /// taken before it, and none is taken after it (the count is
    /// [`CLOSED`] then).
    pub fn try_stream(&self) -> Option<StreamGuard> {
        if !self.usable() {
            return None;
        }
        let max = self.shared.max_streams.load(Ordering::Acquire);
        self.shared
            .streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n & CLOSED == 0 && n & COUNT < max).then_some(n + 1)
            })
            .ok()?;
        let seq = self.shared.opened.fetch_add(1, Ordering::AcqRel);
        let run = stream::run_of_new(&self.shared);
        Some(StreamGuard::new(self.shared.clone(), seq, run))
    }
}

/// The stream count of a connection closed at its last stream: no stream
/// is taken on it again.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// A flag of the stream count: the connection closes when its last stream
/// ends ([`H2::close_when_idle`]); streams are still taken on it until then.
const CLOSE_AT_IDLE: usize = 1 << (usize::BITS - 2);

/// The stream count's bits that count streams.
const COUNT: usize = !(CLOSED | CLOSE_AT_IDLE);

impl H2Shared {
    /// Streams in flight on it.
    fn open_streams(&self) -> usize {
        self.streams.load(Ordering::Acquire) & COUNT
    }
}

/// Nanoseconds on a monotonic clock, for times kept in an atomic.
fn clock() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A connection that will carry an `Upgrade` request: HTTP/1.1 only, its
/// connection future in a task of its own (it outlives the request as a
/// tunnel), never pooled. What it reads before the response head is
/// bounded as on a pooled connection: counted while the request holds the
/// [`HeadWait`]'s count ([`HeadWait::count`]). That task also sends the
/// request's body, after the response head too (a `101` before the body
/// is through: the switch waits for its end): its handle goes with the
/// body, to be cut when the upstream takes no more of it
/// ([`crate::upstream::pipe::watch`]).
pub async fn upgrade_conn(mut d: Dialled) -> Result<UpgradeConn, DialError> {
    let head = d.io.head_wait();
    let (send, conn) = h1_builder()
        .handshake(d.io)
        .await
        .map_err(DialError::Handshake)?;
    let task = tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream upgrade connection ended");
        }
    });
    Ok((send, head, task))
}

/// An `Upgrade` request's connection ([`upgrade_conn`]): its request
/// handle, the count of what it reads before the response head, and the
/// task that runs it.
pub type UpgradeConn = (
    http1::SendRequest<ClientBody>,
    Arc<HeadWait>,
    tokio::task::JoinHandle<()>,
);

mod serial;
mod stream;

pub use stream::{Refuser, StreamGuard, Unanswered};

#[cfg(test)]
pub(crate) mod tests;
