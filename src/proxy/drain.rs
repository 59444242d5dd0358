//! The process's open client connections, counted so a shutdown can wait for them to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// Set as the runtime drops what is still running at the end of the drain
/// ([`crate::server::finish`]): see [`cutting`].
static CUTTING: AtomicBool = AtomicBool::new(false);

/// The end of the drain has begun: the runtime is dropping its tasks.
pub fn cut_all() {
    CUTTING.store(true, Ordering::SeqCst);
}

/// Whether the runtime is dropping its tasks at the end of the drain. A
/// request whose upstream connection's task went first (an HTTP/2
/// connection runs in a task of its own, which another worker may drop
/// before the request's) sees its upstream fail: it was cut by the
/// shutdown, and its line says `499` as the others' do, not `502`.
pub fn cutting() -> bool {
    CUTTING.load(Ordering::SeqCst)
}

/// Process-wide count of open client connections, so shutdown can wait for
/// them to finish.
pub struct Drain {
    open: AtomicUsize,
    idle: Notify,
    /// `runtime.shutdown_grace`: how long requests in flight may still run
    /// once their connection is closing, at shutdown or at
    /// `max_connection_lifetime`.
    grace: Duration,
    /// The process's shutdown signal (`true`: shutting down): it closes a
    /// connection before its first request at once, which its listener's
    /// `closing` does not (see `Driver::process`).
    shutdown: watch::Receiver<bool>,
}

impl Drain {
    pub fn new(grace: Duration, shutdown: watch::Receiver<bool>) -> Drain {
        Drain {
            open: AtomicUsize::new(0),
            idle: Notify::new(),
            grace,
            shutdown,
        }
    }

    /// The process's shutdown signal.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// One more connection open until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> DrainGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        DrainGuard(self.clone())
    }

    /// Wait until no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// A connection's place in the drain: dropped when it ends.
pub struct DrainGuard(Arc<Drain>);

impl DrainGuard {
    /// `runtime.shutdown_grace`.
    pub fn grace(&self) -> Duration {
        self.0.grace
    }

    /// The process's shutdown signal.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.0.shutdown()
    }
}

impl Drop for DrainGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
