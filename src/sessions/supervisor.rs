//! One supervisor task per session owns its agent: it launches it, records every state
//! change, refreshes the agent's status, enforces the idle timeout, stops it on request,
//! notices when it exits, and restarts it under `restart: on-failure`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentapi_proxy_client::{ExitReason, SessionStatus};
use tokio::sync::{mpsc, oneshot};

use super::backend::{AgentHandle, AgentSpec, Exit, LaunchError, LaunchObserver, Launched};
use super::session::{Control, Session, StartFailure, StopReason};
use super::{ManagerState, initial_prompt, reason_for_exit};
use crate::clock::now_ms;
use crate::config::RestartPolicy;
use crate::shutdown::Stage;

/// Restarts allowed within [`RESTART_WINDOW`] before giving up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(600);
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// How often a live agent's status is refreshed (faster when the idle timeout is short).
const STATUS_REFRESH: Duration = Duration::from_secs(3);

/// Records the process in the session and the store as soon as it exists.
struct RecordSpawn<'a> {
    inner: &'a ManagerState,
    session: &'a Session,
}

#[async_trait::async_trait]
impl LaunchObserver for RecordSpawn<'_> {
    async fn spawned(&self, agent: &AgentHandle) {
        self.inner
            .record(self.session, |state| {
                state.process = Some(agent.clone());
                state.port = Some(agent.endpoint.port());
            })
            .await;
    }
}

/// How a supervisor begins: by launching an agent, or with one adopted from a previous run.
pub(super) enum Begin {
    Launch {
        spec: AgentSpec,
        first_message: Option<String>,
    },
    /// Environment values did not survive the previous run, so it is never restarted.
    Adopted(Launched),
}

pub(super) async fn supervise(
    inner: Arc<ManagerState>,
    session: Arc<Session>,
    begin: Begin,
    mut commands: mpsc::UnboundedReceiver<Control>,
) {
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    let mut delay = FIRST_RESTART_DELAY;
    let (spec, mut first_message, mut adopted) = match begin {
        Begin::Launch { spec, first_message } => (Some(spec), first_message, None),
        Begin::Adopted(launched) => (None, None, Some(launched)),
    };
    loop {
        let launched = match (adopted.take(), &spec) {
            (Some(launched), _) => Ok(launched),
            (None, Some(spec)) => {
                let port_hint = session.state().port;
                let observer = RecordSpawn { inner: &inner, session: &session };
                tokio::select! {
                    result = inner.backend.launch(spec, port_hint, &observer) => result,
                    command = next_stop(&mut commands) => {
                        // Dropping the launch kills whatever it spawned; wait until that is gone.
                        if let Some(agent) = session.state().process {
                            inner.backend.stop(&agent, Duration::ZERO).await;
                            inner.backend.release(&agent);
                        }
                        if !matches!(command, Some(Control::LetGo)) {
                            finish(&inner, &session, SessionStatus::Failed, None, Some(ExitReason::StartFailed), None).await;
                        }
                        acknowledge(command);
                        return;
                    }
                }
            }
            (None, None) => return,
        };
        let start_seconds = (now_ms() - session.started_at_ms).max(0) as f64 / 1000.0;
        let Launched { agent, mut exited } = match launched {
            Ok(launched) => {
                crate::telemetry::session_start("active", start_seconds);
                launched
            }
            Err(error) => {
                let outcome =
                    if matches!(error, LaunchError::Timeout { .. }) { "timeout" } else { "failed" };
                crate::telemetry::session_start(outcome, start_seconds);
                record_start_failure(&inner, &session, error).await;
                return;
            }
        };
        session.touch();
        let backend = inner.backend.clone();
        let checked = agent.clone();
        session.connections.check_endpoint_with(crate::proxy::EndpointCheck::new(move || {
            backend.owns_endpoint(&checked)
        }));
        let recorded = inner
            .record(&session, |state| {
                state.status = SessionStatus::Active;
                state.process = Some(agent.clone());
                state.port = Some(agent.endpoint.port());
            })
            .await;
        if !recorded {
            return; // another replica took the session while it started
        }
        tracing::info!(session_id = %session.id, endpoint = %agent.endpoint, "session active");
        if let Some(message) = first_message.take() {
            tokio::spawn(initial_prompt::deliver(inner.clone(), session.clone(), message));
        }

        let exit = match watch_running(&inner, &session, &agent, &mut exited, &mut commands).await {
            Running::Exited(exit) => exit,
            Running::Stopped(mut reason, mut done) => loop {
                let stopped = stop_agent(&inner, &session, &agent, &mut exited, reason).await;
                let _ = done.send(stopped);
                if stopped {
                    drain_commands(&mut commands);
                    return;
                }
                // Still `stopping`: the next stop request (a DELETE again) tries once more.
                match next_stop(&mut commands).await {
                    Some(Control::Stop { reason: again, done: waiting }) => {
                        (reason, done) = (again, waiting);
                    }
                    _ => return,
                }
            },
            Running::LetGo => {
                tracing::info!(session_id = %session.id, "another replica supervises the session now");
                drain_commands(&mut commands);
                return;
            }
        };
        // The agent ended by itself: clear out what it left in its group.
        inner.backend.stop(&agent, inner.policy.stop_grace).await;
        inner.backend.release(&agent);
        let (code, reason) = reason_for_exit(exit);
        let details = inner.backend.take_end_details(&session.id);
        if !finish(&inner, &session, SessionStatus::Exited, code, Some(reason), details).await {
            return; // another replica took the session (a DELETE there ended the agent)
        }
        tracing::info!(session_id = %session.id, exit_code = code, reason = reason.as_str(), "agent exited");

        let failed = !matches!(exit, Exit::Code(0));
        if inner.policy.restart != RestartPolicy::OnFailure
            || spec.is_none()
            || !failed
            || inner.shutdown.stage() != Stage::Running
        {
            return;
        }
        let now = Instant::now();
        restarts.retain(|at| now.duration_since(*at) < RESTART_WINDOW);
        if restarts.len() >= MAX_RESTARTS {
            tracing::warn!(session_id = %session.id, "agent keeps failing; not restarting it again");
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            command = next_stop(&mut commands) => {
                acknowledge(command);
                return;
            }
        }
        if !inner.registry_read().contains_key(&session.id) {
            return; // purged while waiting
        }
        restarts.push_back(Instant::now());
        crate::telemetry::session_restart();
        delay = (delay * 2).min(MAX_RESTART_DELAY);
        let restarted = session.state().restarts + 1;
        let recorded = inner
            .record(&session, |state| {
                state.status = SessionStatus::Starting;
                state.restarts = restarted;
                state.ended_at_ms = None;
                state.exit_code = None;
                state.exit_reason = None;
                state.process = None;
            })
            .await;
        if !recorded {
            return;
        }
        tracing::info!(session_id = %session.id, "restarting the agent after a failure");
    }
}

enum Running {
    Exited(Exit),
    Stopped(StopReason, oneshot::Sender<bool>),
    /// Another replica took the session.
    LetGo,
}

/// Waits while the agent runs: for its exit, a stop request, or an idle timeout.
async fn watch_running(
    inner: &ManagerState,
    session: &Session,
    agent: &AgentHandle,
    exited: &mut oneshot::Receiver<Exit>,
    commands: &mut mpsc::UnboundedReceiver<Control>,
) -> Running {
    let refresh = match inner.policy.idle_timeout {
        Some(idle) => STATUS_REFRESH.min(idle / 2).max(Duration::from_millis(200)),
        None => STATUS_REFRESH,
    };
    let mut ticks = tokio::time::interval(refresh);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            exit = &mut *exited => return Running::Exited(exit.unwrap_or(Exit::Code(-1))),
            command = commands.recv() => match command {
                Some(Control::Stop { reason, done }) => return Running::Stopped(reason, done),
                Some(Control::CheckHealth) => refresh_agent_status(inner, session, agent).await,
                Some(Control::LetGo) => return Running::LetGo,
                None => {
                    let (done, _) = oneshot::channel();
                    return Running::Stopped(StopReason::ServerShutdown, done);
                }
            },
            _ = ticks.tick() => {
                refresh_agent_status(inner, session, agent).await;
                inner.backend.maintain(&session.id);
                if is_idle(inner, session) && !active_elsewhere(inner, session).await {
                    tracing::info!(session_id = %session.id, "idle timeout reached");
                    let (done, _) = oneshot::channel();
                    return Running::Stopped(StopReason::IdleTimeout, done);
                }
            }
        }
    }
}

async fn refresh_agent_status(inner: &ManagerState, session: &Session, agent: &AgentHandle) {
    if !inner.backend.owns_endpoint(agent) {
        tracing::warn!(session_id = %session.id, endpoint = %agent.endpoint, "something other than the agent listens on its port");
        return;
    }
    let endpoint = inner.backend.endpoint(agent);
    let status =
        crate::upstream::agent_status(&inner.client, &endpoint, Duration::from_secs(2)).await;
    if let Some(status) = status
        && session.state().agent_status.as_deref() != Some(status.as_str())
    {
        inner.record(session, |state| state.agent_status = Some(status.clone())).await;
    }
}

fn is_idle(inner: &ManagerState, session: &Session) -> bool {
    let Some(idle) = inner.policy.idle_timeout else { return false };
    let quiet_ms = now_ms() - session.activity.last_request_ms.load(Ordering::Relaxed);
    session.activity.open_streams.load(Ordering::Relaxed) == 0
        && session.state().agent_status.as_deref() == Some("stable")
        && quiet_ms >= idle.as_millis() as i64
}

/// With other replicas: whether traffic through them reached the session within the idle
/// timeout (then it counts here too). Asked only once the session looks idle here.
async fn active_elsewhere(inner: &ManagerState, session: &Session) -> bool {
    let Some(idle) = inner.policy.idle_timeout else { return false };
    if inner.sharing.change_log.is_none() {
        return false;
    }
    match inner.store.last_activity(session.id.clone()).await {
        Ok(Some(at)) if now_ms() - at < idle.as_millis() as i64 => {
            session.activity.last_request_ms.fetch_max(at, Ordering::Relaxed);
            true
        }
        Ok(_) => false,
        // Unknown: keep the session rather than stop it on a store hiccup.
        Err(_) => true,
    }
}

/// Stops a running agent for `reason` and records the end.
async fn stop_agent(
    inner: &ManagerState,
    session: &Session,
    agent: &AgentHandle,
    exited: &mut oneshot::Receiver<Exit>,
    reason: StopReason,
) -> bool {
    if !inner.record(session, |state| state.status = SessionStatus::Stopping).await {
        return true; // another replica took the session: it stops the agent
    }
    if !inner.backend.stop(agent, inner.policy.stop_grace).await {
        tracing::warn!(session_id = %session.id, "the agent could not be stopped in time; the session stays stopping");
        return false;
    }
    inner.backend.release(agent);
    let code = match exited.try_recv() {
        Ok(Exit::Code(code)) => Some(code),
        _ => None,
    };
    let _ = inner.backend.take_end_details(&session.id);
    finish(inner, session, SessionStatus::Exited, code, Some(reason.exit_reason()), None).await;
    tracing::info!(session_id = %session.id, reason = reason.as_str(), "session stopped");
    true
}

async fn finish(
    inner: &ManagerState,
    session: &Session,
    status: SessionStatus,
    exit_code: Option<i32>,
    exit_reason: Option<ExitReason>,
    exit_details: Option<serde_json::Value>,
) -> bool {
    if let Some(reason) = exit_reason {
        crate::telemetry::agent_exit(reason.as_str());
    }
    let ended_at = now_ms();
    inner
        .record(session, |state| {
            state.status = status;
            state.process = None;
            state.ended_at_ms = Some(ended_at);
            state.exit_code = exit_code;
            state.exit_reason = exit_reason;
            state.exit_details = exit_details.clone();
        })
        .await
}

async fn record_start_failure(inner: &ManagerState, session: &Session, error: LaunchError) {
    let (failure, code, reason) = match error {
        LaunchError::Exited { exit, details } => {
            (StartFailure::Exited { details }, exit.code(), ExitReason::StartFailed)
        }
        LaunchError::Timeout { details } => {
            (StartFailure::TimedOut { details }, None, ExitReason::ReadyTimeout)
        }
        LaunchError::NoPort => (StartFailure::NoPort, None, ExitReason::StartFailed),
        LaunchError::PortTaken => (StartFailure::PortTaken, None, ExitReason::StartFailed),
        LaunchError::PortSquatting { details } => {
            (StartFailure::PortSquatting { details }, None, ExitReason::PortSquatting)
        }
        LaunchError::Unavailable(message) => {
            tracing::warn!(session_id = %session.id, message, "the session backend is unavailable");
            (StartFailure::BackendUnavailable, None, ExitReason::StartFailed)
        }
        LaunchError::Internal(error) => {
            tracing::error!(session_id = %session.id, error = format!("{error:#}"), "could not start an agent");
            (StartFailure::Internal, None, ExitReason::StartFailed)
        }
    };
    tracing::warn!(session_id = %session.id, ?failure, "agent failed to start");
    session.update(|state| state.failure = Some(failure));
    let details = inner.backend.take_end_details(&session.id);
    finish(inner, session, SessionStatus::Failed, code, Some(reason), details).await;
}

fn acknowledge(command: Option<Control>) {
    if let Some(Control::Stop { done, .. }) = command {
        let _ = done.send(true);
    }
}

/// The next stop request (or the end of the channel); health checks are moot while no agent
/// runs.
async fn next_stop(commands: &mut mpsc::UnboundedReceiver<Control>) -> Option<Control> {
    loop {
        match commands.recv().await {
            Some(Control::CheckHealth) => continue,
            other => return other,
        }
    }
}

/// Answers stop requests that raced with the end of the session.
fn drain_commands(commands: &mut mpsc::UnboundedReceiver<Control>) {
    commands.close();
    while let Ok(command) = commands.try_recv() {
        acknowledge(Some(command));
    }
}
