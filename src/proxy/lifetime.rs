//! When an open connection must end: `max_connection_lifetime` after a rotation, or when its rules no longer admit it.
//!
//! A connection keeps the certificate (and client-auth rules) it shook
//! hands with. With `max_connection_lifetime` set, one older than the limit
//! is ended once the listener's material has rotated since it was accepted;
//! before any rotation an old connection is left alone. A change of what
//! the listener admits (client auth, `allow_from`, PROXY protocol, trusted
//! proxies) has the connection checked again under the new rules
//! ([`crate::proxy::readmit`]), whatever its age: one they no longer admit
//! ends (a client taken out of the rules must not keep being served on a
//! connection it opened before), one they still admit is kept (a CRL
//! re-issued with nobody newly revoked must not close every mTLS
//! connection). A change that cannot be checked again exactly ends them
//! all (nginx's reload closes old workers' connections, Envoy drains a
//! changed filter chain). The same bounds hold for a WebSocket tunnel that
//! came out of the connection: its client was admitted by the same
//! handshake. (A listener a reload removes closes all of its connections:
//! `Listener::closing`.)
//!
//! Waiting for those signals costs nothing per request: the driver and
//! the tunnel wrap them (and `closing`) in [`Woken`], polled only when its
//! own wake-up came; the check runs only when the rules changed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

/// One connection's bound: cheap to clone into the tunnels it opens.
#[derive(Clone)]
pub struct Lifetime {
    /// When the limit is reached (`None`: no limit).
    until: Option<Instant>,
    /// The listener's material generation when the connection was accepted.
    generation: u64,
    rotated: watch::Receiver<u64>,
    /// The listener's admission generation when the connection was
    /// accepted (or last checked again and kept).
    admitted: u64,
    readmitted: watch::Receiver<Admissions>,
    /// Whether the connection is admitted under the listener's rules as
    /// stored now ([`crate::proxy::readmit::Admitted::still`]).
    recheck: Recheck,
}

/// Checks a connection's admission again, at the admission generation
/// given; shared by its tunnels.
pub type Recheck = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// A listener's admission generations: what its connections watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admissions {
    /// Bumped at every change of what the listener admits.
    pub generation: u64,
    /// The generation of the last change its connections cannot be
    /// checked against again (a client-auth mode, PROXY protocol, trusted
    /// proxies, the names that pick a `certs` entry): every connection
    /// admitted before it ends, as at a removal.
    pub closes_all: u64,
}

/// Why a connection's [`Lifetime`] is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// Past `max_connection_lifetime`, made with rotated-out material.
    Lifetime,
    /// Admitted under rules a reload (or the API, or new CA/CRL material)
    /// changed, which checked again no longer admit it: revoked.
    Revoked,
    /// A change its admission cannot be checked against again
    /// ([`Admissions::closes_all`]): it ends as at a listener's removal,
    /// whether the new rules would admit it or not.
    ClosesAll,
}

impl Over {
    /// The `reason` logged when a connection or tunnel is closed for it.
    pub fn reason(self) -> &'static str {
        match self {
            Over::Lifetime => "max_connection_lifetime",
            Over::Revoked | Over::ClosesAll => "admission_rules_changed",
        }
    }
}

impl Lifetime {
    /// A connection `accepted` then, made with material `generation` (read
    /// before its handshake) of the listener's `generations`, and admitted
    /// under rules `admitted` (read before anything was checked) of its
    /// `admissions`, which `recheck` checks it against again when they change.
    pub fn new(
        accepted: Instant,
        max: Option<Duration>,
        generation: u64,
        generations: &watch::Sender<u64>,
        admitted: u64,
        admissions: &watch::Sender<Admissions>,
        recheck: Recheck,
    ) -> Lifetime {
        Lifetime {
            until: max.map(|m| accepted + m),
            generation,
            rotated: generations.subscribe(),
            admitted,
            readmitted: admissions.subscribe(),
            recheck,
        }
    }

    /// Ends when the listener's admission rules changed since the
    /// connection was accepted and no longer admit it ([`Over::Revoked`])
    /// or cannot be checked again ([`Over::ClosesAll`]), or when it is past
    /// its lifetime and made with rotated-out material (or its listener is
    /// gone); never without either. The first of [`Lifetime::overs`].
    pub async fn over(self) -> Over {
        let overs = self.overs();
        futures_util::pin_mut!(overs);
        match overs.next().await {
            Some(over) => over,
            None => std::future::pending().await,
        }
    }

    /// Each reason the connection's lifetime is over, as it comes: the
    /// first, then, after [`Over::Lifetime`], the rules' end if one comes
    /// while the close waits on the client (an HTTP/2 client's PING
    /// answer): a revoked client's new streams are refused at once, also
    /// on a connection already closing for its lifetime. Ends after a
    /// rules' end (after [`Over::ClosesAll`] none can be checked again).
    pub fn overs(self) -> impl Stream<Item = Over> {
        let Lifetime {
            until,
            generation,
            mut rotated,
            admitted,
            readmitted,
            recheck,
        } = self;
        let rules = Rules {
            admitted,
            readmitted,
            recheck,
        };
        // The lifetime's half, once: a graceful end needs no second.
        let past_lifetime = async move {
            let Some(until) = until else {
                // Without a lifetime (the default) the rules are all
                // there is to wait for.
                return std::future::pending().await;
            };
            tokio::time::sleep_until(until.into()).await;
            let _ = rotated.wait_for(|g| *g != generation).await;
        };
        let first = Some(Box::pin(past_lifetime));
        futures_util::stream::unfold(
            (rules, first, false),
            |(mut rules, first, done)| async move {
                if done {
                    return None;
                }
                let over = match first {
                    Some(mut past_lifetime) => tokio::select! {
                        biased;
                        over = rules.changed() => over,
                        () = past_lifetime.as_mut() => Over::Lifetime,
                    },
                    // Closing gracefully for its lifetime already: the rules
                    // still revoke it.
                    None => rules.changed().await,
                };
                // After a change that cannot be checked again, nothing can.
                Some((over, (rules, None, over != Over::Lifetime)))
            },
        )
    }
}

/// The rules half of a [`Lifetime`]: what it was admitted under, and how
/// to check it again.
struct Rules {
    admitted: u64,
    readmitted: watch::Receiver<Admissions>,
    recheck: Recheck,
}

impl Rules {
    /// The next change that ends the connection: one that cannot be
    /// checked again, or one its check fails. Nothing runs until the rules
    /// change; a change it is still admitted under is taken as its own.
    async fn changed(&mut self) -> Over {
        loop {
            let admitted = self.admitted;
            // Read before the rules are: they were stored before the
            // bump, so the check below sees this change's rules (or a
            // later one's, checked again at its own bump).
            let Ok(now) = self
                .readmitted
                .wait_for(|a| a.generation != admitted)
                .await
                .map(|a| *a)
            else {
                // A closed channel (the listener gone) is `closing`'s to end.
                return std::future::pending().await;
            };
            self.admitted = now.generation;
            if now.closes_all > admitted {
                return Over::ClosesAll;
            }
            if !(self.recheck)(now.generation) {
                return Over::Revoked;
            }
        }
    }
}

// A connection's driver selects its hyper connection against signals that
// almost never fire (the listener closing, the admission rules changing,
// `max_connection_lifetime`). `tokio::select!` polls every branch at every
// wake-up of the task, and a pending `watch` wait takes its `Notify`'s lock
// at every poll to refresh its waker: a cost per request that buys nothing.
// `Woken` gives the inner future a waker of its own, which marks it due
// and wakes the task; a poll that finds it not due (and the task's waker
// unchanged) is one atomic load.
pin_project_lite::pin_project! {
    /// A future polled only when its own wake-up came, not at every
    /// wake-up of the task it shares: on its first poll, after its own
    /// waker was woken, or when the task's waker changed.
    pub struct Woken<F> {
        #[pin]
        inner: F,
        flag: Arc<Flag>,
        // `flag` as a waker, made once.
        waker: Waker,
        // The task's waker `flag` wakes (a copy, compared without the lock).
        task: Option<Waker>,
    }
}

/// What the inner future's waker reaches.
struct Flag {
    /// Woken since the inner future was last polled.
    due: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Marked before the task is woken: the poll it causes sees it.
        self.due.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F> Woken<F> {
    pub fn new(inner: F) -> Woken<F> {
        let flag = Arc::new(Flag {
            due: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        Woken {
            inner,
            waker: Waker::from(flag.clone()),
            flag,
            task: None,
        }
    }
}

impl<F> Woken<F> {
    /// The inner future, to change it (a `Sleep` reset): polled at the
    /// next poll, whether its own wake-up came or not.
    pub fn inner_mut(self: Pin<&mut Self>) -> Pin<&mut F> {
        let this = self.project();
        this.flag.due.store(true, Ordering::Release);
        this.inner
    }

    /// The inner future, to read it.
    pub fn inner(&self) -> &F {
        &self.inner
    }
}

/// Whether a [`Woken`] is due a poll of its inner future; if so, marked
/// not due (before the poll: a wake-up during it marks it due again).
fn due(flag: &Flag, task: &mut Option<Waker>, cx: &Context<'_>) -> bool {
    let mut due = flag.due.load(Ordering::Acquire);
    if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
        // First poll, or moved to another task: wake that one from now
        // on, and poll in case a wake-up went to the old one.
        *flag.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        *task = Some(cx.waker().clone());
        due = true;
    }
    if due {
        flag.due.store(false, Ordering::Release);
    }
    due
}

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !due(this.flag, this.task, cx) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

/// A stream the same way: its next item looked for only when its own
/// wake-up came, or after an item (nothing waits for the next yet).
impl<S: Stream> Stream for Woken<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        if !due(this.flag, this.task, cx) {
            return Poll::Pending;
        }
        let next = this.inner.poll_next(&mut Context::from_waker(this.waker));
        if let Poll::Ready(Some(_)) = next {
            this.flag.due.store(true, Ordering::Release);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::watch;

    /// A change the connection is still admitted under keeps it, with the
    /// new generation; one it is not, or one that closes all, ends it.
    #[tokio::test]
    async fn a_change_ends_a_connection_only_when_its_check_fails() {
        let admissions = watch::Sender::new(Admissions::default());
        let generations = watch::Sender::new(0);
        let admits = Arc::new(AtomicBool::new(true));
        let checks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let recheck: Recheck = {
            let (admits, checks) = (admits.clone(), checks.clone());
            Arc::new(move |_| {
                checks.fetch_add(1, Ordering::Relaxed);
                admits.load(Ordering::Relaxed)
            })
        };
        let lifetime = |admitted| {
            Lifetime::new(
                Instant::now(),
                None,
                0,
                &generations,
                admitted,
                &admissions,
                recheck.clone(),
            )
        };
        let bump = |closes_all: bool| {
            admissions.send_modify(|a| {
                a.generation += 1;
                if closes_all {
                    a.closes_all = a.generation;
                }
            })
        };
        let over = lifetime(0).over();
        tokio::pin!(over);
        bump(false);
        bump(false);
        assert!(futures_util::poll!(over.as_mut()).is_pending(), "kept");
        assert_eq!(checks.load(Ordering::Relaxed), 1, "checked once, at 2");
        admits.store(false, Ordering::Relaxed);
        bump(false);
        assert_eq!(over.await, Over::Revoked);
        // A change that cannot be checked again ends it unchecked.
        admits.store(true, Ordering::Relaxed);
        let over = lifetime(3).over();
        bump(true);
        assert_eq!(over.await, Over::ClosesAll);
        assert_eq!(checks.load(Ordering::Relaxed), 2);
    }

    /// Past its lifetime (rotated), the connection's rules still end it:
    /// a failed check after `Lifetime` is the next item, and the last.
    #[tokio::test]
    async fn a_revocation_after_the_lifetime_is_the_next_reason() {
        let admissions = watch::Sender::new(Admissions::default());
        let generations = watch::Sender::new(0);
        let admits = Arc::new(AtomicBool::new(true));
        let recheck: Recheck = {
            let admits = admits.clone();
            Arc::new(move |_| admits.load(Ordering::Relaxed))
        };
        let lifetime = Lifetime::new(
            Instant::now(),
            Some(Duration::ZERO),
            0,
            &generations,
            0,
            &admissions,
            recheck,
        );
        let overs = Woken::new(lifetime.overs());
        tokio::pin!(overs);
        generations.send_replace(1);
        assert_eq!(overs.next().await, Some(Over::Lifetime));
        let bump = || admissions.send_modify(|a| a.generation += 1);
        bump();
        assert!(futures_util::poll!(overs.next()).is_pending(), "kept");
        admits.store(false, Ordering::Relaxed);
        bump();
        assert_eq!(overs.next().await, Some(Over::Revoked));
        assert_eq!(overs.next().await, None);
    }

    #[tokio::test]
    async fn ready_when_the_watch_changes_and_not_polled_before() {
        let (tx, mut rx) = watch::channel(0u64);
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = polls.clone();
        let mut changed = Box::pin(async move { rx.changed().await.is_ok() });
        let wait = Woken::new(std::future::poll_fn(move |cx| {
            counted.fetch_add(1, Ordering::Relaxed);
            changed.as_mut().poll(cx)
        }));
        tokio::pin!(wait);
        // Pending, registered; polls without its own wake-up skip it.
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        assert!(futures_util::poll!(wait.as_mut()).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        tx.send_replace(1);
        assert!(wait.await);
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
