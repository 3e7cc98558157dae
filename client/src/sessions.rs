//! Session shapes of the HTTP API: `/start`, `/search`, `/sessions/{id}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a session is in its life (api.md `GET /search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 5] =
        [Self::Starting, Self::Active, Self::Stopping, Self::Exited, Self::Failed];

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
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Starting, active or stopping: the session holds a port and counts against quotas.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Starting | Self::Active | Self::Stopping)
    }

    /// Exited or failed: only such a session shows `exit_code` and `exit_reason`.
    pub fn has_ended(self) -> bool {
        !self.is_live()
    }
}

/// Why a session ended (sessions.md "States").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The agent listened on ports of the agent range other than its own and was stopped.
    PortSquatting,
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
            Self::PortSquatting => "port_squatting",
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
            Self::PortSquatting,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

/// Delivery of a session's first prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Body of `POST /start` (every field optional, `null` reads as absent; an empty body reads
/// as `{}`). Any other field is refused, naming it, so a typo (`tag`) is not silently
/// dropped; `user_id`, which Go proxy clients send, is accepted and ignored.
///
/// Environment names match `^[A-Za-z_][A-Za-z0-9_]{0,127}$` and are not on the deny list;
/// values hold no NUL, at most 32 KiB each, 256 KiB and 256 variables in all. Tag keys match
/// `^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`; values are at most 1024 characters without control
/// characters; at most 64 tags. A `repository` tag (`owner/repo`, or a URL on
/// `agent.repository_hosts`) is cloned for the agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StartRequestBody")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "environment": {"NAME": "value"}, "tags": {"repository": "owner/repo"}, "message": "first prompt"
})))]
pub struct StartRequest {
    #[serde(
        default,
        deserialize_with = "crate::wire::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub environment: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "crate::wire::null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tags: BTreeMap<String, String>,
    /// The first prompt (unless `tags.message` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// [`StartRequest`] as decoded: the same fields, unknown ones refused, and the Go proxy's
/// `user_id` taken and dropped (the owner is always the caller).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequestBody {
    #[serde(default, deserialize_with = "crate::wire::null_as_default")]
    environment: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::wire::null_as_default")]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "user_id")]
    _user_id: serde::de::IgnoredAny,
}

impl From<StartRequestBody> for StartRequest {
    fn from(body: StartRequestBody) -> Self {
        Self { environment: body.environment, tags: body.tags, message: body.message }
    }
}

/// Answer of `POST /start` and `POST /start-with-profile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartResponse {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub session_id: String,
    pub status: SessionStatus,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub started_at: String,
    #[cfg_attr(feature = "openapi", schema(required = true, minimum = 1, maximum = 65535))]
    pub port: Option<u16>,
}

/// One session in `GET /search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionSummary {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub session_id: String,
    pub user_id: String,
    pub status: SessionStatus,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub started_at: String,
    #[cfg_attr(feature = "openapi", schema(required = true, minimum = 1, maximum = 65535))]
    pub port: Option<u16>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub tags: BTreeMap<String, String>,
    /// Present once the session ended; null when unknowable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<ExitReason>,
}

/// Answer of `GET /search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResponse {
    pub sessions: Vec<SessionSummary>,
    pub total: u64,
}

/// Answer of `GET /sessions/{id}`: the search item plus lifecycle details, every one of them
/// always present (`null` when unknown or not yet ended). The exit fields live here, not in
/// `summary` (whose copies stay `None` in a detail), because a detail always shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionDetail {
    #[serde(flatten)]
    pub summary: SessionSummary,
    /// The agent's exit code once the session ended; null while it runs and when unknowable.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub exit_code: Option<i32>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub exit_reason: Option<ExitReason>,
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub ended_at: Option<String>,
    /// The agent's last known `stable` / `running`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub agent_status: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub initial_message: Option<InitialMessageState>,
    pub restarts: u32,
    /// What the backend reported about the end beyond `exit_reason` (Kubernetes: the
    /// cluster's `{"reason", "message", "exit_code"}`, e.g. `ImagePullBackOff`, `Evicted`);
    /// null otherwise. Kept while this server runs, not across restarts.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<Object>))]
    pub exit_details: Option<serde_json::Value>,
}

/// Answer of `DELETE /sessions/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeleteResponse {
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::terminated_message))]
    pub message: String,
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub session_id: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::terminated))]
    pub status: String,
}

/// Schemas the derive cannot say: a string that is always the same.
#[cfg(feature = "openapi")]
mod openapi {
    use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

    fn always(value: &str) -> Object {
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some([value])).build()
    }

    pub fn terminated_message() -> Object {
        always("Session terminated successfully")
    }

    pub fn terminated() -> Object {
        always("terminated")
    }
}
