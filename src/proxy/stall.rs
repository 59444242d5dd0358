//! HTTP/2 responses held up by the client's flow-control window: after `send_timeout` the upstream request is released and the stream reset.
//!
//! On HTTP/1.1 a client that stops reading stalls the socket, and
//! [`ClientIo`](crate::proxy::client_io::ClientIo) cuts the connection after
//! `send_timeout`. An HTTP/2 client can keep reading the connection (and
//! answering PINGs) while it never opens one stream's window: hyper then
//! never polls that stream's body again, so nothing inside the body can
//! notice, and the upstream connection feeding it stays taken. Enough such
//! streams take every upstream connection (`max_connections_per_server`).
//!
//! So each HTTP/2 response body with content is registered with its
//! connection's [`Stalls`]. The body records when hyper was last left
//! holding a frame it could not send yet (`Watched::since`, in looks of the
//! driver, so marking costs no clock read); the connection driver looks
//! every half `send_timeout` ([`Stalls::look`]) and, for a body left waiting
//! since, drops what the body was streaming — between one and 1.5 times
//! `send_timeout` after it began to wait — as nginx's `send_timeout`
//! finalizes an HTTP/2 stream blocked on flow control. The upstream request
//! is released at once; the client's stream ends with `RST_STREAM` when
//! hyper next polls it (once the client opens its window). A body waiting on
//! the *upstream* is not stalled: that wait is the upstream timeouts'
//! business. The same looks bound how long a failed body's error waits on
//! the connection's writes (`crate::proxy::written`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::proxy::conn::TrackedBody;
use crate::proxy::forward::{BoxError as Error, ResponseBody};
use crate::proxy::written::Written;

const NONE: u64 = u64::MAX;

/// The most a watched body hands hyper at once: one default HTTP/2 frame.
/// hyper polls the body again only once h2 has room for more, so the mark
/// moves once per piece: a 64 KiB chunk from an HTTP/1.1 upstream drained
/// at 1 KB/s would otherwise look stalled for over a minute while its
/// bytes were moving. With 16 KiB pieces only a client slower than 16 KiB
/// per `send_timeout` is cut, as nginx re-arms `send_timeout` per write.
pub const PIECE: usize = 16 * 1024;

/// Looks per `send_timeout`: a body is cut between one and 1.5 times
/// `send_timeout` after it was left waiting.
pub const LOOKS_PER_TIMEOUT: u32 = 2;

/// The HTTP/2 response bodies of one client connection.
pub struct Stalls {
    /// How many times the driver has looked: the bodies' clock, so that
    /// marking one costs no clock read.
    looks: AtomicU64,
    bodies: Mutex<Registry>,
    /// A failed body's error waits on the connection's writes
    /// (`crate::proxy::written`).
    pub written: Written,
}

struct Registry {
    bodies: Vec<Weak<Watched>>,
    /// Ended bodies are swept out when the list reaches this length.
    sweep_at: usize,
}

/// One registered response body.
pub struct Watched {
    /// The look count when hyper was left with a frame to send (or the
    /// response, before its first frame); `NONE` while the body waits on
    /// the upstream or has ended.
    since: AtomicU64,
    /// `None` once cut.
    body: Mutex<Option<TrackedBody<ResponseBody>>>,
}

impl Watched {
    fn body(&self) -> MutexGuard<'_, Option<TrackedBody<ResponseBody>>> {
        self.body.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Stalls {
    pub fn new() -> Arc<Stalls> {
        Arc::new(Stalls {
            looks: AtomicU64::new(0),
            bodies: Mutex::new(Registry {
                bodies: Vec::new(),
                sweep_at: 32,
            }),
            written: Written::default(),
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a response body about to be handed to hyper.
    /// A response without content is sent with its head and not watched.
    pub fn watch(self: &Arc<Self>, body: TrackedBody<ResponseBody>) -> SentBody {
        if body.is_end_stream() {
            return SentBody::Plain(body);
        }
        let watched = Arc::new(Watched {
            since: AtomicU64::new(self.looks.load(Ordering::Relaxed)),
            body: Mutex::new(Some(body)),
        });
        let mut r = self.registry();
        if r.bodies.len() >= r.sweep_at {
            r.bodies.retain(|w| w.strong_count() > 0);
            r.sweep_at = (2 * r.bodies.len()).max(32);
        }
        r.bodies.push(Arc::downgrade(&watched));
        drop(r);
        SentBody::Watched {
            watched,
            stalls: self.clone(),
            rest: Bytes::new(),
            failed: None,
        }
    }

    /// Look once (every `send_timeout / LOOKS_PER_TIMEOUT`): cut every
    /// body left waiting since more than `LOOKS_PER_TIMEOUT` looks ago,
    /// so for at least `send_timeout`, and let the failures of bodies that
    /// have waited as long on the connection's writes go
    /// ([`Written::look`]). Returns how many were cut (stalled) and how
    /// many let go (broken upstream bodies): their log lines differ, as
    /// their causes do.
    pub fn look(&self) -> (usize, usize) {
        (self.cut_stalled(), self.written.look())
    }

    fn cut_stalled(&self) -> usize {
        let now = self.looks.fetch_add(1, Ordering::Relaxed) + 1;
        let mut due = Vec::new();
        {
            let mut r = self.registry();
            r.bodies.retain(|w| {
                let Some(w) = w.upgrade() else {
                    return false;
                };
                let since = w.since.load(Ordering::Relaxed);
                if since != NONE && now > since + u64::from(LOOKS_PER_TIMEOUT) {
                    due.push(w);
                    return false;
                }
                true
            });
            r.sweep_at = (2 * r.bodies.len()).max(32);
        }
        // Dropped outside the registry's lock: dropping an upstream body
        // closes its connection.
        for w in &due {
            w.since.store(NONE, Ordering::Relaxed);
            let cut = w.body().take();
            drop(cut);
        }
        due.len()
    }

    /// How often the driver looks.
    pub fn interval(send_timeout: Duration) -> Duration {
        // Never below the timer's tick: a tiny send_timeout must not make
        // the driver wake in a loop.
        (send_timeout / LOOKS_PER_TIMEOUT).max(Duration::from_millis(1))
    }
}

/// A response body as the client connection sends it: registered with
/// [`Stalls`] on HTTP/2, as is on HTTP/1.1 (where a stalled socket is
/// `ClientIo`'s to time out).
pub enum SentBody {
    Plain(TrackedBody<ResponseBody>),
    Watched {
        watched: Arc<Watched>,
        stalls: Arc<Stalls>,
        /// What is left of a data frame longer than [`PIECE`].
        rest: Bytes,
        /// The body's failure and its ticket: handed on once the stream's
        /// frames before it are written ([`Written`]), as h2's reset drops
        /// what it still holds of the stream, the head too.
        failed: Option<(Error, u64)>,
    },
}

impl Body for SentBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.get_mut() {
            SentBody::Plain(b) => Pin::new(b).poll_frame(cx),
            SentBody::Watched {
                watched,
                stalls,
                rest,
                failed,
            } => {
                if let Some((_, ticket)) = failed {
                    ready!(stalls.written.poll_written(*ticket, cx));
                    return Poll::Ready(failed.take().map(|(e, _)| Err(e)));
                }
                let mut body = watched.body();
                let Some(b) = body.as_mut() else {
                    return Poll::Ready(Some(Err(
                        "send_timeout: the client's flow-control window stayed shut".into(),
                    )));
                };
                let polled = if rest.is_empty() {
                    Pin::new(&mut *b).poll_frame(cx)
                } else {
                    Poll::Ready(Some(Ok(Frame::data(std::mem::take(rest)))))
                };
                let polled = match polled {
                    Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(match f.into_data() {
                        Ok(mut data) => {
                            if data.len() > PIECE {
                                *rest = data.split_off(PIECE);
                            }
                            Frame::data(data)
                        }
                        Err(f) => f,
                    }))),
                    Poll::Ready(Some(Err(e))) => {
                        drop(body);
                        watched.since.store(NONE, Ordering::Relaxed);
                        let ticket = stalls.written.ask();
                        *failed = Some((e, ticket));
                        ready!(stalls.written.poll_written(ticket, cx));
                        return Poll::Ready(failed.take().map(|(e, _)| Err(e)));
                    }
                    other => other,
                };
                let since = match &polled {
                    // hyper holds a frame until the window lets it go: the
                    // last one too, with the body (and the upstream request
                    // under it) alive until then. Once it is sent the body
                    // is dropped, and with it this mark.
                    Poll::Ready(Some(Ok(f))) if f.is_data() => stalls.looks.load(Ordering::Relaxed),
                    _ => NONE,
                };
                watched.since.store(since, Ordering::Relaxed);
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SentBody::Plain(b) => b.is_end_stream(),
            SentBody::Watched {
                watched,
                rest,
                failed,
                ..
            } => {
                rest.is_empty()
                    && failed.is_none()
                    && watched.body().as_ref().is_some_and(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SentBody::Plain(b) => b.size_hint(),
            SentBody::Watched { watched, rest, .. } => {
                let inner = watched
                    .body()
                    .as_ref()
                    .map_or_else(SizeHint::default, |b| b.size_hint());
                let held = rest.len() as u64;
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + held);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + held);
                }
                hint
            }
        }
    }
}

impl Drop for SentBody {
    /// A body dropped while its failure waits (the client reset the
    /// stream, hyper gave it up) takes its waker out of [`Written`].
    fn drop(&mut self) {
        if let SentBody::Watched {
            stalls,
            failed: Some((_, ticket)),
            ..
        } = self
        {
            stalls.written.forget(*ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    use super::*;
    use crate::proxy::conn::Activity;

    /// A body that waits (on "the upstream") until its gate opens, then
    /// yields a frame each poll and never ends.
    struct Gate(Arc<AtomicBool>);

    impl Body for Gate {
        type Data = Bytes;
        type Error = Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
            match self.0.load(Ordering::Relaxed) {
                true => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x"))))),
                false => Poll::Pending,
            }
        }
    }

    fn watched(stalls: &Arc<Stalls>) -> (SentBody, Arc<AtomicBool>) {
        let open = Arc::new(AtomicBool::new(false));
        let in_flight = Activity::new(Instant::now(), false).begin(false);
        let body = ResponseBody::new(Gate(open.clone()));
        (stalls.watch(TrackedBody::new(body, in_flight)), open)
    }

    fn poll(b: &mut SentBody) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(b).poll_frame(&mut cx)
    }

    /// A 64 KiB chunk from the upstream is handed over in pieces of at
    /// most [`PIECE`], each marking the body anew: hyper polls for the next
    /// piece once h2 has room, so a client draining it slowly but steadily
    /// is never taken for one whose window stayed shut. The whole chunk
    /// used to be one mark: at 1 KB/s it was cut while its bytes moved.
    #[test]
    fn a_large_chunk_is_handed_over_in_pieces_each_a_new_mark() {
        let stalls = Stalls::new();
        let chunk: Bytes = (0..64 * 1024).map(|i| i as u8).collect();
        let in_flight = Activity::new(Instant::now(), false).begin(false);
        let one_chunk =
            http_body_util::BodyExt::map_err(http_body_util::Full::new(chunk.clone()), |never| {
                match never {}
            });
        let body = ResponseBody::new(one_chunk);
        let mut sent = stalls.watch(TrackedBody::new(body, in_flight));
        assert_eq!(sent.size_hint().lower(), chunk.len() as u64);
        let mut got = Vec::new();
        while let Poll::Ready(Some(Ok(f))) = poll(&mut sent) {
            let data = f.into_data().unwrap();
            assert!(data.len() <= PIECE, "{} bytes at once", data.len());
            got.extend_from_slice(&data);
            // As long as one piece takes to drain: no cut.
            for _ in 0..LOOKS_PER_TIMEOUT {
                assert_eq!(stalls.look(), (0, 0));
            }
            if got.len() < chunk.len() {
                assert!(!sent.is_end_stream());
                assert_eq!(sent.size_hint().lower(), (chunk.len() - got.len()) as u64);
            }
        }
        assert_eq!(&got[..], &chunk[..]);
    }

    #[test]
    fn only_bodies_left_with_a_frame_for_a_timeout_are_cut() {
        let stalls = Stalls::new();
        // Never polled (the window was shut from the start): cut on the
        // look after LOOKS_PER_TIMEOUT full intervals.
        let (mut never, _) = watched(&stalls);
        // Waiting on the upstream: never cut, however long.
        let (mut upstream, _) = watched(&stalls);
        assert!(poll(&mut upstream).is_pending());
        // Left holding a frame just after the first look: cut one look
        // after the never-polled body.
        let (mut held, open) = watched(&stalls);
        assert_eq!(stalls.look(), (0, 0));
        open.store(true, Ordering::Relaxed);
        assert!(matches!(poll(&mut held), Poll::Ready(Some(Ok(_)))));
        assert_eq!(stalls.look(), (0, 0));
        assert_eq!(stalls.look(), (1, 0), "the never-polled body");
        assert_eq!(stalls.look(), (1, 0), "the body left holding a frame");
        for _ in 0..10 {
            assert_eq!(stalls.look(), (0, 0), "a body waiting on the upstream");
        }
        for cut in [&mut never, &mut held] {
            assert!(matches!(poll(cut), Poll::Ready(Some(Err(_)))));
        }
        assert!(poll(&mut upstream).is_pending());
    }
}
