//! A listener: bind, TLS (server pairs, client auth, ALPN, min version), routes, limits.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::hosts::{Reachable, host_only_name, route_host, server_name, unroutable_prefix};
use super::{
    BODY_READ_TIMEOUT_FLOOR, HEADER_READ_TIMEOUT_FLOOR, Named, Resolver, SEND_TIMEOUT_FLOOR,
    TUNNEL_IDLE_TIMEOUT_FLOOR, shown,
};
use crate::config::bare::{CLIENT_AUTH_MODES, TLS_VERSIONS};
use crate::config::{
    ClientAuthConfig, ClientAuthMode, EntryKind, EntrySpec, Limits, ListenerCert, ListenerConfig,
    RouteConfig, TlsVersion, UpstreamCa,
};
use crate::config::{raw, verifies_somewhere};
use crate::identity::{AllowList, AllowRule, RuleError, RuleSpec};

/// The most connections a listener may allow at once: far beyond any
/// file-descriptor limit, and within what its semaphore can count.
const MAX_CONNECTIONS: usize = 1 << 30;

impl Resolver {
    pub(super) fn listener(
        &mut self,
        i: usize,
        l: &raw::Listener,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
        upstreams: &HashSet<String>,
    ) -> ListenerConfig {
        let at = format!("listeners[{i}]");
        if l.name.is_empty() {
            self.problem(format!("{at}.name"), "empty listener name");
        }
        // Logs and metrics name the admin listener `admin`
        // (`hotproxy_accept_errors_total{listener="admin"}`): a listener of
        // the same name could not be told apart from it.
        if l.name == "admin" {
            self.problem(
                format!("{at}.name"),
                "`admin` is the admin listener's name in logs and metrics; choose another",
            );
        }
        let bind = self.addr(&format!("{at}.bind"), &l.bind);
        let mut certs = Vec::new();
        let mut client_auth = ClientAuthConfig {
            mode: ClientAuthMode::None,
            ca: None,
            allow: None,
            allow_expired_crl: false,
        };
        let mut alpn = vec!["h2".to_owned(), "http/1.1".to_owned()];
        let mut min_version = TlsVersion::V12;
        let front = self.front(&at, l);
        match &l.tls {
            // A redirect listener speaks plain HTTP.
            None if front.redirect_https.is_some() => {}
            Some(_) if front.redirect_https.is_some() => self.problem(
                format!("{at}.tls"),
                "a redirect_https listener speaks plain HTTP: remove tls (or redirect_https)",
            ),
            None => self.problem(
                format!("{at}.tls"),
                "missing: a listener needs tls with at least one certificate",
            ),
            Some(tls) => {
                if tls.certs.is_empty() {
                    self.problem(
                        format!("{at}.tls.certs"),
                        "at least one server pair is needed",
                    );
                }
                for (j, c) in tls.certs.iter().enumerate() {
                    let cat = format!("{at}.tls.certs[{j}]");
                    let place = format!("listeners.{}.tls.certs[{j}]", l.name);
                    if let Some(entry) = self.pair(
                        &cat,
                        c,
                        EntryKind::ServerPair,
                        place.clone(),
                        named,
                        anonymous,
                    ) {
                        // A name rustls refuses as SNI is left out, with a
                        // warning, as a certificate's DNS SAN is: the entry
                        // is refused only if then left answering no name.
                        let mut left_out = Vec::new();
                        let server_names = c.server_names.as_ref().map(|names| {
                            names
                                .iter()
                                .filter_map(|n| {
                                    let at = format!("{cat}.server_names");
                                    let n = self.string(&at, n);
                                    match server_name(&n) {
                                        Ok(name) => Some(name),
                                        Err(e) => {
                                            match host_only_name(&n) {
                                                Some(name) => left_out.push(name),
                                                None => self.problem(at, e),
                                            }
                                            None
                                        }
                                    }
                                })
                                .collect()
                        });
                        let client_auth = c.client_auth.as_ref().map(|ca| {
                            let place = format!("{place}.client_auth.ca");
                            self.client_auth(
                                &format!("{cat}.client_auth"),
                                ca,
                                place,
                                named,
                                anonymous,
                            )
                        });
                        certs.push(ListenerCert {
                            entry,
                            server_names,
                            left_out,
                            client_auth,
                        });
                    }
                }
                if let Some(ca) = &tls.client_auth {
                    let cat = format!("{at}.tls.client_auth");
                    let place = format!("listeners.{}.tls.client_auth.ca", l.name);
                    client_auth = self.client_auth(&cat, ca, place, named, anonymous);
                }
                if let Some(a) = &tls.alpn {
                    for p in a {
                        if p != "h2" && p != "http/1.1" {
                            self.problem(
                                format!("{at}.tls.alpn"),
                                format!("unsupported protocol {} (h2 | http/1.1)", shown(p)),
                            );
                        }
                    }
                    if a.is_empty() {
                        self.problem(format!("{at}.tls.alpn"), "empty: offer h2 and/or http/1.1");
                    }
                    alpn = a.clone();
                }
                match tls.min_version.as_deref() {
                    None | Some("1.2") => {}
                    Some("1.3") => min_version = TlsVersion::V13,
                    Some(v) => self.problem(
                        format!("{at}.tls.min_version"),
                        format!("unsupported version {} {TLS_VERSIONS}", shown(v)),
                    ),
                }
            }
        }
        if front.redirect_https.is_some() && !l.routes.is_empty() {
            self.problem(
                format!("{at}.routes"),
                "a redirect_https listener only redirects: remove routes (or redirect_https)",
            );
        }
        let verifies = verifies_somewhere(&client_auth, &certs);
        let mut routes = Vec::new();
        let mut reachable = Reachable::default();
        let mut route_overlaps = Vec::new();
        for (j, r) in l.routes.iter().enumerate() {
            let rat = format!("{at}.routes[{j}]");
            super::looked_at(1);
            if !upstreams.contains(&r.upstream) {
                self.problem(
                    format!("{rat}.upstream"),
                    format!("no upstream named {}", shown(&r.upstream)),
                );
            }
            let mut matchable = true;
            if let Some(p) = &r.path_prefix {
                if !p.starts_with('/') {
                    matchable = false;
                    self.problem(
                        format!("{rat}.path_prefix"),
                        format!("{} must start with /", shown(p)),
                    );
                } else if let Some(why) = unroutable_prefix(p) {
                    matchable = false;
                    self.problem(format!("{rat}.path_prefix"), why);
                }
            }
            let host = r.host.as_ref().map(|h| {
                let hat = format!("{rat}.host");
                let h = self.string(&hat, h);
                route_host(&h).unwrap_or_else(|why| {
                    matchable = false;
                    self.problem(hat, why);
                    h.to_ascii_lowercase()
                })
            });
            // By place alone: a host or prefix may be a `${NAME}` value.
            let overlapped = matchable
                .then(|| reachable.overlapped_by(host.as_deref(), r.path_prefix.as_deref()))
                .flatten();
            if matchable
                && let Some(e) = reachable.taken_by(j, host.as_deref(), r.path_prefix.as_deref())
            {
                self.problem(
                    rat.clone(),
                    format!(
                        "{at}.routes[{e}], listed before it, takes every request it matches \
                         (its host covers this one's: the same, the `*.` wildcard over it, \
                         or none; and no path_prefix or one this route's starts with): its upstream and rules never apply; list it \
                         before {at}.routes[{e}] (the more specific route first), or remove it"
                    ),
                );
            } else if let Some(e) = overlapped {
                route_overlaps.push(format!(
                    "{rat}: {at}.routes[{e}], listed before it, takes this route's requests \
                     whose path starts with {at}.routes[{e}]'s path_prefix (its host covers \
                     this one's: a `*.` wildcard over it, or none), under its own rules: list \
                     {rat} first if its requests should go to it"
                ));
            }
            let allow = self.allow(&format!("{rat}.allow"), r.allow.as_ref());
            if allow.is_some() && !verifies {
                // No client would ever match: every request would get 403.
                self.problem(
                    format!("{rat}.allow"),
                    "allow rules need a verified identity: set client_auth mode verify_if_given or require_and_verify on the listener (or a certificate entry), or remove allow",
                );
            }
            routes.push(RouteConfig {
                host,
                path_prefix: r.path_prefix.clone(),
                upstream: r.upstream.clone(),
                allow,
                forward_client_cert: r.forward_client_cert,
                max_body_bytes: r.max_body_bytes,
                allow_from: r
                    .allow_from
                    .as_ref()
                    .map(|a| self.allow_from(&format!("{rat}.allow_from"), a)),
            });
        }
        let d = Limits::default();
        let limits = match &l.limits {
            None => d,
            Some(x) => {
                let lat = format!("{at}.limits");
                let lifetime = self.duration(
                    &format!("{lat}.max_connection_lifetime"),
                    x.max_connection_lifetime.as_ref(),
                    Duration::ZERO,
                );
                let max_connections = x.max_connections.unwrap_or(d.max_connections);
                if max_connections == 0 {
                    // Not silently one: a listener serving one client at a
                    // time is not what anyone writing 0 meant.
                    self.problem(
                        format!("{lat}.max_connections"),
                        "must be at least 1 (clients beyond it wait in the kernel backlog)",
                    );
                } else if max_connections > MAX_CONNECTIONS {
                    // tokio's semaphore panics past usize::MAX >> 3 permits,
                    // in the accept loop: the listener would stop silently.
                    self.problem(
                        format!("{lat}.max_connections"),
                        format!("{max_connections} is more than the {MAX_CONNECTIONS} a listener can hold"),
                    );
                }
                let max_header_bytes = x.max_header_bytes.unwrap_or(d.max_header_bytes);
                if max_header_bytes < MIN_HEADER_BYTES {
                    // Not a limit but an outage: every request gets 431
                    // (HTTP/1.1) or is refused by the HTTP/2 layer.
                    self.problem(
                        format!("{lat}.max_header_bytes"),
                        format!("{max_header_bytes} is less than the {MIN_HEADER_BYTES} bytes of an ordinary request head (every request would get 431)"),
                    );
                } else if max_header_bytes > MAX_HEADER_BYTES {
                    self.problem(
                        format!("{lat}.max_header_bytes"),
                        format!("{max_header_bytes} is more than {MAX_HEADER_BYTES}: each connection's read buffer may grow to it"),
                    );
                }
                let body_buffer_bytes = x.body_buffer_bytes.unwrap_or(d.body_buffer_bytes);
                if body_buffer_bytes > MAX_BODY_BUFFER_BYTES {
                    self.problem(
                        format!("{lat}.body_buffer_bytes"),
                        format!("{body_buffer_bytes} is more than {MAX_BODY_BUFFER_BYTES}: every request in flight may hold this much memory (larger bodies are streamed)"),
                    );
                }
                Limits {
                    max_connections: max_connections.clamp(1, MAX_CONNECTIONS),
                    header_read_timeout: self.floored_duration(
                        &format!("{lat}.header_read_timeout"),
                        x.header_read_timeout.as_ref(),
                        d.header_read_timeout,
                        HEADER_READ_TIMEOUT_FLOOR,
                    ),
                    idle_timeout: self.duration(
                        &format!("{lat}.idle_timeout"),
                        x.idle_timeout.as_ref(),
                        d.idle_timeout,
                    ),
                    max_header_bytes,
                    max_connection_lifetime: (!lifetime.is_zero()).then_some(lifetime),
                    send_timeout: self.floored_duration(
                        &format!("{lat}.send_timeout"),
                        x.send_timeout.as_ref(),
                        d.send_timeout,
                        SEND_TIMEOUT_FLOOR,
                    ),
                    body_read_timeout: self.floored_duration(
                        &format!("{lat}.body_read_timeout"),
                        x.body_read_timeout.as_ref(),
                        d.body_read_timeout,
                        BODY_READ_TIMEOUT_FLOOR,
                    ),
                    body_buffer_bytes,
                    max_body_bytes: x.max_body_bytes.unwrap_or(d.max_body_bytes),
                    tunnel_idle_timeout: self.floored_duration(
                        &format!("{lat}.tunnel_idle_timeout"),
                        x.tunnel_idle_timeout.as_ref(),
                        d.tunnel_idle_timeout,
                        TUNNEL_IDLE_TIMEOUT_FLOOR,
                    ),
                }
            }
        };
        ListenerConfig {
            name: l.name.clone(),
            bind,
            bind_shown: crate::config::Shown(bind.to_string()),
            certs,
            client_auth,
            alpn,
            min_version,
            routes,
            route_overlaps,
            limits,
            front,
            forward_client_cert: l.forward_client_cert.unwrap_or_default(),
            request_id: l.request_id.unwrap_or_default(),
            access_log: l.access_log.unwrap_or(true),
        }
    }

    /// A `client_auth` block (a listener's, or one certificate entry's).
    fn client_auth(
        &mut self,
        cat: &str,
        ca: &raw::ClientAuth,
        place: String,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
    ) -> ClientAuthConfig {
        let mut client_auth = ClientAuthConfig {
            mode: ClientAuthMode::None,
            ca: None,
            allow: None,
            allow_expired_crl: ca.allow_expired_crl.unwrap_or(false),
        };
        if let Some(m) = &ca.mode {
            match ClientAuthMode::parse(m) {
                Some(mode) => client_auth.mode = mode,
                None => self.problem(
                    format!("{cat}.mode"),
                    format!("unknown mode {} {CLIENT_AUTH_MODES}", shown(m)),
                ),
            }
        }
        if let Some(c) = &ca.ca {
            if let Some(UpstreamCa::Entry(id)) =
                self.ca(&format!("{cat}.ca"), c, place, false, named, anonymous)
            {
                client_auth.ca = Some(id);
            }
        } else if client_auth.mode.verifies() {
            self.problem(
                format!("{cat}.ca"),
                format!(
                    "mode {} verifies client certificates and needs a ca",
                    client_auth.mode.as_str()
                ),
            );
        }
        client_auth.allow = self.allow(&format!("{cat}.allow"), ca.allow.as_ref());
        if client_auth.allow.is_some() && !client_auth.mode.verifies() {
            self.problem(
                format!("{cat}.allow"),
                format!(
                    "allow rules need a verified identity: use mode verify_if_given or require_and_verify, not {}",
                    client_auth.mode.as_str()
                ),
            );
        }
        client_auth
    }

    /// `allow:` rules, each checked here: a malformed one is a problem at
    /// its place (`allow[2]`, the line its mapping starts on) and left out.
    /// Checked while the YAML was read, its error stopped the read, and
    /// every problem after it in the file went unreported. Every field of
    /// a rule is checked, each refused one a problem of its own. A field
    /// read as empty where reading it found a problem (a list where `cn`
    /// goes, an unset `${NAME}`), or a rule found empty where reading it
    /// did (an unknown key and no other), is no second problem: one
    /// mistake, one problem; the rule's other fields are still said.
    fn allow(&mut self, at: &str, rules: Option<&Vec<RuleSpec>>) -> Option<Arc<AllowList>> {
        let rules = rules?;
        if rules.is_empty() {
            self.problem(
                at,
                "an empty allow list would refuse every client: remove the key to let every verified client in",
            );
        }
        let mut checked = Vec::with_capacity(rules.len());
        for (i, spec) in rules.iter().enumerate() {
            let place = format!("{at}[{i}]");
            let refused = match AllowRule::checked(spec.clone()) {
                Ok(rule) => {
                    checked.push(rule);
                    continue;
                }
                Err(refused) => refused,
            };
            for e in refused {
                let read_as_empty = match &e {
                    RuleError::Empty => self.unread_within(&place),
                    RuleError::Field { field, .. } => {
                        self.unread_within(&format!("{place}.{field}"))
                    }
                };
                if !read_as_empty {
                    self.problem(&place, e.to_string());
                }
            }
        }
        Some(Arc::new(AllowList { rules: checked }))
    }
}

/// The smallest `max_header_bytes`: a browser's ordinary request head
/// (cookies aside) is several hundred bytes.
const MIN_HEADER_BYTES: usize = 1024;

/// The largest `max_header_bytes` (1 MiB): hyper grows a connection's read
/// buffer up to it, so one slow client could pin gigabytes.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// The largest `body_buffer_bytes` (64 MiB), held per request in flight.
const MAX_BODY_BUFFER_BYTES: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::{MINIMAL, messages, parse_str};

    /// send_timeout, body_read_timeout, body_buffer_bytes, max_body_bytes
    /// (and a route's own) and tunnel_idle_timeout are read,
    /// default to nginx-like values, and a zero (which would cut every
    /// connection) is refused by name.
    #[test]
    fn send_body_and_tunnel_idle_timeouts() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.listeners[0].limits.send_timeout, Duration::from_secs(60));
        assert_eq!(
            c.listeners[0].limits.body_read_timeout,
            Duration::from_secs(60)
        );
        assert_eq!(c.listeners[0].limits.body_buffer_bytes, 16_384);
        assert_eq!(c.listeners[0].limits.max_body_bytes, 0, "no limit");
        assert_eq!(c.listeners[0].routes[0].max_body_bytes, None);
        assert_eq!(
            c.listeners[0].limits.tunnel_idle_timeout,
            Duration::from_secs(3600)
        );
        let set = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api, max_body_bytes: 0 }]\n    limits: { send_timeout: 5s, body_read_timeout: 7s, body_buffer_bytes: 0, max_body_bytes: 1048576, tunnel_idle_timeout: 2m }",
        );
        let c = parse_str(&set).unwrap();
        assert_eq!(c.listeners[0].limits.send_timeout, Duration::from_secs(5));
        assert_eq!(
            c.listeners[0].limits.body_read_timeout,
            Duration::from_secs(7)
        );
        assert_eq!(c.listeners[0].limits.body_buffer_bytes, 0);
        assert_eq!(c.listeners[0].limits.max_body_bytes, 1_048_576);
        assert_eq!(c.listeners[0].routes[0].max_body_bytes, Some(0));
        assert_eq!(
            c.listeners[0].limits.tunnel_idle_timeout,
            Duration::from_secs(120)
        );
        let zero = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api }]\n    limits: { send_timeout: 0s, body_read_timeout: 0s, tunnel_idle_timeout: 0s, header_read_timeout: 0s, max_connections: 0 }",
        );
        let m = messages(&parse_str(&zero).unwrap_err());
        assert!(m.contains("listeners[0].limits.header_read_timeout"), "{m}");
        assert!(
            m.contains("listeners[0].limits.max_connections") && m.contains("at least 1"),
            "{m}"
        );
        assert!(
            m.contains("listeners[0].limits.send_timeout: \"0s\" is less than 100ms"),
            "{m}"
        );
        assert!(m.contains("listeners[0].limits.tunnel_idle_timeout"), "{m}");
        assert!(m.contains("listeners[0].limits.body_read_timeout"), "{m}");
    }

    /// Client-side timeouts so small they would cut every client are
    /// refused: header_read_timeout under 1s, the others under 100ms.
    #[test]
    fn client_timeouts_have_a_floor() {
        let limits = |l: &str| {
            MINIMAL.replace(
                "routes: [{ upstream: api }]",
                &format!("routes: [{{ upstream: api }}]\n    limits: {{ {l} }}"),
            )
        };
        let low = "header_read_timeout: 999ms, send_timeout: 99ms, body_read_timeout: 1ms, tunnel_idle_timeout: 50ms";
        let m = messages(&parse_str(&limits(low)).unwrap_err());
        for (field, floor) in [
            ("header_read_timeout", "1s"),
            ("send_timeout", "100ms"),
            ("body_read_timeout", "100ms"),
            ("tunnel_idle_timeout", "100ms"),
        ] {
            assert!(
                m.contains(&format!("listeners[0].limits.{field}: "))
                    && m.contains(&format!("is less than {floor}")),
                "{field}: {m}"
            );
        }
        let c = parse_str(&limits("header_read_timeout: 1s, send_timeout: 100ms, body_read_timeout: 100ms, tunnel_idle_timeout: 100ms")).unwrap();
        assert_eq!(
            c.listeners[0].limits.header_read_timeout,
            Duration::from_secs(1)
        );
        assert_eq!(
            c.listeners[0].limits.body_read_timeout,
            Duration::from_millis(100)
        );
    }

    /// `admin` names the admin listener in logs and metrics.
    #[test]
    fn admin_is_not_a_listener_name() {
        let named = MINIMAL.replace("- name: public", "- name: admin");
        assert_ne!(named, MINIMAL);
        let m = messages(&parse_str(&named).unwrap_err());
        assert!(
            m.contains("listeners[0].name") && m.contains("admin listener"),
            "{m}"
        );
    }

    /// A max_header_bytes no request head fits in, and a body_buffer_bytes
    /// that lets each request hold gigabytes, are refused by name (both
    /// passed `check`).
    #[test]
    fn header_and_buffer_bytes_are_bounded() {
        for (limits, field) in [
            ("max_header_bytes: 0", "max_header_bytes"),
            ("max_header_bytes: 1023", "max_header_bytes"),
            ("max_header_bytes: 1048577", "max_header_bytes"),
            ("max_header_bytes: 4294967296", "max_header_bytes"),
            ("body_buffer_bytes: 10737418240", "body_buffer_bytes"),
        ] {
            let cfg = MINIMAL.replace(
                "routes: [{ upstream: api }]",
                &format!("routes: [{{ upstream: api }}]\n    limits: {{ {limits} }}"),
            );
            let m = messages(&parse_str(&cfg).unwrap_err());
            assert!(m.contains(&format!("listeners[0].limits.{field}")), "{m}");
        }
        let fine = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api }]\n    limits: { max_header_bytes: 1024, body_buffer_bytes: 67108864 }",
        );
        parse_str(&fine).unwrap();
        let most = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api }]\n    limits: { max_header_bytes: 1048576 }",
        );
        parse_str(&most).unwrap();
    }

    /// A route allow on a listener where no client is verified passed,
    /// and every request got 403; a verifying entry is enough.
    #[test]
    fn a_route_allow_needs_a_verifying_client_auth() {
        let route = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api, allow: [{ cn: ops }] }]",
        );
        let m = messages(&parse_str(&route).unwrap_err());
        assert!(
            m.contains("listeners[0].routes[0].allow: allow rules need a verified identity"),
            "{m}"
        );
        let listener = route.replace(
            "certs: [{ ref: edge }]",
            "certs: [{ ref: edge }]\n      client_auth: { mode: verify_if_given, ca: { ref: ca } }",
        );
        parse_str(&listener).unwrap();
        let entry = route.replace(
            "certs: [{ ref: edge }]",
            "certs: [{ ref: edge, client_auth: { mode: require_and_verify, ca: { ref: ca } } }]",
        );
        parse_str(&entry).unwrap();
    }

    /// A max_connections no semaphore can hold is refused by name (it once
    /// passed `check` and panicked the listener's accept loop).
    #[test]
    fn max_connections_beyond_a_listener_is_refused() {
        let huge = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api }]\n    limits: { max_connections: 4611686018427387904 }",
        );
        let m = messages(&parse_str(&huge).unwrap_err());
        assert!(m.contains("listeners[0].limits.max_connections"), "{m}");
        let most = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api }]\n    limits: { max_connections: 1073741824 }",
        );
        assert_eq!(
            parse_str(&most).unwrap().listeners[0]
                .limits
                .max_connections,
            1 << 30
        );
    }
}
