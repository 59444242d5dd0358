//! When a connection must end: `max_connection_lifetime` on rotated-out material, or its listener removed.
//!
//! A connection keeps the certificate (and client-auth rules) it shook
//! hands with. With `max_connection_lifetime` set, one older than the limit
//! is ended once the listener's material has rotated since it was accepted;
//! before any rotation an old connection is left alone. A listener a
//! reload removes (or binds elsewhere) ends all of its connections, with
//! or without a limit: they would go on with its old routes and rules
//! (nginx's old workers and Envoy's listener drain end them too). The same
//! bound holds for a WebSocket tunnel that came out of the connection: its
//! client was admitted by the same handshake.

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
    /// The listener's `retired`.
    retired: watch::Receiver<bool>,
}

/// Why a connection's time is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// Past `max_connection_lifetime`, made with rotated-out material.
    Rotated,
    /// Its listener was removed or bound elsewhere by a reload.
    Retired,
}

impl Over {
    /// The close's reason in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Over::Rotated => "max_connection_lifetime",
            Over::Retired => "listener_removed",
        }
    }
}

impl Lifetime {
    /// A connection `accepted` then, made with material `generation` (read
    /// before its handshake) of the listener's `generations`; `retired` is
    /// the listener's own end.
    pub fn new(
        accepted: Instant,
        max: Option<Duration>,
        generation: u64,
        generations: &watch::Sender<u64>,
        retired: &watch::Sender<bool>,
    ) -> Lifetime {
        Lifetime {
            until: max.map(|m| accepted + m),
            generation,
            rotated: generations.subscribe(),
            retired: retired.subscribe(),
        }
    }

    /// Ends when the connection is past its lifetime and made with
    /// rotated-out material, or when its listener is retired.
    pub async fn over(mut self) -> Over {
        let rotated = async {
            let Some(until) = self.until else {
                return std::future::pending().await;
            };
            tokio::time::sleep_until(until.into()).await;
            let generation = self.generation;
            let _ = self.rotated.wait_for(|g| *g != generation).await;
        };
        tokio::select! {
            () = rotated => Over::Rotated,
            // Never dropped while a connection holds its listener.
            _ = self.retired.wait_for(|r| *r) => Over::Retired,
        }
    }
}
