//! Leases and admission on PostgreSQL (scale-out.md §3): the database's clock decides when a
//! lease runs out (replicas' clocks may differ), admission counts and inserts under a
//! transaction-scoped advisory lock every replica takes (READ COMMITTED alone would let two
//! starts both see 19 of 20), and claims skip rows another transaction holds.

use anyhow::Context;
use deadpool_postgres::GenericClient;

use super::{from_row, insert_row};
use crate::store::postgres::{ADMISSION_LOCK, LOCK_CLASS, PgStore};
use crate::store::sessions::{Admission, Admitted, COLUMNS, SessionRow, live_statuses_sql};

/// Now on the database's clock, in ms since the epoch (`clock_timestamp`: the real time,
/// not the transaction's start).
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

pub(super) async fn insert_admitted(
    store: &PgStore,
    mut row: SessionRow,
    admission: Admission,
    supervisor: &str,
    lease_ttl_ms: i64,
) -> anyhow::Result<Admitted> {
    let mut connection = store.connection().await?;
    let transaction = connection.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_CLASS, &ADMISSION_LOCK])
        .await
        .context("while taking the admission lock")?;
    let counts = transaction
        .query_one(
            &format!(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE user_id = $1), {NOW_MS} \
                 FROM sessions WHERE status IN ({})",
                live_statuses_sql()
            ),
            &[&row.user_id],
        )
        .await?;
    let (live, owned, now): (i64, i64, i64) = (counts.get(0), counts.get(1), counts.get(2));
    if let Some(refused) = admission.refusal(live, owned) {
        return Ok(refused);
    }
    row.supervisor = Some(supervisor.to_string());
    row.lease_expires_at_ms = Some(now.saturating_add(lease_ttl_ms));
    insert_row(&transaction, &row).await?;
    transaction.commit().await?;
    Ok(Admitted::Inserted)
}

pub(super) async fn renew(
    store: &PgStore,
    supervisor: &str,
    lease_ttl_ms: i64,
) -> anyhow::Result<Vec<String>> {
    let connection = store.connection().await?;
    let statement = connection
        .prepare_cached(&format!(
            "UPDATE sessions SET lease_expires_at = {NOW_MS} + $2 \
             WHERE supervisor = $1 AND status IN ({}) RETURNING id",
            live_statuses_sql()
        ))
        .await?;
    let rows = connection.query(&statement, &[&supervisor, &lease_ttl_ms]).await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

pub(super) async fn claim_expired(
    store: &PgStore,
    supervisor: &str,
    lease_ttl_ms: i64,
    limit: u32,
) -> anyhow::Result<Vec<SessionRow>> {
    let connection = store.connection().await?;
    // `clock` is read once; FOR UPDATE re-checks a row another claimer committed meanwhile
    // against the WHERE clause, so a lease taken a moment ago is never taken again.
    let statement = connection
        .prepare_cached(&format!(
            "WITH clock AS (SELECT {NOW_MS} AS now_ms) \
             UPDATE sessions SET supervisor = $1, \
                    lease_expires_at = (SELECT now_ms FROM clock) + $2 \
             WHERE id IN (SELECT id FROM sessions \
                          WHERE status IN ({}) \
                            AND (supervisor IS NULL \
                                 OR COALESCE(lease_expires_at, 0) < (SELECT now_ms FROM clock)) \
                          ORDER BY started_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {COLUMNS}",
            live_statuses_sql()
        ))
        .await?;
    let rows =
        connection.query(&statement, &[&supervisor, &lease_ttl_ms, &i64::from(limit)]).await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn claim(
    store: &PgStore,
    id: &str,
    supervisor: &str,
    lease_ttl_ms: i64,
) -> anyhow::Result<Option<SessionRow>> {
    let connection = store.connection().await?;
    let statement = connection
        .prepare_cached(&format!(
            "UPDATE sessions SET supervisor = $2, lease_expires_at = {NOW_MS} + $3 \
             WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .await?;
    let row = connection.query_opt(&statement, &[&id, &supervisor, &lease_ttl_ms]).await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn record_activity(store: &PgStore, id: &str, at_ms: i64) -> anyhow::Result<()> {
    let connection = store.connection().await?;
    let statement = connection
        .prepare_cached(
            "UPDATE sessions SET last_activity = GREATEST(COALESCE(last_activity, 0), $2) \
             WHERE id = $1",
        )
        .await?;
    connection.execute(&statement, &[&id, &at_ms]).await?;
    Ok(())
}

pub(super) async fn last_activity(store: &PgStore, id: &str) -> anyhow::Result<Option<i64>> {
    let connection = store.connection().await?;
    let statement =
        connection.prepare_cached("SELECT last_activity FROM sessions WHERE id = $1").await?;
    let row = connection.query_opt(&statement, &[&id]).await?;
    Ok(row.map(|row| row.try_get::<_, Option<i64>>(0)).transpose()?.flatten())
}

pub(super) async fn release(store: &PgStore, supervisor: &str) -> anyhow::Result<u64> {
    let connection = store.connection().await?;
    Ok(connection
        .execute("UPDATE sessions SET lease_expires_at = 0 WHERE supervisor = $1", &[&supervisor])
        .await?)
}
