//! Following what other replicas change (scale-out.md §3): session rows are read back from
//! the change log in revision order, at once when a notification says another replica
//! wrote, and every [`POLL`] anyway, so a lost notification delays a change by one poll. Each
//! row updates (or adds) the session here; a session this replica supervises is let go when
//! the row names another supervisor; a deletion removes the session.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use super::ManagerState;
use super::recovery::agent_of_row;
use super::session::{Control, Session};
use crate::store::changes::{COMMIT_WINDOW, ChangeLog, Notice};
use crate::store::sessions::SessionRow;

/// How often the change log is read without a notification: the bound on staleness when
/// notifications are lost (spec: within 1 s).
const POLL: Duration = Duration::from_millis(500);
/// How long the revision of a deleted session is remembered (an older row read again in the
/// overlap must not bring it back).
const FORGET_DELETED_AFTER: Duration = Duration::from_secs(60);

/// Follows the change log for as long as the manager lives.
pub(super) fn spawn_follower(inner: Weak<ManagerState>, log: Arc<dyn ChangeLog>) {
    tokio::spawn(async move {
        let mut follower = Follower::default();
        let mut notices = subscribe(&*log).await;
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                notice = notices.recv() => {
                    let Some(notice) = notice else {
                        notices = subscribe(&*log).await;
                        continue;
                    };
                    let Some(inner) = inner.upgrade() else { return };
                    if !worth_reading(&inner, notice) {
                        continue;
                    }
                    // One read covers every change announced meanwhile; other notices still act.
                    while let Ok(pending) = notices.try_recv() {
                        worth_reading(&inner, pending);
                    }
                    follower.read(&inner, &*log).await;
                }
                _ = ticks.tick() => {
                    let Some(inner) = inner.upgrade() else { return };
                    follower.read(&inner, &*log).await;
                }
            }
        }
    });
}

/// Notices from the log; on failure, retried until it works (polling goes on meanwhile:
/// a channel that never yields is returned for the wait).
async fn subscribe(log: &dyn ChangeLog) -> UnboundedReceiver<Notice> {
    let mut pause = Duration::from_millis(200);
    loop {
        match log.subscribe().await {
            Ok(notices) => return notices,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot listen for other replicas' changes"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Whether a notice calls for reading the log now (another replica's change, or a gap).
fn worth_reading(inner: &ManagerState, notice: Notice) -> bool {
    match notice {
        Notice::Session { origin, .. } => origin != inner.sharing.replica.id,
        Notice::Reconnected => true,
        Notice::SignInEnded => {
            if let Some(callback) = inner.sign_in_ended.get() {
                (callback.0)();
            }
            false
        }
    }
}

/// Where reading resumes, and what was already applied.
#[derive(Default)]
struct Follower {
    /// Revisions read, with when: reads start at the newest one older than
    /// [`COMMIT_WINDOW`] (a revision drawn before it may still commit).
    marks: VecDeque<(Instant, i64)>,
    safe: i64,
    /// The revision applied per session (a deletion's too).
    applied: HashMap<String, i64>,
    deleted_at: VecDeque<(Instant, String)>,
}

/// One change, in revision order.
enum Change {
    Row(Box<SessionRow>),
    Deleted(String),
}

impl Follower {
    async fn read(&mut self, inner: &Arc<ManagerState>, log: &dyn ChangeLog) {
        let changes = match log.sessions_since(self.safe).await {
            Ok(changes) => changes,
            Err(error) => {
                crate::telemetry::store_error();
                tracing::warn!(error = format!("{error:#}"), "cannot read other replicas' changes");
                return;
            }
        };
        let mut ordered: Vec<(i64, Change)> = changes
            .rows
            .into_iter()
            .map(|(revision, row)| (revision, Change::Row(Box::new(row))))
            .chain(
                changes.deleted.into_iter().map(|(revision, id)| (revision, Change::Deleted(id))),
            )
            .collect();
        ordered.sort_by_key(|(revision, _)| *revision);
        let mut changed = false;
        for (revision, change) in ordered {
            let id = match &change {
                Change::Row(row) => &row.id,
                Change::Deleted(id) => id,
            };
            if self.applied.get(id).is_some_and(|seen| *seen >= revision) {
                continue;
            }
            self.applied.insert(id.clone(), revision);
            changed = true;
            match change {
                Change::Row(row) => apply_row(inner, *row).await,
                Change::Deleted(id) => {
                    self.deleted_at.push_back((Instant::now(), id.clone()));
                    apply_deletion(inner, &id).await;
                }
            }
        }
        if changed {
            inner.search.forget_pages();
        }
        self.advance(changes.newest);
    }

    fn advance(&mut self, newest: i64) {
        let now = Instant::now();
        self.marks.push_back((now, newest));
        while let Some((at, revision)) = self.marks.front().copied() {
            if now.duration_since(at) < COMMIT_WINDOW {
                break;
            }
            self.safe = self.safe.max(revision);
            self.marks.pop_front();
        }
        while let Some((at, _)) = self.deleted_at.front() {
            if now.duration_since(*at) < FORGET_DELETED_AFTER {
                break;
            }
            if let Some((_, id)) = self.deleted_at.pop_front() {
                self.applied.remove(&id);
            }
        }
    }
}

/// A row some replica wrote: the session here takes its state, unless this replica
/// supervises it and the row still says so (the supervisor's own state is newer). A row
/// naming another supervisor of a session supervised here is checked against the store
/// first: it may have been read just before this replica took the session over.
async fn apply_row(inner: &ManagerState, mut row: SessionRow) {
    let me = inner.sharing.replica.id.as_str();
    let existing = inner.registry_read().get(&row.id).cloned();
    let ours = row.supervisor.as_deref() == Some(me);
    match existing {
        Some(_) if ours => {}
        Some(session) => {
            if session.is_supervised_here() {
                match inner.store.get(row.id.clone()).await {
                    Ok(Some(now)) if now.supervisor.as_deref() != Some(me) => row = now,
                    _ => return, // still ours, gone (a deletion follows), or unknown
                }
                tracing::info!(session_id = %session.id, supervisor = ?row.supervisor, "another replica took the session");
                session.send(Control::LetGo);
            }
            let agent = agent_of_row(inner, &row);
            session.follow_row(&row, agent);
        }
        None if ours => {} // being deleted here, or not registered yet
        None => {
            let agent = agent_of_row(inner, &row);
            let session = Arc::new(Session::of_row(row, agent, inner.feed.clone()));
            inner.feed.updated(|| session.detail());
            inner.registry_write().insert(session.id.clone(), session);
        }
    }
}

/// A session some replica deleted (it stopped the agent): gone here too.
async fn apply_deletion(inner: &ManagerState, id: &str) {
    let Some(session) = inner.registry_read().get(id).cloned() else { return };
    if session.is_supervised_here() {
        session.send(Control::LetGo);
    }
    inner.unregister(&session);
    if let Some(tokens) = inner.agent_tokens.get() {
        tokens.forget_here(id);
    }
}
