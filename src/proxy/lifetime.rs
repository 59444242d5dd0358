//! When an open connection must end: `max_connection_lifetime` after a rotation, or at once when its rules changed.
//!
//! A connection keeps the certificate (and client-auth rules) it shook
//! hands with. With `max_connection_lifetime` set, one older than the limit
//! is ended once the listener's material has rotated since it was accepted;
//! before any rotation an old connection is left alone. A change of what
//! the listener admits (client auth, `allow_from`, PROXY protocol, trusted
//! proxies) ends it whatever its age: a client taken out of the rules must
//! not keep being served on a connection it opened before (nginx's reload
//! closes old workers' connections, Envoy drains a changed filter chain).
//! The same bounds hold for a WebSocket tunnel that came out of the
//! connection: its client was admitted by the same handshake. (A listener
//! a reload removes closes all of its connections: `Listener::closing`.)

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
    /// The listener's admission generation when the connection was accepted.
    admitted: u64,
    readmitted: watch::Receiver<u64>,
}

/// Why a connection's [`Lifetime`] is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    /// Past `max_connection_lifetime`, made with rotated-out material.
    Lifetime,
    /// Admitted under rules a reload (or the API, or new CA/CRL material) changed.
    RulesChanged,
}

impl Over {
    /// The `reason` logged when a connection or tunnel is closed for it.
    pub fn reason(self) -> &'static str {
        match self {
            Over::Lifetime => "max_connection_lifetime",
            Over::RulesChanged => "admission_rules_changed",
        }
    }
}

impl Lifetime {
    /// A connection `accepted` then, made with material `generation` (read
    /// before its handshake) of the listener's `generations`, and admitted
    /// under rules `admitted` (read before anything was checked) of its
    /// `admissions`.
    pub fn new(
        accepted: Instant,
        max: Option<Duration>,
        generation: u64,
        generations: &watch::Sender<u64>,
        admitted: u64,
        admissions: &watch::Sender<u64>,
    ) -> Lifetime {
        Lifetime {
            until: max.map(|m| accepted + m),
            generation,
            rotated: generations.subscribe(),
            admitted,
            readmitted: admissions.subscribe(),
        }
    }

    /// Ends when the listener's admission rules changed since the
    /// connection was accepted, or when it is past its lifetime and made
    /// with rotated-out material (or its listener is gone); never without
    /// either.
    pub async fn over(mut self) -> Over {
        let admitted = self.admitted;
        let mut readmitted = self.readmitted;
        let rules_changed = async move {
            // A closed channel (the listener gone) is `closing`'s to end.
            if readmitted.wait_for(|g| *g != admitted).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        // Polled at every wake-up of its connection's task: without a
        // lifetime (the default) the rules are all there is to wait for.
        let Some(until) = self.until else {
            rules_changed.await;
            return Over::RulesChanged;
        };
        let past_lifetime = async move {
            tokio::time::sleep_until(until.into()).await;
            let generation = self.generation;
            let _ = self.rotated.wait_for(|g| *g != generation).await;
        };
        tokio::select! {
            biased;
            () = rules_changed => Over::RulesChanged,
            () = past_lifetime => Over::Lifetime,
        }
    }
}
