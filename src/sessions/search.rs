//! `GET /search` over any [`SessionStore`]: [`PagedStore`] wraps a store, writes each page's
//! JSON once from its rows, byte for byte what serde writes for a `SearchResponse`, and keeps
//! the latest pages until the next session write passes through it.

use std::sync::Arc;

use agentapi_proxy_client::SessionStatus;
use bytes::Bytes;

use super::search_pages::PageCache;
use crate::clock::Rfc3339Ms;
use crate::store::sessions::{
    Admission, Admitted, SearchPage, SessionFilter, SessionRow, SessionStore, SummaryRow,
};

/// A few rows' worth of JSON, so a page is rarely reallocated.
const BYTES_PER_ITEM: usize = 200;

/// A session store whose `/search` pages are kept between writes. Every write goes through
/// it, so it drops kept pages before the write returns (also when it failed: it may have
/// committed before failing).
#[derive(Debug)]
pub struct PagedStore {
    store: Arc<dyn SessionStore>,
    pages: PageCache,
}

impl PagedStore {
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store, pages: PageCache::default() }
    }

    /// The answer of `GET /search` as JSON (`{"sessions": [...], "total": n}`).
    pub async fn search_json(&self, filter: SessionFilter) -> anyhow::Result<Bytes> {
        if let Some(page) = self.pages.get(&filter) {
            return Ok(page);
        }
        let generation = self.pages.generation();
        let key = filter.clone();
        let page: Bytes = write_page(&self.store.search(filter).await?).into();
        self.pages.put(key, generation, page.clone());
        Ok(page)
    }

    /// Drops the kept pages: another replica changed session rows (its change log said so).
    pub fn forget_pages(&self) {
        self.pages.invalidate();
    }
}

#[async_trait::async_trait]
impl SessionStore for PagedStore {
    async fn insert(&self, row: SessionRow) -> anyhow::Result<()> {
        let result = self.store.insert(row).await;
        self.pages.invalidate();
        result
    }

    async fn save_state(&self, row: SessionRow) -> anyhow::Result<()> {
        let result = self.store.save_state(row).await;
        self.pages.invalidate();
        result
    }

    async fn delete(&self, id: String) -> anyhow::Result<bool> {
        let result = self.store.delete(id).await;
        self.pages.invalidate();
        result
    }

    async fn get(&self, id: String) -> anyhow::Result<Option<SessionRow>> {
        self.store.get(id).await
    }

    async fn search(&self, filter: SessionFilter) -> anyhow::Result<SearchPage> {
        self.store.search(filter).await
    }

    async fn all(&self) -> anyhow::Result<Vec<SessionRow>> {
        self.store.all().await
    }

    async fn insert_admitted(
        &self,
        row: SessionRow,
        admission: Admission,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Admitted> {
        let result = self.store.insert_admitted(row, admission, supervisor, lease_ttl_ms).await;
        self.pages.invalidate();
        result
    }

    async fn save_state_as(&self, row: SessionRow, supervisor: String) -> anyhow::Result<bool> {
        let result = self.store.save_state_as(row, supervisor).await;
        self.pages.invalidate();
        result
    }

    async fn renew_leases(
        &self,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Vec<String>> {
        let result = self.store.renew_leases(supervisor, lease_ttl_ms).await;
        self.pages.invalidate();
        result
    }

    async fn claim_expired(
        &self,
        supervisor: String,
        lease_ttl_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<SessionRow>> {
        let result = self.store.claim_expired(supervisor, lease_ttl_ms, limit).await;
        self.pages.invalidate();
        result
    }

    async fn claim(
        &self,
        id: String,
        supervisor: String,
        lease_ttl_ms: i64,
    ) -> anyhow::Result<Option<SessionRow>> {
        let result = self.store.claim(id, supervisor, lease_ttl_ms).await;
        self.pages.invalidate();
        result
    }

    async fn release_leases(&self, supervisor: String) -> anyhow::Result<u64> {
        let result = self.store.release_leases(supervisor).await;
        self.pages.invalidate();
        result
    }

    /// Not shown by `/search`: kept pages stay.
    async fn record_activity(&self, id: String, at_ms: i64) -> anyhow::Result<()> {
        self.store.record_activity(id, at_ms).await
    }

    async fn last_activity(&self, id: String) -> anyhow::Result<Option<i64>> {
        self.store.last_activity(id).await
    }
}

/// The JSON of one `/search` answer.
pub fn write_page(page: &SearchPage) -> Vec<u8> {
    let mut json = Vec::with_capacity(64 + page.rows.len() * BYTES_PER_ITEM);
    json.extend_from_slice(b"{\"sessions\":[");
    for (index, row) in page.rows.iter().enumerate() {
        if index > 0 {
            json.push(b',');
        }
        write_summary(&mut json, row);
    }
    json.extend_from_slice(b"],\"total\":");
    write_integer(&mut json, page.total);
    json.push(b'}');
    json
}

/// Writes one item exactly as serde writes a `SessionSummary`.
fn write_summary(json: &mut Vec<u8>, row: &SummaryRow) {
    let status: SessionStatus = row.status;
    json.extend_from_slice(b"{\"session_id\":");
    write_str(json, &row.id);
    json.extend_from_slice(b",\"user_id\":");
    write_str(json, &row.user_id);
    json.extend_from_slice(b",\"status\":\"");
    json.extend_from_slice(status.as_str().as_bytes());
    json.extend_from_slice(b"\",\"started_at\":");
    Rfc3339Ms(row.started_at_ms).write_json(json);
    json.extend_from_slice(b",\"port\":");
    match row.port {
        Some(port) => write_integer(json, port),
        None => json.extend_from_slice(b"null"),
    }
    json.extend_from_slice(b",\"tags\":");
    if row.tags.is_empty() {
        json.extend_from_slice(b"{}");
    } else {
        json.push(b'{');
        for (index, (key, value)) in row.tags.iter().enumerate() {
            if index > 0 {
                json.push(b',');
            }
            write_str(json, key);
            json.push(b':');
            write_str(json, value);
        }
        json.push(b'}');
    }
    if status.has_ended() {
        if let Some(code) = row.exit_code {
            json.extend_from_slice(b",\"exit_code\":");
            write_integer(json, code);
        }
        if let Some(reason) = row.exit_reason {
            json.extend_from_slice(b",\"exit_reason\":\"");
            json.extend_from_slice(reason.as_str().as_bytes());
            json.push(b'"');
        }
    }
    json.push(b'}');
}

/// A JSON string: printable ASCII without quotes or backslashes (ids, most user names) is
/// copied as it is, anything else is escaped by serde.
fn write_str(json: &mut Vec<u8>, text: &str) {
    let plain = text.bytes().fold(true, |plain, byte| {
        plain & (0x20..0x7f).contains(&byte) & (byte != b'"') & (byte != b'\\')
    });
    if plain {
        json.push(b'"');
        json.extend_from_slice(text.as_bytes());
        json.push(b'"');
    } else {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *json, text);
    }
}

/// A whole number in decimal, as serde writes it.
fn write_integer(json: &mut Vec<u8>, value: impl itoa::Integer) {
    json.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[cfg(test)]
mod tests;
