//! Leading a role among the replicas of one database (the chat bridge: Socket Mode and the
//! inbox, scale-out.md §3): a session-level advisory lock held on a connection of its own.
//! PostgreSQL frees it when that connection ends, so a replica that dies hands the role on
//! as soon as its connection closes, and one whose connection drops stops leading.

use std::time::Duration;

use anyhow::Context;

use super::{LOCK_CLASS, PgStore};

/// The chat bridge's role.
pub const CHAT_BRIDGE: i32 = 4;

/// How often a replica that does not lead tries again.
const TRY_EVERY: Duration = Duration::from_secs(1);

/// This replica leads the role while this lives; dropping it hands the role on.
#[derive(Debug)]
pub struct Lead {
    _connection: tokio_postgres::Client,
    ended: tokio::task::JoinHandle<()>,
}

impl Lead {
    /// Resolves when the role is lost (the connection holding it ended).
    pub async fn lost(mut self) {
        let _ = (&mut self.ended).await;
    }
}

/// Waits until this replica leads `role`.
pub async fn acquire(store: &PgStore, role: i32) -> Lead {
    loop {
        match try_to_lead(store, role).await {
            Ok(lead) => return lead,
            Err(error) => tracing::warn!("cannot take the lead yet: {error:#}"),
        }
        tokio::time::sleep(TRY_EVERY).await;
    }
}

/// One connection asks until it gets the lock; an error means the connection failed.
async fn try_to_lead(store: &PgStore, role: i32) -> anyhow::Result<Lead> {
    let (connection, ended) = store.dedicated_connection().await?;
    loop {
        let locked: bool = connection
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &role])
            .await
            .context("while asking for the lead")?
            .get(0);
        if locked {
            return Ok(Lead { _connection: connection, ended });
        }
        tokio::time::sleep(TRY_EVERY).await;
    }
}
