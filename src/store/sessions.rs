//! Session rows: the `SessionStore` trait and its SQLite implementation. Everything the
//! registry needs to rebuild itself after a restart, and the indexed search behind `/search`
//! (rows out: the sessions layer writes the JSON and keeps the latest pages). Leases and
//! admission (scale-out.md §3) are in `sessions/leases.rs`.

use std::collections::BTreeMap;

use agentapi_proxy_client::{ExitReason, InitialMessageState, SessionStatus};
use anyhow::Context;
use rusqlite::{OptionalExtension, Row, params};

use super::{Durability, Store};

mod leases;
mod search;
mod write;

use write::{Encoded, insert_row, update_state};

/// One stored session. Environment values are never part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub status: SessionStatus,
    pub port: Option<u16>,
    /// What the session's backend needs to find its agent again: opaque versioned JSON,
    /// read only by that backend; `None` while no agent exists.
    pub backend_ref: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub env_names: Vec<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub exit_reason: Option<ExitReason>,
    pub agent_status: Option<String>,
    pub initial_message: Option<InitialMessageState>,
    pub restarts: u32,
    /// The replica that watches the agent (scale-out.md §3); `None` before anyone took it.
    /// Written by `insert_admitted` and the lease methods only, never by `save_state`.
    pub supervisor: Option<String>,
    /// Until when the supervisor's lease holds (ms since the epoch, the database's clock).
    pub lease_expires_at_ms: Option<i64>,
    /// What the backend said about the last end (JSON text: the cluster's reason), so
    /// every replica shows it.
    pub exit_details: Option<String>,
}

/// The limits a new session is admitted under; 0 means no per-user limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub max_sessions: u64,
    pub max_sessions_per_user: u64,
}

impl Admission {
    /// Why one more session is refused when `live` sessions are live, `owned` of them the
    /// owner's: capacity is checked before the owner's quota. `None`: admitted.
    pub(crate) fn refusal(&self, live: i64, owned: i64) -> Option<Admitted> {
        let live = u64::try_from(live).unwrap_or(0);
        let owned = u64::try_from(owned).unwrap_or(0);
        if live >= self.max_sessions {
            Some(Admitted::AtCapacity)
        } else if self.max_sessions_per_user > 0 && owned >= self.max_sessions_per_user {
            Some(Admitted::QuotaExceeded)
        } else {
            None
        }
    }
}

/// Whether [`SessionStore::insert_admitted`] inserted the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    Inserted,
    /// `max_sessions` live sessions exist (any owner, any replica).
    AtCapacity,
    /// The owner already has `max_sessions_per_user` live sessions.
    QuotaExceeded,
}

/// Statuses that count against the limits: the session holds (or is getting) an agent.
pub const LIVE_STATUSES: [&str; 3] = ["starting", "active", "stopping"];

/// Filters of `GET /search`; every given one must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SessionFilter {
    /// At most [`SessionFilter::MAX_TAG_FILTERS`] (each is a join in the query).
    pub user_id: Option<String>,
    pub status: Option<SessionStatus>,
    pub tags: Vec<(String, String)>,
    pub limit: u32,
    pub offset: u64,
}

impl SessionFilter {
    /// Most `tag.<key>=<value>` filters one search takes (security.md row 33): SQLite's
    /// expression tree gives out near a thousand.
    pub const MAX_TAG_FILTERS: usize = 32;
}

/// One `/search` item as stored: the columns a summary shows.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub id: String,
    pub user_id: String,
    pub status: SessionStatus,
    pub started_at_ms: i64,
    pub port: Option<u16>,
    pub tags: BTreeMap<String, String>,
    pub exit_code: Option<i32>,
    pub exit_reason: Option<ExitReason>,
}

/// One page of a search, and how many sessions match in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchPage {
    pub rows: Vec<SummaryRow>,
    pub total: u64,
}

/// The total a page tells without counting: a page that is not full ends the matches
/// (unless it is empty past the end, where the count is unknown). `None`: count.
pub fn total_from_page(filter: &SessionFilter, shown: usize) -> Option<u64> {
    let shown = shown as u64;
    (shown < u64::from(filter.limit) && (shown > 0 || filter.offset == 0))
        .then_some(filter.offset + shown)
}

/// Stored tags (a JSON object of strings); anything else reads as no tags.
pub(crate) fn decode_tags(stored: &str) -> BTreeMap<String, String> {
    if stored == "{}" {
        return BTreeMap::new();
    }
    serde_json::from_str(stored).unwrap_or_default()
}

/// Storage of sessions, written in portable SQL so another database can implement it.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug {
    /// Inserts a new session with its tags, in one transaction.
    async fn insert(&self, row: SessionRow) -> anyhow::Result<()>;
    /// Writes every mutable column of an existing session.
    async fn save_state(&self, row: SessionRow) -> anyhow::Result<()>;
    /// Removes a session and its tags; false when it did not exist.
    async fn delete(&self, id: String) -> anyhow::Result<bool>;
    async fn get(&self, id: String) -> anyhow::Result<Option<SessionRow>>;
    /// One page of the sessions matching `filter`, newest first (`started_at`, then `id`,
    /// both descending, ids compared byte by byte), and how many match in all.
    async fn search(&self, filter: SessionFilter) -> anyhow::Result<SearchPage>;
    /// Every stored session (the registry is rebuilt from it at boot).
    async fn all(&self) -> anyhow::Result<Vec<SessionRow>>;

    /// Counts the live sessions ([`LIVE_STATUSES`]) and inserts `row` (with its tags) only if
    /// `admission` allows another, in one transaction under a lock every replica's insert
    /// takes, so concurrent starts on any number of replicas never exceed the limits. The
    /// row is inserted with `supervisor` holding its lease for `lease_ttl_ms` (the
    /// `supervisor` and `lease_expires_at_ms` fields of `row` are ignored).
    async fn insert_admitted(
        &self,
        row: SessionRow,
        admission: Admission,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Admitted>;

    /// `save_state`, but only while `supervisor` still holds the session (its `supervisor`
    /// column equals it, whether or not the lease has run out); `Ok(false)` when the row is
    /// gone or another replica took it, and then nothing was written.
    async fn save_state_as(&self, row: SessionRow, supervisor: String) -> anyhow::Result<bool>;

    /// Extends to now + `lease_ttl_ms` the leases `supervisor` holds on live sessions; the
    /// ids of the sessions renewed (one statement).
    async fn renew_leases(
        &self,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Vec<String>>;

    /// Takes, for `supervisor` until now + `lease_ttl_ms`, the lease of at most `limit` live
    /// sessions whose lease ran out or that have no supervisor, skipping rows another
    /// transaction is writing; the rows taken (with their new lease).
    async fn claim_expired(
        &self,
        supervisor: String,
        lease_ttl_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRow>>;

    /// Takes the lease of one session whoever holds it (a DELETE answered by a replica that
    /// does not supervise the session; recovery on a database only this server uses); the
    /// row with its new lease, or `None` when it does not exist.
    async fn claim(
        &self,
        id: String,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Option<SessionRow>>;

    /// Ends every lease `supervisor` holds at once (`lease_expires_at` = 0, supervisor
    /// kept), so another replica takes the sessions without waiting (clean shutdown with
    /// `on_shutdown: keep`); how many.
    async fn release_leases(&self, supervisor: String) -> anyhow::Result<u64>;

    /// Records traffic to a session seen by a replica that does not supervise it, so the
    /// supervisor's idle timeout counts it (the latest of all reports is kept).
    async fn record_activity(&self, id: String, at_ms: i64) -> anyhow::Result<()>;

    /// The latest traffic other replicas reported for a session.
    async fn last_activity(&self, id: String) -> anyhow::Result<Option<i64>>;
}

/// Session rows need to survive a crash of this proxy, so that its agents, which outlive
/// it, are found again; a power loss ends every agent too, and the few latest changes it
/// may roll back only concern sessions that are gone anyway. Not waiting for the disk
/// takes milliseconds off every start and lets starts run at the rate of memory writes.
const SESSION_WRITES: Durability = Durability::ProcessCrash;

pub(crate) const COLUMNS: &str = "id, user_id, status, port, backend_ref, tags, env_names, started_at, \
    ended_at, exit_code, exit_reason, agent_status, initial_message, restarts, supervisor, \
    lease_expires_at, exit_details";

/// [`LIVE_STATUSES`] as an SQL list (`'starting', 'active', 'stopping'`), for `status IN (..)`.
pub(crate) fn live_statuses_sql() -> String {
    LIVE_STATUSES.map(|status| format!("'{status}'")).join(", ")
}

pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let text = |index: usize| row.get::<_, String>(index);
    let status: String = text(2)?;
    let tags: String = text(5)?;
    let env_names: String = text(6)?;
    let exit_reason: Option<String> = row.get(10)?;
    let initial: Option<String> = row.get(12)?;
    Ok(SessionRow {
        id: text(0)?,
        user_id: text(1)?,
        status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
        port: row.get::<_, Option<i64>>(3)?.and_then(|port| u16::try_from(port).ok()),
        backend_ref: row.get(4)?,
        tags: decode_tags(&tags),
        env_names: serde_json::from_str(&env_names).unwrap_or_default(),
        started_at_ms: row.get(7)?,
        ended_at_ms: row.get(8)?,
        exit_code: row.get(9)?,
        exit_reason: exit_reason.as_deref().and_then(ExitReason::parse),
        agent_status: row.get(11)?,
        initial_message: initial.as_deref().and_then(InitialMessageState::parse),
        restarts: row.get(13)?,
        supervisor: row.get(14)?,
        lease_expires_at_ms: row.get(15)?,
        exit_details: row.get(16)?,
    })
}

pub(crate) fn json(value: &impl serde::Serialize) -> anyhow::Result<String> {
    serde_json::to_string(value).context("while encoding a column as JSON")
}

/// The SQLite implementation, on the shared [`Store`] connection.
#[derive(Debug, Clone)]
pub struct SqliteSessions {
    store: Store,
}

impl SqliteSessions {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Runs a write to the sessions tables.
    async fn write<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
    {
        self.store.write(SESSION_WRITES, work).await
    }
}

#[async_trait::async_trait]
impl SessionStore for SqliteSessions {
    async fn insert(&self, row: SessionRow) -> anyhow::Result<()> {
        let encoded = Encoded::of(&row)?;
        self.write(move |connection| {
            let transaction =
                connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            insert_row(&transaction, &row, &encoded)?;
            transaction.commit()?;
            Ok(())
        })
        .await
        .context("while inserting a session")
    }

    async fn save_state(&self, row: SessionRow) -> anyhow::Result<()> {
        self.write(move |connection| {
            update_state(connection, &row, None)?;
            Ok(())
        })
        .await
        .context("while saving a session's state")
    }

    async fn delete(&self, id: String) -> anyhow::Result<bool> {
        self.write(move |connection| {
            Ok(connection.execute("DELETE FROM sessions WHERE id = ?1", params![id])? > 0)
        })
        .await
        .context("while deleting a session")
    }

    async fn get(&self, id: String) -> anyhow::Result<Option<SessionRow>> {
        self.store
            .read(move |connection| {
                Ok(connection
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
                        params![id],
                        from_row,
                    )
                    .optional()?)
            })
            .await
            .context("while reading a session")
    }

    async fn search(&self, filter: SessionFilter) -> anyhow::Result<SearchPage> {
        self.store
            .read(move |connection| search::search_page(connection, &filter))
            .await
            .context("while searching sessions")
    }

    async fn all(&self) -> anyhow::Result<Vec<SessionRow>> {
        self.store
            .read(|connection| {
                let mut statement = connection
                    .prepare(&format!("SELECT {COLUMNS} FROM sessions ORDER BY started_at"))?;
                let rows = statement.query_map([], from_row)?.collect::<rusqlite::Result<_>>()?;
                Ok(rows)
            })
            .await
            .context("while loading sessions")
    }

    async fn insert_admitted(
        &self,
        row: SessionRow,
        admission: Admission,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Admitted> {
        let encoded = Encoded::of(&row)?;
        self.write(move |connection| {
            leases::insert_admitted(connection, row, &encoded, admission, supervisor, lease_ttl_ms)
        })
        .await
        .context("while admitting a session")
    }

    async fn save_state_as(&self, row: SessionRow, supervisor: String) -> anyhow::Result<bool> {
        self.write(move |connection| Ok(update_state(connection, &row, Some(&supervisor))? > 0))
            .await
            .context("while saving a supervised session's state")
    }

    async fn renew_leases(
        &self,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Vec<String>> {
        self.write(move |connection| leases::renew(connection, &supervisor, lease_ttl_ms))
            .await
            .context("while renewing leases")
    }

    async fn claim_expired(
        &self,
        supervisor: String,
        lease_ttl_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRow>> {
        self.write(move |connection| {
            leases::claim_expired(connection, &supervisor, lease_ttl_ms, limit)
        })
        .await
        .context("while claiming expired leases")
    }

    async fn claim(
        &self,
        id: String,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Option<SessionRow>> {
        self.write(move |connection| leases::claim(connection, &id, &supervisor, lease_ttl_ms))
            .await
            .context("while claiming a session")
    }

    async fn release_leases(&self, supervisor: String) -> anyhow::Result<u64> {
        self.write(move |connection| leases::release(connection, &supervisor))
            .await
            .context("while releasing leases")
    }

    async fn record_activity(&self, id: String, at_ms: i64) -> anyhow::Result<()> {
        self.write(move |connection| leases::record_activity(connection, &id, at_ms))
            .await
            .context("while recording a session's activity")
    }

    async fn last_activity(&self, id: String) -> anyhow::Result<Option<i64>> {
        self.store
            .read(move |connection| leases::last_activity(connection, &id))
            .await
            .context("while reading a session's activity")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::Location;

    pub(crate) fn row(id: &str, user: &str, started: i64, tags: &[(&str, &str)]) -> SessionRow {
        SessionRow {
            id: id.into(),
            user_id: user.into(),
            status: SessionStatus::Active,
            port: Some(9000),
            backend_ref: Some(
                r#"{"v":1,"kind":"local","pid":42,"start_ticks":7,"port":9000}"#.into(),
            ),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            env_names: vec!["A".into()],
            started_at_ms: started,
            ended_at_ms: None,
            exit_code: None,
            exit_reason: None,
            agent_status: None,
            initial_message: None,
            restarts: 0,
            supervisor: None,
            lease_expires_at_ms: None,
            exit_details: None,
        }
    }

    #[tokio::test]
    async fn rows_round_trip_and_search_filters_pages_and_counts() {
        let sessions = SqliteSessions::new(Store::open(Location::Memory).expect("store"));
        sessions
            .insert(row("a", "alice", 1, &[("repository", "o/r"), ("team", "web")]))
            .await
            .expect("a");
        sessions.insert(row("b", "alice", 2, &[("repository", "o/r")])).await.expect("b");
        sessions.insert(row("c", "bob", 3, &[("team", "web")])).await.expect("c");

        let stored = sessions.get("a".into()).await.expect("get").expect("exists");
        assert_eq!(stored, row("a", "alice", 1, &[("repository", "o/r"), ("team", "web")]));

        let search = |filter: SessionFilter| {
            let sessions = sessions.clone();
            async move {
                let page = sessions.search(filter).await.expect("search");
                (page.rows.into_iter().map(|s| s.id).collect::<Vec<_>>(), page.total)
            }
        };
        let all = SessionFilter { limit: 100, ..SessionFilter::default() };
        assert_eq!(search(all.clone()).await, (vec!["c".into(), "b".into(), "a".into()], 3));
        let alice = SessionFilter { user_id: Some("alice".into()), ..all.clone() };
        assert_eq!(search(alice).await, (vec!["b".into(), "a".into()], 2));
        let tagged = SessionFilter {
            tags: vec![("team".into(), "web".into()), ("repository".into(), "o/r".into())],
            ..all.clone()
        };
        assert_eq!(search(tagged).await, (vec!["a".into()], 1));
        let page = SessionFilter { limit: 1, offset: 1, ..all.clone() };
        assert_eq!(search(page).await, (vec!["b".into()], 3));

        let mut ended = row("b", "alice", 2, &[]);
        ended.status = SessionStatus::Exited;
        ended.exit_code = Some(3);
        ended.exit_reason = Some(ExitReason::AgentExited);
        sessions.save_state(ended).await.expect("save");
        let exited = SessionFilter { status: Some(SessionStatus::Exited), ..all.clone() };
        assert_eq!(search(exited).await, (vec!["b".into()], 1));

        assert!(sessions.delete("b".into()).await.expect("delete"));
        assert!(!sessions.delete("b".into()).await.expect("delete again"));
        let tagged = SessionFilter { tags: vec![("repository".into(), "o/r".into())], ..all };
        assert_eq!(search(tagged).await, (vec!["a".into()], 1), "tags go with their session");
    }

    #[tokio::test]
    async fn rows_written_before_backend_ref_get_the_local_reference_of_their_agent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        // The schema as the build before `0008_backend_ref` left it (0001..0006).
        let before = 6;
        let old = rusqlite::Connection::open(&path).expect("open");
        for sql in &crate::store::MIGRATIONS[..before] {
            old.execute_batch(sql).expect("an old migration");
        }
        old.execute_batch(&format!("PRAGMA user_version = {before};")).expect("version");
        old.execute_batch(
            "INSERT INTO sessions (id, user_id, status, port, pid, pid_start_ticks, started_at) \
             VALUES ('live', 'alice', 'active', 9001, 4242, 123456, 1), \
                    ('never', 'bob', 'starting', NULL, NULL, NULL, 2), \
                    ('no-ticks', 'carol', 'exited', 9003, 77, NULL, 3);",
        )
        .expect("old rows");
        drop(old);
        let sessions = SqliteSessions::new(Store::open(Location::File(path)).expect("upgrades"));
        let get = |id: &str| {
            let sessions = sessions.clone();
            let id = id.to_string();
            async move { sessions.get(id).await.expect("get").expect("kept") }
        };
        let live = get("live").await;
        assert_eq!(
            live.backend_ref.as_deref(),
            Some(r#"{"v":1,"kind":"local","pid":4242,"start_ticks":123456,"port":9001}"#)
        );
        assert_eq!(live.port, Some(9001), "the port stays for API answers");
        assert_eq!(get("never").await.backend_ref, None, "never spawned: nothing to find");
        assert_eq!(
            get("no-ticks").await.backend_ref.as_deref(),
            Some(r#"{"v":1,"kind":"local","pid":77,"start_ticks":null,"port":9003}"#)
        );
    }
}
