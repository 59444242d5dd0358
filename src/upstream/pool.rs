//! One endpoint's pool: idle HTTP/1.1 connections, shared HTTP/2 ones, and the dials in progress.
//!
//! Idle HTTP/1.1 connections are a LIFO stack (the most recently used is
//! the warmest and the least likely to have been closed by the upstream),
//! capped at `max_idle_connections` (full, it lets its bottom go, the least
//! recently used, as nginx's `keepalive` does), dropped after
//! `idle_timeout`; an HTTP/2 connection without a stream for that long is
//! let go too, and idle ones past `max_idle_connections` as soon as one
//! goes idle. At most
//! [`MAX_DIALS`] new connections are dialled at once (one, once the
//! endpoint is known to speak HTTP/2): other requests wait for one of
//! them, or for a connection handed back, so a cold start never opens
//! more connections than requests actually in flight. A dial that fails
//! with no other in progress fails those waiters with its cause (as Envoy
//! fails the requests pending on a connection attempt): they waited for
//! it, and the next dial would only repeat it, one `connect_timeout` each.
//! `drain_on_rotation` bumps the pool's generation: idle connections made
//! with the old material are closed now, busy ones when they come back.
//! A pool whose endpoint is out of service (its upstream replaced or
//! removed by a reload, its address dropped by re-resolution) is retired:
//! drained for good, it keeps no connection handed back or dialled later
//! (an HTTP/2 one, pooled or dialled later, is shared by the requests
//! still in flight there, and closes when its last stream ends).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};

use crate::upstream::conn::{DialCause, H1, H2, Refuser, StreamGuard};

/// New connections dialled concurrently per endpoint.
pub const MAX_DIALS: usize = 8;

pub struct Pool {
    /// Shared (weakly) with [`Wakes`]: an HTTP/2 connection going idle
    /// closes the idle ones past `max_idle` ([`Wakes::h2_went_idle`]).
    state: Arc<Mutex<State>>,
    /// What wakes the requests waiting on the pool; shared with the
    /// HTTP/2 connections, whose streams signal it too.
    wakes: Arc<Wakes>,
    /// A dial was given up before it began ([`DialToken::abandon`]): the
    /// requests waiting for the dials in progress look again. Apart from
    /// `changed`, which requests waiting for a server slot listen to too:
    /// woken by each other's abandoned dials, they would wake each other
    /// for as long as they wait.
    abandoned: Notify,
    max_idle: usize,
    /// `idle_timeout`: an idle connection older than this is not reused.
    idle_timeout: Duration,
    generation: AtomicU64,
}

/// A pool's wake-ups, one per kind of waiter.
#[derive(Default)]
pub struct Wakes {
    /// A connection came back, a dial ended, or a full HTTP/2 connection
    /// has a stream free again: a request that may take any connection
    /// proceeds.
    changed: Notify,
    /// A connection went idle (an HTTP/1.1 one kept in the pool, an
    /// HTTP/2 one whose last stream ended): a request sent again on a new
    /// connection ([`Want::Fresh`]), or an `Upgrade` request, that waits
    /// for a server slot takes its slot. Apart from `changed`, whose wake-up it would take from a
    /// request that can use the connection itself; without it, it was
    /// woken only by a slot freed, which an idle connection keeps until
    /// `idle_timeout`: it waited out `connect_timeout` for the connection
    /// limit's 504.
    went_idle: Notify,
    /// The pool's connections, and `max_idle_connections` (at least one,
    /// as [`Pool::add_h2`] keeps): what [`Wakes::h2_went_idle`] holds the
    /// idle HTTP/2 connections to. None (a connection of no pool's): no
    /// such bound.
    pool: Weak<Mutex<State>>,
    max_idle: usize,
}

impl Wakes {
    /// A stream freed on a full HTTP/2 connection, or room on a new one.
    pub fn freed(&self) {
        self.changed.notify_one();
    }

    /// A connection went idle: one resend (or upgrade) waiting for a slot looks again
    /// (a permit when none waits: the next one looks once more for
    /// nothing, never misses one).
    pub fn went_idle(&self) {
        self.went_idle.notify_one();
    }

    /// An HTTP/2 connection's last stream ended: the pool's idle HTTP/2
    /// connections past `max_idle_connections` (at least one) are closed,
    /// the longest idle first, and a resend waiting for a slot looks
    /// again ([`Wakes::went_idle`]). Only [`Pool::add_h2`] bounded them,
    /// as each was dialled: a burst on a server allowing one stream at a
    /// time dialled one per request, none idle then, and all stayed open,
    /// idle, until `idle_timeout`.
    pub fn h2_went_idle(&self) {
        if let Some(state) = self.pool.upgrade() {
            let mut gone = Vec::new();
            let mut st = state.lock().expect("pool lock");
            // No more connections than may stay idle (the common case, one
            // shared connection): nothing to look at or allocate.
            if st.h2.len() <= self.max_idle.max(1) {
                drop(st);
                self.went_idle();
                return;
            }
            let mut idle: Vec<(u64, usize)> = (st.h2.iter().enumerate())
                .filter(|(_, c)| c.idle_with_room())
                .map(|(i, c)| (c.idle_since(), i))
                .collect();
            if idle.len() > self.max_idle.max(1) {
                // The most recently idle first: they are kept.
                idle.sort_unstable_by(|a, b| b.cmp(a));
                let mut closed: Vec<usize> = (idle[self.max_idle.max(1)..].iter())
                    .filter(|(_, i)| st.h2[*i].close_if_idle())
                    .map(|(_, i)| *i)
                    .collect();
                closed.sort_unstable();
                for i in closed.into_iter().rev() {
                    gone.push(st.h2.remove(i));
                }
            }
            drop(st);
            // Let go outside the lock.
            drop::<Vec<H2>>(gone);
        }
        self.went_idle();
    }
}

#[derive(Default)]
struct State {
    /// The stack's top at the back; its bottom, the least recently used,
    /// at the front, let go when it is full ([`Pool::put`]) or for a slot
    /// ([`Pool::take_oldest_idle`]): a deque, so that neither moves the
    /// rest (up to `max_idle_connections`, 256 by default) on every
    /// request handed back to a full pool. Boxed so that taking one out
    /// and putting it back moves a pointer, not the connection (several
    /// hundred bytes), on every request.
    idle: VecDeque<Box<H1>>,
    h2: Vec<H2>,
    dialing: usize,
    /// The last connection dialled spoke HTTP/2: one dial in progress will
    /// bring room for many requests, so others wait for it instead of
    /// dialling too.
    speaks_h2: bool,
    /// Dials that failed with none left in progress, and the latest's
    /// cause: a request that waited since then waited for that dial.
    failures: u64,
    cause: Option<Arc<DialCause>>,
    /// Dials given up before they began.
    abandons: u64,
    /// [`Pool::retire`]d: every HTTP/1.1 connection handed back or dialled
    /// from now on closes after its request, and an HTTP/2 one dialled
    /// from now on when its last stream ends. Checked under the lock where
    /// a connection is stored, so none is stored as usual after the
    /// retirement took what was there.
    retired: bool,
}

/// Who asks the pool for a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Want {
    /// A request: a pooled or shared connection, else a dial within the
    /// dial bound.
    Any,
    /// A retry: a new connection only, not held back by the dial bound
    /// (SPEC says so). One at a time per attempt (two in all at most), so
    /// the pool still opens no more connections than requests in flight; waiting, it would take
    /// wake-ups of connections handed back that it cannot use, and be lost
    /// itself behind dials to an endpoint that is restarting.
    Fresh,
    /// An active check: like a request, but never held back by the dial
    /// bound. Behind requests' dials to a dead endpoint, each waiting out
    /// `connect_timeout`, it would wait too and end with no verdict; one
    /// dial more per check and interval is its price. Nor by the slot
    /// limit (see [`crate::upstream::endpoint::Endpoint::checkout`]).
    Check,
    /// An active check sent again (left unprocessed): a new connection
    /// only, as [`Want::Fresh`], past the slot limit as [`Want::Check`].
    /// As a retry it waited for a slot, which requests an endpoint leaves
    /// unanswered hold: every check it refused ended with no verdict.
    CheckAgain,
}

impl Want {
    /// A new connection only, never a pooled or shared one.
    pub fn fresh(self) -> bool {
        matches!(self, Want::Fresh | Want::CheckAgain)
    }

    /// An active check's: past the slot limit if need be.
    pub fn check(self) -> bool {
        matches!(self, Want::Check | Want::CheckAgain)
    }
}

/// What a request gets from the pool right now.
pub enum Found<'a> {
    /// An idle HTTP/1.1 connection (check it is still open before use).
    H1(Box<H1>),
    /// A stream on a shared HTTP/2 connection.
    H2(H2, StreamGuard),
    /// Dial a new connection (counted until the token drops, also when
    /// the request is cancelled mid-dial).
    Dial(DialToken<'a>),
    /// Wait for the dials in progress ([`Pool::wait_for_dials`], given
    /// this ticket), then ask again.
    Wait(Ticket),
}

/// What a request held back by the dial bound had seen of the dials:
/// those that failed, and those given up, until then.
#[derive(Clone, Copy)]
pub struct Ticket {
    failures: u64,
    abandons: u64,
}

/// How a wait for the dials in progress ended.
pub enum DialWait {
    /// Something changed (a connection handed back, a dial ended, a
    /// stream free): ask again.
    Changed,
    /// The dial waited for failed, with none left in progress.
    Failed(Arc<DialCause>),
    /// The deadline passed first.
    Deadline,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        let state = Arc::new(Mutex::new(State::default()));
        let wakes = Arc::new(Wakes {
            pool: Arc::downgrade(&state),
            max_idle,
            ..Wakes::default()
        });
        Pool {
            state,
            wakes,
            abandoned: Notify::new(),
            max_idle,
            idle_timeout,
            generation: AtomicU64::new(0),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A connection for one request, or one check (see [`Want`]); never
    /// the shared one `skip` names (it refused the request's last send
    /// while another had room: taken again, it refused it again).
    pub fn find(&self, want: Want, skip: Option<&Refuser>) -> Found<'_> {
        let generation = self.generation();
        // Idle connections let go below. Declared before the guard, so
        // dropped after it, outside the lock, as `put` and `sweep` close
        // theirs: after a quiet spell, every one is past `idle_timeout`
        // (up to `max_idle_connections` socket closes and TLS states freed)
        // and each request to the endpoint would wait on the lock for them.
        let mut stale: Vec<Box<H1>> = Vec::new();
        let mut st = self.state.lock().expect("pool lock");
        if want.fresh() {
            st.dialing += 1;
            return Found::Dial(DialToken::new(self));
        }
        // One left idle past its time is let go: with no handle and no
        // stream left, hyper closes it.
        st.h2
            .retain(|c| c.generation == generation && c.usable() && !c.idle_for(self.idle_timeout));
        let other = |c: &&H2| skip.is_none_or(|s| !c.is(s));
        if let Some((c, guard)) = st
            .h2
            .iter()
            .filter(other)
            .find_map(|c| Some((c, c.try_stream()?)))
        {
            return Found::H2(c.clone(), guard);
        }
        if !st.idle.is_empty() {
            // One clock read for all: those below the top went idle earlier.
            let now = Instant::now();
            while let Some(c) = st.idle.pop_back() {
                if c.generation == generation && self.within_idle_timeout(&c, now) {
                    return Found::H1(c);
                }
                stale.push(c);
            }
        }
        // Until the first connection says which protocol the endpoint
        // speaks, a burst dials as HTTP/1.1 needs (one per request, at
        // most MAX_DIALS at once); after one said HTTP/2, one at a time.
        // An HTTP/2 connection whose server's SETTINGS are not in yet is
        // such a dial still: how many streams it brings is unknown.
        let dials = if st.speaks_h2 { 1 } else { MAX_DIALS };
        let settling = st.h2.iter().any(|c| !c.settled());
        if (st.dialing < dials && !settling) || want.check() {
            st.dialing += 1;
            Found::Dial(DialToken::new(self))
        } else {
            Found::Wait(Ticket {
                failures: st.failures,
                abandons: st.abandons,
            })
        }
    }

    /// What a new connection's ALPN agreed on.
    pub fn learned(&self, h2: bool) {
        self.state.lock().expect("pool lock").speaks_h2 = h2;
    }

    /// Wait for a connection handed back, a dial ended, or a stream free.
    pub async fn changed(&self) {
        self.wakes.changed.notified().await
    }

    /// Wait for a connection gone idle, whose slot a resend waiting for
    /// one takes ([`Pool::take_oldest_idle`], [`Pool::close_an_idle_h2`]):
    /// enabled ([`Notified::enable`]) before those looks, so that one
    /// going idle after them wakes a waiter.
    pub fn went_idle(&self) -> Notified<'_> {
        self.wakes.went_idle.notified()
    }

    /// [`Pool::changed`] for a request the dial bound held back
    /// (`ticket`: from its [`Found::Wait`]), or a dial given up, until
    /// `deadline`; or the cause of a dial that failed meanwhile, the last
    /// in progress.
    pub async fn wait_for_dials(&self, ticket: Ticket, deadline: tokio::time::Instant) -> DialWait {
        let changed = self.wakes.changed.notified();
        let abandoned = self.abandoned.notified();
        tokio::pin!(changed, abandoned);
        // Registered before looking: a failure or a dial given up after
        // the look wakes it (`notify_waiters` stores no permit for one not
        // yet waiting).
        changed.as_mut().enable();
        abandoned.as_mut().enable();
        let (failed, given_up) = self.since(ticket);
        if let Some(cause) = failed {
            return DialWait::Failed(cause);
        }
        if given_up {
            return DialWait::Changed;
        }
        let either = async {
            tokio::select! {
                () = changed => {}
                () = abandoned => {}
            }
        };
        if tokio::time::timeout_at(deadline, either).await.is_err() {
            return DialWait::Deadline;
        }
        match self.since(ticket).0 {
            Some(cause) => DialWait::Failed(cause),
            None => DialWait::Changed,
        }
    }

    /// The cause of a dial that failed since `ticket`, with none left in
    /// progress; and whether a dial was given up since.
    fn since(&self, ticket: Ticket) -> (Option<Arc<DialCause>>, bool) {
        let st = self.state.lock().expect("pool lock");
        let failed = (st.failures != ticket.failures)
            .then(|| st.cause.clone())
            .flatten();
        (failed, st.abandons != ticket.abandons)
    }

    /// What an HTTP/2 connection signals when a stream frees up on it
    /// full, or its last stream ends.
    pub fn wakes(&self) -> Arc<Wakes> {
        self.wakes.clone()
    }

    /// A waiter got a stream on a shared HTTP/2 connection: the next may
    /// find room there too. A new HTTP/2 connection wakes one waiter, as a
    /// returned HTTP/1.1 one does, and each passes it on, so a burst that
    /// waited for a cold endpoint's first dial is served by it whole (one
    /// wake-up per waiter, none lost to a waiter not yet registered: each
    /// is a stored permit when nobody waits).
    pub fn pass_on(&self) {
        self.wakes.changed.notify_one();
    }

    fn dial_done(&self, wake: bool, failed: Option<DialCause>) {
        let fail_waiters = {
            let mut st = self.state.lock().expect("pool lock");
            st.dialing -= 1;
            if !wake {
                st.abandons += 1;
            }
            // With another dial in progress, the waiters may still get a
            // connection from it.
            match failed {
                Some(cause) if st.dialing == 0 => {
                    st.failures += 1;
                    st.cause = Some(Arc::new(cause));
                    true
                }
                _ => false,
            }
        };
        if fail_waiters {
            self.wakes.changed.notify_waiters();
        }
        if wake {
            self.wakes.changed.notify_one();
        } else {
            // Given up: a request that saw it in progress and waits for it
            // would wait out its deadline, and get the `connect_timeout`
            // of a dial that never was. Each woken looks again: it may
            // dial now, or it waits for a slot as this one does (no
            // longer woken by this: no wake-ups back and forth).
            self.abandoned.notify_waiters();
        }
    }

    /// A new shared HTTP/2 connection others may use, unless the pool
    /// already holds `max_idle_connections` idle ones that take requests
    /// (at least one): then it closes once its own request lets go. Only a
    /// request sent again on a new connection ([`Want::Fresh`]) dials past
    /// such a one; each used to be shared and stay open until
    /// `idle_timeout`, while the first in the pool (the one that refused
    /// the stream, say) took every next request: one connection more per
    /// refusal, until `max_connections_per_server` was full.
    ///
    /// A retired pool's is shared too, among the requests still in flight
    /// under its endpoint (each would dial one of its own, within the slot
    /// limit and one dial at a time), and closes when its last stream ends.
    pub fn add_h2(&self, c: H2) {
        if c.generation == self.generation() {
            let mut st = self.state.lock().expect("pool lock");
            if st.retired {
                // Before it is shared: nothing sweeps this pool.
                c.close_when_idle();
            }
            let idle = st.h2.iter().filter(|o| o.idle_with_room()).count();
            if idle > 0 && idle >= self.max_idle {
                return;
            }
            st.h2.push(c);
            drop(st);
            self.wakes.changed.notify_one();
        }
    }

    /// An HTTP/1.1 connection whose response ended: keep it idle, unless it
    /// closed, the pool is retired, it was made before a drain, or a check's
    /// connection past the slot limit (kept, it would be one more than
    /// `max_connections_per_server` for requests). A full pool lets its
    /// least recently used go for it (nginx's `keepalive` closes the least
    /// recently used too): it used to refuse this one, the warmest, and
    /// keep those the upstream most likely closed meanwhile (its own
    /// keep-alive timeout), each holding a server slot until `idle_timeout`.
    pub fn put(&self, mut c: Box<H1>) {
        // Closed as its response ended (`Connection: close`, an HTTP/1.0
        // answer, a body read to EOF), or closing (a close_notify waiting on
        // a full socket): pooled, it pushed a live one out of a full pool,
        // and the request that took it waited on that close. hyper ends it
        // in the poll that ends such a response: read, not polled again.
        let closed = c.conn.is_none() || c.head.shutting();
        if c.generation != self.generation() || c.unpooled || closed {
            return;
        }
        let now = Instant::now();
        c.idle_since = Some(now);
        let mut st = self.state.lock().expect("pool lock");
        if st.retired {
            // Closed outside the lock.
            drop(st);
            return;
        }
        // The oldest are at the bottom; those past their time go first, so
        // that they never keep this one, just used, out of a full pool.
        let mut expired = if st
            .idle
            .front()
            .is_some_and(|o| !self.within_idle_timeout(o, now))
        {
            let (keep, expired) = std::mem::take(&mut st.idle)
                .into_iter()
                .partition(|o| self.within_idle_timeout(o, now));
            st.idle = keep;
            expired
        } else {
            VecDeque::new()
        };
        // `max_idle_connections: 0` keeps none.
        let kept = self.max_idle > 0;
        if kept {
            if st.idle.len() >= self.max_idle
                && let Some(oldest) = st.idle.pop_front()
            {
                expired.push_back(oldest);
            }
            st.idle.push_back(c);
        }
        drop(st);
        // Closed outside the lock.
        drop::<VecDeque<Box<H1>>>(expired);
        if kept {
            self.wakes.changed.notify_one();
            self.wakes.went_idle();
        }
    }

    /// Every server slot is taken and a request sent again on a new
    /// connection ([`Want::Fresh`]) needs one: the oldest idle HTTP/1.1
    /// connection, taken out to be closed for its slot
    /// ([`H1::into_slot`]), now or when one goes idle while it waits
    /// ([`Pool::went_idle`]); an `Upgrade` request's too. Only such
    /// requests cannot take the connection itself (see
    /// [`crate::upstream::endpoint::Endpoint::checkout`] and
    /// [`crate::upstream::endpoint::Endpoint::upgrade_connection`]), and
    /// idle connections give no slot back until `idle_timeout`.
    pub fn take_oldest_idle(&self) -> Option<Box<H1>> {
        let mut st = self.state.lock().expect("pool lock");
        st.idle.pop_front()
    }

    /// Whether a pooled HTTP/2 connection other than `stream`'s takes a
    /// new stream now: a request refused on that one has another to go to
    /// without a new connection ([`StreamGuard::refused`]).
    pub fn room_beside(&self, stream: &StreamGuard) -> bool {
        let generation = self.generation();
        let st = self.state.lock().expect("pool lock");
        st.h2
            .iter()
            .any(|c| c.generation == generation && !c.carries(stream) && c.has_room())
    }

    /// As [`Pool::take_oldest_idle`], for an HTTP/2 endpoint: one pooled
    /// connection without a stream is let go, closed at once, its slot
    /// sent to the caller once its socket is ([`H2::close_for_slot`]).
    /// `None` if there is none, or it is not closed at once (a stream
    /// opened on it meanwhile: it closes at its last, its slot going to
    /// whoever waits for one). One that takes no new stream is passed
    /// over: with no stream left it has closed already (retired, at its
    /// last stream), and its slot was freed then. Taken, it used to close
    /// nothing for the caller, a resend woken by a connection gone idle,
    /// which waited out `connect_timeout` beside that idle one for the
    /// limit's `504`.
    pub fn close_an_idle_h2(&self) -> Option<oneshot::Receiver<OwnedSemaphorePermit>> {
        let c = {
            let mut st = self.state.lock().expect("pool lock");
            let idle = |c: &H2| c.usable() && c.idle_for(Duration::ZERO);
            let i = st.h2.iter().position(idle)?;
            st.h2.remove(i)
        };
        c.close_for_slot()
    }

    /// `drain_on_rotation`: close idle connections, stop sharing h2 ones,
    /// refuse busy ones when they come back.
    pub fn drain(&self) {
        self.drain_as(false);
    }

    /// The endpoint is out of service (its upstream replaced or removed,
    /// its address dropped by re-resolution): [`Pool::drain`], and refuse
    /// every connection from now on, also those dialled after this by a
    /// request still in flight (the generation it reads when its dial
    /// starts is the drained one), save an HTTP/2 one, shared until its
    /// last stream ends (see [`Pool::add_h2`]), as are the HTTP/2 ones
    /// already pooled. Those were pooled again, and nothing
    /// swept them once the upstream was gone: they stayed open (in
    /// CLOSE_WAIT once the backend closed them) for as long as another
    /// request held the endpoint.
    pub fn retire(&self) {
        self.drain_as(true);
    }

    fn drain_as(&self, retire: bool) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let (idle, h2) = {
            let mut st = self.state.lock().expect("pool lock");
            st.retired |= retire;
            let mut h2 = std::mem::take(&mut st.h2);
            if retire {
                // Shared still by the requests in flight under the
                // endpoint, and closed at its last stream (now, if it has
                // none), as one dialled after this is ([`Pool::add_h2`]).
                // Dropped, each such request needed a connection (and a
                // slot) of its own.
                for mut c in h2.drain(..) {
                    c.close_when_idle();
                    if c.usable() {
                        c.generation = generation;
                        st.h2.push(c);
                    }
                }
            }
            (std::mem::take(&mut st.idle), h2)
        };
        // Closed outside the lock.
        drop(idle);
        drop(h2);
    }

    /// Close what has been idle past `idle_timeout` now, not when the pool
    /// is next used: an endpoint no request reaches any more would keep its
    /// idle connections (their slots, and sockets the backend closed, in
    /// CLOSE_WAIT) for as long as it is configured.
    pub fn sweep(&self) {
        let now = Instant::now();
        let (idle, h2) = {
            let mut st = self.state.lock().expect("pool lock");
            let (keep, idle) = std::mem::take(&mut st.idle)
                .into_iter()
                .partition(|c| self.within_idle_timeout(c, now));
            st.idle = keep;
            let (keep, h2) = std::mem::take(&mut st.h2)
                .into_iter()
                .partition(|c| c.usable() && !c.idle_for(self.idle_timeout));
            st.h2 = keep;
            (idle, h2)
        };
        // Closed outside the lock.
        drop::<VecDeque<Box<H1>>>(idle);
        drop::<Vec<H2>>(h2);
    }

    /// An HTTP/1.1 connection not idle past `idle_timeout` at `now`.
    fn within_idle_timeout(&self, c: &H1, now: Instant) -> bool {
        c.idle_since
            .is_none_or(|t| now.duration_since(t) < self.idle_timeout)
    }

    /// Idle HTTP/1.1 connections right now (tests, admin).
    pub fn idle(&self) -> usize {
        self.state.lock().expect("pool lock").idle.len()
    }

    /// [`Pool::retire`]d (tests).
    #[cfg(test)]
    pub(crate) fn retired(&self) -> bool {
        self.state.lock().expect("pool lock").retired
    }
}

/// One dial in progress; dropping it ends the dial and wakes a waiter.
pub struct DialToken<'a> {
    pool: &'a Pool,
    wake: bool,
    failed: Option<DialCause>,
}

impl<'a> DialToken<'a> {
    fn new(pool: &'a Pool) -> DialToken<'a> {
        DialToken {
            pool,
            wake: true,
            failed: None,
        }
    }

    /// A dial given up before it began (no server slot free): the
    /// requests waiting for the dials in progress look again (one may have
    /// seen this one in progress); none waiting for a slot, nor a later
    /// one, is woken by it (the caller waits for a slot itself).
    pub fn abandon(mut self) {
        self.wake = false;
    }

    /// The dial failed, a verdict on the endpoint: the requests waiting
    /// for it get `cause` when it ends with no other dial in progress.
    pub fn failed(mut self, cause: DialCause) {
        self.failed = Some(cause);
    }
}

impl Drop for DialToken<'_> {
    fn drop(&mut self) {
        self.pool.dial_done(self.wake, self.failed.take());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::upstream::conn::Dialled;
    use crate::upstream::io::{MaybeTls, UpstreamIo};

    /// A real HTTP/1.1 client connection to a loopback listener.
    pub(crate) async fn h1(listener: &tokio::net::TcpListener) -> Box<H1> {
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let d = Dialled {
            io: UpstreamIo::new(MaybeTls::Plain(tcp), None),
            h2: false,
        };
        Box::new(H1::handshake(d, 0).await.unwrap())
    }

    /// A full pool closes every idle connection past `idle_timeout` for
    /// one handed back, not only its least recently used (eviction alone
    /// would keep the other expired one): the live one stays, and the next
    /// request reuses the one handed back instead of dialling.
    #[tokio::test]
    async fn an_expired_idle_connection_makes_room_for_one_handed_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let timeout = Duration::from_secs(60);
        let pool = Pool::new(3, timeout);
        for _ in 0..3 {
            pool.put(h1(&listener).await);
        }
        // The two least recently used went idle longer ago than the timeout.
        for c in pool.state.lock().unwrap().idle.iter_mut().take(2) {
            c.idle_since = Some(Instant::now() - 2 * timeout);
        }
        let fresh = h1(&listener).await;
        let fresh_at: *const H1 = &*fresh;
        pool.put(fresh);
        assert_eq!(pool.idle(), 2, "an expired connection was kept");
        match pool.find(Want::Any, None) {
            Found::H1(c) => assert!(std::ptr::eq(&*c, fresh_at), "another one was handed out"),
            _ => panic!("the connection handed back was not kept"),
        }
    }

    /// A retired pool keeps nothing handed back, also a connection dialled
    /// after the retirement (which has the pool's generation of then): a
    /// request in flight of an upstream out of service dialled it.
    #[tokio::test]
    async fn a_retired_pool_keeps_no_connection_dialled_after_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = Pool::new(4, Duration::from_secs(60));
        pool.put(h1(&listener).await);
        pool.retire();
        assert_eq!(pool.idle(), 0, "an idle connection kept");
        let mut dialled = h1(&listener).await;
        dialled.generation = pool.generation();
        pool.put(dialled);
        assert_eq!(pool.idle(), 0, "a connection dialled after it was pooled");
        // A drain for a rotation is not a retirement: the pool goes on.
        let rotated = Pool::new(4, Duration::from_secs(60));
        rotated.drain();
        let mut dialled = h1(&listener).await;
        dialled.generation = rotated.generation();
        rotated.put(dialled);
        assert_eq!(rotated.idle(), 1, "a drained pool refused a new connection");
    }

    /// A dial given up between a request's look (which saw it in
    /// progress) and its wait is not missed: the wait ends at once.
    #[tokio::test]
    async fn a_dial_given_up_before_the_wait_begins_ends_it() {
        use futures_util::FutureExt;
        let pool = Pool::new(4, Duration::from_secs(60));
        // One dial at a time.
        pool.learned(true);
        let Found::Dial(token) = pool.find(Want::Any, None) else {
            panic!("no dial");
        };
        let Found::Wait(ticket) = pool.find(Want::Any, None) else {
            panic!("no wait behind the dial in progress");
        };
        token.abandon();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        assert!(
            matches!(
                pool.wait_for_dials(ticket, deadline).now_or_never(),
                Some(DialWait::Changed)
            ),
            "the wait goes on for a dial given up"
        );
    }

    /// An idle connection past `idle_timeout` is not handed to a request
    /// even before the sweep closes it: the upstream may be closing it at
    /// that very moment (its own keep-alive timeout), and a request written
    /// into that close is lost.
    #[tokio::test]
    async fn an_idle_connection_past_its_time_is_not_handed_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let timeout = Duration::from_secs(60);
        let pool = Pool::new(4, timeout);
        pool.put(h1(&listener).await);
        match pool.find(Want::Any, None) {
            Found::H1(c) => pool.put(c),
            _ => panic!("a connection within its time was not reused"),
        }
        pool.state.lock().unwrap().idle[0].idle_since = Some(Instant::now() - 2 * timeout);
        assert!(
            matches!(pool.find(Want::Any, None), Found::Dial(_)),
            "the expired connection was handed out"
        );
    }
}
