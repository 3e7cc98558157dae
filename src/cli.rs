//! Command-line definitions (clap) and dispatch to one module per command family.

mod claude;
mod client;
mod completions;
mod config_check;
mod helpers;
mod keys_file;
mod log_lines;
mod logging;
mod migrate_store;
mod repository;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use logging::LogFormat;

/// Exit code for usage and configuration errors (config.md).
pub const EXIT_USAGE: u8 = 2;

/// The end of `server --help`: where the configuration is described, and the variables most
/// often set.
const SERVER_AFTER_HELP: &str = "\
Configuration: ./config.json (or -c FILE), then AGENTAPI_PROXY_* environment variables, then
the flags above. Every key, its default and its variable: docs/configuration.md
(`agentapi-proxy config check` prints the effective configuration, secrets redacted).

Most used variables:
  AGENTAPI_PROXY_SERVER__PORT, AGENTAPI_PROXY_SERVER__BIND   where to listen
  AGENTAPI_PROXY_DATA_DIR                                     sessions, database and logs
  AGENTAPI_PROXY_AGENT__SERVER                                the agent server (builtin:echo for a demo)
  AGENTAPI_PROXY_AUTH__ENABLED, AGENTAPI_PROXY_AUTH__STATIC__KEYS_FILE   API keys
  AGENTAPI_PROXY_SESSION__MAX_SESSIONS                        how many agents at once
  RUST_LOG                                                    log filter (e.g. debug)";

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
    #[command(after_help = SERVER_AFTER_HELP)]
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
    /// Print a shell completion script (install: see docs/getting-started.md).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) for `man -l -` or a man1 directory.
    Man,
    /// Copy the SQLite store (sessions, profiles, OAuth sessions) into an empty PostgreSQL
    /// database, with the server stopped.
    #[command(name = "migrate-store")]
    MigrateStore(migrate_store::MigrateStoreArgs),
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
        Command::Completions { shell } => completions::completions(shell),
        Command::Man => completions::man(),
        Command::MigrateStore(args) => migrate_store::main(args),
        Command::LogKeeper(args) => crate::sessions::local::log_keeper::main(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every flag and argument of every command says what it is for in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            for argument in command.get_arguments() {
                let builtin = matches!(argument.get_id().as_str(), "help" | "version");
                if !builtin && !argument.is_hide_set() && argument.get_help().is_none() {
                    missing.push(format!("{path} --{}", argument.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
