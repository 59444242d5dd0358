//! Listening sockets a reload takes up or gives up: registered while planned, bound beside (an overlapping address), handed over, or their queue served (each by the listener on its address) before they close.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use tracing::info;

use super::handover::Planned;
use super::{LOG, LiveListener, Reloader};
use crate::proxy::listener::{Inherited, Stop};

/// A new listener's socket, ready for its accept loop: registered with
/// the runtime's reactor while the reload is planned.
pub(super) struct Registered {
    pub socket: tokio::net::TcpListener,
    /// Its address (the port the system picked, for port 0).
    pub bound: SocketAddr,
    /// A descriptor of it kept for a hand-over; `None` when `try_clone`
    /// failed (its queue is then served by the accept loop alone).
    pub shared: Option<std::net::TcpListener>,
}

/// `socket`, bound for `addr`, registered with `rt`'s reactor. Registering
/// can fail (epoll's ENOMEM, or ENOSPC past `max_user_watches`): while the
/// reload is planned that refuses it, where the commit ("nothing below can
/// fail") panicked, leaving the reload half applied and no reloader.
pub(super) fn register(
    socket: std::net::TcpListener,
    addr: SocketAddr,
    rt: &tokio::runtime::Handle,
) -> std::io::Result<Registered> {
    let bound = socket.local_addr().unwrap_or(addr);
    let shared = socket.try_clone().ok();
    let _enter = rt.enter();
    let socket = tokio::net::TcpListener::from_std(socket)?;
    Ok(Registered {
        socket,
        bound,
        shared,
    })
}

impl Reloader {
    /// As a reload commits: for each new listener bound beside the
    /// overlapping socket of a running one (new name, its address, old
    /// name), the connections queued on that socket for its address, which
    /// it serves ([`Inherited`]). The old listener, given up, takes its
    /// whole queue and sends each connection to the one of them on the
    /// address it was queued for: a wildcard replaced by two specific
    /// addresses in one reload (`0.0.0.0:P` by `127.0.0.1:P` and
    /// `127.0.0.2:P`) has each served by its own, not both by the first.
    /// One no new listener covers it answers itself, as any listener given
    /// up answers its queue ([`LiveListener::stop`]).
    pub(super) fn inherit(
        &mut self,
        beside: impl IntoIterator<Item = (String, SocketAddr, String)>,
    ) -> BTreeMap<String, Inherited> {
        let mut inherited = BTreeMap::new();
        for (new, bind, old) in beside {
            let Some(old) = self.listeners.get_mut(&old) else {
                continue;
            };
            let (heir, queue) = Inherited::beside(bind);
            old.heirs.push(heir);
            inherited.insert(new, queue);
        }
        inherited
    }

    /// As a reload commits, before any new accept loop starts: what each
    /// listener bound beside a socket given up inherits ([`Reloader::inherit`]),
    /// and the running listeners whose socket a new one serves on (`shared`:
    /// a rename, a swap) stopped. Stopped only after the new accept loops
    /// started (once every listener of the reload was set up), the old loop
    /// took clients from the queue beside the new one, and closed each still
    /// in its handshake unanswered (its listener gone): meanwhile they wait
    /// in the kernel's queue, so no client is refused in between (SPEC §3).
    pub(super) fn hand_over<T>(
        &mut self,
        planned: &[Planned<T>],
        shared: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Inherited> {
        let inherited =
            self.inherit(planned.iter().filter_map(|(cfg, .., beside)| {
                Some((cfg.name.clone(), cfg.bind, beside.clone()?))
            }));
        for (name, to) in shared {
            let Some(old) = self.listeners.remove(name) else {
                continue;
            };
            old.stop(true);
            // Not "closed" nor plainly "removed": the socket goes on
            // serving, under listener `to`.
            if planned.iter().any(|(cfg, ..)| cfg.name == *name) {
                info!(target: LOG, listener = %name, to = %to, "listener re-bound; old address handed over");
            } else {
                info!(target: LOG, listener = %name, to = %to, "listener removed; its address handed over");
            }
        }
        inherited
    }
}

impl LiveListener {
    /// Stop its accept loop: a reload removed it or bound it elsewhere.
    /// Its socket goes on where a new listener serves on it (`shared`: a
    /// rename, a port swap); given up otherwise, whether or not the
    /// reloader holds a descriptor of it (`socket`, None when its
    /// duplicate was refused at the descriptor limit): the accept loop
    /// keeps new connections off its own, takes those it has queued before
    /// closing it (the kernel resets those still queued on a socket that
    /// closes), then serves them, or sends each queued for the address of
    /// a listener bound beside it to that one (its heirs,
    /// [`Reloader::inherit`]).
    pub(super) fn stop(mut self, shared: bool) {
        let stop = if shared {
            Stop::HandedOver
        } else {
            Stop::GivenUp(std::mem::take(&mut self.heirs))
        };
        let _ = self.stop.send(stop);
    }
}

/// Bind `addr` while `old`, a listening socket on an overlapping address,
/// still listens: both take `SO_REUSEPORT` for the bind (Linux then lets
/// the more specific address have its connections, and the wildcard the
/// rest, once the new socket listens: [`listen_beside`]). Bound only: the
/// kernel queues no connection on it yet, so one dropped (another bound
/// beside in the same reload refused) resets no client. Refused as before
/// when the kernel will not (another user holds the old socket).
pub(super) fn bind_beside(
    addr: SocketAddr,
    old: &std::net::TcpListener,
) -> std::io::Result<socket2::Socket> {
    let socket = listener_socket(addr)?;
    socket.set_reuse_port(true)?;
    reuse_port(old, true)?;
    let bound = socket.bind(&addr.into());
    // Back to how every listener is bound: nothing else may join either.
    let _ = reuse_port(old, false);
    bound.map(|()| socket)
}

/// `socket`, bound beside `old` ([`bind_beside`]), listening, with
/// `SO_REUSEPORT` on both as it starts to (as for the bind), then taken
/// off again. From here the kernel sends its address's new connections
/// to it. The old listener stops when the reload commits, so the move is
/// live: a client is served by one or the other throughout (the old
/// listener takes its socket's queue before closing it, and each new
/// listener serves those queued for its address: [`Reloader::inherit`]).
pub(super) fn listen_beside(
    socket: socket2::Socket,
    shown: &crate::config::Shown,
    old: &std::net::TcpListener,
) -> std::io::Result<std::net::TcpListener> {
    reuse_port(old, true)?;
    let listening = socket.listen(1024);
    let _ = reuse_port(old, false);
    listening?;
    let _ = socket.set_reuse_port(false);
    // As a refusal says it: one set by `${NAME}` withheld. (No port 0
    // here: such an address overlaps none.)
    info!(target: LOG, addr = %shown, "bound beside the overlapping address a listener gives up");
    Ok(socket.into())
}

/// Set `SO_REUSEPORT` on a listening socket, through a duplicate of its
/// descriptor (tokio's socket type has the setter; the crate has no
/// `unsafe` to call setsockopt).
fn reuse_port(l: &std::net::TcpListener, on: bool) -> std::io::Result<()> {
    let fd = OwnedFd::from(l.try_clone()?);
    tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd)).set_reuseport(on)
}

/// A socket bound to `addr`, not listening: the kernel queues no
/// connection on it (a client is refused) until [`Reloader::listen_last`]
/// makes it listen, once nothing else refuses the reload.
/// `SO_REUSEADDR`, as every listener: a port whose last connections are
/// in TIME_WAIT binds at once.
pub(super) fn bind_fresh(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = listener_socket(addr)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A TCP socket for `addr`'s family, not yet bound: non-blocking, and
/// `SO_REUSEADDR` as every listener's.
fn listener_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
