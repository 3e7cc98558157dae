//! The server's side of log keepers: starting one per agent ([`Pending`], [`spawn`]),
//! recording it (pid and start time in `keeper.pid` beside the log) and finding it again,
//! also after a restart ([`finish`]): to wait until the log is complete (a failed start's
//! tail) and to be sure it is gone before a new keeper starts or the logs are removed.
//!
//! The keeper starts once the agent's readiness is known, or 50 ms after the spawn when
//! that takes longer; until then the pipe holds the output, and at that moment the server
//! moves it to the log itself, so the answer to a quick start never comes before the
//! agent's first lines are readable (a slower agent's keeper is already writing).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;

use super::{agent_log, nofollow, procfs};

/// The keeper's record beside the log: `<pid> <start ticks>`.
const RECORD: &str = "keeper.pid";
/// Bytes moved from the pipe to the log at a time.
const CHUNK: usize = 64 * 1024;
/// After a kill, how long the keeper may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(1);

/// Starts a keeper for the log directory `dir` reading `output` (the agent's end of the
/// pipe stays with the agent) and records it; returns its pid.
pub fn spawn(program: &Path, dir: &Path, max_bytes: u64, output: OwnedFd) -> std::io::Result<i32> {
    let mut command = Command::new(program);
    command
        .arg("log-keeper")
        .arg("--dir")
        .arg(dir)
        .arg("--max-bytes")
        .arg(max_bytes.to_string())
        .env_clear()
        .current_dir(dir)
        .stdin(output)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let child = command.spawn()?;
    let pid = child.id() as i32;
    // The reaper collects it; dropping `Child` neither waits nor kills.
    drop(child);
    if let Err(error) = record(dir, pid) {
        // It runs (and ends at its agent's end) all the same; only waiting for it is lost.
        tracing::warn!(%error, pid, "could not record a log keeper");
    }
    Ok(pid)
}

fn record(dir: &Path, pid: i32) -> std::io::Result<()> {
    let start_ticks = procfs::stat(pid).map_or(0, |stat| stat.start_ticks);
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC;
    let mut record = nofollow::open_file_at(nofollow::open_dir(dir)?, RECORD, flags, 0o600)?;
    std::io::Write::write_all(&mut record, format!("{pid} {start_ticks}\n").as_bytes())
}

/// A session's output pipe before its keeper runs. The keeper is not started while the agent
/// boots (a new process competing for the CPU then made starts ~20 % slower on a busy
/// host): the pipe holds 64 KiB meanwhile, and the keeper starts once readiness is known or
/// after [`BOOT_WAIT`], whichever comes first.
pub struct Pending {
    task: tokio::task::JoinHandle<()>,
    known: tokio::sync::oneshot::Sender<Known>,
}

/// Readiness is known: drain the pipe into the log now, say so, start the keeper.
struct Known {
    drained: tokio::sync::oneshot::Sender<()>,
    /// The start succeeded: the keeper may start just after the answer went out.
    succeeded: bool,
}

/// Longest time a booting agent's output waits in its pipe for the log keeper.
const BOOT_WAIT: Duration = Duration::from_millis(50);
/// After a successful start, how long the keeper waits so the answer goes out first.
const AFTER_ANSWER: Duration = Duration::from_millis(10);
/// Most bytes the server moves from the pipe to the log itself (a pipe holds 64 KiB).
const DRAIN_LIMIT: usize = 128 * 1024;

impl Pending {
    pub fn new(
        program: &Path,
        dir: &Path,
        max_bytes: u64,
        reaper: &super::reaper::Reaper,
        output: OwnedFd,
    ) -> Self {
        let (program, dir, reaper) = (program.to_path_buf(), dir.to_path_buf(), reaper.clone());
        let (known, told) = tokio::sync::oneshot::channel::<Known>();
        let task = tokio::spawn(async move {
            let known = tokio::select! {
                Ok(known) = told => Some(known),
                () = tokio::time::sleep(BOOT_WAIT) => None,
            };
            let succeeded = known.as_ref().is_some_and(|known| known.succeeded);
            // Never blocks, and at most a pipe's worth of bytes: done in place.
            if let Err(error) = drain(&dir, max_bytes, &output) {
                tracing::warn!(%error, "could not move an agent's first output to its log");
            }
            if let Some(known) = known {
                let _ = known.drained.send(());
            }
            if succeeded {
                tokio::time::sleep(AFTER_ANSWER).await;
            }
            let start = move || spawn(&program, &dir, max_bytes, output);
            match tokio::task::spawn_blocking(start).await {
                Ok(Ok(pid)) => drop(reaper.watch(pid)),
                // Deleted right after its start: nothing left to keep.
                Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(%error, "no log directory left for a log keeper");
                }
                Ok(Err(error)) => tracing::error!(%error, "could not start a log keeper"),
                Err(error) => tracing::error!(%error, "the log keeper's spawning thread failed"),
            }
        });
        Self { task, known }
    }

    /// Returns once what the agent wrote so far is in its log; the handle resolves once the
    /// keeper runs (a failed start awaits it before reading the log's tail).
    pub async fn readiness_known(self, succeeded: bool) -> tokio::task::JoinHandle<()> {
        let (drained, done) = tokio::sync::oneshot::channel();
        if self.known.send(Known { drained, succeeded }).is_ok() {
            let _ = done.await;
        }
        self.task
    }
}

/// Moves what waits in the pipe `output` to the log in `dir`, without blocking.
fn drain(dir: &Path, max_bytes: u64, output: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(output, FcntlArg::F_GETFL)?);
    fcntl(output, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let moved = (|| {
        let mut log = agent_log::Writer::open(nofollow::open_dir(dir)?, max_bytes)?;
        let mut buffer = vec![0; CHUNK];
        let mut total = 0;
        while total < DRAIN_LIMIT {
            match nix::unistd::read(output, &mut buffer) {
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => break,
                Ok(read) => {
                    log.write(&buffer[..read])?;
                    total += read;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(())
    })();
    // The keeper reads the same pipe and expects blocking reads.
    fcntl(output, FcntlArg::F_SETFL(flags))?;
    moved
}

/// The recorded keeper of `dir` while it still runs (same pid and start time).
fn running(dir: &Path) -> Option<i32> {
    let file = nofollow::read_regular_at(nofollow::open_dir(dir).ok()?, RECORD).ok()??;
    let mut text = String::new();
    (&file).take(64).read_to_string(&mut text).ok()?;
    let (pid, start_ticks) = text.trim().split_once(' ')?;
    let (pid, start_ticks): (i32, u64) = (pid.parse().ok()?, start_ticks.parse().ok()?);
    let alive = |pid| {
        procfs::stat(pid).is_some_and(|stat| !stat.is_zombie() && stat.start_ticks == start_ticks)
    };
    (pid > 1 && alive(pid)).then_some(pid)
}

/// Waits until the keeper of `dir` has written everything and exited (it does once nothing
/// holds the agent's end of the pipe); kills it when that takes longer than `within` (a
/// process that escaped the agent's group may still hold it). Immediate when none runs.
pub async fn finish(dir: &Path, within: Duration) {
    let mut give_up = Instant::now() + within;
    let mut killed = false;
    let mut pause = Duration::from_millis(1);
    while let Some(pid) = running(dir) {
        if Instant::now() >= give_up {
            if killed {
                tracing::error!(pid, "a log keeper survived SIGKILL");
                return;
            }
            tracing::warn!(pid, "the log keeper did not finish in time; killing it");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            killed = true;
            give_up = Instant::now() + KILL_WAIT;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
