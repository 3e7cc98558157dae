//! OAuth rows: logins in progress (state → PKCE verifier, single-use and expiring) and
//! proxy-issued sessions (token digest → identity snapshot). The `OAuthStore` trait and its
//! SQLite implementation, in portable SQL; secrets are only ever stored as SHA-256 hex.

use anyhow::Context;
use rusqlite::{OptionalExtension, Row, params};

use super::Store;

/// A login started by `POST /oauth/authorize` or `GET /oauth/login`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub state_hash: String,
    pub verifier: String,
    pub redirect_uri: String,
    /// Browser flow: where to send the browser afterwards.
    pub return_to: Option<String>,
    /// Browser flow: SHA-256 of the login cookie the callback must present.
    pub binding_hash: Option<String>,
    pub expires_at_ms: i64,
}

/// A proxy-issued session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSessionRow {
    pub token_hash: String,
    pub session_id: String,
    pub user_id: String,
    pub role: String,
    pub permissions: Vec<String>,
    /// `api` (bearer token) or `browser` (cookie).
    pub kind: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// Refreshing never extends past this.
    pub max_expires_at_ms: i64,
    /// The credential a `POST /auth/login` session was made from (`api_key:<hex>` or
    /// `oauth:<token hash>`); it ends when that credential does.
    pub bound_to: Option<String>,
}

/// Storage of OAuth state, shared by every replica on the same database.
#[async_trait::async_trait]
pub trait OAuthStore: Send + Sync + std::fmt::Debug {
    async fn put_pending(&self, login: PendingLogin) -> anyhow::Result<()>;
    /// Removes the login with this state and returns it if it had not expired at `now_ms`.
    /// A state can be taken once.
    async fn take_pending(
        &self,
        state_hash: String,
        now_ms: i64,
    ) -> anyhow::Result<Option<PendingLogin>>;
    async fn insert_session(&self, row: OAuthSessionRow) -> anyhow::Result<()>;
    async fn session_by_token(&self, token_hash: String)
    -> anyhow::Result<Option<OAuthSessionRow>>;
    async fn session_by_id(&self, session_id: String) -> anyhow::Result<Option<OAuthSessionRow>>;
    /// Sets a new expiry; false when the session is gone.
    async fn set_expiry(&self, token_hash: String, expires_at_ms: i64) -> anyhow::Result<bool>;
    async fn delete_session(&self, token_hash: String) -> anyhow::Result<bool>;
    /// Deletes expired logins and sessions; how many rows went.
    async fn purge_expired(&self, now_ms: i64) -> anyhow::Result<usize>;
}

/// The SQLite implementation, on the shared [`Store`] connection.
#[derive(Debug, Clone)]
pub struct SqliteOAuth {
    store: Store,
}

impl SqliteOAuth {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

pub(crate) const SESSION_COLUMNS: &str = "token_hash, session_id, user_id, role, permissions, kind, \
    created_at, expires_at, max_expires_at, bound_to";

pub(crate) fn session_from(row: &Row<'_>) -> rusqlite::Result<OAuthSessionRow> {
    let permissions: String = row.get(4)?;
    Ok(OAuthSessionRow {
        token_hash: row.get(0)?,
        session_id: row.get(1)?,
        user_id: row.get(2)?,
        role: row.get(3)?,
        permissions: serde_json::from_str(&permissions).unwrap_or_default(),
        kind: row.get(5)?,
        created_at_ms: row.get(6)?,
        expires_at_ms: row.get(7)?,
        max_expires_at_ms: row.get(8)?,
        bound_to: row.get(9)?,
    })
}

impl SqliteOAuth {
    async fn one_session(
        &self,
        column: &'static str,
        value: String,
    ) -> anyhow::Result<Option<OAuthSessionRow>> {
        self.store
            .read(move |connection| {
                let sql =
                    format!("SELECT {SESSION_COLUMNS} FROM oauth_sessions WHERE {column} = ?1");
                Ok(connection.query_row(&sql, params![value], session_from).optional()?)
            })
            .await
            .context("while reading an OAuth session")
    }
}

#[async_trait::async_trait]
impl OAuthStore for SqliteOAuth {
    async fn put_pending(&self, login: PendingLogin) -> anyhow::Result<()> {
        self.store
            .write_durably(move |connection| {
                connection.execute(
                    "INSERT INTO oauth_states \
                     (state_hash, verifier, redirect_uri, return_to, binding_hash, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        login.state_hash,
                        login.verifier,
                        login.redirect_uri,
                        login.return_to,
                        login.binding_hash,
                        login.expires_at_ms
                    ],
                )?;
                Ok(())
            })
            .await
            .context("while saving an OAuth login in progress")
    }

    async fn take_pending(
        &self,
        state_hash: String,
        now_ms: i64,
    ) -> anyhow::Result<Option<PendingLogin>> {
        self.store
            .write_durably(move |connection| {
                let taken = connection
                    .query_row(
                        "DELETE FROM oauth_states WHERE state_hash = ?1 \
                         RETURNING state_hash, verifier, redirect_uri, return_to, binding_hash, \
                         expires_at",
                        params![state_hash],
                        |row| {
                            Ok(PendingLogin {
                                state_hash: row.get(0)?,
                                verifier: row.get(1)?,
                                redirect_uri: row.get(2)?,
                                return_to: row.get(3)?,
                                binding_hash: row.get(4)?,
                                expires_at_ms: row.get(5)?,
                            })
                        },
                    )
                    .optional()?;
                Ok(taken.filter(|login| login.expires_at_ms > now_ms))
            })
            .await
            .context("while taking an OAuth login in progress")
    }

    async fn insert_session(&self, row: OAuthSessionRow) -> anyhow::Result<()> {
        let permissions = serde_json::to_string(&row.permissions)?;
        self.store
            .write_durably(move |connection| {
                connection.execute(
                    &format!(
                        "INSERT INTO oauth_sessions ({SESSION_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                    ),
                    params![
                        row.token_hash,
                        row.session_id,
                        row.user_id,
                        row.role,
                        permissions,
                        row.kind,
                        row.created_at_ms,
                        row.expires_at_ms,
                        row.max_expires_at_ms,
                        row.bound_to
                    ],
                )?;
                Ok(())
            })
            .await
            .context("while saving an OAuth session")
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
        self.store
            .write_durably(move |connection| {
                let changed = connection.execute(
                    "UPDATE oauth_sessions SET expires_at = ?2 WHERE token_hash = ?1",
                    params![token_hash, expires_at_ms],
                )?;
                Ok(changed == 1)
            })
            .await
            .context("while extending an OAuth session")
    }

    async fn delete_session(&self, token_hash: String) -> anyhow::Result<bool> {
        self.store
            .write_durably(move |connection| {
                let changed = connection.execute(
                    "DELETE FROM oauth_sessions WHERE token_hash = ?1",
                    params![token_hash],
                )?;
                Ok(changed > 0)
            })
            .await
            .context("while deleting an OAuth session")
    }

    async fn purge_expired(&self, now_ms: i64) -> anyhow::Result<usize> {
        self.store
            .write_durably(move |connection| {
                let states = connection
                    .execute("DELETE FROM oauth_states WHERE expires_at <= ?1", params![now_ms])?;
                let sessions = connection.execute(
                    "DELETE FROM oauth_sessions WHERE expires_at <= ?1",
                    params![now_ms],
                )?;
                Ok(states + sessions)
            })
            .await
            .context("while purging expired OAuth rows")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    fn pending(state: &str, expires_at_ms: i64) -> PendingLogin {
        PendingLogin {
            state_hash: state.into(),
            verifier: "verifier".into(),
            redirect_uri: "https://app/cb".into(),
            return_to: None,
            binding_hash: None,
            expires_at_ms,
        }
    }

    #[tokio::test]
    async fn a_state_is_taken_once_and_never_after_it_expired() {
        let store = SqliteOAuth::new(Store::open(Location::Memory).expect("store"));
        store.put_pending(pending("fresh", 2_000)).await.expect("put");
        store.put_pending(pending("stale", 1_000)).await.expect("put");
        let taken = store.take_pending("fresh".into(), 1_500).await.expect("take");
        assert_eq!(taken.map(|login| login.verifier).as_deref(), Some("verifier"));
        assert!(store.take_pending("fresh".into(), 1_500).await.expect("take").is_none());
        assert!(store.take_pending("stale".into(), 1_500).await.expect("take").is_none());
        assert!(store.take_pending("stale".into(), 0).await.expect("take").is_none(), "gone");
    }

    #[tokio::test]
    async fn sessions_are_found_by_token_or_id_extended_deleted_and_purged() {
        let store = SqliteOAuth::new(Store::open(Location::Memory).expect("store"));
        let row = OAuthSessionRow {
            token_hash: "t1".into(),
            session_id: "s1".into(),
            user_id: "octocat".into(),
            role: "user".into(),
            permissions: vec!["session:list".into()],
            kind: "api".into(),
            created_at_ms: 0,
            expires_at_ms: 100,
            max_expires_at_ms: 1_000,
            bound_to: Some("api_key:00".into()),
        };
        store.insert_session(row.clone()).await.expect("insert");
        store
            .insert_session(OAuthSessionRow {
                token_hash: "t2".into(),
                session_id: "s2".into(),
                ..row.clone()
            })
            .await
            .expect("insert");
        assert_eq!(store.session_by_token("t1".into()).await.expect("read"), Some(row.clone()));
        assert!(store.set_expiry("t1".into(), 500).await.expect("extend"));
        let found = store.session_by_id("s1".into()).await.expect("read").expect("present");
        assert_eq!(found.expires_at_ms, 500);
        assert_eq!(store.purge_expired(200).await.expect("purge"), 1, "t2 expired at 100");
        assert!(store.delete_session("t1".into()).await.expect("delete"));
        assert!(store.session_by_token("t1".into()).await.expect("read").is_none());
    }
}
