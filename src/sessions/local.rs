//! The local backend: each session's agent is a process group on this host, started by
//! the startup script (directly when the embedded one would only exec it) on a reserved
//! port, watched by the reaper, and stopped group-wide (polite signal, grace period, then
//! force); whatever else the session started is ended with it through its containment
//! (cgroup, or the record of its descendants).

pub mod agent_log;
pub mod containment;
mod isolation;
mod keepers;
mod launch;
mod listeners;
pub mod log_keeper;
mod nofollow;
mod ownership;
pub mod ports;
pub mod procfs;
pub mod reaper;
mod reference;
mod uid_pool;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::agent_command::{AgentCommand, DEFAULT_SCRIPT, Placement, Script};
use super::backend::{
    AgentHandle, AgentSpec, BackendRef, LaunchError, LaunchObserver, Launched, SessionBackend,
};
use crate::config::{AgentConfig, Config};
use crate::upstream::UpstreamClient;
use containment::Containment;
use isolation::Isolation;
use ports::PortAllocator;
use reaper::Reaper;
use reference::LocalRef;
use uid_pool::UidPool;

/// Longest wait for a force-killed group to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a log keeper may take to finish once its agent is gone.
const KEEPER_FINISH: Duration = Duration::from_secs(2);

/// Process-group sessions on this host.
#[derive(Debug)]
pub struct LocalBackend {
    agent: AgentConfig,
    sessions_dir: PathBuf,
    /// `<data_dir>/logs`: the agents' logs, in directories only the server can write.
    logs_dir: PathBuf,
    /// `bash`, located once on the proxy's `PATH`.
    shell: PathBuf,
    /// The startup script on this host (the embedded one is written to the data dir).
    script: PathBuf,
    /// The agent's command line and environment (shared with every backend).
    command: AgentCommand,
    proxy_bin: PathBuf,
    /// The proxy's own `PATH` and `LANG`, handed on to agents.
    path_env: String,
    lang_env: String,
    ready_timeout: Duration,
    isolation: Isolation,
    containment: Arc<Containment>,
    /// One uid per session (`agent.uid_range`).
    uids: Option<UidPool>,
    ports: Arc<PortAllocator>,
    reaper: Reaper,
    client: UpstreamClient,
}

/// Settings of the running process rather than of the configuration file.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The executable whose `echo-agent` and `helpers` commands agents run (default: this
    /// process's own executable).
    pub proxy_bin: Option<PathBuf>,
    /// Reap every zombie child, not only agent groups (the `server` binary, as subreaper).
    pub reap_all_children: bool,
}

impl LocalBackend {
    /// Prepares the session directory and startup script; starts the reaper.
    pub fn new(
        config: &Config,
        options: &HostOptions,
        client: UpstreamClient,
    ) -> anyhow::Result<Self> {
        // Agents run in their own directories: every path handed to them must be absolute.
        let data_dir = std::fs::canonicalize(&config.data_dir)
            .with_context(|| format!("while resolving data_dir {}", config.data_dir))?;
        let sessions_dir = data_dir.join("sessions");
        create_private_dir(&sessions_dir)?;
        let logs_dir = data_dir.join("logs");
        create_private_dir(&logs_dir)?;
        let mut isolation = Isolation::from_config(&config.agent)?;
        isolation.open_path(&[&data_dir, &sessions_dir])?;
        let containment = Containment::new(&config.agent, &sessions_dir)?;
        isolation.leave_to_cgroup(containment.limits_processes(), containment.limits_memory());
        let uids = UidPool::new(&config.agent.uid_range, &sessions_dir);
        let command = AgentCommand::from_config(&config.agent);
        let script = match command.script() {
            Script::Embedded => {
                let path = data_dir.join("agentapi_default.sh");
                // The script holds no secret; a separate agent user must be able to read it.
                let mode = if isolation.separate_user() { 0o755 } else { 0o700 };
                write_private_file(&path, DEFAULT_SCRIPT.as_bytes(), mode)?;
                path
            }
            Script::Operator(script) => std::fs::canonicalize(script)
                .with_context(|| format!("while resolving agent.script {script}"))?,
        };
        let proxy_bin = match &options.proxy_bin {
            Some(path) => path.clone(),
            None => std::env::current_exe().context("while locating this executable")?,
        };
        let path_env =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        Ok(Self {
            agent: config.agent.clone(),
            sessions_dir,
            logs_dir,
            shell: isolation::locate("bash", &path_env),
            script,
            command,
            proxy_bin,
            path_env,
            lang_env: std::env::var("LANG").unwrap_or_else(|_| "C.UTF-8".into()),
            ready_timeout: Duration::from_secs(config.session.ready_timeout_seconds),
            isolation,
            containment,
            uids,
            ports: Arc::new(PortAllocator::new(config.start_port..=config.end_port)),
            reaper: Reaper::start(options.reap_all_children)?,
            client,
        })
    }

    fn session_dir(&self, session_id: &str) -> PathBuf {
        self.sessions_dir.join(session_id)
    }

    /// `<data_dir>/logs/<id>`: never handed to the agent.
    fn log_dir(&self, session_id: &str) -> PathBuf {
        self.logs_dir.join(session_id)
    }

    /// Creates the session's log directory (0700, the server's) unless it exists.
    fn prepare_log_dir(&self, session_id: &str) -> anyhow::Result<PathBuf> {
        let logs = nofollow::open_dir(&self.logs_dir)
            .and_then(|logs| nofollow::ensure_dir_at(logs, session_id, 0o700))
            .with_context(|| format!("while creating the log directory of {session_id}"))?;
        drop(logs);
        Ok(self.log_dir(session_id))
    }

    /// Where this host puts the agent's things, for the shared command builder.
    fn placement<'a>(&'a self, port: u16, dir: &'a Path) -> Placement<'a> {
        Placement {
            port,
            session_dir: dir,
            proxy_bin: &self.proxy_bin,
            path: &self.path_env,
            lang: &self.lang_env,
        }
    }

    /// Sends `signal` to the group; false when no such group exists any more.
    fn signal_group(group: i32, signal: Signal) -> bool {
        killpg(Pid::from_raw(group), signal).is_ok()
    }

    /// Waits until no live member of `group` is left, reaping as it goes.
    async fn wait_group_gone(&self, group: i32, within: Duration) -> bool {
        let give_up = Instant::now() + within;
        let mut pause = Duration::from_millis(2);
        loop {
            self.reaper.reap_now();
            if !procfs::group_alive(group) {
                return true;
            }
            if Instant::now() >= give_up {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the group and everything else of its session, and waits for all of it to
    /// vanish.
    async fn kill_group(&self, group: i32) {
        Self::signal_group(group, Signal::SIGKILL);
        self.containment.kill_now(group);
        if !self.wait_group_gone(group, KILL_WAIT).await {
            tracing::error!(group, "process group survived SIGKILL");
        }
        self.end_containment(group).await;
    }

    /// Ends what is left of the session of `group` outside the group, and its cgroup.
    async fn end_containment(&self, group: i32) {
        let reaper = &self.reaper;
        self.containment.end(group, &|| reaper.reap_all_now()).await;
    }

    /// How sessions are contained on this host.
    pub fn containment_mode(&self) -> containment::Mode {
        self.containment.mode()
    }
}

/// The local reference of a handle this backend made; a handle it cannot read (never made
/// here) is logged and treated as gone.
fn local(agent: &AgentHandle) -> Option<LocalRef> {
    match LocalRef::decode(&agent.reference) {
        Ok(agent) => Some(agent),
        Err(error) => {
            tracing::error!(%error, "the local backend was handed an agent it did not start");
            None
        }
    }
}

#[async_trait::async_trait]
impl SessionBackend for LocalBackend {
    async fn launch(
        &self,
        spec: &AgentSpec,
        port_hint: Option<u16>,
        observer: &dyn LaunchObserver,
    ) -> Result<Launched, LaunchError> {
        launch::launch(self, spec, port_hint, observer).await
    }

    async fn wait_ready(&self, agent: &AgentHandle, within: Duration) -> bool {
        let Some(process) = local(agent) else { return false };
        let give_up = Instant::now() + within;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            // `/status` goes to the agent only, never to a stranger that took its port.
            if ownership::port_owner(process.pid, process.port) == ownership::PortOwner::Session
                && crate::upstream::agent_status(&self.client, &agent.endpoint, left)
                    .await
                    .is_some()
            {
                return true;
            }
            let left = give_up.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            tokio::time::sleep(left.min(Duration::from_millis(50))).await;
        }
    }

    fn handle_of(&self, reference: &BackendRef) -> Option<AgentHandle> {
        LocalRef::decode(reference).ok()?.handle().ok()
    }

    async fn adopt(&self, reference: &BackendRef) -> Option<Launched> {
        let process = match LocalRef::decode(reference) {
            Ok(process) => process,
            Err(error) => {
                tracing::warn!(%error, "a stored agent cannot be taken back");
                return None;
            }
        };
        if !same_process(&process) {
            return None;
        }
        let agent = process
            .handle()
            .inspect_err(|error| tracing::error!(%error, "could not encode an agent reference"))
            .ok()?;
        if !self.wait_ready(&agent, Duration::from_secs(2)).await {
            return None;
        }
        self.ports.claim(process.port);
        let uid = procfs::owner(process.pid);
        self.containment.adopt(process.pid, uid.filter(|_| self.uids.is_some()));
        Some(Launched { agent, exited: watch_foreign_exit(process) })
    }

    async fn discard(&self, reference: &BackendRef) {
        let Ok(process) = LocalRef::decode(reference) else { return };
        if same_process(&process) || procfs::group_alive(process.pid) {
            self.kill_group(process.pid).await;
        }
        // What it left in its containment goes as an orphan (`list`, `end_orphan`).
    }

    async fn stop(&self, agent: &AgentHandle, grace: Duration) -> bool {
        let Some(process) = local(agent) else { return true };
        let group = process.pid;
        if Self::signal_group(group, Signal::SIGTERM) && !self.wait_group_gone(group, grace).await {
            tracing::info!(group, ?grace, "agent ignored SIGTERM; killing its process group");
            self.kill_group(group).await;
        }
        self.end_containment(group).await;
        self.reaper.reap_all_now();
        true
    }

    fn release(&self, agent: &AgentHandle) {
        if let Some(process) = local(agent) {
            self.ports.release(process.port);
        }
    }

    async fn logs(&self, session_id: &str, lines: usize) -> String {
        let dir = self.log_dir(session_id);
        let tail = tokio::task::spawn_blocking(move || agent_log::tail(&dir, lines)).await;
        match tail {
            Ok(Ok(text)) => text,
            Ok(Err(error)) => {
                tracing::warn!(%error, session_id, "could not read the agent's log");
                String::new()
            }
            Err(_) => String::new(),
        }
    }

    async fn list(&self) -> Vec<String> {
        let containment = self.containment.clone();
        let found = tokio::task::spawn_blocking(move || containment.sessions_found()).await;
        found.map(|sessions| sessions.into_iter().collect()).unwrap_or_default()
    }

    async fn end_orphan(&self, session_id: &str) {
        let reaper = &self.reaper;
        self.containment.end_orphan(session_id, &|| reaper.reap_all_now()).await;
    }

    fn reserved_env_names(&self) -> Vec<String> {
        self.command.reserved_env_names()
    }

    async fn remove_files(&self, session_id: &str) {
        let logs = self.log_dir(session_id);
        // The agent is gone; its keeper finishes at once (or is ended) before its log goes.
        keepers::finish(&logs, KEEPER_FINISH).await;
        // `remove_dir_all` never follows the links an agent may have left in its directory.
        let dir = self.session_dir(session_id);
        let removed = tokio::task::spawn_blocking(move || {
            (agent_log::remove_dir(&dir), agent_log::remove_dir(&logs))
        })
        .await;
        if let Ok((session_dir, log_dir)) = removed {
            for (error, what) in [(session_dir, "session directory"), (log_dir, "log directory")]
                .into_iter()
                .filter_map(|(result, what)| Some((result.err()?, what)))
            {
                tracing::warn!(%error, session_id, "could not remove the {what}");
            }
        }
        if let Some(pool) = &self.uids {
            pool.release(session_id);
        }
    }

    fn containment_mode(&self) -> Option<&'static str> {
        Some(self.containment.mode().label())
    }

    fn maintain(&self, _session_id: &str) {
        // The log keeper caps the log as it writes it.
    }

    fn owns_endpoint(&self, agent: &AgentHandle) -> bool {
        local(agent).is_some_and(|process| {
            ownership::port_owner(process.pid, process.port) == ownership::PortOwner::Session
        })
    }

    fn has_port_range(&self) -> bool {
        true
    }

    fn squatters(&self, running: &[AgentHandle]) -> Vec<(AgentHandle, Vec<u16>)> {
        let known: Vec<(&AgentHandle, LocalRef)> =
            running.iter().filter_map(|agent| Some((agent, local(agent)?))).collect();
        let agents: Vec<ownership::Agent> = known
            .iter()
            .map(|(_, process)| ownership::Agent { group: process.pid, port: process.port })
            .collect();
        ownership::squatters(&agents, self.ports.range())
            .into_iter()
            .filter_map(|(agent, ports)| {
                let (handle, _) = known.iter().find(|(_, process)| process.pid == agent.group)?;
                Some(((*handle).clone(), ports))
            })
            .collect()
    }
}

/// True when `process.pid` is still the process that was recorded (same start time).
fn same_process(process: &LocalRef) -> bool {
    procfs::stat(process.pid).is_some_and(|stat| {
        !stat.is_zombie()
            && stat.group == process.pid
            && Some(stat.start_ticks) == process.start_ticks
    })
}

/// Polls for the end of an agent that is not our child (its exit status is unknowable).
fn watch_foreign_exit(process: LocalRef) -> tokio::sync::oneshot::Receiver<super::backend::Exit> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut sender = sender;
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = sender.closed() => return,
            }
            if !same_process(&process) {
                let _ = sender.send(super::backend::Exit::Unknown);
                return;
            }
        }
    });
    receiver
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("while creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("while restricting {}", dir.display()))
}

fn write_private_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("while writing {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("while writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("while restricting {}", path.display()))
}
