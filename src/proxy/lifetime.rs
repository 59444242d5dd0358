//! `max_connection_lifetime`: when a connection made with rotated-out material must end.
//!
//! A connection keeps the certificate (and client-auth rules) it shook
//! hands with. With `max_connection_lifetime` set, one older than the limit
//! is ended once the listener's material has rotated since it was accepted;
//! before any rotation an old connection is left alone. The same bound
//! holds for a WebSocket tunnel that came out of the connection: its
//! client was admitted by the same handshake. (A listener a reload removes
//! closes all of its connections: `Listener::closing`.)

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
}

impl Lifetime {
    /// A connection `accepted` then, made with material `generation` (read
    /// before its handshake) of the listener's `generations`.
    pub fn new(
        accepted: Instant,
        max: Option<Duration>,
        generation: u64,
        generations: &watch::Sender<u64>,
    ) -> Lifetime {
        Lifetime {
            until: max.map(|m| accepted + m),
            generation,
            rotated: generations.subscribe(),
        }
    }

    /// Ends when the connection is past its lifetime and made with
    /// rotated-out material (or its listener is gone); never without a
    /// limit.
    pub async fn over(mut self) {
        let Some(until) = self.until else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(until.into()).await;
        let generation = self.generation;
        let _ = self.rotated.wait_for(|g| *g != generation).await;
    }
}
