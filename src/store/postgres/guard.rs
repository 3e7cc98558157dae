//! One server per database with the local backend: its agents run on its own host, so a
//! second server on the same database would re-adopt (and stop) sessions it cannot reach.
//! The first holds a session-level advisory lock on a connection of its own for its whole
//! life, and writes who it is in `replica_holder`; PostgreSQL drops the lock when that
//! connection ends (the process exits or is killed), so a crash never leaves it stale. If the
//! connection drops while the server runs (a database restart), the lock is taken again.

use std::time::Duration;

use anyhow::Context;

use super::{LOCK_CLASS, PgStore, SINGLE_REPLICA_LOCK, Target};

/// Longest pause between attempts to take the lock again after its connection dropped.
const RETAKE_PAUSE: Duration = Duration::from_secs(5);

/// Held while the server lives; dropping it closes the connection and frees the database.
#[derive(Debug)]
pub struct ReplicaGuard {
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for ReplicaGuard {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Another live server uses this database with the local backend.
#[derive(Debug, thiserror::Error)]
#[error(
    "the PostgreSQL database {target} is in use by another agentapi-proxy server ({holder}); \
     with the local agent backend only one server may use a database: stop it first, or give \
     this one its own database"
)]
pub struct DatabaseInUse {
    pub target: Target,
    /// `host <hostname> pid <pid>`, or why it is unknown.
    pub holder: String,
}

/// Who this server is, as the holder row and a refusal name it.
fn this_server() -> (String, i32) {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    (hostname, std::process::id() as i32)
}

/// Takes the database for this server, or names the server that has it.
pub async fn acquire(store: &PgStore) -> anyhow::Result<ReplicaGuard> {
    let held = take(store).await?;
    let store = store.clone();
    let keeper = tokio::spawn(async move { keep(store, held).await });
    Ok(ReplicaGuard { keeper })
}

/// Holds the lock; when its connection ends, takes it again on a new one.
async fn keep(store: PgStore, mut held: (tokio_postgres::Client, tokio::task::JoinHandle<()>)) {
    loop {
        let (client, ended) = held;
        let _ = ended.await;
        drop(client);
        tracing::error!(
            "lost the connection holding PostgreSQL at {} for this server; taking it again",
            store.target()
        );
        let mut pause = Duration::from_millis(200);
        held = loop {
            match take(&store).await {
                Ok(held) => break held,
                Err(error) => {
                    tracing::error!(
                        "cannot take PostgreSQL at {} again: {error:#}",
                        store.target()
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETAKE_PAUSE);
                }
            }
        };
        tracing::info!("this server holds PostgreSQL at {} again", store.target());
    }
}

/// One attempt: the lock on a new connection, and the holder row.
async fn take(
    store: &PgStore,
) -> anyhow::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
    let (connection, ended) = store.dedicated_connection().await?;
    let locked: bool = connection
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &SINGLE_REPLICA_LOCK])
        .await
        .context("while taking the single-server lock")?
        .get(0);
    if !locked {
        let holder = connection
            .query_opt("SELECT hostname, pid FROM replica_holder WHERE role = 'local'", &[])
            .await
            .context("while reading who holds the database")?
            .map(|row| format!("host {} pid {}", row.get::<_, String>(0), row.get::<_, i32>(1)))
            .unwrap_or_else(|| "holder unknown".into());
        return Err(DatabaseInUse { target: store.target().clone(), holder }.into());
    }
    let (hostname, pid) = this_server();
    connection
        .execute(
            "INSERT INTO replica_holder (role, hostname, pid, since) VALUES ('local', $1, $2, $3) \
             ON CONFLICT (role) DO UPDATE SET hostname = $1, pid = $2, since = $3",
            &[&hostname, &pid, &crate::clock::now_ms()],
        )
        .await
        .context("while recording this server as the database's holder")?;
    Ok((connection, ended))
}
