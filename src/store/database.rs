//! The database a server runs on, whichever backend `persistence.backend` chose; the
//! repositories of each are built from it in `state.rs`.

use super::Store;
use super::postgres::PgStore;

/// The open database.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(Store),
    Postgres(PgStore),
}

impl Database {
    /// What other replicas change (PostgreSQL); SQLite has one server, so none.
    pub fn change_log(&self) -> Option<std::sync::Arc<dyn super::changes::ChangeLog>> {
        match self {
            Database::Sqlite(_) => None,
            Database::Postgres(store) => {
                Some(std::sync::Arc::new(super::postgres::changes::PgChangeLog::new(store.clone())))
            }
        }
    }

    /// At clean shutdown: SQLite folds its write-ahead log into the main file; PostgreSQL
    /// has nothing to do.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        match self {
            Database::Sqlite(store) => store.checkpoint().await,
            Database::Postgres(_) => Ok(()),
        }
    }

    /// The database's own id (a label on what a backend creates, so two installations
    /// sharing a Kubernetes namespace never take each other's Pods for orphans).
    pub async fn installation_id(&self) -> anyhow::Result<String> {
        match self {
            Database::Sqlite(store) => store.installation_id().await,
            Database::Postgres(store) => store.installation_id().await,
        }
    }

    /// How many schema steps the database has applied.
    pub async fn schema_version(&self) -> anyhow::Result<usize> {
        match self {
            Database::Sqlite(store) => store.schema_version().await,
            Database::Postgres(store) => store.schema_version().await,
        }
    }
}

/// A new installation id: 16 random bytes in hex (a valid label value).
pub(crate) fn new_installation_id() -> anyhow::Result<String> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
    Ok(hex::encode(random))
}
