//! `GET /search` straight from SQLite: the filters become an indexed `WHERE` clause, both
//! queries run as cached statements in one read transaction, and each row is written as
//! JSON while it is read (borrowed columns, no intermediate rows), byte for byte what
//! serde writes for a `SearchResponse`.

use std::collections::BTreeMap;

use agentapi_proxy_client::{ExitReason, SessionStatus};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Row, params_from_iter};

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
    let (where_clause, values) = where_clause(filter);
    let transaction = connection.transaction()?;
    let mut json = Vec::with_capacity(64 + filter.limit as usize * BYTES_PER_ITEM);
    json.extend_from_slice(b"{\"sessions\":[");
    let mut shown: u64 = 0;
    {
        // LIMIT and OFFSET are literals: SQLite re-prepares a statement whose bound LIMIT
        // changes.
        let mut page = transaction.prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM sessions s {where_clause} \
             ORDER BY s.started_at DESC, s.id DESC LIMIT {} OFFSET {}",
            filter.limit,
            i64::try_from(filter.offset).unwrap_or(i64::MAX),
        ))?;
        let mut rows = page.query(params_from_iter(values.iter()))?;
        while let Some(row) = rows.next()? {
            if shown > 0 {
                json.push(b',');
            }
            write_summary(&mut json, row)?;
            shown += 1;
        }
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
    write_integer(&mut json, total);
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

/// Writes one `/search` item exactly as serde writes a `SessionSummary`, from the row's
/// columns (borrowed, never copied into strings first).
fn write_summary(json: &mut Vec<u8>, row: &Row<'_>) -> anyhow::Result<()> {
    let status = std::str::from_utf8(text(row, 2)?)?;
    let status = SessionStatus::parse(status).unwrap_or(SessionStatus::Failed);
    json.extend_from_slice(b"{\"session_id\":");
    write_str(json, text(row, 0)?)?;
    json.extend_from_slice(b",\"user_id\":");
    write_str(json, text(row, 1)?)?;
    json.extend_from_slice(b",\"status\":\"");
    json.extend_from_slice(status.as_str().as_bytes());
    json.extend_from_slice(b"\",\"started_at\":");
    Rfc3339Ms(row.get(3)?).write_json(json);
    json.extend_from_slice(b",\"port\":");
    match row.get::<_, Option<i64>>(4)?.and_then(|port| u16::try_from(port).ok()) {
        Some(port) => write_integer(json, port),
        None => json.extend_from_slice(b"null"),
    }
    json.extend_from_slice(b",\"tags\":");
    write_tags(json, std::str::from_utf8(text(row, 5)?)?)?;
    if status.has_ended() {
        if let Some(code) = row.get::<_, Option<i32>>(6)? {
            json.extend_from_slice(b",\"exit_code\":");
            write_integer(json, code);
        }
        if let Some(reason) = row.get_ref(7)?.as_str_or_null()?.and_then(ExitReason::parse) {
            json.extend_from_slice(b",\"exit_reason\":\"");
            json.extend_from_slice(reason.as_str().as_bytes());
            json.push(b'"');
        }
    }
    json.push(b'}');
    Ok(())
}

/// A text column's bytes, borrowed from the row.
fn text<'row>(row: &'row Row<'_>, index: usize) -> rusqlite::Result<&'row [u8]> {
    match row.get_ref(index)? {
        ValueRef::Text(bytes) => Ok(bytes),
        other => Err(rusqlite::Error::InvalidColumnType(index, String::new(), other.data_type())),
    }
}

/// A JSON string from UTF-8 `bytes`: printable ASCII without quotes or backslashes (ids,
/// most user names) is copied as it is, anything else is checked and escaped by serde.
fn write_str(json: &mut Vec<u8>, bytes: &[u8]) -> anyhow::Result<()> {
    let plain = bytes.iter().fold(true, |plain, &byte| {
        plain & (0x20..0x7f).contains(&byte) & (byte != b'"') & (byte != b'\\')
    });
    if plain {
        json.push(b'"');
        json.extend_from_slice(bytes);
        json.push(b'"');
    } else {
        serde_json::to_writer(json, std::str::from_utf8(bytes)?)?;
    }
    Ok(())
}

/// A whole number in decimal, as serde writes it.
fn write_integer(json: &mut Vec<u8>, value: impl itoa::Integer) {
    json.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// The stored tags (a JSON object), shown as the map they hold.
fn write_tags(json: &mut Vec<u8>, stored: &str) -> serde_json::Result<()> {
    if stored == "{}" {
        json.extend_from_slice(b"{}");
        return Ok(());
    }
    let tags: BTreeMap<String, String> = serde_json::from_str(stored).unwrap_or_default();
    serde_json::to_writer(json, &tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_writes_them() {
        for text in ["", "plain-id", "quote\"", "back\\slash", "tab\t", "\u{7f}", "é", "\u{1}"] {
            let mut json = Vec::new();
            write_str(&mut json, text.as_bytes()).expect("writes");
            assert_eq!(json, serde_json::to_vec(text).expect("encodes"), "{text:?}");
        }
    }
}
