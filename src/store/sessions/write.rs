//! The SQL that writes one session row on SQLite: the insert with its tags (plain and
//! admitted inserts) and the state UPDATE (plain, or fenced by the supervisor holding it).

use agentapi_proxy_client::{ExitReason, InitialMessageState};
use rusqlite::params;

use super::{COLUMNS, SessionRow, json};

/// A row's JSON columns, encoded before its write goes to the database thread.
pub(crate) struct Encoded {
    tags: String,
    env_names: String,
}

impl Encoded {
    pub(crate) fn of(row: &SessionRow) -> anyhow::Result<Self> {
        Ok(Self { tags: json(&row.tags)?, env_names: json(&row.env_names)? })
    }
}

/// Inserts `row` (its lease columns as given) and its tags, inside the caller's transaction.
pub(crate) fn insert_row(
    transaction: &rusqlite::Transaction<'_>,
    row: &SessionRow,
    encoded: &Encoded,
) -> anyhow::Result<()> {
    transaction.execute(
        &format!(
            "INSERT INTO sessions ({COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ),
        params![
            row.id,
            row.user_id,
            row.status.as_str(),
            row.port,
            row.backend_ref,
            encoded.tags,
            encoded.env_names,
            row.started_at_ms,
            row.ended_at_ms,
            row.exit_code,
            row.exit_reason.map(ExitReason::as_str),
            row.agent_status,
            row.initial_message.map(InitialMessageState::as_str),
            row.restarts,
            row.supervisor,
            row.lease_expires_at_ms,
            row.exit_details,
        ],
    )?;
    let mut insert_tag = transaction
        .prepare_cached("INSERT INTO session_tags (session_id, key, value) VALUES (?1, ?2, ?3)")?;
    for (key, value) in &row.tags {
        insert_tag.execute(params![row.id, key, value])?;
    }
    Ok(())
}

/// The `save_state` UPDATE; with `fenced_by`, only while that supervisor holds the row
/// (`?12`). How many rows changed.
pub(crate) fn update_state(
    connection: &rusqlite::Connection,
    row: &SessionRow,
    fenced_by: Option<&str>,
) -> rusqlite::Result<usize> {
    let fence = if fenced_by.is_some() { " AND supervisor = ?12" } else { "" };
    let mut statement = connection.prepare_cached(&format!(
        "UPDATE sessions SET status = ?2, port = ?3, backend_ref = ?4, ended_at = ?5, \
         exit_code = ?6, exit_reason = ?7, agent_status = ?8, initial_message = ?9, \
         restarts = ?10, exit_details = ?11 WHERE id = ?1{fence}"
    ))?;
    let status = row.status.as_str();
    let exit_reason = row.exit_reason.map(ExitReason::as_str);
    let initial_message = row.initial_message.map(InitialMessageState::as_str);
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &row.id,
        &status,
        &row.port,
        &row.backend_ref,
        &row.ended_at_ms,
        &row.exit_code,
        &exit_reason,
        &row.agent_status,
        &initial_message,
        &row.restarts,
        &row.exit_details,
    ];
    if let Some(supervisor) = &fenced_by {
        values.push(supervisor);
    }
    statement.execute(values.as_slice())
}
