//! Profiles in PostgreSQL: the same [`ProfileStore`] as SQLite's, one JSON document per row
//! with a version for optimistic concurrency.

use agentapi_proxy_client::Profile;
use anyhow::Context;

use super::PgStore;
use crate::store::profiles::{ProfileStore, Versioned};

/// The PostgreSQL implementation.
#[derive(Debug, Clone)]
pub struct PgProfiles {
    store: PgStore,
}

impl PgProfiles {
    pub fn new(store: PgStore) -> Self {
        Self { store }
    }
}

fn decode(document: &str) -> anyhow::Result<Profile> {
    serde_json::from_str(document).context("while decoding a stored profile")
}

#[async_trait::async_trait]
impl ProfileStore for PgProfiles {
    async fn insert(&self, profile: Profile, created_at_ms: i64) -> anyhow::Result<()> {
        let document = serde_json::to_string(&profile)?;
        let connection = self.store.connection().await?;
        connection
            .execute(
                "INSERT INTO profiles (id, user_id, created_at, version, document) \
                 VALUES ($1, $2, $3, 1, $4)",
                &[&profile.id, &profile.user_id, &created_at_ms, &document],
            )
            .await
            .context("while inserting a profile")?;
        Ok(())
    }

    async fn get(&self, id: String) -> anyhow::Result<Option<Versioned>> {
        let connection = self.store.connection().await?;
        let row = connection
            .query_opt("SELECT document, version FROM profiles WHERE id = $1", &[&id])
            .await
            .context("while reading a profile")?;
        row.map(|row| Ok(Versioned { profile: decode(row.try_get(0)?)?, version: row.try_get(1)? }))
            .transpose()
    }

    async fn list(&self, user_id: Option<String>) -> anyhow::Result<Vec<Profile>> {
        let connection = self.store.connection().await?;
        let rows = connection
            .query(
                "SELECT document FROM profiles WHERE ($1::TEXT IS NULL OR user_id = $1) \
                 ORDER BY created_at DESC, id DESC",
                &[&user_id],
            )
            .await
            .context("while listing profiles")?;
        rows.iter().map(|row| decode(row.try_get(0)?)).collect()
    }

    async fn replace(&self, profile: Profile, version: i64) -> anyhow::Result<bool> {
        let document = serde_json::to_string(&profile)?;
        let connection = self.store.connection().await?;
        let changed = connection
            .execute(
                "UPDATE profiles SET document = $2, version = version + 1 \
                 WHERE id = $1 AND version = $3",
                &[&profile.id, &document, &version],
            )
            .await
            .context("while saving a profile")?;
        Ok(changed == 1)
    }

    async fn delete(&self, id: String) -> anyhow::Result<bool> {
        let connection = self.store.connection().await?;
        let deleted = connection
            .execute("DELETE FROM profiles WHERE id = $1", &[&id])
            .await
            .context("while deleting a profile")?;
        Ok(deleted > 0)
    }
}
