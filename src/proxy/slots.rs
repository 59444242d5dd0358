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
//!
//! An edit of the upstream hands a server's slots to its successor's
//! endpoint at the same address ([`Slots::share`]), and the new limit is
//! applied to them when that upstream goes into service
//! ([`Slots::limit_to`]): the connections from before the edit (tunnels,
//! long streams) and after it count together, as they load one server.
//! A lower limit closes nothing: the slots of connections past it are
//! forgotten as those end, and until then no new connection is opened.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// No free connection slot within `connect_timeout`: the 504's cause.
#[derive(Debug, thiserror::Error)]
#[error("no connection to the server free within connect_timeout (max_connections_per_server)")]
pub struct ConnectionLimit;

/// The slots of one server, shared by the endpoints an edit replaces.
#[derive(Clone)]
pub struct Slots(Arc<Shared>);

struct Shared {
    sem: Arc<Semaphore>,
    /// Held under this lock: a slot given back and a change of limit do
    /// not interleave.
    state: Mutex<State>,
}

/// The semaphore's permits (free and held) are `limit + debt`.
struct State {
    /// The slots allowed; [`Semaphore::MAX_PERMITS`] when unlimited.
    limit: usize,
    /// Held slots past a lowered limit: forgotten as they are given back.
    debt: usize,
}

/// One connection's slot, given back when dropped.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().expect("slots lock");
        let Some(permit) = self.permit.take() else {
            return;
        };
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

/// `limit` as permits: 0 = unlimited.
fn permits(limit: usize) -> usize {
    if limit == 0 {
        Semaphore::MAX_PERMITS
    } else {
        limit.min(Semaphore::MAX_PERMITS)
    }
}

impl Default for Slots {
    fn default() -> Slots {
        Slots::new(0)
    }
}

impl Slots {
    /// `limit` slots; 0 = unlimited.
    pub fn new(limit: usize) -> Slots {
        let limit = permits(limit);
        Slots(Arc::new(Shared {
            sem: Arc::new(Semaphore::new(limit)),
            state: Mutex::new(State { limit, debt: 0 }),
        }))
    }

    /// These slots, for the endpoint that replaces this one's after an
    /// edit (same server, same address): one count for both.
    pub fn share(&self) -> Slots {
        self.clone()
    }

    /// Allow `limit` slots from now on (0 = unlimited). Raised: the new
    /// ones are free at once (waiters get them). Lowered: free slots past
    /// it go now, held ones as their connections close; none is cut.
    pub fn limit_to(&self, limit: usize) {
        let limit = permits(limit);
        let mut state = self.0.state.lock().expect("slots lock");
        if limit > state.limit {
            let more = limit - state.limit;
            let paid = more.min(state.debt);
            state.debt -= paid;
            self.0.sem.add_permits(more - paid);
        } else {
            let fewer = state.limit - limit;
            let gone = self.0.sem.forget_permits(fewer);
            state.debt += fewer - gone;
        }
        state.limit = limit;
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        Slot {
            permit: Some(permit),
            shared: self.0.clone(),
        }
    }

    /// A slot now, if one is free: `Err` when every slot is taken.
    pub fn try_take(&self) -> Result<Slot, ConnectionLimit> {
        self.0
            .sem
            .clone()
            .try_acquire_owned()
            .map(|p| self.slot(p))
            .map_err(|_| ConnectionLimit)
    }

    /// Take a slot, waiting at most `wait`.
    pub async fn acquire(&self, wait: Duration) -> Result<Slot, ConnectionLimit> {
        match tokio::time::timeout(wait, self.0.sem.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(self.slot(permit)),
            // The semaphore is never closed; a timeout is the limit.
            _ => Err(ConnectionLimit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_a_free_slot_then_gives_up() {
        let slots = Slots::new(1);
        let held = slots.acquire(Duration::ZERO).await.unwrap();
        assert!(slots.try_take().is_err());
        assert!(slots.acquire(Duration::from_millis(1)).await.is_err());
        drop(held);
        assert!(slots.acquire(Duration::ZERO).await.is_ok());
        let unlimited = Slots::new(0);
        let many: Vec<_> = (0..1000).map(|_| unlimited.try_take().unwrap()).collect();
        assert!(unlimited.acquire(Duration::ZERO).await.is_ok());
        drop(many);
    }

    /// Slots taken through one endpoint are missing from its successor's
    /// (the same server after an edit), and a raised limit frees more.
    #[test]
    fn a_successor_shares_the_slots_and_a_raised_limit_frees_more() {
        let old = Slots::new(2);
        let held = [old.try_take().unwrap(), old.try_take().unwrap()];
        let new = old.share();
        assert!(new.try_take().is_err(), "a slot past the limit");
        new.limit_to(3);
        let third = new.try_take().unwrap();
        assert!(new.try_take().is_err(), "a slot past the raised limit");
        drop(held);
        let two = [new.try_take().unwrap(), old.try_take().unwrap()];
        assert!(new.try_take().is_err());
        drop((third, two));
        new.limit_to(0);
        let many: Vec<_> = (0..100).map(|_| new.try_take().unwrap()).collect();
        drop(many);
    }

    /// A lowered limit closes nothing: the slots held past it are
    /// forgotten as their connections end, and only then is one free.
    /// Raised again before that, the slots still owed are kept.
    #[test]
    fn a_lowered_limit_waits_for_the_connections_past_it_to_end() {
        let slots = Slots::new(3);
        let mut held: Vec<_> = (0..3).map(|_| slots.try_take().unwrap()).collect();
        slots.limit_to(1);
        held.pop();
        assert!(slots.try_take().is_err(), "two held, limit 1");
        held.pop();
        assert!(slots.try_take().is_err(), "one held, limit 1");
        held.pop();
        let one = slots.try_take().unwrap();
        assert!(slots.try_take().is_err(), "a second past the limit 1");
        drop(one);

        // Limit 4 with 4 held, lowered to 1 (3 owed), raised to 2 (2 owed).
        slots.limit_to(4);
        let mut held: Vec<_> = (0..4).map(|_| slots.try_take().unwrap()).collect();
        slots.limit_to(1);
        slots.limit_to(2);
        held.pop();
        held.pop();
        assert!(slots.try_take().is_err(), "two held, limit 2");
        held.pop();
        let again = slots.try_take().unwrap();
        assert!(slots.try_take().is_err(), "two held, limit 2");
        drop((held, again));
        let two = [slots.try_take().unwrap(), slots.try_take().unwrap()];
        assert!(slots.try_take().is_err(), "a third past the limit 2");
        drop(two);
    }

    /// Unlimited, then limited below the slots held: those past it are
    /// owed as they would be from any higher limit.
    #[test]
    fn an_unlimited_server_limited_counts_the_connections_it_has() {
        let slots = Slots::new(0);
        let mut held: Vec<_> = (0..3).map(|_| slots.try_take().unwrap()).collect();
        slots.limit_to(2);
        assert!(slots.try_take().is_err(), "three held, limit 2");
        held.pop();
        assert!(slots.try_take().is_err(), "two held, limit 2");
        held.pop();
        let _one = slots.try_take().unwrap();
        assert!(slots.try_take().is_err());
    }
}
