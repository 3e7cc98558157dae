//! One session as the registry holds it: identity fixed at creation, and a watched live
//! state that its supervisor updates and everyone else reads or waits on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use agentapi_proxy_client::{
    ExitReason, InitialMessageState, SessionDetail, SessionStatus, SessionSummary,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::backend::AgentHandle;
use super::feed::SessionFeed;
use crate::clock::{format_ms, now_ms};
use crate::endpoint::Endpoint;
use crate::error::ApiError;
use crate::proxy::AgentConnections;
use crate::store::sessions::SessionRow;

/// Why a stop was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Deleted,
    IdleTimeout,
    ServerShutdown,
    /// The agent listened on other ports of the agent range.
    PortSquatting,
}

impl StopReason {
    /// The name logs use, in the API's snake_case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::IdleTimeout => "idle_timeout",
            Self::ServerShutdown => "server_shutdown",
            Self::PortSquatting => "port_squatting",
        }
    }

    pub fn exit_reason(self) -> ExitReason {
        match self {
            // The row disappears right after; the reason is never shown.
            Self::Deleted => ExitReason::AgentExited,
            Self::IdleTimeout => ExitReason::IdleTimeout,
            Self::ServerShutdown => ExitReason::ServerShutdown,
            Self::PortSquatting => ExitReason::PortSquatting,
        }
    }
}

/// A request to a session's supervisor.
#[derive(Debug)]
pub enum Control {
    /// Stop the agent; `done` says once its process group is gone (true), or that it could
    /// not be made sure of in time (false: the session stays `stopping`).
    Stop { reason: StopReason, done: oneshot::Sender<bool> },
    /// The proxy could not reach the agent: look at it now.
    CheckHealth,
    /// Another replica took the session (its lease, or a `DELETE` there): stop watching the
    /// agent without touching it or the session's row.
    LetGo,
}

/// Why a session never became ready, as its owner is told.
#[derive(Debug, Clone)]
pub enum StartFailure {
    Exited {
        details: Value,
    },
    TimedOut {
        details: Value,
    },
    NoPort,
    PortTaken,
    PortSquatting {
        details: Value,
    },
    /// Where agents run could not be reached (the Kubernetes API server).
    BackendUnavailable,
    Internal,
}

impl StartFailure {
    pub fn into_api_error(self) -> ApiError {
        match self {
            Self::Exited { details } => ApiError::AgentUnavailable {
                code: "agent_failed_to_start",
                message: "the agent exited before it answered".into(),
                details: Some(details),
            },
            Self::TimedOut { details } => ApiError::AgentTimeout {
                message: "the agent did not answer in time and was stopped".into(),
                details: Some(details),
            },
            Self::NoPort => ApiError::AtCapacity {
                message: "no free port is left for another agent".into(),
                retry_after_seconds: super::RETRY_AFTER_SECONDS,
            },
            Self::PortTaken => ApiError::AtCapacity {
                message: "another process listened on the agent's port at every attempt".into(),
                retry_after_seconds: super::RETRY_AFTER_SECONDS,
            },
            Self::PortSquatting { details } => ApiError::AgentUnavailable {
                code: "agent_failed_to_start",
                message: "the agent listened on other ports of the agent range and was stopped"
                    .into(),
                details: Some(details),
            },
            Self::BackendUnavailable => ApiError::BackendUnavailable,
            Self::Internal => ApiError::Internal(anyhow::anyhow!("the agent could not be started")),
        }
    }
}

/// Everything about a session that changes over its life.
#[derive(Debug, Clone)]
pub struct LiveState {
    pub status: SessionStatus,
    /// The running agent, while there is one.
    pub process: Option<AgentHandle>,
    /// The last port the agent used (kept after it ends, for display).
    pub port: Option<u16>,
    pub ended_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub exit_reason: Option<ExitReason>,
    pub agent_status: Option<String>,
    pub initial_message: Option<InitialMessageState>,
    pub restarts: u32,
    pub failure: Option<StartFailure>,
    /// What the backend said about the last end (`SessionDetail::exit_details`).
    pub exit_details: Option<Value>,
}

/// Proxied traffic, for the idle timeout.
#[derive(Debug)]
pub struct Activity {
    pub last_request_ms: AtomicI64,
    pub open_streams: AtomicU32,
}

/// One session in the registry.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub tags: BTreeMap<String, String>,
    pub env_names: Vec<String>,
    pub started_at_ms: i64,
    state: watch::Sender<LiveState>,
    control: Mutex<Option<mpsc::UnboundedSender<Control>>>,
    pub activity: Activity,
    /// The proxy path's keep-alive connections to this session's agent.
    pub connections: Arc<AgentConnections>,
    /// Held while a `DELETE` runs; true once the session was deleted.
    pub(super) deletion: tokio::sync::Mutex<bool>,
    /// Where changes of `status` and `agent_status` are announced.
    feed: SessionFeed,
}

impl Session {
    pub(super) fn new_starting(
        user_id: String,
        tags: BTreeMap<String, String>,
        env_names: Vec<String>,
        feed: SessionFeed,
    ) -> Self {
        let now = now_ms();
        let state = LiveState {
            status: SessionStatus::Starting,
            process: None,
            port: None,
            ended_at_ms: None,
            exit_code: None,
            exit_reason: None,
            agent_status: None,
            initial_message: None,
            restarts: 0,
            failure: None,
            exit_details: None,
        };
        let id = uuid::Uuid::new_v4().to_string();
        Self::from_parts(id, user_id, tags, env_names, now, state, feed)
    }

    pub(super) fn from_parts(
        id: String,
        user_id: String,
        tags: BTreeMap<String, String>,
        env_names: Vec<String>,
        started_at_ms: i64,
        state: LiveState,
        feed: SessionFeed,
    ) -> Self {
        Self {
            id,
            user_id,
            tags,
            env_names,
            started_at_ms,
            state: watch::Sender::new(state),
            control: Mutex::new(None),
            activity: Activity {
                last_request_ms: AtomicI64::new(started_at_ms),
                open_streams: AtomicU32::new(0),
            },
            connections: Arc::default(),
            deletion: tokio::sync::Mutex::new(false),
            feed,
        }
    }

    /// A session as its stored row describes it; `agent` is where its agent answers.
    pub(super) fn of_row(row: SessionRow, agent: Option<AgentHandle>, feed: SessionFeed) -> Self {
        let state = LiveState {
            status: row.status,
            process: agent.filter(|_| row.status.is_live()),
            port: row.port,
            ended_at_ms: row.ended_at_ms,
            exit_code: row.exit_code,
            exit_reason: row.exit_reason,
            agent_status: row.agent_status,
            initial_message: row.initial_message,
            restarts: row.restarts,
            failure: None,
            exit_details: stored_details(row.exit_details.as_deref()),
        };
        Self::from_parts(
            row.id,
            row.user_id,
            row.tags,
            row.env_names,
            row.started_at_ms,
            state,
            feed,
        )
    }

    /// A snapshot of the live state.
    pub fn state(&self) -> LiveState {
        self.state.borrow().clone()
    }

    /// The session's status, without cloning the whole state.
    pub fn status(&self) -> SessionStatus {
        self.state.borrow().status
    }

    /// The session's status and the agent's port, without cloning the whole state.
    pub fn status_and_port(&self) -> (SessionStatus, Option<u16>) {
        let state = self.state.borrow();
        (state.status, state.process.as_ref().map(|agent| agent.endpoint.port()))
    }

    /// The session's status and where its agent answers (the proxy path: no allocation).
    pub fn status_and_endpoint(&self) -> (SessionStatus, Option<Endpoint>) {
        let state = self.state.borrow();
        (state.status, state.process.as_ref().map(|agent| agent.endpoint.clone()))
    }

    /// Every change of the live state goes through here; a change of `status`,
    /// `agent_status` or `initial_message` is announced on the feed, in order, with the state
    /// it produced.
    pub(super) fn update(&self, change: impl FnOnce(&mut LiveState)) {
        self.state.send_modify(|state| {
            let status = state.status;
            let agent_status = state.agent_status.clone();
            let initial_message = state.initial_message;
            change(state);
            if state.status != status
                || state.agent_status != agent_status
                || state.initial_message != initial_message
            {
                self.feed.updated(|| detail_of_row(&self.row_with(state)));
            }
        });
    }

    /// Waits until the session has left `starting`.
    pub async fn wait_while_starting(&self) -> LiveState {
        let mut receiver = self.state.subscribe();
        let waited = receiver.wait_for(|state| state.status != SessionStatus::Starting).await;
        match waited {
            Ok(state) => state.clone(),
            Err(_) => self.state(),
        }
    }

    pub(super) fn attach_supervisor(&self, control: mpsc::UnboundedSender<Control>) {
        *self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(control);
    }

    /// Whether a supervisor on this replica watches the agent (it holds the lease).
    pub(super) fn is_supervised_here(&self) -> bool {
        let control = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        control.as_ref().is_some_and(|sender| !sender.is_closed())
    }

    /// Sends a command to the supervisor; false when none runs any more.
    pub(super) fn send(&self, command: Control) -> bool {
        let control = self.control.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        control.as_ref().is_some_and(|sender| sender.send(command).is_ok())
    }

    /// Asks the supervisor to check on the agent (the proxy could not reach it).
    pub fn check_health(&self) {
        self.send(Control::CheckHealth);
    }

    /// Marks proxied traffic now (the idle timeout counts from the last one).
    pub fn touch(&self) {
        self.activity.last_request_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn to_row(&self) -> SessionRow {
        self.row_with(&self.state.borrow())
    }

    /// The stored form of this session with `state` as its live state.
    pub fn row_with(&self, state: &LiveState) -> SessionRow {
        SessionRow {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            status: state.status,
            port: state.port,
            backend_ref: state.process.as_ref().map(|agent| agent.reference.as_str().to_string()),
            tags: self.tags.clone(),
            env_names: self.env_names.clone(),
            started_at_ms: self.started_at_ms,
            ended_at_ms: state.ended_at_ms,
            exit_code: state.exit_code,
            exit_reason: state.exit_reason,
            agent_status: state.agent_status.clone(),
            initial_message: state.initial_message,
            restarts: state.restarts,
            supervisor: None,
            lease_expires_at_ms: None,
            exit_details: state.exit_details.as_ref().map(Value::to_string),
        }
    }

    /// Takes the state another replica stored (a session this replica does not supervise);
    /// `agent` is where its agent answers while it lives.
    pub(super) fn follow_row(&self, row: &SessionRow, agent: Option<AgentHandle>) {
        self.update(|state| {
            state.status = row.status;
            state.process = agent.filter(|_| row.status.is_live());
            state.port = row.port;
            state.ended_at_ms = row.ended_at_ms;
            state.exit_code = row.exit_code;
            state.exit_reason = row.exit_reason;
            state.agent_status = row.agent_status.clone();
            state.initial_message = row.initial_message;
            state.restarts = row.restarts;
            state.failure = None;
            state.exit_details = stored_details(row.exit_details.as_deref());
        });
    }

    pub fn detail(&self) -> SessionDetail {
        let state = self.state.borrow();
        let mut detail = detail_of_row(&self.row_with(&state));
        detail.exit_details = state.exit_details.clone().filter(|_| state.status.has_ended());
        detail
    }
}

/// Stored exit details (JSON text); anything unreadable reads as none.
fn stored_details(text: Option<&str>) -> Option<Value> {
    text.and_then(|text| serde_json::from_str(text).ok())
}

/// The `/search` item for a stored row.
pub fn summary_of_row(row: &SessionRow) -> SessionSummary {
    let ended = row.status.has_ended();
    SessionSummary {
        session_id: row.id.clone(),
        user_id: row.user_id.clone(),
        status: row.status,
        started_at: format_ms(row.started_at_ms),
        port: row.port,
        tags: row.tags.clone(),
        exit_code: if ended { row.exit_code } else { None },
        exit_reason: if ended { row.exit_reason } else { None },
    }
}

/// The `/sessions/{id}` answer for a stored row.
pub fn detail_of_row(row: &SessionRow) -> SessionDetail {
    let mut summary = summary_of_row(row);
    SessionDetail {
        exit_code: summary.exit_code.take(),
        exit_reason: summary.exit_reason.take(),
        summary,
        ended_at: row.ended_at_ms.map(format_ms),
        agent_status: row.agent_status.clone(),
        initial_message: row.initial_message,
        restarts: row.restarts,
        exit_details: None,
    }
}
