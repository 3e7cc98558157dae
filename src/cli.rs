//! Command-line definitions (clap) and dispatch to one module per command family.

mod claude;
mod client;
mod config_check;
mod helpers;
mod keys_file;
mod log_lines;
mod logging;
mod repository;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use logging::LogFormat;

/// Exit code for usage and configuration errors (config.md).
pub const EXIT_USAGE: u8 = 2;

/// agentapi-proxy: run many coding agents behind one authenticated front door.
#[derive(Debug, Parser)]
#[command(name = "agentapi-proxy", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy server.
    Server(server::ServerArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Use a running proxy from the shell.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Tools for startup scripts and operators.
    #[command(subcommand)]
    Helpers(helpers::HelpersCommand),
    /// The built-in agentapi-compatible echo agent (for demos and tests).
    #[command(name = "echo-agent", subcommand)]
    EchoAgent(EchoAgentCommand),
    /// Internal: writes one agent's output to its capped log (started by the server).
    #[command(name = "log-keeper", hide = true)]
    LogKeeper(crate::sessions::local::log_keeper::KeeperArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it as JSON with every secret redacted.
    Check {
        /// Configuration file (default: ./config.json when present).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EchoAgentCommand {
    /// Serve the echo agent over HTTP, like `agentapi server`.
    Server(crate::echo_agent::ServerArgs),
}

/// Parses the process arguments and runs the chosen command.
pub fn main() -> ExitCode {
    // Started beside every agent: the exact form the server uses skips building the whole
    // command tree (most of a start's cost in a debug build).
    if let Some(args) = crate::sessions::local::log_keeper::KeeperArgs::from_server() {
        return crate::sessions::local::log_keeper::main(args);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Server(args) => server::main(args),
        Command::Config(ConfigCommand::Check { config }) => config_check::main(config),
        Command::Client(command) => client::main(command),
        Command::Helpers(command) => helpers::main(command),
        Command::EchoAgent(EchoAgentCommand::Server(args)) => crate::echo_agent::main(args),
        Command::LogKeeper(args) => crate::sessions::local::log_keeper::main(args),
    }
}
