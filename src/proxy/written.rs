//! HTTP/2: a response body's failure held back until the connection has written what its stream had queued, so the reset cannot drop the head.
//!
//! hyper resets an HTTP/2 stream (`INTERNAL_ERROR`) as soon as its response
//! body fails, and h2's reset drops every frame still queued for the
//! stream: the `HEADERS` of a response whose upstream broke just after its
//! head was handed on, and `DATA` hyper had already accepted. The client
//! got a bare reset, or fewer bytes than the access log said, for a
//! response logged `200`. The connection writes those frames from a task
//! of its own (the driver's), so holding the failure back one poll, as for
//! HTTP/1.1 (`upstream/endpoint/early.rs`), races it.
//!
//! A body that fails takes a ticket ([`Written::ask`]) and wakes the
//! driver; the failure goes on to hyper once a poll of the connection
//! begun after the ticket was taken has written out everything h2 could
//! send and flushed it ([`Written::poll_conn`]): h2 queued the stream's
//! frames before the body was polled, and such a poll takes all of them
//! that flow control lets go (all of a stream's bytes that hyper sent with
//! room in its window). The client sees the head and those bytes, then the
//! reset, as from Envoy or nginx. A connection that cannot write waits on
//! its socket (cut after `send_timeout` by `ClientIo`), one that ends lets
//! every failure go. A socket that other streams keep full may never see
//! a poll end flushed while it moves, so a ticket also goes after as long
//! as a stalled stream waits ([`Written::look`], on the stall looks: 1 to
//! 1.5 times `send_timeout`): the reset then drops what the stream still
//! had queued, as the stall cut does. Healthy streams never take a
//! ticket; the driver's poll then costs one atomic load.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::proxy::conn::Activity;
use crate::proxy::stall::LOOKS_PER_TIMEOUT;

/// One HTTP/2 client connection's tickets.
#[derive(Default)]
pub struct Written {
    /// The last ticket taken.
    asked: AtomicU64,
    /// The last ticket a poll of the connection begun after it took it to
    /// a complete write: every frame queued before it that could go, went.
    written: AtomicU64,
    /// The connection is no longer polled: nothing more will be written.
    closed: AtomicBool,
    wakers: Mutex<Wakers>,
}

#[derive(Default)]
struct Wakers {
    /// The connection driver's task.
    driver: Option<Waker>,
    /// The bodies waiting, each with its ticket: one per failed stream
    /// (at most one per stream the connection may have open), dropped
    /// with the body ([`Written::forget`]).
    bodies: Vec<(u64, Waker)>,
    /// The last ticket taken at each of the last [`LOOKS_PER_TIMEOUT`]
    /// looks, oldest first ([`Written::look`]).
    looked: VecDeque<u64>,
}

impl Written {
    fn wakers(&self) -> MutexGuard<'_, Wakers> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The driver's task, woken when a ticket is taken.
    pub fn driver_is(&self, waker: &Waker) {
        let mut w = self.wakers();
        if !w.driver.as_ref().is_some_and(|d| d.will_wake(waker)) {
            w.driver = Some(waker.clone());
        }
    }

    /// Poll the connection `conn`: once a ticket waits, a poll that writes
    /// all it can and flushes it ([`Activity::all_written`]) sees through
    /// every ticket taken before it began, and wakes their bodies.
    pub fn poll_conn<F: Future>(
        &self,
        conn: Pin<&mut F>,
        cx: &mut Context<'_>,
        activity: &Activity,
    ) -> Poll<F::Output> {
        // Acquire: a ticket seen here was taken after its stream's frames
        // were queued, so this poll's write finds them.
        let asked = self.asked.load(Ordering::Acquire);
        if asked == self.written.load(Ordering::Relaxed) {
            return conn.poll(cx);
        }
        self.driver_is(cx.waker());
        activity.not_flushed();
        let polled = conn.poll(cx);
        if activity.all_written() {
            self.see_through(asked);
        }
        polled
    }

    /// Every ticket up to `ticket` is seen through: their bodies are woken.
    /// Returns how many bodies were.
    fn see_through(&self, ticket: u64) -> usize {
        self.written.fetch_max(ticket, Ordering::AcqRel);
        let due: Vec<Waker> = {
            let mut w = self.wakers();
            let mut due = Vec::new();
            w.bodies.retain(|(t, body)| {
                let go = *t <= ticket;
                if go {
                    due.push(body.clone());
                }
                !go
            });
            due
        };
        let n = due.len();
        due.into_iter().for_each(Waker::wake);
        n
    }

    /// The driver's stall look (every half `send_timeout`): tickets taken
    /// before the look [`LOOKS_PER_TIMEOUT`] looks ago, so waiting for at
    /// least `send_timeout`, are seen through as a stalled stream is cut.
    /// Returns how many waiting bodies that let go.
    pub fn look(&self) -> usize {
        let asked = self.asked.load(Ordering::Acquire);
        let due = {
            let mut w = self.wakers();
            w.looked.push_back(asked);
            match w.looked.len() > LOOKS_PER_TIMEOUT as usize {
                true => w.looked.pop_front(),
                false => None,
            }
        };
        match due {
            Some(due) if due > self.written.load(Ordering::Acquire) => self.see_through(due),
            _ => 0,
        }
    }

    /// The connection is no longer polled: every ticket is seen through.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let bodies = std::mem::take(&mut self.wakers().bodies);
        bodies.into_iter().for_each(|(_, body)| body.wake());
    }

    /// The body holding `ticket` is gone: its waker with it.
    pub fn forget(&self, ticket: u64) {
        self.wakers().bodies.retain(|(t, _)| *t != ticket);
    }

    /// A body failed: its ticket, for [`Written::poll_written`]. The
    /// driver is woken to poll the connection.
    pub fn ask(&self) -> u64 {
        let ticket = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(driver) = &self.wakers().driver {
            driver.wake_by_ref();
        }
        ticket
    }

    /// Ready once what was queued before `ticket` was taken is written
    /// (or the connection is gone).
    pub fn poll_written(&self, ticket: u64, cx: &mut Context<'_>) -> Poll<()> {
        if self.seen_through(ticket) {
            return Poll::Ready(());
        }
        {
            let mut w = self.wakers();
            match w.bodies.iter_mut().find(|(t, _)| *t == ticket) {
                Some((_, body)) if body.will_wake(cx.waker()) => {}
                Some((_, body)) => body.clone_from(cx.waker()),
                None => w.bodies.push((ticket, cx.waker().clone())),
            }
        }
        // Again, now that a wake-up cannot be missed.
        match self.seen_through(ticket) {
            true => {
                self.forget(ticket);
                Poll::Ready(())
            }
            false => Poll::Pending,
        }
    }

    fn seen_through(&self, ticket: u64) -> bool {
        self.written.load(Ordering::Acquire) >= ticket || self.closed.load(Ordering::Acquire)
    }
}

/// The connection's future as the driver polls it: through
/// [`Written::poll_conn`] on HTTP/2.
pub struct Polled<'a, F> {
    pub conn: Pin<&'a mut F>,
    pub written: Option<&'a Written>,
    pub activity: &'a Activity,
}

impl<F: Future> Future for Polled<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        match this.written {
            Some(w) => w.poll_conn(this.conn.as_mut(), cx, this.activity),
            None => this.conn.as_mut().poll(cx),
        }
    }
}

/// Sees every ticket through when the driver stops polling its connection.
pub struct CloseOnDrop<'a>(pub Option<&'a Written>);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.0 {
            w.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;
    use std::time::Instant;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    /// One poll of the connection through `w`, whose writes end flushed
    /// (`flushed`) after `during` ran.
    fn poll_conn(w: &Written, a: &Activity, flushed: bool, during: impl FnOnce()) {
        let mut during = Some(during);
        let mut conn = std::future::poll_fn(|_| {
            (during.take().unwrap())();
            a.flushed(flushed);
            Poll::<()>::Pending
        });
        let mut cx = Context::from_waker(Waker::noop());
        assert!(w.poll_conn(Pin::new(&mut conn), &mut cx, a).is_pending());
    }

    /// A ticket is seen through by a poll of the connection begun after it
    /// was taken that wrote all it had and flushed: not by one that began
    /// before, nor by one whose writes wait on the socket.
    #[test]
    fn a_ticket_waits_for_a_complete_write_begun_after_it() {
        let w = Written::default();
        let a = Activity::new(Instant::now(), false);
        let (driver, driver_waker) = counter();
        w.driver_is(&driver_waker);
        let (body, body_waker) = counter();
        let mut cx = Context::from_waker(&body_waker);

        let first = w.ask();
        assert_eq!(driver.0.load(Ordering::Relaxed), 1, "the driver is woken");
        assert!(w.poll_written(first, &mut cx).is_pending());
        poll_conn(&w, &a, false, || {});
        assert!(w.poll_written(first, &mut cx).is_pending(), "still writing");
        assert_eq!(body.0.load(Ordering::Relaxed), 0);

        let mut second = 0;
        poll_conn(&w, &a, true, || second = w.ask());
        assert_eq!(body.0.load(Ordering::Relaxed), 1, "the body is woken");
        assert!(w.poll_written(first, &mut cx).is_ready());
        assert!(
            w.poll_written(second, &mut cx).is_pending(),
            "taken while the poll ran"
        );
        poll_conn(&w, &a, true, || {});
        assert!(w.poll_written(second, &mut cx).is_ready());

        let third = w.ask();
        assert!(w.poll_written(third, &mut cx).is_pending());
        w.close();
        assert!(
            w.poll_written(third, &mut cx).is_ready(),
            "the connection is gone"
        );
    }

    /// A ticket no poll sees through (other streams keep the socket full)
    /// goes at the look [`LOOKS_PER_TIMEOUT`] looks after the first one
    /// after it was taken, as a stalled stream is cut; a body dropped while
    /// it waits leaves no waker behind.
    #[test]
    fn a_ticket_goes_after_as_many_looks_as_a_stalled_stream() {
        let w = Written::default();
        let a = Activity::new(Instant::now(), false);
        let (body, body_waker) = counter();
        let mut cx = Context::from_waker(&body_waker);
        let ticket = w.ask();
        assert!(w.poll_written(ticket, &mut cx).is_pending());
        let gone = w.ask();
        assert!(w.poll_written(gone, &mut cx).is_pending());
        assert_eq!(w.wakers().bodies.len(), 2);
        w.forget(gone);
        assert_eq!(w.wakers().bodies.len(), 1, "the dropped body's waker");
        for _ in 0..LOOKS_PER_TIMEOUT {
            assert_eq!(w.look(), 0);
            poll_conn(&w, &a, false, || {});
            assert!(w.poll_written(ticket, &mut cx).is_pending());
        }
        let later = w.ask();
        assert!(w.poll_written(later, &mut cx).is_pending());
        assert_eq!(w.look(), 1, "the first ticket, with its body");
        assert_eq!(body.0.load(Ordering::Relaxed), 1);
        assert!(w.poll_written(ticket, &mut cx).is_ready());
        assert!(w.poll_written(later, &mut cx).is_pending(), "taken since");
        for _ in 0..LOOKS_PER_TIMEOUT {
            assert!(w.poll_written(later, &mut cx).is_pending());
            w.look();
        }
        assert!(w.poll_written(later, &mut cx).is_ready());
        assert!(w.wakers().bodies.is_empty());
    }
}
