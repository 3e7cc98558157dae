//! Session rows in PostgreSQL: the same [`SessionStore`] as SQLite's, the same columns and
//! the same indexed search (`/search` filters become a `WHERE` clause; the page and, when the
//! page cannot tell it, the count run in one read-only transaction). Leases and admission
//! are in `sessions/leases.rs`.

use agentapi_proxy_client::{ExitReason, InitialMessageState, SessionStatus};
use anyhow::Context;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PgStore;
use crate::store::sessions::{
    Admission, Admitted, COLUMNS, SearchPage, SessionFilter, SessionRow, SessionStore, SummaryRow,
    decode_tags, json, total_from_page,
};

mod leases;

/// The PostgreSQL implementation.
#[derive(Debug, Clone)]
pub struct PgSessions {
    store: PgStore,
}

impl PgSessions {
    pub fn new(store: PgStore) -> Self {
        Self { store }
    }
}

pub(crate) fn from_row(row: &Row) -> anyhow::Result<SessionRow> {
    let status: String = row.try_get(2)?;
    let tags: String = row.try_get(5)?;
    let env_names: String = row.try_get(6)?;
    let exit_reason: Option<String> = row.try_get(10)?;
    let initial: Option<String> = row.try_get(12)?;
    Ok(SessionRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
        port: row.try_get::<_, Option<i32>>(3)?.and_then(|port| u16::try_from(port).ok()),
        backend_ref: row.try_get(4)?,
        tags: decode_tags(&tags),
        env_names: serde_json::from_str(&env_names).unwrap_or_default(),
        started_at_ms: row.try_get(7)?,
        ended_at_ms: row.try_get(8)?,
        exit_code: row.try_get(9)?,
        exit_reason: exit_reason.as_deref().and_then(ExitReason::parse),
        agent_status: row.try_get(11)?,
        initial_message: initial.as_deref().and_then(InitialMessageState::parse),
        restarts: u32::try_from(row.try_get::<_, i32>(13)?).unwrap_or(0),
        supervisor: row.try_get(14)?,
        lease_expires_at_ms: row.try_get(15)?,
        exit_details: row.try_get(16)?,
    })
}

/// The mutable columns of a row, as PostgreSQL parameters $2.. of `save_state`.
struct StateColumns {
    status: &'static str,
    port: Option<i32>,
    backend_ref: Option<String>,
    ended_at: Option<i64>,
    exit_code: Option<i32>,
    exit_reason: Option<&'static str>,
    agent_status: Option<String>,
    initial_message: Option<&'static str>,
    restarts: i32,
}

impl StateColumns {
    fn of(row: &SessionRow) -> Self {
        Self {
            status: row.status.as_str(),
            port: row.port.map(i32::from),
            backend_ref: row.backend_ref.clone(),
            ended_at: row.ended_at_ms,
            exit_code: row.exit_code,
            exit_reason: row.exit_reason.map(ExitReason::as_str),
            agent_status: row.agent_status.clone(),
            initial_message: row.initial_message.map(InitialMessageState::as_str),
            restarts: i32::try_from(row.restarts).unwrap_or(i32::MAX),
        }
    }
}

/// The `save_state` UPDATE; with `fenced_by`, only while that supervisor holds the row
/// (`$12`). How many rows changed.
pub(crate) async fn update_state(
    client: &impl GenericClient,
    row: &SessionRow,
    fenced_by: Option<&str>,
) -> anyhow::Result<u64> {
    let state = StateColumns::of(row);
    let fence = if fenced_by.is_some() { " AND supervisor = $12" } else { "" };
    let statement = client
        .prepare_cached(&format!(
            "UPDATE sessions SET status = $2, port = $3, backend_ref = $4, ended_at = $5, \
             exit_code = $6, exit_reason = $7, agent_status = $8, initial_message = $9, \
             restarts = $10, exit_details = $11 WHERE id = $1{fence}"
        ))
        .await?;
    let mut values: Vec<&(dyn ToSql + Sync)> = vec![
        &row.id,
        &state.status,
        &state.port,
        &state.backend_ref,
        &state.ended_at,
        &state.exit_code,
        &state.exit_reason,
        &state.agent_status,
        &state.initial_message,
        &state.restarts,
        &row.exit_details,
    ];
    if let Some(supervisor) = &fenced_by {
        values.push(supervisor);
    }
    Ok(client.execute(&statement, &values).await?)
}

/// Inserts `row` (its lease columns as given) and its tags with `client` (inside the
/// caller's transaction).
pub(crate) async fn insert_row(
    client: &impl GenericClient,
    row: &SessionRow,
) -> anyhow::Result<()> {
    let tags = json(&row.tags)?;
    let env_names = json(&row.env_names)?;
    let state = StateColumns::of(row);
    let insert = client
        .prepare_cached(&format!(
            "INSERT INTO sessions ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .await?;
    client
        .execute(
            &insert,
            &[
                &row.id,
                &row.user_id,
                &state.status,
                &state.port,
                &state.backend_ref,
                &tags,
                &env_names,
                &row.started_at_ms,
                &state.ended_at,
                &state.exit_code,
                &state.exit_reason,
                &state.agent_status,
                &state.initial_message,
                &state.restarts,
                &row.supervisor,
                &row.lease_expires_at_ms,
                &row.exit_details,
            ],
        )
        .await?;
    if !row.tags.is_empty() {
        let insert_tag = client
            .prepare_cached("INSERT INTO session_tags (session_id, key, value) VALUES ($1, $2, $3)")
            .await?;
        for (key, value) in &row.tags {
            client.execute(&insert_tag, &[&row.id, key, value]).await?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl SessionStore for PgSessions {
    async fn insert(&self, row: SessionRow) -> anyhow::Result<()> {
        let mut connection = self.store.connection().await?;
        let transaction = connection.transaction().await?;
        insert_row(&transaction, &row).await.context("while inserting a session")?;
        transaction.commit().await.context("while inserting a session")
    }

    async fn save_state(&self, row: SessionRow) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        update_state(&connection, &row, None).await.context("while saving a session's state")?;
        Ok(())
    }

    async fn delete(&self, id: String) -> anyhow::Result<bool> {
        let connection = self.store.connection().await?;
        let deleted = connection
            .execute("DELETE FROM sessions WHERE id = $1", &[&id])
            .await
            .context("while deleting a session")?;
        Ok(deleted > 0)
    }

    async fn get(&self, id: String) -> anyhow::Result<Option<SessionRow>> {
        let connection = self.store.connection().await?;
        let statement = connection
            .prepare_cached(&format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"))
            .await?;
        let row =
            connection.query_opt(&statement, &[&id]).await.context("while reading a session")?;
        row.as_ref().map(from_row).transpose()
    }

    async fn search(&self, filter: SessionFilter) -> anyhow::Result<SearchPage> {
        search(&self.store, &filter).await.context("while searching sessions")
    }

    async fn all(&self) -> anyhow::Result<Vec<SessionRow>> {
        let connection = self.store.connection().await?;
        let rows = connection
            .query(&format!("SELECT {COLUMNS} FROM sessions ORDER BY started_at"), &[])
            .await
            .context("while loading sessions")?;
        rows.iter().map(from_row).collect()
    }

    async fn insert_admitted(
        &self,
        row: SessionRow,
        admission: Admission,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Admitted> {
        leases::insert_admitted(&self.store, row, admission, &supervisor, lease_ttl_ms)
            .await
            .context("while admitting a session")
    }

    async fn save_state_as(&self, row: SessionRow, supervisor: String) -> anyhow::Result<bool> {
        let connection = self.store.connection().await?;
        let saved = update_state(&connection, &row, Some(&supervisor))
            .await
            .context("while saving a supervised session's state")?;
        Ok(saved > 0)
    }

    async fn renew_leases(
        &self,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Vec<String>> {
        leases::renew(&self.store, &supervisor, lease_ttl_ms).await.context("while renewing leases")
    }

    async fn claim_expired(
        &self,
        supervisor: String,
        lease_ttl_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRow>> {
        leases::claim_expired(&self.store, &supervisor, lease_ttl_ms, limit)
            .await
            .context("while claiming expired leases")
    }

    async fn claim(
        &self,
        id: String,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Option<SessionRow>> {
        leases::claim(&self.store, &id, &supervisor, lease_ttl_ms)
            .await
            .context("while claiming a session")
    }

    async fn release_leases(&self, supervisor: String) -> anyhow::Result<u64> {
        leases::release(&self.store, &supervisor).await.context("while releasing leases")
    }

    async fn record_activity(&self, id: String, at_ms: i64) -> anyhow::Result<()> {
        leases::record_activity(&self.store, &id, at_ms)
            .await
            .context("while recording a session's activity")
    }

    async fn last_activity(&self, id: String) -> anyhow::Result<Option<i64>> {
        leases::last_activity(&self.store, &id).await.context("while reading a session's activity")
    }
}

/// One round trip when the page tells the total (it is not full), else a second for the
/// count. Each statement sees its own snapshot: a write landing between them may make the
/// total differ by that write from the page (SQLite reads both in one transaction).
async fn search(store: &PgStore, filter: &SessionFilter) -> anyhow::Result<SearchPage> {
    let (where_clause, values) = where_clause(filter);
    let limit = i64::from(filter.limit);
    let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
    let connection = store.connection().await?;
    let page = connection
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM sessions s {where_clause} \
             ORDER BY s.started_at DESC, s.id DESC LIMIT ${} OFFSET ${}",
            values.len() + 1,
            values.len() + 2
        ))
        .await?;
    let mut parameters: Vec<&(dyn ToSql + Sync)> =
        values.iter().map(|value| value as &(dyn ToSql + Sync)).collect();
    parameters.push(&limit);
    parameters.push(&offset);
    let rows = connection.query(&page, &parameters).await?;
    if let Some(total) = total_from_page(filter, rows.len()) {
        let rows = rows.iter().map(summary_from).collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(SearchPage { rows, total });
    }
    let count = connection
        .prepare_cached(&format!("SELECT COUNT(*) FROM sessions s {where_clause}"))
        .await?;
    let total: i64 = connection.query_one(&count, &parameters[..values.len()]).await?.get(0);
    let rows = rows.iter().map(summary_from).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SearchPage { rows, total: total.max(0) as u64 })
}

const SUMMARY_COLUMNS: &str = "id, user_id, status, started_at, port, tags, exit_code, exit_reason";

/// The `WHERE` clause for `filter` (empty without filters) and its text parameters in order.
fn where_clause(filter: &SessionFilter) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(user_id) = &filter.user_id {
        values.push(user_id.clone());
        conditions.push(format!("s.user_id = ${}", values.len()));
    }
    if let Some(status) = filter.status {
        values.push(status.as_str().to_string());
        conditions.push(format!("s.status = ${}", values.len()));
    }
    for (key, value) in &filter.tags {
        values.push(key.clone());
        values.push(value.clone());
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM session_tags t WHERE t.session_id = s.id \
             AND t.key = ${} AND t.value = ${})",
            values.len() - 1,
            values.len()
        ));
    }
    if conditions.is_empty() {
        (String::new(), values)
    } else {
        (format!("WHERE {}", conditions.join(" AND ")), values)
    }
}

fn summary_from(row: &Row) -> anyhow::Result<SummaryRow> {
    let status: &str = row.try_get(2)?;
    let tags: &str = row.try_get(5)?;
    let exit_reason: Option<&str> = row.try_get(7)?;
    Ok(SummaryRow {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        status: SessionStatus::parse(status).unwrap_or(SessionStatus::Failed),
        started_at_ms: row.try_get(3)?,
        port: row.try_get::<_, Option<i32>>(4)?.and_then(|port| u16::try_from(port).ok()),
        tags: decode_tags(tags),
        exit_code: row.try_get(6)?,
        exit_reason: exit_reason.and_then(ExitReason::parse),
    })
}
