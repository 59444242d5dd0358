//! Binding a listener's new address while a running listener holds one overlapping it on the same port.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use tracing::info;

use super::{LOG, Reloader};
use crate::config::{Config, ListenerConfig};

impl Reloader {
    /// After binding `l.bind` failed with "Address already in use": the
    /// running listener that gives up its address in `new` and holds one
    /// overlapping it on the same port (`0.0.0.0:P` and `127.0.0.1:P`, or
    /// `[::]:P`), with its name and address.
    pub(super) fn overlapping(
        &self,
        l: &ListenerConfig,
        new: &Config,
    ) -> Option<(&str, SocketAddr, &std::net::TcpListener)> {
        self.listeners
            .iter()
            .filter(|(_, old)| overlaps(old.bound, l.bind))
            .find(|(name, old)| {
                new.listeners
                    .iter()
                    .find(|n| n.name == **name)
                    .is_none_or(|n| n.bind != old.config.bind)
            })
            .and_then(|(name, old)| Some((name.as_str(), old.bound, old.socket.as_ref()?)))
    }
}

/// Whether the kernel refuses to bind `b` while `a` listens, however the
/// sockets are set: the same port, one of them the wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a != b && (a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Bind `addr` while `old`, a listening socket on an overlapping address,
/// still listens: both take `SO_REUSEPORT` for the bind (Linux then lets
/// the more specific address have its connections, and the wildcard the
/// rest), which is taken off again once the new socket listens. The old
/// listener stops when the reload commits, so the move is live: a client
/// is served by one or the other throughout (one caught in the old
/// socket's queue as it closes is reset, as when a listener moves to
/// another port). Refused as before when the kernel will not (another
/// user holds the old socket).
pub(super) fn bind_beside(
    addr: SocketAddr,
    old: &std::net::TcpListener,
    rt: &tokio::runtime::Handle,
) -> std::io::Result<std::net::TcpListener> {
    reuse_port(old, true)?;
    let bound = super::apply::bind_std(addr, rt, true);
    // Back to how every listener is bound: nothing else may join either.
    let _ = reuse_port(old, false);
    if let Ok(new) = &bound {
        let _ = reuse_port(new, false);
        info!(target: LOG, addr = %addr, "bound beside the overlapping address a listener gives up");
    }
    bound
}

/// Set `SO_REUSEPORT` on a listening socket, through a duplicate of its
/// descriptor (tokio's socket type has the setter; the crate has no
/// `unsafe` to call setsockopt).
fn reuse_port(l: &std::net::TcpListener, on: bool) -> std::io::Result<()> {
    let fd = OwnedFd::from(l.try_clone()?);
    tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd)).set_reuseport(on)
}
