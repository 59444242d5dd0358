//! The configuration file: YAML schema, durations, `${ENV}`, paths, validation.
//!
//! `load` turns the file into a checked [`Config`]: every TLS material
//! reference is resolved to a catalogue entry id (direct file fields become
//! anonymous entries), every path is absolute, every cross reference exists
//! and has the right type. Errors name the file and the line or field.
//!
//! The file is read in three steps, one file each: `raw` (the YAML as written,
//! unknown keys refused), `resolve` (raw -> checked, every problem located),
//! and here (the checked types and `load`/`read`/`parse`; an upstream's in
//! `upstream`); `duration` and `env` parse the two kinds of value every
//! section shares.

mod crl_files;
mod duration;
pub(crate) mod env;
mod listing;
pub use listing::listed;
pub use tree::shown_key;
mod bare;
mod block_scalar;
mod raw;
mod resolve;
mod tree;
mod upstream;
mod withhold;
pub(crate) use resolve::{host_only_name, left_out_warnings, server_name};
use withhold::Withheld;
pub(crate) use withhold::found_text;

pub use crl_files::{MAX_CRL_FILES, crl_files_problem};
pub use duration::parse_duration;
pub use upstream::*;

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
    /// `access_log:`; `None` = no access log.
    pub access_log: Option<crate::access_log::AccessLogConfig>,
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
    /// `bind` as a message shows it (a refusal, a warning).
    pub bind_shown: Shown,
    pub tokens: Vec<TokenConfig>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenConfig {
    /// Its position under `admin.tokens` in the file, which every message
    /// about it names: an entry the resolver refuses is left out of
    /// `AdminConfig::tokens`, so the position there is not the file's.
    pub index: usize,
    pub role: Role,
    pub source: TokenSource,
    /// The `token_file` path as written looks like a token: never shown.
    pub path_withheld: bool,
    /// The `token_file` or `token_env` was set by `${NAME}`: its value may
    /// be the token itself (`token_env: ${ADMIN_TOKEN}`), never shown.
    pub set_by_env: Option<SetByEnv>,
}

/// How a message names a value set by `${NAME}`, never showing it.
#[derive(Clone, Debug, PartialEq)]
pub struct SetByEnv {
    /// `the value of ${NAME}`, as a configuration problem says it.
    pub what: String,
    /// NAME, when the value was written as `${NAME}` alone.
    pub variable: Option<String>,
}

impl SetByEnv {
    /// What to ask of an admin token's source set by `${NAME}` that names
    /// no variable or file: the token itself was likely put in the
    /// variable the file names, where its name (or its file) was meant.
    pub fn token_hint(&self) -> String {
        let name = match &self.variable {
            Some(name) => format!("name the variable: token_env: {name}"),
            None => "name the variable that holds it, not its value".to_owned(),
        };
        format!("did you put the token itself there? {name}")
    }
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
    /// Directories the admin API may name files in (issue 13); `None` =
    /// the directories the configuration's own entries read from.
    pub file_roots: Option<Vec<PathBuf>>,
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

    /// A ca-bundle's CRLs as configured: their paths, or `inline` for an
    /// inline `crl_pem`; empty without CRLs.
    pub fn crl_sources(&self) -> Vec<String> {
        self.crl_sources_as(|p| p.display().to_string())
    }

    /// [`Self::crl_sources`] as log lines name them: each path escaped
    /// ([`crate::material::shown_path`]), as every other path a line names;
    /// `display()` wrote an ESC in one raw to the operator's terminal.
    pub fn crl_sources_shown(&self) -> Vec<String> {
        self.crl_sources_as(crate::material::shown_path)
    }

    fn crl_sources_as(&self, show: impl Fn(&Path) -> String) -> Vec<String> {
        match self {
            EntrySource::CaFiles { crl_files, .. } => crl_files.iter().map(|p| show(p)).collect(),
            EntrySource::CaInline {
                crl_pem: Some(_), ..
            } => vec!["inline".into()],
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
    /// `bind` as a message shows it.
    pub bind_shown: Shown,
    /// One or more server pairs; the first is the default certificate.
    pub certs: Vec<ListenerCert>,
    pub client_auth: ClientAuthConfig,
    /// ALPN protocols offered, in preference order (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
    pub routes: Vec<RouteConfig>,
    /// Routes an earlier, less specific one takes some requests of (first
    /// match wins), each said as `check` warns and `run` logs it.
    pub route_overlaps: Vec<String>,
    pub limits: Limits,
    /// What upstreams are told about a verified client certificate.
    pub forward_client_cert: crate::proxy::client_cert::ForwardClientCert,
    pub request_id: crate::proxy::request_id::RequestIdConfig,
    /// `access_log: false` turns this listener's access-log lines off.
    pub access_log: bool,
    /// What is in front of the listener (issue 16): PROXY protocol,
    /// trusted proxies, response headers, HTTPS redirect.
    pub front: FrontConfig,
}

/// A value as a message shows it, when the OS refuses it (a listener's
/// address it cannot bind, at startup or in a reload) or a message past
/// the file's problems names it (`admin.bind` not on loopback with no
/// tokens, in `check` and at startup): as it reads, or,
/// set from `${NAME}`, as every problem of the file says it in its place
/// (`<withheld: the value of ${NAME}>`, SPEC §2). Found as the file is
/// read: past [`parse`], which values came from the environment is known
/// no more. How a value was written is no part of the configuration: two
/// alike but for it are equal, and a reload from one to the other changes
/// nothing.
#[derive(Clone, Debug, Default)]
pub struct Shown(pub String);

impl PartialEq for Shown {
    fn eq(&self, _: &Shown) -> bool {
        true
    }
}

impl Shown {
    /// How a log line says `bound`, the address bound for `configured`,
    /// which `self` shows: the address bound, or, `configured` set by
    /// `${NAME}`, as every refusal says it (withheld), with the port the
    /// system chose apart when `configured` said port 0 (the value does
    /// not say it, and a client needs it).
    pub fn bound(&self, configured: SocketAddr, bound: SocketAddr) -> (String, Option<u16>) {
        if self.0 == configured.to_string() {
            (bound.to_string(), None)
        } else {
            let chosen = (configured.port() == 0).then_some(bound.port());
            (self.0.clone(), chosen)
        }
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl ListenerConfig {
    /// The index of the first route whose `allow` no client could match
    /// were the listener's client auth `client_auth` (with no verifying
    /// mode on it or on any certificate entry, no connection carries a
    /// verified identity, and every request to that route would get 403).
    /// Its messages name the route by place alone
    /// (`listeners[0].routes[1].allow`): the resolved configuration no
    /// longer knows which of the route's values (host, path_prefix, its
    /// rules) came from `${NAME}`, so it shows none of them.
    pub fn stranded_route_allow(&self, client_auth: &ClientAuthConfig) -> Option<usize> {
        if verifies_somewhere(client_auth, &self.certs) {
            return None;
        }
        self.routes.iter().position(|r| r.allow.is_some())
    }

    /// The ALPN protocols the handshake offers: `alpn`, with `http/1.0`
    /// after `http/1.1` (as nginx offers it): a client offering it alone
    /// (curl 7.88 to 8.4 with `--http1.0`) was refused in the handshake
    /// though the listener serves HTTP/1.0.
    pub fn alpn_offered(&self) -> Vec<Vec<u8>> {
        let mut offered = Vec::with_capacity(self.alpn.len() + 1);
        for p in &self.alpn {
            offered.push(p.as_bytes().to_vec());
            if p == "http/1.1" {
                offered.push(b"http/1.0".to_vec());
            }
        }
        offered
    }
}

/// Whether any connection to a listener can carry a verified client
/// certificate: its own client_auth or one certificate entry's verifies.
pub fn verifies_somewhere(client_auth: &ClientAuthConfig, certs: &[ListenerCert]) -> bool {
    client_auth.mode.verifies()
        || certs
            .iter()
            .filter_map(|c| c.client_auth.as_ref())
            .any(|a| a.mode.verifies())
}

/// How a listener meets the network in front of it (issue 16).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrontConfig {
    /// `proxy_protocol.from`: peers that must (and the only ones that may)
    /// start a connection with a PROXY v1/v2 header; `None` = off.
    pub proxy_protocol: Option<Vec<ipnet::IpNet>>,
    /// Peers whose forwarding headers (`X-Forwarded-*`, `Forwarded`) are
    /// kept and extended; from anyone else they are replaced.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `allow_from`: the only client addresses (after PROXY protocol) the
    /// listener serves; others are closed before TLS. `None` = anyone.
    pub allow_from: Option<Vec<ipnet::IpNet>>,
    /// `response_headers.set`: set on every response (replacing the
    /// upstream's value), as (lowercase name, value).
    pub response_headers: Vec<(String, String)>,
    /// `redirect_https.port`: a plain-HTTP listener answering only 308.
    pub redirect_https: Option<u16>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerCert {
    /// Catalogue entry id (type server-pair).
    pub entry: String,
    /// SNI names this pair answers; `None` = the certificate's DNS SANs.
    pub server_names: Option<Vec<String>>,
    /// The `server_names` left out of those: names rustls refuses as SNI
    /// (`host.123`), warned about ([`left_out_warnings`]); a request's
    /// host naming one still belongs to this entry (the 421 check), as a
    /// certificate's DNS SAN left out so does.
    pub left_out: Vec<String>,
    /// This entry's own client auth (crt-list style), overriding the
    /// listener's for connections whose SNI selects it.
    pub client_auth: Option<ClientAuthConfig>,
}

#[derive(Clone, Debug, PartialEq, Hash)]
pub struct ClientAuthConfig {
    pub mode: ClientAuthMode,
    /// Catalogue entry id (type ca-bundle); required by the verifying modes.
    pub ca: Option<String>,
    /// Identities let in (verifying modes only); `None` = every verified one.
    pub allow: Option<std::sync::Arc<crate::identity::AllowList>>,
    /// Keep trusting a CRL past its nextUpdate (issue 13). Off by default:
    /// a stale CRL refuses every client certificate, like an unknown status.
    pub allow_expired_crl: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Narrows the listener's `allow` for this route (403).
    pub allow: Option<std::sync::Arc<crate::identity::AllowList>>,
    pub forward_client_cert: Option<crate::proxy::client_cert::ForwardClientCert>,
    /// Replaces the listener's `limits.max_body_bytes` for this route.
    pub max_body_bytes: Option<u64>,
    /// The only client addresses this route serves (403 to others).
    pub allow_from: Option<Vec<ipnet::IpNet>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    /// `None` = unbounded (configured as `0s`).
    pub max_connection_lifetime: Option<Duration>,
    /// A client whose connection accepts no bytes for this long is
    /// disconnected and its upstream request released (nginx's `send_timeout`).
    pub send_timeout: Duration,
    /// A client that sends no byte of a request body it owes for this long
    /// gets 408 and its upstream request is released (nginx's
    /// `client_body_timeout`).
    pub body_read_timeout: Duration,
    /// A request body of a declared length up to this is read whole before
    /// an upstream connection is taken (0: every body is streamed).
    pub body_buffer_bytes: usize,
    /// A request body over this many bytes gets 413 (nginx's
    /// `client_max_body_size`); 0: no limit.
    pub max_body_bytes: u64,
    /// An Upgrade tunnel (WebSocket) with no byte either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 65_536,
            max_connection_lifetime: None,
            send_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            body_buffer_bytes: 16_384,
            max_body_bytes: 0,
            tunnel_idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// Every problem found in a configuration file (all of them, not just the first).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
    /// The file was not read for want of hotproxy's own file descriptors
    /// or memory (EMFILE, ENFILE, ENOMEM): nothing of it judged; the
    /// reloader defers such a read (SPEC §3), startup refuses it.
    pub short: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `line 12` or a field path such as `listeners[0].tls.certs[1].ref`.
    pub location: String,
    pub message: String,
}

impl ConfigError {
    /// One line per problem, `FILE: LOCATION: MESSAGE`, at most `listing::MAX_LISTED`.
    pub fn render(&self) -> String {
        let shown = crate::material::shown_path(&self.file);
        let lines = self.problems.iter();
        let lines = lines.map(|p| format!("{}: {}: {}", shown, p.location, p.message));
        listed(&self.file, lines.collect()).join("\n")
    }
}

/// Read, parse and validate the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let (file, text) = read(path)?;
    parse(&text, &file)
}

/// The largest configuration file read (a Kubernetes ConfigMap holds at
/// most 1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// The configuration file's absolute path and text (for a caller that
/// looks at the text before parsing it: the reloader refuses an empty one).
/// Only a regular file of at most [`MAX_CONFIG_BYTES`] is read: a FIFO in
/// its place would block startup (or the reloader) forever.
pub fn read(path: &Path) -> Result<(PathBuf, String), ConfigError> {
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let refused = |message: String| ConfigError {
        file: file.clone(),
        problems: vec![Problem {
            location: "file".into(),
            message,
        }],
        short: false,
    };
    let bytes = crate::fsutil::read_regular(&file, MAX_CONFIG_BYTES).map_err(|e| ConfigError {
        short: e.problem.is_out_of_resources(),
        ..refused(format!("cannot read: {}", e.problem))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        refused(format!(
            "not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((file, text))
}

/// Parse and validate configuration text; relative paths resolve against
/// `file`'s directory and `file` is what errors name. Every problem of the
/// file is reported, not just the first.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    match parse_all(text, file) {
        (Some(config), problems) if problems.is_empty() => Ok(config),
        (_, problems) => Err(ConfigError {
            file: file.to_path_buf(),
            problems,
            short: false,
        }),
    }
}

/// Every problem of the file in one pass, each with its line and field,
/// and the configuration as far as it resolved (`None` when the YAML
/// itself is broken): unknown keys, values of the wrong type and missing
/// fields from reading the YAML tree (`tree`), then what the resolver
/// finds in the rest (references, durations, addresses, `${ENV}`).
/// A message never repeats a pasted PEM block, text of several lines or
/// a value from `${ENV}` ([`withhold`]).
pub fn parse_all(text: &str, file: &Path) -> (Option<Config>, Vec<Problem>) {
    let mut withheld = Vec::new();
    let (mut config, mut problems) = resolve_all(text, file, &mut withheld);
    let withheld = withhold::Index::new(&withheld);
    for p in &mut problems {
        withhold::withhold(&mut p.message, &p.location, &withheld);
        withhold::shorten(&mut p.message);
    }
    // An address the OS refuses is said after the file is read (at
    // startup, in a reload), as the file's own problems say it.
    for (i, l) in config
        .iter_mut()
        .flat_map(|c| c.listeners.iter_mut())
        .enumerate()
    {
        withhold::withhold(
            &mut l.bind_shown.0,
            &format!("listeners[{i}].bind"),
            &withheld,
        );
    }
    if let Some(admin) = config.as_mut().and_then(|c| c.admin.as_mut()) {
        withhold::withhold(&mut admin.bind_shown.0, "admin.bind", &withheld);
    }
    (config, problems)
}

/// For a reload: each listener of `config`, read from `text`, on `admin`,
/// the address the running admin listener is bound to, said as a problem
/// (`listener NAME: listeners[i].bind: ...`), a value set by `${NAME}`
/// withheld from it as from every problem of the file: the check runs
/// after [`parse`], whose withheld values are gone, so they are found
/// again (only when there is something to say). `admin_shown`: the
/// running address as a message says it, when not as it bound (set by
/// `${NAME}` in the file the admin listener started from, which the new
/// file may no longer say).
pub fn on_running_admin(
    text: &str,
    config: &Config,
    admin: SocketAddr,
    admin_shown: Option<&Shown>,
) -> Vec<String> {
    let found = resolve::on_running_admin(config, admin, admin_shown.map(|s| s.0.as_str()));
    if found.is_empty() {
        return Vec::new();
    }
    let mut withheld = Vec::new();
    let _ = resolve_all(text, &config.file, &mut withheld);
    let withheld = withhold::Index::new(&withheld);
    found
        .into_iter()
        .map(|(name, mut p)| {
            withhold::withhold(&mut p.message, &p.location, &withheld);
            format!("listener {name}: {}: {}", p.location, p.message)
        })
        .collect()
}

/// [`parse_all`] before messages are withheld and shortened; the values to
/// withhold are added to `withheld`.
fn resolve_all(
    text: &str,
    file: &Path,
    withheld: &mut Vec<Withheld>,
) -> (Option<Config>, Vec<Problem>) {
    let (raw, report, blocks) = if text.trim().is_empty() {
        let none = Default::default();
        (raw::File::default(), tree::Report::default(), none)
    } else {
        let (mut root, tagged) = match tree::parse(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                let message =
                    crate::yaml_hint::explain(&e.message, e.line, text).unwrap_or(e.message);
                return (
                    None,
                    vec![Problem {
                        location: e.location,
                        message,
                    }],
                );
            }
        };
        // Keys over the limit out first: nothing walks under them. Then
        // what needs a field path, by node, placed as the reader reads it.
        let mut pending = tree::Pending::default();
        tree::long_keys(&mut root, &mut pending);
        // Each alias asks again whether its anchor's value is a block
        // scalar: the answers are kept while the tree is walked.
        block_scalar::remembering(text, || {
            tree::pasted(&root, text, &mut pending);
            tree::expand_env(&mut root, text, &mut pending);
        });
        let (raw, mut report) = tree::read::<raw::File>(&mut root, pending.ids());
        report.problems.extend(tagged); // tags on merge values, refused
        let blocks = pending.place(&report.paths, &mut report.problems, withheld);
        match raw {
            Some(raw) => (raw, report, blocks),
            None => return (None, located(&report.problems)),
        }
    };
    let mut problems = located(&report.problems);
    let unread = report.problems.iter().map(|t| t.path.clone()).collect();
    let fields = withheld.iter().map(|w| w.field().to_owned()).collect();
    let from_env = withheld.iter();
    let from_env = from_env.filter_map(|w| Some((w.field().to_owned(), w.set_by_env()?)));
    let from_env = from_env.collect();
    let (config, resolved, paths) =
        resolve::resolve_all(raw, file, unread, blocks, fields, from_env);
    withheld.iter_mut().for_each(|w| w.resolved(&paths));
    // At or within a field the tree reported (read as empty): nothing new.
    let reported: std::collections::HashSet<&str> =
        report.problems.iter().map(|t| t.path.as_str()).collect();
    for p in resolved {
        let loc = p.location.as_str();
        let mut enclosing = loc.match_indices(['.', '[']).map(|(i, _)| &loc[..i]);
        if reported.contains(loc) || enclosing.any(|e| reported.contains(e)) {
            continue;
        }
        let location = match report.line_of(&p.location) {
            Some(line) => format!("line {line}: {}", p.location),
            None => p.location,
        };
        problems.push(Problem {
            location,
            message: p.message,
        });
    }
    // In file order, like a compiler's errors.
    problems.sort_by_key(|p| line_number(&p.location));
    (Some(config), problems)
}

fn located(found: &[tree::Found]) -> Vec<Problem> {
    found
        .iter()
        .map(|f| Problem {
            location: if f.path.is_empty() {
                format!("line {}", f.line)
            } else {
                format!("line {}: {}", f.line, f.path)
            },
            message: f.message.clone(),
        })
        .collect()
}

/// The line a location starts with (`line 12: ...`); 0 without one.
fn line_number(location: &str) -> usize {
    location
        .strip_prefix("line ")
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
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
mod tests;
