//! Whether this host has a route to an address: a UDP socket connected to it (RFC 6724 rule 1, as getaddrinfo with `AI_ADDRCONFIG` would drop it).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use crate::upstream::conn::out_of_local_resources;

/// Whether a dial to `ip` can leave this host: a UDP socket of its family
/// connects to it (a route lookup, nothing is sent). std's lookups ask
/// getaddrinfo without `AI_ADDRCONFIG`, so an IPv4-only host got a name's
/// IPv6 addresses too: each became an endpoint whose every dial failed
/// (`ENETUNREACH`), counted as a connect error, retried, ejected, and two
/// of them used up the ejection cap. A probe that fails for want of the
/// proxy's own resources says yes: the dial then tells that failure.
pub fn routed(ip: IpAddr) -> bool {
    routed_with(ip, probe)
}

fn routed_with(ip: IpAddr, probe: impl FnOnce(IpAddr) -> std::io::Result<()>) -> bool {
    match probe(ip) {
        Ok(()) => true,
        Err(e) => out_of_local_resources(&e),
    }
}

fn probe(ip: IpAddr) -> std::io::Result<()> {
    let any: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((any, 0))?;
    // Any port: a connect only picks the route and a source address.
    socket.connect(SocketAddr::new(ip, 9))
}

/// `addrs` apart: (routed, unrouted), each in its order; each address
/// probed once however many ports it comes with.
pub fn split(addrs: Vec<SocketAddr>) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    split_with(addrs, routed)
}

fn split_with(
    addrs: Vec<SocketAddr>,
    mut routed: impl FnMut(IpAddr) -> bool,
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let mut known: HashMap<IpAddr, bool> = HashMap::new();
    addrs
        .into_iter()
        .partition(|a| *known.entry(a.ip()).or_insert_with(|| routed(a.ip())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe refused for want of descriptors keeps the address (the
    /// dial reports `local_resources`, not a missing endpoint); any other
    /// refusal (`ENETUNREACH`, `EINVAL` for a link-local address with no
    /// interface) drops it.
    #[test]
    fn a_probe_out_of_descriptors_keeps_the_address() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let err = |code| move |_| Err(std::io::Error::from_raw_os_error(code));
        assert!(routed_with(ip, err(libc::EMFILE)));
        assert!(!routed_with(ip, err(libc::ENETUNREACH)));
        assert!(!routed_with(ip, err(libc::EINVAL)));
    }

    /// Each address probed once, the order kept.
    #[test]
    fn each_address_is_probed_once() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let addrs = vec![at("10.0.0.1:1"), at("[2001:db8::1]:1"), at("10.0.0.1:2")];
        let mut probed = Vec::new();
        let (routed, unrouted) = split_with(addrs, |ip| {
            probed.push(ip);
            ip.is_ipv4()
        });
        assert_eq!(routed, vec![at("10.0.0.1:1"), at("10.0.0.1:2")]);
        assert_eq!(unrouted, vec![at("[2001:db8::1]:1")]);
        assert_eq!(probed.len(), 2);
    }

    /// Loopback is routed; a link-local address with no interface is not
    /// (the kernel refuses it, `EINVAL`).
    #[test]
    fn loopback_is_routed_and_a_scopeless_link_local_is_not() {
        assert!(routed("127.0.0.2".parse().unwrap()));
        assert!(!routed("fe80::1".parse().unwrap()));
    }
}
