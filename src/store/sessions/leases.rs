//! Leases and admission on SQLite (scale-out.md §3): the same contract as PostgreSQL's, on
//! the one writing connection, so every statement here is already serialised; the clock is
//! this server's (`crate::clock::now_ms`), the only one using the database.

use rusqlite::{Connection, OptionalExtension, params};

use super::write::{Encoded, insert_row};
use super::{Admission, Admitted, COLUMNS, SessionRow, from_row, live_statuses_sql};

/// Counts the live sessions and inserts `row` with `supervisor`'s lease, in one IMMEDIATE
/// transaction (the write lock is taken before the count).
pub(super) fn insert_admitted(
    connection: &mut Connection,
    mut row: SessionRow,
    encoded: &Encoded,
    admission: Admission,
    supervisor: String,
    lease_ttl_ms: i64,
) -> anyhow::Result<Admitted> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let (live, owned): (i64, i64) = transaction.query_row(
        &format!(
            "SELECT COUNT(*), COALESCE(SUM(user_id = ?1), 0) FROM sessions \
             WHERE status IN ({})",
            live_statuses_sql()
        ),
        params![row.user_id],
        |counts| Ok((counts.get(0)?, counts.get(1)?)),
    )?;
    if let Some(refused) = admission.refusal(live, owned) {
        return Ok(refused);
    }
    row.supervisor = Some(supervisor);
    row.lease_expires_at_ms = Some(crate::clock::now_ms().saturating_add(lease_ttl_ms));
    insert_row(&transaction, &row, encoded)?;
    transaction.commit()?;
    Ok(Admitted::Inserted)
}

pub(super) fn renew(
    connection: &Connection,
    supervisor: &str,
    lease_ttl_ms: i64,
) -> anyhow::Result<Vec<String>> {
    let until = crate::clock::now_ms().saturating_add(lease_ttl_ms);
    let mut statement = connection.prepare_cached(&format!(
        "UPDATE sessions SET lease_expires_at = ?2 \
         WHERE supervisor = ?1 AND status IN ({}) RETURNING id",
        live_statuses_sql()
    ))?;
    let ids = statement
        .query_map(params![supervisor, until], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// One writer: no other transaction can hold a row meanwhile, so nothing is skipped.
pub(super) fn claim_expired(
    connection: &Connection,
    supervisor: &str,
    lease_ttl_ms: i64,
    limit: u32,
) -> anyhow::Result<Vec<SessionRow>> {
    let now = crate::clock::now_ms();
    let mut statement = connection.prepare_cached(&format!(
        "UPDATE sessions SET supervisor = ?1, lease_expires_at = ?2 \
         WHERE id IN (SELECT id FROM sessions WHERE status IN ({}) \
                      AND (supervisor IS NULL OR COALESCE(lease_expires_at, 0) < ?3) \
                      ORDER BY started_at LIMIT ?4) \
         RETURNING {COLUMNS}",
        live_statuses_sql()
    ))?;
    let until = now.saturating_add(lease_ttl_ms);
    let rows = statement
        .query_map(params![supervisor, until, now, limit], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

pub(super) fn claim(
    connection: &Connection,
    id: &str,
    supervisor: &str,
    lease_ttl_ms: i64,
) -> anyhow::Result<Option<SessionRow>> {
    let until = crate::clock::now_ms().saturating_add(lease_ttl_ms);
    let row = connection
        .query_row(
            &format!(
                "UPDATE sessions SET supervisor = ?2, lease_expires_at = ?3 WHERE id = ?1 \
                 RETURNING {COLUMNS}"
            ),
            params![id, supervisor, until],
            from_row,
        )
        .optional()?;
    Ok(row)
}

pub(super) fn record_activity(connection: &Connection, id: &str, at_ms: i64) -> anyhow::Result<()> {
    connection.execute(
        "UPDATE sessions SET last_activity = MAX(COALESCE(last_activity, 0), ?2) WHERE id = ?1",
        params![id, at_ms],
    )?;
    Ok(())
}

pub(super) fn last_activity(connection: &Connection, id: &str) -> anyhow::Result<Option<i64>> {
    let found: Option<Option<i64>> = connection
        .query_row("SELECT last_activity FROM sessions WHERE id = ?1", [id], |row| row.get(0))
        .optional()?;
    Ok(found.flatten())
}

pub(super) fn release(connection: &Connection, supervisor: &str) -> anyhow::Result<u64> {
    let released = connection
        .execute("UPDATE sessions SET lease_expires_at = 0 WHERE supervisor = ?1", [supervisor])?;
    Ok(released as u64)
}
