//! Agent token rows in PostgreSQL: the same `AgentTokenStore` as SQLite's.

use anyhow::Context;

use super::PgStore;
use crate::store::agent_tokens::AgentTokenStore;

#[derive(Debug, Clone)]
pub struct PgAgentTokens {
    store: PgStore,
}

impl PgAgentTokens {
    pub fn new(store: PgStore) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl AgentTokenStore for PgAgentTokens {
    async fn insert(
        &self,
        session_id: String,
        token_hash: String,
        at_ms: i64,
    ) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        connection
            .execute(
                "INSERT INTO agent_tokens (session_id, token_hash, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (session_id) DO UPDATE \
                 SET token_hash = excluded.token_hash, created_at = excluded.created_at",
                &[&session_id, &token_hash, &at_ms],
            )
            .await
            .context("while recording an agent token")?;
        Ok(())
    }

    async fn all(&self) -> anyhow::Result<Vec<(String, String)>> {
        let connection = self.store.connection().await?;
        let rows = connection
            .query("SELECT session_id, token_hash FROM agent_tokens", &[])
            .await
            .context("while reading agent tokens")?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    async fn delete(&self, session_id: String) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        connection
            .execute("DELETE FROM agent_tokens WHERE session_id = $1", &[&session_id])
            .await
            .context("while deleting an agent token")?;
        Ok(())
    }

    async fn session_of_hash(&self, token_hash: String) -> anyhow::Result<Option<String>> {
        let connection = self.store.connection().await?;
        let row = connection
            .query_opt("SELECT session_id FROM agent_tokens WHERE token_hash = $1", &[&token_hash])
            .await
            .context("while finding an agent token's session")?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }
}
