//! OAuth rows in PostgreSQL: the same [`OAuthStore`] as SQLite's (logins in progress,
//! single-use and expiring; proxy-issued sessions by token digest), shared by every replica.

use anyhow::Context;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PgStore;
use crate::store::oauth::{OAuthSessionRow, OAuthStore, PendingLogin};

/// The PostgreSQL implementation.
#[derive(Debug, Clone)]
pub struct PgOAuth {
    store: PgStore,
}

impl PgOAuth {
    pub fn new(store: PgStore) -> Self {
        Self { store }
    }

    async fn one_session(
        &self,
        column: &'static str,
        value: String,
    ) -> anyhow::Result<Option<OAuthSessionRow>> {
        let connection = self.store.connection().await?;
        let sql = format!("SELECT {SESSION_COLUMNS} FROM oauth_sessions WHERE {column} = $1");
        let row = connection
            .query_opt(&sql, &[&value])
            .await
            .context("while reading an OAuth session")?;
        row.as_ref().map(session_from).transpose()
    }
}

const SESSION_COLUMNS: &str = "token_hash, session_id, user_id, role, permissions, kind, \
    created_at, expires_at, max_expires_at, bound_to";

fn session_from(row: &Row) -> anyhow::Result<OAuthSessionRow> {
    let permissions: &str = row.try_get(4)?;
    Ok(OAuthSessionRow {
        token_hash: row.try_get(0)?,
        session_id: row.try_get(1)?,
        user_id: row.try_get(2)?,
        role: row.try_get(3)?,
        permissions: serde_json::from_str(permissions).unwrap_or_default(),
        kind: row.try_get(5)?,
        created_at_ms: row.try_get(6)?,
        expires_at_ms: row.try_get(7)?,
        max_expires_at_ms: row.try_get(8)?,
        bound_to: row.try_get(9)?,
    })
}

/// Inserts one proxy-issued session with `client`.
pub(crate) async fn insert_session_row(
    client: &impl GenericClient,
    row: &OAuthSessionRow,
) -> anyhow::Result<()> {
    let permissions = serde_json::to_string(&row.permissions)?;
    client
        .execute(
            &format!(
                "INSERT INTO oauth_sessions ({SESSION_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &[
                &row.token_hash,
                &row.session_id,
                &row.user_id,
                &row.role,
                &permissions,
                &row.kind,
                &row.created_at_ms,
                &row.expires_at_ms,
                &row.max_expires_at_ms,
                &row.bound_to,
            ],
        )
        .await?;
    Ok(())
}

#[async_trait::async_trait]
impl OAuthStore for PgOAuth {
    async fn put_pending(&self, login: PendingLogin) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        connection
            .execute(
                "INSERT INTO oauth_states \
                 (state_hash, verifier, redirect_uri, return_to, binding_hash, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &login.state_hash,
                    &login.verifier,
                    &login.redirect_uri,
                    &login.return_to,
                    &login.binding_hash,
                    &login.expires_at_ms,
                ],
            )
            .await
            .context("while saving an OAuth login in progress")?;
        Ok(())
    }

    async fn take_pending(
        &self,
        state_hash: String,
        now_ms: i64,
    ) -> anyhow::Result<Option<PendingLogin>> {
        let connection = self.store.connection().await?;
        let row = connection
            .query_opt(
                "DELETE FROM oauth_states WHERE state_hash = $1 \
                 RETURNING state_hash, verifier, redirect_uri, return_to, binding_hash, expires_at",
                &[&state_hash],
            )
            .await
            .context("while taking an OAuth login in progress")?;
        let Some(row) = row else { return Ok(None) };
        let login = PendingLogin {
            state_hash: row.try_get(0)?,
            verifier: row.try_get(1)?,
            redirect_uri: row.try_get(2)?,
            return_to: row.try_get(3)?,
            binding_hash: row.try_get(4)?,
            expires_at_ms: row.try_get(5)?,
        };
        Ok(Some(login).filter(|login| login.expires_at_ms > now_ms))
    }

    async fn insert_session(&self, row: OAuthSessionRow) -> anyhow::Result<()> {
        let connection = self.store.connection().await?;
        insert_session_row(&connection, &row).await.context("while saving an OAuth session")
    }

    async fn session_by_token(
        &self,
        token_hash: String,
    ) -> anyhow::Result<Option<OAuthSessionRow>> {
        self.one_session("token_hash", token_hash).await
    }

    async fn session_by_id(&self, session_id: String) -> anyhow::Result<Option<OAuthSessionRow>> {
        self.one_session("session_id", session_id).await
    }

    async fn set_expiry(&self, token_hash: String, expires_at_ms: i64) -> anyhow::Result<bool> {
        let connection = self.store.connection().await?;
        let changed = connection
            .execute(
                "UPDATE oauth_sessions SET expires_at = $2 WHERE token_hash = $1",
                &[&token_hash, &expires_at_ms],
            )
            .await
            .context("while extending an OAuth session")?;
        Ok(changed == 1)
    }

    async fn delete_session(&self, token_hash: String) -> anyhow::Result<bool> {
        let connection = self.store.connection().await?;
        let deleted = connection
            .execute("DELETE FROM oauth_sessions WHERE token_hash = $1", &[&token_hash])
            .await
            .context("while deleting an OAuth session")?;
        Ok(deleted > 0)
    }

    async fn purge_expired(&self, now_ms: i64) -> anyhow::Result<usize> {
        let connection = self.store.connection().await?;
        let states = connection
            .execute("DELETE FROM oauth_states WHERE expires_at <= $1", &[&now_ms])
            .await
            .context("while purging expired OAuth logins")?;
        let sessions = connection
            .execute("DELETE FROM oauth_sessions WHERE expires_at <= $1", &[&now_ms])
            .await
            .context("while purging expired OAuth sessions")?;
        Ok((states + sessions) as usize)
    }
}
