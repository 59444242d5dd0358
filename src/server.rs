//! `hotproxy run`: the runtime, the reloader, the admin listener, signals and graceful drain.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::proxy::drain::Drain;
use crate::reload::{self, Command};

/// Load the configuration and serve it until SIGTERM/SIGINT/SIGQUIT.
pub fn run(config_path: &Path) -> ExitCode {
    let Some(config) = load(config_path) else {
        return ExitCode::FAILURE;
    };
    let workers = workers(config.runtime.worker_threads, available_cpus());
    // One worker: a current-thread runtime runs every task on this thread,
    // without the cross-thread queue and wake-up handoffs a one-worker
    // multi-thread runtime pays on each request (measured by
    // benches/compare.sh: 62 against 45-55 us per h1 request). `0` is
    // resolved first: under a 1-CPU cgroup limit or affinity it means one
    // worker, and took the slower runtime. The reloader and watcher keep
    // their own threads.
    let mut rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    rt.enable_all();
    if workers > 1 {
        rt.worker_threads(workers);
    }
    info!(
        worker_threads = workers,
        configured = config.runtime.worker_threads,
        flavor = if workers == 1 {
            "current_thread"
        } else {
            "multi_thread"
        },
        "runtime"
    );
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            as_written(&format!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(serve(config));
    finish(rt);
    code
}

/// The CPUs this process may run on: the cgroup CPU quota and the
/// affinity mask both lower it (`available_parallelism`); 1 when unknown.
fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// The runtime's workers for `runtime.worker_threads: configured` on a
/// process that may use `cpus` CPUs: `0` means one per CPU.
fn workers(configured: usize, cpus: usize) -> usize {
    if configured == 0 {
        cpus.max(1)
    } else {
        configured
    }
}

/// The configuration at `path`, or `None` once its problems are logged:
/// the ERROR event `invalid configuration` (with `path`), then the
/// problems as written ([`as_written`]). `run` and `demo` refuse one
/// alike, so a log alert keyed on that event sees both.
pub(crate) fn load(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            let problems = e.render();
            error!(path = %crate::material::shown_path(path), error = %problems, "invalid configuration");
            as_written(&problems);
            None
        }
    }
}

/// What stopped the start, as written (one problem a line), after its
/// ERROR event: for a person reading the text log. With `--log-format
/// json` the event alone, whose `error` field already holds every problem:
/// the plain lines after it were lines no JSON collector (Loki, Fluent
/// Bit) parses, in a crash log that matters most. Unless that event is
/// filtered out (`--log-level off`, `RUST_LOG=hotproxy=off`): then the
/// plain lines are all there is, and a process exiting 1 in silence says
/// nothing at all.
fn as_written(problems: &str) {
    if !crate::logging::json() || !error_shown() {
        crate::errln!("{problems}");
    }
}

/// Whether an ERROR event logged here is written (the filter lets it by).
fn error_shown() -> bool {
    tracing::enabled!(tracing::Level::ERROR)
}

/// Why `demo` cannot start, from its own checks: with `--log-format json`
/// as an ERROR event (`error` holding `problems`), as `run` logs its own;
/// else the problems as written, as `demo` prints them.
pub(crate) fn demo_refused(problems: &str) {
    if crate::logging::json() && error_shown() {
        error!(error = %problems, "cannot start the demo");
    } else {
        crate::errln!("{problems}");
    }
}

/// How long the end of the process waits for blocking work still running
/// (a token file's re-read on a volume that hangs) before it exits anyway.
const BLOCKING_AT_EXIT: Duration = Duration::from_secs(1);

/// End the process's work once [`serve`] has returned: first the runtime's
/// tasks, then the access log. What is still open after `shutdown_grace`
/// (a request its upstream never answered) is cut as the runtime drops its
/// tasks, and its line (`499`) is submitted then: the writer stops after,
/// so every request has its line, as Envoy logs each stream it destroys
/// when its drain ends. (Stopped first, the log lost those lines.)
pub fn finish(rt: tokio::runtime::Runtime) {
    // Async tasks are dropped whatever the bound; it only caps the wait
    // for blocking ones, which dropping the runtime waits for unbounded.
    crate::proxy::drain::cut_all();
    rt.shutdown_timeout(BLOCKING_AT_EXIT);
    crate::access_log::shutdown();
}

/// Serve `config` on the current runtime until a termination signal and
/// the drain after it; [`finish`] ends the rest.
pub async fn serve(config: Config) -> ExitCode {
    serve_then(config, || {}).await
}

/// [`serve`], calling `ready` once every listener and the admin API are
/// bound, and not at all when one cannot be: the demo's commands to try
/// come then (printed before, a port already taken had them printed, with
/// "Ctrl-C stops it", above the error of a demo that was exiting).
pub async fn serve_then(config: Config, ready: impl FnOnce()) -> ExitCode {
    // Before any socket: the listeners' connections need the hard limit,
    // not the 1024 systemd and containerd start services with.
    crate::nofile::at_start(&config);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let drain = Arc::new(Drain::new(
        config.runtime.shutdown_grace,
        shutdown_rx.clone(),
    ));
    let grace = config.runtime.shutdown_grace;
    let admin = config.admin.clone();
    // Signals first: the reloader logs "listening" as it starts, and a SIGHUP
    // sent on seeing that line must find a handler, not the default action
    // (which would kill the process).
    // SIGQUIT is nginx's graceful shutdown (systemd units written for
    // nginx send it): it drains as SIGTERM does. SIGUSR2 (nginx's binary
    // upgrade) is said and ignored. Unhandled, either killed the process
    // (SIGQUIT with a core dump), cutting the requests in flight.
    let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        error!("cannot install signal handlers");
        as_written("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    // The admin section's problems before any listener is bound: refused
    // with the rest in one event, never after the listeners accepted
    // (checked after them, a placeholder token left the listeners serving
    // until the exit, and a missing certificate beside it took two failed
    // starts to learn).
    let (tokens, refused) = match admin.as_ref().map(crate::admin::prepare) {
        Some(Ok(tokens)) => (Some(tokens), Vec::new()),
        Some(Err(problems)) => (None, problems),
        None => (None, Vec::new()),
    };
    let handle = match reload::start_refusing(
        config,
        tokio::runtime::Handle::current(),
        shutdown_rx.clone(),
        drain.clone(),
        refused,
    ) {
        Ok(h) => h,
        Err(problem) => {
            error!(error = %problem, "cannot start");
            as_written(&problem.to_string());
            return ExitCode::FAILURE;
        }
    };
    // No tokens with an admin section: `refused` was not empty, and the
    // start above was refused for it.
    if let (Some(admin), Some(tokens)) = (admin, tokens) {
        match crate::admin::start(&admin, tokens, handle.clone(), shutdown_rx.clone()).await {
            Ok(addr) => {
                // A reload's listeners may not take it (admin.bind
                // applies at restart): said before they fail to bind.
                handle.send(Command::Call(Box::new(move |r| r.set_admin_bound(addr))));
                let (shown, port) = admin.bind_shown.bound(admin.bind, addr);
                info!(addr = %shown, port, "admin listening");
            }
            Err(problem) => {
                error!(error = %problem, "cannot start the admin listener");
                as_written(&problem.to_string());
                return ExitCode::FAILURE;
            }
        }
    }
    ready();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = quit.recv() => break,
            _ = hup.recv() => {
                // The admin token files too: SIGHUP re-reads every file.
                // Through the reloader's loop of a watched change, which
                // reads on the blocking pool (a stuck volume must not
                // keep SIGTERM from being heard) and again through a
                // shortage; asked first, so that the re-read of every
                // certificate file does not hold it up.
                // Merged with one still waiting: a burst is one re-read.
                handle.sighup(true);
            }
            // logrotate: the access log is reopened at its configured path.
            _ = usr1.recv() => crate::access_log::reopen(),
            _ = usr2.recv() => usr2_ignored(),
        }
    }
    info!(
        open_connections = drain.open(),
        grace_secs = grace.as_secs_f64(),
        "shutting down: no new connections, draining open ones"
    );
    let _ = shutdown_tx.send(true);
    handle.send(Command::Call(Box::new(|r| r.release_sockets())));
    // A second SIGTERM/SIGINT/SIGQUIT ends the drain at once (Caddy, Envoy): an
    // operator's second Ctrl-C must not wait out the whole grace. What is
    // cut then is cut as when the grace ends: by `finish`, each request
    // with its access-log line. SIGHUP and SIGUSR1 are still answered
    // while it lasts: logrotate's SIGUSR1 must reopen the access log the
    // drain's lines go to, and a SIGHUP gets its "SIGHUP: done" line (the
    // reloader ignores the configuration then, and re-reads certificate
    // files for the connections that drain). Unanswered, both were
    // swallowed: the drain's lines went to the rotated file.
    let idle = drain.wait_idle();
    let grace_ends = tokio::time::sleep(grace);
    tokio::pin!(idle, grace_ends);
    loop {
        tokio::select! {
            // As a timeout would: the drain's end first, then the grace's.
            biased;
            _ = &mut idle => break,
            _ = &mut grace_ends => {
                warn!(
                    open_connections = drain.open(),
                    "shutdown grace elapsed; closing remaining connections"
                );
                break;
            }
            _ = term.recv() => break second_signal(&drain),
            _ = int.recv() => break second_signal(&drain),
            _ = quit.recv() => break second_signal(&drain),
            // The admin API refuses every call now: its token files are
            // not re-read.
            _ = hup.recv() => handle.sighup(false),
            _ = usr1.recv() => crate::access_log::reopen(),
            _ = usr2.recv() => usr2_ignored(),
        }
    }
    handle.send(Command::Stop);
    info!("stopped");
    ExitCode::SUCCESS
}

/// A termination signal during the drain: say what is cut.
fn second_signal(drain: &Drain) {
    warn!(
        open_connections = drain.open(),
        "second termination signal; closing remaining connections now"
    );
}

/// SIGUSR2: nginx's binary upgrade, which hotproxy does not do; said, not
/// acted on (its default action killed the process).
fn usr2_ignored() {
    warn!("SIGUSR2: not used by hotproxy; ignored");
}
