//! Work on the registry as a whole while the server runs: purging finished sessions once
//! `retain_finished_seconds` have passed, and stopping agents that listen on other ports of
//! the agent range (`port_squatting`). Rebuilding the registry at boot is `recovery`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use agentapi_proxy_client::SessionStatus;

use super::ManagerState;
use super::backend::AgentHandle;
use super::session::{Control, Session, StopReason};
use crate::clock::now_ms;

/// How often the agent range is looked over for agents listening on ports not theirs.
const PORT_WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Starts the task that stops squatting agents: one look at the host's listeners per
/// [`PORT_WATCH_PERIOD`] for every active session at once.
pub(super) fn spawn_port_watch(inner: Weak<ManagerState>) {
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

async fn stop_squatters(inner: &ManagerState) {
    let active: Vec<(Arc<Session>, AgentHandle)> = inner
        .registry_read()
        .values()
        .filter_map(|session| {
            let state = session.state();
            let agent = state.process.filter(|_| state.status == SessionStatus::Active)?;
            Some((session.clone(), agent))
        })
        .collect();
    if active.is_empty() {
        return;
    }
    let backend = inner.backend.clone();
    let running: Vec<AgentHandle> = active.iter().map(|(_, agent)| agent.clone()).collect();
    let Ok(found) = tokio::task::spawn_blocking(move || backend.squatters(&running)).await else {
        return;
    };
    for (agent, ports) in found {
        let Some((session, _)) = active.iter().find(|(_, candidate)| *candidate == agent) else {
            continue;
        };
        tracing::warn!(session_id = %session.id, endpoint = %agent.endpoint, ?ports, "the agent listens on other ports of the agent range; stopping it");
        let (done, _) = tokio::sync::oneshot::channel();
        session.send(Control::Stop { reason: StopReason::PortSquatting, done });
    }
}

/// Starts the task that removes finished sessions past their retention.
pub(super) fn spawn_purger(inner: Weak<ManagerState>) {
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

async fn purge_finished(inner: &ManagerState, retain: Duration) {
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
