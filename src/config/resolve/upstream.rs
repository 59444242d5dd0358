//! An upstream: server URLs, TLS to them (CA, client pair, server name), timeouts, pool size.

use std::time::Duration;

use super::{Named, Resolver, shown};
use crate::config::bare::BALANCES;
use crate::config::raw;
use crate::config::{
    ActiveHealth, Balance, DEFAULT_HTTP2_STREAM_WINDOW, EntryKind, EntrySpec, HealthConfig,
    Http2Keepalive, MAX_ACTIVE_COUNT, MAX_HTTP2_STREAM_WINDOW, MIN_HTTP2_STREAM_WINDOW,
    PassiveHealth, RetryBudget, UpstreamConfig, UpstreamServer, UpstreamTls,
};

impl Resolver {
    pub(super) fn upstream(
        &mut self,
        i: usize,
        u: &raw::Upstream,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
    ) -> UpstreamConfig {
        let at = format!("upstreams[{i}]");
        if u.name.is_empty() {
            // Series with upstream="" are the requests hotproxy answers itself (§6).
            self.problem(
                format!("{at}.name"),
                "empty upstream name (upstream=\"\" is reserved for hotproxy's own answers)",
            );
        }
        if u.servers.is_empty() {
            self.problem(format!("{at}.servers"), "at least one server is needed");
        }
        let mut servers = Vec::new();
        // https servers whose host TLS cannot send as a server name: fine
        // only when `tls.server_name` names them otherwise (below).
        let mut unnamed = Vec::new();
        for (j, s) in u.servers.iter().enumerate() {
            let sat = format!("{at}.servers[{j}]");
            let url = self.string(&sat, s);
            match parse_server(&url) {
                Ok(server) => {
                    if server.https && !tls_can_name(&server.host) {
                        unnamed.push((sat, url));
                    }
                    servers.push(server);
                }
                Err(e) => self.problem(sat, e),
            }
        }
        let mut tls = UpstreamTls::default();
        if let Some(t) = &u.tls {
            let tat = format!("{at}.tls");
            if let Some(ca) = &t.ca {
                let place = format!("upstreams.{}.tls.ca", u.name);
                if let Some(ca) = self.ca(&format!("{tat}.ca"), ca, place, true, named, anonymous) {
                    tls.ca = ca;
                }
            }
            if let Some(c) = &t.client_cert {
                let place = format!("upstreams.{}.tls.client_cert", u.name);
                if c.server_names.is_some() {
                    self.problem(
                        format!("{tat}.client_cert.server_names"),
                        "server_names apply to listener certificates only",
                    );
                }
                if c.client_auth.is_some() {
                    self.problem(
                        format!("{tat}.client_cert.client_auth"),
                        "client_auth applies to listener certificates only",
                    );
                }
                tls.client_cert = self.pair(
                    &format!("{tat}.client_cert"),
                    c,
                    EntryKind::ClientPair,
                    place,
                    named,
                    anonymous,
                );
            }
            if let Some(n) = &t.server_name {
                let n = self.string(&format!("{tat}.server_name"), n);
                if rustls_pki_types::ServerName::try_from(n.as_str()).is_err() {
                    self.problem(
                        format!("{tat}.server_name"),
                        format!("{} is not a DNS name or IP address", shown(&n)),
                    );
                }
                tls.server_name = Some(n);
            }
            if let Some(names) = &t.verify_names {
                let vat = format!("{tat}.verify_names");
                if names.is_empty() {
                    self.problem(
                        vat.clone(),
                        "empty: name at least one accepted SAN, or leave verify_names out",
                    );
                }
                for (j, n) in names.iter().enumerate() {
                    let n = self.string(&format!("{vat}[{j}]"), n);
                    match crate::tls::names::NamePattern::parse(&n) {
                        Ok(p) => tls.verify_names.push(p),
                        Err(e) => self.problem(format!("{vat}[{j}]"), e),
                    }
                }
            }
            if let Some(d) = t.drain_on_rotation {
                tls.drain_on_rotation = d;
            }
        }
        // The dial gives TLS the URL's host when no server_name is set
        // (the resolver took `127.1` as 127.0.0.1, rustls refused it as a
        // name): every handshake failed before it began, every request 502.
        if tls.server_name.is_none() {
            for (sat, url) in unnamed {
                self.problem(
                    sat,
                    format!(
                        "{} has a host TLS cannot send as a server name (not a DNS name or IP address); set tls.server_name to the name its certificate holds",
                        shown(&url)
                    ),
                );
            }
        }
        UpstreamConfig {
            name: u.name.clone(),
            servers,
            tls,
            // Zero would fail every connect, and every request.
            connect_timeout: self.positive_duration(
                &format!("{at}.connect_timeout"),
                u.connect_timeout.as_ref(),
                Duration::from_secs(5),
            ),
            request_timeout: self.positive_duration(
                &format!("{at}.request_timeout"),
                u.request_timeout.as_ref(),
                Duration::from_secs(60),
            ),
            // nginx's proxy_read_timeout: a zero would cut every body.
            read_timeout: self.positive_duration(
                &format!("{at}.read_timeout"),
                u.read_timeout.as_ref(),
                Duration::from_secs(60),
            ),
            max_idle_connections: u.max_idle_connections.unwrap_or(256),
            // hyper-util's pool and Go's: 90 s, below most servers' own.
            idle_timeout: self.positive_duration(
                &format!("{at}.idle_timeout"),
                u.idle_timeout.as_ref(),
                Duration::from_secs(90),
            ),
            // Envoy's default max_connections: a cap, not a throttle.
            max_connections_per_server: u.max_connections_per_server.unwrap_or(1024),
            resolve_interval: self.duration(
                &format!("{at}.resolve_interval"),
                u.resolve_interval.as_ref(),
                Duration::from_secs(5),
            ),
            balance: match u.balance.as_deref() {
                None | Some("round_robin") => Balance::RoundRobin,
                Some("least_request") => Balance::LeastRequest,
                Some(b) => {
                    self.problem(
                        format!("{at}.balance"),
                        format!("unknown balance {} {BALANCES}", shown(b)),
                    );
                    Balance::RoundRobin
                }
            },
            health: self.health(&at, u.health.as_ref()),
            retries: u.retries.as_ref().and_then(|r| r.attempts).unwrap_or(1),
            retry_budget: self.retry_budget(&at, u.retries.as_ref()),
            http2_keepalive: u
                .http2_keepalive
                .as_ref()
                .map(|k| self.http2_keepalive(&at, k)),
            http2_stream_window_bytes: self.http2_stream_window(&at, u.http2_stream_window_bytes),
        }
    }

    /// `retries.budget_percent` (0..=100, default 20) and
    /// `retries.min_retry_concurrency` (default 3), as Envoy's.
    fn retry_budget(&mut self, at: &str, r: Option<&raw::Retries>) -> RetryBudget {
        let d = RetryBudget::default();
        let Some(r) = r else { return d };
        let percent = match r.budget_percent {
            Some(p) if p > 100 => {
                self.problem(
                    format!("{at}.retries.budget_percent"),
                    format!("{p} is over 100 (a percentage of the requests in flight)"),
                );
                d.percent
            }
            Some(p) => p,
            None => d.percent,
        };
        RetryBudget {
            percent,
            min_concurrency: r.min_retry_concurrency.unwrap_or(d.min_concurrency),
        }
    }

    /// `http2_stream_window_bytes`: within HTTP/2's bounds for 100 streams.
    fn http2_stream_window(&mut self, at: &str, bytes: Option<u64>) -> u32 {
        let Some(bytes) = bytes else {
            return DEFAULT_HTTP2_STREAM_WINDOW;
        };
        let range = MIN_HTTP2_STREAM_WINDOW as u64..=MAX_HTTP2_STREAM_WINDOW as u64;
        if !range.contains(&bytes) {
            self.problem(
                format!("{at}.http2_stream_window_bytes"),
                format!(
                    "{bytes} is outside {MIN_HTTP2_STREAM_WINDOW}..={MAX_HTTP2_STREAM_WINDOW} \
                     (HTTP/2's initial window, up to 100 streams' worth in its largest)"
                ),
            );
            return DEFAULT_HTTP2_STREAM_WINDOW;
        }
        bytes as u32
    }

    /// `http2_keepalive` (off unless present): `interval` 30s, `timeout` 10s.
    fn http2_keepalive(&mut self, at: &str, k: &raw::Http2Keepalive) -> Http2Keepalive {
        let kat = format!("{at}.http2_keepalive");
        Http2Keepalive {
            interval: self.positive_duration(
                &format!("{kat}.interval"),
                k.interval.as_ref(),
                Duration::from_secs(30),
            ),
            timeout: self.positive_duration(
                &format!("{kat}.timeout"),
                k.timeout.as_ref(),
                Duration::from_secs(10),
            ),
        }
    }

    /// `health.passive` (on by default) and `health.active` (optional).
    fn health(&mut self, at: &str, h: Option<&raw::Health>) -> HealthConfig {
        let mut out = HealthConfig::default();
        let Some(h) = h else { return out };
        if let Some(p) = &h.passive {
            let d = PassiveHealth::default();
            out.passive = PassiveHealth {
                consecutive_failures: p.consecutive_failures.unwrap_or(d.consecutive_failures),
                eject_for: self.duration(
                    &format!("{at}.health.passive.eject_for"),
                    p.eject_for.as_ref(),
                    d.eject_for,
                ),
            };
            if out.passive.eject_for.is_zero() && out.passive.consecutive_failures > 0 {
                self.problem(
                    format!("{at}.health.passive.eject_for"),
                    "must be more than 0s (consecutive_failures: 0 turns passive health off)",
                );
            }
        }
        if let Some(a) = &h.active {
            let aat = format!("{at}.health.active");
            if !a.path.starts_with('/') {
                self.problem(
                    format!("{aat}.path"),
                    format!("{} must start with /", shown(&a.path)),
                );
            } else if http::uri::PathAndQuery::try_from(a.path.as_str()).is_err() {
                // A space, `<`, `"` or a control character: the check's
                // request could not be built, and no check would ever run.
                self.problem(
                    format!("{aat}.path"),
                    format!(
                        "{} is not a request path (percent-encode spaces and other characters a URI cannot hold)",
                        shown(&a.path)
                    ),
                );
            }
            let interval = self.positive_duration(
                &format!("{aat}.interval"),
                a.interval.as_ref(),
                Duration::from_secs(5),
            );
            let timeout = self.positive_duration(
                &format!("{aat}.timeout"),
                a.timeout.as_ref(),
                Duration::from_secs(1),
            );
            // Each refusal names its own field, not only the block. At
            // most MAX_ACTIVE_COUNT: any u32 was taken, and 4294967295 was
            // compared as -1 (one failed check took the endpoint out).
            let mut count = |field: &str, n: Option<u32>, default: u32| {
                let n = n.unwrap_or(default);
                if n == 0 {
                    self.problem(format!("{aat}.{field}"), "must be at least 1");
                } else if n > MAX_ACTIVE_COUNT {
                    self.problem(
                        format!("{aat}.{field}"),
                        format!("{n} is more than {MAX_ACTIVE_COUNT}"),
                    );
                    return default;
                }
                n
            };
            let healthy_after = count("healthy_after", a.healthy_after, 2);
            let unhealthy_after = count("unhealthy_after", a.unhealthy_after, 3);
            out.active = Some(ActiveHealth {
                path: a.path.clone(),
                interval,
                timeout,
                healthy_after,
                unhealthy_after,
            });
        }
        out
    }
}

/// `https://host:port` or `http://host[:port]` (default ports 443 / 80), the scheme in any case.
fn parse_server(url: &str) -> Result<UpstreamServer, String> {
    // Credentials first, whatever the scheme: a URL refused for its
    // scheme (`ftp://user:pass@host`, `user:pass@host`) was shown whole.
    let scheme = url.split_once("://").filter(|(s, _)| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let rest = scheme.map_or(url, |(_, r)| r);
    // `@` anywhere after the scheme, a path's included: a password may
    // hold a `/` (`user:pa/ss@host`), and cut there it was shown whole.
    if let Some((_, host)) = rest.trim_end_matches('/').rsplit_once('@') {
        // Never sent (hotproxy adds no Authorization upstream), and the URL
        // is in every log line about the server: the credentials are not
        // repeated here either.
        let scheme = scheme.map_or(String::new(), |(s, _)| format!("{s}://"));
        return Err(format!(
            "{}: credentials in a server URL are not sent upstream and would be logged; remove the part before @",
            shown(&format!("{scheme}…@{host}"))
        ));
    }
    // In any case (RFC 3986 §3.1), as nginx and Traefik read it:
    // `HTTPS://backend:8443` was refused for want of an `https://`.
    let (https, rest) = match url.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("https") => (true, r),
        Some((s, r)) if s.eq_ignore_ascii_case("http") => (false, r),
        _ => {
            return Err(format!(
                "{} must start with http:// or https://",
                shown(url)
            ));
        }
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "{} must be scheme://host[:port] without a path",
            shown(url)
        ));
    }
    let uri: http::uri::Authority = authority
        .parse()
        .map_err(|_| format!("{} has an invalid host or port", shown(url)))?;
    let host = server_host(uri.host()).map_err(|e| format!("{} {e}", shown(url)))?;
    // The parse above takes any port text (`:99999`, `:abc`, `:`, text
    // after an IPv6 address's `]`) and has no port for it: the default was
    // dialled instead. nginx refuses such a URL ("invalid port in upstream").
    let port = match port_text(authority) {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(format!(
                    "{} has an invalid port (a port is 1-65535)",
                    shown(url)
                ));
            }
        },
    };
    // What the endpoints are addressed by: a host taken here and not
    // there was skipped at run time, every request a 502.
    if crate::upstream::endpoint::authority(&host, port).is_none() {
        return Err(format!("{} has an invalid host", shown(url)));
    }
    Ok(UpstreamServer {
        url: url.to_owned(),
        https,
        host,
        port,
    })
}

/// Whether TLS can send `host` (a server URL's, an IPv6 address without
/// brackets) as the server name: a DNS name or IP address as rustls reads
/// them, which is stricter than the URL and the resolver (`127.1`,
/// `0x7f.1`, `a!b`).
fn tls_can_name(host: &str) -> bool {
    rustls_pki_types::ServerName::try_from(host).is_ok()
}

/// The host of a server URL from the authority parse's `host`: a name or
/// IPv4 address, or an IPv6 address in brackets (without them). That parse
/// takes a `[` anywhere (`x[::1]:80` has the host `x[`, `a[b]` `a[b]`),
/// anything between brackets (`[backend.local]`) and no host at all
/// (`:8080`, `[]`); nginx refuses them ("invalid IPv6 address", "no host").
fn server_host(host: &str) -> Result<String, &'static str> {
    let inner = match host.strip_prefix('[') {
        // `host` runs to the first `]`, which the parse saw closing the `[`.
        Some(bracketed) => bracketed.strip_suffix(']').unwrap_or(bracketed),
        None if host.contains(['[', ']']) => {
            return Err("has an invalid host ([ and ] only around an IPv6 address: [::1])");
        }
        None => host,
    };
    // `http://:8080`, `http://[]`: the empty name was dialled.
    if inner.is_empty() {
        return Err("has no host");
    }
    if host.starts_with('[') && inner.parse::<std::net::Ipv6Addr>().is_err() {
        return Err("has an invalid IPv6 address (only one goes between [ and ]: [::1])");
    }
    Ok(inner.to_owned())
}

/// The text after the host of `authority` (a parsed `host[:port]`), when
/// there is any: the port's, `""` for a bare `:`. For an IPv6 address it is
/// all after the `]`, which is the port only when it follows a `:`.
fn port_text(authority: &str) -> Option<&str> {
    match authority.rfind(']') {
        Some(end) => {
            let after = &authority[end + 1..];
            // `[::1]x:80`: the text after `]` as a whole, refused as a port.
            (!after.is_empty()).then(|| after.strip_prefix(':').unwrap_or(after))
        }
        None => authority.rsplit_once(':').map(|(_, port)| port),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::{MINIMAL, messages, parse_str};
    use crate::config::{Http2Keepalive, RetryBudget};

    /// An empty name passed, and its series landed in upstream="", which
    /// §6 keeps for the requests hotproxy answers itself.
    #[test]
    fn an_empty_upstream_name_is_refused() {
        let cfg = MINIMAL
            .replace("  - name: api\n", "  - name: \"\"\n")
            .replace("upstream: api", "upstream: \"\"");
        assert_ne!(cfg, MINIMAL);
        let m = messages(&parse_str(&cfg).unwrap_err());
        assert!(m.contains("upstreams[0].name: empty upstream name"), "{m}");
    }

    /// A server URL with credentials is refused, and the message does not
    /// repeat them (they would be sent nowhere, and logged on every failure).
    #[test]
    fn credentials_in_a_server_url_are_refused_unrepeated() {
        let cfg = MINIMAL.replace(
            "https://127.0.0.1:9443",
            "https://svc:s3cret@backend.local:9443",
        );
        assert_ne!(cfg, MINIMAL);
        let m = messages(&parse_str(&cfg).unwrap_err());
        assert!(
            m.contains("upstreams[0].servers") && m.contains("credentials"),
            "{m}"
        );
        assert!(!m.contains("s3cret") && !m.contains("svc:"), "{m}");
    }

    /// idle_timeout defaults to 90 s (hyper-util's and Go's), is read, and
    /// a zero (no connection ever reused) is refused by name.
    #[test]
    fn upstream_idle_timeout() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.upstreams[0].idle_timeout, Duration::from_secs(90));
        let with = |t: &str| {
            MINIMAL.replace(
                "servers: [https://127.0.0.1:9443]",
                &format!("servers: [https://127.0.0.1:9443]\n    idle_timeout: {t}"),
            )
        };
        let c = parse_str(&with("4s")).unwrap();
        assert_eq!(c.upstreams[0].idle_timeout, Duration::from_secs(4));
        let m = messages(&parse_str(&with("0s")).unwrap_err());
        assert!(
            m.contains("upstreams[0].idle_timeout") && m.contains("more than 0s"),
            "{m}"
        );
    }

    /// connect_timeout and request_timeout of zero would fail every
    /// request: refused by name.
    #[test]
    fn upstream_zero_timeouts() {
        let zero = MINIMAL.replace(
            "servers: [https://127.0.0.1:9443]",
            "servers: [https://127.0.0.1:9443]\n    connect_timeout: 0s\n    request_timeout: 0ms",
        );
        let m = messages(&parse_str(&zero).unwrap_err());
        for field in [
            "upstreams[0].connect_timeout",
            "upstreams[0].request_timeout",
        ] {
            assert!(
                m.contains(field) && m.contains("more than 0s"),
                "{field}: {m}"
            );
        }
    }

    /// http2_stream_window_bytes defaults to 128 KiB, is read, and one
    /// outside HTTP/2's bounds for 100 streams is refused by name.
    #[test]
    fn upstream_http2_stream_window_bytes() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.upstreams[0].http2_stream_window_bytes, 128 * 1024);
        let with = |n: &str| {
            MINIMAL.replace(
                "servers: [https://127.0.0.1:9443]",
                &format!("servers: [https://127.0.0.1:9443]\n    http2_stream_window_bytes: {n}"),
            )
        };
        let c = parse_str(&with("4194304")).unwrap();
        assert_eq!(c.upstreams[0].http2_stream_window_bytes, 4 << 20);
        for refused in ["1024", "21474837", "99999999999"] {
            let m = messages(&parse_str(&with(refused)).unwrap_err());
            assert!(
                m.contains("upstreams[0].http2_stream_window_bytes")
                    && m.contains("65535..=21474836"),
                "{refused}: {m}"
            );
        }
    }

    /// The retry budget is on by default (Envoy's 20 %, at least 3), is
    /// read beside `attempts`, and a percentage over 100 is refused by name.
    #[test]
    fn upstream_retry_budget() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.upstreams[0].retry_budget, RetryBudget::default());
        assert_eq!(
            (
                c.upstreams[0].retry_budget.percent,
                c.upstreams[0].retry_budget.min_concurrency
            ),
            (20, 3)
        );
        let with = |r: &str| {
            MINIMAL.replace(
                "servers: [https://127.0.0.1:9443]",
                &format!("servers: [https://127.0.0.1:9443]\n    retries: {r}"),
            )
        };
        let c = parse_str(&with("{ attempts: 2 }")).unwrap();
        assert_eq!(c.upstreams[0].retry_budget, RetryBudget::default());
        let c = parse_str(&with(
            "{ attempts: 2, budget_percent: 0, min_retry_concurrency: 1 }",
        ))
        .unwrap();
        let want = RetryBudget {
            percent: 0,
            min_concurrency: 1,
        };
        assert_eq!(
            (c.upstreams[0].retries, c.upstreams[0].retry_budget),
            (2, want)
        );
        let c = parse_str(&with("{ budget_percent: 100 }")).unwrap();
        assert_eq!(c.upstreams[0].retry_budget.percent, 100);
        let m = messages(&parse_str(&with("{ budget_percent: 101 }")).unwrap_err());
        assert!(
            m.contains("upstreams[0].retries.budget_percent") && m.contains("over 100"),
            "{m}"
        );
    }

    /// An active check's path is one a request can carry: a space (or any
    /// character a URI cannot hold) is refused by name, where it used to
    /// end the checks' task at its first tick, silently.
    #[test]
    fn upstream_active_check_path() {
        let with = |p: &str| {
            MINIMAL.replace(
                "servers: [https://127.0.0.1:9443]",
                &format!(
                    "servers: [https://127.0.0.1:9443]\n    health: {{ active: {{ path: {p:?} }} }}"
                ),
            )
        };
        let c = parse_str(&with("/healthz?full=1")).unwrap();
        let active = c.upstreams[0].health.active.as_ref().unwrap();
        assert_eq!(active.path, "/healthz?full=1");
        for refused in ["/health check", "/a<b>", "/a\tb", "healthz"] {
            let m = messages(&parse_str(&with(refused)).unwrap_err());
            assert!(
                m.contains("upstreams[0].health.active.path"),
                "{refused}: {m}"
            );
        }
    }

    /// A zero `interval`, `timeout`, `healthy_after` or `unhealthy_after`
    /// is refused naming that field, not only `health.active`: with all
    /// four set, the message used to leave the operator to guess which.
    /// So is a count past 1000 (4294967295 was taken, and read as -1).
    #[test]
    fn upstream_active_check_zeroes_name_the_field() {
        let with = |k: &str, v: &str| {
            let fields: Vec<String> = [
                ("interval", "5s"),
                ("timeout", "1s"),
                ("healthy_after", "2"),
                ("unhealthy_after", "3"),
            ]
            .iter()
            .map(|&(f, d)| format!("{f}: {}", if f == k { v } else { d }))
            .collect();
            MINIMAL.replace(
                "servers: [https://127.0.0.1:9443]",
                &format!(
                    "servers: [https://127.0.0.1:9443]\n    health: {{ active: {{ path: /h, {} }} }}",
                    fields.join(", ")
                ),
            )
        };
        for (k, v, why) in [
            ("interval", "0s", "more than 0s"),
            ("timeout", "0ms", "more than 0s"),
            ("healthy_after", "0", "at least 1"),
            ("unhealthy_after", "0", "at least 1"),
            ("healthy_after", "1001", "1001 is more than 1000"),
            (
                "unhealthy_after",
                "4294967295",
                "4294967295 is more than 1000",
            ),
            (
                "unhealthy_after",
                "2147483648",
                "2147483648 is more than 1000",
            ),
        ] {
            let m = messages(&parse_str(&with(k, v)).unwrap_err());
            assert!(
                m.contains(&format!("upstreams[0].health.active.{k}:")) && m.contains(why),
                "{k}: {m}"
            );
            assert_eq!(m.matches("health.active").count(), 1, "{k}: {m}");
        }
    }

    /// http2_keepalive is off unless present; `{}` takes 30s and 10s; a
    /// zero (a PING storm, or a connection closed at once) is refused by name.
    #[test]
    fn upstream_http2_keepalive() {
        assert_eq!(
            parse_str(MINIMAL).unwrap().upstreams[0].http2_keepalive,
            None
        );
        let with = |k: &str| {
            MINIMAL.replace(
                "servers: [https://127.0.0.1:9443]",
                &format!("servers: [https://127.0.0.1:9443]\n    http2_keepalive: {k}"),
            )
        };
        let secs = Duration::from_secs;
        for (k, interval, timeout) in [("{}", 30, 10), ("{ interval: 2m, timeout: 5s }", 120, 5)] {
            assert_eq!(
                parse_str(&with(k)).unwrap().upstreams[0].http2_keepalive,
                Some(Http2Keepalive {
                    interval: secs(interval),
                    timeout: secs(timeout)
                }),
                "{k}"
            );
        }
        let m = messages(&parse_str(&with("{ interval: 0s }")).unwrap_err());
        assert!(
            m.contains("upstreams[0].http2_keepalive.interval") && m.contains("more than 0s"),
            "{m}"
        );
        let m = messages(&parse_str(&with("{ interval: 1m, timout: 5s }")).unwrap_err());
        assert!(m.contains("timout"), "{m}");
    }
}
