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

    /// How many schema steps the database has applied.
    pub async fn schema_version(&self) -> anyhow::Result<usize> {
        match self {
            Database::Sqlite(store) => store.schema_version().await,
            Database::Postgres(store) => store.schema_version().await,
        }
    }
}
