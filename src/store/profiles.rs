//! Profile rows: the `ProfileStore` trait and its SQLite implementation. A profile is one
//! JSON document per row, written whole, with a version for optimistic concurrency.

use agentapi_proxy_client::Profile;
use anyhow::Context;
use rusqlite::{OptionalExtension, params};

use super::Store;

/// A stored profile and the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub profile: Profile,
    pub version: i64,
}

/// Storage of profiles, in portable SQL.
#[async_trait::async_trait]
pub trait ProfileStore: Send + Sync + std::fmt::Debug {
    async fn insert(&self, profile: Profile, created_at_ms: i64) -> anyhow::Result<()>;
    async fn get(&self, id: String) -> anyhow::Result<Option<Versioned>>;
    /// Profiles of `user_id` (or everyone's), newest first.
    async fn list(&self, user_id: Option<String>) -> anyhow::Result<Vec<Profile>>;
    /// Writes `profile` if it is still at `version`; false when someone wrote it meanwhile
    /// (or it was deleted).
    async fn replace(&self, profile: Profile, version: i64) -> anyhow::Result<bool>;
    async fn delete(&self, id: String) -> anyhow::Result<bool>;
}

/// The SQLite implementation, on the shared [`Store`] connection.
#[derive(Debug, Clone)]
pub struct SqliteProfiles {
    store: Store,
}

impl SqliteProfiles {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn decode(document: &str) -> rusqlite::Result<Profile> {
    serde_json::from_str(document).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

#[async_trait::async_trait]
impl ProfileStore for SqliteProfiles {
    async fn insert(&self, profile: Profile, created_at_ms: i64) -> anyhow::Result<()> {
        let document = serde_json::to_string(&profile)?;
        self.store
            .write_durably(move |connection| {
                connection.execute(
                    "INSERT INTO profiles (id, user_id, created_at, version, document) \
                     VALUES (?1, ?2, ?3, 1, ?4)",
                    params![profile.id, profile.user_id, created_at_ms, document],
                )?;
                Ok(())
            })
            .await
            .context("while inserting a profile")
    }

    async fn get(&self, id: String) -> anyhow::Result<Option<Versioned>> {
        self.store
            .read(move |connection| {
                Ok(connection
                    .query_row(
                        "SELECT document, version FROM profiles WHERE id = ?1",
                        params![id],
                        |row| {
                            let document: String = row.get(0)?;
                            Ok(Versioned { profile: decode(&document)?, version: row.get(1)? })
                        },
                    )
                    .optional()?)
            })
            .await
            .context("while reading a profile")
    }

    async fn list(&self, user_id: Option<String>) -> anyhow::Result<Vec<Profile>> {
        self.store
            .read(move |connection| {
                let mut statement = connection.prepare(
                    "SELECT document FROM profiles WHERE (?1 IS NULL OR user_id = ?1) \
                     ORDER BY created_at DESC, id DESC",
                )?;
                let profiles = statement
                    .query_map(params![user_id], |row| decode(&row.get::<_, String>(0)?))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(profiles)
            })
            .await
            .context("while listing profiles")
    }

    async fn replace(&self, profile: Profile, version: i64) -> anyhow::Result<bool> {
        let document = serde_json::to_string(&profile)?;
        self.store
            .write_durably(move |connection| {
                let changed = connection.execute(
                    "UPDATE profiles SET document = ?2, version = version + 1 \
                     WHERE id = ?1 AND version = ?3",
                    params![profile.id, document, version],
                )?;
                Ok(changed == 1)
            })
            .await
            .context("while saving a profile")
    }

    async fn delete(&self, id: String) -> anyhow::Result<bool> {
        self.store
            .write_durably(move |connection| {
                Ok(connection.execute("DELETE FROM profiles WHERE id = ?1", params![id])? > 0)
            })
            .await
            .context("while deleting a profile")
    }
}
