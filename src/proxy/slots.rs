//! Connection slots per upstream server: `max_connections_per_server`.
//!
//! An upstream connection holds one slot of its server (endpoint) from
//! before its TCP connect until it closes (also while it carries an
//! upgraded tunnel). A request that needs a new connection while every
//! slot is taken waits, like HAProxy's server `maxconn` queue bounded by
//! `timeout connect`: up to `connect_timeout`, during which an idle pooled
//! connection handed back by another request serves it first (the pool's
//! side of that wait is in [`crate::upstream::endpoint`]). The slots outlive
//! pool drains (`drain_on_rotation`), because old connections stay open
//! until their requests end. An active check that finds every slot taken
//! opens one connection past them, held by a slot of its own
//! ([`crate::upstream::endpoint::Endpoint::checkout`]).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// No free connection slot within `connect_timeout`: the 504's cause.
#[derive(Debug, thiserror::Error)]
#[error("no connection to the server free within connect_timeout (max_connections_per_server)")]
pub struct ConnectionLimit;

/// The slots of one server; `None` = unlimited.
#[derive(Clone, Default)]
pub struct Slots(Option<Arc<Semaphore>>);

impl Slots {
    /// `limit` slots; 0 = unlimited.
    pub fn new(limit: usize) -> Slots {
        if limit == 0 {
            return Slots(None);
        }
        Slots(Some(Arc::new(Semaphore::new(
            limit.min(Semaphore::MAX_PERMITS),
        ))))
    }

    /// A slot now, if one is free: `Ok(None)` when unlimited, `Err` when
    /// every slot is taken.
    pub fn try_take(&self) -> Result<Option<OwnedSemaphorePermit>, ConnectionLimit> {
        match &self.0 {
            None => Ok(None),
            Some(sem) => sem
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| ConnectionLimit),
        }
    }

    /// Whether a slot is free now (always, when unlimited).
    pub fn free(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|sem| sem.available_permits() > 0)
    }

    /// Take a slot, waiting until `deadline` at most. `Ok(None)` when
    /// unlimited. An instant, not a duration: a wait bounded by the
    /// request's deadline ends on the very timer tick `request_timeout`
    /// does, so the request gets the connection limit's answer rather than
    /// the outer timeout's (a `timeout` blamed on the endpoint); a duration
    /// counted from a moment later could end a tick after it.
    pub async fn acquire(
        &self,
        deadline: Instant,
    ) -> Result<Option<OwnedSemaphorePermit>, ConnectionLimit> {
        let Some(sem) = &self.0 else {
            return Ok(None);
        };
        match tokio::time::timeout_at(deadline, sem.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            // The semaphore is never closed; a timeout is the limit.
            _ => Err(ConnectionLimit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_for_a_free_slot_then_gives_up() {
        let slots = Slots::new(1);
        let held = slots.acquire(Instant::now()).await.unwrap();
        assert!(held.is_some());
        assert!(slots.try_take().is_err());
        let soon = Instant::now() + Duration::from_millis(1);
        assert!(slots.acquire(soon).await.is_err());
        drop(held);
        assert!(slots.acquire(Instant::now()).await.unwrap().is_some());
        let unlimited = Slots::new(0);
        assert!(unlimited.acquire(Instant::now()).await.unwrap().is_none());
        assert!(unlimited.try_take().unwrap().is_none());
    }
}
