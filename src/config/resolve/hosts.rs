//! Route hosts, path prefixes and `server_names` as the router and SNI compare them, refused where no request could match (routes an earlier one shadows too, across host levels; partial overlaps noted).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::shown;
use crate::config::bare::WILDCARD;
use crate::proxy::path::decoded;

/// Why no request could match `prefix`: routes see a request's path
/// normalised ([`crate::proxy::path::normalise`]: `%61` decoded, runs of
/// `/` merged, dot segments removed), so a prefix that normalisation would
/// change (`/admin//`, `/a/./b`, `/%61dmin`) never matches, and its
/// requests would take a later route's rules.
///
/// A `;` too: it starts a segment's parameters, and a request whose route
/// would change without them (`/app;v=1/x` is Tomcat's `/app/x`) is
/// refused, so a prefix with one would only ever answer 400.
pub(super) fn unroutable_prefix(prefix: &str) -> Option<String> {
    if prefix.contains(';') {
        return Some(format!(
            "{}: `;` starts path parameters, and a request whose route \
             depends on them is refused (400); route on the path without them",
            shown(prefix)
        ));
    }
    match crate::proxy::path::normalise(prefix) {
        Err(e) => Some(format!(
            "{}: no request path is routed with {e}",
            shown(prefix)
        )),
        Ok(n) if n != prefix => Some(format!(
            "{}: requests are routed on their normalised path, so write {}",
            shown(prefix),
            shown(&n)
        )),
        Ok(_) => None,
    }
}

/// The routes of a listener looked at so far, for [`Reachable::taken_by`]:
/// by host as [`route_host`] stores it (`None`: no host), each path prefix
/// percent-decoded as the router compares it (empty: no prefix) with the
/// position of the first route of that host and prefix.
#[derive(Default)]
pub(super) struct Reachable(HashMap<Option<String>, Seen>);

/// One host's routes in [`Reachable`].
#[derive(Default)]
struct Seen {
    /// Each decoded prefix, with the position of its first route; in
    /// order, so the prefixes a prefix starts are one range.
    prefixes: BTreeMap<Vec<u8>, usize>,
    /// The lengths of `prefixes`' keys: a prefix's own prefixes are looked
    /// up at these lengths alone, not at every one of its bytes (a 1 MB
    /// `path_prefix` hashed each of its own prefixes, some 500 GB).
    lengths: BTreeSet<usize>,
}

/// The hosts whose routes match every request a route of `host` matches:
/// itself, for an exact host the `*.` wildcard one label up (the router's
/// wildcard covers exactly one label), and no host.
fn covering(host: Option<&str>) -> Vec<Option<String>> {
    let mut all = vec![None];
    if let Some(h) = host {
        if !h.starts_with("*.")
            && let Some((label, rest)) = h.split_once('.')
            && !label.is_empty()
        {
            all.push(Some(format!("*.{rest}")));
        }
        all.push(Some(h.to_owned()));
    }
    all
}

impl Reachable {
    /// The position of an earlier route of a less specific host than
    /// `host` (the `*.` wildcard over it, or none) whose prefix starts
    /// with `prefix` and is longer (any prefix when `prefix` is `None`):
    /// the requests for `host` under that longer prefix take the earlier
    /// route, under its rules (and perhaps another certificate entry's
    /// `client_auth` than the one `host`'s connections are made under),
    /// while the rest reach this route. Said, not refused: such a list
    /// worked as written and may be meant. Call before [`Self::taken_by`]
    /// for the same route; a prefix equal to the earlier one's is
    /// `taken_by`'s.
    pub(super) fn overlapped_by(&self, host: Option<&str>, prefix: Option<&str>) -> Option<usize> {
        let prefix = prefix.map_or_else(Vec::new, |p| decoded(p).into_owned());
        let own = host.map(str::to_owned);
        covering(host)
            .iter()
            .filter(|h| **h != own)
            .filter_map(|h| self.0.get(h))
            .filter_map(|seen| {
                seen.prefixes
                    .range(prefix.clone()..)
                    .find(|(p, _)| p.len() > prefix.len())
                    .filter(|(p, _)| p.starts_with(&prefix))
                    .map(|(_, &at)| at)
            })
            .min()
    }

    /// The position of an earlier route that takes every request route
    /// `at` (of `host` and `prefix`, both valid) would match, if one does;
    /// else `at` is noted for the routes after it. The router takes the
    /// first route in list order whose host and prefix match, so an
    /// earlier route whose host covers this one's (the same host, the `*.`
    /// wildcard over it, or none) and whose prefix starts this one's (or
    /// that has none) answers first: this route's upstream, `allow` and
    /// `allow_from` would never apply. `/v1/` after `/v1` is taken; `/v1`
    /// after `/v1/` is not (it still gets `/v1` and `/v1beta`). A route
    /// matches on nothing else.
    pub(super) fn taken_by(
        &mut self,
        at: usize,
        host: Option<&str>,
        prefix: Option<&str>,
    ) -> Option<usize> {
        let prefix = prefix.map_or_else(Vec::new, |p| decoded(p).into_owned());
        let first = covering(host)
            .iter()
            .filter_map(|h| self.0.get(h))
            .flat_map(|seen| {
                // The prefix's own prefixes stored, the empty one (no prefix) too.
                seen.lengths
                    .range(..=prefix.len())
                    .filter_map(|&end| seen.prefixes.get(&prefix[..end]).copied())
            })
            .min();
        if first.is_none() {
            let seen = self.0.entry(host.map(str::to_owned)).or_default();
            seen.lengths.insert(prefix.len());
            seen.prefixes.insert(prefix, at);
        }
        first
    }
}

/// A route's `host` as the router compares it: lowercase, without a final
/// `.` (a request's host loses its own, so `a.example.com.` would never
/// match), an IPv6 literal without brackets (the router strips them from
/// a request's). Refused, with why, when no request's host could ever
/// match it, so the route's rules would be skipped for a later route's:
/// a port (the router matches the host alone), a URL, a `*` anywhere but
/// as the whole first label, or characters no host name has.
pub(super) fn route_host(h: &str) -> Result<String, String> {
    host_pattern(h, "a route's host")
}

/// A pair's `server_names` entry as SNI is compared with it: lowercase,
/// without a final `.`. Refused where no client's SNI could name it, for
/// then its clients take another pair, and that pair's `client_auth` (none,
/// perhaps): a port, a URL, a misplaced `*`, an IP address (RFC 6066 §3:
/// SNI never carries one), and a name rustls refuses as SNI (pki-types'
/// `DnsName`: a last label that is a number, `010.0.0.5` or `host.123`, as
/// an IPv4 address's is; a label starting or ending with `-`; over 253
/// bytes), for it ends such a handshake with `illegal_parameter`. A
/// certificate's DNS SANs are taken through it too
/// ([`crate::material::info`]), the names SNI cannot carry left out.
pub(crate) fn server_name(h: &str) -> Result<String, String> {
    let name = host_pattern(h, "a server name")?;
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{}: clients never send an IP address as the server name (SNI); \
             a client connecting by address gets the listener's first pair",
            shown(h)
        ));
    }
    let labels = name.strip_prefix("*.").unwrap_or(&name);
    if rustls_pki_types::DnsName::try_from(labels).is_err() {
        return Err(format!(
            "{}: no client can send it as the server name (SNI): {}",
            shown(h),
            not_sni(labels)
        ));
    }
    Ok(name)
}

/// A name [`server_name`] refuses only because rustls refuses it as SNI
/// (`host.123`, `-a.example.com`), as a request's host is compared with
/// it: lowercase, without a final `.`. No ClientHello selects an entry by
/// it, but a request's `Host` can carry it, and the entry whose
/// certificate (or `server_names`) lists it keeps it for the 421 check
/// ([`crate::tls::per_name::PerName::position_of_host`]): on another
/// entry's connection, a request for it is refused, not served under
/// that entry's `client_auth`. `None` for any other name (an IP address,
/// text that is no host name, a name SNI can carry).
pub(crate) fn host_only_name(h: &str) -> Option<String> {
    let name = host_pattern(h, "a server name").ok()?;
    let labels = name.strip_prefix("*.").unwrap_or(&name);
    let refused = rustls_pki_types::DnsName::try_from(labels).is_err();
    (refused && name.parse::<std::net::IpAddr>().is_err()).then_some(name)
}

/// What `check` warns and `run` logs for each `server_names` name left
/// out ([`crate::config::ListenerCert::left_out`]): `AT.tls.certs[J].server_names:
/// "NAME": WHY; …`, `at` naming the listener (`listeners[0]` in `check`,
/// `listeners.NAME` in a log).
pub(crate) fn left_out_warnings(l: &crate::config::ListenerConfig, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (j, c) in l.certs.iter().enumerate() {
        for name in &c.left_out {
            let why = server_name(name).err().unwrap_or_default();
            out.push(format!(
                "{at}.tls.certs[{j}].server_names: {why}; left out of the names the entry \
                 answers (a request for it is still the entry's: on another entry's connection \
                 with another client_auth, 421; listed by an entry with another client_auth too, \
                 refused)"
            ));
        }
    }
    out
}

/// Why rustls refuses `labels` (lowercase, each of letters, digits, `-`
/// and `_`) as SNI.
fn not_sni(labels: &str) -> &'static str {
    if labels.len() > 253 {
        "longer than 253 bytes"
    } else if labels
        .split('.')
        .any(|l| l.starts_with('-') || l.ends_with('-'))
    {
        "a label starts or ends with `-`"
    } else {
        "its last label is a number (`123`, `0x1f`), as an IPv4 address's is"
    }
}

/// A host, or a one-label wildcard, as `what` is compared; see [`route_host`].
fn host_pattern(h: &str, what: &str) -> Result<String, String> {
    let lower = h.to_ascii_lowercase();
    let bare = lower.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
    if let Ok(ip) = bare.unwrap_or(&lower).parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    if lower.contains("://") {
        return Err(format!("{}: a host name, not a URL", shown(h)));
    }
    // The port as written (`h` and `lower` are alike byte for byte).
    if let Some(port) = lower.rfind(':').map(|at| &h[at..]) {
        return Err(format!(
            "{}: {what} is matched without the port: remove {}",
            shown(h),
            shown(port)
        ));
    }
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let labels = name.strip_prefix("*.").unwrap_or(name);
    if labels.contains('*') {
        return Err(format!(
            "{}: `*` only as the whole first label {WILDCARD}",
            shown(h)
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !labels.split('.').all(label_ok) {
        return Err(format!(
            "{}: not a host name (labels of letters, digits, `-`) or an IP address",
            shown(h)
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, messages, parse_str};

    /// A route's host and path prefix are what the router compares, or
    /// refused by name when no request could match them.
    #[test]
    fn route_hosts_and_prefixes() {
        for (written, stored) in [
            ("API.Example.com", "api.example.com"),
            ("a.example.com.", "a.example.com"),
            ("*.Example.com", "*.example.com"),
            ("10.0.0.1", "10.0.0.1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("in_ternal.local", "in_ternal.local"),
        ] {
            assert_eq!(
                super::route_host(written).as_deref(),
                Ok(stored),
                "{written}"
            );
        }
        for bad in [
            "a.example.com:8443",
            "https://a.example.com",
            "a.*.example.com",
            "**.example.com",
            "*",
            "a b",
            "a..example.com",
            "",
            "/path",
        ] {
            assert!(super::route_host(bad).is_err(), "{bad}");
        }
        for (prefix, ok) in [
            ("/v1", true),
            ("/admin/", true),
            ("/a;b/", false),
            ("/@admin/", true),
            ("/caf%C3%A9/", true),
            ("/admin//", false),
            ("/a/./b", false),
            ("/a/../b", false),
            ("/%61dmin", false),
            ("/a%2fb", false),
        ] {
            assert_eq!(super::unroutable_prefix(prefix).is_none(), ok, "{prefix}");
        }
        let cfg = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api, host: \"a.example.com:8443\" }, { upstream: api, host: \"a.*.b\" }, { upstream: api, path_prefix: \"/admin//\" }]",
        );
        let m = messages(&parse_str(&cfg).unwrap_err());
        assert!(
            m.contains("listeners[0].routes[0].host") && m.contains("without the port"),
            "{m}"
        );
        assert!(m.contains("listeners[0].routes[1].host"), "{m}");
        assert!(
            m.contains("listeners[0].routes[2].path_prefix") && m.contains("\"/admin/\""),
            "{m}"
        );
    }

    /// A route an earlier route of the same host takes every request of
    /// is refused, naming both by place; one that still gets a request
    /// (another host level, a prefix the earlier one's does not start)
    /// is not.
    #[test]
    fn routes_an_earlier_one_shadows() {
        let taken = |routes: &[(Option<&str>, Option<&str>)]| {
            let mut r = super::Reachable::default();
            let all: Vec<_> = routes
                .iter()
                .enumerate()
                .map(|(at, (h, p))| r.taken_by(at, *h, *p))
                .collect();
            all
        };
        let a = Some("a.example");
        let w = Some("*.example");
        for (routes, want) in [
            (
                vec![(None, None), (None, Some("/admin/"))],
                vec![None, Some(0)],
            ),
            (vec![(None, None), (None, None)], vec![None, Some(0)]),
            (
                vec![(a, Some("/v1")), (a, Some("/v1/"))],
                vec![None, Some(0)],
            ),
            (
                vec![(a, Some("/api")), (a, Some("/apix"))],
                vec![None, Some(0)],
            ),
            (vec![(a, Some("/v1/")), (a, Some("/v1"))], vec![None, None]),
            (vec![(a, Some("/v1/")), (a, None)], vec![None, None]),
            (
                vec![(a, Some("/@x/")), (a, Some("/%40x/y"))],
                vec![None, Some(0)],
            ),
            (vec![(w, None), (a, Some("/x"))], vec![None, Some(0)]),
            (
                vec![(w, Some("/x")), (a, Some("/x/y"))],
                vec![None, Some(0)],
            ),
            (
                vec![(None, Some("/x")), (w, Some("/x"))],
                vec![None, Some(0)],
            ),
            (
                vec![(a, None), (w, None), (None, None)],
                vec![None, None, None],
            ),
            (vec![(w, Some("/x/y")), (a, Some("/x"))], vec![None, None]),
            (
                vec![(Some("*.b.example"), None), (a, None)],
                vec![None, None],
            ),
            (
                vec![(None, None), (w, None), (a, None)],
                vec![None, Some(0), Some(0)],
            ),
            (
                vec![(a, Some("/a/b")), (a, Some("/a")), (a, Some("/a/b/c"))],
                vec![None, None, Some(0)],
            ),
            (
                vec![(a, Some("/a/b")), (a, Some("/a")), (a, Some("/a/c"))],
                vec![None, None, Some(1)],
            ),
        ] {
            assert_eq!(taken(&routes), want, "{routes:?}");
        }
        // Overlapped: an earlier, less specific host's longer prefix.
        let overlapped = |routes: &[(Option<&str>, Option<&str>)]| {
            let mut r = super::Reachable::default();
            let all: Vec<_> = routes
                .iter()
                .enumerate()
                .map(|(at, (h, p))| {
                    let o = r.overlapped_by(*h, *p);
                    r.taken_by(at, *h, *p);
                    o
                })
                .collect();
            all
        };
        for (routes, want) in [
            (vec![(w, Some("/api/")), (a, None)], vec![None, Some(0)]),
            (
                vec![(None, Some("/api/")), (w, Some("/a"))],
                vec![None, Some(0)],
            ),
            (
                vec![(None, Some("/api/")), (w, Some("/b"))],
                vec![None, None],
            ),
            (vec![(a, Some("/api/")), (w, None)], vec![None, None]),
            (vec![(w, Some("/api/")), (w, None)], vec![None, None]),
            (
                vec![(Some("*.b.example"), Some("/x")), (a, None)],
                vec![None, None],
            ),
            (
                vec![(None, Some("/b")), (None, Some("/ab")), (w, Some("/a"))],
                vec![None, None, Some(1)],
            ),
        ] {
            assert_eq!(overlapped(&routes), want, "{routes:?}");
        }
        let cfg = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api, host: a.example.com, path_prefix: /v1/ }, { upstream: api, host: A.example.com., path_prefix: /v1/x }, { upstream: api, host: a.example.com, path_prefix: /v1 }, { upstream: api }]",
        );
        let m = messages(&parse_str(&cfg).unwrap_err());
        assert!(
            m.contains("listeners[0].routes[1]: listeners[0].routes[0], listed before it, takes every request it matches")
                && m.contains("list it before listeners[0].routes[0]"),
            "{m}"
        );
        assert!(!m.contains("routes[2]") && !m.contains("routes[3]"), "{m}");
    }

    /// A pair's `server_names` are compared as SNI is: a final `.` and
    /// case do not matter, and a name no SNI could carry is refused by name
    /// (it once passed `check`, so the name's clients took the wildcard
    /// pair and its `client_auth`, none, instead).
    #[test]
    fn server_names_are_names_sni_can_carry() {
        for (written, stored) in [
            ("Admin.Example.com.", "admin.example.com"),
            ("*.Example.com", "*.example.com"),
        ] {
            assert_eq!(super::server_name(written).as_deref(), Ok(stored));
        }
        for bad in [
            "admin.example.com:443",
            "https://admin.example.com",
            "a.*.example.com",
            "10.0.0.1",
            "[::1]",
            "",
        ] {
            assert!(super::server_name(bad).is_err(), "{bad}");
        }
        // Names rustls refuses as SNI (it ends the handshake with
        // `illegal_parameter`): refused, saying why. They passed.
        let long = format!("{}example", "a.".repeat(124));
        for (bad, why) in [
            ("010.0.0.5", "its last label is a number"),
            ("Host.123", "its last label is a number"),
            ("*.123", "its last label is a number"),
            ("a.0x1f", "its last label is a number"),
            ("-a.example.com", "starts or ends with `-`"),
            ("a-.example.com", "starts or ends with `-`"),
            ("*.-a.example.com", "starts or ends with `-`"),
            (&long, "longer than 253 bytes"),
        ] {
            let m = super::server_name(bad).unwrap_err();
            assert!(
                m.contains("no client can send it as the server name (SNI)") && m.contains(why),
                "{bad}: {m}"
            );
        }
        for good in [
            "123.example.com",
            "a.0x1g",
            "in_ternal.local",
            "*.a-b.example",
        ] {
            assert_eq!(super::server_name(good).as_deref(), Ok(good));
        }
        // In a configuration such a name is left out with a warning, not
        // refused (a configuration naming one beside others loaded
        // before); it is kept for the 421 (`left_out`). An IP address is
        // still refused.
        let cfg = MINIMAL.replace(
            "certs: [{ ref: edge }]",
            "certs: [{ ref: edge, server_names: [ok.example.com, \"010.0.0.5\"] }]",
        );
        let c = parse_str(&cfg).unwrap();
        let cert = &c.listeners[0].certs[0];
        assert_eq!(
            cert.server_names.as_deref(),
            Some(&["ok.example.com".to_owned()][..])
        );
        assert_eq!(cert.left_out, ["010.0.0.5"]);
        let w = super::left_out_warnings(&c.listeners[0], "listeners[0]");
        assert!(
            w.len() == 1
                && w[0].starts_with(
                    "listeners[0].tls.certs[0].server_names: \"010.0.0.5\": no client can send it"
                ),
            "{w:?}"
        );
        let cfg = cfg.replace("\"010.0.0.5\"", "\"10.0.0.5\"");
        let m = messages(&parse_str(&cfg).unwrap_err());
        assert!(
            m.contains("listeners[0].tls.certs[0].server_names: \"10.0.0.5\"")
                && m.contains("IP address"),
            "{m}"
        );
        let cfg = MINIMAL.replace(
            "certs: [{ ref: edge }]",
            "certs: [{ ref: edge, server_names: [\"admin.example.com:443\", ok.example.com] }]",
        );
        let m = messages(&parse_str(&cfg).unwrap_err());
        assert!(
            m.contains("listeners[0].tls.certs[0].server_names") && m.contains("without the port"),
            "{m}"
        );
    }
}
