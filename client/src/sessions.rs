//! Session shapes of the HTTP API: `/start`, `/search`, `/sessions/{id}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a session is in its life (api.md `GET /search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// The agent process was spawned and has not answered yet.
    Starting,
    /// The agent answers; requests are proxied to it.
    Active,
    /// A stop was requested; the process group is being terminated.
    Stopping,
    /// The agent ended after having been active; see `exit_code` and `exit_reason`.
    Exited,
    /// The agent never became ready.
    Failed,
}

impl SessionStatus {
    /// The wire name (`"active"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Active => "active",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
            Self::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Starting, Self::Active, Self::Stopping, Self::Exited, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Starting, active or stopping: the session holds a port and counts against quotas.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Starting | Self::Active | Self::Stopping)
    }
}

/// Why a session ended (sessions.md "States").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    AgentExited,
    KilledBySignal,
    IdleTimeout,
    ServerShutdown,
    LostWhileDown,
    /// The agent did not answer within `session.ready_timeout_seconds`.
    ReadyTimeout,
    /// The agent exited before it answered.
    StartFailed,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentExited => "agent_exited",
            Self::KilledBySignal => "killed_by_signal",
            Self::IdleTimeout => "idle_timeout",
            Self::ServerShutdown => "server_shutdown",
            Self::LostWhileDown => "lost_while_down",
            Self::ReadyTimeout => "ready_timeout",
            Self::StartFailed => "start_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::AgentExited,
            Self::KilledBySignal,
            Self::IdleTimeout,
            Self::ServerShutdown,
            Self::LostWhileDown,
            Self::ReadyTimeout,
            Self::StartFailed,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

/// Delivery of a session's first prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialMessageState {
    Pending,
    Sent,
    Failed,
}

impl InitialMessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed].into_iter().find(|state| state.as_str() == text)
    }
}

/// Body of `POST /start` (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Answer of `POST /start` and `POST /start-with-profile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartResponse {
    pub session_id: String,
    pub status: SessionStatus,
    pub started_at: String,
    pub port: Option<u16>,
}

/// One session in `GET /search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub user_id: String,
    pub status: SessionStatus,
    pub started_at: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<ExitReason>,
}

/// Answer of `GET /search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub sessions: Vec<SessionSummary>,
    pub total: u64,
}

/// Answer of `GET /sessions/{id}`: the search item plus lifecycle details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionDetail {
    #[serde(flatten)]
    pub summary: SessionSummary,
    pub ended_at: Option<String>,
    /// The agent's last known `stable` / `running`.
    pub agent_status: Option<String>,
    pub initial_message: Option<InitialMessageState>,
    pub restarts: u32,
}

/// Answer of `DELETE /sessions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteResponse {
    pub message: String,
    pub session_id: String,
    pub status: String,
}
