//! Work on the registry as a whole: loading stored sessions at boot, purging finished
//! sessions once `retain_finished_seconds` have passed, and stopping agents that listen on
//! other ports of the agent range (`port_squatting`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use agentapi_proxy_client::{ExitReason, SessionStatus};

use std::net::Ipv4Addr;

use tokio::sync::mpsc;

use super::backend::{AgentProcess, Endpoint};
use super::session::{Control, LiveState, Session, StopReason};
use super::{Inner, supervisor};
use crate::clock::now_ms;

/// Rebuilds the registry from the store (sessions.md "Recovery at startup"). A session that
/// was live when the previous proxy stopped is re-adopted if its agent is the same process
/// and still answers; otherwise what is left of its process group is killed and it shows as
/// `exited` (`lost_while_down`), or `failed` if it never had a process.
pub(super) async fn load_stored_sessions(inner: &Arc<Inner>) -> anyhow::Result<()> {
    let rows = inner.store.all().await?;
    for mut row in rows {
        let mut adopted = None;
        if row.status.is_live() {
            let process = match (row.pid, row.port) {
                (Some(pid), Some(port)) => Some(AgentProcess {
                    pid,
                    start_ticks: row.pid_start_ticks,
                    endpoint: Endpoint { host: Ipv4Addr::LOCALHOST.into(), port },
                }),
                _ => None,
            };
            adopted = match &process {
                Some(process) => inner.backend.adopt(process).await,
                None => None,
            };
            if let Some(launched) = &adopted {
                tracing::info!(session_id = %row.id, pid = launched.process.pid, "re-adopted a running agent");
                row.status = SessionStatus::Active;
            } else {
                if let Some(process) = &process {
                    inner.backend.discard(process).await;
                }
                let never_spawned = row.pid.is_none();
                tracing::warn!(session_id = %row.id, never_spawned, "a session did not survive the restart");
                row.status =
                    if never_spawned { SessionStatus::Failed } else { SessionStatus::Exited };
                row.exit_reason = Some(if never_spawned {
                    ExitReason::StartFailed
                } else {
                    ExitReason::LostWhileDown
                });
                row.exit_code = None;
                row.ended_at_ms = Some(now_ms());
            }
            inner.store.save_state(row.clone()).await?;
        }
        let state = LiveState {
            status: row.status,
            process: adopted.as_ref().map(|launched| launched.process),
            port: row.port,
            ended_at_ms: row.ended_at_ms,
            exit_code: row.exit_code,
            exit_reason: row.exit_reason,
            agent_status: row.agent_status.clone(),
            initial_message: row.initial_message,
            restarts: row.restarts,
            failure: None,
        };
        let session = Arc::new(Session::from_parts(
            row.id.clone(),
            row.user_id,
            row.tags,
            row.env_names,
            row.started_at_ms,
            state,
            inner.feed.clone(),
        ));
        if let Some(launched) = adopted {
            let (control, commands) = mpsc::unbounded_channel();
            session.attach_supervisor(control);
            let begin = supervisor::Begin::Adopted(launched);
            tokio::spawn(supervisor::supervise(inner.clone(), session.clone(), begin, commands));
        }
        inner.registry_write().insert(row.id, session);
    }
    inner.backend.recovered().await;
    Ok(())
}

/// How often the agent range is looked over for agents listening on ports not theirs.
const PORT_WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Starts the task that stops squatting agents: one look at the host's listeners per
/// [`PORT_WATCH_PERIOD`] for every active session at once.
pub(super) fn spawn_port_watch(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PORT_WATCH_PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(strong) = inner.upgrade() else { return };
            stop_squatters(&strong).await;
        }
    });
}

async fn stop_squatters(inner: &Inner) {
    let active: Vec<(Arc<Session>, AgentProcess)> = inner
        .registry_read()
        .values()
        .filter_map(|session| {
            let state = session.state();
            let process = state.process.filter(|_| state.status == SessionStatus::Active)?;
            Some((session.clone(), process))
        })
        .collect();
    if active.is_empty() {
        return;
    }
    let backend = inner.backend.clone();
    let running: Vec<AgentProcess> = active.iter().map(|(_, process)| *process).collect();
    let Ok(found) = tokio::task::spawn_blocking(move || backend.squatters(&running)).await else {
        return;
    };
    for (process, ports) in found {
        let Some((session, _)) = active.iter().find(|(_, candidate)| *candidate == process) else {
            continue;
        };
        tracing::warn!(session_id = %session.id, port = process.endpoint.port, ?ports, "the agent listens on other ports of the agent range; stopping it");
        let (done, _) = tokio::sync::oneshot::channel();
        session.send(Control::Stop { reason: StopReason::PortSquatting, done });
    }
}

/// Starts the task that removes finished sessions past their retention.
pub(super) fn spawn_purger(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let Some(strong) = inner.upgrade() else { return };
            let retain = strong.policy.retain_finished;
            purge_finished(&strong, retain).await;
            drop(strong);
            let period = (retain / 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
            tokio::time::sleep(period).await;
        }
    });
}

async fn purge_finished(inner: &Inner, retain: Duration) {
    let cutoff = now_ms() - retain.as_millis() as i64;
    let expired: Vec<Arc<Session>> = inner
        .registry_read()
        .values()
        .filter(|session| {
            let state = session.state();
            !state.status.is_live() && state.ended_at_ms.is_some_and(|ended| ended <= cutoff)
        })
        .cloned()
        .collect();
    for session in expired {
        let deletion = session.deletion.lock().await;
        if *deletion {
            continue;
        }
        match inner.store.delete(session.id.clone()).await {
            Ok(_) => {
                inner.backend.remove_files(&session.id).await;
                inner.unregister(&session);
                tracing::info!(session_id = %session.id, "purged a finished session");
            }
            Err(error) => tracing::warn!(error = format!("{error:#}"), "could not purge a session"),
        }
    }
}
