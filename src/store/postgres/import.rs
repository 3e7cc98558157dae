//! `migrate-store`: copies a SQLite store into an empty PostgreSQL one (sessions with their
//! tags, profiles with their versions, proxy-issued OAuth sessions, agent token hashes, the
//! chat bridge's tables as `import_chat` says) in one transaction, so the target ends up with
//! all of it or nothing. OAuth logins in progress live ten minutes
//! and are not copied.

use anyhow::{Context, bail};
use rusqlite::params;

use super::PgStore;
use super::import_chat::{self, ChatCopied, ChatRows};
use super::oauth::insert_session_row;
use super::sessions::insert_row;
use crate::store::Store;
use crate::store::oauth::{OAuthSessionRow, SESSION_COLUMNS, session_from};
use crate::store::sessions::{SessionStore, SqliteSessions};

/// How many rows of each kind were copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub sessions: usize,
    pub profiles: usize,
    pub oauth_sessions: usize,
    pub agent_tokens: usize,
    pub chat: ChatCopied,
}

/// One stored profile, as its columns.
struct ProfileColumns {
    id: String,
    user_id: String,
    created_at: i64,
    version: i64,
    document: String,
}

/// Copies everything from `source` into `target`, which must hold no sessions, profiles or
/// OAuth sessions yet.
pub async fn copy_from_sqlite(source: &Store, target: &PgStore) -> anyhow::Result<Copied> {
    let sessions = SqliteSessions::new(source.clone()).all().await?;
    let (profiles, oauth_sessions, agent_tokens, chat) = source
        .read(|connection| {
            let mut statement = connection.prepare(
                "SELECT id, user_id, created_at, version, document FROM profiles ORDER BY id",
            )?;
            let profiles = statement
                .query_map(params![], |row| {
                    Ok(ProfileColumns {
                        id: row.get(0)?,
                        user_id: row.get(1)?,
                        created_at: row.get(2)?,
                        version: row.get(3)?,
                        document: row.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut statement =
                connection.prepare(&format!("SELECT {SESSION_COLUMNS} FROM oauth_sessions"))?;
            let oauth = statement
                .query_map(params![], session_from)?
                .collect::<rusqlite::Result<Vec<OAuthSessionRow>>>()?;
            let mut statement = connection
                .prepare("SELECT session_id, token_hash, created_at FROM agent_tokens")?;
            let tokens = statement
                .query_map(params![], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((profiles, oauth, tokens, ChatRows::read(connection)?))
        })
        .await
        .context("while reading the SQLite store")?;

    let mut connection = target.connection().await?;
    let transaction = connection.transaction().await?;
    let tables = ["sessions", "profiles", "oauth_sessions", "agent_tokens"];
    for table in tables.into_iter().chain(import_chat::TABLES) {
        let count: i64 =
            transaction.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[]).await?.get(0);
        if count > 0 {
            bail!(
                "the PostgreSQL database {} already holds {count} rows in `{table}`; \
                 migrate-store only fills an empty store",
                target.target()
            );
        }
    }
    for row in &sessions {
        insert_row(&transaction, row)
            .await
            .with_context(|| format!("while copying session {}", row.id))?;
    }
    for profile in &profiles {
        transaction
            .execute(
                "INSERT INTO profiles (id, user_id, created_at, version, document) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &profile.id,
                    &profile.user_id,
                    &profile.created_at,
                    &profile.version,
                    &profile.document,
                ],
            )
            .await
            .with_context(|| format!("while copying profile {}", profile.id))?;
    }
    for row in &oauth_sessions {
        insert_session_row(&transaction, row).await.context("while copying an OAuth session")?;
    }
    for (session_id, token_hash, created_at) in &agent_tokens {
        transaction
            .execute(
                "INSERT INTO agent_tokens (session_id, token_hash, created_at) VALUES ($1, $2, $3)",
                &[session_id, token_hash, created_at],
            )
            .await
            .context("while copying an agent token")?;
    }
    let chat = chat.write(&transaction).await?;
    transaction.commit().await.context("while committing the copy")?;
    Ok(Copied {
        sessions: sessions.len(),
        profiles: profiles.len(),
        oauth_sessions: oauth_sessions.len(),
        agent_tokens: agent_tokens.len(),
        chat,
    })
}
