//! Command-line definitions (clap) and dispatch to one module per command family.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// agentapi-proxy: run many coding agents behind one authenticated front door.
#[derive(Debug, Parser)]
#[command(name = "agentapi-proxy", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The built-in agentapi-compatible echo agent (for demos and tests).
    #[command(name = "echo-agent", subcommand)]
    EchoAgent(EchoAgentCommand),
}

#[derive(Debug, Subcommand)]
pub enum EchoAgentCommand {
    /// Serve the echo agent over HTTP, like `agentapi server`.
    Server(crate::echo_agent::ServerArgs),
}

/// Parses the process arguments and runs the chosen command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::EchoAgent(EchoAgentCommand::Server(args)) => crate::echo_agent::main(args),
    }
}
