//! Log output for the server: human-readable on a terminal, JSON lines otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use super::log_lines::LogLines;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human on a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the level chosen by `-v`.
pub fn init(verbose: bool, format: LogFormat) {
    let default_level = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},hyper=info,h2=info")));
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Human => false,
        LogFormat::Json => true,
    };
    // A failed write (stderr a pipe whose reader is gone) must not turn into `eprintln!`,
    // which panics on that same stderr — in whichever task was logging.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let lines = if json { LogLines::Json } else { LogLines::Human };
    let installed = builder.event_format(lines).try_init();
    if installed.is_err() {
        eprintln!("logging was already initialised");
    }
}
