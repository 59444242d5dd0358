//! Command line only: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hotproxy::logging::{LogFormat, init_logging};

// Off by default: see README, Performance, for the measurement deciding it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hotproxy",
    version,
    about = "TLS reverse proxy that serves new certificates the moment they land on disk"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGTERM/SIGINT/SIGQUIT; SIGHUP re-reads the configuration and every file.
    Run {
        /// The configuration file [default: $HOTPROXY_CONFIG, else config.yaml]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// error, warn, info, debug, trace, off, or tracing directives.
        #[arg(long, default_value = "info", value_parser = hotproxy::logging::parse_level)]
        log_level: String,
    },
    /// Validate the configuration and every certificate it names (like `nginx -t`).
    Check {
        /// The configuration file [default: $HOTPROXY_CONFIG, else config.yaml]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Certificate tools.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Run the proxy from ./config.yaml (else the source tree's) in front of a built-in mTLS echo backend.
    Demo {
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// As for `run`: error, warn, info, debug, trace, off, or tracing directives.
        #[arg(long, default_value = "info", value_parser = hotproxy::logging::parse_level)]
        log_level: String,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Print subject, SANs, validity and fingerprint of every certificate in PEM files.
    Inspect {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a throwaway CA, server pair and client pair (re-running re-issues the pairs).
    DevPki {
        #[arg(long)]
        out: PathBuf,
        /// DNS name or IP for the server certificate (repeatable; default localhost, 127.0.0.1).
        #[arg(long = "name")]
        names: Vec<String>,
        /// How long the server and client pairs are valid (the CA: 10 years).
        #[arg(long, default_value_t = hotproxy::devpki::DEFAULT_DAYS)]
        days: u32,
    },
}

/// `--config`, else `$HOTPROXY_CONFIG`, else `./config.yaml`. An empty
/// variable counts as unset (`${HOTPROXY_CONFIG:-config.yaml}`, kubectl's
/// `KUBECONFIG`): clap's own `env` took "" as the value and refused it as
/// "a value is required for '--config'", naming a flag nobody gave.
fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("HOTPROXY_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from("config.yaml"))
}

/// A `RUST_LOG` (or `--log-level`) refused: exit 2, as clap refuses a bad
/// `--log-level`.
fn refused_logging(problem: &str) -> ExitCode {
    hotproxy::errln!("error: {problem}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let code = command(Cli::parse());
    // Queued log lines reach stderr before the process exits.
    hotproxy::log_writer::flush();
    code
}

fn command(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run {
            config,
            log_format,
            log_level,
        } => {
            if let Err(e) = init_logging(log_format, &log_level) {
                return refused_logging(&e);
            }
            hotproxy::server::run(&config_path(config))
        }
        Command::Check { config } => hotproxy::check::run(&config_path(config)),
        Command::Certs {
            command: CertsCommand::Inspect { files },
        } => hotproxy::check::inspect(&files),
        Command::Certs {
            command: CertsCommand::DevPki { out, names, days },
        } => match hotproxy::devpki::write_for(&out, &names, days) {
            Ok(pki) => {
                hotproxy::outln!("{pki}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                hotproxy::errln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Demo {
            log_format,
            log_level,
        } => {
            if let Err(e) = init_logging(log_format, &log_level) {
                return refused_logging(&e);
            }
            hotproxy::demo::run()
        }
    }
}
