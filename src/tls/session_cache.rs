//! A listener's session expiry: its session-ID cache and its tickets answer nothing older than their lifetime.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

mod retry;
pub use retry::retrying;

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
/// a session's age runs from its full handshake. Each `put`, and each
/// ticket sealed ([`Expires`]), also removes up to [`SWEEP`] sessions past
/// the lifetime, oldest first: one never offered again stayed (its master
/// secret too) until newer ones pushed it out, on a quiet listener for as
/// long as the process ran.
pub struct ExpiringSessions<C: Clock = Monotonic> {
    inner: Arc<ServerSessionMemoryCache>,
    lifetime: Duration,
    born: Instant,
    clock: C,
    /// The keys in `inner`, oldest first, with their stamps. Every change
    /// to `inner` is made under this lock, stamps read under it too, so
    /// this is rustls's own queue, in its order: a session answered as
    /// absent goes from both, and a put into a full cache takes the oldest
    /// out itself (rustls never lets one go unseen). A queue kept beside
    /// rustls's drifted from it and let keys go that rustls still held.
    order: Mutex<VecDeque<(u64, Vec<u8>)>>,
    /// When the queue's oldest session reaches the lifetime (nanoseconds
    /// since the cache's making; `u64::MAX` with none), set under its
    /// lock: a handshake sealing a ticket compares to it alone.
    due: AtomicU64,
    size: usize,
}

/// The most sessions past their lifetime one `put` removes: more than it
/// adds, so any backlog goes, and bounded work per handshake.
const SWEEP: usize = 2;

impl ExpiringSessions {
    /// A cache of `size` sessions, each resumed for `lifetime`.
    pub fn new(size: usize, lifetime: Duration) -> Self {
        Self::with_clock(size, lifetime, Monotonic)
    }
}

/// The keys in the cache, oldest first, with their stamps.
type Order = VecDeque<(u64, Vec<u8>)>;

impl<C: Clock> ExpiringSessions<C> {
    pub(crate) fn with_clock(size: usize, lifetime: Duration, clock: C) -> Self {
        Self {
            inner: ServerSessionMemoryCache::new(size),
            lifetime,
            born: clock.now(),
            clock,
            order: Mutex::new(VecDeque::new()),
            due: AtomicU64::new(u64::MAX),
            size,
        }
    }

    /// The queue, locked: hold it while changing `inner`.
    fn order(&self) -> std::sync::MutexGuard<'_, Order> {
        self.order.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Take out of the cache up to [`SWEEP`] of the oldest sessions at
    /// least the lifetime old at `now` (nanoseconds since the cache's
    /// making).
    fn sweep(&self, order: &mut Order, now: u64) {
        let lifetime = u64::try_from(self.lifetime.as_nanos()).unwrap_or(u64::MAX);
        for _ in 0..SWEEP {
            match order.front() {
                Some((at, _)) if now.saturating_sub(*at) >= lifetime => {}
                _ => break,
            }
            if let Some((_, key)) = order.pop_front() {
                self.inner.take(&key);
            }
        }
    }

    /// Note when the queue's oldest session reaches the lifetime: call
    /// after each change to `order`, its lock still held.
    fn note_due(&self, order: &Order) {
        let lifetime = u64::try_from(self.lifetime.as_nanos()).unwrap_or(u64::MAX);
        let due = order
            .front()
            .map_or(u64::MAX, |(at, _)| at.saturating_add(lifetime));
        self.due.store(due, Ordering::Relaxed);
    }

    /// Take `key` out of the cache and the queue, under the queue's lock.
    fn remove(&self, order: &mut Order, key: &[u8]) -> Option<Vec<u8>> {
        let stored = self.inner.take(key)?;
        order.retain(|(_, k)| k != key);
        Some(stored)
    }

    /// How long after the cache was made it is now, in nanoseconds (u64
    /// nanoseconds last 584 years from the cache's making).
    fn now(&self) -> u64 {
        let since = self.clock.now().saturating_duration_since(self.born);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The session behind its stamp, if it is younger than the lifetime.
    fn fresh(&self, stored: &[u8]) -> Option<Vec<u8>> {
        let (_, session) = stored.split_first_chunk::<8>()?;
        let age = Duration::from_nanos(self.now()).saturating_sub(stamp_of(stored));
        (age < self.lifetime).then(|| session.to_vec())
    }
}

/// When a stored session was put, after the cache was made.
fn stamp_of(stored: &[u8]) -> Duration {
    let stamp = stored.first_chunk::<8>().copied().unwrap_or_default();
    Duration::from_nanos(u64::from_be_bytes(stamp))
}

impl<C: Clock> StoresServerSessions for ExpiringSessions<C> {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut order = self.order();
        // Read under the lock: stamps rise along the queue, whatever the
        // threads' order, so its front is always the oldest.
        let stamp = self.now();
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&stamp.to_be_bytes());
        stored.extend_from_slice(&value);
        // A key stored again goes to the back, with its new stamp.
        self.remove(&mut order, &key);
        self.sweep(&mut order, stamp);
        if order.len() >= self.size
            && let Some((_, oldest)) = order.pop_front()
        {
            // What rustls would let go, taken here so both queues agree.
            self.inner.take(&oldest);
        }
        order.push_back((stamp, key.clone()));
        self.note_due(&order);
        self.inner.put(key, stored)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let stored = self.inner.get(key)?;
        let Some(session) = self.fresh(&stored) else {
            // Gone for good: its master secret is not kept past its use.
            // Looked at again under the lock: one put again since stays.
            let mut order = self.order();
            if self
                .inner
                .get(key)
                .is_some_and(|s| self.fresh(&s).is_none())
            {
                self.remove(&mut order, key);
                self.note_due(&order);
            }
            return None;
        };
        // A ticket this resumption issues (a client offering its session
        // ID and the ticket extension) is as old as the session.
        let age = Duration::from_nanos(self.now()).saturating_sub(stamp_of(&stored));
        carry(&session, Origin::Age(age));
        Some(session)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut order = self.order();
        let stored = self.remove(&mut order, key)?;
        self.note_due(&order);
        drop(order);
        self.fresh(&stored)
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

/// A session-ID cache whose sessions past their lifetime a handshake that
/// stores none (a ticket's) takes out of memory.
pub trait Expires: Send + Sync {
    /// Take out up to [`SWEEP`] of the oldest sessions past their lifetime.
    fn expire(&self);
}

impl<C: Clock> Expires for ExpiringSessions<C> {
    /// A clock read and one compare while nothing is due: this runs on
    /// every handshake that seals a ticket, resumptions included.
    fn expire(&self) {
        if self.now() < self.due.load(Ordering::Relaxed) {
            return;
        }
        let mut order = self.order();
        self.sweep(&mut order, self.now());
        self.note_due(&order);
    }
}

/// Where "now" comes from for tickets: wall-clock unix seconds, or a test's.
pub trait WallClock: Send + Sync {
    fn unix_secs(&self) -> u64;
}

/// The system's wall clock, as rustls reads it for its own tickets.
#[derive(Debug, Default)]
pub struct SystemWall;

impl WallClock for SystemWall {
    fn unix_secs(&self) -> u64 {
        rustls_pki_types::UnixTime::now().as_secs()
    }
}

/// A listener's ticketer (rustls's rotating one) with the session's birth
/// sealed in front of each ticket's plaintext: `decrypt` answers a ticket
/// at least [`LIFETIME`] (or the lifetime given) past its birth, or one
/// without a birth, as none. rustls rotates its key only when it is used,
/// one step per use, and still opens with the key before, so on a quiet
/// listener a ticket days old decrypted; it checks no TLS 1.2 ticket's age;
/// and a TLS 1.2 resumption re-issues a ticket with the same master secret
/// stamped now, so a client resuming every few hours kept its secret for
/// ever. Here a ticket re-issued by a resumption keeps the birth of the
/// session it resumed.
///
/// The birth is wall-clock unix seconds, as rustls's own tickets and key
/// rotation use: it is written into the ticket, where an `Instant` has no
/// meaning, and a clock step moves it and rustls's key rotation alike.
pub struct AgedTickets<W: WallClock = SystemWall> {
    inner: Arc<dyn ProducesTickets>,
    lifetime: Duration,
    clock: W,
    /// The listener's session IDs, swept as a ticket is sealed.
    sessions: Option<Arc<dyn Expires>>,
}

impl AgedTickets {
    /// `inner`'s tickets, each resumed for `lifetime` after its session's
    /// full handshake.
    pub fn new(inner: Arc<dyn ProducesTickets>, lifetime: Duration) -> Self {
        Self::with_clock(inner, lifetime, SystemWall)
    }
}

impl<W: WallClock> AgedTickets<W> {
    pub(crate) fn with_clock(
        inner: Arc<dyn ProducesTickets>,
        lifetime: Duration,
        clock: W,
    ) -> Self {
        Self {
            inner,
            lifetime,
            clock,
            sessions: None,
        }
    }

    /// Also take the listener's session IDs past their lifetime out of
    /// `sessions` as tickets are sealed ([`Expires`]).
    pub fn expiring(mut self, sessions: Arc<dyn Expires>) -> Self {
        self.sessions = Some(sessions);
        self
    }
}

impl<W: WallClock> ProducesTickets for AgedTickets<W> {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.lifetime.as_secs())
            .unwrap_or(u32::MAX)
            .min(self.inner.lifetime())
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        // A TLS 1.3 handshake (or a TLS 1.2 one taking a ticket) stores no
        // session ID, so sweeps none as it is stored: it sweeps them here.
        if let Some(sessions) = &self.sessions {
            sessions.expire();
        }
        let now = self.clock.unix_secs();
        let birth = match carried(plain) {
            Some(Origin::Birth(birth)) => birth,
            // Rounded up: the session is never younger than it was.
            Some(Origin::Age(age)) => {
                now.saturating_sub(age.as_secs() + u64::from(age.subsec_nanos() > 0))
            }
            None => match (tls13_data(plain), RETRIED.get()) {
                // A handshake foreseen to maybe retry: the ticket its
                // connection opened, else a full handshake's: now.
                (Some(_), Some(opened)) => opened.map_or(now, |birth| birth.min(now)),
                // A retry not foreseen: whether it resumed is not known
                // here, and a ticket stamped now may make a session young.
                (Some(data), None) if data == RETRY_MARK => return None,
                // A TLS 1.3 resumption's, else a full handshake's: now.
                (data, _) => data.and_then(birth_in).map_or(now, |birth| birth.min(now)),
            },
        };
        let mut stamped = Vec::with_capacity(8 + plain.len());
        stamped.extend_from_slice(&birth.to_be_bytes());
        stamped.extend_from_slice(plain);
        self.inner.encrypt(&stamped)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        // Nothing from an earlier ClientHello stays to be matched.
        CARRIED.take();
        OPENED_TLS13.take();
        let stamped = self.inner.decrypt(ticket)?;
        let (birth, plain) = stamped.split_first_chunk::<8>()?;
        let birth = u64::from_be_bytes(*birth);
        let age = self.clock.unix_secs().saturating_sub(birth);
        if age >= self.lifetime.as_secs() || !parses(plain) {
            return None;
        }
        carry(plain, Origin::Birth(birth));
        if session_version(plain).is_some_and(|(version, _)| version == [3, 4]) {
            OPENED_TLS13.set(Some(birth));
        }
        Some(plain.to_vec())
    }
}

impl<W: WallClock> fmt::Debug for AgedTickets<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgedTickets")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// How old a resumed session is: its birth (a ticket's) or its age (a
/// session ID's, on the cache's monotonic clock).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Origin {
    Birth(u64),
    Age(Duration),
}

thread_local! {
    /// The TLS 1.2 session a ClientHello on this thread resumed: a digest of
    /// its master secret, and how old it is. rustls opens a TLS 1.2 ticket
    /// (or looks up a session ID) and issues the resumption's new ticket in
    /// one call on one thread (the ClientHello's, in `start_resumption`).
    /// The next `encrypt` takes it and uses it only for the same master
    /// secret, so a full handshake, whose secret is new, is stamped now
    /// even when an earlier resumption attempt left one here.
    static CARRIED: Cell<Option<([u8; 32], Origin)>> = const { Cell::new(None) };
}

/// Note how old the TLS 1.2 session in `plain` (rustls's encoding) is, for
/// the ticket its resumption issues.
fn carry(plain: &[u8], origin: Origin) {
    CARRIED.set(tls12_secret(plain).map(|digest| (digest, origin)));
}

/// How old the session `plain` re-issues is, if this thread just resumed it.
fn carried(plain: &[u8]) -> Option<Origin> {
    let (digest, origin) = CARRIED.take()?;
    (tls12_secret(plain)? == digest).then_some(origin)
}

/// A digest of the master secret of a TLS 1.2 session in rustls's
/// `ServerSessionValue` encoding; none for TLS 1.3, whose tickets after a
/// resumption carry new secrets (their birth comes through
/// [`keep_tls13_birth`]).
fn tls12_secret(plain: &[u8]) -> Option<[u8; 32]> {
    let (version, rest) = session_version(plain)?;
    if version != [3, 3] {
        return None;
    }
    let (secret, _) = sized(rest.get(2..)?, 1)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
    digest.as_ref().try_into().ok()
}

/// Whether `plain` is a TLS 1.2 or 1.3 session in the rustls encoding read
/// here. Fail safe: were a rustls update to change it, the birth of a
/// resumption's ticket would not be carried (each stamped now), and
/// sessions would resume for ever; no resumption is the safe side.
fn parses(plain: &[u8]) -> bool {
    match session_version(plain) {
        Some(([3, 3], _)) => tls12_secret(plain).is_some(),
        Some(([3, 4], _)) => tls13_data(plain).is_some(),
        _ => false,
    }
}

/// The birth a TLS 1.3 session in rustls's encoding carries in its
/// resumption data `data` (put there by [`keep_tls13_birth`]), if any.
fn birth_in(data: &[u8]) -> Option<u64> {
    let birth = data.strip_prefix(BIRTH_DATA)?;
    Some(u64::from_be_bytes(birth.try_into().ok()?))
}

/// The resumption data of a TLS 1.3 session in rustls's encoding.
fn tls13_data(plain: &[u8]) -> Option<&[u8]> {
    let (version, rest) = session_version(plain)?;
    if version != [3, 4] {
        return None;
    }
    // Suite, then the secret, then the EMS flag.
    let (_, rest) = sized(rest.get(2..)?, 1)?;
    let (&has_chain, mut rest) = rest.get(1..)?.split_first()?;
    if has_chain == 1 {
        rest = sized(rest, 3)?.1;
    }
    let (&has_alpn, mut rest) = rest.split_first()?;
    if has_alpn == 1 {
        rest = sized(rest, 1)?.1;
    }
    Some(sized(rest, 2)?.0)
}

/// The version of a session in rustls's `ServerSessionValue` encoding (an
/// optional SNI, the version, the suite, the secret, ...) and what follows it.
fn session_version(plain: &[u8]) -> Option<([u8; 2], &[u8])> {
    let (&has_sni, mut rest) = plain.split_first()?;
    if has_sni == 1 {
        rest = sized(rest, 1)?.1;
    }
    let (version, rest) = rest.split_first_chunk::<2>()?;
    Some((*version, rest))
}

/// A field behind its `width`-byte big-endian length, and what follows it.
fn sized(bytes: &[u8], width: usize) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_at_checked(width)?;
    let len = len.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
    rest.split_at_checked(len)
}

/// What a resumed TLS 1.3 connection's resumption data starts with: the
/// birth of the session it resumed follows (8 bytes, unix seconds).
const BIRTH_DATA: &[u8] = b"hotproxy birth ";

/// The resumption data of a connection that sent a HelloRetryRequest:
/// its ticket, if any, is opened after [`keep_tls13_birth`] has run.
const RETRY_MARK: &[u8] = b"hotproxy retry";

thread_local! {
    /// Set while a [`retry::Retrying`] ticketer seals, for that call alone: the
    /// birth of the TLS 1.3 ticket its connection opened, if any.
    static RETRIED: Cell<Option<Option<u64>>> = const { Cell::new(None) };
}

thread_local! {
    /// The birth of the TLS 1.3 ticket rustls last opened on this thread:
    /// when its ClientHello resumed, the one it resumed (rustls stops at
    /// the first identity it takes, and `decrypt` clears this first).
    static OPENED_TLS13: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Call as soon as rustls has read a ClientHello on this thread (the hook
/// of tokio-rustls's `into_stream_with`). A TLS 1.3 resumption's tickets
/// carry new secrets and are sealed after the client's Finished, in a
/// later call (maybe on another thread): so a resumed connection gets its
/// session's birth as resumption data, which rustls puts into each ticket
/// it issues and `encrypt` reads back. A full handshake's are stamped now.
/// This caps a chain of resumptions as RFC 8446 4.6.1 recommends (BoringSSL,
/// so Envoy, caps it at 7 days; OpenSSL, so nginx, does not for TLS 1.3).
/// A HelloRetryRequest, which any client can provoke (a group listed first
/// with no key share), has the second ClientHello, and the ticket it
/// offers, read after this hook: `tls::accept` gives a handshake it
/// foresees one for a ticketer of its own ([`retrying`]) that keeps the
/// birth; the connection is marked here, and one not foreseen is issued
/// no ticket. Each resumption mixes in a new key exchange all the same.
pub fn keep_tls13_birth(conn: &mut rustls::ServerConnection) {
    let birth = OPENED_TLS13.take();
    match conn.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed)
            if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) =>
        {
            if let Some(birth) = birth {
                conn.set_resumption_data(&[BIRTH_DATA, &birth.to_be_bytes()].concat());
            }
        }
        Some(rustls::HandshakeKind::FullWithHelloRetryRequest) => {
            conn.set_resumption_data(RETRY_MARK);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
