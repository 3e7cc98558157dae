//! `agentapi-proxy helpers ...`: small tools the startup script and operators call.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use crate::sessions::validate;

#[derive(Debug, clap::Subcommand)]
pub enum HelpersCommand {
    /// Clone (or update) a GitHub repository for a session. A `GITHUB_TOKEN` in the
    /// environment is handed to git through a credential helper: never in argv, never in
    /// `.git/config`.
    InitGithubRepository(InitRepositoryArgs),
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
    #[arg(long)]
    pub user_id: String,
    #[arg(long, default_value = "user")]
    pub role: String,
    /// Comma-separated permissions [default: session:create,session:list,session:delete,session:access].
    #[arg(long, value_delimiter = ',')]
    pub permissions: Vec<String>,
    #[arg(long, default_value_t = 365)]
    pub expiry_days: u32,
    #[arg(long, default_value = "ap")]
    pub key_prefix: String,
    /// Store the key itself instead of its hash (as the Go proxy did).
    #[arg(long)]
    pub plaintext: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InitRepositoryArgs {
    /// `owner/repo`.
    #[arg(long)]
    pub repo_fullname: String,
    /// Where the working copy goes.
    #[arg(long)]
    pub clone_dir: PathBuf,
    /// Git host (github.com, or a GitHub Enterprise host).
    #[arg(long, default_value = "github.com")]
    pub host: String,
    /// Accepted for compatibility with the Go proxy; there is no config to miss here.
    #[arg(long)]
    pub ignore_missing_config: bool,
}

/// Reads the token from the environment at the moment git asks; the token itself is never
/// part of any command line.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get && echo username=x-access-token && echo \"password=$GITHUB_TOKEN\"; }; f";

pub fn main(command: HelpersCommand) -> ExitCode {
    match command {
        HelpersCommand::InitGithubRepository(args) => init_repository(&args),
        HelpersCommand::GenerateToken(args) => report(super::keys_file::generate_token(&args)),
        HelpersCommand::HashKey => report(super::keys_file::hash_stdin()),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(super::EXIT_USAGE)
        }
    }
}

fn init_repository(args: &InitRepositoryArgs) -> ExitCode {
    let hosts = [args.host.clone()];
    if let Err(error) = validate::repository(&args.repo_fullname, &hosts) {
        eprintln!("error: {error}");
        return ExitCode::from(super::EXIT_USAGE);
    }
    let url = format!("https://{}/{}.git", args.host, args.repo_fullname);
    let mut git = Command::new("git");
    git.env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null());
    if std::env::var_os("GITHUB_TOKEN").is_some() {
        git.arg("-c").arg(format!("credential.helper={CREDENTIAL_HELPER}"));
    }
    if args.clone_dir.join(".git").is_dir() {
        eprintln!("updating {} in {}", args.repo_fullname, args.clone_dir.display());
        git.arg("-C").arg(&args.clone_dir).args(["pull", "--ff-only"]);
    } else {
        eprintln!("cloning {} into {}", args.repo_fullname, args.clone_dir.display());
        git.args(["clone", "--", &url]).arg(&args.clone_dir);
    }
    match git.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("error: git failed for {} ({status})", args.repo_fullname);
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: cannot run git: {error}");
            ExitCode::FAILURE
        }
    }
}
