//! Listening addresses that cannot all be bound: two sockets on one port whose addresses overlap.
//!
//! `hotproxy run` would stop at the second bind with "Address already in
//! use", and a reload would be rejected the same way; `check` says so first,
//! naming both fields. Addresses overlap on one port when they are equal,
//! when either is the unspecified address of the other's family (`0.0.0.0`
//! takes every IPv4 address), and, on a dual-stack host (Linux's default,
//! `net.ipv6.bindv6only = 0`), when one is `[::]` and the other IPv4:
//! `[::]:8443` already accepts IPv4 clients, so `0.0.0.0:8443` beside it
//! fails. Port 0 (the system picks one) never conflicts.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A field that names a listening address, and that address.
pub(super) struct Bind {
    pub at: String,
    pub addr: SocketAddr,
}

/// For each bind that overlaps an earlier one: its field and why.
pub(super) fn overlaps(binds: &[Bind], dual_stack: bool) -> Vec<(String, String)> {
    // The first bind of each port and address, and of each port and
    // family: the first earlier bind that overlaps one is among the first
    // of its address, of the unspecified address of either family, or (for
    // an unspecified one) of either family. Each bind is matched against
    // these, not every earlier one (20,000 listeners made 2e8 comparisons).
    let mut first_of_ip: HashMap<(u16, IpAddr), usize> = HashMap::new();
    let mut first_of_family: HashMap<(u16, bool), usize> = HashMap::new();
    let mut found = Vec::new();
    for (i, b) in binds.iter().enumerate() {
        let port = b.addr.port();
        if port == 0 {
            continue;
        }
        let ip = b.addr.ip().to_canonical();
        let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let candidates = [ip, any4, any6].map(|a| first_of_ip.get(&(port, a)));
        let families = [true, false].map(|v4| first_of_family.get(&(port, v4)));
        let earlier = candidates.into_iter().chain(families).flatten().copied();
        let earlier = earlier
            .filter(|&j| {
                super::looked_at(1);
                overlap(binds[j].addr.ip(), b.addr.ip(), dual_stack)
            })
            .min();
        first_of_ip.entry((port, ip)).or_insert(i);
        first_of_family.entry((port, ip.is_ipv4())).or_insert(i);
        let Some(earlier) = earlier.map(|j| &binds[j]) else {
            continue;
        };
        let why = if earlier.addr.ip().to_canonical() == b.addr.ip().to_canonical() {
            format!("{} is also {}", b.addr, earlier.at)
        } else {
            // Told as the address it maps: `::ffff:0.0.0.0` takes every
            // IPv4 address, and is named as written.
            let wide = if earlier.addr.ip().to_canonical().is_unspecified() {
                earlier
            } else {
                b
            };
            let takes = match wide.addr.ip().to_canonical() {
                IpAddr::V4(_) => "every IPv4 address",
                IpAddr::V6(_) if dual_stack => "every IPv6 and IPv4 address (dual-stack)",
                IpAddr::V6(_) => "every IPv6 address",
            };
            format!(
                "{} overlaps {} ({}): {} takes {takes} of port {}",
                b.addr,
                earlier.at,
                earlier.addr,
                wide.addr.ip(),
                b.addr.port()
            )
        };
        found.push((
            b.at.clone(),
            format!("{why}; two listening sockets cannot share it"),
        ));
    }
    found
}

/// For a reload: each listener of `config` whose address overlaps `admin`,
/// the address the running admin listener is bound to (`admin_shown`: as
/// a message says it when set by `${NAME}`, withheld), said as a problem
/// at its `bind` (with the listener's name), whose message shows the
/// address as written: `config::on_running_admin` withholds a `${NAME}`
/// value from it. `admin.bind` applies at restart, so the file's may have
/// moved on: a listener on the running one passed `check` (which compares
/// with the file's) and every reload failed with a bare "Address already
/// in use".
pub fn on_running_admin(
    config: &crate::config::Config,
    admin: SocketAddr,
    admin_shown: Option<&str>,
) -> Vec<(String, crate::config::Problem)> {
    let dual_stack = dual_stack();
    let on_admin = |bind: SocketAddr| {
        bind.port() != 0
            && bind.port() == admin.port()
            && overlap(admin.ip(), bind.ip(), dual_stack)
    };
    let mut found = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        if !on_admin(l.bind) {
            continue;
        }
        // On the admin address itself, the listener's address is the
        // withheld value: said in its place.
        let what = match l.bind.ip().to_canonical() == admin.ip().to_canonical() {
            true => match admin_shown {
                Some(shown) => format!("{shown} is the admin listener's address"),
                None => format!("{} is the admin listener's address", l.bind),
            },
            false => format!(
                "{} overlaps {}, the admin listener's address",
                l.bind,
                admin_shown.map_or_else(|| admin.to_string(), str::to_owned)
            ),
        };
        let problem = crate::config::Problem {
            location: format!("listeners[{i}].bind"),
            message: format!(
                "{what} (admin.bind changes apply at restart); two listening sockets cannot \
                 share it: bind the listener elsewhere, or restart with the new admin.bind first"
            ),
        };
        found.push((l.name.clone(), problem));
    }
    found
}

/// Whether this host's `[::]` sockets also accept IPv4 (Linux's default).
pub(super) fn dual_stack() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").map_or(true, |v| v.trim() == "0")
}

fn overlap(a: IpAddr, b: IpAddr, dual_stack: bool) -> bool {
    // An IPv4-mapped IPv6 address is the IPv4 address it maps.
    let (a, b) = (a.to_canonical(), b.to_canonical());
    if a == b {
        return true;
    }
    match (a, b) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            a.is_unspecified() || b.is_unspecified()
        }
        (IpAddr::V6(v6), IpAddr::V4(_)) | (IpAddr::V4(_), IpAddr::V6(v6)) => {
            dual_stack && v6.is_unspecified()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binds(addrs: &[&str]) -> Vec<Bind> {
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Bind {
                at: format!("listeners[{i}].bind"),
                addr: a.parse().unwrap(),
            })
            .collect()
    }

    #[test]
    fn which_binds_overlap() {
        let clash = |a: &[&str], dual| overlaps(&binds(a), dual).len();
        assert_eq!(clash(&["127.0.0.1:8443", "127.0.0.1:8443"], true), 1);
        assert_eq!(clash(&["0.0.0.0:8443", "127.0.0.1:8443"], true), 1);
        assert_eq!(clash(&["127.0.0.1:8443", "0.0.0.0:8443"], true), 1);
        assert_eq!(clash(&["[::]:8443", "0.0.0.0:8443"], true), 1);
        assert_eq!(clash(&["[::]:8443", "0.0.0.0:8443"], false), 0);
        assert_eq!(clash(&["[::1]:8443", "[::]:8443"], false), 1);
        assert_eq!(
            clash(&["[::ffff:127.0.0.1]:8443", "127.0.0.1:8443"], false),
            1
        );
        assert_eq!(clash(&["[::1]:8443", "127.0.0.1:8443"], true), 0);
        assert_eq!(clash(&["127.0.0.1:8443", "127.0.0.2:8443"], true), 0);
        assert_eq!(clash(&["0.0.0.0:8443", "0.0.0.0:8444"], true), 0);
        assert_eq!(clash(&["127.0.0.1:0", "127.0.0.1:0"], true), 0);
        assert_eq!(clash(&["0.0.0.0:80", "127.0.0.1:80", "[::]:80"], true), 2);
    }

    /// Looked up by port, address and family, each bind is found to
    /// overlap the same earlier one as when every earlier one was looked
    /// at in turn: every sequence of four of these addresses, both ways.
    #[test]
    fn the_first_overlap_is_the_one_found_by_looking_at_each() {
        let addrs = [
            "127.0.0.1:1",
            "127.0.0.2:1",
            "0.0.0.0:1",
            "[::]:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
            "[::ffff:0.0.0.0]:1",
            "127.0.0.1:2",
            "[::]:2",
            "127.0.0.1:0",
        ];
        let each = |binds: &[Bind], dual| {
            let mut found = Vec::new();
            for (i, b) in binds.iter().enumerate() {
                let same = |e: &&Bind| {
                    e.addr.port() == b.addr.port() && overlap(e.addr.ip(), b.addr.ip(), dual)
                };
                if b.addr.port() != 0 {
                    found.extend(binds[..i].iter().find(same).map(|e| (i, e.at.clone())));
                }
            }
            found
        };
        let n = addrs.len();
        for k in 0..n.pow(4) {
            let picked: Vec<&str> = (0..4).map(|d| addrs[k / n.pow(d) % n]).collect();
            let binds = binds(&picked);
            for dual in [true, false] {
                let want = each(&binds, dual);
                let got = overlaps(&binds, dual);
                assert_eq!(got.len(), want.len(), "{picked:?} {dual}");
                for ((at, why), (i, earlier)) in got.iter().zip(&want) {
                    assert_eq!(at, &binds[*i].at, "{picked:?} {dual}");
                    assert!(
                        why.contains(&format!(" {earlier}")),
                        "{picked:?} {dual}: {why}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_message_names_both_fields() {
        let found = overlaps(&binds(&["127.0.0.1:8443", "0.0.0.0:8443"]), true);
        assert_eq!(found[0].0, "listeners[1].bind");
        assert_eq!(
            found[0].1,
            "0.0.0.0:8443 overlaps listeners[0].bind (127.0.0.1:8443): 0.0.0.0 takes every \
             IPv4 address of port 8443; two listening sockets cannot share it"
        );
        let found = overlaps(&binds(&["127.0.0.1:8443", "127.0.0.1:8443"]), true);
        assert_eq!(
            found[0].1,
            "127.0.0.1:8443 is also listeners[0].bind; two listening sockets cannot share it"
        );
    }
}
