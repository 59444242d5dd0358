//! A listener: bind, TLS (server pairs, client auth, ALPN, min version), routes, limits.

use std::sync::Arc;
use std::time::Duration;

use super::{Named, Resolver};
use crate::config::raw;
use crate::config::{
    ClientAuthConfig, ClientAuthMode, EntryKind, EntrySpec, Limits, ListenerCert, ListenerConfig,
    RouteConfig, TlsVersion, UpstreamCa,
};
use crate::identity::{AllowList, AllowRule};

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
        upstreams: &[String],
    ) -> ListenerConfig {
        let at = format!("listeners[{i}]");
        if l.name.is_empty() {
            self.problem(format!("{at}.name"), "empty listener name");
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
        match &l.tls {
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
                        let server_names = c.server_names.as_ref().map(|names| {
                            names
                                .iter()
                                .map(|n| {
                                    self.string(&format!("{cat}.server_names"), n)
                                        .to_ascii_lowercase()
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
                                format!("unsupported protocol {p:?} (h2 | http/1.1)"),
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
                        format!("unsupported version {v:?} (\"1.2\" | \"1.3\")"),
                    ),
                }
            }
        }
        let mut routes = Vec::new();
        for (j, r) in l.routes.iter().enumerate() {
            let rat = format!("{at}.routes[{j}]");
            if !upstreams.contains(&r.upstream) {
                self.problem(
                    format!("{rat}.upstream"),
                    format!("no upstream named {:?}", r.upstream),
                );
            }
            if let Some(p) = &r.path_prefix
                && !p.starts_with('/')
            {
                self.problem(
                    format!("{rat}.path_prefix"),
                    format!("{p:?} must start with /"),
                );
            }
            routes.push(RouteConfig {
                host: r
                    .host
                    .as_ref()
                    .map(|h| self.string(&format!("{rat}.host"), h).to_ascii_lowercase()),
                path_prefix: r.path_prefix.clone(),
                upstream: r.upstream.clone(),
                allow: self.allow(&format!("{rat}.allow"), r.allow.as_ref()),
                forward_client_cert: r.forward_client_cert,
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
                let max_connections = x.max_connections.unwrap_or(d.max_connections).max(1);
                if max_connections > MAX_CONNECTIONS {
                    // tokio's semaphore panics past usize::MAX >> 3 permits,
                    // in the accept loop: the listener would stop silently.
                    self.problem(
                        format!("{lat}.max_connections"),
                        format!("{max_connections} is more than the {MAX_CONNECTIONS} a listener can hold"),
                    );
                }
                Limits {
                    max_connections: max_connections.min(MAX_CONNECTIONS),
                    header_read_timeout: self.duration(
                        &format!("{lat}.header_read_timeout"),
                        x.header_read_timeout.as_ref(),
                        d.header_read_timeout,
                    ),
                    idle_timeout: self.duration(
                        &format!("{lat}.idle_timeout"),
                        x.idle_timeout.as_ref(),
                        d.idle_timeout,
                    ),
                    max_header_bytes: x.max_header_bytes.unwrap_or(d.max_header_bytes),
                    max_connection_lifetime: (!lifetime.is_zero()).then_some(lifetime),
                    send_timeout: self.positive_duration(
                        &format!("{lat}.send_timeout"),
                        x.send_timeout.as_ref(),
                        d.send_timeout,
                    ),
                    tunnel_idle_timeout: self.positive_duration(
                        &format!("{lat}.tunnel_idle_timeout"),
                        x.tunnel_idle_timeout.as_ref(),
                        d.tunnel_idle_timeout,
                    ),
                }
            }
        };
        ListenerConfig {
            name: l.name.clone(),
            bind,
            certs,
            client_auth,
            alpn,
            min_version,
            routes,
            limits,
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
                    format!("unknown mode {m:?} (none | request | require_any | verify_if_given | require_and_verify)"),
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

    /// `allow:` rules (each already checked while the YAML was read).
    fn allow(&mut self, at: &str, rules: Option<&Vec<AllowRule>>) -> Option<Arc<AllowList>> {
        let rules = rules?;
        if rules.is_empty() {
            self.problem(
                at,
                "an empty allow list would refuse every client: remove the key to let every verified client in",
            );
        }
        Some(Arc::new(AllowList {
            rules: rules.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::{MINIMAL, messages, parse_str};

    /// send_timeout and tunnel_idle_timeout are read, default to nginx-like
    /// values, and a zero (which would cut every connection) is refused by name.
    #[test]
    fn send_and_tunnel_idle_timeouts() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.listeners[0].limits.send_timeout, Duration::from_secs(60));
        assert_eq!(
            c.listeners[0].limits.tunnel_idle_timeout,
            Duration::from_secs(3600)
        );
        let set = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api }]\n    limits: { send_timeout: 5s, tunnel_idle_timeout: 2m }",
        );
        let c = parse_str(&set).unwrap();
        assert_eq!(c.listeners[0].limits.send_timeout, Duration::from_secs(5));
        assert_eq!(
            c.listeners[0].limits.tunnel_idle_timeout,
            Duration::from_secs(120)
        );
        let zero = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api }]\n    limits: { send_timeout: 0s, tunnel_idle_timeout: 0s }",
        );
        let m = messages(&parse_str(&zero).unwrap_err());
        assert!(
            m.contains("listeners[0].limits.send_timeout") && m.contains("more than 0s"),
            "{m}"
        );
        assert!(m.contains("listeners[0].limits.tunnel_idle_timeout"), "{m}");
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
