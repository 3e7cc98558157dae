//! The seam between session bookkeeping and where agents actually run. A backend starts an
//! agent from a backend-neutral [`AgentSpec`] and hands back an [`Endpoint`]; the proxy only
//! ever sees endpoints. `local` runs process groups on this host; a Kubernetes backend
//! (a Pod and Service per session) can implement the same trait later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use super::validate::Repository;
pub use crate::endpoint::{Endpoint, Host};

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

/// What a backend needs to find its agent again (local: pid, start time, port): one
/// opaque, versioned JSON value (`{"v":1,"kind":"local",...}`) kept in the session row as
/// `backend_ref`, read only by the backend that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRef(Arc<str>);

impl BackendRef {
    /// A reference as stored (its JSON text).
    pub fn new(json: impl Into<Arc<str>>) -> Self {
        Self(json.into())
    }

    /// Writes `fields` (an object) as a reference of `kind`, version `version`.
    pub fn encode(kind: &str, version: u64, fields: &impl Serialize) -> anyhow::Result<Self> {
        #[derive(Serialize)]
        struct Envelope<'a, T> {
            v: u64,
            kind: &'a str,
            #[serde(flatten)]
            fields: &'a T,
        }
        let json = serde_json::to_string(&Envelope { v: version, kind, fields })?;
        Ok(Self::new(json))
    }

    /// The version and the whole value of a reference of `kind`; a reference of another
    /// kind, or text that is not a versioned JSON object, is an error (never a panic).
    pub fn open(&self, kind: &str) -> Result<(u64, Value), RefError> {
        let value: Value = serde_json::from_str(&self.0)
            .map_err(|error| RefError::Malformed(error.to_string()))?;
        let version = value.get("v").and_then(Value::as_u64);
        let found = value.get("kind").and_then(Value::as_str);
        match (version, found) {
            (Some(version), Some(found)) if found == kind => Ok((version, value)),
            (Some(_), Some(found)) => Err(RefError::OtherKind(found.to_string())),
            _ => Err(RefError::Malformed("no `v` and `kind`".into())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a backend cannot read a stored reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("the backend reference is malformed: {0}")]
    Malformed(String),
    #[error("the backend reference belongs to the {0} backend")]
    OtherKind(String),
    #[error("the backend reference has version {0}, unknown to this build")]
    UnknownVersion(u64),
}

/// A running agent as the session layer holds it: where it answers, and the backend's own
/// reference to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHandle {
    pub endpoint: Endpoint,
    pub reference: BackendRef,
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

/// Told as soon as the agent exists, before it is ready, so the store can record it (a
/// crash at any later point stays recoverable).
#[async_trait::async_trait]
pub trait LaunchObserver: Send + Sync {
    async fn spawned(&self, agent: &AgentHandle);
}

/// An agent that answered its readiness check.
#[derive(Debug)]
pub struct Launched {
    pub agent: AgentHandle,
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
    /// Where agents run cannot be reached (the Kubernetes API server); nothing was started.
    Unavailable(String),
    /// Our own failure (spawning, files).
    Internal(anyhow::Error),
}

/// Starts and stops agents somewhere.
#[async_trait::async_trait]
pub trait SessionBackend: Send + Sync + std::fmt::Debug {
    /// Starts the agent for `spec` and returns once it is ready ([`Self::wait_ready`]); a
    /// backend that picks ports prefers `port_hint` (the port of the session's previous
    /// run). The readiness wait is part of the launch, because a backend may only learn
    /// there that it must start over (the local backend: a stranger took the port).
    async fn launch(
        &self,
        spec: &AgentSpec,
        port_hint: Option<u16>,
        observer: &dyn LaunchObserver,
    ) -> Result<Launched, LaunchError>;

    /// Whether the agent answers its readiness check (`/status` like agentapi, from the
    /// agent itself) within `within`.
    async fn wait_ready(&self, agent: &AgentHandle, within: Duration) -> bool;

    /// Where the agent answers.
    fn endpoint(&self, agent: &AgentHandle) -> Endpoint {
        agent.endpoint.clone()
    }

    /// Takes back an agent left running by a previous proxy process (after a crash or with
    /// `on_shutdown: keep`) from its stored reference: only if it is the same agent and it
    /// is ready. `None` means it is gone, not ours, or the reference is unreadable.
    async fn adopt(&self, reference: &BackendRef) -> Option<Launched>;

    /// The handle a stored reference names, without asking the agent anything: where a
    /// session another replica supervises answers, and what a `DELETE` here stops. `None`
    /// when the reference cannot be read.
    fn handle_of(&self, reference: &BackendRef) -> Option<AgentHandle>;

    /// Ends whatever is left of an agent from a previous proxy process that was not taken
    /// back, if it is still the same agent.
    async fn discard(&self, reference: &BackendRef);

    /// Stops the agent: a polite request, then force after `grace`; returns once nothing of
    /// it is left (true). False when the backend could not make sure of that within `grace`
    /// and its own slack (the Kubernetes API server unreachable): the agent may still run.
    /// Safe to call for an agent that already exited.
    async fn stop(&self, agent: &AgentHandle, grace: Duration) -> bool;

    /// Frees what the agent held (its port) once it is gone for good.
    fn release(&self, agent: &AgentHandle);

    /// The last `lines` lines of the agent's output.
    async fn logs(&self, session_id: &str, lines: usize) -> String;

    /// The sessions of everything this backend runs that carries our marks (for recovery
    /// and orphan clean-up), whether or not a session row still knows it.
    async fn list(&self) -> Vec<String>;

    /// Ends everything the backend runs for `session_id`, which no stored session took
    /// back (an orphan [`Self::list`] found).
    async fn end_orphan(&self, session_id: &str);

    /// Names an agent's environment already has before the request's: a request may not
    /// set them (`reserved_env_name`).
    fn reserved_env_names(&self) -> Vec<String>;

    /// Removes what the session left on disk (after `DELETE`).
    async fn remove_files(&self, session_id: &str);

    /// What the backend knows about how the session's agent last ended or failed to start,
    /// beyond its exit (Kubernetes: the cluster's reason); taken, so asked once per end.
    fn take_end_details(&self, _session_id: &str) -> Option<Value> {
        None
    }

    /// Housekeeping for a live agent (e.g. capping its log).
    fn maintain(&self, session_id: &str);

    /// How this backend holds a session's processes together (for `/metrics`).
    fn containment_mode(&self) -> Option<&'static str> {
        None
    }

    /// Whether every listener a new connection to the agent's endpoint can reach belongs to
    /// the agent's session (asked before a new proxy connection is used). Blocking, brief.
    fn owns_endpoint(&self, _agent: &AgentHandle) -> bool {
        true
    }

    /// Whether agents share this host's port range, so [`Self::squatters`] is worth asking.
    fn has_port_range(&self) -> bool {
        false
    }

    /// Of `running`, the agents that listen on ports of the agent range other than their
    /// own, with those ports. Blocking; one look at the host for all of them.
    fn squatters(&self, _running: &[AgentHandle]) -> Vec<(AgentHandle, Vec<u16>)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Fields {
        pid: i32,
        port: u16,
    }

    #[test]
    fn a_reference_carries_its_kind_and_version_first() {
        let reference = BackendRef::encode("local", 1, &Fields { pid: 7, port: 9001 }).unwrap();
        assert_eq!(reference.as_str(), r#"{"v":1,"kind":"local","pid":7,"port":9001}"#);
        let (version, value) = reference.open("local").expect("opens");
        assert_eq!(version, 1);
        assert_eq!(value["pid"], 7);
        assert!(BackendRef::encode("local", 1, &7).is_err(), "only objects");
    }

    #[test]
    fn references_of_another_kind_or_malformed_ones_are_refused() {
        let pod = BackendRef::new(r#"{"v":1,"kind":"kubernetes","pod":"p"}"#);
        assert_eq!(pod.open("local"), Err(RefError::OtherKind("kubernetes".into())));
        for text in ["", "null", "[1]", r#"{"kind":"local"}"#, r#"{"v":"1","kind":"local"}"#] {
            let refused = BackendRef::new(text).open("local");
            assert!(matches!(refused, Err(RefError::Malformed(_))), "{text}: {refused:?}");
        }
    }
}
