//! Work on the registry as a whole: loading stored sessions at boot, and purging finished
//! sessions once `retain_finished_seconds` have passed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use agentapi_proxy_client::{ExitReason, SessionStatus};

use super::Inner;
use super::local::procfs;
use super::session::{LiveState, Session};
use crate::clock::now_ms;

/// Rebuilds the registry from the store. A session that was live when the previous proxy
/// stopped cannot be re-adopted yet: its surviving process group is killed and it is shown
/// as `exited` (`lost_while_down`), or `failed` if it never had a process.
pub(super) async fn load_stored_sessions(inner: &Inner) -> anyhow::Result<()> {
    let rows = inner.store.all().await?;
    for mut row in rows {
        if row.status.is_live() {
            if let (Some(pid), Some(ticks)) = (row.pid, row.pid_start_ticks)
                && procfs::stat(pid)
                    .is_some_and(|stat| stat.start_ticks == ticks && stat.group == pid)
            {
                tracing::warn!(session_id = %row.id, pid, "killing the agent of a session left from a previous run");
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let never_spawned = row.pid.is_none();
            row.status = if never_spawned { SessionStatus::Failed } else { SessionStatus::Exited };
            row.exit_reason = Some(if never_spawned {
                ExitReason::StartFailed
            } else {
                ExitReason::LostWhileDown
            });
            row.exit_code = None;
            row.ended_at_ms = Some(now_ms());
            inner.store.save_state(row.clone()).await?;
        }
        let state = LiveState {
            status: row.status,
            process: None,
            port: row.port,
            ended_at_ms: row.ended_at_ms,
            exit_code: row.exit_code,
            exit_reason: row.exit_reason,
            agent_status: row.agent_status.clone(),
            initial_message: row.initial_message,
            restarts: row.restarts,
            failure: None,
        };
        let session = Session::from_parts(
            row.id.clone(),
            row.user_id,
            row.tags,
            row.env_names,
            row.started_at_ms,
            state,
        );
        inner.registry_write().insert(row.id, Arc::new(session));
    }
    Ok(())
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
                inner.registry_write().remove(&session.id);
                tracing::info!(session_id = %session.id, "purged a finished session");
            }
            Err(error) => tracing::warn!(error = format!("{error:#}"), "could not purge a session"),
        }
    }
}
