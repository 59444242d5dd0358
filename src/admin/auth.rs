//! Who may call /api/v1: bearer tokens with roles, and the Host/Origin check against DNS rebinding.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::digest::{SHA256, digest};
use http::{HeaderMap, Method, StatusCode, header};

use crate::config::{AdminConfig, Role, TokenSource};
use crate::identity::gate::RateLimit;
use crate::material::shown_path;
use crate::metrics::{METRICS, ReasonLabels};
use crate::secret::Secret;

/// The configured tokens. A token file is read again when it changes (a
/// Kubernetes Secret rotated after a leak): every request checks against
/// the set current at that moment, so the new token works and the old one
/// is refused without a restart.
pub struct Tokens {
    config: AdminConfig,
    current: ArcSwap<Vec<(Role, Secret)>>,
    /// Held across a re-read's read and store: the watcher (on the blocking
    /// pool, one task per event) and SIGHUP may re-read the same file at
    /// once, and a read that finished first must not be stored last — a
    /// rotated-out (perhaps leaked) token would stay in effect.
    rereading: std::sync::Mutex<()>,
}

/// Why a request is refused: the status and a message that never quotes
/// the presented token.
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    /// For a token refused (401): the reason counted and logged
    /// ([`token_refused`]).
    pub token: Option<&'static str>,
}

impl Tokens {
    /// Read every token; an unreadable or empty source is an error naming
    /// it (the first). Warns once about each short token, every source
    /// read even after a refused one: `problems`, which names the rest of
    /// a refusal, warns about none, or a refused start warned twice.
    pub fn load(config: &AdminConfig) -> Result<Tokens, String> {
        let read: Vec<_> = (0..config.tokens.len())
            .map(|i| {
                let token = read_token(config, i)?;
                if token.2.is_some() {
                    warn_short(config, i);
                }
                Ok((token.0, token.1))
            })
            .collect();
        let tokens = read
            .into_iter()
            .collect::<Result<_, TokenError>>()
            .map_err(|e| e.message)?;
        Ok(Tokens {
            config: config.clone(),
            current: ArcSwap::from_pointee(tokens),
            rereading: std::sync::Mutex::new(()),
        })
    }

    /// What `load` would refuse, every problem rather than the first (for
    /// `check`); what it would warn about (a short token) goes to
    /// `warnings`, unlogged. Reads the sources but keeps no token.
    pub fn problems(config: &AdminConfig, warnings: &mut Vec<String>) -> Vec<String> {
        (0..config.tokens.len())
            .filter_map(|i| match read_token(config, i) {
                Ok((_, _, warning)) => {
                    warnings.extend(warning);
                    None
                }
                Err(e) => Some(e.message),
            })
            .collect()
    }

    /// The index and path of every token read from a file (what to watch);
    /// an environment variable cannot change under a running process.
    pub fn files(&self) -> Vec<(usize, PathBuf)> {
        self.config
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.source {
                TokenSource::File(p) => Some((i, p.clone())),
                TokenSource::Env(_) => None,
            })
            .collect()
    }

    /// Read token `i` again (its file may have changed). A file that is now
    /// unreadable, empty, not text or not carriable in a header keeps the
    /// running token: a Secret caught mid-update, or edited by appending,
    /// must not lock the operator out. Returns the error (naming the file,
    /// never the token) when the read failed for want of file descriptors
    /// or memory (hotproxy's own shortage), unsaid: the caller says it
    /// (the reloader's retry loop, for a watched change and SIGHUP alike,
    /// once a run, then at most once a minute) and reads it again after a
    /// back-off, or a token rotated then would never be taken, the revoked
    /// one staying valid.
    pub fn reread(&self, i: usize) -> Option<String> {
        let _one_at_a_time = self.rereading.lock().unwrap_or_else(|e| e.into_inner());
        let (_, running) = self.current.load().get(i).cloned()?;
        match read_token(&self.config, i) {
            // The error names the file and the reason, never the token.
            Err(problem) if problem.short => return Some(problem.message),
            Err(problem) => tracing::warn!(
                error = %problem.message,
                "admin token file refused; the running token stays"
            ),
            Ok((_, token, short)) if token == running => {
                if short.is_some() {
                    warn_short(&self.config, i);
                }
            }
            Ok((role, token, short)) => {
                if short.is_some() {
                    warn_short(&self.config, i);
                }
                let token = (role, token);
                // rcu: the watcher and SIGHUP may re-read different files at once.
                self.current.rcu(|current| {
                    let mut next = (**current).clone();
                    next[i] = token.clone();
                    next
                });
                tracing::info!(
                    source = %format!("admin.tokens[{}]", self.config.tokens[i].index),
                    "admin token file changed: its new token is in effect, the previous one is refused"
                );
            }
        }
        None
    }

    /// Whether the token, not the Host/Origin, decides about a request
    /// ([`check_host`]): tokens are configured and it carries a bearer
    /// token, which neither a browser page nor a DNS-rebound name can
    /// attach. `kubectl port-forward` sends `Host: localhost:<its own
    /// port>`, one per pod, never the pod's admin address. The token is
    /// judged by [`Tokens::authorize`] as ever: a wrong one is a counted
    /// 401, so another Host is no way around the count.
    pub fn token_decides(&self, headers: &HeaderMap) -> bool {
        !self.current.load().is_empty()
            && headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token)
                .is_some()
    }

    /// The role of the caller, or why not. Without tokens (loopback only,
    /// checked at startup) every caller is an editor.
    pub fn authorize(&self, headers: &HeaderMap, method: &Method) -> Result<Role, Refusal> {
        let tokens = self.current.load();
        let role = if tokens.is_empty() {
            Role::Editor
        } else {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token)
                .ok_or_else(|| Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    message: "missing Authorization: Bearer <token>".into(),
                    token: Some(MISSING_TOKEN),
                })?;
            role_of(&tokens, presented).ok_or_else(|| Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "the bearer token is not valid".into(),
                token: Some(INVALID_TOKEN),
            })?
        };
        if role == Role::Viewer && !matches!(*method, Method::GET | Method::HEAD) {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message: "the viewer role may only read (GET); this needs an editor token".into(),
                token: None,
            });
        }
        Ok(role)
    }
}

/// `hotproxy_admin_auth_failures_total{reason}` of a request without a bearer token.
const MISSING_TOKEN: &str = "missing_token";
/// `hotproxy_admin_auth_failures_total{reason}` of a token that is none of the configured.
const INVALID_TOKEN: &str = "invalid_token";

/// The series of `hotproxy_admin_auth_failures_total`, at 0 from the start
/// of an admin listener with tokens: an alert on its increase sees the
/// first refusal.
pub fn count_failures_from_zero() {
    for reason in [MISSING_TOKEN, INVALID_TOKEN] {
        // Asking for a series makes it; nothing is counted.
        let _ = METRICS.admin_auth_failures.get_or_create(&ReasonLabels {
            reason: reason.into(),
        });
    }
}

static REFUSED_CLIENTS: LazyLock<RateLimit> =
    LazyLock::new(|| RateLimit::new(Duration::from_secs(60)));

/// A request refused for its token (`reason`, a [`Refusal::token`]): counted
/// every time, and a warning with the client's address and the path (never
/// the token) for the first of each client address in a minute, so that a
/// brute force is seen but cannot flood the log.
pub fn token_refused(client: SocketAddr, path: &str, reason: &'static str) {
    METRICS
        .admin_auth_failures
        .get_or_create(&ReasonLabels {
            reason: reason.into(),
        })
        .inc();
    if !REFUSED_CLIENTS.first_in_window(client.ip().to_canonical().to_string()) {
        return;
    }
    tracing::warn!(
        client_addr = %client,
        path = %logged_path(path),
        path_bytes = path.len(),
        reason,
        "admin API request refused: no valid bearer token (401); further refusals from this address within a minute are counted in hotproxy_admin_auth_failures_total, not logged"
    );
}

/// At most this many bytes of a refused request's path are logged: the
/// client's path may be 64 KiB, one line per address a minute.
const LOGGED_PATH_BYTES: usize = 256;

/// The first [`LOGGED_PATH_BYTES`] of a client's path (cut on a character
/// boundary), escaped as Rust writes a string where it must be (control and
/// bidi characters, `\\`), as every shown value is.
fn logged_path(path: &str) -> String {
    let mut cut = path.len().min(LOGGED_PATH_BYTES);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut shown = String::with_capacity(cut);
    for c in path[..cut].chars() {
        match matches!(c, '"' | '\'') || c.escape_debug().len() == 1 {
            true => shown.push(c),
            false => shown.extend(c.escape_debug()),
        }
    }
    shown
}

/// Compare against every token in constant time (over SHA-256 digests,
/// so neither content nor length leaks through timing).
fn role_of(tokens: &[(Role, Secret)], presented: &str) -> Option<Role> {
    let want = digest(&SHA256, presented.as_bytes());
    let mut found = None;
    for (role, token) in tokens {
        let have = digest(&SHA256, token.expose().as_bytes());
        let same =
            aws_lc_rs::constant_time::verify_slices_are_equal(want.as_ref(), have.as_ref()).is_ok();
        // The strongest matching role wins; every token is compared.
        if same && found != Some(Role::Editor) {
            found = Some(*role);
        }
    }
    found
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 7235 §2.1): `bearer`, `BEARER` are the same.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// What the example manifests' token says: a token holding it was never
/// replaced.
const PLACEHOLDER: &str = "replace-me";

/// The largest token file read (a token is a line of text).
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

/// The text of token file `p`, or why not; with the error, whether the
/// system found no file there (missing, or a path through no directory).
/// A regular file only: a FIFO in its place must not block startup.
fn read_token_file(p: &std::path::Path) -> Result<String, (String, bool, bool)> {
    let bytes = crate::fsutil::read_regular(p, MAX_TOKEN_FILE_BYTES).map_err(|e| {
        let missing = matches!(e.problem, crate::fsutil::ReadProblem::Io(_))
            && !e.problem.is_permission_denied();
        (
            e.problem.to_string(),
            missing,
            e.problem.is_out_of_resources(),
        )
    })?;
    String::from_utf8(bytes).map_err(|_| ("not UTF-8 text".to_owned(), false, false))
}

/// The text of token `t`, whose `token_file` or `token_env` was set
/// by `${NAME}` (`env`), or why not, naming the field and `the value of
/// ${NAME}`, never the value: one that names no set variable or no file
/// that can be read may be the token itself (put in the variable where
/// its name or its file's path was meant), which no shape tells apart
/// (`CorrectHorseBatteryStaple`), and is asked about.
fn read_set_by_env(
    t: &crate::config::TokenConfig,
    env: &crate::config::SetByEnv,
) -> Result<String, String> {
    let i = t.index;
    let what = &env.what;
    let hint = env.token_hint();
    match &t.source {
        TokenSource::File(p) => read_token_file(p).map_err(|(e, missing, _)| match missing {
            true => format!(
                "admin.tokens[{i}].token_file: {what} names no file that can be read \
                 ({e}; {hint})"
            ),
            false => format!("admin.tokens[{i}].token_file <withheld: {what}>: {e}"),
        }),
        TokenSource::Env(name) => std::env::var(name).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("admin.tokens[{i}].token_env: {what} names no set variable ({hint})")
            }
            std::env::VarError::NotUnicode(_) => format!(
                "admin.tokens[{i}].token_env: {what} names a variable that is set but \
                 not valid UTF-8"
            ),
        }),
    }
}

/// Where the problems of token `t`, once read, say it is: the
/// field and the file or variable it was read from (a value set by
/// `${NAME}` too: it named one, so it is no token), the field alone for
/// a path that looks like a token.
fn place(t: &crate::config::TokenConfig) -> String {
    let i = t.index;
    match &t.source {
        TokenSource::File(_) if t.path_withheld => format!("admin.tokens[{i}].token_file"),
        TokenSource::File(p) => format!("admin.tokens[{i}].token_file {}", shown_path(p)),
        TokenSource::Env(name) => format!("admin.tokens[{i}].token_env {name}"),
    }
}

/// Token `i` of the resolved list with its role, and what `run` warns
/// about it (logged here, returned for `check` to print: a token shorter
/// than 16 characters); an unreadable or empty source, the placeholder,
/// or a token no header can carry is an error naming the field (the
/// entry's position in the file, not `i`), never the token.
/// Why a token was not read; `short`: for want of file descriptors or
/// memory (its file not judged).
struct TokenError {
    message: String,
    short: bool,
}

impl From<String> for TokenError {
    fn from(message: String) -> TokenError {
        TokenError {
            message,
            short: false,
        }
    }
}

const SHORT: &str = "admin token is shorter than 16 characters; use a long random one";

/// Log that token `i` is short (SPEC §4), naming its source, never it.
fn warn_short(config: &AdminConfig, i: usize) {
    tracing::warn!(source = %place(&config.tokens[i]), "{SHORT}");
}

fn read_token(
    config: &AdminConfig,
    i: usize,
) -> Result<(Role, Secret, Option<String>), TokenError> {
    let t = &config.tokens[i];
    let n = t.index;
    let text = match (&t.source, &t.set_by_env) {
        (_, Some(env)) => read_set_by_env(t, env)?,
        (TokenSource::File(p), None) => read_token_file(p).map_err(|(e, _, short)| {
            // A token pasted in place of the path, or of a directory in
            // it: not repeated.
            let message = if t.path_withheld {
                format!(
                    "admin.tokens[{n}].token_file: {e}; a name in the path looks like a \
                     token, not a file or directory name (did you paste the token \
                     itself?); the path is withheld"
                )
            } else {
                format!("admin.tokens[{n}].token_file {}: {e}", shown_path(p))
            };
            TokenError { message, short }
        })?,
        (TokenSource::Env(name), None) => crate::config::env::var(name)
            .map_err(|e| format!("admin.tokens[{n}].token_env: {e}"))?,
    };
    let place = place(t);
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::from(format!("{place}: the token is empty")));
    }
    if let Some(what) = uncarriable(token) {
        return Err(TokenError::from(format!(
            "{place}: the token holds {what}, which no `Authorization: Bearer` \
             header can carry (every client would be refused); a token is \
             visible ASCII without spaces, e.g. the output of `openssl rand -hex 32`"
        )));
    }
    // The example Secret ships one, and everyone who read the example
    // knows it; the admin listener there binds 0.0.0.0.
    if token.to_ascii_lowercase().contains(PLACEHOLDER) {
        return Err(TokenError::from(format!(
            "{place}: the token is the example's placeholder ({PLACEHOLDER:?}...), \
             known to everyone who read it; put a random one there, e.g. the \
             output of `openssl rand -hex 32`"
        )));
    }
    // Logged by the caller (`warn_short`): `problems` reads the tokens
    // `load` has read, and a warning here was logged by both.
    let warning = (token.len() < 16).then(|| format!("{place}: {SHORT}"));
    Ok((t.role, Secret::new(token), warning))
}

/// What in `token` no `Authorization: Bearer` header can carry, if
/// anything. A header value is read as text only when it is visible ASCII
/// (`HeaderValue::to_str`), and the bearer token is one word: a token with
/// a line break (a Secret edited by appending the new token under the old
/// one), a UTF-8 BOM (an editor's), a non-ASCII character or a space inside
/// matches no request, so taking it locks every client out. Never says
/// where, nor which character: the message must not narrow the token down.
fn uncarriable(token: &str) -> Option<&'static str> {
    // The likelier cause first: a BOM or a second line explains the rest.
    let has = |f: fn(char) -> bool| token.chars().any(f);
    if has(|c| c == '\u{feff}') {
        Some("a byte-order mark (U+FEFF)")
    } else if has(|c| c == '\n' || c == '\r') {
        Some("a line break (a token is one line)")
    } else if has(|c| !c.is_ascii()) {
        Some("a non-ASCII character")
    } else if has(char::is_whitespace) {
        Some("whitespace inside")
    } else if has(|c| c.is_ascii_control()) {
        Some("a control character")
    } else {
        None
    }
}

/// Refuse requests whose `Host` (or `:authority`) or `Origin` names anything
/// but the address the connection came in on: a browser page or a DNS
/// rebinding attack can reach a loopback port, but not with that Host.
/// A `403` here is waived where [`Tokens::token_decides`]; the `400` of
/// several Host lines never is.
pub fn check_host(
    headers: &HeaderMap,
    authority: Option<&str>,
    local: SocketAddr,
) -> Result<(), Refusal> {
    // On a dual-stack `[::]` socket an IPv4 client arrives at
    // `[::ffff:127.0.0.1]`; its Host says 127.0.0.1, as it should.
    let local = SocketAddr::new(local.ip().to_canonical(), local.port());
    if several_hosts(headers) {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: SEVERAL_HOSTS.into(),
            token: None,
        });
    }
    let host = authority.or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()));
    let refuse = |what: &str| Refusal {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "{what} is not the admin address {local}; requests through other names are refused"
        ),
        token: None,
    };
    match host {
        Some(h) if is_admin_address(h, local) => {}
        Some(_) => return Err(refuse("the Host header")),
        None => return Err(refuse("a request without a Host header")),
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|h| is_admin_address(h, local));
        if !ok {
            return Err(refuse("the Origin header"));
        }
    }
    Ok(())
}

/// The answer to [`several_hosts`].
pub const SEVERAL_HOSTS: &str = "more than one Host header (RFC 9112 §3.2)";

/// Whether the request has more than one `Host` line: RFC 9112 §3.2's
/// 400, as nginx answers. Only the first was compared with the admin
/// address, so `Host: <admin address>` then `Host: evil` passed.
pub fn several_hosts(headers: &HeaderMap) -> bool {
    headers.get_all(header::HOST).iter().nth(1).is_some()
}

/// `host:port` naming `local` itself (or `localhost` for a loopback address);
/// `local` is canonical, as [`check_host`] makes it.
fn is_admin_address(host: &str, local: SocketAddr) -> bool {
    // A Host (or Origin) without a port names port 80 (RFC 9110 §7.2):
    // curl sends `Host: 127.0.0.1` for `http://127.0.0.1/`. A `:` inside
    // an IPv6 literal's brackets is not a port's.
    let has_port = host.rfind(':').is_some_and(|i| !host[i..].contains(']'));
    let with_port;
    let host = if local.port() == 80 && !has_port {
        with_port = format!("{host}:80");
        &with_port
    } else {
        host
    };
    if host.eq_ignore_ascii_case(&local.to_string()) {
        return true;
    }
    // An IP literal names an address, whatever its spelling: a client of
    // `admin.bind: "[::ffff:127.0.0.1]:9901"` sends that Host, and `local`
    // is canonical (`127.0.0.1:9901`).
    if let Ok(named) = host.parse::<SocketAddr>() {
        return named.ip().to_canonical() == local.ip() && named.port() == local.port();
    }
    local.ip().is_loopback()
        && host
            .strip_suffix(&format!(":{}", local.port()))
            .is_some_and(|name| name.eq_ignore_ascii_case("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// A logged path is cut on a character boundary, never inside one,
    /// and a control character in it is escaped.
    #[test]
    fn a_logged_path_is_cut_whole_characters_and_escaped() {
        let long = format!("/{}", "é".repeat(200));
        let shown = logged_path(&long);
        assert_eq!(shown, format!("/{}", "é".repeat(127)));
        assert_eq!(logged_path("/a\u{1b}b"), "/a\\u{1b}b");
    }

    /// An admin config with one editor token read from `admin.token` in
    /// `dir` (not written yet), and that file's path.
    fn editor_token_file(dir: &std::path::Path) -> (std::path::PathBuf, AdminConfig) {
        let file = dir.join("admin.token");
        let config = AdminConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            bind_shown: Default::default(),
            tokens: vec![crate::config::TokenConfig {
                index: 0,
                role: Role::Editor,
                source: TokenSource::File(file.clone()),
                path_withheld: false,
                set_by_env: None,
            }],
        };
        (file, config)
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn host_and_origin() {
        let local: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        let ok = |h: HeaderMap| check_host(&h, None, local).is_ok();
        assert!(ok(headers(&[(header::HOST, "127.0.0.1:9901")])));
        assert!(ok(headers(&[(header::HOST, "localhost:9901")])));
        assert!(!ok(headers(&[(header::HOST, "evil.example:9901")])));
        assert!(!ok(headers(&[(header::HOST, "127.0.0.1:80")])));
        assert!(!ok(headers(&[])));
        // `admin.bind: "[::]:9901"`: an IPv4 client's connection is local
        // to the mapped address; 127.0.0.1 and localhost are its names.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9901".parse().unwrap();
        for host in ["127.0.0.1:9901", "localhost:9901"] {
            assert!(
                check_host(&headers(&[(header::HOST, host)]), None, mapped).is_ok(),
                "{host}"
            );
        }
        assert!(!ok(headers(&[
            (header::HOST, "127.0.0.1:9901"),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(ok(headers(&[
            (header::HOST, "127.0.0.1:9901"),
            (header::ORIGIN, "http://127.0.0.1:9901")
        ])));
        let v6: SocketAddr = "[::1]:9901".parse().unwrap();
        assert!(check_host(&headers(&[(header::HOST, "[::1]:9901")]), None, v6).is_ok());
        // Without a port a Host names port 80 (RFC 9110 §7.2), as curl and
        // browsers send it for `http://127.0.0.1/`; so does an Origin.
        assert!(!ok(headers(&[(header::HOST, "127.0.0.1")])));
        assert!(!ok(headers(&[(header::HOST, "localhost")])));
        for local in ["127.0.0.1:80", "[::1]:80"] {
            let local: SocketAddr = local.parse().unwrap();
            let ok = |h: HeaderMap| check_host(&h, None, local).is_ok();
            let ip = local.to_string().trim_end_matches(":80").to_owned();
            for host in [ip.as_str(), "localhost", &local.to_string(), "LOCALHOST:80"] {
                assert!(ok(headers(&[(header::HOST, host)])), "{local} {host}");
                let origin = format!("http://{host}");
                let h = headers(&[(header::HOST, host), (header::ORIGIN, &origin)]);
                assert!(ok(h), "{local} {origin}");
            }
            for host in ["evil.example", "127.0.0.2", "[::2]", &format!("{ip}:8080")] {
                assert!(!ok(headers(&[(header::HOST, host)])), "{local} {host}");
            }
        }
        // localhost names loopback only.
        let public: SocketAddr = "192.0.2.7:80".parse().unwrap();
        assert!(check_host(&headers(&[(header::HOST, "192.0.2.7")]), None, public).is_ok());
        assert!(check_host(&headers(&[(header::HOST, "localhost")]), None, public).is_err());
    }

    /// The example Secret's token, or one that still says to replace it,
    /// is refused wherever it is read: at startup, by `check` and by a
    /// re-read, which keeps the running token.
    #[test]
    fn the_example_placeholder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (file, config) = editor_token_file(dir.path());
        for placeholder in [
            "replace-me-with-openssl-rand-hex-32\n",
            "REPLACE-ME-0123456789abcdef",
        ] {
            std::fs::write(&file, placeholder).unwrap();
            let Err(e) = Tokens::load(&config) else {
                panic!("{placeholder:?} accepted");
            };
            assert!(
                e.starts_with(&format!("admin.tokens[0].token_file {}: ", file.display())),
                "{e}"
            );
            assert!(e.contains("openssl rand -hex 32"), "{e}");
            assert!(
                !e.to_lowercase()
                    .contains(placeholder.trim().to_lowercase().as_str()),
                "{e}"
            );
            assert_eq!(Tokens::problems(&config, &mut Vec::new()), vec![e]);
        }
        std::fs::write(&file, "editor-token-0123456789").unwrap();
        let t = Tokens::load(&config).unwrap();
        std::fs::write(&file, "replace-me-with-openssl-rand-hex-32").unwrap();
        t.reread(0);
        let bearer = |t: &str| headers(&[(header::AUTHORIZATION, &format!("Bearer {t}"))]);
        assert!(
            t.authorize(&bearer("editor-token-0123456789"), &Method::GET)
                .is_ok()
        );
        assert!(
            t.authorize(&bearer("replace-me-with-openssl-rand-hex-32"), &Method::GET)
                .is_err()
        );
    }

    /// A token no `Authorization: Bearer` header can carry (hyper reads a
    /// header value as text only when it is visible ASCII) locks every
    /// client out: "old\nnew" (a Secret edited by appending), a UTF-8 BOM
    /// (an editor's), a non-ASCII character, inner whitespace. Refused like
    /// an empty token wherever it is read, naming the file and the reason,
    /// never the token; a re-read keeps the running token.
    #[test]
    fn a_token_no_header_can_carry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (file, config) = editor_token_file(dir.path());
        let good = "editor-token-0123456789";
        let bad = [
            (format!("{good}\nsecond-token-0123456789\n"), "line break"),
            (format!("\u{feff}{good}\n"), "byte-order mark"),
            (format!("{good}\u{e9}"), "non-ASCII"),
            (format!("{good} second-token"), "whitespace"),
            (format!("{good}\tsecond-token"), "whitespace"),
            (format!("{good}\u{7}"), "control character"),
        ];
        for (token, reason) in &bad {
            std::fs::write(&file, token).unwrap();
            let Err(e) = Tokens::load(&config) else {
                panic!("{token:?} accepted");
            };
            assert!(
                e.starts_with(&format!("admin.tokens[0].token_file {}: ", file.display())),
                "{e}"
            );
            assert!(e.contains(reason), "{token:?}: {e}");
            assert!(!e.contains(good), "the token in {e}");
            assert_eq!(Tokens::problems(&config, &mut Vec::new()), vec![e]);
        }
        std::fs::write(&file, format!("{good}\n")).unwrap();
        let t = Tokens::load(&config).unwrap();
        let bearer = |t: &str| headers(&[(header::AUTHORIZATION, &format!("Bearer {t}"))]);
        for (token, _) in &bad {
            std::fs::write(&file, token).unwrap();
            t.reread(0);
            assert!(
                t.authorize(&bearer(good), &Method::GET).is_ok(),
                "{token:?} replaced the running token"
            );
        }
    }

    #[test]
    fn roles() {
        let t = Tokens {
            config: AdminConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                bind_shown: Default::default(),
                tokens: Vec::new(),
            },
            current: ArcSwap::from_pointee(vec![
                (Role::Viewer, Secret::new("viewer-token-0123456789")),
                (Role::Editor, Secret::new("editor-token-0123456789")),
            ]),
            rereading: std::sync::Mutex::new(()),
        };
        let bearer = |t: &str| headers(&[(header::AUTHORIZATION, &format!("Bearer {t}"))]);
        let status = |r: Result<Role, Refusal>| r.err().map(|e| e.status);
        assert_eq!(
            status(t.authorize(&bearer("viewer-token-0123456789"), &Method::GET)),
            None
        );
        assert_eq!(
            status(t.authorize(&bearer("viewer-token-0123456789"), &Method::POST)),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(t.authorize(&bearer("editor-token-0123456789"), &Method::DELETE)),
            None
        );
        // The scheme is case-insensitive (RFC 7235); the token is not.
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let h = headers(&[(
                header::AUTHORIZATION,
                &format!("{scheme} editor-token-0123456789"),
            )]);
            assert_eq!(status(t.authorize(&h, &Method::DELETE)), None, "{scheme}");
        }
        assert_eq!(
            status(t.authorize(&bearer("EDITOR-TOKEN-0123456789"), &Method::GET)),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(t.authorize(&bearer("wrong"), &Method::GET)),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(t.authorize(&HeaderMap::new(), &Method::GET)),
            Some(StatusCode::UNAUTHORIZED)
        );
    }
}
