//! Connection slots per upstream server: `max_connections_per_server`.
//!
//! An upstream connection holds one slot of its server from before its TCP
//! connect until it closes (also while it carries an upgraded tunnel). A
//! request that needs a new connection while every slot is taken waits,
//! like HAProxy's server `maxconn` queue bounded by `timeout connect`: up
//! to `connect_timeout`, during which an idle pooled connection handed back
//! by another request serves it first. The slots outlive pool swaps
//! (`drain_on_rotation`), because old connections stay open until their
//! requests end.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::Authority;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// No free connection slot within `connect_timeout`: the 504's cause.
#[derive(Debug, thiserror::Error)]
#[error("no connection to the server free within connect_timeout (max_connections_per_server)")]
pub struct ConnectionLimit;

/// One server's slots.
type ServerSlots = (Authority, Arc<Semaphore>);

/// The slots of every server of one upstream; `None` = unlimited.
#[derive(Clone, Default)]
pub struct Slots(Option<Arc<[ServerSlots]>>);

impl Slots {
    /// `limit` slots for each of `servers`; 0 = unlimited.
    pub fn new<'a>(limit: usize, servers: impl Iterator<Item = &'a Authority>) -> Slots {
        if limit == 0 {
            return Slots(None);
        }
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Slots(Some(
            servers
                .map(|a| (a.clone(), Arc::new(Semaphore::new(limit))))
                .collect(),
        ))
    }

    /// Take a slot of the server `uri` names, waiting at most `wait`.
    /// `Ok(None)` when unlimited (or for a server not configured, which the
    /// forwarder never asks for).
    pub async fn acquire(
        &self,
        uri: &Uri,
        wait: Duration,
    ) -> Result<Option<OwnedSemaphorePermit>, ConnectionLimit> {
        let Some(slots) = &self.0 else {
            return Ok(None);
        };
        let Some((_, sem)) = slots.iter().find(|(a, _)| Some(a) == uri.authority()) else {
            return Ok(None);
        };
        match tokio::time::timeout(wait, sem.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
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
        let a: Authority = "127.0.0.1:1".parse().unwrap();
        let uri: Uri = "https://127.0.0.1:1".parse().unwrap();
        let slots = Slots::new(1, [a.clone()].iter());
        let held = slots.acquire(&uri, Duration::ZERO).await.unwrap();
        assert!(held.is_some());
        assert!(slots.acquire(&uri, Duration::from_millis(1)).await.is_err());
        drop(held);
        assert!(slots.acquire(&uri, Duration::ZERO).await.unwrap().is_some());
        let unlimited = Slots::new(0, [a].iter());
        assert!(
            unlimited
                .acquire(&uri, Duration::ZERO)
                .await
                .unwrap()
                .is_none()
        );
    }
}
