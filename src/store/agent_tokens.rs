//! Agent token rows: the `AgentTokenStore` trait and its SQLite implementation. Only the
//! SHA-256 of a token is kept (a 256-bit random token needs no slow hash).

use anyhow::Context;
use rusqlite::{OptionalExtension, params};

use super::{Durability, Store};

/// Storage of agent token hashes, in portable SQL.
#[async_trait::async_trait]
pub trait AgentTokenStore: Send + Sync + std::fmt::Debug {
    /// Records the token hash (hex) of a session, replacing an earlier one.
    async fn insert(
        &self,
        session_id: String,
        token_hash: String,
        at_ms: i64,
    ) -> anyhow::Result<()>;
    /// Every stored `(session_id, token_hash)`.
    async fn all(&self) -> anyhow::Result<Vec<(String, String)>>;
    async fn delete(&self, session_id: String) -> anyhow::Result<()>;
    /// The session whose token has this hash (hex), if any (a token issued by another
    /// replica, not yet known here).
    async fn session_of_hash(&self, token_hash: String) -> anyhow::Result<Option<String>>;
}

/// The SQLite implementation, on the shared [`Store`] connection.
#[derive(Debug, Clone)]
pub struct SqliteAgentTokens {
    store: Store,
}

impl SqliteAgentTokens {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl AgentTokenStore for SqliteAgentTokens {
    async fn insert(
        &self,
        session_id: String,
        token_hash: String,
        at_ms: i64,
    ) -> anyhow::Result<()> {
        self.store
            .write(Durability::ProcessCrash, move |connection| {
                connection.execute(
                    "INSERT INTO agent_tokens (session_id, token_hash, created_at) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (session_id) DO UPDATE \
                     SET token_hash = excluded.token_hash, created_at = excluded.created_at",
                    params![session_id, token_hash, at_ms],
                )?;
                Ok(())
            })
            .await
            .context("while recording an agent token")
    }

    async fn all(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.store
            .read(|connection| {
                let mut statement =
                    connection.prepare("SELECT session_id, token_hash FROM agent_tokens")?;
                let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .context("while reading agent tokens")
    }

    async fn delete(&self, session_id: String) -> anyhow::Result<()> {
        self.store
            .write(Durability::ProcessCrash, move |connection| {
                connection.execute(
                    "DELETE FROM agent_tokens WHERE session_id = ?1",
                    params![session_id],
                )?;
                Ok(())
            })
            .await
            .context("while deleting an agent token")
    }

    async fn session_of_hash(&self, token_hash: String) -> anyhow::Result<Option<String>> {
        self.store
            .read(move |connection| {
                Ok(connection
                    .query_row(
                        "SELECT session_id FROM agent_tokens WHERE token_hash = ?1",
                        params![token_hash],
                        |row| row.get(0),
                    )
                    .optional()?)
            })
            .await
            .context("while finding an agent token's session")
    }
}
