//! Log output: tracing to stderr, as text or one JSON object per line.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Directive, LevelFilter};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Whether the installed subscriber writes JSON ([`init_logging`]).
static JSON: AtomicBool = AtomicBool::new(false);

/// Whether log lines are JSON events (`--log-format json`): then nothing
/// else may be written to stderr, where a collector parses every line.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// `--log-level`: a level (`error`, `warn`, `info`, `debug`, `trace`,
/// `off`), or tracing directives (`info,hotproxy::watch=debug`) where each
/// bare word is a level. tracing reads a bare word it does not know as a
/// target to show at every level, with nothing else shown: a typo such as
/// `warning` silenced every log line. Refused instead, naming the word; so
/// is a directive tracing cannot parse (`*=debug`), which made the whole
/// filter fall back to plain `info` without a word. The value comes back
/// with the spaces around its directives gone: the check trims them,
/// tracing does not (`info, hotproxy=debug` failed to parse there).
pub fn parse_level(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    for part in &parts {
        let level = part.rsplit_once('=').map_or(*part, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "unknown log level `{level}`: use one of {}, or target=level directives",
                LEVELS.join(", ")
            ));
        }
        if let Err(e) = part.parse::<Directive>() {
            return Err(format!("`{part}` is not a tracing directive: {e}"));
        }
    }
    Ok(parts.join(","))
}

/// `value`'s comma-separated directives, trimmed, the empty ones left out:
/// tracing's parser does not trim (env_logger, which `RUST_LOG` comes
/// from, does), so it is given these.
fn directives(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// The crates whose targets this binary logs under: a bare `RUST_LOG`
/// word naming one of them (or a module of one, `hotproxy::watch`) is
/// tracing's "every line of that target" (`RUST_LOG=hotproxy`, the usual
/// env_logger idiom), not a misspelt level. Any other bare word could only
/// be a typo (`warning`), which tracing would read as a target that never
/// logs, showing nothing.
const LOG_TARGETS: [&str; 8] = [
    "hotproxy",
    "rustls",
    "hyper",
    "hyper_util",
    "h2",
    "tokio",
    "tokio_rustls",
    "notify",
];

/// Whether a bare `RUST_LOG` word names a target of [`LOG_TARGETS`].
fn names_target(word: &str) -> bool {
    LOG_TARGETS.iter().any(|t| {
        word.strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// `RUST_LOG`'s directives, or why they are refused (naming `RUST_LOG`
/// and the directive). tracing reads a bare word it does not know as a
/// target, as for `--log-level`: `RUST_LOG=warning` showed no line at all.
/// Every bare word must be a level or name one of this binary's crates'
/// targets ([`LOG_TARGETS`]; another target is named `target=level`), and
/// a directive that does not parse is refused, not skipped.
fn rust_log_filter(value: &str) -> Result<EnvFilter, String> {
    for part in directives(value) {
        let bare = !part.contains(['=', '[', '{']);
        if bare && part.parse::<LevelFilter>().is_err() && !names_target(part) {
            return Err(format!(
                "RUST_LOG: unknown log level `{part}`: a bare word is one of off, error, \
                 warn, info, debug, trace, or a target of {}; name another target as \
                 `target=level`",
                LOG_TARGETS.join(", ")
            ));
        }
        if let Err(e) = part.parse::<Directive>() {
            return Err(format!(
                "RUST_LOG: `{part}` is not a tracing directive: {e}"
            ));
        }
    }
    let parts: Vec<&str> = directives(value).collect();
    EnvFilter::try_new(parts.join(",")).map_err(|e| format!("RUST_LOG: {e}"))
}

/// Install the global subscriber. JSON events are flattened so the fields
/// (`listener`, `entry`, `upstream`, `path`, `fingerprint`, `error`) sit at
/// the top level of each line, next to `message`.
/// `RUST_LOG`, when set and not empty, replaces `--log-level` (and the
/// defaults below); one that would not filter as written is an error.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    let rust_log = match std::env::var("RUST_LOG") {
        // Empty counts as unset (`RUST_LOG=${RUST_LOG:-}`, an empty env
        // entry in a pod spec): tracing read it as no directive, all off.
        Ok(v) if v.trim().is_empty() => None,
        Ok(v) => Some(rust_log_filter(&v)?),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err("RUST_LOG: not UTF-8 text".to_owned());
        }
    };
    let filter = match rust_log {
        Some(filter) => filter,
        None => {
            // rustls warns once per connection about what any client may send
            // (an IP address as SNI, as wrk does): a log flood, not news.
            // notify's inotify backend warns "Unable to remove the path from the
            // watches: WatchNotFound" (and logs EINVAL at info) whenever a
            // watched directory is deleted after its watch went: every kubelet
            // Secret swap removes its old `..<timestamp>` directory. Its own docs
            // call these "not a real error"; as WARNs they page log-based
            // alerting on every renewal. Its only other lines are for backends
            // hotproxy does not use. Real watch failures are ours to log
            // ("cannot watch directory; relying on polling").
            // h2 warns at every PING ACK a client sends unasked ("recv PING ack
            // that we never sent"): a 17-byte frame per log line, any client's
            // to send.
            // The defaults go first: of two directives for one target tracing
            // keeps the later, so the user's `rustls=debug` must come after
            // `rustls=error` to be the one in effect.
            // Checked here too (main's clap checks it already) for a caller
            // that did not: a filter that does not parse is refused, never
            // replaced by plain `info` without a word.
            let level = parse_level(level).map_err(|e| format!("--log-level: {e}"))?;
            EnvFilter::try_new(format!(
                "rustls=error,notify::inotify=error,h2::proto::ping_pong=error,{level}"
            ))
            .map_err(|e| format!("--log-level: {e}"))?
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Queued, never a write on the logging thread: a stalled stderr
        // reader must not stop the proxy (crate::log_writer).
        .with_writer(crate::log_writer::QueuedStderr)
        // Colour codes only for a person at a terminal, never into a file,
        // a pipe or a container log collector.
        .with_ansi(std::io::stderr().is_terminal())
        // On a failed write tracing-subscriber reports it with `eprintln!`,
        // which panics when stderr is a closed pipe: `run` with a refused
        // configuration and a closed stderr exited 101, not 1.
        .log_internal_errors(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    if installed.is_ok() {
        JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    }
    Ok(())
}

/// Log lines a unit test reads back.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `f`'s result, and what was logged at `level` or above on this
    /// thread while it ran (a current-thread runtime's tasks included).
    pub(crate) fn logged<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, String) {
        let logs = Capture::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(level)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        (out, text)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_level;

    #[test]
    fn log_levels_and_directives() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,hotproxy::watch=debug",
            "hotproxy=trace",
        ] {
            assert_eq!(parse_level(ok).as_deref(), Ok(ok));
        }
        assert_eq!(
            parse_level(" info, hotproxy=debug ").as_deref(),
            Ok("info,hotproxy=debug")
        );
        for bad in ["warning", "verbose", "info,hotproxy=loud", ""] {
            let e = parse_level(bad).unwrap_err();
            assert!(e.contains("unknown log level"), "{bad}: {e}");
        }
        for bad in ["*=debug", "info,=debug"] {
            let e = parse_level(bad).unwrap_err();
            assert!(e.contains("not a tracing directive"), "{bad}: {e}");
        }
    }
}
