//! `helpers init-github-repository`: clone or update a session's repository. A
//! `GITHUB_TOKEN` in the environment reaches git only through a credential helper that
//! reads it from the environment when asked: never in argv (`ps`), never in `.git/config`.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use crate::sessions::validate;

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
    /// URL scheme; `http` only for local mirrors and tests.
    #[arg(long, default_value = "https", value_parser = ["https", "http"])]
    pub scheme: String,
    /// Accepted for compatibility with the Go proxy; there is no config to miss here.
    #[arg(long)]
    pub ignore_missing_config: bool,
}

/// Answers git's `get` with the token from the environment at that moment.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get && echo username=x-access-token && echo \"password=$GITHUB_TOKEN\"; }; f";

pub fn init(args: &InitRepositoryArgs) -> ExitCode {
    let hosts = [args.host.clone()];
    if let Err(error) = validate::repository(&args.repo_fullname, &hosts) {
        eprintln!("error: {error}");
        return ExitCode::from(super::EXIT_USAGE);
    }
    let url = format!("{}://{}/{}.git", args.scheme, args.host, args.repo_fullname);
    let mut git = Command::new("git");
    git.env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null());
    // Only our helper: a `store` helper from the user's config would write the token to disk.
    git.args(["-c", "credential.helper="]);
    if std::env::var_os("GITHUB_TOKEN").is_some() {
        git.arg("-c").arg(format!("credential.helper={CREDENTIAL_HELPER}"));
    }
    let updating = args.clone_dir.join(".git").is_dir();
    if updating {
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
