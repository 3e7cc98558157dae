//! The chat bridge's tables in PostgreSQL: the same `ChatStore` as SQLite's. Every guarantee
//! is the database's, so it holds with several connections (or replicas) at once: the inbox
//! is unique by (platform, event id) and `ON CONFLICT DO NOTHING` tells a new message from a
//! duplicate; queues are ordered by `seq`; a turn is recorded once by its primary key.

use anyhow::Context;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PgStore;
use crate::store::chat::{ChatStore, InboxRow, QueuedRow, ThreadRow};

#[derive(Debug, Clone)]
pub struct PgChat {
    store: PgStore,
}

impl PgChat {
    pub fn new(store: PgStore) -> Self {
        Self { store }
    }
}

const THREAD_COLUMNS: &str =
    "platform, team, channel, root, session_id, owner, started_at, started_by, ended";

fn thread_row(row: &Row) -> anyhow::Result<ThreadRow> {
    Ok(ThreadRow {
        platform: row.try_get(0)?,
        team: row.try_get(1)?,
        channel: row.try_get(2)?,
        root: row.try_get(3)?,
        session_id: row.try_get(4)?,
        owner: row.try_get(5)?,
        started_at_ms: row.try_get(6)?,
        started_by: row.try_get(7)?,
        ended: row.try_get::<_, i32>(8)? != 0,
    })
}

/// Writes one thread row, replacing an earlier mapping of the thread (also used by
/// `migrate-store`).
pub(crate) async fn upsert_thread(
    client: &impl GenericClient,
    row: &ThreadRow,
) -> anyhow::Result<()> {
    client
        .execute(
            &format!(
                "INSERT INTO chat_threads ({THREAD_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (platform, team, channel, root) DO UPDATE SET \
                 session_id = excluded.session_id, owner = excluded.owner, \
                 started_at = excluded.started_at, started_by = excluded.started_by, \
                 ended = excluded.ended"
            ),
            &[
                &row.platform,
                &row.team,
                &row.channel,
                &row.root,
                &row.session_id,
                &row.owner,
                &row.started_at_ms,
                &row.started_by,
                &i32::from(row.ended),
            ],
        )
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl ChatStore for PgChat {
    async fn store_incoming(
        &self,
        platform: String,
        event_id: String,
        message: String,
        at_ms: i64,
    ) -> anyhow::Result<bool> {
        let connection = self.store.connection().await?;
        let inserted = connection
            .execute(
                "INSERT INTO chat_inbox (platform, event_id, message, received_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (platform, event_id) DO NOTHING",
                &[&platform, &event_id, &message, &at_ms],
            )
            .await
            .context("while storing an incoming chat message")?;
        Ok(inserted == 1)
    }

    async fn unprocessed(&self, limit: usize) -> anyhow::Result<Vec<InboxRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let connection = self.store.connection().await?;
        let rows = connection
            .query(
                "SELECT seq, platform, event_id, message FROM chat_inbox \
                 WHERE processed = 0 ORDER BY seq LIMIT $1",
                &[&limit],
            )
            .await
            .context("while reading the chat inbox")?;
        rows.iter()
            .map(|row| {
                Ok(InboxRow {
                    seq: row.try_get(0)?,
                    platform: row.try_get(1)?,
                    event_id: row.try_get(2)?,
                    message: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn mark_processed(&self, seq: i64) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        connection
            .execute("UPDATE chat_inbox SET processed = 1 WHERE seq = $1", &[&seq])
            .await
            .context("while marking a chat message processed")?;
        Ok(())
    }

    async fn thread(
        &self,
        platform: String,
        team: String,
        channel: String,
        root: String,
    ) -> anyhow::Result<Option<ThreadRow>> {
        let connection = self.store.connection().await?;
        let row = connection
            .query_opt(
                &format!(
                    "SELECT {THREAD_COLUMNS} FROM chat_threads \
                     WHERE platform = $1 AND team = $2 AND channel = $3 AND root = $4"
                ),
                &[&platform, &team, &channel, &root],
            )
            .await
            .context("while reading a chat thread")?;
        row.as_ref().map(thread_row).transpose()
    }

    async fn thread_of_session(&self, session_id: String) -> anyhow::Result<Option<ThreadRow>> {
        let connection = self.store.connection().await?;
        // A session belongs to one thread; LIMIT keeps a damaged table from failing the read.
        let row = connection
            .query_opt(
                &format!("SELECT {THREAD_COLUMNS} FROM chat_threads WHERE session_id = $1 LIMIT 1"),
                &[&session_id],
            )
            .await
            .context("while reading a session's chat thread")?;
        row.as_ref().map(thread_row).transpose()
    }

    async fn set_thread(&self, row: ThreadRow) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        upsert_thread(&connection, &row).await.context("while mapping a chat thread")
    }

    async fn end_thread(&self, session_id: String) -> anyhow::Result<()> {
        let mut connection = self.store.connection().await?;
        let transaction = connection.transaction().await?;
        transaction
            .execute("UPDATE chat_threads SET ended = 1 WHERE session_id = $1", &[&session_id])
            .await
            .context("while ending a chat thread")?;
        transaction
            .execute("DELETE FROM chat_queue WHERE session_id = $1", &[&session_id])
            .await
            .context("while dropping an ended thread's queue")?;
        transaction.commit().await.context("while ending a chat thread")?;
        Ok(())
    }

    async fn live_threads(&self) -> anyhow::Result<Vec<ThreadRow>> {
        let connection = self.store.connection().await?;
        let rows = connection
            .query(&format!("SELECT {THREAD_COLUMNS} FROM chat_threads WHERE ended = 0"), &[])
            .await
            .context("while listing chat threads")?;
        rows.iter().map(thread_row).collect()
    }

    async fn enqueue(
        &self,
        session_id: String,
        message_id: String,
        message: String,
        at_ms: i64,
    ) -> anyhow::Result<bool> {
        let connection = self.store.connection().await?;
        let inserted = connection
            .execute(
                "INSERT INTO chat_queue (session_id, message_id, message, queued_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, message_id) DO NOTHING",
                &[&session_id, &message_id, &message, &at_ms],
            )
            .await
            .context("while queueing a follow-up")?;
        Ok(inserted == 1)
    }

    async fn queued(&self, session_id: String) -> anyhow::Result<Vec<QueuedRow>> {
        let connection = self.store.connection().await?;
        let rows = connection
            .query(
                "SELECT seq, session_id, message FROM chat_queue \
                 WHERE session_id = $1 AND sent = 0 ORDER BY seq",
                &[&session_id],
            )
            .await
            .context("while reading queued follow-ups")?;
        rows.iter()
            .map(|row| {
                Ok(QueuedRow {
                    seq: row.try_get(0)?,
                    session_id: row.try_get(1)?,
                    message: row.try_get(2)?,
                })
            })
            .collect()
    }

    async fn dequeue(&self, seq: i64) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        connection
            .execute("UPDATE chat_queue SET sent = 1 WHERE seq = $1", &[&seq])
            .await
            .context("while removing a sent follow-up")?;
        Ok(())
    }

    async fn queue_depth(&self) -> anyhow::Result<u64> {
        let connection = self.store.connection().await?;
        let count: i64 = connection
            .query_one("SELECT COUNT(*) FROM chat_queue WHERE sent = 0", &[])
            .await
            .context("while counting queued follow-ups")?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn posted_turn(
        &self,
        session_id: String,
        turn_id: String,
    ) -> anyhow::Result<Option<String>> {
        let connection = self.store.connection().await?;
        let row = connection
            .query_opt(
                "SELECT message_id FROM chat_turns WHERE session_id = $1 AND turn_id = $2",
                &[&session_id, &turn_id],
            )
            .await
            .context("while reading a posted turn")?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    async fn record_turn(
        &self,
        session_id: String,
        turn_id: String,
        message_id: String,
        at_ms: i64,
    ) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        connection
            .execute(
                "INSERT INTO chat_turns (session_id, turn_id, message_id, posted_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (session_id, turn_id) DO NOTHING",
                &[&session_id, &turn_id, &message_id, &at_ms],
            )
            .await
            .context("while recording a posted turn")?;
        Ok(())
    }
}
