//! A listener's TLS 1.2 session-ID cache whose sessions expire: one older than its lifetime is absent.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::server::{ServerSessionMemoryCache, StoresServerSessions};

/// How long a TLS 1.2 session ID resumes after its full handshake: as long
/// as the listener's session tickets live (rustls's ticketer keeps each key
/// 6 hours and the one before it 6 more). rustls's own cache keeps a
/// session until newer ones push it out and checks no age when resuming,
/// so on a quiet listener a session ID resumed days later with the same
/// master secret; RFC 5246 F.1.4 allows at most 24 hours.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Where "now" comes from: the monotonic clock, or a test's.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The monotonic clock: a wall-clock step does not age or revive sessions.
#[derive(Debug, Default)]
pub struct Monotonic;

impl Clock for Monotonic {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// rustls's bounded memory cache, each value stored behind the time it was
/// put (8 bytes: nanoseconds since the cache was made). `get` and `take`
/// answer a session at least [`LIFETIME`] old (or the lifetime given) as
/// absent and remove it. A resumption does not store its session again, so
/// a session's age runs from its full handshake.
pub struct ExpiringSessions<C: Clock = Monotonic> {
    inner: Arc<ServerSessionMemoryCache>,
    lifetime: Duration,
    born: Instant,
    clock: C,
}

impl ExpiringSessions {
    /// A cache of `size` sessions, each resumed for `lifetime`.
    pub fn new(size: usize, lifetime: Duration) -> Self {
        Self::with_clock(size, lifetime, Monotonic)
    }
}

impl<C: Clock> ExpiringSessions<C> {
    pub(crate) fn with_clock(size: usize, lifetime: Duration, clock: C) -> Self {
        Self {
            inner: ServerSessionMemoryCache::new(size),
            lifetime,
            born: clock.now(),
            clock,
        }
    }

    /// How long after the cache was made it is now.
    fn since_born(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.born)
    }

    /// The session behind its stamp, if it is younger than the lifetime.
    fn fresh(&self, stored: Vec<u8>) -> Option<Vec<u8>> {
        let (stamp, session) = stored.split_first_chunk::<8>()?;
        let put = Duration::from_nanos(u64::from_be_bytes(*stamp));
        let age = self.since_born().saturating_sub(put);
        (age < self.lifetime).then(|| session.to_vec())
    }
}

impl<C: Clock> StoresServerSessions for ExpiringSessions<C> {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        // u64 nanoseconds last 584 years from the cache's making.
        let stamp = u64::try_from(self.since_born().as_nanos()).unwrap_or(u64::MAX);
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&stamp.to_be_bytes());
        stored.extend_from_slice(&value);
        self.inner.put(key, stored)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let stored = self.inner.get(key)?;
        let session = self.fresh(stored);
        if session.is_none() {
            // Gone for good: its master secret is not kept past its use.
            self.inner.take(key);
        }
        session
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(key).and_then(|stored| self.fresh(stored))
    }

    fn can_cache(&self) -> bool {
        true
    }
}

impl<C: Clock> fmt::Debug for ExpiringSessions<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpiringSessions")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
