//! Supervision leases across replicas (scale-out.md §3): this replica renews the leases of
//! the sessions it supervises, lets go of any it finds taken, takes over sessions whose
//! supervisor's lease ran out (a replica that died), and stops sessions another replica
//! supervises when a `DELETE` reaches this one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use agentapi_proxy_client::SessionStatus;

use super::ManagerState;
use super::recovery::{adopt_or_end, agent_of_row, supervise_adopted};
use super::session::{Control, Session, StopReason};
use crate::error::ApiError;
use crate::store::sessions::SessionRow;

/// Most expired sessions taken over in one round (the rest wait for the next).
const TAKEOVERS_PER_ROUND: u32 = 16;

/// Renews this replica's leases and takes over expired ones, every third of the lease.
pub(super) fn spawn_keeper(inner: Weak<ManagerState>) {
    tokio::spawn(async move {
        let Some(every) = inner.upgrade().map(|inner| inner.sharing.replica.renew_every()) else {
            return;
        };
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed_at = Instant::now();
        let taking_over = TakingOver::default();
        let mut reported: HashMap<String, i64> = HashMap::new();
        loop {
            ticks.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if inner.shutdown.stage() != crate::shutdown::Stage::Running {
                continue;
            }
            renew(&inner, &mut renewed_at, &taking_over).await;
            take_over_expired(&inner, &taking_over).await;
            report_activity(&inner, &mut reported).await;
        }
    });
}

/// Tells the store about traffic this replica proxied to sessions another replica
/// supervises (its idle timeout counts it): each session with a request since the last
/// report, or a stream open now.
async fn report_activity(inner: &ManagerState, reported: &mut HashMap<String, i64>) {
    let now = crate::clock::now_ms();
    let active: Vec<(String, i64)> = inner
        .registry_read()
        .values()
        .filter(|session| session.status().is_live() && !session.is_supervised_here())
        .filter_map(|session| {
            let streams = session.activity.open_streams.load(Ordering::Relaxed);
            let last = session.activity.last_request_ms.load(Ordering::Relaxed);
            let at = if streams > 0 { now } else { last };
            (at > reported.get(&session.id).copied().unwrap_or(session.started_at_ms))
                .then(|| (session.id.clone(), at))
        })
        .collect();
    reported.retain(|id, _| inner.registry_read().contains_key(id));
    for (id, at) in active {
        if inner.store.record_activity(id.clone(), at).await.is_ok() {
            reported.insert(id, at);
        }
    }
}

/// Sessions being taken over by this replica right now.
type TakingOver = Arc<std::sync::Mutex<HashSet<String>>>;

/// Extends this replica's leases; lets go of sessions whose lease another replica holds,
/// and of every session once the leases could not be renewed for a whole lease (another
/// replica may have taken them by now). A lease this replica holds with nobody watching
/// the agent (this replica restarted under the same `server.replica_id`) is taken over.
async fn renew(inner: &Arc<ManagerState>, renewed_at: &mut Instant, taking_over: &TakingOver) {
    let replica = &inner.sharing.replica;
    let supervised = supervised_here(inner);
    match inner.store.renew_leases(replica.id.clone(), replica.lease_ttl_ms()).await {
        Ok(renewed) => {
            *renewed_at = Instant::now();
            let renewed: HashSet<String> = renewed.into_iter().collect();
            let watched: HashSet<&str> = supervised.iter().map(|s| s.id.as_str()).collect();
            for id in renewed.iter().filter(|id| !watched.contains(id.as_str())) {
                if let Ok(Some(row)) = inner.store.get(id.clone()).await {
                    start_takeover(inner, taking_over, row);
                }
            }
            for session in supervised.iter().filter(|session| !renewed.contains(&session.id)) {
                // Not renewed: taken, gone, or ended (or inserted after the renewal); ask.
                match inner.store.get(session.id.clone()).await {
                    Ok(Some(row)) if row.supervisor.as_deref() == Some(replica.id.as_str()) => {}
                    Ok(_) => {
                        tracing::warn!(session_id = %session.id, "lost the session's lease");
                        session.send(Control::LetGo);
                    }
                    Err(_) => {}
                }
            }
        }
        Err(error) => {
            crate::telemetry::store_error();
            tracing::error!(error = format!("{error:#}"), "could not renew the leases");
            if renewed_at.elapsed() >= replica.lease_ttl {
                tracing::error!(
                    count = supervised.len(),
                    "the leases ran out unrenewed; letting every session go"
                );
                for session in &supervised {
                    session.send(Control::LetGo);
                }
            }
        }
    }
}

/// The live sessions a supervisor on this replica watches.
fn supervised_here(inner: &ManagerState) -> Vec<Arc<Session>> {
    inner
        .registry_read()
        .values()
        .filter(|session| session.status().is_live() && session.is_supervised_here())
        .cloned()
        .collect()
}

/// Takes the leases that ran out and re-adopts each session in a task of its own (adopting
/// may wait on the backend; renewals must not).
async fn take_over_expired(inner: &Arc<ManagerState>, taking_over: &TakingOver) {
    let replica = &inner.sharing.replica;
    let claimed = inner
        .store
        .claim_expired(replica.id.clone(), replica.lease_ttl_ms(), TAKEOVERS_PER_ROUND)
        .await;
    let rows = match claimed {
        Ok(rows) => rows,
        Err(error) => {
            crate::telemetry::store_error();
            tracing::error!(error = format!("{error:#}"), "could not look for expired leases");
            return;
        }
    };
    for row in rows {
        start_takeover(inner, taking_over, row);
    }
}

/// Takes over `row`'s session in a task of its own, unless that already runs.
fn start_takeover(inner: &Arc<ManagerState>, taking_over: &TakingOver, row: SessionRow) {
    let mut taking = taking_over.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !taking.insert(row.id.clone()) {
        return;
    }
    drop(taking);
    let inner = inner.clone();
    let taking_over = taking_over.clone();
    tokio::spawn(async move {
        let id = row.id.clone();
        take_over(&inner, row).await;
        taking_over.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
    });
}

/// Becomes the supervisor of a session whose previous one is gone: its agent is adopted,
/// or the session ends as it would at a restart.
async fn take_over(inner: &Arc<ManagerState>, mut row: SessionRow) {
    tracing::info!(session_id = %row.id, previous = ?row.supervisor, "taking over a session");
    let existing = inner.registry_read().get(&row.id).cloned();
    let session = match existing {
        Some(session) if session.is_supervised_here() => return,
        Some(session) => session,
        None => {
            let agent = agent_of_row(inner, &row);
            let session = Arc::new(Session::of_row(row.clone(), agent, inner.feed.clone()));
            inner.registry_write().insert(session.id.clone(), session.clone());
            session
        }
    };
    let Ok(_not_being_deleted) = session.deletion.try_lock() else { return };
    if !row.status.is_live() {
        return;
    }
    if row.status == SessionStatus::Stopping {
        return finish_stopping(inner, &session, row).await;
    }
    let adopted = adopt_or_end(inner, &mut row).await;
    let replica = inner.sharing.replica.id.clone();
    match inner.store.save_state_as(row.clone(), replica).await {
        Ok(true) => {}
        Ok(false) => return, // taken again meanwhile (a DELETE elsewhere)
        Err(error) => {
            crate::telemetry::store_error();
            tracing::error!(error = format!("{error:#}"), "could not record a takeover");
        }
    }
    session.follow_row(&row, adopted.as_ref().map(|launched| launched.agent.clone()));
    if let Some(launched) = adopted {
        supervise_adopted(inner, &session, launched);
    }
}

/// A session taken over while `stopping` (its supervisor died stopping it, or a stop timed
/// out): the stop is finished, never undone; if the backend still cannot stop the agent,
/// the session stays `stopping` and the next round tries again.
async fn finish_stopping(inner: &ManagerState, session: &Session, mut row: SessionRow) {
    if let Some(agent) = agent_of_row(inner, &row) {
        if !inner.backend.stop(&agent, inner.policy.stop_grace).await {
            return;
        }
        inner.backend.release(&agent);
    }
    row.status = SessionStatus::Exited;
    row.ended_at_ms = Some(crate::clock::now_ms());
    row.exit_code = None;
    row.exit_reason = Some(StopReason::Deleted.exit_reason());
    row.backend_ref = None;
    if let Ok(true) = inner.store.save_state_as(row.clone(), inner.sharing.replica.id.clone()).await
    {
        session.follow_row(&row, None);
    }
}

/// A `DELETE` of a session another replica supervises: this replica takes the session (the
/// supervisor sees the row change and lets go), stops its agent through the backend, and
/// returns once nothing of it is left (true), or when the backend could not stop it in time
/// (false: it stays `stopping`; a DELETE again tries once more).
pub(super) async fn stop_elsewhere(
    inner: &ManagerState,
    session: &Session,
) -> Result<bool, ApiError> {
    let replica = &inner.sharing.replica;
    let claimed =
        inner.store.claim(session.id.clone(), replica.id.clone(), replica.lease_ttl_ms()).await;
    let mut row = match claimed {
        Ok(Some(row)) => row,
        Ok(None) => return Ok(true),
        Err(error) => {
            crate::telemetry::store_error();
            tracing::error!(error = format!("{error:#}"), "could not take a session to delete it");
            return Err(ApiError::StoreUnavailable);
        }
    };
    if !row.status.is_live() {
        return Ok(true);
    }
    let agent = agent_of_row(inner, &row);
    row.status = SessionStatus::Stopping;
    let _ = inner.store.save_state_as(row.clone(), replica.id.clone()).await;
    session.follow_row(&row, agent.clone());
    if let Some(agent) = agent {
        if !inner.backend.stop(&agent, inner.policy.stop_grace).await {
            return Ok(false);
        }
        inner.backend.release(&agent);
    }
    Ok(true)
}
