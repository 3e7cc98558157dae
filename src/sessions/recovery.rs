//! Recovery at startup (sessions.md): the registry is rebuilt from the store. On a database
//! this server has to itself, each session that was live when the previous server stopped
//! is taken (its lease), then re-adopted (through its stored `backend_ref`) or marked as
//! ended, and whatever the backend still runs for sessions nobody took back is ended. On a
//! database several replicas share, sessions are only loaded: the lease keeper takes over
//! those whose supervisor is gone (scale-out.md §3).

use std::collections::HashSet;
use std::sync::Arc;

use agentapi_proxy_client::{ExitReason, SessionStatus};
use tokio::sync::mpsc;

use super::backend::{BackendRef, Launched};
use super::session::Session;
use super::{ManagerState, supervisor};
use crate::clock::now_ms;
use crate::store::sessions::SessionRow;

/// Rebuilds the registry from the store (sessions.md "Recovery at startup").
pub(super) async fn recover_stored_sessions(inner: &Arc<ManagerState>) -> anyhow::Result<()> {
    let rows = inner.store.all().await?;
    if inner.sharing.change_log.is_some() {
        return load_shared(inner, rows).await;
    }
    let replica = &inner.sharing.replica;
    let mut taken_back = HashSet::new();
    for mut row in rows {
        let mut adopted = None;
        if row.status.is_live() {
            let claimed = inner
                .store
                .claim(row.id.clone(), replica.id.clone(), replica.lease_ttl_ms())
                .await?;
            let Some(claimed) = claimed else { continue };
            row = claimed;
            adopted = adopt_or_end(inner, &mut row).await;
            if adopted.is_some() {
                taken_back.insert(row.id.clone());
            }
            inner.store.save_state(row.clone()).await?;
        }
        let agent = adopted.as_ref().map(|launched| launched.agent.clone());
        let session = Arc::new(Session::of_row(row, agent, inner.feed.clone()));
        if let Some(launched) = adopted {
            supervise_adopted(inner, &session, launched);
        }
        inner.registry_write().insert(session.id.clone(), session);
    }
    for session_id in inner.backend.list().await {
        if !taken_back.contains(&session_id) {
            inner.backend.end_orphan(&session_id).await;
        }
    }
    Ok(())
}

/// Several replicas: every row becomes a session this replica follows (its agent is where
/// the row says); what the backend runs for sessions without any row is ended.
async fn load_shared(inner: &Arc<ManagerState>, rows: Vec<SessionRow>) -> anyhow::Result<()> {
    let mut known = HashSet::new();
    for row in rows {
        known.insert(row.id.clone());
        let agent = agent_of_row(inner, &row);
        let session = Arc::new(Session::of_row(row, agent, inner.feed.clone()));
        inner.registry_write().insert(session.id.clone(), session);
    }
    for session_id in inner.backend.list().await {
        // A row may have been inserted since they were loaded: look again before ending.
        if !known.contains(&session_id)
            && matches!(inner.store.get(session_id.clone()).await, Ok(None))
        {
            inner.backend.end_orphan(&session_id).await;
        }
    }
    Ok(())
}

/// Where the agent of a session stored by any replica answers, while it lives.
pub(super) fn agent_of_row(
    inner: &ManagerState,
    row: &SessionRow,
) -> Option<super::backend::AgentHandle> {
    let reference = BackendRef::new(row.backend_ref.clone()?);
    inner.backend.handle_of(&reference).filter(|_| row.status.is_live())
}

/// Takes back the agent of a live `row` this replica now holds; otherwise ends what is left
/// of it and marks the row `exited` (`lost_while_down`), or `failed` if it never had an
/// agent. A reference the backend cannot read (written by a newer build) counts as a lost
/// agent, never as a failure to start.
pub(super) async fn adopt_or_end(inner: &ManagerState, row: &mut SessionRow) -> Option<Launched> {
    let reference = row.backend_ref.clone().map(BackendRef::new);
    let adopted = match &reference {
        Some(reference) => inner.backend.adopt(reference).await,
        None => None,
    };
    if let Some(launched) = &adopted {
        tracing::info!(session_id = %row.id, endpoint = %launched.agent.endpoint, "re-adopted a running agent");
        row.status = SessionStatus::Active;
        row.port = Some(launched.agent.endpoint.port());
        row.backend_ref = Some(launched.agent.reference.as_str().to_string());
        return adopted;
    }
    if let Some(reference) = &reference {
        inner.backend.discard(reference).await;
    }
    let never_spawned = reference.is_none();
    tracing::warn!(session_id = %row.id, never_spawned, "a session's agent was not taken back");
    row.status = if never_spawned { SessionStatus::Failed } else { SessionStatus::Exited };
    row.exit_reason =
        Some(if never_spawned { ExitReason::StartFailed } else { ExitReason::LostWhileDown });
    row.exit_code = None;
    row.ended_at_ms = Some(now_ms());
    row.backend_ref = None;
    None
}

/// Starts the supervisor of an adopted agent.
pub(super) fn supervise_adopted(
    inner: &Arc<ManagerState>,
    session: &Arc<Session>,
    launched: Launched,
) {
    let (control, commands) = mpsc::unbounded_channel();
    session.attach_supervisor(control);
    let begin = supervisor::Begin::Adopted(launched);
    tokio::spawn(supervisor::supervise(inner.clone(), session.clone(), begin, commands));
}
