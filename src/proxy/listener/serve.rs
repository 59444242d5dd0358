//! A listener's accept loop: `max_connections` taken before accept, the [`Slot`] each connection holds, a given-up socket's queue served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, info, warn};

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
    fn new(listener: Arc<Listener>, permit: OwnedSemaphorePermit, drain: DrainGuard) -> Arc<Slot> {
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
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listener.series.connections.dec();
        self.listener.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The listening socket of a listener that gives up an address this one's
/// now covers (the same port, one of them the wildcard: a re-bind), with
/// the signal that its accept loop has stopped. The kernel goes on queueing
/// connections to it (the more specific address has them) until it closes,
/// and closing it resets those queued: this listener serves them first.
pub struct Inherited {
    pub socket: std::net::TcpListener,
    /// The old listener's `closing`, set once its accept loop has stopped
    /// and let go of its descriptor.
    pub stopped: watch::Receiver<bool>,
}

/// What the reloader tells a listener's accept loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Accept connections.
    No,
    /// Stop at once: the socket goes on with another listener, which
    /// serves what it has queued (a rename or a port swap serves on it, a
    /// listener bound beside it takes it over: [`Inherited`]).
    HandedOver,
    /// Stop, take what the socket has queued, close it, then serve those
    /// taken: the listener is removed or bound elsewhere, and no listener
    /// takes its socket over. The reloader keeps new connections off it
    /// first.
    GivenUp,
}

/// Accept connections on `socket` until `stop` or `shutdown` says so;
/// those still queued on the socket of an old listener this one replaces
/// too (`inherited`), once that listener's accept loop has stopped.
/// Given up ([`Stop::GivenUp`]), it serves its own queue before closing.
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
    if let Some(old) = inherited {
        let (listener, slots, drain) = (listener.clone(), slots.clone(), drain.clone());
        tokio::spawn(take_over(listener, old, slots, shutdown.clone(), drain));
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
            _ = stop.wait_for(|s| *s != Stop::No) => break,
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
            _ = stop.wait_for(|s| *s != Stop::No) => break,
            a = acceptor.accept(&socket) => a,
        };
        let slot = Slot::new(listener.clone(), permit, drain.enter());
        tokio::spawn(connection(
            listener.clone(),
            stream,
            peer,
            slot,
            Instant::now(),
        ));
    }
    let stopped = *stop.borrow();
    // Removed, re-bound or shutting down: its connections close too.
    if stopped != Stop::No {
        listener.set_removed();
    }
    if stopped == Stop::GivenUp && !*shutdown_rx.borrow() {
        // Its connections close first, letting their slots go to those
        // queued, which are served as its last and close the same way.
        listener.closing.send_replace(true);
        debug!(listener = %listener.name, "accept loop stopped; serving its queue");
        match socket.into_std() {
            Ok(socket) => {
                serve_queue(&listener, socket, &slots, owed, shutdown_rx, &drain).await;
            }
            Err(e) => {
                warn!(listener = %listener.name, error = %e, "cannot serve the queue of the socket given up; closing it");
            }
        }
        return;
    }
    // Let go before saying so: a listener taking over the socket closes it
    // once it has served its queue, and this descriptor would keep it open.
    drop(socket);
    listener.closing.send_replace(true);
    debug!(listener = %listener.name, "accept loop stopped");
}

/// Serve every connection queued on `old`'s socket once its accept loop
/// has stopped ([`serve_queue`]), under this listener's config and
/// `max_connections` (`slots`), then close it.
async fn take_over(
    listener: Arc<Listener>,
    old: Inherited,
    slots: Arc<Semaphore>,
    mut shutdown: Shutdown,
    drain: Arc<Drain>,
) {
    let Inherited {
        socket,
        mut stopped,
    } = old;
    tokio::select! {
        _ = stopped.wait_for(|s| *s) => {}
        _ = shutdown.wait_for(|s| *s) => return,
    }
    serve_queue(&listener, socket, &slots, 0, shutdown, &drain).await;
}

/// Accept what a listening socket nobody else accepts on has queued, until
/// none is left (`WouldBlock`) or shutdown begins, then close it (dropped):
/// the kernel resets a connection still queued on a listening socket that
/// closes. New connections are kept off it (the reloader's SYN filter), so
/// none comes between the last `accept()` and the close. The whole queue is
/// taken at once, without waiting for a slot: the socket, which drops every
/// SYN meanwhile, closes at once, so a client retrying finds the port
/// closed (or a new listener on it) rather than hanging, and a reload may
/// bind the address again. Each connection taken waits its turn for a slot
/// meanwhile ([`hand_out`]).
async fn serve_queue(
    listener: &Arc<Listener>,
    socket: std::net::TcpListener,
    slots: &Arc<Semaphore>,
    owed: usize,
    mut shutdown: Shutdown,
    drain: &Arc<Drain>,
) {
    let header_read_timeout = listener.settings.load().limits.header_read_timeout;
    let (taken, queue) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(hand_out(
        listener.clone(),
        queue,
        slots.clone(),
        owed,
        shutdown.clone(),
        drain.clone(),
    ));
    let mut queued = 0usize;
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
        // Gone only if shutdown ended the hand-out: this ends next.
        let _ = taken.send((stream, peer, Instant::now()));
    }
    drop(socket);
    debug!(listener = %listener.name, queued, "took the queue of the socket given up; closed it");
}

/// Give each connection taken from the queue of a socket given up
/// ([`serve_queue`]) a slot of `slots` (`listener`'s `max_connections`,
/// `owed` permits of it still to be taken back from a lowered limit
/// first), in the order they were queued, and serve it as `listener`'s;
/// one whose `header_read_timeout` (counted from its accept) passes first
/// is closed unserved, as is every one still waiting when shutdown begins.
async fn hand_out(
    listener: Arc<Listener>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<(TcpStream, SocketAddr, Instant)>,
    slots: Arc<Semaphore>,
    mut owed: usize,
    mut shutdown: Shutdown,
    drain: Arc<Drain>,
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
            let permit = tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => None,
                p = tokio::time::timeout_at(due, slots.clone().acquire_owned()) => p.ok(),
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
        tokio::spawn(connection(listener.clone(), stream, peer, slot, accepted));
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
/// from this line (the configuration may say port 0).
pub fn log_listening(name: &str, addr: SocketAddr) {
    info!(listener = %name, addr = %addr, "listening");
}
