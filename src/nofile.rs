//! The open-file limit (RLIMIT_NOFILE): the soft one raised to the hard one at start, and compared with what the listeners may hold open.
//!
//! systemd and containerd start services with a soft limit of 1024 while
//! `limits.max_connections` defaults to 10,000 per listener, each proxied
//! request holding a client socket and an upstream one. Go programs
//! (Traefik, Caddy) raise the soft limit to the hard one at start, as
//! nginx's `worker_rlimit_nofile` does; so does `run`. What is still too
//! low after that is said, by `run` and `check`, naming the listeners.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::Config;

/// Descriptors held besides the listeners' connections: the runtime's
/// own (epoll, eventfds, stdio), the watcher's, the files read and the
/// access log.
pub const FILES_MARGIN: u64 = 64;

/// The soft limit, and the hard one it may be raised to (`None`: no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// The process's limit now.
pub fn current() -> Limit {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    Limit {
        soft: current,
        hard: maximum,
    }
}

/// Raise the soft limit to the hard one, logging what it was and is; on
/// failure (a hard limit of "unlimited" the kernel caps lower) the limit
/// is left as it was, with a warning. Returns the limit in force after.
pub fn raise() -> Limit {
    let before = current();
    if before.soft == before.hard {
        tracing::debug!(
            soft = shown(before.soft),
            hard = shown(before.hard),
            "open file limit already at its hard limit"
        );
        return before;
    }
    let raised = Rlimit {
        current: before.hard,
        maximum: before.hard,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            let after = current();
            tracing::info!(
                from = shown(before.soft),
                soft = shown(after.soft),
                hard = shown(after.hard),
                "open file limit raised to its hard limit"
            );
            after
        }
        Err(e) => {
            tracing::warn!(
                soft = shown(before.soft),
                hard = shown(before.hard),
                error = %e,
                "cannot raise the open file limit to its hard limit; it stays"
            );
            before
        }
    }
}

/// A limit as logs and messages show it.
fn shown(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// Descriptors the listeners may need beyond the limit in force.
#[derive(Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// The soft limit (once raised).
    pub limit: u64,
    /// What the listeners may hold at once, the margin included.
    pub need: u64,
    /// Each listener with its `max_connections` and descriptors per
    /// connection: `public (10000 × 2), redirect (10000 × 1)`.
    pub listeners: String,
}

/// What `run` logs (with the numbers as fields) and `check` prints after them.
pub const ADVICE: &str = "connections past it fail to accept: raise the hard limit (systemd LimitNOFILE=, docker --ulimit nofile=) or lower limits.max_connections";

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "open file limit {} is below the {} descriptors the listeners may hold at once (max_connections × descriptors per connection: {}; with the admin listener, the upstreams' idle pooled and health-check connections, and files): {ADVICE}",
            self.limit, self.need, self.listeners
        )
    }
}

/// What `config`'s listeners may hold open at once, when `limit` (the soft
/// limit once raised) is below it. Each connection of a proxying listener
/// counts twice (the client's socket and the upstream's), one of a
/// `redirect_https` listener once (it answers itself); each listening
/// socket once, the admin listener's connections, the upstreams'
/// ([`upstream_descriptors`]), and [`FILES_MARGIN`].
pub fn shortfall(config: &Config, limit: Option<u64>) -> Option<Shortfall> {
    let limit = limit?;
    let mut need = FILES_MARGIN;
    let mut named = Vec::new();
    for l in &config.listeners {
        let per: u64 = if l.front.redirect_https.is_some() {
            1
        } else {
            2
        };
        let conns = l.limits.max_connections as u64;
        need = need.saturating_add(conns.saturating_mul(per).saturating_add(1));
        named.push(format!("{} ({conns} × {per})", l.name));
    }
    if config.admin.is_some() {
        need = need.saturating_add(crate::admin::MAX_CONNECTIONS as u64 + 1);
    }
    need = need.saturating_add(upstream_descriptors(config));
    (need > limit).then(|| Shortfall {
        limit,
        need,
        listeners: named.join(", "),
    })
}

/// Upstream connections held besides those of the listeners' requests:
/// each server's pool keeps up to `max_idle_connections` idle, no more
/// than the `max_connections_per_server` it may open (0: no cap), and
/// with `health.active` a check may open one more per server (past the
/// slot limit: [`crate::upstream::pool::Want::Check`]). Per configured
/// server: a name resolving to several addresses may hold that many
/// times more.
fn upstream_descriptors(config: &Config) -> u64 {
    config.upstreams.iter().fold(0u64, |need, u| {
        let idle = match u.max_connections_per_server {
            0 => u.max_idle_connections,
            cap => u.max_idle_connections.min(cap),
        };
        let per_server = (idle as u64).saturating_add(u64::from(u.health.active.is_some()));
        need.saturating_add((u.servers.len() as u64).saturating_mul(per_server))
    })
}

/// At `run`'s start: the soft limit raised, and a warning when the
/// listeners may need more than it.
pub fn at_start(config: &Config) {
    let limit = raise();
    if let Some(s) = shortfall(config, limit.soft) {
        tracing::warn!(
            limit = s.limit,
            need = s.need,
            listeners = %s.listeners,
            "open file limit is below what the listeners may hold at once; {ADVICE}"
        );
    }
}

/// For `check`: the warning `run` would give here, against the hard limit
/// (what `run` raises the soft one to).
pub fn check_warning(config: &Config) -> Option<Shortfall> {
    shortfall(config, current().hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two upstreams' idle pools and one's health checks are counted
    /// beside the listener's connections: `servers × max_idle_connections`,
    /// plus one check connection per server with `health.active`.
    #[test]
    fn upstream_pools_and_checks_are_counted() {
        let text = "
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls: { certs: [{ cert_file: a.crt, key_file: a.key }] }
    limits: { max_connections: 100 }
    routes: [{ path_prefix: /b, upstream: b }, { upstream: a }]
upstreams:
  - name: a
    servers: [http://127.0.0.1:9001, http://127.0.0.1:9002, http://127.0.0.1:9003]
    max_idle_connections: 10
  - name: b
    servers: [http://127.0.0.1:9004, http://127.0.0.1:9005]
    max_idle_connections: 7
    health: { active: { path: /healthz } }
";
        let config = crate::config::parse(text, std::path::Path::new("/etc/hotproxy/c.yaml"))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        assert_eq!(upstream_descriptors(&config), 3 * 10 + 2 * (7 + 1));
        // 100 × 2 + 1 for the listener, 46 for the upstreams, 64 for files.
        let short = shortfall(&config, Some(310)).expect("310 < 311");
        assert_eq!(short.need, 201 + 46 + FILES_MARGIN);
        assert!(shortfall(&config, Some(311)).is_none());
    }

    /// A server's pool holds no more idle connections than it may open:
    /// `min(max_idle_connections, max_connections_per_server)` each (0:
    /// no cap on connections), not `max_idle_connections` alone.
    #[test]
    fn idle_pools_are_capped_by_the_connections_per_server() {
        let text = "
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls: { certs: [{ cert_file: a.crt, key_file: a.key }] }
    routes: [{ path_prefix: /b, upstream: b }, { path_prefix: /c, upstream: c }, { upstream: a }]
upstreams:
  - name: a
    servers: [http://127.0.0.1:9001, http://127.0.0.1:9002]
    max_idle_connections: 10
    max_connections_per_server: 3
  - name: b
    servers: [http://127.0.0.1:9004]
    max_idle_connections: 7
    max_connections_per_server: 0
    health: { active: { path: /healthz } }
  - name: c
    servers: [http://127.0.0.1:9005]
    max_idle_connections: 2
    max_connections_per_server: 5
";
        let config = crate::config::parse(text, std::path::Path::new("/etc/hotproxy/c.yaml"))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        assert_eq!(upstream_descriptors(&config), 2 * 3 + (7 + 1) + 2);
    }
}
