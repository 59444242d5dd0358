//! A listener's front: PROXY protocol, trusted proxies, `allow_from`, response headers, the HTTPS redirect.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::{Resolver, shown};
use crate::config::{FrontConfig, raw, tree};

impl Resolver {
    /// `proxy_protocol`, `trusted_proxies`, `allow_from`, `response_headers`, `redirect_https`.
    pub(super) fn front(&mut self, at: &str, l: &raw::Listener) -> FrontConfig {
        let mut front = FrontConfig::default();
        if let Some(pp) = &l.proxy_protocol {
            let pat = format!("{at}.proxy_protocol.from");
            if pp.from.is_empty() {
                self.problem(
                    pat.clone(),
                    "empty: name the load balancers' addresses (CIDRs), or leave proxy_protocol out",
                );
            }
            front.proxy_protocol = Some(self.cidrs(&pat, &pp.from));
        }
        if let Some(t) = &l.trusted_proxies {
            front.trusted_proxies = self.cidrs(&format!("{at}.trusted_proxies"), t);
        }
        if let Some(a) = &l.allow_from {
            front.allow_from = Some(self.allow_from(&format!("{at}.allow_from"), a));
        }
        if let Some(h) = &l.response_headers {
            // Each name's first spelling, by its lower case: looked up,
            // where searching those above made 5e9 comparisons of 100,000.
            let mut first: HashMap<String, &str> = HashMap::new();
            for (name, value) in &h.set {
                // The name as the reader's path has it: escaped, cut.
                let hat = tree::field(&format!("{at}.response_headers.set"), name);
                let value = self.string(&hat, value);
                let n = http::HeaderName::from_bytes(name.as_bytes());
                // Header names are case-insensitive: two spellings are one
                // header, and which value was sent depended on their sort order.
                super::looked_at(1);
                let earlier = match first.entry(name.to_ascii_lowercase()) {
                    Entry::Occupied(earlier) => Some(*earlier.get()),
                    Entry::Vacant(v) => {
                        v.insert(name);
                        None
                    }
                };
                if let Some(earlier) = earlier {
                    self.problem(
                        hat,
                        format!(
                            "`{}` is the header `{}` set above (header names are \
                             case-insensitive): set it once",
                            tree::shown_key(name),
                            tree::shown_key(earlier)
                        ),
                    );
                } else if n.is_err() {
                    // The name as every key is shown: a key pasted there
                    // (a PEM block, of 119 bytes for Ed25519) is withheld.
                    let shown = tree::shown_key(name);
                    self.problem(hat, format!("`{shown}` is not a valid header name"));
                } else if http::HeaderValue::from_str(&value).is_err() {
                    self.problem(hat, "not a valid header value (control characters?)");
                } else if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
                    // Sent on every response: HTTP/2 clients that enforce
                    // RFC 9113 §8.2.1 refuse the stream. The value is not
                    // shown (it may come from a secret's variable).
                    self.problem(
                        hat,
                        "begins or ends with a space or tab, which HTTP/2 clients \
                         refuse (RFC 9113 §8.2.1): remove it",
                    );
                } else if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
                    self.problem(
                        hat,
                        format!(
                            "{} is a connection-level header hotproxy manages",
                            tree::shown_key(name)
                        ),
                    );
                } else {
                    front
                        .response_headers
                        .push((name.to_ascii_lowercase(), value));
                }
            }
        }
        if let Some(r) = &l.redirect_https {
            let port = r.port.unwrap_or(443);
            if port == 0 {
                self.problem(format!("{at}.redirect_https.port"), "must be 1-65535");
            }
            front.redirect_https = Some(port);
        }
        front
    }

    /// `allow_from`: CIDRs; an empty list would refuse everyone.
    pub(super) fn allow_from(&mut self, at: &str, list: &[String]) -> Vec<ipnet::IpNet> {
        if list.is_empty() {
            self.problem(
                at.to_owned(),
                "empty: it would refuse every client; name the client ranges (CIDRs), or leave allow_from out",
            );
        }
        self.cidrs(at, list)
    }

    /// CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses: the client
    /// ranges of `proxy_protocol.from`, `trusted_proxies` and `allow_from`.
    fn cidrs(&mut self, at: &str, list: &[String]) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for (j, s) in list.iter().enumerate() {
            let s = self.string(&format!("{at}[{j}]"), s);
            match s.parse::<ipnet::IpNet>() {
                Ok(n) => out.push(unmapped(n.trunc())),
                Err(_) => match s.parse::<std::net::IpAddr>() {
                    Ok(ip) => out.push(unmapped(ip.into())),
                    Err(_) => self.problem(
                        format!("{at}[{j}]"),
                        format!("{} is not a CIDR (10.0.0.0/8) or an IP address", shown(&s)),
                    ),
                },
            }
        }
        out
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`, a prefix of 96 or
/// more) as its IPv4 network (`10.0.0.0/8`). Peers and PROXY sources are
/// matched by their IPv4 address (`::ffff:10.1.2.3` on a dual-stack socket
/// is `10.1.2.3`), so the mapped form as written would match no one.
fn unmapped(net: ipnet::IpNet) -> ipnet::IpNet {
    match net {
        ipnet::IpNet::V6(n) if n.prefix_len() >= 96 => n
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| ipnet::Ipv4Net::new(v4, n.prefix_len() - 96).ok())
            .map_or(net, ipnet::IpNet::V4),
        _ => net,
    }
}

/// Headers that describe the connection, not the response: not settable.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
];

#[cfg(test)]
mod front_tests {
    use crate::config::tests::{MINIMAL, messages, parse_str};

    fn with_listener_extra(extra: &str) -> String {
        MINIMAL.replace(
            "    routes: [{ upstream: api }]\n",
            &format!("    routes: [{{ upstream: api }}]\n{extra}"),
        )
    }

    /// The edge fields parse into their checked form.
    #[test]
    fn edge_fields_parse() {
        let c = parse_str(&with_listener_extra(
            "    proxy_protocol: { from: [10.0.0.0/8, 192.0.2.7] }\n    trusted_proxies: [\"fd00::/8\"]\n    allow_from: [10.1.2.3/16]\n    response_headers:\n      set: { Strict-Transport-Security: \"max-age=31536000\" }\n  - name: http\n    bind: 127.0.0.1:8080\n    redirect_https: {}\n",
        )
        .replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api, allow_from: [192.0.2.9] }]",
        ))
        .unwrap_or_else(|e| panic!("{}", messages(&e)));
        let e = &c.listeners[0].front;
        let from: Vec<String> = e
            .proxy_protocol
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(from, ["10.0.0.0/8", "192.0.2.7/32"]);
        assert_eq!(e.trusted_proxies[0].to_string(), "fd00::/8");
        assert_eq!(e.allow_from.as_ref().unwrap()[0].to_string(), "10.1.0.0/16");
        assert_eq!(
            c.listeners[0].routes[0].allow_from.as_ref().unwrap()[0].to_string(),
            "192.0.2.9/32"
        );
        assert_eq!(
            e.response_headers,
            [(
                "strict-transport-security".to_owned(),
                "max-age=31536000".to_owned()
            )]
        );
        assert_eq!(c.listeners[1].front.redirect_https, Some(443));
        assert!(c.listeners[1].certs.is_empty());
    }

    /// An IPv4-mapped IPv6 network is read as its IPv4 network, in each
    /// field that takes client ranges: peers are matched by their IPv4
    /// address (a dual-stack socket's `::ffff:10.1.2.3` is `10.1.2.3`), so
    /// the mapped form as written never matched anyone.
    #[test]
    fn mapped_networks_are_read_as_ipv4() {
        let c = parse_str(
            &with_listener_extra(
                "    proxy_protocol: { from: [\"::ffff:10.0.0.0/104\", \"::ffff:192.0.2.7\"] }\n    trusted_proxies: [\"::ffff:0:0/96\", \"64:ff9b::/96\"]\n    allow_from: [\"::ffff:10.1.2.3/112\"]\n",
            )
            .replace(
                "routes: [{ upstream: api }]",
                "routes: [{ upstream: api, allow_from: [\"::ffff:192.0.2.9\"] }]",
            ),
        )
        .unwrap_or_else(|e| panic!("{}", messages(&e)));
        let l = &c.listeners[0];
        let shown = |nets: &[ipnet::IpNet]| nets.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shown(l.front.proxy_protocol.as_deref().unwrap()),
            ["10.0.0.0/8", "192.0.2.7/32"]
        );
        // NAT64's prefix is IPv6 clients, not mapped ones: kept.
        assert_eq!(
            shown(&l.front.trusted_proxies),
            ["0.0.0.0/0", "64:ff9b::/96"]
        );
        assert_eq!(
            shown(l.front.allow_from.as_deref().unwrap()),
            ["10.1.0.0/16"]
        );
        assert_eq!(
            shown(l.routes[0].allow_from.as_deref().unwrap()),
            ["192.0.2.9/32"]
        );
    }

    /// Each bad edge value is an error naming its field.
    #[test]
    fn edge_errors_name_the_field() {
        for (extra, field) in [
            (
                "    proxy_protocol: { from: [] }\n",
                "listeners[0].proxy_protocol.from",
            ),
            (
                "    proxy_protocol: { from: [10.0.0.0/33] }\n",
                "listeners[0].proxy_protocol.from[0]",
            ),
            (
                "    trusted_proxies: [nonsense]\n",
                "listeners[0].trusted_proxies[0]",
            ),
            ("    allow_from: []\n", "listeners[0].allow_from"),
            (
                "    allow_from: [10.0.0.0/8, 300.1.1.1]\n",
                "listeners[0].allow_from[1]",
            ),
            (
                "    response_headers: { set: { \"bad name\": x } }\n",
                "listeners[0].response_headers.set.bad name",
            ),
            (
                "    response_headers: { set: { Connection: close } }\n",
                "listeners[0].response_headers.set.Connection",
            ),
            // A name with a terminal escape: escaped where it is named.
            (
                "    response_headers: { set: { \"bad\\e[2J\": x } }\n",
                "listeners[0].response_headers.set.bad\\u{1b}[2J: `bad\\u{1b}[2J` is",
            ),
            ("    redirect_https: { port: 443 }\n", "listeners[0].tls"),
            (
                "    redirect_https: { port: 0 }\n",
                "listeners[0].redirect_https.port",
            ),
        ] {
            let e = parse_str(&with_listener_extra(extra)).unwrap_err();
            let m = messages(&e);
            assert!(m.contains(field), "{extra}: {m}");
            assert!(!m.contains('\u{1b}'), "{extra}: {m:?}");
        }
        let bad_names = MINIMAL.replace(
            "      client_cert: { ref: client }\n",
            "      client_cert: { ref: client }\n      verify_names: [\"spiffe://td/a/**\"]\n",
        );
        let m = messages(&parse_str(&bad_names).unwrap_err());
        assert!(m.contains("upstreams[0].tls.verify_names[0]"), "{m}");
    }
}
