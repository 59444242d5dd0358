//! What `--log-level` and `RUST_LOG` let through, on the real process: an
//! empty `RUST_LOG` is unset, a bad one is refused, the user's directives win.

mod support;

use std::process::{Command, Stdio};

use support::*;

/// A proxy's config: listener `public` serving `a.crt` (CA `ca.crt`), no routes.
fn scene() -> (Scene, std::path::PathBuf) {
    let s = Scene::new();
    let ca = TestCa::new("ca");
    s.pair("a", &ca.server_pair(&["localhost"]));
    write(&s.path("ca.crt"), &ca.cert_pem);
    let cfg = s.public_config("[]", " []");
    (s, cfg)
}

/// `RUST_LOG=` (as `RUST_LOG=${RUST_LOG:-}` or an empty env entry of a pod
/// spec sets it) parsed as no directive at all: every line was off, the
/// startup and every error included. It counts as unset: `--log-level`.
#[tokio::test]
async fn an_empty_rust_log_counts_as_unset() {
    let (_s, cfg) = scene();
    for empty in ["", " "] {
        let mut p = Proxy::start_logging(&cfg, "info", &[("RUST_LOG", empty)]);
        p.listener_addr("public").await;
    }
}

/// `RUST_LOG=hotproxy`, tracing's and env_logger's way to ask for every
/// line of one crate, was refused with the typos (exit 2): a bare word
/// that names one of the binary's crates (or a module of one) is that
/// target at every level. The process runs and logs, hotproxy's debug
/// lines too.
#[tokio::test]
async fn rust_log_naming_a_crate_shows_all_of_its_lines() {
    let (_s, cfg) = scene();
    let mut p = Proxy::start_logging(&cfg, "info", &[("RUST_LOG", "hotproxy")]);
    p.listener_addr("public").await;
    p.wait_log("a debug line of hotproxy's", |v| {
        v["level"] == "DEBUG"
            && v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("hotproxy"))
    })
    .await;
}

/// `hotproxy run`/`demo` with `RUST_LOG` set: (exit code, stderr).
fn run_with_rust_log(command: &str, rust_log: &str) -> (i32, String) {
    let out = output_within_deadline(
        Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args([command, "--log-level", "info"])
            // A configuration that does not exist: `run` fails at once if
            // it gets past the logging, without serving.
            .env("HOTPROXY_CONFIG", "/nonexistent/hotproxy.yaml")
            .env("RUST_LOG", rust_log)
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `RUST_LOG=warning` (a typo `--log-level` refuses) made tracing show
/// only a target named `warning`, no line at all; `RUST_LOG` that does
/// not parse fell back to `--log-level` without a word. Both are refused
/// at startup (exit 2, as for `--log-level`), naming RUST_LOG and the part.
#[test]
fn a_bad_rust_log_is_refused() {
    for (rust_log, part) in [
        ("warning", "warning"),
        ("info,hotproxy=loud", "hotproxy=loud"),
        // Not one of the binary's crates, nor a module of one.
        ("hotproxies", "hotproxies"),
        ("info,hotproxy:watch", "hotproxy:watch"),
    ] {
        let (code, err) = run_with_rust_log("run", rust_log);
        assert_eq!(code, 2, "RUST_LOG={rust_log}: {err}");
        assert!(
            err.contains("RUST_LOG") && err.contains(&format!("`{part}`")),
            "RUST_LOG={rust_log}: {err}"
        );
    }
    let (code, err) = run_with_rust_log("demo", "warning");
    assert_eq!(code, 2, "demo: {err}");
    assert!(err.contains("RUST_LOG"), "demo: {err}");
    // Good directives pass: the run goes on to its configuration.
    for good in [
        "warn",
        "INFO,hotproxy::watch=debug",
        "hotproxy=trace",
        "error,",
        "hotproxy",
        "warn,hotproxy::watch,h2",
        "tokio_rustls",
    ] {
        let (code, err) = run_with_rust_log("run", good);
        assert_eq!(code, 1, "RUST_LOG={good}: {err}");
        assert!(!err.contains("RUST_LOG"), "RUST_LOG={good}: {err}");
    }
}

/// `hotproxy run --log-level LEVEL` (no `RUST_LOG`): (exit code, stderr).
fn run_with_log_level(level: &str) -> (i32, String) {
    let out = output_within_deadline(
        Command::new(env!("CARGO_BIN_EXE_hotproxy"))
            .args(["run", "--log-level", level])
            .env("HOTPROXY_CONFIG", "/nonexistent/hotproxy.yaml")
            .env_remove("RUST_LOG")
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--log-level '*=debug'` passed the check of its levels but not
/// tracing's parser, and the filter fell back to plain `info` without a
/// word, the operator's directive and the defaults (`rustls=error`) gone.
/// A directive tracing cannot parse is refused (exit 2), naming it.
#[test]
fn a_log_level_directive_tracing_cannot_parse_is_refused() {
    for (level, part) in [("*=debug", "*=debug"), ("info, =debug", "=debug")] {
        let (code, err) = run_with_log_level(level);
        assert_eq!(code, 2, "--log-level {level:?}: {err}");
        assert!(
            err.contains(&format!("`{part}`")),
            "--log-level {level:?}: {err}"
        );
    }
}

/// `--log-level 'info, hotproxy=debug'` (a space after the comma) passed
/// the check, which trims, while tracing got the untrimmed text, failed,
/// and the filter fell back to plain `info`: no debug line, no word why.
/// `RUST_LOG='info, hotproxy=debug'` (which env_logger takes) was refused
/// with `RUST_LOG: error parsing level filter`, naming nothing. Spaces
/// around a directive are ignored in both: hotproxy's debug lines show.
#[tokio::test]
async fn spaces_around_directives_are_ignored() {
    let (_s, cfg) = scene();
    let spaced = "info, hotproxy=debug ";
    for (level, env) in [(spaced, None), ("info", Some(("RUST_LOG", spaced)))] {
        let env: Vec<_> = env.into_iter().collect();
        let mut p = Proxy::start_logging(&cfg, level, &env);
        p.listener_addr("public").await;
        p.wait_log("a debug line of hotproxy's", |v| {
            v["level"] == "DEBUG"
                && v["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("hotproxy"))
        })
        .await;
    }
}

/// rustls's lines of one request to `public` on a proxy run with
/// `--log-level level`: all of them once SIGHUP, sent after the request,
/// has its line (one process writing stderr in order).
async fn rustls_lines(cfg: &std::path::Path, level: &str, ca_pem: &str) -> Vec<String> {
    let mut p = Proxy::start_logging(cfg, level, &[]);
    let addr = p.listener_addr("public").await;
    get_h1(addr, "localhost", ca_pem).await.unwrap();
    p.signal("HUP");
    p.wait_log("SIGHUP's line after the request", |v| {
        v["message"] == "SIGHUP: done"
    })
    .await;
    p.logs()
        .into_iter()
        .filter(|l| l.contains("\"target\":\"rustls"))
        .collect()
}

/// hotproxy's defaults (`rustls=error`) were appended after the user's
/// directives, and tracing keeps the later of two directives for one
/// target: `--log-level info,rustls=debug` showed no rustls line. The
/// user's explicit directive wins now; without one the default stands.
#[tokio::test]
async fn an_explicit_directive_overrides_the_defaults() {
    let (s, cfg) = scene();
    let ca = std::fs::read_to_string(s.path("ca.crt")).unwrap();
    let shown = rustls_lines(&cfg, "info,rustls=debug", &ca).await;
    assert!(
        shown.iter().any(|l| l.contains("decided upon suite")),
        "no rustls debug line: {shown:?}"
    );
    let hidden = rustls_lines(&cfg, "debug", &ca).await;
    assert!(hidden.is_empty(), "rustls below error: {hidden:?}");
}

/// `hotproxy COMMAND --log-format FORMAT [--config CFG]` in `CFG`'s
/// directory, failing at startup: (exit code, stdout, stderr). `demo`
/// reads `./config.yaml` there.
fn failed_start(command: &str, cfg: &std::path::Path, format: &str) -> (i32, String, String) {
    failed_start_at(command, cfg, format, "info")
}

/// [`failed_start`] at a given `--log-level`.
fn failed_start_at(
    command: &str,
    cfg: &std::path::Path,
    format: &str,
    level: &str,
) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotproxy"));
    cmd.args([command, "--log-format", format, "--log-level", level])
        .current_dir(cfg.parent().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if command == "run" {
        cmd.arg("--config").arg(cfg);
    }
    let out = output_within_deadline(&mut cmd);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A refused start (a configuration with a problem, a certificate file
/// that is not there) logged its JSON event, then wrote the problems again
/// as plain text: lines a log collector reading JSON (Loki, Fluent Bit)
/// cannot parse, in the crash log of a pod whose ConfigMap went wrong
/// (`demo` wrote only the plain text). With `--log-format json` every line
/// is one JSON event, its `error` naming the field; the text format still
/// shows the problems as written.
#[test]
fn a_refused_start_logs_one_json_event_per_line() {
    let s = Scene::new();
    let broken = s.config(
        "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    bogus: 1\n    routes: []\n",
    );
    let missing = s.path("missing.yaml");
    write(
        &missing,
        "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      certs:\n        \
         - { cert_file: nope.crt, key_file: nope.key }\n    routes: []\n",
    );
    for (command, cfg, names) in [
        ("run", &broken, "listeners[0].bogus"),
        ("run", &missing, "listeners.public.tls.certs[0]"),
        ("demo", &broken, "listeners[0].bogus"),
    ] {
        let (code, stdout, stderr) = failed_start(command, cfg, "json");
        assert_eq!(code, 1, "{command}: {stderr}");
        assert_eq!(stdout, "", "stdout of a refused {command}");
        let events: Vec<serde_json::Value> = stderr
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("{command}: not a JSON event ({e}): {line:?}\n{stderr}")
                })
            })
            .collect();
        assert!(
            events
                .iter()
                .any(|v| v["level"] == "ERROR"
                    && v["error"].as_str().is_some_and(|e| e.contains(names))),
            "{command}: no ERROR event naming {names}:\n{stderr}"
        );

        let (code, _, stderr) = failed_start(command, cfg, "text");
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(names) && !l.contains("ERROR")),
            "{command}: the text format shows the problem on a line of its own:\n{stderr}"
        );
    }
}

/// `demo` refused a `./config.yaml` with a problem as its own checks
/// refuse (`cannot start the demo`, no `path`; with `text`, no ERROR
/// event), where `run` logs `invalid configuration` with `path`: a log
/// alert keyed on that event missed the demo's. Both log the same event.
#[test]
fn demo_refuses_an_invalid_configuration_as_run_does() {
    let s = Scene::new();
    let broken = s.config(
        "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    bogus: 1\n    routes: []\n",
    );
    let events = |command: &str| -> Vec<serde_json::Value> {
        let (code, _, stderr) = failed_start(command, &broken, "json");
        assert_eq!(code, 1, "{command}: {stderr}");
        stderr
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON event"))
            .collect()
    };
    for command in ["run", "demo"] {
        let events = events(command);
        assert!(
            events.iter().any(|v| v["level"] == "ERROR"
                && v["message"] == "invalid configuration"
                && v["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("config.yaml"))
                && v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("listeners[0].bogus"))),
            "{command}: no `invalid configuration` event with `path`: {events:?}"
        );
        let (_, _, text) = failed_start(command, &broken, "text");
        assert!(
            text.lines()
                .any(|l| l.contains("ERROR") && l.contains("invalid configuration")),
            "{command}: no ERROR event in the text log:\n{text}"
        );
    }
}

/// With `--log-format json` and logging filtered off (`--log-level off`),
/// the ERROR event of a refused start is never written, and skipping the
/// plain lines for JSON's sake left a process exiting 1 with nothing said
/// at all. The problems are written then, as the text format writes them.
#[test]
fn a_refused_start_with_logging_off_still_says_why() {
    let s = Scene::new();
    let broken = s.config(
        "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    bogus: 1\n    routes: []\n",
    );
    for command in ["run", "demo"] {
        let (code, _, stderr) = failed_start_at(command, &broken, "json", "off");
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(
            stderr.contains("listeners[0].bogus"),
            "{command}: a refused start with logging off says nothing:\n{stderr:?}"
        );
    }
}
