//! The seam between session bookkeeping and where agents actually run. A backend starts an
//! agent from a backend-neutral [`AgentSpec`] and hands back an [`Endpoint`]; the proxy only
//! ever sees endpoints. `local` runs process groups on this host; a Kubernetes backend
//! (a Pod and Service per session) can implement the same trait later.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::validate::Repository;

/// Everything needed to start one session's agent, independent of where it runs.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub session_id: String,
    pub user_id: String,
    /// The validated request (or profile) environment; values live only in memory.
    pub environment: BTreeMap<String, String>,
    pub repository: Option<Repository>,
    pub system_prompt: Option<String>,
    /// `APX_SESSION_TOKEN` and `APX_PROXY_URL`, when the proxy issues agent tokens.
    pub access: Option<super::agent_token::AgentAccess>,
}

/// Where a running agent answers HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub host: std::net::IpAddr,
    pub port: u16,
}

/// How an agent process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// It ended, but it was not our child, so how is unknown (an adopted agent).
    Unknown,
}

impl Exit {
    /// The exit code, when the process exited normally and we could see it.
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Code(code) => Some(code),
            Self::Signal(_) | Self::Unknown => None,
        }
    }
}

/// Told as soon as the agent process exists, before it is ready, so the store can record
/// it (a crash at any later point stays recoverable).
#[async_trait::async_trait]
pub trait LaunchObserver: Send + Sync {
    async fn spawned(&self, agent: &AgentProcess);
}

/// A started agent process as the store and recovery need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentProcess {
    pub pid: i32,
    pub start_ticks: Option<u64>,
    pub endpoint: Endpoint,
}

/// An agent that answered its readiness check.
#[derive(Debug)]
pub struct Launched {
    pub process: AgentProcess,
    /// Resolves with the agent's exit status when it ends.
    pub exited: oneshot::Receiver<Exit>,
}

/// Why an agent could not be started.
#[derive(Debug)]
pub enum LaunchError {
    /// The agent exited before it answered.
    Exited { exit: Exit, details: Value },
    /// The agent did not answer in time; it was killed.
    Timeout { details: Value },
    /// No port is free in the configured range.
    NoPort,
    /// Another process listened on the agent's port at every attempt; it was never talked to.
    PortTaken,
    /// The agent already listened on other ports of the agent range; it was stopped.
    PortSquatting { details: Value },
    /// Our own failure (spawning, files).
    Internal(anyhow::Error),
}

/// Starts and stops agents somewhere.
#[async_trait::async_trait]
pub trait SessionBackend: Send + Sync + std::fmt::Debug {
    /// Starts the agent for `spec` (preferring `port_hint`) and returns once it answers.
    async fn launch(
        &self,
        spec: &AgentSpec,
        port_hint: Option<u16>,
        observer: &dyn LaunchObserver,
    ) -> Result<Launched, LaunchError>;

    /// Takes back an agent left running by a previous proxy process (after a crash or with
    /// `on_shutdown: keep`): only if it is the same process (pid and start time) and it
    /// still answers. `None` means it is gone or not ours.
    async fn adopt(&self, process: &AgentProcess) -> Option<Launched>;

    /// Kills whatever is left of a process group from a previous proxy process, if it is
    /// still the same process.
    async fn discard(&self, process: &AgentProcess);

    /// Stops the agent: a polite request, then force after `grace`; returns once nothing of
    /// it is left. Safe to call for an agent that already exited.
    async fn stop(&self, process: &AgentProcess, grace: Duration);

    /// Frees what the agent held (its port) once it is gone for good.
    fn release(&self, process: &AgentProcess);

    /// The last `lines` lines of the agent's output.
    async fn logs(&self, session_id: &str, lines: usize) -> String;

    /// Removes what the session left on disk (after `DELETE`).
    async fn remove_files(&self, session_id: &str);

    /// Housekeeping for a live agent (e.g. capping its log).
    fn maintain(&self, session_id: &str);

    /// Told once stored sessions were loaded and every agent that could be was re-adopted:
    /// whatever is left of the others can go.
    async fn recovered(&self) {}

    /// How this backend holds a session's processes together (for `/metrics`).
    fn containment_mode(&self) -> Option<&'static str> {
        None
    }

    /// Whether every listener a new connection to the agent's endpoint can reach belongs to
    /// the agent's session (asked before a new proxy connection is used). Blocking, brief.
    fn owns_endpoint(&self, _process: &AgentProcess) -> bool {
        true
    }

    /// Of `running`, the agents that listen on ports of the agent range other than their
    /// own, with those ports. Blocking; one look at the host for all of them.
    fn squatters(&self, _running: &[AgentProcess]) -> Vec<(AgentProcess, Vec<u16>)> {
        Vec::new()
    }
}
