//! Log output: tracing to stderr, as text or one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the global subscriber. JSON events are flattened so the fields
/// (`listener`, `entry`, `upstream`, `path`, `fingerprint`, `error`) sit at
/// the top level of each line, next to `message`.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        // rustls warns once per connection about what any client may send
        // (an IP address as SNI, as wrk does): a log flood, not news.
        .or_else(|_| EnvFilter::try_new(format!("{level},rustls=error")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into a file,
        // a pipe or a container log collector.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
