//! Recovery at startup (sessions.md): the registry is rebuilt from the store, each session
//! that was live when the previous server stopped is re-adopted (through its stored
//! `backend_ref`) or marked as ended, and whatever the backend still runs for sessions
//! nobody took back is ended.

use std::collections::HashSet;
use std::sync::Arc;

use agentapi_proxy_client::{ExitReason, SessionStatus};
use tokio::sync::mpsc;

use super::backend::BackendRef;
use super::session::{LiveState, Session};
use super::{ManagerState, supervisor};
use crate::clock::now_ms;

/// Rebuilds the registry from the store (sessions.md "Recovery at startup"). A session that
/// was live when the previous proxy stopped is re-adopted if its agent is the same one and
/// still answers; otherwise what is left of it is ended and it shows as `exited`
/// (`lost_while_down`), or `failed` if it never had an agent. A reference the backend cannot
/// read (written by a newer build) counts as a lost agent, never as a failure to start.
pub(super) async fn recover_stored_sessions(inner: &Arc<ManagerState>) -> anyhow::Result<()> {
    let rows = inner.store.all().await?;
    let mut taken_back = HashSet::new();
    for mut row in rows {
        let mut adopted = None;
        if row.status.is_live() {
            let reference = row.backend_ref.clone().map(BackendRef::new);
            adopted = match &reference {
                Some(reference) => inner.backend.adopt(reference).await,
                None => None,
            };
            if let Some(launched) = &adopted {
                tracing::info!(session_id = %row.id, endpoint = %launched.agent.endpoint, "re-adopted a running agent");
                row.status = SessionStatus::Active;
                row.port = Some(launched.agent.endpoint.port());
                row.backend_ref = Some(launched.agent.reference.as_str().to_string());
                taken_back.insert(row.id.clone());
            } else {
                if let Some(reference) = &reference {
                    inner.backend.discard(reference).await;
                }
                let never_spawned = reference.is_none();
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
                row.backend_ref = None;
            }
            inner.store.save_state(row.clone()).await?;
        }
        let state = LiveState {
            status: row.status,
            process: adopted.as_ref().map(|launched| launched.agent.clone()),
            port: row.port,
            ended_at_ms: row.ended_at_ms,
            exit_code: row.exit_code,
            exit_reason: row.exit_reason,
            agent_status: row.agent_status.clone(),
            initial_message: row.initial_message,
            restarts: row.restarts,
            failure: None,
            exit_details: None,
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
    for session_id in inner.backend.list().await {
        if !taken_back.contains(&session_id) {
            inner.backend.end_orphan(&session_id).await;
        }
    }
    Ok(())
}
