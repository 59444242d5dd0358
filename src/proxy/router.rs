//! Host / path-prefix -> upstream: first match wins, no match = 404.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::RouteConfig;
use crate::metrics::RouteMetrics;
use crate::proxy::edge::RoutePolicy;
use crate::proxy::forward::Upstream;
use crate::proxy::path;
use crate::proxy::request::Refused;

enum HostMatch {
    Any,
    Exact(String),
    /// `*.example.com` stored as `example.com`: exactly one more label.
    Wildcard(String),
}

pub struct Route {
    host: HostMatch,
    /// Plain prefix, as nginx `location /v1` (so `/v1` also matches
    /// `/v1beta`), percent-decoded: compared with the decoded path.
    path_prefix: Option<Box<[u8]>>,
    pub upstream: Arc<Upstream>,
    /// The route's `allow` and `forward_client_cert`.
    pub policy: Arc<RoutePolicy>,
    /// The request metrics of (this listener, `upstream`), shared by the
    /// listener's routes to `upstream`.
    pub metrics: Arc<RouteMetrics>,
}

/// A listener's routes, bound to live upstreams. Rebuilt on config change.
pub struct Router {
    routes: Vec<Route>,
    /// Which of the listener's route configurations this is: bumped when
    /// the routes change ([`crate::proxy::listener::Listener::set_router`]),
    /// so a tunnel knows whether the routes it was let through under are
    /// still the ones in force.
    pub generation: u64,
}

impl Router {
    /// Routes naming an unknown upstream are skipped (config validation
    /// refuses them before this point).
    pub fn new(
        listener: &str,
        routes: &[RouteConfig],
        upstreams: &HashMap<String, Arc<Upstream>>,
    ) -> Router {
        // One per (listener, upstream) pair, shared by its routes: each
        // holds a status-code table (~8 KB once counted), and one per
        // route made 2,000 routes to 3 upstreams hold ~16 MB, rebuilt on
        // every reload. The series are the pair's either way.
        let mut shared: HashMap<&str, Arc<RouteMetrics>> = HashMap::new();
        let routes = routes
            .iter()
            .filter_map(|r| {
                let upstream = upstreams.get(&r.upstream)?.clone();
                let metrics = shared
                    .entry(r.upstream.as_str())
                    .or_insert_with(|| Arc::new(RouteMetrics::deferred(listener, &upstream.name)))
                    .clone();
                let host = match r.host.as_deref() {
                    None => HostMatch::Any,
                    Some(h) => match h.strip_prefix("*.") {
                        Some(s) => HostMatch::Wildcard(s.to_ascii_lowercase()),
                        None => HostMatch::Exact(h.to_ascii_lowercase()),
                    },
                };
                Some(Route {
                    host,
                    path_prefix: r
                        .path_prefix
                        .as_deref()
                        .map(|p| path::decoded(p).into_owned().into()),
                    metrics,
                    upstream,
                    policy: Arc::new(RoutePolicy {
                        allow: r.allow.clone(),
                        forward_client_cert: r.forward_client_cert,
                        max_body_bytes: r.max_body_bytes,
                        allow_from: r.allow_from.as_deref().map(Arc::from),
                    }),
                })
            })
            .collect();
        Router {
            routes,
            generation: 0,
        }
    }

    /// Put the routes' request series in `/metrics`: the configuration
    /// they were built for is committed (see [`RouteMetrics::register`]).
    pub fn register_metrics(&self) {
        for r in &self.routes {
            r.metrics.register();
        }
    }

    /// The upstream for a request to `host` (may carry `:port`) and `path`
    /// (already normalised by [`crate::proxy::request::prepare`], so a
    /// prefix sees the path the upstream will get), without the `;` check
    /// of [`Router::matched`]: for tests of the first match alone.
    #[cfg(test)]
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<Upstream>> {
        self.first(host, path).map(|r| &r.upstream)
    }

    /// The route a request to `host` and `path` takes; refused when the
    /// path's `;` parameters decide it. Tomcat and Jetty drop them
    /// (`/admin;x/secret` is their `/admin/secret`): if that reading would
    /// take another route than the path as sent, a route's rules could be
    /// slipped past on one backend or another, so neither is chosen. A
    /// parameter that changes nothing (`/app/page;jsessionid=1`) passes.
    pub fn matched(&self, host: Option<&str>, path: &str) -> Result<Option<&Route>, Refused> {
        let route = self.first(host, path);
        if path.contains(';') {
            let other = self.first(host, &path::without_params(path));
            let same = match (route, other) {
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                (a, b) => a.is_none() && b.is_none(),
            };
            if !same {
                return Err(Refused::RouteByParams);
            }
        }
        Ok(route)
    }

    /// The first route matching `host` and `path`. `*` (`OPTIONS *`, the
    /// server of `host` itself) is routed as `/` is: by the host's routes
    /// (a `path_prefix: /` route matches, a longer prefix does not), and
    /// under that route's rules. No prefix starts `*`: it took the first
    /// prefix-less route, one set for other hosts (or none, 404).
    fn first(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        let host = host.map(strip_port);
        let path = if path == "*" { "/" } else { path };
        // Compared decoded, as the backend will read it (see
        // [`path::decoded`]); no copy unless the path has a `%`.
        let path = path::decoded(path);
        self.routes.iter().find(|r| {
            let host_ok = match (&r.host, host) {
                (HostMatch::Any, _) => true,
                (_, None) => false,
                (HostMatch::Exact(h), Some(x)) => h.eq_ignore_ascii_case(x),
                (HostMatch::Wildcard(s), Some(x)) => x
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(s)),
            };
            host_ok && r.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{UpstreamConfig, UpstreamTls};
    use std::time::Duration;

    fn upstream(name: &str) -> Arc<Upstream> {
        let tls = crate::tls::client::build(None, None, &[]).unwrap();
        Upstream::new(
            UpstreamConfig {
                name: name.into(),
                servers: vec![],
                tls: UpstreamTls::default(),
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                max_idle_connections: 1,
                idle_timeout: Duration::from_secs(1),
                max_connections_per_server: 0,
                resolve_interval: Duration::ZERO,
                balance: Default::default(),
                health: Default::default(),
                retries: 0,
                retry_budget: Default::default(),
                http2_keepalive: None,
                http2_stream_window_bytes: crate::config::DEFAULT_HTTP2_STREAM_WINDOW,
            },
            tls,
            None,
        )
    }

    /// A route to `up` for `host` and `path`, with no policy of its own.
    fn route(host: Option<&str>, path: Option<&str>, up: &str) -> RouteConfig {
        RouteConfig {
            host: host.map(Into::into),
            path_prefix: path.map(Into::into),
            upstream: up.into(),
            allow: None,
            forward_client_cert: None,
            max_body_bytes: None,
            allow_from: None,
        }
    }

    /// Upstreams by these names.
    fn upstreams(names: &[&str]) -> HashMap<String, Arc<Upstream>> {
        names.iter().map(|n| (n.to_string(), upstream(n))).collect()
    }

    /// Routes to one upstream share the pair's metrics (one status-code
    /// table, ~8 KB once counted): one per route made 2,000 routes to 3
    /// upstreams hold ~16 MB, rebuilt on every reload.
    #[test]
    fn routes_to_one_upstream_share_their_metrics() {
        let ups = upstreams(&["api", "web"]);
        let r = Router::new(
            "public",
            &[
                route(Some("a.test"), None, "api"),
                route(Some("b.test"), None, "web"),
                route(None, Some("/api"), "api"),
            ],
            &ups,
        );
        let m = |i: usize| &r.routes[i].metrics;
        assert!(Arc::ptr_eq(m(0), m(2)), "two routes to api, two tables");
        assert!(!Arc::ptr_eq(m(0), m(1)), "api and web share a table");
    }

    /// First match wins; host exact or one-label wildcard; prefix; no match = None.
    #[test]
    fn first_match_wins() {
        let ups = upstreams(&["api", "web", "any"]);
        let r = Router::new(
            "public",
            &[
                route(Some("api.example.com"), Some("/v1"), "api"),
                route(Some("*.example.com"), None, "web"),
                route(None, Some("/public"), "any"),
            ],
            &ups,
        );
        let name = |h, p| r.route(h, p).map(|u| u.name.to_string());
        assert_eq!(
            name(Some("API.example.com:8443"), "/v1/users").as_deref(),
            Some("api")
        );
        assert_eq!(name(Some("api.example.com"), "/v2").as_deref(), Some("web"));
        assert_eq!(name(Some("a.b.example.com"), "/"), None);
        assert_eq!(
            name(Some("example.com"), "/public/x").as_deref(),
            Some("any")
        );
        assert_eq!(name(None, "/nothing"), None);
    }

    /// A prefix is compared with the decoded path, as the backend reads
    /// it: `/%40admin/` is `/@admin/`, a hex digit's case changes nothing,
    /// and a prefix written encoded or raw matches either spelling. They
    /// used to be compared as sent, so `/%40admin/users` took the catch-all
    /// route and skipped the `/@admin/` route's rules.
    #[test]
    fn prefixes_match_the_decoded_path() {
        let ups = upstreams(&["at", "cafe", "encoded", "any"]);
        let r = Router::new(
            "public",
            &[
                route(None, Some("/@admin/"), "at"),
                route(None, Some("/café/"), "cafe"),
                route(None, Some("/100%25/"), "encoded"),
                route(None, None, "any"),
            ],
            &ups,
        );
        let name = |p| r.route(None, p).map(|u| u.name.to_string());
        for (path, want) in [
            ("/@admin/users", "at"),
            ("/%40admin/users", "at"),
            ("/caf%C3%A9/menu", "cafe"),
            ("/caf%c3%a9/menu", "cafe"),
            ("/café/menu", "cafe"),
            ("/100%25/x", "encoded"),
            ("/%31%30%30%25/x", "encoded"),
            ("/%40admi/users", "any"),
            ("/caf%C3%A8/menu", "any"),
        ] {
            assert_eq!(name(path).as_deref(), Some(want), "{path}");
        }
    }

    /// `OPTIONS *` takes the route its host's `/` takes: a `path_prefix:
    /// /` route of that host, not one with a longer prefix, nor a catch-all
    /// after them; a host without a route of its own takes the catch-all.
    #[test]
    fn asterisk_is_routed_as_the_hosts_root() {
        let ups = upstreams(&["api", "root", "any"]);
        let r = Router::new(
            "public",
            &[
                route(Some("a.test"), Some("/api"), "api"),
                route(Some("a.test"), Some("/"), "root"),
                route(None, None, "any"),
            ],
            &ups,
        );
        let name = |h| {
            r.matched(Some(h), "*")
                .unwrap()
                .map(|r| r.upstream.name.to_string())
        };
        assert_eq!(name("a.test:443").as_deref(), Some("root"));
        assert_eq!(name("b.test").as_deref(), Some("any"));
        let only_prefixes =
            Router::new("public", &[route(Some("a.test"), Some("/"), "root")], &ups);
        assert!(only_prefixes.route(Some("a.test"), "*").is_some());
        assert!(only_prefixes.route(Some("b.test"), "*").is_none());
    }

    /// `;` parameters may not pick the route: both readings must agree.
    #[test]
    fn path_parameters_cannot_pick_the_route() {
        let ups = upstreams(&["admin", "app", "any"]);
        let r = Router::new(
            "public",
            &[
                route(None, Some("/admin/"), "admin"),
                route(None, Some("/app"), "app"),
                route(None, None, "any"),
            ],
            &ups,
        );
        let name = |p| {
            r.matched(None, p)
                .map(|r| r.map(|r| r.upstream.name.to_string()))
        };
        assert_eq!(name("/admin;x/secret"), Err(Refused::RouteByParams));
        assert_eq!(name("/admin/;x"), Ok(Some("admin".into())));
        assert_eq!(name("/admin/x;v=1"), Ok(Some("admin".into())));
        assert_eq!(name("/app;jsessionid=1"), Ok(Some("app".into())));
        assert_eq!(name("/x;y/admin/"), Ok(Some("any".into())));
        assert_eq!(name("/;/admin/x"), Err(Refused::RouteByParams));
    }

    proptest::proptest! {
        /// Routing a normalised path: what the `/pub/` route gets starts
        /// with `/pub/`, is already normal (a backend resolving it again
        /// gets the same path) and has no dot segment left; the plain
        /// prefix `/api` only gets paths starting with `/api`.
        #[test]
        fn normalised_paths_never_escape_a_prefix(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "pub", "api", "apix", "a", "%70ub",
                ]),
                0..12,
            )
        ) {
            let ups = upstreams(&["pub", "api", "rest"]);
            let r = Router::new(
                "public",
                &[
                    route(None, Some("/pub/"), "pub"),
                    route(None, Some("/api"), "api"),
                    route(None, Some("/"), "rest"),
                ],
                &ups,
            );
            let raw = format!("/{}", pieces.concat());
            let Ok(path) = crate::proxy::path::normalise(&raw) else {
                return Ok(());
            };
            let routed = r.route(None, &path).map(|u| u.name.to_string());
            let again = crate::proxy::path::normalise(&path).unwrap();
            proptest::prop_assert_eq!(again.as_ref(), path.as_ref());
            proptest::prop_assert!(!path.split('/').any(|s| s == "." || s == ".."));
            match routed.as_deref() {
                Some("pub") => proptest::prop_assert!(path.starts_with("/pub/"), "{raw} -> {path}"),
                Some("api") => proptest::prop_assert!(path.starts_with("/api"), "{raw} -> {path}"),
                _ => {}
            }
        }
    }
}
