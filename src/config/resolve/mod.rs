//! Raw -> checked [`Config`]: every value validated, every problem recorded with its location.
//!
//! This file holds the shared helpers (strings, paths, durations, addresses)
//! and the top-level sections (runtime, admin, store, watch); the sections with
//! most rules have a file each: `entry` (certs and `ref`s), `listener`, `upstream`;
//! `binds` finds listening addresses that cannot all be bound.

mod binds;
pub use binds::on_running_admin;
mod entry;
mod front;
mod hosts;
pub(crate) use hosts::{host_only_name, left_out_warnings, server_name};
mod listener;
mod upstream;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::parse_duration;
use super::found_text as shown;

/// The most `runtime.worker_threads`: far more than any host has cores.
const MAX_WORKER_THREADS: usize = 1024;

/// The least `header_read_timeout`: the TLS handshake and the first head
/// take a client several round trips, so below this a client far away
/// (or on a slow link) never gets a request through.
pub(super) const HEADER_READ_TIMEOUT_FLOOR: (Duration, &str, &str) = (
    Duration::from_secs(1),
    "1s",
    "the TLS handshake and the first request head must arrive within it",
);
/// The least `send_timeout`, `body_read_timeout`, `tunnel_idle_timeout`:
/// each waits for one move of the client's (at least a round trip away).
pub(super) const SEND_TIMEOUT_FLOOR: (Duration, &str, &str) = (
    Duration::from_millis(100),
    "100ms",
    "a client that takes a round trip to read is cut",
);
pub(super) const BODY_READ_TIMEOUT_FLOOR: (Duration, &str, &str) = (
    Duration::from_millis(100),
    "100ms",
    "a client a round trip away cannot send the next piece of its body in time",
);
pub(super) const TUNNEL_IDLE_TIMEOUT_FLOOR: (Duration, &str, &str) = (
    Duration::from_millis(100),
    "100ms",
    "a tunnel is cut before either side can answer the other",
);
use super::bare::ROLES;
use super::raw;
use super::{
    AdminConfig, Config, EntryKind, EntrySpec, Problem, Role, RuntimeConfig, StoreConfig,
    TokenConfig, TokenSource, WatchConfig,
};

/// The longest listener or upstream name: a Kubernetes object name's (a
/// DNS subdomain), so names generated from namespace, Service and port
/// (ingress-nginx's `default-my-service-8080`) fit.
const MAX_NAME_LEN: usize = 253;

/// Whether `name` may name a listener or upstream: ASCII letters, digits,
/// `-`, `_` and `.`, starting with a letter or digit, at most
/// [`MAX_NAME_LEN`]. A name is written as it is in text log lines (a
/// control character or a space splits them), and is a segment of admin
/// API paths (`/` could never be asked for, `..` is resolved away by
/// clients).
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Named entries by id, for resolving `ref:`s.
type Named = HashMap<String, EntryKind>;

/// Turns raw structs into a checked [`Config`], collecting every problem.
struct Resolver {
    base: PathBuf,
    problems: Vec<Problem>,
    /// Each path field read, by its field path, as it resolved.
    paths: HashMap<String, PathBuf>,
    /// The fields (and keys) reading the YAML found a problem at, each
    /// read as empty: a problem of the resolver's about such emptiness
    /// would say the same mistake twice.
    unread: BTreeSet<String>,
    /// The field paths of the values written as block scalars (`|`, `>`).
    blocks: HashSet<String>,
    /// The field paths of the values no message may quote (set by
    /// `${NAME}`, pasted): a problem of another field must not name them.
    withheld: HashSet<String>,
    /// Of those, the ones set by `${NAME}`, by field path, as a message
    /// names them: an admin token's source is read after resolving.
    set_by_env: HashMap<String, crate::config::SetByEnv>,
}

/// An invalid `name` (refused, with the problem withholding it) replaced
/// by its place: `check`, going on with what resolved, prints names in
/// entry ids and lines of its own, which must not show a pasted key.
fn stand_in(name: &mut String, place: impl FnOnce() -> String) {
    if !name.is_empty() && !valid_name(name) {
        *name = place();
    }
}

/// Resolve `raw` as far as it goes: the configuration (whatever resolved),
/// every problem found (`check` loads the files of what resolved) and
/// each path field as it resolved (a problem shows a path so: a value
/// from `${NAME}` is withheld there whole). `unread`: the field paths
/// reading the YAML found a problem at. `blocks`: the field paths of the
/// values written as block scalars, which no path field takes.
/// `withheld`: the field paths of the values no message may quote;
/// `set_by_env`: those set by `${NAME}`, as a message names them.
pub(super) fn resolve_all(
    raw: raw::File,
    file: &Path,
    unread: BTreeSet<String>,
    blocks: HashSet<String>,
    withheld: HashSet<String>,
    set_by_env: HashMap<String, crate::config::SetByEnv>,
) -> (Config, Vec<Problem>, HashMap<String, PathBuf>) {
    let mut r = Resolver {
        base: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        problems: Vec::new(),
        paths: HashMap::new(),
        unread,
        blocks,
        withheld,
        set_by_env,
    };
    let config = r.file(raw, file);
    (config, r.problems, r.paths)
}

impl Resolver {
    fn problem(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            location: location.into(),
            message: message.into(),
        });
    }

    /// Whether reading the YAML found a problem at `field` or within it.
    fn unread_within(&self, field: &str) -> bool {
        let from = self.unread.range(field.to_owned()..);
        let mut starting = from.map_while(|f| f.strip_prefix(field));
        starting.any(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    }

    /// A string field as written (`${NAME}` was expanded in the tree, for
    /// every field alike: [`super::tree::expand_env`]).
    fn string(&mut self, _at: &str, s: &str) -> String {
        s.to_owned()
    }

    /// A path field, resolved against the file's directory; `None` (after
    /// recording why) when the value is not a path but content pasted in
    /// its place (a key, a certificate, a token): every place a path is
    /// shown (`check`, a rejected reload, the admin API) would show it.
    fn path(&mut self, at: &str, s: &str) -> Option<PathBuf> {
        self.path_of(at, None, s)
    }

    /// [`Self::path`] of a field of a named entry, which the problem names
    /// too as `entry` says it (its id, quoted, or its place).
    fn path_of(&mut self, at: &str, entry: Option<&str>, s: &str) -> Option<PathBuf> {
        let s = self.string(at, s);
        // A key or token folded to one line (`key_file: >-` and its
        // lines, `|-` and one) holds no line break: it is told by how it
        // was written, as the problems' withholding tells it (SPEC §2).
        let block = self.blocks.contains(at).then_some(
            "written as a block scalar (| or >): pasted content (a key or token?), not a path",
        );
        if let Some(why) = not_a_path(&s).or(block) {
            // Never the value: it is likely a private key or a token.
            let whose = entry
                .map(|name| format!("entry {name}: "))
                .unwrap_or_default();
            self.problem(
                at,
                format!(
                    "{whose}{why}; give the path of the file that holds it (the value is not shown)"
                ),
            );
            return None;
        }
        if s.is_empty() {
            // Refused, as a pasted value is: joined to the configuration's
            // directory, it was loaded as a file (`check`: "not a regular
            // file (a directory)"), a second problem for the one made.
            self.problem(at, "empty path");
            return None;
        }
        let p = PathBuf::from(s);
        let p = if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        };
        self.paths.insert(at.to_owned(), p.clone());
        Some(p)
    }

    fn duration(&mut self, at: &str, s: Option<&String>, default: Duration) -> Duration {
        let Some(s) = s else { return default };
        let s = self.string(at, s);
        match parse_duration(&s) {
            Ok(d) => d,
            Err(e) => {
                self.problem(at, e);
                default
            }
        }
    }

    /// A duration that must not be zero (a zero timeout would cut every
    /// connection at once, not switch the limit off).
    fn positive_duration(&mut self, at: &str, s: Option<&String>, default: Duration) -> Duration {
        let d = self.duration(at, s, default);
        if d.is_zero() {
            self.problem(at, "must be more than 0s");
            return default;
        }
        d
    }

    /// A duration of at least `floor`: below it the limit would cut every
    /// client (nginx and Envoy take any value; hotproxy refuses those).
    /// The default is kept when it is refused.
    fn floored_duration(
        &mut self,
        at: &str,
        s: Option<&String>,
        default: Duration,
        (floor, floor_text, why): (Duration, &str, &str),
    ) -> Duration {
        let d = self.duration(at, s, default);
        if d < floor {
            let given = s.map_or(String::new(), |s| format!("{} ", shown(s)));
            self.problem(at, format!("{given}is less than {floor_text}: {why}"));
            return default;
        }
        d
    }

    fn addr(&mut self, at: &str, s: &str) -> SocketAddr {
        let s = self.string(at, s);
        match s.parse() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    at,
                    format!(
                        "{} is not an address like 0.0.0.0:8443 or [::]:8443",
                        shown(&s)
                    ),
                );
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        }
    }

    /// `runtime.worker_threads`, at most [`MAX_WORKER_THREADS`]: tokio
    /// spawns them all at startup, and thousands abort the process when
    /// the system's thread or memory limit is met.
    fn worker_threads(&mut self, n: usize) -> usize {
        if n > MAX_WORKER_THREADS {
            self.problem(
                "runtime.worker_threads",
                format!("{n} is more than {MAX_WORKER_THREADS} (0 = one per CPU core)"),
            );
        }
        n.min(MAX_WORKER_THREADS)
    }

    fn file(&mut self, mut raw: raw::File, file: &Path) -> Config {
        let runtime = match &raw.runtime {
            Some(r) => RuntimeConfig {
                worker_threads: self.worker_threads(r.worker_threads.unwrap_or(0)),
                shutdown_grace: self.duration(
                    "runtime.shutdown_grace",
                    r.shutdown_grace.as_ref(),
                    Duration::from_secs(30),
                ),
            },
            None => RuntimeConfig {
                worker_threads: 0,
                shutdown_grace: Duration::from_secs(30),
            },
        };
        let admin = raw.admin.as_ref().map(|a| self.admin(a));
        // A store with a refused path is left out (`check` opens the store).
        let store = raw.store.as_ref().and_then(|s| {
            let path = self.path("store.path", &s.path);
            let key_file = self.path("store.key_file", &s.key_file);
            let file_roots = match &s.file_roots {
                Some(roots) => Some(self.paths("store.file_roots", Some(roots.as_slice()))?),
                None => None,
            };
            Some(StoreConfig {
                path: path?,
                key_file: key_file?,
                file_roots,
            })
        });
        let watch = match &raw.watch {
            Some(w) => {
                let d = WatchConfig::default();
                WatchConfig {
                    debounce: self.duration("watch.debounce", w.debounce.as_ref(), d.debounce),
                    poll_interval: self.duration(
                        "watch.poll_interval",
                        w.poll_interval.as_ref(),
                        d.poll_interval,
                    ),
                    settle_timeout: self.duration(
                        "watch.settle_timeout",
                        w.settle_timeout.as_ref(),
                        d.settle_timeout,
                    ),
                    events: w.events.unwrap_or(true),
                }
            }
            None => WatchConfig::default(),
        };
        // A relative access-log path resolves like every other path.
        let access_log = raw.access_log.as_ref().and_then(|a| {
            Some(crate::access_log::AccessLogConfig {
                // A path end to end: `display()` made one that is not
                // UTF-8 (the configuration's own directory, say) text with
                // U+FFFD in it, another file than the one configured.
                path: if a.path == crate::access_log::STDOUT {
                    PathBuf::from(&a.path)
                } else {
                    self.path("access_log.path", &a.path)?
                },
                format: a.format,
            })
        });

        if let Some(store) = &store {
            let log = access_log.as_ref().map(|a| a.path.as_path());
            let log = log.filter(|p| *p != Path::new(crate::access_log::STDOUT));
            self.store_files(store, file, log);
        }
        let mut entries = Vec::new();
        // Hashed, not scanned: a catalogue may hold 10,000 entries.
        let mut named = Named::new();
        for (i, e) in raw.certs.iter().enumerate() {
            let Some((kind, source)) = self.named_entry(i, e) else {
                continue;
            };
            if named.contains_key(&e.id) {
                self.problem(
                    format!("certs[{i}].id"),
                    format!("duplicate entry id {}", shown(&e.id)),
                );
                continue;
            }
            named.insert(e.id.clone(), kind);
            // One with a refused path is known to `ref:`s, and not loaded;
            // so is one whose id is refused: `check`, going on with what
            // resolved, would print it as written (a key pasted there).
            if let Some(source) = source.filter(|_| crate::config::valid_entry_id(&e.id)) {
                entries.push(EntrySpec {
                    id: e.id.clone(),
                    kind,
                    source,
                    anonymous: false,
                });
            }
        }
        let mut anonymous = Vec::new();

        // Sets, not lists: each route's upstream and each name is looked
        // up, where searching a list made 1e9 comparisons of 40,000.
        let upstream_names: HashSet<String> =
            raw.upstreams.iter().map(|u| u.name.clone()).collect();
        let mut listeners = Vec::new();
        let mut seen_listeners = HashSet::new();
        for (i, l) in raw.listeners.iter_mut().enumerate() {
            let at = format!("listeners[{i}].name");
            self.name(at.clone(), &l.name);
            self.unique_name(&mut seen_listeners, at, "listener", &l.name);
            stand_in(&mut l.name, || format!("listeners[{i}]"));
            listeners.push(self.listener(i, l, &named, &mut anonymous, &upstream_names));
        }
        let mut upstreams = Vec::new();
        let mut seen_upstreams = HashSet::new();
        for (i, u) in raw.upstreams.iter_mut().enumerate() {
            let at = format!("upstreams[{i}].name");
            self.name(at.clone(), &u.name);
            self.unique_name(&mut seen_upstreams, at, "upstream", &u.name);
            stand_in(&mut u.name, || format!("upstreams[{i}]"));
            upstreams.push(self.upstream(i, u, &named, &mut anonymous));
        }
        entries.extend(anonymous);
        let binds: Vec<binds::Bind> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| binds::Bind {
                at: format!("listeners[{i}].bind"),
                addr: l.bind,
            })
            .chain(admin.as_ref().map(|a| binds::Bind {
                at: "admin.bind".to_owned(),
                addr: a.bind,
            }))
            .collect();
        for (at, why) in binds::overlaps(&binds, binds::dual_stack()) {
            self.problem(at, why);
        }
        Config {
            file: file.to_path_buf(),
            runtime,
            admin,
            store,
            watch,
            access_log,
            entries,
            listeners,
            upstreams,
        }
    }

    /// The store's two files are two, and neither is the configuration
    /// file or the access log: `run` wrote the key over the one, then
    /// refused the store (after binding, the key file left behind), where
    /// `check`, which creates nothing, passed.
    fn store_files(&mut self, store: &StoreConfig, file: &Path, log: Option<&Path>) {
        let others = [
            ("store.path", Some(store.path.as_path())),
            ("the configuration file", Some(file)),
            ("access_log.path", log),
        ];
        let fields = [
            ("store.path", &store.path),
            ("store.key_file", &store.key_file),
        ];
        for (field, path) in fields {
            let Some((other, _)) = others
                .iter()
                .find(|(other, p)| *other != field && *p == Some(path.as_path()))
            else {
                continue;
            };
            self.problem(
                field,
                format!(
                    "the same file as {other}: the store and its key are files of their own \
                     (`run` would write over it, then refuse the store)"
                ),
            );
        }
    }

    /// Record a problem when a listener's or upstream's `name` (not empty:
    /// the callers say that apart) is not [`valid_name`]. Shown escaped
    /// (`{:?}`): a line break in it must not split this message either.
    fn name(&mut self, at: String, name: &str) {
        if !name.is_empty() && !valid_name(name) {
            self.problem(
                at,
                format!(
                    "invalid name {}: a name is at most {MAX_NAME_LEN} ASCII letters, digits, \
                     `-`, `_` and `.`, starting with a letter or digit, as a Kubernetes label \
                     value (it is written in log lines, metric labels and admin API paths)",
                    shown(name)
                ),
            );
        }
    }

    /// Record a problem when an earlier item of the section already took `name`.
    fn unique_name(&mut self, seen: &mut HashSet<String>, at: String, what: &str, name: &str) {
        looked_at(1);
        if !seen.insert(name.to_owned()) {
            self.problem(at, format!("duplicate {what} name {}", shown(name)));
        }
    }

    fn admin(&mut self, a: &raw::Admin) -> AdminConfig {
        let bind = self.addr("admin.bind", &a.bind);
        let mut tokens = Vec::new();
        for (i, t) in a.tokens.iter().enumerate() {
            let at = format!("admin.tokens[{i}]");
            let role = match t.role.as_str() {
                "viewer" => Role::Viewer,
                "editor" => Role::Editor,
                other => {
                    self.problem(
                        format!("{at}.role"),
                        format!("unknown role {} {ROLES}", shown(other)),
                    );
                    Role::Viewer
                }
            };
            // The path as written: the configuration's directory, joined to
            // a relative one, is the operator's machine's (`/srv/2024-prod`,
            // a Nix store hash), no token pasted in.
            let path_withheld = t.token_file.as_deref().is_some_and(|f| {
                crate::config::env::path_looks_like_a_token(std::path::Path::new(f))
            });
            // Set by `${NAME}`: the value may be the token itself.
            let field = if t.token_file.is_some() {
                "token_file"
            } else {
                "token_env"
            };
            let set_by_env = self.set_by_env.get(&format!("{at}.{field}")).cloned();
            let source = match (&t.token_file, &t.token_env) {
                (Some(f), None) => match self.path(&format!("{at}.token_file"), f) {
                    Some(path) => TokenSource::File(path),
                    // Refused (a token pasted in): nothing to read.
                    None => continue,
                },
                (None, Some(e)) => TokenSource::Env(e.clone()),
                _ => {
                    self.problem(&at, "exactly one of token_file or token_env is needed");
                    continue;
                }
            };
            tokens.push(TokenConfig {
                index: i,
                role,
                source,
                path_withheld,
                set_by_env,
            });
        }
        AdminConfig {
            bind,
            bind_shown: crate::config::Shown(bind.to_string()),
            tokens,
        }
    }

    /// Each path of a list; `None` when any is refused (each refusal recorded).
    fn paths(&mut self, at: &str, list: Option<&[String]>) -> Option<Vec<PathBuf>> {
        let paths: Vec<Option<PathBuf>> = list
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, p)| self.path(&format!("{at}[{j}]"), p))
            .collect();
        paths.into_iter().collect()
    }
}

/// Counts, in tests, the earlier names, upstreams, binds or headers looked
/// at to find a duplicate, a route's upstream or an overlap.
fn looked_at(n: usize) {
    #[cfg(test)]
    tests::LOOKED_AT.with(|c| c.set(c.get() + n));
    #[cfg(not(test))]
    let _ = n;
}

/// Why a path field's value is content pasted in place of a path, if it
/// is: a PEM block, or a line break or NUL, which no file name an operator
/// writes holds (a key or token pasted as a YAML block scalar ends in one).
fn not_a_path(s: &str) -> Option<&'static str> {
    if s.contains("-----BEGIN") {
        Some("looks like PEM content (a pasted certificate or key), not a path")
    } else if s.contains(['\r', '\n', '\0']) {
        Some("holds a line break or NUL: pasted content (a key or token?), not a path")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, messages, parse_str};

    thread_local! {
        /// See [`super::looked_at`].
        pub(super) static LOOKED_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A duplicate listener or upstream name, a route's upstream, a bind
    /// that overlaps another and a header set twice were each found by
    /// looking at every earlier one: some 1e9 comparisons for 40,000
    /// upstreams or 20,000 listeners (15 s of `check` for 40,000
    /// upstreams in a debug build), in every reload and `check`. Each is
    /// looked up; every problem is still found, naming the earlier one.
    #[test]
    fn what_was_seen_is_looked_up_not_searched() {
        let n = 2_000;
        let tls = "tls: { certs: [{ ref: edge }] }";
        let mut text = String::from(
            "certs: [{ id: edge, type: server-pair, cert_file: a.crt, key_file: a.key }]\nlisteners:\n",
        );
        for i in 0..n {
            let port = 10_000 + i;
            text += &format!("  - {{ name: l{i}, bind: 127.0.0.1:{port}, {tls} }}\n");
        }
        for i in 0..n {
            let ip = format!("127.0.{}.{}", i / 250, i % 250 + 1);
            text += &format!("  - {{ name: m{i}, bind: \"{ip}:443\", {tls} }}\n");
        }
        let routes: Vec<String> = (0..=n).map(|i| format!("{{ upstream: u{i} }}")).collect();
        let headers: Vec<String> = (0..n).map(|i| format!("x-h{i}: v")).collect();
        text += &format!(
            "  - {{ name: l0, bind: 0.0.0.0:10001, {tls}, routes: [{}],\n      \
             response_headers: {{ set: {{ {}, X-H7: w }} }} }}\nupstreams:\n",
            routes.join(", "),
            headers.join(", ")
        );
        for i in 0..n {
            text += &format!("  - {{ name: u{i}, servers: [http://127.0.0.1:9] }}\n");
        }
        text += "  - { name: u0, servers: [http://127.0.0.1:9] }\n";
        LOOKED_AT.with(|c| c.set(0));
        let (_, problems) = crate::config::parse_all(&text, std::path::Path::new("/etc/h/c.yaml"));
        let looked_at = LOOKED_AT.with(|c| c.get());
        let m: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.location, p.message))
            .collect();
        let m = m.join("\n");
        let last = 2 * n;
        for want in [
            format!("listeners[{last}].name: duplicate listener name \"l0\""),
            format!("upstreams[{n}].name: duplicate upstream name \"u0\""),
            format!("listeners[{last}].routes[{n}].upstream: no upstream named \"u{n}\""),
            format!(
                "listeners[{last}].bind: 0.0.0.0:10001 overlaps listeners[1].bind \
                 (127.0.0.1:10001): 0.0.0.0 takes every IPv4 address of port 10001"
            ),
            format!(
                "listeners[{last}].response_headers.set.X-H7: `X-H7` is the header `x-h7` set above"
            ),
        ] {
            assert!(
                m.contains(&want),
                "want {want:?} in\n{}",
                &m[..m.len().min(3_000)]
            );
        }
        // Some 10,000 names, routes, binds and headers: a few looks each.
        assert!(looked_at < 100_000, "{looked_at}");
    }

    /// 20000 worker threads passed `check` and aborted `run` at startup.
    #[test]
    fn worker_threads_are_bounded() {
        let many = format!("runtime: {{ worker_threads: 20000 }}\n{MINIMAL}");
        let m = messages(&parse_str(&many).unwrap_err());
        assert!(m.contains("runtime.worker_threads"), "{m}");
        let most = format!("runtime: {{ worker_threads: 1024 }}\n{MINIMAL}");
        assert_eq!(parse_str(&most).unwrap().runtime.worker_threads, 1024);
    }

    /// A key or token pasted into any path field is refused at that field
    /// (and entry), shown in no problem, and in nothing that resolved:
    /// `check` loads the entries, the store and the token files of that.
    #[test]
    fn content_pasted_for_a_path_is_refused_unseen() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        // YAML double-quoted text: Rust's escapes of a PEM's characters are YAML's.
        let pasted = format!("{key:?}");
        let token = "\"t0ken-a1b2c3\\n\"";
        let text = MINIMAL
            .replace("key_file: pki/server.key", &format!("key_file: {pasted}"))
            .replace(
                "ca_file: pki/ca.crt",
                &format!("ca_file: pki/ca.crt\n    crl_files: [pki/ca.crl, {pasted}]"),
            )
            .replace(
                "client_cert: { ref: client }",
                &format!("client_cert: {{ cert_file: pki/c.crt, key_file: {pasted} }}"),
            )
            .replace("ca: { ref: ca }", "ca: { ca_file: \"pki/ca\\r.crt\" }");
        let text = format!(
            "admin: {{ bind: 127.0.0.1:9901, tokens: [{{ role: viewer, token_file: {token} }}] }}\n\
             store: {{ path: \"data/s\\0.json\", key_file: {pasted}, file_roots: [{pasted}] }}\n\
             access_log: {{ path: {pasted} }}\n{text}"
        );
        let (config, problems) =
            crate::config::parse_all(&text, std::path::Path::new("/etc/h/c.yaml"));
        let m: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.location, p.message))
            .collect();
        let m = m.join("\n");
        let pem = "looks like PEM content (a pasted certificate or key), not a path";
        let newline = "holds a line break or NUL: pasted content (a key or token?), not a path";
        for want in [
            format!("certs[0].key_file: entry \"edge\": {pem}"),
            format!("certs[1].crl_files[1]: entry \"ca\": {pem}"),
            format!("upstreams[0].tls.client_cert.key_file: {pem}"),
            format!("upstreams[0].tls.ca.ca_file: {newline}"),
            format!("admin.tokens[0].token_file: {newline}"),
            format!("store.path: {newline}"),
            format!("store.key_file: {pem}"),
            format!("store.file_roots[0]: {pem}"),
            format!("access_log.path: {pem}"),
        ] {
            assert!(m.contains(&want), "want {want:?} in\n{m}");
        }
        assert_eq!(problems.len(), 9, "{m}");
        assert!(!m.contains("BEGIN") && !m.contains("t0ken"), "{m}");
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!m.contains(line), "{m}");
        }
        // Nothing that resolved holds one: what `check` goes on to read.
        let config = config.unwrap();
        let ids: Vec<&str> = config.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["client"]);
        assert!(config.admin.unwrap().tokens.is_empty());
        assert!(config.store.is_none() && config.access_log.is_none());
    }

    /// Every problem is listed, not just the first.
    #[test]
    fn lists_every_problem() {
        let text = MINIMAL
            .replace(
                "routes: [{ upstream: api }]",
                "routes: [{ upstream: nope }]",
            )
            .replace("- id: ca\n", "- id: Bad Id\n");
        let e = parse_str(&text).unwrap_err();
        assert!(e.problems.len() >= 3, "{}", e.render());
        let m = e.render();
        assert!(m.contains("no upstream named \"nope\""), "{m}");
        assert!(m.contains("invalid id \"Bad Id\""), "{m}");
    }

    /// Duplicates, verifying modes without a CA, bad durations and URLs are refused.
    #[test]
    fn validation_errors() {
        let cases = [
            (
                MINIMAL.replace("name: api", "name: api\n    connect_timeout: 5 sec"),
                "connect_timeout",
            ),
            (
                MINIMAL.replace("https://127.0.0.1:9443", "ftp://x"),
                "http:// or https://",
            ),
            (
                MINIMAL.replace(
                    "certs: [{ ref: edge }]",
                    "certs: [{ ref: edge }]\n      client_auth: { mode: require_and_verify }",
                ),
                "needs a ca",
            ),
            (
                MINIMAL.replace(
                    "certs: [{ ref: edge }]",
                    "certs: [{ ref: edge }]\n      client_auth: { mode: sometimes }",
                ),
                "unknown mode",
            ),
            (
                MINIMAL.replace("id: client", "id: edge"),
                "duplicate entry id",
            ),
            (
                MINIMAL.replace("bind: 127.0.0.1:8443", "bind: localhost"),
                "listeners[0].bind",
            ),
            (
                MINIMAL.replace(
                    "certs: [{ ref: edge }]",
                    "certs: [{ ref: edge }]\n      min_version: \"1.1\"",
                ),
                "min_version",
            ),
            (
                format!("{MINIMAL}  - name: api\n    servers: [http://a:1]\n"),
                "duplicate upstream name",
            ),
            (
                "admin: { bind: 127.0.0.1:1, tokens: [{ role: root, token_env: X }] }\n".to_owned(),
                "unknown role",
            ),
            (
                format!("admin: {{ bind: \"0.0.0.0:8443\" }}\n{MINIMAL}"),
                "admin.bind: 0.0.0.0:8443 overlaps listeners[0].bind (127.0.0.1:8443)",
            ),
        ];
        for (text, want) in cases {
            let m = messages(&parse_str(&text).unwrap_err());
            assert!(m.contains(want), "want {want:?} in {m}");
        }
    }
}
