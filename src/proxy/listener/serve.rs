//! A listener's accept loop: `max_connections` taken before accept, the [`Slot`] each connection holds, a given-up socket's queue served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;
use std::time::Instant;

use socket2::{SockFilter, SockRef};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, error, info, warn};

use super::{Listener, connection};
use crate::proxy::accept::Acceptor;
use crate::proxy::drain::{Drain, DrainGuard};

/// Signals every accept loop and connection of the process: `true` = stop
/// accepting and close connections gracefully.
pub type Shutdown = watch::Receiver<bool>;

/// One client connection's claim on its listener: a `max_connections`
/// permit, a place in the shutdown drain and in the active gauges. Shared
/// by the connection, a tunnel it upgrades to, and its lingering close:
/// released when the last of them ends.
pub struct Slot {
    listener: Arc<Listener>,
    _permit: OwnedSemaphorePermit,
    pub(super) drain: DrainGuard,
}

impl Slot {
    pub(crate) fn new(
        listener: Arc<Listener>,
        permit: OwnedSemaphorePermit,
        drain: DrainGuard,
    ) -> Arc<Slot> {
        listener.active.fetch_add(1, Ordering::Relaxed);
        listener.series.connections.inc();
        Arc::new(Slot {
            listener,
            _permit: permit,
            drain,
        })
    }
}

impl Slot {
    /// The process's shutdown signal.
    pub fn shutdown(&self) -> Shutdown {
        self.drain.shutdown()
    }

    /// `runtime.shutdown_grace`: how long requests in flight may still
    /// run once their connection is closing.
    pub fn grace(&self) -> std::time::Duration {
        self.drain.grace()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listener.series.connections.dec();
        self.listener.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection taken from the queue of a socket given up: the stream, its
/// peer, when it was accepted.
type Taken = (TcpStream, SocketAddr, Instant);

/// Where the connections queued on a socket given up go when they were
/// queued for the address of a listener bound beside it (the same port,
/// one of them the wildcard: a re-bind): to that listener, `bind`.
#[derive(Clone, Debug)]
pub struct Heir {
    bind: SocketAddr,
    queue: UnboundedSender<Taken>,
}

/// What a listener bound beside the socket of one that gives up an
/// overlapping address gets of that socket's queue: the connections queued
/// for its own address. The kernel goes on queueing connections to the old
/// socket (the more specific address has them) until it closes, and
/// closing it resets those queued: the old listener takes them all first
/// and sends each to the listener now on the address it was queued for
/// ([`Heir`]), and this one serves them as its own.
pub struct Inherited {
    queue: UnboundedReceiver<Taken>,
}

impl Inherited {
    /// For a listener bound to `bind` beside a socket given up: the
    /// [`Heir`] its old listener sends the connections queued for `bind`
    /// to, and their queue, which this listener serves.
    pub fn beside(bind: SocketAddr) -> (Heir, Inherited) {
        let (queue, taken) = unbounded_channel();
        (Heir { bind, queue }, Inherited { queue: taken })
    }
}

/// Whether a reload stopped a listener's accept loop, and how: read on
/// every connection without the lock of the listener's `removed` watch.
#[derive(Debug, Default)]
pub struct Removal(AtomicU8);

impl Removal {
    const REMOVED: u8 = 1;
    const HANDED_OVER: u8 = 2;

    /// Removed or bound elsewhere; `handed_over` ([`Stop::HandedOver`]):
    /// another listener serves on its socket (a rename, a port swap), so
    /// its address never stopped serving.
    pub fn set(&self, handed_over: bool) {
        let state = if handed_over {
            Self::HANDED_OVER
        } else {
            Self::REMOVED
        };
        self.0.store(state, Ordering::Relaxed);
    }

    /// Removed, bound elsewhere or handed over.
    pub fn removed(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    /// Handed over: a client its loop took is one of the address's.
    pub fn handed_over(&self) -> bool {
        self.0.load(Ordering::Relaxed) == Self::HANDED_OVER
    }
}

/// What the reloader tells a listener's accept loop.
#[derive(Clone, Debug)]
pub enum Stop {
    /// Accept connections.
    No,
    /// Stop at once: the socket goes on with another listener, which
    /// serves what it has queued (a rename or a port swap serves on it).
    HandedOver,
    /// Stop, take what the socket has queued, close it, then serve those
    /// taken: the listener is removed or bound elsewhere, and no listener
    /// serves on its socket. Each connection queued for the address of a
    /// listener bound beside it (its heirs, as a wildcard is replaced by
    /// specific addresses of its port, each by its own) goes to that one;
    /// this one serves the others. The accept loop keeps new connections
    /// off it first (a SYN filter).
    GivenUp(Vec<Heir>),
}

/// Accept connections on `socket` until `stop` or `shutdown` says so;
/// those queued for its address on the socket of an old listener it is
/// bound beside too (`inherited`), as that listener hands them out.
/// Given up ([`Stop::GivenUp`]), it keeps new connections off its socket,
/// takes its own queue before closing it, and serves those no listener
/// bound beside it covers.
pub async fn serve(
    listener: Arc<Listener>,
    socket: TcpListener,
    mut stop: watch::Receiver<Stop>,
    shutdown: Shutdown,
    drain: Arc<Drain>,
    inherited: Option<Inherited>,
) {
    // max_connections is enforced with a semaphore taken *before* accept, so
    // excess clients wait in the kernel backlog rather than being reset.
    // One semaphore for the listener's life: a new limit adds permits, or
    // takes them back (those in use as their connections end), so the
    // connections open under the old limit count against the new one.
    let mut slots_for = listener.settings.load().limits.max_connections;
    let slots = Arc::new(Semaphore::new(slots_for));
    // Permits a lowered limit still has to take back from connections open now.
    let mut owed = 0usize;
    let mut shutdown_rx = shutdown.clone();
    let mut acceptor = Acceptor::new(&listener.name);
    // The reloader is gone (its thread panicked): said once, then served on.
    let mut orphaned = false;
    // The accept loop holds a slot while it waits in accept(): the hand-out
    // of clients queued before it (inherited) asks for it back, else they
    // would get only M-1 of M slots, none with max_connections 1.
    let wanted_back = inherited.as_ref().map(|_| Arc::new(Notify::new()));
    if let Some(Inherited { queue }) = inherited {
        // Under this listener's config and max_connections; it ends once
        // the old listener has taken its whole queue (or shutdown begins).
        tokio::spawn(hand_out(
            listener.clone(),
            queue,
            slots.clone(),
            0,
            shutdown.clone(),
            drain.clone(),
            wanted_back.clone(),
        ));
    }
    loop {
        let wanted = listener.settings.load().limits.max_connections;
        if wanted > slots_for {
            let more = wanted - slots_for;
            let repaid = more.min(owed);
            owed -= repaid;
            slots.add_permits(more - repaid);
        } else if wanted < slots_for {
            let fewer = slots_for - wanted;
            owed += fewer - slots.forget_permits(fewer);
        }
        slots_for = wanted;
        let permit = tokio::select! {
            // Shutdown wins over a slot come free at the same time.
            biased;
            _ = shutdown_rx.wait_for(|s| *s) => break,
            () = told_to_stop(&mut stop, &mut orphaned, &listener.name) => break,
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            // A reload changed max_connections: look again.
            () = listener.limits_changed.notified() => continue,
        };
        if owed > 0 {
            // A connection under the old, higher limit ended: its permit goes to the lower one.
            permit.forget();
            owed -= 1;
            continue;
        }
        let (stream, peer) = tokio::select! {
            // Stopped first: a listener whose socket another took over
            // (a rename, a port swap) accepts nothing more once told,
            // where a connection it took would be closed at once.
            biased;
            _ = shutdown_rx.wait_for(|s| *s) => break,
            () = told_to_stop(&mut stop, &mut orphaned, &listener.name) => break,
            // A client handed over waits for a slot: this idle one goes
            // to it (the semaphore serves waiters in order), and this loop
            // waits its turn for the next.
            () = asked_back(wanted_back.as_deref()) => {
                drop(permit);
                continue;
            }
            a = acceptor.accept(&socket) => a,
        };
        let slot = Slot::new(listener.clone(), permit, drain.enter());
        // Accepted before any removal: the loop has not stopped.
        tokio::spawn(connection(
            listener.clone(),
            stream,
            peer,
            slot,
            Instant::now(),
            false,
        ));
    }
    let stopped = stop.borrow().clone();
    // Removed, re-bound or shutting down: its connections close too.
    if !matches!(stopped, Stop::No) {
        listener.set_removed(matches!(stopped, Stop::HandedOver));
    }
    if let Stop::GivenUp(heirs) = stopped
        && !*shutdown_rx.borrow()
    {
        // Its connections close first, letting their slots go to those
        // queued, which are served as its last and close the same way.
        listener.closing.send_replace(true);
        debug!(listener = %listener.name, "accept loop stopped; serving its queue");
        match socket.into_std() {
            Ok(socket) => {
                // Here, not by the reloader: it may hold no descriptor of
                // the socket (its duplicate refused at the descriptor
                // limit). A SYN queued before this is taken with the rest.
                // Not fatal: without it, a client whose SYN comes in the
                // instant the socket closes is reset.
                if let Err(e) = refuse_new_connections(&socket) {
                    warn!(listener = %listener.name, error = %e, "cannot keep new connections off the socket given up");
                }
                serve_queue(&listener, socket, &heirs, &slots, owed, shutdown_rx, &drain).await;
            }
            Err(e) => {
                warn!(listener = %listener.name, error = %e, "cannot serve the queue of the socket given up; closing it");
            }
        }
        return;
    }
    if *shutdown_rx.borrow() {
        close_now(&listener.name, &socket);
    }
    drop(socket);
    listener.closing.send_replace(true);
    debug!(listener = %listener.name, "accept loop stopped");
}

/// Shutting down: the port closes now, new clients refused at once (they
/// try another pod). Dropping this descriptor alone did not close it: the
/// reloader holds a duplicate for a hand-over, let go only when it came to
/// it, behind every SIGHUP's re-read queued (11 s seen with 1,000 entries),
/// while the kernel went on completing handshakes nobody would accept. On
/// Linux `shutdown(SHUT_RD)` on a listening socket stops it listening
/// (`tcp_disconnect`), whatever descriptors still refer to it.
fn close_now(name: &str, socket: &TcpListener) {
    if let Err(e) = SockRef::from(socket).shutdown(std::net::Shutdown::Read) {
        warn!(listener = %name, error = %e, "cannot close the listening socket at shutdown; it closes once the reloader lets it go");
    }
}

/// Until the reloader tells the accept loop to stop. Gone without a word
/// (its sender dropped: the reloader's thread panicked), it never will:
/// the listener serves on under the configuration it has, said once at
/// ERROR (`orphaned`), since reloads are no longer applied. Stopping every
/// listener then left a process up with nothing serving, and no log line
/// saying why.
async fn told_to_stop(stop: &mut watch::Receiver<Stop>, orphaned: &mut bool, listener: &str) {
    if !*orphaned {
        if stop.wait_for(|s| !matches!(s, Stop::No)).await.is_ok() {
            return;
        }
        *orphaned = true;
        error!(listener = %listener, "the reloader has stopped; this listener goes on serving its current configuration, but reloads, certificate rotations and admin API changes are no longer applied: restart the process");
    }
    std::future::pending().await
}

/// Once the hand-out of the clients a listener inherited asks for the slot
/// its accept loop holds; never for a listener that inherited none.
async fn asked_back(wanted_back: Option<&Notify>) {
    match wanted_back {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// Accept what a listening socket nobody else accepts on has queued, until
/// none is left (`WouldBlock`) or shutdown begins, then close it (dropped):
/// the kernel resets a connection still queued on a listening socket that
/// closes. New connections are kept off it ([`refuse_new_connections`]), so
/// none comes between the last `accept()` and the close. The whole queue is
/// taken at once, without waiting for a slot: the socket, which drops every
/// SYN meanwhile, closes at once, so a client retrying finds the port
/// closed (or a new listener on it) rather than hanging, and a reload may
/// bind the address again. Each connection taken waits its turn for a slot
/// meanwhile ([`hand_out`]): one of the listener bound beside it on the
/// address it was queued for (`heirs`), which answers it with its own
/// certificates, routes and limits, else one of this listener's.
async fn serve_queue(
    listener: &Arc<Listener>,
    socket: std::net::TcpListener,
    heirs: &[Heir],
    slots: &Arc<Semaphore>,
    owed: usize,
    mut shutdown: Shutdown,
    drain: &Arc<Drain>,
) {
    let header_read_timeout = listener.settings.load().limits.header_read_timeout;
    let (taken, queue) = unbounded_channel();
    tokio::spawn(hand_out(
        listener.clone(),
        queue,
        slots.clone(),
        owed,
        shutdown.clone(),
        drain.clone(),
        None,
    ));
    let (mut queued, mut handed) = (0usize, 0usize);
    // A failed accept() (out of descriptors: EMFILE, ENFILE) is retried
    // after a pause, as the accept loop does, while those taken before are
    // served (and, closing, give their descriptors back): closed then, the
    // socket would reset all those left. For at most header_read_timeout,
    // what a client queued would be given to be served, then it closes.
    let mut acceptor = Acceptor::new(&listener.name);
    let give_up = Instant::now() + header_read_timeout;
    // Shutdown ends it at once, as it ends every accept.
    while !*shutdown.borrow() {
        // Non-blocking (the file the accept loop had): no wait.
        let (stream, peer) = match socket.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) if Instant::now() >= give_up => {
                warn!(listener = %listener.name, error = %e, "accepting what the socket given up queued still failed after header_read_timeout; closing it");
                break;
            }
            Err(e) => {
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|s| *s) => break,
                    () = acceptor.back_off(&e) => continue,
                }
            }
        };
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream))
        {
            Ok(s) => s,
            Err(_) => continue,
        };
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        queued += 1;
        let heir = stream.local_addr().ok().and_then(|at| heir_for(heirs, at));
        let to = match heir {
            Some(heir) => {
                handed += 1;
                &heir.queue
            }
            None => &taken,
        };
        // Gone only if shutdown ended the hand-out: this ends next.
        let _ = to.send((stream, peer, Instant::now()));
    }
    drop(socket);
    debug!(listener = %listener.name, queued, handed, "took the queue of the socket given up; closed it");
}

/// The listener bound beside a socket given up that now has `at`, the
/// address a connection was queued for on it: bound to that very address,
/// else to the wildcard of its family on that port (`[::]` takes IPv4 too).
fn heir_for(heirs: &[Heir], at: SocketAddr) -> Option<&Heir> {
    let ip = at.ip().to_canonical();
    let on_port = || heirs.iter().filter(move |h| h.bind.port() == at.port());
    on_port()
        .find(|h| h.bind.ip().to_canonical() == ip)
        .or_else(|| {
            on_port().find(|h| h.bind.ip().is_unspecified() && (h.bind.is_ipv6() || ip.is_ipv4()))
        })
}

/// Give each connection taken from the queue of a socket given up
/// ([`serve_queue`]), by its own listener or for one bound beside it,
/// a slot of `slots` (`listener`'s `max_connections`,
/// `owed` permits of it still to be taken back from a lowered limit
/// first), in the order they were queued, and serve it as `listener`'s;
/// one whose `header_read_timeout` (counted from its accept) passes first
/// is closed unserved, as is every one still waiting when shutdown begins.
/// Waiting, it asks the accept loop still running on `slots` for the one
/// it holds idle in accept() (`wanted_back`): these clients were queued
/// before any it would accept.
async fn hand_out(
    listener: Arc<Listener>,
    mut queue: UnboundedReceiver<Taken>,
    slots: Arc<Semaphore>,
    mut owed: usize,
    mut shutdown: Shutdown,
    drain: Arc<Drain>,
    wanted_back: Option<Arc<Notify>>,
) {
    let header_read_timeout = listener.settings.load().limits.header_read_timeout;
    let mut served = 0usize;
    loop {
        let next = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break,
            next = queue.recv() => next,
        };
        let Some((stream, peer, accepted)) = next else {
            break;
        };
        let due = tokio::time::Instant::from_std(accepted + header_read_timeout);
        let permit = loop {
            let mut acquire = std::pin::pin!(slots.clone().acquire_owned());
            let mut at_once = None;
            if let Some(wanted_back) = &wanted_back {
                // In line first (a first poll queues the waiter), then ask:
                // the slot the accept loop drops then comes here, not back
                // to it.
                match std::future::poll_fn(|cx| Poll::Ready(acquire.as_mut().poll(cx))).await {
                    Poll::Ready(p) => at_once = Some(p),
                    Poll::Pending => wanted_back.notify_one(),
                }
            }
            let permit = match at_once {
                Some(p) => Some(p),
                None => tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|s| *s) => None,
                    p = tokio::time::timeout_at(due, acquire) => p.ok(),
                },
            };
            let Some(permit) = permit else {
                break None;
            };
            let permit = permit.expect("semaphore never closed");
            if owed == 0 {
                break Some(permit);
            }
            // A connection under the old, higher limit ended: its permit goes to the lower one.
            permit.forget();
            owed -= 1;
        };
        let Some(permit) = permit else {
            debug!(listener = %listener.name, peer = %peer, "queued connection closed: no slot within header_read_timeout, or shutting down");
            continue;
        };
        let slot = Slot::new(listener.clone(), permit, drain.enter());
        // Taken from the queue of a socket given up (its listener
        // removed), or inherited by a listener bound beside one.
        let answer_first = listener.is_removed();
        tokio::spawn(connection(
            listener.clone(),
            stream,
            peer,
            slot,
            accepted,
            answer_first,
        ));
        served += 1;
    }
    debug!(listener = %listener.name, served, "served the queue of the socket given up");
}

/// Bind a listener socket (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Log that a listener is up. Tests and operators read the bound address
/// from this line (the configuration may say port 0); one set by
/// `${NAME}` is withheld, its port said apart when the system chose it
/// ([`crate::config::Shown::bound`]).
pub fn log_listening(
    name: &str,
    shown: &crate::config::Shown,
    bind: SocketAddr,
    bound: SocketAddr,
) {
    let (addr, port) = shown.bound(bind, bound);
    info!(listener = %name, addr = %addr, port, "listening");
}

/// Keep new connections off a listening socket that is about to close,
/// while those it has queued, and the handshakes it has begun, are still
/// served: a socket filter drops every SYN (flags `SYN` without `ACK`).
/// The kernel gives a more specific address its connections for as long
/// as it listens, so without this one can be queued in the instant between
/// the last `accept()` and the close, and the close resets it. A client
/// whose SYN is dropped sends it again (after a second, as for a full
/// backlog), to whichever socket then has the address.
fn refuse_new_connections(l: &std::net::TcpListener) -> std::io::Result<()> {
    // Classic BPF; on a TCP socket it reads the segment from its TCP
    // header, whose byte 13 holds the flags.
    const LDB_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    let filter = [
        SockFilter::new(LDB_ABS, 0, 0, 13),
        SockFilter::new(AND_K, 0, 0, SYN | ACK),
        // A SYN alone: on to the drop; anything else: past it.
        SockFilter::new(JEQ_K, 0, 1, SYN),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ];
    SockRef::from(l).attach_filter(&filter)
}
