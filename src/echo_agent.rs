//! The built-in agentapi-compatible echo agent (`agentapi-proxy echo-agent server`).

use std::process::ExitCode;

/// Flags of `echo-agent server`: agentapi's own, accepted so the proxy can pass them unchanged.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Port to listen on (0 = let the system pick; the bound address is printed).
    #[arg(short = 'p', long, default_value_t = 3284)]
    pub port: u16,
}

/// Runs the echo agent until it is told to stop; returns the process exit code.
pub fn main(args: ServerArgs) -> ExitCode {
    let _ = args;
    ExitCode::FAILURE
}
