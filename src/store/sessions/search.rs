//! `GET /search` from SQLite: the filters become an indexed `WHERE` clause, and both queries
//! (the page, and the count when the page cannot tell it) run as cached statements in one
//! read transaction. Rows out; the JSON is written by the sessions layer.

use agentapi_proxy_client::{ExitReason, SessionStatus};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Row, params_from_iter};

use super::{SearchPage, SessionFilter, SummaryRow, total_from_page};

/// The columns a `/search` item shows.
pub(crate) const SUMMARY_COLUMNS: &str =
    "id, user_id, status, started_at, port, tags, exit_code, exit_reason";

/// The `/search` page for `filter`.
pub(super) fn search_page(
    connection: &mut Connection,
    filter: &SessionFilter,
) -> anyhow::Result<SearchPage> {
    let (where_clause, values) = where_clause(filter);
    let transaction = connection.transaction()?;
    let mut rows = Vec::with_capacity(filter.limit.min(1000) as usize);
    {
        // LIMIT and OFFSET are literals: SQLite re-prepares a statement whose bound LIMIT
        // changes.
        let mut page = transaction.prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM sessions s {where_clause} \
             ORDER BY s.started_at DESC, s.id DESC LIMIT {} OFFSET {}",
            filter.limit,
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
        ))?;
        let mut found = page.query(params_from_iter(values.iter()))?;
        while let Some(row) = found.next()? {
            rows.push(summary_from(row)?);
        }
    }
    let total = match total_from_page(filter, rows.len()) {
        Some(total) => total,
        None => {
            let mut count = transaction
                .prepare_cached(&format!("SELECT COUNT(*) FROM sessions s {where_clause}"))?;
            let total: i64 = count.query_row(params_from_iter(values.iter()), |row| row.get(0))?;
            total.max(0) as u64
        }
    };
    transaction.finish()?;
    Ok(SearchPage { rows, total })
}

/// The `WHERE` clause for `filter` (empty without filters) and its parameters in order.
fn where_clause(filter: &SessionFilter) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(user_id) = &filter.user_id {
        values.push(Value::Text(user_id.clone()));
        conditions.push(format!("s.user_id = ?{}", values.len()));
    }
    if let Some(status) = filter.status {
        values.push(Value::Text(status.as_str().to_string()));
        conditions.push(format!("s.status = ?{}", values.len()));
    }
    for (key, value) in &filter.tags {
        values.push(Value::Text(key.clone()));
        values.push(Value::Text(value.clone()));
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM session_tags t WHERE t.session_id = s.id \
             AND t.key = ?{} AND t.value = ?{})",
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

/// One `/search` item from the row's columns.
fn summary_from(row: &Row<'_>) -> anyhow::Result<SummaryRow> {
    let status = std::str::from_utf8(text(row, 2)?)?;
    let tags = std::str::from_utf8(text(row, 5)?)?;
    Ok(SummaryRow {
        id: row.get(0)?,
        user_id: row.get(1)?,
        status: SessionStatus::parse(status).unwrap_or(SessionStatus::Failed),
        started_at_ms: row.get(3)?,
        port: row.get::<_, Option<i64>>(4)?.and_then(|port| u16::try_from(port).ok()),
        tags: super::decode_tags(tags),
        exit_code: row.get(6)?,
        exit_reason: row.get_ref(7)?.as_str_or_null()?.and_then(ExitReason::parse),
    })
}

/// A text column's bytes, borrowed from the row.
fn text<'row>(row: &'row Row<'_>, index: usize) -> rusqlite::Result<&'row [u8]> {
    match row.get_ref(index)? {
        ValueRef::Text(bytes) => Ok(bytes),
        other => Err(rusqlite::Error::InvalidColumnType(index, String::new(), other.data_type())),
    }
}
