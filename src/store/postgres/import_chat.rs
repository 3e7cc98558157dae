//! `migrate-store`'s share of the chat bridge's tables: thread ↔ session mappings, queued
//! follow-ups (sent ones too, so a message processed again is still not sent twice), posted
//! replies by turn, and the inbox rows not yet processed (in their order; the processed ones
//! are history). Rows get new `seq` numbers in the same order; nothing refers to them.

use anyhow::Context;
use deadpool_postgres::GenericClient;
use rusqlite::params;

use super::chat::upsert_thread;
use crate::store::chat::ThreadRow;

/// The chat tables, which must be empty in the target.
pub(crate) const TABLES: [&str; 4] = ["chat_inbox", "chat_threads", "chat_queue", "chat_turns"];

/// How many chat rows of each kind were copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatCopied {
    pub threads: usize,
    /// Follow-ups, sent or not.
    pub queued: usize,
    pub turns: usize,
    pub unprocessed_events: usize,
}

/// The chat rows of a SQLite store, read in one go.
#[derive(Debug, Default)]
pub(crate) struct ChatRows {
    threads: Vec<ThreadRow>,
    /// session id, message id, message, queued at, sent.
    queue: Vec<(String, String, String, i64, i64)>,
    /// session id, turn id, message id, posted at.
    turns: Vec<(String, String, String, i64)>,
    /// platform, event id, message, received at.
    inbox: Vec<(String, String, String, i64)>,
}

impl ChatRows {
    /// Reads them (inside the SQLite store's read).
    pub(crate) fn read(connection: &rusqlite::Connection) -> rusqlite::Result<Self> {
        let mut statement = connection.prepare(
            "SELECT platform, team, channel, root, session_id, owner, started_at, started_by, \
             ended FROM chat_threads",
        )?;
        let threads = statement
            .query_map(params![], |row| {
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
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut statement = connection.prepare(
            "SELECT session_id, message_id, message, queued_at, sent FROM chat_queue ORDER BY seq",
        )?;
        let queue = statement
            .query_map(params![], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut statement = connection
            .prepare("SELECT session_id, turn_id, message_id, posted_at FROM chat_turns")?;
        let turns = statement
            .query_map(params![], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut statement = connection.prepare(
            "SELECT platform, event_id, message, received_at FROM chat_inbox \
             WHERE processed = 0 ORDER BY seq",
        )?;
        let inbox = statement
            .query_map(params![], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Self { threads, queue, turns, inbox })
    }

    /// Writes them into PostgreSQL (inside the copy's transaction).
    pub(crate) async fn write(&self, client: &impl GenericClient) -> anyhow::Result<ChatCopied> {
        for thread in &self.threads {
            upsert_thread(client, thread).await.context("while copying a chat thread")?;
        }
        for (session_id, message_id, message, queued_at, sent) in &self.queue {
            let sent = i32::from(*sent != 0);
            client
                .execute(
                    "INSERT INTO chat_queue (session_id, message_id, message, queued_at, sent) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[session_id, message_id, message, queued_at, &sent],
                )
                .await
                .context("while copying a queued follow-up")?;
        }
        for (session_id, turn_id, message_id, posted_at) in &self.turns {
            client
                .execute(
                    "INSERT INTO chat_turns (session_id, turn_id, message_id, posted_at) \
                     VALUES ($1, $2, $3, $4)",
                    &[session_id, turn_id, message_id, posted_at],
                )
                .await
                .context("while copying a posted reply")?;
        }
        for (platform, event_id, message, received_at) in &self.inbox {
            client
                .execute(
                    "INSERT INTO chat_inbox (platform, event_id, message, received_at) \
                     VALUES ($1, $2, $3, $4)",
                    &[platform, event_id, message, received_at],
                )
                .await
                .context("while copying an unprocessed chat event")?;
        }
        Ok(ChatCopied {
            threads: self.threads.len(),
            queued: self.queue.len(),
            turns: self.turns.len(),
            unprocessed_events: self.inbox.len(),
        })
    }
}
