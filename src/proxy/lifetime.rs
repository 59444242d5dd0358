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

/// Checks a connection's admission again; shared by its tunnels.
pub type Recheck = Arc<dyn Fn() -> bool + Send + Sync>;

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
    /// gone); never without either.
    pub async fn over(mut self) -> Over {
        let mut admitted = self.admitted;
        let mut readmitted = self.readmitted;
        let recheck = self.recheck;
        let rules_changed = async move {
            loop {
                // Read before the rules are: they were stored before the
                // bump, so the check below sees this change's rules (or a
                // later one's, checked again at its own bump).
                let Ok(now) = readmitted
                    .wait_for(|a| a.generation != admitted)
                    .await
                    .map(|a| *a)
                else {
                    // A closed channel (the listener gone) is `closing`'s to end.
                    return std::future::pending::<Over>().await;
                };
                if now.closes_all > admitted {
                    return Over::ClosesAll;
                }
                if !recheck() {
                    return Over::Revoked;
                }
                admitted = now.generation;
            }
        };
        // Without a lifetime (the default) the rules are all there is to
        // wait for. (The driver and the tunnel poll this only when its own
        // wake-up came: `Woken`.)
        let Some(until) = self.until else {
            return rules_changed.await;
        };
        let past_lifetime = async move {
            tokio::time::sleep_until(until.into()).await;
            let generation = self.generation;
            let _ = self.rotated.wait_for(|g| *g != generation).await;
        };
        tokio::select! {
            biased;
            over = rules_changed => over,
            () = past_lifetime => Over::Lifetime,
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

impl<F: Future> Woken<F> {
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

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut due = this.flag.due.load(Ordering::Acquire);
        if !this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            // First poll, or moved to another task: wake that one from now
            // on, and poll in case a wake-up went to the old one.
            *this.flag.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            *this.task = Some(cx.waker().clone());
            due = true;
        }
        if !due {
            return Poll::Pending;
        }
        // Cleared before the poll: a wake-up during it marks it due again.
        this.flag.due.store(false, Ordering::Release);
        this.inner.poll(&mut Context::from_waker(this.waker))
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
            Arc::new(move || {
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
