//! The log keeper process: a small mode of this executable (`agentapi-proxy log-keeper`,
//! hidden), started beside each agent as the server's user in its own process group
//! (`keepers` starts and finds them). It reads the agent's stdout and stderr (one pipe)
//! until every writer is gone and writes them to the session's capped log
//! ([`agent_log::Writer`]). The agent never holds the log file, and the keeper outlives the
//! server, so the agent never gets `SIGPIPE` when the server goes away.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};

use super::{agent_log, nofollow};

/// Bytes moved from the pipe to the log at a time.
const CHUNK: usize = 64 * 1024;

/// `agentapi-proxy log-keeper` (started by the server, not by people).
#[derive(Debug, clap::Args)]
pub struct KeeperArgs {
    /// The session's log directory (`<data_dir>/logs/<id>`).
    #[arg(long)]
    pub dir: PathBuf,
    /// `agent.log_max_bytes`.
    #[arg(long)]
    pub max_bytes: u64,
}

impl KeeperArgs {
    /// The arguments in exactly the form the server passes them, else `None` (then clap
    /// parses the command line as usual).
    pub fn from_server() -> Option<Self> {
        Self::from_args(std::env::args_os().skip(1))
    }

    fn from_args(args: impl Iterator<Item = OsString>) -> Option<Self> {
        match args.collect::<Vec<_>>().as_slice() {
            [mode, dir_flag, dir, max_flag, max_bytes]
                if mode == "log-keeper" && dir_flag == "--dir" && max_flag == "--max-bytes" =>
            {
                Some(Self { dir: PathBuf::from(dir), max_bytes: max_bytes.to_str()?.parse().ok()? })
            }
            _ => None,
        }
    }
}

/// The keeper process: stdin to the log until end of file.
pub fn main(args: KeeperArgs) -> ExitCode {
    // A terminal's hangup or Ctrl-C is meant for the server, not for the agent's output.
    let mut ignored = SigSet::empty();
    for signal in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE] {
        ignored.add(signal);
    }
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ignored), None);
    // Without its log the keeper still drains the pipe, so the agent is never blocked.
    let mut log = nofollow::open_dir(&args.dir)
        .and_then(|dir| agent_log::Writer::open(dir, args.max_bytes))
        .ok();
    let mut input = std::io::stdin().lock();
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return ExitCode::FAILURE,
        };
        if let Some(log) = log.as_mut() {
            // Nowhere to report a full disk; what does not fit is dropped.
            let _ = log.write(&buffer[..read]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = OsString> {
        list.iter().map(OsString::from).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn only_the_servers_exact_form_skips_clap() {
        let parsed =
            KeeperArgs::from_args(args(&["log-keeper", "--dir", "/d", "--max-bytes", "7"]))
                .expect("the server's form");
        assert_eq!((parsed.dir, parsed.max_bytes), (PathBuf::from("/d"), 7));
        for other in [
            &["log-keeper", "--max-bytes", "7", "--dir", "/d"][..],
            &["log-keeper", "--dir", "/d", "--max-bytes", "x"],
            &["log-keeper", "--dir", "/d", "--max-bytes", "7", "extra"],
            &["server", "--dir", "/d", "--max-bytes", "7"],
        ] {
            assert!(KeeperArgs::from_args(args(other)).is_none(), "{other:?}");
        }
    }
}
