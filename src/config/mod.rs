//! The configuration file: YAML schema, durations, `${ENV}`, paths, validation.
//!
//! `load` turns the file into a checked [`Config`]: every TLS material
//! reference is resolved to a catalogue entry id (direct file fields become
//! anonymous entries), every path is absolute, every cross reference exists
//! and has the right type. Errors name the file and the line or field.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::Secret;

/// A checked configuration. Produced only by [`load`] / [`parse`].
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The configuration file this came from (absolute); watched for reloads.
    pub file: PathBuf,
    pub runtime: RuntimeConfig,
    pub admin: Option<AdminConfig>,
    pub store: Option<StoreConfig>,
    pub watch: WatchConfig,
    /// Every catalogue entry: the named ones of `certs:` in file order, then
    /// the anonymous ones made from direct file fields, in file order.
    pub entries: Vec<EntrySpec>,
    pub listeners: Vec<ListenerConfig>,
    pub upstreams: Vec<UpstreamConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeConfig {
    /// 0 = one per CPU core.
    pub worker_threads: usize,
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    pub tokens: Vec<TokenConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenConfig {
    pub role: Role,
    pub source: TokenSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Editor,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WatchConfig {
    pub debounce: Duration,
    /// Zero = polling off.
    pub poll_interval: Duration,
    pub settle_timeout: Duration,
    /// Extension: `false` turns filesystem events off (polling only), for
    /// filesystems without events and for measuring the poll path.
    pub events: bool,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            debounce: Duration::from_millis(100),
            poll_interval: Duration::from_secs(2),
            settle_timeout: Duration::from_secs(10),
            events: true,
        }
    }
}

/// One catalogue entry as configured (not yet loaded).
#[derive(Clone, Debug, PartialEq)]
pub struct EntrySpec {
    /// `^[a-z0-9][a-z0-9_-]{0,63}$` for named entries; anonymous entries get
    /// an id naming where they were configured, e.g.
    /// `listeners.public.tls.certs[1]`, which can never clash with a name.
    pub id: String,
    pub kind: EntryKind,
    pub source: EntrySource,
    /// True when made from direct file fields rather than `certs:`.
    pub anonymous: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    ServerPair,
    ClientPair,
    CaBundle,
}

impl EntryKind {
    /// The configuration spelling: `server-pair`, `client-pair`, `ca-bundle`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::ServerPair => "server-pair",
            EntryKind::ClientPair => "client-pair",
            EntryKind::CaBundle => "ca-bundle",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        match s {
            "server-pair" => Some(EntryKind::ServerPair),
            "client-pair" => Some(EntryKind::ClientPair),
            "ca-bundle" => Some(EntryKind::CaBundle),
            _ => None,
        }
    }

    pub fn is_pair(self) -> bool {
        !matches!(self, EntryKind::CaBundle)
    }
}

/// Where an entry's bytes come from.
#[derive(Clone, Debug, PartialEq)]
pub enum EntrySource {
    PairFiles {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    CaFiles {
        ca_file: PathBuf,
        crl_files: Vec<PathBuf>,
    },
    PairInline {
        cert_pem: String,
        key_pem: Secret,
    },
    CaInline {
        ca_pem: String,
        crl_pem: Option<String>,
    },
}

impl EntrySource {
    /// Files behind this entry (empty for inline material).
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            EntrySource::PairFiles {
                cert_file,
                key_file,
            } => vec![cert_file, key_file],
            EntrySource::CaFiles { ca_file, crl_files } => std::iter::once(ca_file.as_path())
                .chain(crl_files.iter().map(|p| p.as_path()))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn is_inline(&self) -> bool {
        matches!(
            self,
            EntrySource::PairInline { .. } | EntrySource::CaInline { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    /// One or more server pairs; the first is the default certificate.
    pub certs: Vec<ListenerCert>,
    pub client_auth: ClientAuthConfig,
    /// ALPN protocols offered, in preference order (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
    pub routes: Vec<RouteConfig>,
    pub limits: Limits,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerCert {
    /// Catalogue entry id (type server-pair).
    pub entry: String,
    /// SNI names this pair answers; `None` = the certificate's DNS SANs.
    pub server_names: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClientAuthConfig {
    pub mode: ClientAuthMode,
    /// Catalogue entry id (type ca-bundle); required by the verifying modes.
    pub ca: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMode {
    None,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

impl ClientAuthMode {
    pub const ALL: [ClientAuthMode; 5] = [
        ClientAuthMode::None,
        ClientAuthMode::Request,
        ClientAuthMode::RequireAny,
        ClientAuthMode::VerifyIfGiven,
        ClientAuthMode::RequireAndVerify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMode::None => "none",
            ClientAuthMode::Request => "request",
            ClientAuthMode::RequireAny => "require_any",
            ClientAuthMode::VerifyIfGiven => "verify_if_given",
            ClientAuthMode::RequireAndVerify => "require_and_verify",
        }
    }

    pub fn parse(s: &str) -> Option<ClientAuthMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether a presented certificate is checked against the CA bundle.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuthMode::VerifyIfGiven | ClientAuthMode::RequireAndVerify
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    V12,
    V13,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    /// Exact host, or `*.example.com`; `None` matches any host.
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub upstream: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    /// `None` = unbounded (configured as `0s`).
    pub max_connection_lifetime: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 65_536,
            max_connection_lifetime: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub servers: Vec<UpstreamServer>,
    /// TLS settings for `https://` servers (defaults when not configured:
    /// system roots, no client certificate, the URL host as server name).
    pub tls: UpstreamTls,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Idle pooled connections kept per server (nginx's `keepalive N`);
    /// beyond that a connection returned to the pool is closed, so a burst
    /// does not leave hundreds of upstream connections open.
    pub max_idle_connections: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamServer {
    /// As configured, e.g. `https://127.0.0.1:9443`.
    pub url: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamTls {
    pub ca: UpstreamCa,
    /// Catalogue entry id (type client-pair).
    pub client_cert: Option<String>,
    /// SNI and the name verified; `None` = each server URL's host.
    pub server_name: Option<String>,
    pub drain_on_rotation: bool,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            ca: UpstreamCa::System,
            client_cert: None,
            server_name: None,
            drain_on_rotation: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum UpstreamCa {
    /// Catalogue entry id (type ca-bundle).
    Entry(String),
    /// The operating system's trust store.
    System,
}

/// Every problem found in a configuration file (all of them, not just the first).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `line 12` or a field path such as `listeners[0].tls.certs[1].ref`.
    pub location: String,
    pub message: String,
}

impl ConfigError {
    /// One line per problem: `FILE: LOCATION: MESSAGE`.
    pub fn render(&self) -> String {
        self.problems
            .iter()
            .map(|p| format!("{}: {}: {}", self.file.display(), p.location, p.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Read, parse and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let (file, text) = read(path)?;
    parse(&text, &file)
}

/// The configuration file's absolute path and text (for a caller that
/// looks at the text before parsing it: the reloader refuses an empty one).
pub fn read(path: &Path) -> Result<(PathBuf, String), ConfigError> {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = std::fs::read_to_string(&file).map_err(|e| ConfigError {
        file: file.clone(),
        problems: vec![Problem {
            location: "file".into(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    Ok((file, text))
}

/// Parse and validate configuration text; relative paths resolve against
/// `file`'s directory and `file` is what errors name.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let raw: raw::File = if text.trim().is_empty() {
        raw::File::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            // saphyr's first line reads "error: line L column C: message";
            // the rest is a source excerpt we don't need in a log line.
            let first = e.to_string();
            let first = first
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            let (location, message) = match first.split_once(": ") {
                Some((loc, msg)) if loc.starts_with("line ") => (loc.to_owned(), msg.to_owned()),
                _ => ("file".to_owned(), first.to_owned()),
            };
            ConfigError {
                file: file.to_path_buf(),
                problems: vec![Problem { location, message }],
            }
        })?
    };
    let mut r = Resolver {
        base: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        problems: Vec::new(),
    };
    let config = r.file(raw, file);
    if r.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError {
            file: file.to_path_buf(),
            problems: r.problems,
        })
    }
}

/// Parse a duration such as `250ms`, `5s`, `2m`, `1h`, `1m30s`, `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration {s:?} (use e.g. 250ms, 5s, 2m, 1h)"
            ));
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "us" => value / 1_000_000.0,
            "" => return Err(format!("duration {s:?} needs a unit (ms, s, m, h)")),
            _ => {
                return Err(format!(
                    "invalid duration unit {unit:?} in {s:?} (use ms, s, m, h)"
                ));
            }
        };
        total += Duration::from_secs_f64(secs);
    }
    Ok(total)
}

/// Replace `${NAME}` with the environment variable NAME.
fn expand_env(s: &str) -> Result<String, String> {
    if !s.contains("${") {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
        let name = &after[..end];
        let value =
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The file as written: plain serde structs, unknown keys refused.
mod raw {
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub runtime: Option<Runtime>,
        pub admin: Option<Admin>,
        pub store: Option<Store>,
        pub watch: Option<Watch>,
        #[serde(default)]
        pub certs: Vec<Entry>,
        #[serde(default)]
        pub listeners: Vec<Listener>,
        #[serde(default)]
        pub upstreams: Vec<Upstream>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Runtime {
        pub worker_threads: Option<usize>,
        pub shutdown_grace: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Admin {
        pub bind: String,
        #[serde(default)]
        pub tokens: Vec<Token>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Token {
        pub role: String,
        pub token_file: Option<String>,
        pub token_env: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Store {
        pub path: String,
        pub key_file: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Watch {
        pub debounce: Option<String>,
        pub poll_interval: Option<String>,
        pub settle_timeout: Option<String>,
        pub events: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Entry {
        pub id: String,
        #[serde(rename = "type")]
        pub kind: String,
        pub cert_file: Option<String>,
        pub key_file: Option<String>,
        pub ca_file: Option<String>,
        pub crl_files: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Listener {
        pub name: String,
        pub bind: String,
        pub tls: Option<ListenerTls>,
        #[serde(default)]
        pub routes: Vec<Route>,
        pub limits: Option<Limits>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ListenerTls {
        #[serde(default)]
        pub certs: Vec<CertRef>,
        pub client_auth: Option<ClientAuth>,
        pub alpn: Option<Vec<String>>,
        pub min_version: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CertRef {
        #[serde(rename = "ref")]
        pub reference: Option<String>,
        pub cert_file: Option<String>,
        pub key_file: Option<String>,
        pub server_names: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ClientAuth {
        pub mode: Option<String>,
        pub ca: Option<CaRef>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CaRef {
        #[serde(rename = "ref")]
        pub reference: Option<String>,
        pub ca_file: Option<String>,
        pub crl_files: Option<Vec<String>>,
        pub system: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Route {
        pub host: Option<String>,
        pub path_prefix: Option<String>,
        pub upstream: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Limits {
        pub max_connections: Option<usize>,
        pub header_read_timeout: Option<String>,
        pub idle_timeout: Option<String>,
        pub max_header_bytes: Option<usize>,
        pub max_connection_lifetime: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Upstream {
        pub name: String,
        pub servers: Vec<String>,
        pub tls: Option<UpstreamTls>,
        pub connect_timeout: Option<String>,
        pub request_timeout: Option<String>,
        pub max_idle_connections: Option<usize>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct UpstreamTls {
        pub ca: Option<CaRef>,
        pub client_cert: Option<CertRef>,
        pub server_name: Option<String>,
        pub drain_on_rotation: Option<bool>,
    }
}

/// Named entries by id, for resolving `ref:`s.
type Named = HashMap<String, EntryKind>;

/// Turns raw structs into a checked [`Config`], collecting every problem.
struct Resolver {
    base: PathBuf,
    problems: Vec<Problem>,
}

impl Resolver {
    fn problem(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            location: location.into(),
            message: message.into(),
        });
    }

    fn string(&mut self, at: &str, s: &str) -> String {
        match expand_env(s) {
            Ok(v) => v,
            Err(e) => {
                self.problem(at, e);
                String::new()
            }
        }
    }

    fn path(&mut self, at: &str, s: &str) -> PathBuf {
        let s = self.string(at, s);
        if s.is_empty() {
            self.problem(at, "empty path");
        }
        let p = PathBuf::from(s);
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
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

    fn addr(&mut self, at: &str, s: &str) -> SocketAddr {
        let s = self.string(at, s);
        match s.parse() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    at,
                    format!("{s:?} is not an address like 0.0.0.0:8443 or [::]:8443"),
                );
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        }
    }

    fn file(&mut self, raw: raw::File, file: &Path) -> Config {
        let runtime = match &raw.runtime {
            Some(r) => RuntimeConfig {
                worker_threads: r.worker_threads.unwrap_or(0),
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
        let store = raw.store.as_ref().map(|s| StoreConfig {
            path: self.path("store.path", &s.path),
            key_file: self.path("store.key_file", &s.key_file),
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

        let mut entries = Vec::new();
        // Hashed, not scanned: a catalogue may hold 10,000 entries.
        let mut ids = HashSet::new();
        for (i, e) in raw.certs.iter().enumerate() {
            if let Some(spec) = self.named_entry(i, e) {
                if !ids.insert(spec.id.clone()) {
                    self.problem(
                        format!("certs[{i}].id"),
                        format!("duplicate entry id {:?}", spec.id),
                    );
                    continue;
                }
                entries.push(spec);
            }
        }
        let named: Named = entries.iter().map(|e| (e.id.clone(), e.kind)).collect();
        let mut anonymous = Vec::new();

        let mut upstream_names = Vec::new();
        for u in &raw.upstreams {
            upstream_names.push(u.name.clone());
        }
        let mut listeners = Vec::new();
        let mut seen_listeners = Vec::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            if seen_listeners.contains(&l.name) {
                self.problem(
                    format!("listeners[{i}].name"),
                    format!("duplicate listener name {:?}", l.name),
                );
            }
            seen_listeners.push(l.name.clone());
            listeners.push(self.listener(i, l, &named, &mut anonymous, &upstream_names));
        }
        let mut upstreams = Vec::new();
        let mut seen_upstreams = Vec::new();
        for (i, u) in raw.upstreams.iter().enumerate() {
            if seen_upstreams.contains(&u.name) {
                self.problem(
                    format!("upstreams[{i}].name"),
                    format!("duplicate upstream name {:?}", u.name),
                );
            }
            seen_upstreams.push(u.name.clone());
            upstreams.push(self.upstream(i, u, &named, &mut anonymous));
        }
        entries.extend(anonymous);
        Config {
            file: file.to_path_buf(),
            runtime,
            admin,
            store,
            watch,
            entries,
            listeners,
            upstreams,
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
                        format!("unknown role {other:?} (viewer | editor)"),
                    );
                    Role::Viewer
                }
            };
            let source = match (&t.token_file, &t.token_env) {
                (Some(f), None) => TokenSource::File(self.path(&format!("{at}.token_file"), f)),
                (None, Some(e)) => TokenSource::Env(e.clone()),
                _ => {
                    self.problem(&at, "exactly one of token_file or token_env is needed");
                    continue;
                }
            };
            tokens.push(TokenConfig { role, source });
        }
        AdminConfig { bind, tokens }
    }

    fn named_entry(&mut self, i: usize, e: &raw::Entry) -> Option<EntrySpec> {
        let at = format!("certs[{i}]");
        if !valid_entry_id(&e.id) {
            self.problem(
                format!("{at}.id"),
                format!(
                    "invalid id {:?}: must match ^[a-z0-9][a-z0-9_-]{{0,63}}$",
                    e.id
                ),
            );
        }
        let Some(kind) = EntryKind::parse(&e.kind) else {
            self.problem(
                format!("{at}.type"),
                format!(
                    "unknown type {:?} (server-pair | client-pair | ca-bundle)",
                    e.kind
                ),
            );
            return None;
        };
        let source = match kind {
            EntryKind::ServerPair | EntryKind::ClientPair => {
                if e.ca_file.is_some() || e.crl_files.is_some() {
                    self.problem(
                        &at,
                        format!(
                            "a {} takes cert_file and key_file, not ca_file/crl_files",
                            kind.as_str()
                        ),
                    );
                }
                match (&e.cert_file, &e.key_file) {
                    (Some(c), Some(k)) => EntrySource::PairFiles {
                        cert_file: self.path(&format!("{at}.cert_file"), c),
                        key_file: self.path(&format!("{at}.key_file"), k),
                    },
                    _ => {
                        self.problem(
                            &at,
                            format!("a {} needs cert_file and key_file", kind.as_str()),
                        );
                        return None;
                    }
                }
            }
            EntryKind::CaBundle => {
                if e.cert_file.is_some() || e.key_file.is_some() {
                    self.problem(
                        &at,
                        "a ca-bundle takes ca_file (and crl_files), not cert_file/key_file",
                    );
                }
                let Some(ca) = &e.ca_file else {
                    self.problem(&at, "a ca-bundle needs ca_file");
                    return None;
                };
                let ca_file = self.path(&format!("{at}.ca_file"), ca);
                let crl_files = self.paths(&format!("{at}.crl_files"), e.crl_files.as_deref());
                EntrySource::CaFiles { ca_file, crl_files }
            }
        };
        Some(EntrySpec {
            id: e.id.clone(),
            kind,
            source,
            anonymous: false,
        })
    }

    fn paths(&mut self, at: &str, list: Option<&[String]>) -> Vec<PathBuf> {
        list.unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(j, p)| self.path(&format!("{at}[{j}]"), p))
            .collect()
    }

    /// A `ref:` to a named entry of kind `want`, or `None` after recording why not.
    fn reference(&mut self, at: &str, id: &str, want: EntryKind, named: &Named) -> Option<String> {
        match named.get(id) {
            Some(kind) if *kind == want => Some(id.to_owned()),
            Some(kind) => {
                self.problem(
                    at,
                    format!(
                        "entry {id:?} is a {}, a {} is needed here",
                        kind.as_str(),
                        want.as_str()
                    ),
                );
                None
            }
            None => {
                self.problem(at, format!("no entry {id:?} in certs"));
                None
            }
        }
    }

    /// A pair given by `ref` or by files (an anonymous entry named `place`).
    fn pair(
        &mut self,
        at: &str,
        c: &raw::CertRef,
        want: EntryKind,
        place: String,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
    ) -> Option<String> {
        match (&c.reference, &c.cert_file, &c.key_file) {
            (Some(r), None, None) => self.reference(&format!("{at}.ref"), r, want, named),
            (None, Some(cert), Some(key)) => {
                let source = EntrySource::PairFiles {
                    cert_file: self.path(&format!("{at}.cert_file"), cert),
                    key_file: self.path(&format!("{at}.key_file"), key),
                };
                anonymous.push(EntrySpec {
                    id: place.clone(),
                    kind: want,
                    source,
                    anonymous: true,
                });
                Some(place)
            }
            (Some(_), _, _) => {
                self.problem(at, "give either ref or cert_file + key_file, not both");
                None
            }
            _ => {
                self.problem(at, "needs ref, or cert_file and key_file");
                None
            }
        }
    }

    /// A CA bundle given by `ref` or files; `Ok(None)` = `system: true`.
    fn ca(
        &mut self,
        at: &str,
        c: &raw::CaRef,
        place: String,
        allow_system: bool,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
    ) -> Option<UpstreamCa> {
        let system = c.system.unwrap_or(false);
        match (&c.reference, &c.ca_file, system) {
            (Some(r), None, false) => {
                if c.crl_files.is_some() {
                    self.problem(
                        format!("{at}.crl_files"),
                        "crl_files go on the referenced ca-bundle entry",
                    );
                }
                self.reference(&format!("{at}.ref"), r, EntryKind::CaBundle, named)
                    .map(UpstreamCa::Entry)
            }
            (None, Some(f), false) => {
                let ca_file = self.path(&format!("{at}.ca_file"), f);
                let crl_files = self.paths(&format!("{at}.crl_files"), c.crl_files.as_deref());
                anonymous.push(EntrySpec {
                    id: place.clone(),
                    kind: EntryKind::CaBundle,
                    source: EntrySource::CaFiles { ca_file, crl_files },
                    anonymous: true,
                });
                Some(UpstreamCa::Entry(place))
            }
            (None, None, true) if allow_system => Some(UpstreamCa::System),
            (None, None, true) => {
                self.problem(format!("{at}.system"), "the system trust store is not accepted for client certificates; give ref or ca_file");
                None
            }
            _ => {
                self.problem(
                    at,
                    if allow_system {
                        "needs exactly one of ref, ca_file or system: true"
                    } else {
                        "needs exactly one of ref or ca_file"
                    },
                );
                None
            }
        }
    }

    fn listener(
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
                    if let Some(entry) =
                        self.pair(&cat, c, EntryKind::ServerPair, place, named, anonymous)
                    {
                        let server_names = c.server_names.as_ref().map(|names| {
                            names
                                .iter()
                                .map(|n| {
                                    self.string(&format!("{cat}.server_names"), n)
                                        .to_ascii_lowercase()
                                })
                                .collect()
                        });
                        certs.push(ListenerCert {
                            entry,
                            server_names,
                        });
                    }
                }
                if let Some(ca) = &tls.client_auth {
                    let cat = format!("{at}.tls.client_auth");
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
                        let place = format!("listeners.{}.tls.client_auth.ca", l.name);
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
                Limits {
                    max_connections: x.max_connections.unwrap_or(d.max_connections).max(1),
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
        }
    }

    fn upstream(
        &mut self,
        i: usize,
        u: &raw::Upstream,
        named: &Named,
        anonymous: &mut Vec<EntrySpec>,
    ) -> UpstreamConfig {
        let at = format!("upstreams[{i}]");
        if u.servers.is_empty() {
            self.problem(format!("{at}.servers"), "at least one server is needed");
        }
        let mut servers = Vec::new();
        for (j, s) in u.servers.iter().enumerate() {
            let sat = format!("{at}.servers[{j}]");
            let url = self.string(&sat, s);
            match parse_server(&url) {
                Ok(server) => servers.push(server),
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
                        format!("{n:?} is not a DNS name or IP address"),
                    );
                }
                tls.server_name = Some(n);
            }
            if let Some(d) = t.drain_on_rotation {
                tls.drain_on_rotation = d;
            }
        }
        UpstreamConfig {
            name: u.name.clone(),
            servers,
            tls,
            connect_timeout: self.duration(
                &format!("{at}.connect_timeout"),
                u.connect_timeout.as_ref(),
                Duration::from_secs(5),
            ),
            request_timeout: self.duration(
                &format!("{at}.request_timeout"),
                u.request_timeout.as_ref(),
                Duration::from_secs(60),
            ),
            max_idle_connections: u.max_idle_connections.unwrap_or(256),
        }
    }
}

/// `https://host:port` or `http://host[:port]` (default ports 443 / 80).
fn parse_server(url: &str) -> Result<UpstreamServer, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} must start with http:// or https://"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "{url:?} must be scheme://host[:port] without a path"
        ));
    }
    let uri: http::uri::Authority = authority
        .parse()
        .map_err(|_| format!("{url:?} has an invalid host or port"))?;
    let host = uri
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(UpstreamServer {
        url: url.to_owned(),
        https,
        host,
        port,
    })
}

/// Whether `id` is a valid catalogue id (`^[a-z0-9][a-z0-9_-]{0,63}$`).
pub fn valid_entry_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/hotproxy/config.yaml"))
    }

    fn messages(e: &ConfigError) -> String {
        e.render()
    }

    const MINIMAL: &str = "
certs:
  - id: edge
    type: server-pair
    cert_file: pki/server.crt
    key_file: pki/server.key
  - id: ca
    type: ca-bundle
    ca_file: pki/ca.crt
  - id: client
    type: client-pair
    cert_file: pki/client.crt
    key_file: pki/client.key
listeners:
  - name: public
    bind: 127.0.0.1:8443
    tls:
      certs: [{ ref: edge }]
    routes: [{ upstream: api }]
upstreams:
  - name: api
    servers: [https://127.0.0.1:9443]
    tls:
      ca: { ref: ca }
      client_cert: { ref: client }
";

    /// The shipped config.yaml (the demo's) parses and names its entries.
    #[test]
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
        let c = load(&path).unwrap_or_else(|e| panic!("{}", e.render()));
        let ids: Vec<_> = c.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["edge", "demo-ca", "backend-client"]);
        assert_eq!(
            c.listeners[0].client_auth.mode,
            ClientAuthMode::VerifyIfGiven
        );
        assert_eq!(c.upstreams[0].tls.server_name.as_deref(), Some("localhost"));
    }

    /// Relative paths resolve against the config file's directory; defaults apply.
    #[test]
    fn relative_paths_and_defaults() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(
            c.entries[0].source.paths()[0],
            Path::new("/etc/hotproxy/pki/server.crt")
        );
        assert_eq!(c.watch, WatchConfig::default());
        assert_eq!(c.listeners[0].limits, Limits::default());
        assert_eq!(c.listeners[0].alpn, ["h2", "http/1.1"]);
        assert_eq!(c.upstreams[0].connect_timeout, Duration::from_secs(5));
    }

    /// A typo is an error naming the key and its line.
    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse_str("watch:\n  debounse: 1s\n").unwrap_err();
        let m = messages(&e);
        assert!(m.contains("debounse") && m.contains("line 2"), "{m}");
    }

    /// Direct file fields become anonymous entries named after their place.
    #[test]
    fn direct_files_become_anonymous_entries() {
        let text = MINIMAL.replace(
            "certs: [{ ref: edge }]",
            "certs: [{ ref: edge }, { cert_file: /le/fullchain.pem, key_file: /le/privkey.pem, server_names: [Example.com] }]",
        );
        let c = parse_str(&text).unwrap();
        let anon = c.entries.iter().find(|e| e.anonymous).unwrap();
        assert_eq!(anon.id, "listeners.public.tls.certs[1]");
        assert_eq!(
            c.listeners[0].certs[1].server_names.as_deref(),
            Some(&["example.com".to_owned()][..])
        );
    }

    /// A client-pair where a server-pair is needed names both.
    #[test]
    fn ref_type_mismatch_names_both() {
        let text = MINIMAL.replace("certs: [{ ref: edge }]", "certs: [{ ref: client }]");
        let m = messages(&parse_str(&text).unwrap_err());
        assert!(
            m.contains("\"client\" is a client-pair") && m.contains("server-pair is needed"),
            "{m}"
        );
        assert!(m.contains("listeners[0].tls.certs[0].ref"), "{m}");
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
        ];
        for (text, want) in cases {
            let m = messages(&parse_str(&text).unwrap_err());
            assert!(m.contains(want), "want {want:?} in {m}");
        }
    }

    /// `${NAME}` expands from the environment; an unset one is an error naming it.
    #[test]
    fn env_expansion() {
        // SAFETY of the test: the variable name is unique to this test.
        unsafe_free_set_var();
        let text = MINIMAL.replace("pki/server.crt", "${HOTPROXY_TEST_DIR}/server.crt");
        let c = parse_str(&text).unwrap();
        assert_eq!(
            c.entries[0].source.paths()[0],
            Path::new("/srv/pki/server.crt")
        );
        let text = MINIMAL.replace("pki/server.crt", "${HOTPROXY_UNSET_VARIABLE}/x");
        let m = messages(&parse_str(&text).unwrap_err());
        assert!(m.contains("HOTPROXY_UNSET_VARIABLE is not set"), "{m}");
    }

    fn unsafe_free_set_var() {
        // set_var is unsafe in edition 2024 and the crate forbids unsafe;
        // the variable is provided to the test binary by cargo's env instead.
        assert_eq!(
            std::env::var("HOTPROXY_TEST_DIR").as_deref(),
            Ok("/srv/pki")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
