//! `agentapi-proxy helpers ...`: small tools the startup script and operators call.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum HelpersCommand {
    /// Clone (or update) a GitHub repository for a session. A `GITHUB_TOKEN` in the
    /// environment is handed to git through a credential helper: never in argv, never in
    /// `.git/config`.
    InitGithubRepository(super::repository::InitRepositoryArgs),
    /// Pre-accept Claude Code's first-run dialogs for the directory in `CLAUDE_DIR` (or the
    /// home directory), for the current working directory.
    SetupClaudeCode,
    /// Create a random API key, print it once, and append its Argon2id hash (or, with
    /// --plaintext, the key) to the keys file.
    GenerateToken(GenerateTokenArgs),
    /// Read a key on stdin and print its Argon2id `key_hash`, to replace a plaintext entry.
    HashKey,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GenerateTokenArgs {
    /// The keys file to append to (created 0600 when missing).
    #[arg(long)]
    pub output_path: PathBuf,
    /// The user the key signs in as.
    #[arg(long)]
    pub user_id: String,
    /// The key's role (`admin` sees and controls every user's sessions).
    #[arg(long, default_value = "user")]
    pub role: String,
    /// Comma-separated permissions [default: session:create,session:list,session:delete,session:access].
    #[arg(long, value_delimiter = ',')]
    pub permissions: Vec<String>,
    /// Days until the key expires.
    #[arg(long, default_value_t = 365)]
    pub expiry_days: u32,
    /// The key starts with this and `_`.
    #[arg(long, default_value = "ap")]
    pub key_prefix: String,
    /// Store the key itself instead of its hash (as the Go proxy did).
    #[arg(long)]
    pub plaintext: bool,
}

pub fn main(command: HelpersCommand) -> ExitCode {
    match command {
        HelpersCommand::InitGithubRepository(args) => super::repository::init(&args),
        HelpersCommand::SetupClaudeCode => report(super::claude::setup()),
        HelpersCommand::GenerateToken(args) => report(super::keys_file::generate_token(&args)),
        HelpersCommand::HashKey => report(super::keys_file::hash_stdin()),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
