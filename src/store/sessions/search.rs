//! `GET /search` straight from SQLite: the filters become an indexed `WHERE` clause, both
//! queries run as cached statements in one read transaction, and each row is written as
//! JSON while it is read (borrowed columns, no intermediate rows), in exactly the shape
//! `SearchResponse` serialises to.

use std::collections::BTreeMap;

use agentapi_proxy_client::{ExitReason, SessionStatus};
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};
use serde::Serialize;

use super::SessionFilter;
use crate::clock::Rfc3339Ms;

/// The columns a `/search` item shows.
const SUMMARY_COLUMNS: &str = "id, user_id, status, started_at, port, tags, exit_code, exit_reason";

/// A few rows' worth of JSON, so a page is rarely reallocated.
const BYTES_PER_ITEM: usize = 200;

/// Writes the `/search` answer for `filter` as JSON.
pub(super) fn search_page(
    connection: &mut Connection,
    filter: &SessionFilter,
) -> anyhow::Result<Vec<u8>> {
    let (where_clause, mut values) = where_clause(filter);
    let transaction = connection.transaction()?;
    let mut json = Vec::with_capacity(64 + filter.limit as usize * BYTES_PER_ITEM);
    json.extend_from_slice(b"{\"sessions\":[");
    let mut shown: u64 = 0;
    {
        let mut page = transaction.prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM sessions s {where_clause} \
             ORDER BY s.started_at DESC, s.id DESC LIMIT ?{} OFFSET ?{}",
            values.len() + 1,
            values.len() + 2,
        ))?;
        values.push(Value::Integer(i64::from(filter.limit)));
        values.push(Value::Integer(i64::try_from(filter.offset).unwrap_or(i64::MAX)));
        let mut rows = page.query(params_from_iter(values.iter()))?;
        while let Some(row) = rows.next()? {
            if shown > 0 {
                json.push(b',');
            }
            serde_json::to_writer(&mut json, &summary(row)?)?;
            shown += 1;
        }
        values.truncate(values.len() - 2);
    }
    // A page that is not full tells the total without counting (unless it is past the end).
    let total = if shown < u64::from(filter.limit) && (shown > 0 || filter.offset == 0) {
        filter.offset + shown
    } else {
        let mut count = transaction
            .prepare_cached(&format!("SELECT COUNT(*) FROM sessions s {where_clause}"))?;
        let total: i64 = count.query_row(params_from_iter(values.iter()), |row| row.get(0))?;
        total.max(0) as u64
    };
    transaction.finish()?;
    json.extend_from_slice(b"],\"total\":");
    json.extend_from_slice(total.to_string().as_bytes());
    json.push(b'}');
    Ok(json)
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

/// One `/search` item as `SessionSummary` serialises it, borrowing the row's text.
#[derive(Serialize)]
struct SummaryView<'row> {
    session_id: &'row str,
    user_id: &'row str,
    status: SessionStatus,
    started_at: Rfc3339Ms,
    port: Option<u16>,
    tags: TagsView<'row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_reason: Option<ExitReason>,
}

/// The stored tags (a JSON object), shown re-encoded as the map they hold.
struct TagsView<'row>(&'row str);

impl Serialize for TagsView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == "{}" {
            return BTreeMap::<&str, &str>::new().serialize(serializer);
        }
        let tags: BTreeMap<String, String> = serde_json::from_str(self.0).unwrap_or_default();
        tags.serialize(serializer)
    }
}

fn summary<'row>(row: &'row Row<'_>) -> rusqlite::Result<SummaryView<'row>> {
    let text = |index: usize| row.get_ref(index).and_then(|value| Ok(value.as_str()?));
    let status = SessionStatus::parse(text(2)?).unwrap_or(SessionStatus::Failed);
    let ended = !status.is_live();
    let exit_reason = match row.get_ref(7)?.as_str_or_null()? {
        Some(reason) if ended => ExitReason::parse(reason),
        _ => None,
    };
    Ok(SummaryView {
        session_id: text(0)?,
        user_id: text(1)?,
        status,
        started_at: Rfc3339Ms(row.get(3)?),
        port: row.get::<_, Option<i64>>(4)?.and_then(|port| u16::try_from(port).ok()),
        tags: TagsView(text(5)?),
        exit_code: if ended { row.get(6)? } else { None },
        exit_reason,
    })
}
