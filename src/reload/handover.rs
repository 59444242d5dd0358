//! The socket a reload's new listener serves on (its own kept, one a running listener gives up, bound anew, or bound beside an overlapping one), the new listeners looked up by name and address.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::rebind::{Registered, bind_beside, bind_fresh, listen_beside, register};
use super::{LiveListener, Reloader};
use crate::config::{Config, ListenerConfig, Shown};

/// The new configuration's listeners, indexed once per reload: each
/// name's first listener, and on each address the first listener whose
/// name no running listener has (a renamed listener's new name, where a
/// rule set through the admin API for the old one is said to be
/// dropped). For each override set through the API, the new listeners
/// were searched by name twice, and for a renamed one's address once
/// more: 1e8 name comparisons for 10,000 kept, 1.5e8 for 10,000 renamed.
pub(super) struct NewListeners<'a> {
    by_name: HashMap<&'a str, &'a ListenerConfig>,
    newcomers: HashMap<SocketAddr, &'a str>,
}

impl<'a> NewListeners<'a> {
    /// `new`'s listeners; `running`: whether a listener of that name runs.
    pub(super) fn new(new: &'a Config, running: impl Fn(&str) -> bool) -> Self {
        let mut by_name = HashMap::new();
        let mut newcomers = HashMap::new();
        for l in &new.listeners {
            by_name.entry(l.name.as_str()).or_insert(l);
            if !running(&l.name) {
                newcomers.entry(l.bind).or_insert(l.name.as_str());
            }
        }
        NewListeners { by_name, newcomers }
    }

    /// The first new listener named `name`.
    pub(super) fn named(&self, name: &str) -> Option<&'a ListenerConfig> {
        self.by_name.get(name).copied()
    }

    /// The name of the first new listener on `bound` that no running
    /// listener has: the new name of the one listening there, if it is
    /// renamed. None on port 0: two port-0 binds are two ports, no rename.
    pub(super) fn renamed_to(&self, bound: SocketAddr) -> Option<&'a str> {
        if bound.port() == 0 {
            return None;
        }
        self.newcomers.get(&bound).copied()
    }
}

/// The running listeners a reload's new ones may take a socket from,
/// indexed once per reload: by the address each is bound to, by its
/// port; the new configuration's address of each name is looked up in
/// [`NewListeners`]. A search of every running listener for each new
/// one, and of the new configuration for each match, was quadratic: 1.5e8
/// comparisons for 10,000 renamed.
pub(super) struct Givers<'a> {
    /// Running listeners by their bound address, in name order.
    by_addr: HashMap<SocketAddr, Vec<(&'a str, &'a LiveListener)>>,
    /// Running listeners by their bound port, in name order.
    by_port: HashMap<u16, Vec<(&'a str, &'a LiveListener)>>,
    /// The new configuration's listeners by name.
    new: &'a NewListeners<'a>,
}

impl<'a> Givers<'a> {
    pub(super) fn new(
        running: &'a BTreeMap<String, LiveListener>,
        new: &'a NewListeners<'a>,
    ) -> Self {
        let mut by_addr: HashMap<_, Vec<_>> = HashMap::new();
        let mut by_port: HashMap<_, Vec<_>> = HashMap::new();
        for (name, old) in running {
            by_addr
                .entry(old.bound)
                .or_default()
                .push((name.as_str(), old));
            by_port
                .entry(old.bound.port())
                .or_default()
                .push((name.as_str(), old));
        }
        Givers {
            by_addr,
            by_port,
            new,
        }
    }

    /// Whether running listener `name` gives up its address in the new
    /// configuration: removed, renamed or bound elsewhere.
    fn gives_up(&self, name: &str, old: &LiveListener) -> bool {
        self.new
            .named(name)
            .is_none_or(|l| l.bind != old.config.bind)
    }

    /// The socket of a running listener that gives up `l.bind` (renamed,
    /// or moving elsewhere, as when two swap ports): `l` serves on that
    /// very socket. Binding anew would fail while it still listens (Linux
    /// refuses it even with SO_REUSEADDR), so a rename or a swap was
    /// rejected. Both accept loops share it until the old one stops, so no
    /// client is refused in between. With the name of the listener that
    /// gives it up.
    fn handed_over(&self, l: &ListenerConfig) -> Option<(&'a str, std::net::TcpListener)> {
        if l.bind.port() == 0 {
            return None;
        }
        let (name, old) = self
            .by_addr
            .get(&l.bind)?
            .iter()
            .find(|(name, old)| self.gives_up(name, old))?;
        Some((name, old.socket.as_ref()?.try_clone().ok()?))
    }

    /// After binding `l.bind` failed with "Address already in use": the
    /// running listener that gives up its address and holds one
    /// overlapping it on the same port (`0.0.0.0:P` and `127.0.0.1:P`, or
    /// `[::]:P`), with its name and address as a message shows it.
    fn overlapping(
        &self,
        l: &ListenerConfig,
    ) -> Option<(&'a str, &'a Shown, &'a std::net::TcpListener)> {
        let (name, old) = self
            .by_port
            .get(&l.bind.port())?
            .iter()
            .filter(|(_, old)| overlaps(old.bound, l.bind))
            .find(|(name, old)| self.gives_up(name, old))?;
        Some((name, &old.config.bind_shown, old.socket.as_ref()?))
    }
}

/// A new listener's socket as planned: its own kept (`None`) or one a
/// running listener hands over; or bound anew, to listen once nothing
/// else refuses the reload ([`Reloader::listen_last`]); or, its address
/// held until the commit by a running listener moving off an overlapping
/// one on its port, one to bind beside that listener's
/// ([`Reloader::bind_beside_last`]).
pub(super) enum Placed {
    Ready(Option<Registered>),
    Bound(socket2::Socket),
    Beside,
}

/// A new listener's configuration, what else was planned of it (`T`),
/// its socket (`None`: it keeps its own) and the name of the running
/// listener it is bound beside, if any.
pub(super) type Planned<T> = (ListenerConfig, T, Option<Registered>, Option<String>);

impl Reloader {
    /// The socket new listener `l` is to serve on: `None` when it keeps
    /// its own (same name, same address); else the one a running listener
    /// gives up on its address (that listener's name added to `shared`,
    /// with `l`'s: the one it is handed over to),
    /// registered with the runtime now (a failure, epoll's ENOMEM or
    /// ENOSPC, refuses the reload; in the commit it panicked, half
    /// applied); else bound anew, not listening ([`Placed::Bound`]); else,
    /// while a running listener moving off an overlapping address on its
    /// port holds it until the commit, [`Placed::Beside`]. The error is
    /// the reload's problem (or the start's), the address in it as a
    /// problem of the file shows it: an address set from `${NAME}` was
    /// shown as it parsed.
    pub(super) fn socket_for(
        &self,
        l: &ListenerConfig,
        givers: &Givers<'_>,
        shared: &mut BTreeMap<String, String>,
    ) -> Result<Placed, String> {
        let kept = self
            .listeners
            .get(&l.name)
            .is_some_and(|o| o.config.bind == l.bind);
        if kept {
            return Ok(Placed::Ready(None));
        }
        if let Some((old, socket)) = givers.handed_over(l) {
            shared.insert(old.to_owned(), l.name.clone());
            return self.registered(l, socket).map(|s| Placed::Ready(Some(s)));
        }
        // Bound only: listening here, it queued the clients of a port a
        // reload refused later (another listener's address, the access
        // log) then reset them, on every retry of the refused file.
        match bind_fresh(l.bind) {
            Ok(socket) => Ok(Placed::Bound(socket)),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse && givers.overlapping(l).is_some() =>
            {
                Ok(Placed::Beside)
            }
            Err(e) => Err(cannot_bind(l, &e)),
        }
    }

    /// `placed`, each listener's socket ([`Reloader::socket_for`]) with
    /// what else was planned of it, once every listener is planned and
    /// every ordinary address bound: those [`Placed::Beside`] bound beside
    /// the running listener moving off the overlapping address, not
    /// listening yet ([`Reloader::listen_last`]). Bound during planning, a
    /// socket beside was dropped, and every client it had queued reset, by
    /// a problem found later, on each retry of the refused file (every
    /// 30 s at most), for as long as it was not fixed. Every one is bound
    /// before any listens: one refused (the kernel will not: another
    /// user's socket) drops the others bound, none of which has queued a
    /// client. Each bound and listening in turn, a reload moving two
    /// listeners reset the clients queued on the first when the second
    /// was refused, on every retry.
    pub(super) fn bind_beside_last<'g, T>(
        &self,
        placed: Vec<(ListenerConfig, T, Placed)>,
        givers: &Givers<'g>,
    ) -> Result<Vec<Bound<'g, T>>, String> {
        let mut bound = Vec::with_capacity(placed.len());
        for (l, t, placed) in placed {
            let socket = match placed {
                Placed::Ready(s) => Taken::Ready(s),
                Placed::Bound(s) => Taken::Bound(s),
                Placed::Beside => Taken::Beside(self.bound_beside(&l, givers)?),
            };
            bound.push((l, t, socket));
        }
        Ok(bound)
    }

    /// Each socket bound anew or beside ([`Reloader::bind_beside_last`])
    /// listening and registered with the runtime, once nothing else
    /// refuses the reload (the access log opened too): those beside a
    /// running listener's take its address's new connections at once
    /// (Linux sends them to the more specific socket), with its name.
    /// Every address bound: the kernel's refusal came at the bind. A listen
    /// or a registration refused now (epoll's ENOMEM) still drops those
    /// listening before it.
    pub(super) fn listen_last<T>(
        &self,
        bound: Vec<Bound<'_, T>>,
    ) -> Result<Vec<Planned<T>>, String> {
        let mut planned = Vec::with_capacity(bound.len());
        for (l, t, socket) in bound {
            let (socket, beside) = match socket {
                Taken::Ready(s) => (s, None),
                Taken::Bound(socket) => {
                    let socket = socket.listen(1024).map(|()| socket.into());
                    let socket = socket.map_err(|e| cannot_bind(&l, &e))?;
                    (Some(self.registered(&l, socket)?), None)
                }
                Taken::Beside((socket, name, at, old)) => {
                    let socket = listen_beside(socket, &l.bind_shown, old)
                        .map_err(|e| refused_beside(&l, &e, name, at))?;
                    (Some(self.registered(&l, socket)?), Some(name.to_owned()))
                }
            };
            planned.push((l, t, socket, beside));
        }
        Ok(planned)
    }

    /// `l.bind` bound (not listening yet) beside the overlapping socket of
    /// the running listener that gives it up: with that listener's name,
    /// its address as shown, and its socket.
    fn bound_beside<'g>(
        &self,
        l: &ListenerConfig,
        givers: &Givers<'g>,
    ) -> Result<Beside<'g>, String> {
        let Some((name, at, old)) = givers.overlapping(l) else {
            // Found by `socket_for`; the running listeners are as they were.
            return Err(format!(
                "listener {}: cannot bind {}: address in use",
                l.name, l.bind_shown
            ));
        };
        let socket = bind_beside(l.bind, old).map_err(|e| refused_beside(l, &e, name, at))?;
        Ok((socket, name, at, old))
    }

    /// `socket`, bound for `l`, registered with the runtime.
    fn registered(
        &self,
        l: &ListenerConfig,
        socket: std::net::TcpListener,
    ) -> Result<Registered, String> {
        register(socket, l.bind, &self.rt)
            .map_err(|e| format!("listener {}: cannot serve {}: {e}", l.name, l.bind_shown))
    }
}

/// A socket bound beside a running listener's ([`bind_beside`]), with
/// that listener's name, its address as shown, and its socket.
pub(super) type Beside<'g> = (
    socket2::Socket,
    &'g str,
    &'g Shown,
    &'g std::net::TcpListener,
);

/// A new listener's socket between [`Reloader::bind_beside_last`]'s binds
/// and [`Reloader::listen_last`]'s listens: planned ([`Placed::Ready`]),
/// bound anew, or bound beside.
pub(super) enum Taken<'g> {
    Ready(Option<Registered>),
    Bound(socket2::Socket),
    Beside(Beside<'g>),
}

/// A new listener's configuration, what else was planned of it, and its
/// socket, bound and not listening yet.
pub(super) type Bound<'g, T> = (ListenerConfig, T, Taken<'g>);

/// The problem of `l`'s address refused by the kernel.
fn cannot_bind(l: &ListenerConfig, e: &std::io::Error) -> String {
    format!("listener {}: cannot bind {}: {e}", l.name, l.bind_shown)
}

/// The problem of `l`'s address refused beside the overlapping one of
/// running listener `name` (on `at`).
fn refused_beside(l: &ListenerConfig, e: &std::io::Error, name: &str, at: &Shown) -> String {
    format!(
        "listener {}: cannot bind {}: {e} (listener {name} listens on {at}, which overlaps it, until this reload applies; move it in two reloads, through another port, or restart)",
        l.name, l.bind_shown
    )
}

/// Whether the kernel refuses to bind `b` while `a` listens, however the
/// sockets are set: the same port, one of them the wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a != b && (a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::NewListeners;

    /// Looked up, not searched: each name's first listener, and on an
    /// address the new name of a listener renamed there (one no running
    /// listener has), none on a port-0 bind or for a name still running.
    #[test]
    fn new_listeners_are_found_by_name_and_by_address() {
        let listener = |name: &str, bind: &str| {
            format!(
                "  - {{ name: {name}, bind: \"{bind}\", tls: {{ certs: [{{ cert_file: a.crt, key_file: a.key }}] }} }}\n"
            )
        };
        let text = format!(
            "listeners:\n{}{}{}",
            listener("kept", "127.0.0.1:8001"),
            listener("renamed", "127.0.0.1:8002"),
            listener("other", "127.0.0.1:0"),
        );
        let new = crate::config::parse(&text, Path::new("/etc/hotproxy/config.yaml"))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let listed = NewListeners::new(&new, |name| name == "kept");
        let at = |a: &str| a.parse().unwrap();
        assert_eq!(
            listed.named("kept").map(|l| l.bind),
            Some(at("127.0.0.1:8001"))
        );
        assert_eq!(
            listed.named("renamed").map(|l| l.bind),
            Some(at("127.0.0.1:8002"))
        );
        assert!(listed.named("gone").is_none());
        assert_eq!(listed.renamed_to(at("127.0.0.1:8002")), Some("renamed"));
        assert_eq!(listed.renamed_to(at("127.0.0.1:8001")), None);
        assert_eq!(listed.renamed_to(at("127.0.0.1:0")), None);
        assert_eq!(listed.renamed_to(at("127.0.0.1:8003")), None);
    }
}
