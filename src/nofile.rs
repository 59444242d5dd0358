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
            "open file limit {} is below the {} descriptors the listeners may hold at once (max_connections × descriptors per connection: {}; with the admin listener and files): {ADVICE}",
            self.limit, self.need, self.listeners
        )
    }
}

/// What `config`'s listeners may hold open at once, when `limit` (the soft
/// limit once raised) is below it. Each connection of a proxying listener
/// counts twice (the client's socket and the upstream's), one of a
/// `redirect_https` listener once (it answers itself); each listening
/// socket once, the admin listener's connections, and [`FILES_MARGIN`].
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
    (need > limit).then(|| Shortfall {
        limit,
        need,
        listeners: named.join(", "),
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
