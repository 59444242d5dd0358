//! The admin listener's connection slots: 64 in all, 16 per client address, the longest stalled evicted for a newcomer.
//!
//! At its address's 16, a newcomer evicts the longest stalled of that
//! address's own, or else, at once, the one whose run of requests without
//! a token has lasted [`RUN`] longest, and is refused only when none of
//! them may be: kubelet probes a pod from the node's address, which the
//! node's agents and hostNetwork pods share, and their idle keep-alive
//! connections had every probe closed unanswered (their busy runs, every
//! probe in their busy part).
//!
//! A connection's time counts from its slot, not its accept, and it is not
//! evicted before its first request begins until a read of it has found
//! nothing on its socket and [`SPARE_FLOOR`] has passed: a probe that waited for its slot counted as idle
//! since its accept and, with no request read yet, was evicted for the
//! next newcomer before its task ran. A fixed second of grace instead
//! spared floods of connections that send nothing: a newcomer found every
//! connection spared, and waited (at its address's 16, was refused).
//!
//! Without eviction, clients that stop reading (or go quiet between
//! requests) could hold every slot until `send_timeout` or `idle_timeout`
//! cut them, while kubelet's `/healthz` waited in the backlog: four pods
//! × 16 connections restarted hotproxy. nginx does the same when its
//! `worker_connections` run out: it closes the keep-alive connections idle
//! longest ("worker_connections are not enough, reusing connections").
//! Here a new connection, when every slot is taken, closes the connection
//! that has waited on its client longest: blocked writing to a client that
//! does not read (since the write stopped moving), or with no request in
//! flight (idle, a head not yet complete, a lingering close: since the
//! last request ended or the connection began), or serving requests
//! without a token back to back for 5 s (since the first of them: a
//! client that pipelines requests and reads the answers slowly never
//! lets a write stay blocked long, nor the connection wait for a
//! request; a wait for the next shorter than [`REST`] counts as back to
//! back, or one that drained its answers every few seconds and sent the
//! next batch at once was evictable only within that round trip), or for
//! [`RUN`] once the newcomer has waited [`IMPATIENT`], counted from the
//! first of those held back one after another, and only when none has
//! waited on its client otherwise (clients busy 4.5 s of
//! every 5 kept probes waiting most of the time; the accept loop, serial,
//! had each queued newcomer wait its own quarter of a second). A request being
//! served whose writes move is never evicted otherwise, so only a client
//! holding a token (a slow body, a validation waiting its turn) can hold
//! a slot against a newcomer, and then only within the body and handler
//! bounds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::proxy::client_io::Unread;
use crate::proxy::conn::Activity;
use crate::proxy::plain::PlainTcp;

use super::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT};

/// With every slot taken by connections being served, how often the
/// accept loop looks again for one to evict (a request ending sends no
/// word); a slot given back, or a connection no longer spared
/// ([`Conn::spared`]), ends the wait at once.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// How long a write must have stopped moving before its connection may be
/// evicted: a client not reading for this long is stalled (kubelet's probe
/// timeout is 1 s by default, and a probe waits this long at most), while a
/// response read at speed blocks its writes for far less.
const STALLED: Duration = Duration::from_secs(5);

/// How long a connection must wait for its client's next request, every
/// answer sent, for its run of requests without a token to end. A
/// shorter wait (the round trip of a pipelining client that drains its
/// answers and sends the next batch at once) does not end it: a newcomer,
/// looking every [`LOOK_AGAIN`], seldom caught the connection within one.
/// Five looks; a probe or a scrape once a second or less often on a
/// keep-alive connection waits longer, so each of its requests begins a
/// run of its own (and is not evicted while served, its writes moving,
/// unless its answer takes [`RUN`] with a newcomer waiting).
const REST: Duration = Duration::from_millis(500);

/// How long a newcomer must have waited for its slot before a run of
/// requests without a token that has lasted [`RUN`] may make room for it:
/// counted from the first of those held back one after another
/// ([`State::held_since`]), as those queued behind one waited as long.
const IMPATIENT: Duration = Duration::from_millis(250);

/// A run of requests without a token this long may make room for a
/// newcomer that has waited [`IMPATIENT`]: clients that pipeline
/// requests and read steadily for a little under [`STALLED`], then drain
/// them and rest [`REST`] (a run of their own each time), had probes
/// landing in their busy part wait until the rest, most of it. Only a full
/// table, a newcomer waiting, or a 17th from the run's own address cuts a
/// run this short, and only when no other connection may make room.
const RUN: Duration = Duration::from_secs(1);

/// How long a connection whose first request has not begun is spared at
/// least, from its slot, even once a read has found its socket empty:
/// kubelet's Go client sends its request in a segment of its own tens of
/// µs after the handshake, so a probe read at once found nothing and, its
/// request still on its way, was evicted for the next newcomer. Short
/// enough that a flood of connections sending nothing (64 a second
/// would be needed for 64 slots, each held at most this long) cannot
/// keep the table spared.
const SPARE_FLOOR: Duration = Duration::from_millis(50);

/// A newcomer whose look comes this soon after the last one held back
/// was given its slot (or refused) was queued behind it: the accept loop,
/// serial, takes the next from the backlog at once. Its patience counts
/// from the first one held back ([`State::held_since`]).
const BEHIND: Duration = LOOK_AGAIN;

const NONE: u64 = u64::MAX;
const REST_MS: u64 = REST.as_millis() as u64;

/// Every admin connection open (through its lingering close), by id, and
/// per client address.
#[derive(Default)]
pub struct Slots {
    state: Mutex<State>,
    /// A slot was given back, or a connection is no longer spared
    /// ([`Conn::spared`]): the accept loop, serial, accepts nothing else
    /// while its newcomer waits.
    freed: Arc<Notify>,
}

#[derive(Default)]
struct State {
    next: u64,
    open: HashMap<u64, Arc<Conn>>,
    per_client: HashMap<IpAddr, usize>,
    /// Since when newcomers have been held back one after another for want
    /// of a connection to evict (the first one's arrival): with a serial
    /// accept loop, those queued behind one have waited as long. A
    /// newcomer that evicts at its first look, or is refused there, starts
    /// none (a stream of them through a table of idle keep-alive clients
    /// would otherwise make the next impatient at once, and cut a scrape's
    /// run of a second mid-body). Cleared when a newcomer finds room at
    /// its first look, or comes later than [`BEHIND`] after the last one
    /// held back was done with.
    held_since: Option<Instant>,
    /// When the last newcomer held back was given its slot or refused.
    held_done: Option<Instant>,
}

/// What the accept loop knows of one admin connection: how long it has
/// waited on its client, and how to close it.
pub struct Conn {
    peer: SocketAddr,
    activity: Arc<Activity>,
    /// When the slot was given: the connection's time counts from here.
    began: Instant,
    /// Milliseconds since `began` when a write to the client stopped
    /// moving (returned `Pending`); `NONE` while writes move.
    blocked_ms: AtomicU64,
    /// Milliseconds since `began` when the first of the requests without
    /// a token served back to back began; `NONE` before the first, and
    /// from a token holder's request on. Over once the connection has
    /// rested [`REST`].
    run_ms: AtomicU64,
    /// Milliseconds since `began` when the connection began waiting for
    /// its client's next request with nothing left to send; `NONE` from
    /// that request on.
    rest_ms: AtomicU64,
    /// A read found nothing on the socket: before its first request the
    /// connection is spared until then ([`Conn::spared`]).
    dry: AtomicBool,
    /// Its first request has begun ([`Conn::request`], called before the
    /// request's [`Activity::begin`]).
    asked: AtomicBool,
    /// The table's [`Slots::freed`]: told when the connection is no longer
    /// spared, so a newcomer waiting on it looks again at once.
    looked_at: Arc<Notify>,
    evicted: AtomicBool,
    /// The connection's task, to drop its connection at once.
    evict: Notify,
    /// The last task to use the stream (the connection's, then its
    /// lingering close), woken to find it evicted.
    waker: Mutex<Option<Waker>>,
}

/// One connection's slot and its place among its address's 16; given
/// back when dropped, after the lingering close.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    ip: IpAddr,
    conn: Arc<Conn>,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `ip`, evicting the connection that has
    /// waited on its client longest while every slot is taken (waiting
    /// while none may be evicted), or, while `ip` holds
    /// [`MAX_CONNECTIONS_PER_CLIENT`] already, the one of its own that has
    /// (or else whose run without a token has lasted [`RUN`], at once).
    /// `None`: `ip` holds that many and none of them may be evicted, nor
    /// is spared as not read yet ([`Conn::spared`]): the connection is
    /// refused.
    /// The connection's [`Activity`] begins with its slot
    /// ([`Conn::activity`]).
    pub async fn take(self: &Arc<Self>, peer: SocketAddr) -> Option<Slot> {
        let ip = peer.ip().to_canonical();
        let arrived = Instant::now();
        {
            let mut state = self.lock();
            if state.held_done.is_some_and(|at| at.elapsed() > BEHIND) {
                state.held_since = None;
                state.held_done = None;
            }
        }
        let mut held = false;
        // Found nothing it could evict at a look: held back for want of
        // one, which alone starts (or carries on) the shared patience; a
        // newcomer that evicted at its first look, or was refused there,
        // waited on nothing a client did.
        let mut stuck = false;
        let mut wait;
        loop {
            // A slot given back after the look leaves a permit: the wait
            // below ends at once (an older permit ends it early, and the
            // loop looks again).
            let freed = self.freed.notified();
            {
                let mut state = self.lock();
                // Its own wait, or that of the first held back before it.
                let since = state.held_since.map_or(arrived, |s| s.min(arrived));
                let impatient = since.elapsed() >= IMPATIENT;
                // A spare ending at its floor tells no one: look again then.
                let floor = state.open.values().filter_map(|c| c.floor_ends()).min();
                wait = floor.map_or(LOOK_AGAIN, |at| {
                    at.saturating_duration_since(Instant::now()).min(LOOK_AGAIN)
                });
                if state.per_client.get(&ip).copied().unwrap_or(0) >= MAX_CONNECTIONS_PER_CLIENT {
                    // kubelet probes from the node's address, which the
                    // node's agents and hostNetwork pods share: their idle
                    // connections make room for it, as the table's do.
                    let why =
                        "its client address holds 16 already, and it waited on its client longest";
                    let own = |c: &Conn| c.peer.ip().to_canonical() == ip;
                    // One just given its slot whose task has not read it
                    // yet: looked at again once it has. Else a run without
                    // a token of [`RUN`] makes room at once, as for a
                    // newcomer that waited: it does not wait (the accept
                    // loop, serial, would hold every other newcomer with
                    // it), and kubelet's probe, from an address whose 16
                    // each served such runs a little under [`STALLED`] at
                    // a time, was closed whenever it came in their busy
                    // part.
                    if !state.make_room(own, why, impatient)
                        && !state.open.values().any(|c| own(c) && c.spared())
                        && !state.make_room(own, why, true)
                    {
                        if stuck {
                            state.held_done = Some(Instant::now());
                        }
                        return None;
                    }
                } else if state.open.len() < MAX_CONNECTIONS {
                    if stuck {
                        state.held_done = Some(Instant::now());
                    } else if !held {
                        // Room at once: no one is held back.
                        state.held_since = None;
                        state.held_done = None;
                    }
                    return Some(state.admit(self, peer, ip));
                } else {
                    let why = "every slot is taken, and it waited on its client longest";
                    if !state.make_room(|_| true, why, impatient) {
                        stuck = true;
                        state.held_since.get_or_insert(arrived);
                    }
                }
            }
            held = true;
            let _ = tokio::time::timeout(wait, freed).await;
        }
    }
}

impl State {
    /// Evicts the connection that has waited on its client longest among
    /// those `among` picks, unless one of them is being evicted already
    /// (one newcomer at a time, so one eviction at a time: the connection
    /// evicted for it frees its slot at once). `impatient`: the newcomer
    /// has waited [`IMPATIENT`], and a run without a token of [`RUN`] may
    /// make room, but only when no other connection may: it began before
    /// the last request of a connection idle since, and a newcomer queued
    /// behind an impatient one cut a `/metrics` scrape mid-body while
    /// idle connections were there to take. Whether one of them is being
    /// evicted now.
    fn make_room(&self, among: impl Fn(&Conn) -> bool, why: &str, impatient: bool) -> bool {
        let theirs = self.open.values().filter(|c| among(c));
        if theirs.clone().any(|c| c.evicted.load(Ordering::SeqCst)) {
            return true;
        }
        let now = Instant::now();
        let oldest = |impatient| {
            theirs
                .clone()
                .filter_map(|c| c.waiting_since(now, impatient).map(|since| (since, c)))
                .min_by_key(|(since, _)| *since)
        };
        let victim = oldest(false).or_else(|| impatient.then(|| oldest(true)).flatten());
        let Some((since, victim)) = victim else {
            return false;
        };
        tracing::debug!(
            peer = %victim.peer,
            waited_ms = now.saturating_duration_since(since).as_millis() as u64,
            "admin connection evicted: {why}"
        );
        victim.evict();
        true
    }

    fn admit(&mut self, slots: &Arc<Slots>, peer: SocketAddr, ip: IpAddr) -> Slot {
        let id = self.next;
        self.next += 1;
        let now = Instant::now();
        // Keep-alive until the shutdown: whether the connection is
        // answered during the drain is the driver's to decide when it sees
        // the signal (`answer_unbegun`), not this slot's, which a wait
        // for it may leave behind the signal.
        let conn = Arc::new(Conn {
            peer,
            activity: Activity::new(now, true),
            began: now,
            blocked_ms: AtomicU64::new(NONE),
            run_ms: AtomicU64::new(NONE),
            rest_ms: AtomicU64::new(NONE),
            dry: AtomicBool::new(false),
            asked: AtomicBool::new(false),
            looked_at: slots.freed.clone(),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
            waker: Mutex::new(None),
        });
        self.open.insert(id, conn.clone());
        *self.per_client.entry(ip).or_default() += 1;
        Slot {
            slots: slots.clone(),
            id,
            ip,
            conn,
        }
    }
}

impl Slot {
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        state.open.remove(&self.id);
        if let Some(n) = state.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.per_client.remove(&self.ip);
            }
        }
        drop(state);
        self.slots.freed.notify_one();
    }
}

impl Conn {
    /// The connection's requests, timed from its slot.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// Since when the connection has waited on its client, the earliest
    /// of: a write stopped moving for [`STALLED`] at least; requests
    /// without a token served back to back for [`STALLED`] at least (since
    /// the first: each write of a client pipelining requests and reading
    /// slowly moves again soon, and the next request is there as one
    /// ends); no request in flight. `None`: a request is being served and
    /// its writes move, or stopped only briefly (any response larger than
    /// the socket buffer blocks a write for a moment, a `/metrics` scrape
    /// read at full speed too: without the bound, clients without a token
    /// keeping their own connections fresh could have such a response cut
    /// mid-body). `impatient` (a newcomer has waited [`IMPATIENT`]): such
    /// a run counts once it has lasted [`RUN`]. None while
    /// [`Conn::spared`].
    fn waiting_since(&self, now: Instant, impatient: bool) -> Option<Instant> {
        if self.spared() {
            return None;
        }
        let since = |ms: u64| (self.began + Duration::from_millis(ms)).min(now);
        let lasted = |ms: u64, bound: Duration| {
            let since = since(ms);
            (ms != NONE && now.saturating_duration_since(since) >= bound).then_some(since)
        };
        let stalled = |ms: u64| lasted(ms, STALLED);
        let rest = self.rest_ms.load(Ordering::SeqCst);
        let run = match self.run_ms.load(Ordering::SeqCst) {
            _ if rest != NONE && self.ms(now).saturating_sub(rest) >= REST_MS => NONE,
            run => run,
        };
        let run = lasted(run, if impatient { RUN } else { STALLED });
        let blocked = self.blocked_ms.load(Ordering::SeqCst);
        let other = if blocked != NONE {
            stalled(blocked)
        } else {
            self.activity.quiet_since()
        };
        match (run, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Its first request has not begun, and no read of it has found its
    /// socket empty yet (its task has not read it: a probe that waited for
    /// its slot has its request there, read at that task's first poll; or
    /// the runtime has not seen yet the bytes on it), or [`SPARE_FLOOR`]
    /// has not passed since its slot (a request sent just after the
    /// handshake is on its way). A connection that sends nothing is
    /// spared only until its task first runs and the floor has passed.
    fn spared(&self) -> bool {
        !self.asked.load(Ordering::SeqCst)
            && !self.activity.asked()
            && (!self.dry.load(Ordering::SeqCst) || self.began.elapsed() < SPARE_FLOOR)
    }

    /// When its spare ends with its floor: found empty, its first request
    /// not begun, the floor not passed yet.
    fn floor_ends(&self) -> Option<Instant> {
        let at = self.began + SPARE_FLOOR;
        (self.dry.load(Ordering::SeqCst)
            && !self.asked.load(Ordering::SeqCst)
            && !self.activity.asked()
            && Instant::now() < at)
            .then_some(at)
    }

    /// The connection is no longer spared: a newcomer waiting on it looks
    /// again now, not a [`LOOK_AGAIN`] later.
    fn unspared(&self) {
        self.looked_at.notify_one();
    }

    /// Milliseconds from `began` to `at`.
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.began).as_millis() as u64
    }

    /// A request begins: `token`, its bearer token is one the API takes
    /// (or the API has none). A token holder's request ends the run of
    /// requests without one; one without one begins a run, unless it
    /// comes within [`REST`] of the connection's last wait for a request.
    pub fn request(&self, token: bool) {
        if !self.asked.swap(true, Ordering::SeqCst) && !self.dry.load(Ordering::SeqCst) {
            self.unspared();
        }
        let now = self.ms(Instant::now());
        let rest = self.rest_ms.swap(NONE, Ordering::SeqCst);
        if token {
            self.run_ms.store(NONE, Ordering::SeqCst);
        } else if self.run_ms.load(Ordering::SeqCst) == NONE
            || (rest != NONE && now.saturating_sub(rest) >= REST_MS)
        {
            self.run_ms.store(now, Ordering::SeqCst);
        }
    }

    /// The connection waits for its client's next request with nothing
    /// left to send: once for [`REST`], the run of requests without a
    /// token is over.
    fn rests(&self) {
        if self.activity.quiet_since().is_some() {
            let now = self.ms(Instant::now());
            let _ = self
                .rest_ms
                .compare_exchange(NONE, now, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.evict.notify_one();
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Completes when the accept loop evicts the connection.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// Whether evicted; else the task polling now is woken when it is.
    fn check(&self, cx: &Context<'_>) -> bool {
        if self.evicted.load(Ordering::SeqCst) {
            return true;
        }
        {
            let mut waker = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            match &*waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        // Evicted between the first look and the waker's registration.
        self.evicted.load(Ordering::SeqCst)
    }
}

/// An admin connection's stream: notes when writes stop moving, and fails
/// every operation once the connection is evicted (its lingering close
/// too), closing with a reset so the kernel drops what the client left
/// unread. Its plain TCP stream reads the bytes a look at a close found
/// itself (src/proxy/plain.rs).
pub struct SlotIo {
    inner: PlainTcp,
    conn: Arc<Conn>,
    blocked: bool,
    /// Written to since the last flush that completed: hyper flushes the
    /// stream only once its own buffer is empty, so until then a response
    /// is still being sent.
    unflushed: bool,
    reset: bool,
}

impl SlotIo {
    pub fn new(inner: TcpStream, conn: Arc<Conn>) -> SlotIo {
        SlotIo {
            inner: PlainTcp::new(inner),
            conn,
            blocked: false,
            unflushed: false,
            reset: false,
        }
    }

    /// `Some(error)` once evicted.
    fn evicted(&mut self, cx: &Context<'_>) -> Option<std::io::Error> {
        if !self.conn.check(cx) {
            return None;
        }
        if !self.reset {
            self.reset = true;
            let _ = self.inner.get_ref().set_zero_linger();
        }
        Some(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "evicted: every admin connection was taken, and this one waited on its client longest",
        ))
    }

    /// Follow whether writes move.
    fn wrote<T>(&mut self, res: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        let blocked = res.is_pending();
        if blocked != self.blocked {
            self.blocked = blocked;
            let ms = if blocked {
                self.conn.began.elapsed().as_millis() as u64
            } else {
                NONE
            };
            self.conn.blocked_ms.store(ms, Ordering::SeqCst);
        }
        res
    }
}

impl Unread for SlotIo {
    fn unread(&self) -> bool {
        self.inner.unread()
    }

    fn queued(&self) -> usize {
        self.inner.queued()
    }

    fn pull(&mut self, most: usize) -> usize {
        self.inner.pull(most)
    }

    fn read_held(&mut self, buf: &mut ReadBuf<'_>) -> Option<std::io::Result<()>> {
        self.inner.read_held(buf)
    }

    fn peek_held(&mut self) -> Option<std::io::Result<&[u8]>> {
        self.inner.peek_held()
    }

    fn consume_held(&mut self, n: usize) {
        self.inner.consume_held(n)
    }
}

/// Plain TCP: each write's result says whether it wrote.
impl crate::tls::sent::Sent for SlotIo {
    fn sent(&self) -> u64 {
        0
    }
}

impl AsyncRead for SlotIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.evicted(cx) {
            return Poll::Ready(Err(e));
        }
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if res.is_pending() {
            // Nothing on the socket itself either (the runtime may not
            // have seen yet what is): no request is coming at once.
            if !this.conn.dry.load(Ordering::SeqCst) && !this.inner.unread() {
                this.conn.dry.store(true, Ordering::SeqCst);
                if !this.conn.asked.load(Ordering::SeqCst) && !this.conn.activity.asked() {
                    this.conn.unspared();
                }
            }
            if !this.unflushed {
                this.conn.rests();
            }
        }
        res
    }
}

impl AsyncWrite for SlotIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.evicted(cx) {
            return Poll::Ready(Err(e));
        }
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.unflushed = true;
        this.wrote(res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.evicted(cx) {
            return Poll::Ready(Err(e));
        }
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.unflushed = true;
        this.wrote(res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.evicted(cx) {
            return Poll::Ready(Err(e));
        }
        let res = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(res, Poll::Ready(Ok(()))) {
            this.unflushed = false;
        }
        this.wrote(res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.evicted(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
