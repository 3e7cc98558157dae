//! Starting one agent: reserve a port, spawn it in its own process group (through the
//! startup script when that has work to do), and poll `/status` until our own child
//! answers — retrying on another port when the port turns out to be taken (a stranger is
//! never sent a request), killing the group when it fails, never answers, or already
//! listens on other ports of the agent range.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::ownership::{self, Agent, PortOwner};
use super::reference::LocalRef;
use super::{LocalBackend, isolation, keepers, procfs};
use crate::sessions::backend::{AgentSpec, Endpoint, Exit, LaunchError, LaunchObserver, Launched};

/// Attempts on different ports before giving up on a port conflict.
const PORT_ATTEMPTS: usize = 3;
/// How long a log keeper may take to write the rest of an ended agent's output.
const KEEPER_WAIT: Duration = Duration::from_secs(2);
/// Log lines returned to the session's owner when its agent fails to start.
const FAILURE_LOG_LINES: usize = 20;
/// How long readiness is polled at the fastest rate.
const FAST_POLLING: Duration = Duration::from_millis(100);
/// How long readiness is first probed with plain connects, and how often.
const CONNECT_PROBING: Duration = Duration::from_millis(20);
const CONNECT_PROBE_PAUSE: Duration = Duration::from_millis(1);
/// Longest time one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

enum Readiness {
    Ready,
    /// Something that is not the session listens where connections to the port land.
    Stranger,
    Exited(Exit),
    TimedOut,
}

pub(super) async fn launch(
    backend: &LocalBackend,
    spec: &AgentSpec,
    port_hint: Option<u16>,
    observer: &dyn LaunchObserver,
) -> Result<Launched, LaunchError> {
    let dir = backend.session_dir(&spec.session_id);
    let uid = match &backend.uids {
        Some(pool) => Some(pool.acquire(&spec.session_id).ok_or_else(|| {
            LaunchError::Internal(anyhow::anyhow!("every uid of agent.uid_range is in use"))
        })?),
        None => None,
    };
    backend.isolation.hand_over(&dir, uid).map_err(LaunchError::Internal)?;
    let logs = backend.prepare_log_dir(&spec.session_id).map_err(LaunchError::Internal)?;
    let deadline = Instant::now() + backend.ready_timeout;
    let mut hint = port_hint;
    let mut taken = Vec::with_capacity(PORT_ATTEMPTS);
    for attempt in 1..=PORT_ATTEMPTS {
        // One keeper per log at a time: the previous run's (a restart) must be done.
        keepers::finish(&logs, KEEPER_WAIT).await;
        let port = backend.ports.reserve(hint.take(), &taken).ok_or(LaunchError::NoPort)?;
        taken.push(port);
        let mut guard = GroupGuard { backend, group: None, port: Some(port) };
        let (pid, mut exited, output) =
            spawn(backend, spec, port, &dir, uid).map_err(LaunchError::Internal)?;
        guard.group = Some(pid);
        let process =
            LocalRef { pid, start_ticks: procfs::stat(pid).map(|stat| stat.start_ticks), port };
        let agent = process.handle().map_err(LaunchError::Internal)?;
        let keeper = keepers::Pending::new(
            &backend.proxy_bin,
            &logs,
            backend.agent.log_max_bytes,
            &backend.reaper,
            output,
        );
        // Recording the process (a durable write) and polling for readiness overlap; both
        // finish before the launch reports anything, so the store never sees `active` first.
        let (_, readiness) = tokio::join!(
            observer.spawned(&agent),
            wait_until_ready(backend, &agent.endpoint, pid, &mut exited, deadline)
        );
        // What the agent wrote until now is in its log before anyone hears of the start.
        let keeper = keeper.readiness_known(matches!(readiness, Readiness::Ready)).await;
        let last_attempt = attempt == PORT_ATTEMPTS;
        match readiness {
            Readiness::Ready => {
                let squatted =
                    ownership::leader_squats(Agent { group: pid, port }, backend.ports.range());
                if !squatted.is_empty() {
                    tracing::warn!(
                        port,
                        ?squatted,
                        "the agent listens on other ports of the range; stopping it"
                    );
                    let _ = keeper.await;
                    backend.kill_group(pid).await;
                    let tail = log_tail(backend, &spec.session_id).await;
                    let mut details = failure_details(None, &tail);
                    details["squatted_ports"] = json!(squatted);
                    return Err(LaunchError::PortSquatting { details });
                }
                guard.disarm();
                return Ok(Launched { agent, exited });
            }
            Readiness::Stranger => {
                // Dropping the guard releases the port; `taken` keeps this start off it.
                tracing::warn!(
                    port,
                    attempt,
                    "another process listens on the agent's port; not talking to it"
                );
                let _ = keeper.await;
                backend.kill_group(pid).await;
                if last_attempt {
                    return Err(LaunchError::PortTaken);
                }
            }
            Readiness::Exited(exit) => {
                let _ = keeper.await;
                backend.kill_group(pid).await;
                let tail = log_tail(backend, &spec.session_id).await;
                if tail.to_ascii_lowercase().contains("address already in use") && !last_attempt {
                    tracing::warn!(port, "agent found its port taken; retrying on another");
                    continue;
                }
                return Err(LaunchError::Exited {
                    exit,
                    details: failure_details(Some(exit), &tail),
                });
            }
            Readiness::TimedOut => {
                let _ = keeper.await;
                backend.kill_group(pid).await;
                let tail = log_tail(backend, &spec.session_id).await;
                return Err(LaunchError::Timeout { details: failure_details(None, &tail) });
            }
        }
    }
    Err(LaunchError::PortTaken)
}

/// Spawns the agent writing to a new pipe; returns its pid, its exit, and the pipe's
/// reading end for the log keeper.
fn spawn(
    backend: &LocalBackend,
    spec: &AgentSpec,
    port: u16,
    dir: &Path,
    uid: Option<u32>,
) -> anyhow::Result<(i32, oneshot::Receiver<Exit>, OwnedFd)> {
    use anyhow::Context;
    // Close-on-exec: no other session's agent, spawned meanwhile, may inherit either end.
    let (output, log) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .context("while creating the agent's output pipe")?;
    let place = backend.placement(port, dir);
    let argv = backend.command.argv(spec, &place);
    let mut command = if backend.command.needs_script(spec) {
        let mut command = backend.isolation.command(&backend.shell, uid);
        command.arg("--noprofile").arg("--norc").arg(&backend.script).args(&argv);
        command
    } else {
        let (program, args) = argv.split_first().context("an empty agent command line")?;
        let program = isolation::locate(program, &backend.path_env);
        let mut command = backend.isolation.command(&program, uid);
        command.args(args);
        command
    };
    command.env_clear().envs(backend.command.environment(spec, &place)).current_dir(dir);
    let entry = backend.containment.prepare(&spec.session_id)?;
    let pid = entry.spawn(command, log, backend.isolation.credentials(uid))?;
    drop(entry);
    backend.containment.attach(&spec.session_id, pid, uid);
    // The reaper owns the exit status from here.
    let exited = backend.reaper.watch(pid);
    tracing::info!(session_id = %spec.session_id, pid, port, "agent spawned");
    Ok((pid, exited, output))
}

/// Waits until the agent answers `/status` like agentapi, exits, or the deadline passes.
/// For the first [`CONNECT_PROBING`] a plain connect every millisecond tells when the agent
/// listens (a refused connect costs next to nothing), and `/status` is asked only then;
/// after that `/status` is polled every 5 ms until [`FAST_POLLING`], then doubling to 200 ms.
/// `/status` is only ever sent once every listener a connection to the port can reach is
/// the session's; a stranger's listener ends the wait at once.
async fn wait_until_ready(
    backend: &LocalBackend,
    endpoint: &Endpoint,
    group: i32,
    exited: &mut oneshot::Receiver<Exit>,
    deadline: Instant,
) -> Readiness {
    let port = endpoint.port();
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Ok(exit) = exited.try_recv() {
            return Readiness::Exited(exit);
        }
        let probe_timeout = PROBE_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
        let connect_probing = started.elapsed() < CONNECT_PROBING;
        let listening = !connect_probing || accepts_connections(endpoint, probe_timeout).await;
        if listening {
            match ownership::port_owner(group, port) {
                PortOwner::Stranger => return Readiness::Stranger,
                PortOwner::Session => {
                    let status =
                        crate::upstream::agent_status(&backend.client, endpoint, probe_timeout)
                            .await;
                    if status.is_some() {
                        return Readiness::Ready;
                    }
                }
                PortOwner::Nobody => {}
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Readiness::TimedOut;
        }
        let wait = if connect_probing { CONNECT_PROBE_PAUSE } else { pause };
        tokio::select! {
            exit = &mut *exited => {
                if let Ok(exit) = exit {
                    return Readiness::Exited(exit);
                }
            }
            () = tokio::time::sleep(wait.min(deadline - now)) => {}
        }
        if started.elapsed() >= FAST_POLLING {
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}

/// Whether something accepts TCP connections on the agent's endpoint.
async fn accepts_connections(endpoint: &Endpoint, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, endpoint.connect()).await, Ok(Ok(_)))
}

/// The end of the failed agent's output, once its keeper has written all of it.
async fn log_tail(backend: &LocalBackend, session_id: &str) -> String {
    use crate::sessions::backend::SessionBackend;
    keepers::finish(&backend.log_dir(session_id), KEEPER_WAIT).await;
    backend.logs(session_id, FAILURE_LOG_LINES).await
}

/// What the session's owner learns about a failed start: the exit and the log's tail.
fn failure_details(exit: Option<Exit>, tail: &str) -> Value {
    let code = exit.and_then(Exit::code);
    let signal = match exit {
        Some(Exit::Signal(signal)) => Some(signal),
        _ => None,
    };
    json!({ "exit_code": code, "signal": signal, "log_tail": tail })
}

/// Kills the spawned group and frees the port unless the launch succeeded, so a failed or
/// abandoned (cancelled) launch leaves nothing behind.
struct GroupGuard<'a> {
    backend: &'a LocalBackend,
    group: Option<i32>,
    port: Option<u16>,
}

impl GroupGuard<'_> {
    fn disarm(&mut self) {
        self.group = None;
        self.port = None;
    }
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            LocalBackend::signal_group(group, nix::sys::signal::Signal::SIGKILL);
            self.backend.containment.kill_now(group);
            self.backend.reaper.reap_now();
        }
        if let Some(port) = self.port {
            self.backend.ports.release(port);
        }
    }
}
