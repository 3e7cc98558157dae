//! Recovery at startup (sessions.md): the registry is rebuilt from the store, and each session
//! that was live when the previous server stopped is re-adopted or marked as ended.

use std::net::Ipv4Addr;
use std::sync::Arc;

use agentapi_proxy_client::{ExitReason, SessionStatus};
use tokio::sync::mpsc;

use super::backend::{AgentProcess, Endpoint};
use super::session::{LiveState, Session};
use super::{ManagerState, supervisor};
use crate::clock::now_ms;

/// Rebuilds the registry from the store (sessions.md "Recovery at startup"). A session that
/// was live when the previous proxy stopped is re-adopted if its agent is the same process
/// and still answers; otherwise what is left of its process group is killed and it shows as
/// `exited` (`lost_while_down`), or `failed` if it never had a process.
pub(super) async fn recover_stored_sessions(inner: &Arc<ManagerState>) -> anyhow::Result<()> {
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
