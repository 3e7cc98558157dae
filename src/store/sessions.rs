//! Session rows: the `SessionStore` trait and its SQLite implementation. Everything the
//! registry needs to rebuild itself after a restart, and the indexed search behind `/search`.

use std::collections::BTreeMap;

use agentapi_proxy_client::{ExitReason, InitialMessageState, SessionStatus};
use anyhow::Context;
use rusqlite::{OptionalExtension, Row, params, params_from_iter};

use super::Store;

/// One stored session. Environment values are never part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub status: SessionStatus,
    pub port: Option<u16>,
    pub pid: Option<i32>,
    /// The process start time (`/proc/<pid>/stat` field 22), to recognise the same process.
    pub pid_start_ticks: Option<u64>,
    pub tags: BTreeMap<String, String>,
    pub env_names: Vec<String>,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub exit_reason: Option<ExitReason>,
    pub agent_status: Option<String>,
    pub initial_message: Option<InitialMessageState>,
    pub restarts: u32,
}

/// Filters of `GET /search`; every given one must match.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub user_id: Option<String>,
    pub status: Option<SessionStatus>,
    pub tags: Vec<(String, String)>,
    pub limit: u32,
    pub offset: u64,
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
    /// Matching sessions, newest first, and how many match in all.
    async fn search(&self, filter: SessionFilter) -> anyhow::Result<(Vec<SessionRow>, u64)>;
    /// Every stored session (the registry is rebuilt from it at boot).
    async fn all(&self) -> anyhow::Result<Vec<SessionRow>>;
}

const COLUMNS: &str = "id, user_id, status, port, pid, pid_start_ticks, tags, env_names, \
    started_at, ended_at, exit_code, exit_reason, agent_status, initial_message, restarts";

fn from_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let text = |index: usize| row.get::<_, String>(index);
    let status: String = text(2)?;
    let tags: String = text(6)?;
    let env_names: String = text(7)?;
    let exit_reason: Option<String> = row.get(11)?;
    let initial: Option<String> = row.get(13)?;
    Ok(SessionRow {
        id: text(0)?,
        user_id: text(1)?,
        status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
        port: row.get::<_, Option<i64>>(3)?.and_then(|port| u16::try_from(port).ok()),
        pid: row.get(4)?,
        pid_start_ticks: row.get::<_, Option<i64>>(5)?.and_then(|t| u64::try_from(t).ok()),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        env_names: serde_json::from_str(&env_names).unwrap_or_default(),
        started_at_ms: row.get(8)?,
        ended_at_ms: row.get(9)?,
        exit_code: row.get(10)?,
        exit_reason: exit_reason.as_deref().and_then(ExitReason::parse),
        agent_status: row.get(12)?,
        initial_message: initial.as_deref().and_then(InitialMessageState::parse),
        restarts: row.get(14)?,
    })
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<String> {
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
}

#[async_trait::async_trait]
impl SessionStore for SqliteSessions {
    async fn insert(&self, row: SessionRow) -> anyhow::Result<()> {
        let tags = json(&row.tags)?;
        let env_names = json(&row.env_names)?;
        self.store
            .call(move |connection| {
                let transaction = connection
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                transaction.execute(
                    &format!(
                        "INSERT INTO sessions ({COLUMNS}) VALUES \
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
                    ),
                    params![
                        row.id,
                        row.user_id,
                        row.status.as_str(),
                        row.port,
                        row.pid,
                        row.pid_start_ticks.map(|t| t as i64),
                        tags,
                        env_names,
                        row.started_at_ms,
                        row.ended_at_ms,
                        row.exit_code,
                        row.exit_reason.map(ExitReason::as_str),
                        row.agent_status,
                        row.initial_message.map(InitialMessageState::as_str),
                        row.restarts,
                    ],
                )?;
                {
                    let mut insert_tag = transaction.prepare(
                        "INSERT INTO session_tags (session_id, key, value) VALUES (?1, ?2, ?3)",
                    )?;
                    for (key, value) in &row.tags {
                        insert_tag.execute(params![row.id, key, value])?;
                    }
                }
                transaction.commit()?;
                Ok(())
            })
            .await
            .context("while inserting a session")
    }

    async fn save_state(&self, row: SessionRow) -> anyhow::Result<()> {
        self.store
            .call(move |connection| {
                connection.execute(
                    "UPDATE sessions SET status = ?2, port = ?3, pid = ?4, pid_start_ticks = ?5, \
                     ended_at = ?6, exit_code = ?7, exit_reason = ?8, agent_status = ?9, \
                     initial_message = ?10, restarts = ?11 WHERE id = ?1",
                    params![
                        row.id,
                        row.status.as_str(),
                        row.port,
                        row.pid,
                        row.pid_start_ticks.map(|t| t as i64),
                        row.ended_at_ms,
                        row.exit_code,
                        row.exit_reason.map(ExitReason::as_str),
                        row.agent_status,
                        row.initial_message.map(InitialMessageState::as_str),
                        row.restarts,
                    ],
                )?;
                Ok(())
            })
            .await
            .context("while saving a session's state")
    }

    async fn delete(&self, id: String) -> anyhow::Result<bool> {
        self.store
            .call(move |connection| {
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

    async fn search(&self, filter: SessionFilter) -> anyhow::Result<(Vec<SessionRow>, u64)> {
        self.store
            .read(move |connection| {
                let mut conditions = Vec::new();
                let mut values: Vec<String> = Vec::new();
                if let Some(user_id) = &filter.user_id {
                    values.push(user_id.clone());
                    conditions.push(format!("s.user_id = ?{}", values.len()));
                }
                if let Some(status) = filter.status {
                    values.push(status.as_str().to_string());
                    conditions.push(format!("s.status = ?{}", values.len()));
                }
                for (key, value) in &filter.tags {
                    values.push(key.clone());
                    values.push(value.clone());
                    conditions.push(format!(
                        "EXISTS (SELECT 1 FROM session_tags t WHERE t.session_id = s.id \
                         AND t.key = ?{} AND t.value = ?{})",
                        values.len() - 1,
                        values.len()
                    ));
                }
                let where_clause = if conditions.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", conditions.join(" AND "))
                };
                let total: i64 = connection.query_row(
                    &format!("SELECT COUNT(*) FROM sessions s {where_clause}"),
                    params_from_iter(values.iter()),
                    |row| row.get(0),
                )?;
                let sql = format!(
                    "SELECT {COLUMNS} FROM sessions s {where_clause} \
                     ORDER BY s.started_at DESC, s.id DESC LIMIT {} OFFSET {}",
                    filter.limit, filter.offset
                );
                let mut statement = connection.prepare(&sql)?;
                let rows = statement
                    .query_map(params_from_iter(values.iter()), from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((rows, total.max(0) as u64))
            })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    fn row(id: &str, user: &str, started: i64, tags: &[(&str, &str)]) -> SessionRow {
        SessionRow {
            id: id.into(),
            user_id: user.into(),
            status: SessionStatus::Active,
            port: Some(9000),
            pid: Some(42),
            pid_start_ticks: Some(7),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            env_names: vec!["A".into()],
            started_at_ms: started,
            ended_at_ms: None,
            exit_code: None,
            exit_reason: None,
            agent_status: None,
            initial_message: None,
            restarts: 0,
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
                let (rows, total) = sessions.search(filter).await.expect("search");
                (rows.into_iter().map(|r| r.id).collect::<Vec<_>>(), total)
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
}
