//! The chat bridge's own tables (chat.md "Never lose or double an event"): the inbox of
//! incoming messages (unique by platform and event id), the thread ↔ session mapping, the
//! per-session queue of follow-ups, and the replies posted by turn. `ChatStore` is the trait
//! (portable SQL), `SqliteChat` its SQLite implementation (PostgreSQL's is
//! `postgres::chat::PgChat`); messages are opaque JSON text here.

use anyhow::Context;
use rusqlite::{OptionalExtension, params};

use super::{Durability, Store};

/// One stored incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub seq: i64,
    pub platform: String,
    pub event_id: String,
    /// The incoming message as JSON.
    pub message: String,
}

/// A thread and the session it belongs to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRow {
    pub platform: String,
    pub team: String,
    pub channel: String,
    pub root: String,
    pub session_id: String,
    pub owner: String,
    pub started_at_ms: i64,
    /// The chat message that started the session.
    pub started_by: String,
    /// The session ended and the thread was told.
    pub ended: bool,
}

/// A follow-up waiting for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRow {
    pub seq: i64,
    pub session_id: String,
    /// The incoming message as JSON.
    pub message: String,
}

/// Storage of the chat bridge, in portable SQL.
#[async_trait::async_trait]
pub trait ChatStore: Send + Sync + std::fmt::Debug {
    /// Stores an incoming message; false when this platform's `event_id` was seen before.
    async fn store_incoming(
        &self,
        platform: String,
        event_id: String,
        message: String,
        at_ms: i64,
    ) -> anyhow::Result<bool>;
    /// Stored messages not yet processed, oldest first.
    async fn unprocessed(&self, limit: usize) -> anyhow::Result<Vec<InboxRow>>;
    async fn mark_processed(&self, seq: i64) -> anyhow::Result<()>;
    async fn thread(
        &self,
        platform: String,
        team: String,
        channel: String,
        root: String,
    ) -> anyhow::Result<Option<ThreadRow>>;
    async fn thread_of_session(&self, session_id: String) -> anyhow::Result<Option<ThreadRow>>;
    /// Maps the thread to a session, replacing an earlier mapping.
    async fn set_thread(&self, row: ThreadRow) -> anyhow::Result<()>;
    async fn end_thread(&self, session_id: String) -> anyhow::Result<()>;
    /// Threads whose session has not ended.
    async fn live_threads(&self) -> anyhow::Result<Vec<ThreadRow>>;
    /// Queues a message for the agent; false when this chat message was queued before.
    async fn enqueue(
        &self,
        session_id: String,
        message_id: String,
        message: String,
        at_ms: i64,
    ) -> anyhow::Result<bool>;
    /// The session's messages not yet sent, in order.
    async fn queued(&self, session_id: String) -> anyhow::Result<Vec<QueuedRow>>;
    /// Marks a queued message sent.
    async fn dequeue(&self, seq: i64) -> anyhow::Result<()>;
    async fn queue_depth(&self) -> anyhow::Result<u64>;
    /// The message id a turn's reply was posted as, if it was.
    async fn posted_turn(
        &self,
        session_id: String,
        turn_id: String,
    ) -> anyhow::Result<Option<String>>;
    async fn record_turn(
        &self,
        session_id: String,
        turn_id: String,
        message_id: String,
        at_ms: i64,
    ) -> anyhow::Result<()>;
}

/// The SQLite implementation, on the shared [`Store`] connection.
#[derive(Debug, Clone)]
pub struct SqliteChat {
    store: Store,
}

impl SqliteChat {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn write<T, F>(&self, what: &'static str, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
    {
        self.store.write(Durability::ProcessCrash, work).await.context(what)
    }

    async fn read<T, F>(&self, what: &'static str, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> anyhow::Result<T> + Send + 'static,
    {
        self.store.read(work).await.context(what)
    }
}

const THREAD_COLUMNS: &str =
    "platform, team, channel, root, session_id, owner, started_at, started_by, ended";

fn thread_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ThreadRow> {
    Ok(ThreadRow {
        platform: row.get(0)?,
        team: row.get(1)?,
        channel: row.get(2)?,
        root: row.get(3)?,
        session_id: row.get(4)?,
        owner: row.get(5)?,
        started_at_ms: row.get(6)?,
        started_by: row.get(7)?,
        ended: row.get::<_, i64>(8)? != 0,
    })
}

#[async_trait::async_trait]
impl ChatStore for SqliteChat {
    async fn store_incoming(
        &self,
        platform: String,
        event_id: String,
        message: String,
        at_ms: i64,
    ) -> anyhow::Result<bool> {
        self.write("while storing an incoming chat message", move |connection| {
            let inserted = connection.execute(
                "INSERT INTO chat_inbox (platform, event_id, message, received_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (platform, event_id) DO NOTHING",
                params![platform, event_id, message, at_ms],
            )?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn unprocessed(&self, limit: usize) -> anyhow::Result<Vec<InboxRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("while reading the chat inbox", move |connection| {
            let mut statement = connection.prepare(
                "SELECT seq, platform, event_id, message FROM chat_inbox \
                 WHERE processed = 0 ORDER BY seq LIMIT ?1",
            )?;
            let rows = statement.query_map(params![limit], |row| {
                Ok(InboxRow {
                    seq: row.get(0)?,
                    platform: row.get(1)?,
                    event_id: row.get(2)?,
                    message: row.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn mark_processed(&self, seq: i64) -> anyhow::Result<()> {
        self.write("while marking a chat message processed", move |connection| {
            connection
                .execute("UPDATE chat_inbox SET processed = 1 WHERE seq = ?1", params![seq])?;
            Ok(())
        })
        .await
    }

    async fn thread(
        &self,
        platform: String,
        team: String,
        channel: String,
        root: String,
    ) -> anyhow::Result<Option<ThreadRow>> {
        self.read("while reading a chat thread", move |connection| {
            Ok(connection
                .query_row(
                    &format!(
                        "SELECT {THREAD_COLUMNS} FROM chat_threads \
                         WHERE platform = ?1 AND team = ?2 AND channel = ?3 AND root = ?4"
                    ),
                    params![platform, team, channel, root],
                    thread_row,
                )
                .optional()?)
        })
        .await
    }

    async fn thread_of_session(&self, session_id: String) -> anyhow::Result<Option<ThreadRow>> {
        self.read("while reading a session's chat thread", move |connection| {
            Ok(connection
                .query_row(
                    &format!("SELECT {THREAD_COLUMNS} FROM chat_threads WHERE session_id = ?1"),
                    params![session_id],
                    thread_row,
                )
                .optional()?)
        })
        .await
    }

    async fn set_thread(&self, row: ThreadRow) -> anyhow::Result<()> {
        self.write("while mapping a chat thread", move |connection| {
            connection.execute(
                &format!(
                    "INSERT INTO chat_threads ({THREAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                     ON CONFLICT (platform, team, channel, root) DO UPDATE SET \
                     session_id = excluded.session_id, owner = excluded.owner, \
                     started_at = excluded.started_at, started_by = excluded.started_by, \
                     ended = excluded.ended"
                ),
                params![
                    row.platform,
                    row.team,
                    row.channel,
                    row.root,
                    row.session_id,
                    row.owner,
                    row.started_at_ms,
                    row.started_by,
                    i64::from(row.ended)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn end_thread(&self, session_id: String) -> anyhow::Result<()> {
        self.write("while ending a chat thread", move |connection| {
            connection.execute(
                "UPDATE chat_threads SET ended = 1 WHERE session_id = ?1",
                params![session_id.clone()],
            )?;
            connection
                .execute("DELETE FROM chat_queue WHERE session_id = ?1", params![session_id])?;
            Ok(())
        })
        .await
    }

    async fn live_threads(&self) -> anyhow::Result<Vec<ThreadRow>> {
        self.read("while listing chat threads", |connection| {
            let mut statement = connection
                .prepare(&format!("SELECT {THREAD_COLUMNS} FROM chat_threads WHERE ended = 0"))?;
            let rows = statement.query_map([], thread_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn enqueue(
        &self,
        session_id: String,
        message_id: String,
        message: String,
        at_ms: i64,
    ) -> anyhow::Result<bool> {
        self.write("while queueing a follow-up", move |connection| {
            let inserted = connection.execute(
                "INSERT INTO chat_queue (session_id, message_id, message, queued_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (session_id, message_id) DO NOTHING",
                params![session_id, message_id, message, at_ms],
            )?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn queued(&self, session_id: String) -> anyhow::Result<Vec<QueuedRow>> {
        self.read("while reading queued follow-ups", move |connection| {
            let mut statement = connection.prepare(
                "SELECT seq, session_id, message FROM chat_queue \
                 WHERE session_id = ?1 AND sent = 0 ORDER BY seq",
            )?;
            let rows = statement.query_map(params![session_id], |row| {
                Ok(QueuedRow { seq: row.get(0)?, session_id: row.get(1)?, message: row.get(2)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn dequeue(&self, seq: i64) -> anyhow::Result<()> {
        self.write("while removing a sent follow-up", move |connection| {
            connection.execute("UPDATE chat_queue SET sent = 1 WHERE seq = ?1", params![seq])?;
            Ok(())
        })
        .await
    }

    async fn queue_depth(&self) -> anyhow::Result<u64> {
        self.read("while counting queued follow-ups", |connection| {
            let count: i64 = connection.query_row(
                "SELECT COUNT(*) FROM chat_queue WHERE sent = 0",
                [],
                |row| row.get(0),
            )?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn posted_turn(
        &self,
        session_id: String,
        turn_id: String,
    ) -> anyhow::Result<Option<String>> {
        self.read("while reading a posted turn", move |connection| {
            Ok(connection
                .query_row(
                    "SELECT message_id FROM chat_turns WHERE session_id = ?1 AND turn_id = ?2",
                    params![session_id, turn_id],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn record_turn(
        &self,
        session_id: String,
        turn_id: String,
        message_id: String,
        at_ms: i64,
    ) -> anyhow::Result<()> {
        self.write("while recording a posted turn", move |connection| {
            connection.execute(
                "INSERT INTO chat_turns (session_id, turn_id, message_id, posted_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (session_id, turn_id) DO NOTHING",
                params![session_id, turn_id, message_id, at_ms],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    fn store() -> SqliteChat {
        SqliteChat::new(Store::open(Location::Memory).expect("in-memory store"))
    }

    #[tokio::test]
    async fn the_inbox_keeps_one_row_per_event_until_processed() {
        let chat = store();
        let stored = |id: &str| chat.store_incoming("slack".into(), id.into(), "{}".into(), 1);
        assert!(stored("Ev1").await.expect("store"));
        assert!(!stored("Ev1").await.expect("store"), "a redelivery is a duplicate");
        assert!(stored("Ev2").await.expect("store"));
        let rows = chat.unprocessed(10).await.expect("read");
        assert_eq!(rows.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["Ev1", "Ev2"]);
        chat.mark_processed(rows[0].seq).await.expect("mark");
        let rows = chat.unprocessed(10).await.expect("read");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].event_id, "Ev2");
    }

    #[tokio::test]
    async fn threads_queues_and_turns_round_trip() {
        let chat = store();
        let row = ThreadRow {
            platform: "slack".into(),
            team: "T1".into(),
            channel: "C1".into(),
            root: "1.0".into(),
            session_id: "s1".into(),
            owner: "alice".into(),
            started_at_ms: 5,
            started_by: "1.0".into(),
            ended: false,
        };
        chat.set_thread(row.clone()).await.expect("map");
        let found = chat.thread("slack".into(), "T1".into(), "C1".into(), "1.0".into()).await;
        assert_eq!(found.expect("read"), Some(row.clone()));
        assert_eq!(chat.live_threads().await.expect("live").len(), 1);
        assert!(chat.enqueue("s1".into(), "1.1".into(), "a".into(), 1).await.expect("queue"));
        assert!(chat.enqueue("s1".into(), "1.2".into(), "b".into(), 2).await.expect("queue"));
        assert_eq!(chat.queue_depth().await.expect("depth"), 2);
        let first = chat.queued("s1".into()).await.expect("queued")[0].seq;
        chat.dequeue(first).await.expect("dequeue");
        let again = chat.enqueue("s1".into(), "1.1".into(), "a".into(), 3).await.expect("queue");
        assert!(!again, "a message sent before is not queued again");
        let left = chat.queued("s1".into()).await.expect("queued");
        assert_eq!(left.iter().map(|q| q.message.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(chat.posted_turn("s1".into(), "t1".into()).await.expect("turn"), None);
        chat.record_turn("s1".into(), "t1".into(), "m1".into(), 3).await.expect("record");
        chat.record_turn("s1".into(), "t1".into(), "m2".into(), 4).await.expect("again");
        let posted = chat.posted_turn("s1".into(), "t1".into()).await.expect("turn");
        assert_eq!(posted.as_deref(), Some("m1"));
        chat.end_thread("s1".into()).await.expect("end");
        assert!(chat.live_threads().await.expect("live").is_empty());
        assert_eq!(chat.queue_depth().await.expect("depth"), 0);
    }
}
