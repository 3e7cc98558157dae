//! `agentapi-proxy completions SHELL` and `agentapi-proxy man`: shell completion scripts and
//! the manual page, generated from the same clap definitions as the command line itself.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;

const BIN_NAME: &str = "agentapi-proxy";

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN_NAME, &mut script);
    if shell == clap_complete::Shell::Bash {
        script = fix_bash_names(&String::from_utf8_lossy(&script)).into_bytes();
    }
    match std::io::stdout().write_all(&script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write the completion script: {error}");
            ExitCode::FAILURE
        }
    }
}

/// clap_complete (4.6) names the bash cases of a binary with a `-` in its name differently
/// from the state its loop computes (`agentapi__subcmd__proxy__...` against
/// `agentapi__proxy__...`), so no subcommand would ever complete; one spelling fixes that.
fn fix_bash_names(script: &str) -> String {
    script.replace("agentapi__subcmd__proxy", "agentapi__proxy")
}

/// Prints the manual page (roff, section 1) on standard output.
pub fn man() -> ExitCode {
    let mut page = Vec::new();
    if let Err(error) = clap_mangen::Man::new(Cli::command()).render(&mut page) {
        eprintln!("error: cannot render the manual page: {error}");
        return ExitCode::FAILURE;
    }
    match std::io::stdout().write_all(&page) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: cannot write the manual page: {error}");
            ExitCode::FAILURE
        }
    }
}
