//! The PostgreSQL store (tokio-postgres, a deadpool pool, rustls for TLS): connecting at
//! startup with retries until `persistence.connect_timeout_seconds`, and schema migrations
//! applied under an advisory lock, so replicas starting together migrate once. The
//! repositories live in `postgres/`; they implement the same traits as the SQLite ones.
//! The connection URL holds a password: only [`Target`] (host, port, database) is ever shown.

pub mod agent_tokens;
pub mod changes;
pub mod chat;
pub mod guard;
pub mod import;
pub mod import_chat;
pub mod leader;
pub mod oauth;
pub mod profiles;
pub mod sessions;
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::Host;

/// Schema steps in order, numbered as SQLite's: step N makes the same change in both.
const MIGRATIONS: &[&str] = &[
    include_str!("postgres/migrations/0001_store_meta.sql"),
    include_str!("postgres/migrations/0002_sessions.sql"),
    include_str!("postgres/migrations/0003_profiles.sql"),
    include_str!("postgres/migrations/0004_oauth.sql"),
    include_str!("postgres/migrations/0005_sessions_by_user_status.sql"),
    include_str!("postgres/migrations/0006_oauth_sessions_bound_to.sql"),
    include_str!("postgres/migrations/0007_chat.sql"),
    include_str!("postgres/migrations/0008_backend_ref.sql"),
    include_str!("postgres/migrations/0009_leases.sql"),
];

/// Tables of the store itself, outside the numbered schema steps: which steps were applied,
/// and which server holds the database (`guard`).
const BOOKKEEPING: &str = "
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version     INTEGER PRIMARY KEY,
        applied_at  BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS replica_holder (
        role      TEXT PRIMARY KEY,
        hostname  TEXT NOT NULL,
        pid       INTEGER NOT NULL,
        since     BIGINT NOT NULL
    );";

/// Advisory lock keys (`classid`, `objid`) of this program: the first half spells "apxp".
pub(crate) const LOCK_CLASS: i32 = 0x6170_7870;
const MIGRATION_LOCK: i32 = 1;
pub(crate) const SINGLE_REPLICA_LOCK: i32 = 2;
/// Held (per transaction) while a session is counted against the limits and inserted.
pub(crate) const ADMISSION_LOCK: i32 = 3;

/// The longest pause between two connection attempts at startup.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Where the database is, as logs may show it: never the user's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}/{}", self.host, self.port, self.database)
    }
}

impl Target {
    fn of(config: &tokio_postgres::Config) -> Self {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".into(),
        };
        Self {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            database: config.get_dbname().unwrap_or_default().to_string(),
        }
    }
}

/// The database could not be reached within `persistence.connect_timeout_seconds`.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL at {target} could not be reached within {seconds} s: {last_error}")]
pub struct Unreachable {
    pub target: Target,
    pub seconds: u64,
    pub last_error: String,
}

/// What connecting needs (`persistence.*`).
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// This replica's id, every connection's `application_name` (the origin other replicas
    /// see in change notices). PostgreSQL keeps its first 63 bytes; the caller passes a
    /// valid one.
    pub replica_id: String,
}

/// A connection's driving half, for a caller that reads its notifications itself.
pub(crate) type RawConnection =
    tokio_postgres::Connection<tokio_postgres::Socket, tls::RustlsStream<tokio_postgres::Socket>>;

/// A pool of connections to the database; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// TLS for `sslmode=prefer|require`: the server's certificate must verify against the
    /// Mozilla roots.
    tls: tls::RustlsConnector,
    config: Arc<tokio_postgres::Config>,
    target: Arc<Target>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PgStore").field("target", &self.target).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (retrying an unreachable server with backoff until the timeout, each failure
    /// logged with host and port) and migrates the schema. A newer-than-known schema is
    /// refused and left untouched.
    pub async fn connect(options: &Options) -> anyhow::Result<Self> {
        let mut config = crate::config::parse_postgres_url(&options.url)
            .map_err(|problem| anyhow::anyhow!("`persistence.postgres_url`: {problem}"))?;
        config.application_name(&options.replica_id);
        let target = Target::of(&config);
        let give_up = Instant::now() + options.connect_timeout;
        let mut attempt_config = config.clone();
        attempt_config.connect_timeout(options.connect_timeout.min(Duration::from_secs(10)));
        let tls = tls::RustlsConnector::with_webpki_roots()
            .context("while setting up TLS for PostgreSQL")?;
        let manager = Manager::from_config(
            attempt_config,
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .context("while building the PostgreSQL pool")?;
        let store = Self { pool, tls, config: Arc::new(config), target: Arc::new(target) };
        let mut pause = Duration::from_millis(100);
        loop {
            match store.pool.get().await {
                Ok(_) => break,
                Err(error) => {
                    let error = describe(&error);
                    tracing::warn!(
                        host = %store.target.host,
                        port = store.target.port,
                        "cannot reach PostgreSQL at {}: {error}",
                        store.target
                    );
                    if Instant::now() + pause >= give_up {
                        return Err(Unreachable {
                            target: Target::clone(&store.target),
                            seconds: options.connect_timeout.as_secs(),
                            last_error: error,
                        }
                        .into());
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
        store.migrate().await.context("while migrating the PostgreSQL schema")?;
        tracing::info!("store: PostgreSQL at {}", store.target);
        Ok(store)
    }

    /// Where the database is (for logs).
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A pooled connection.
    pub(crate) async fn connection(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|error| {
            anyhow::anyhow!(
                "cannot get a PostgreSQL connection to {}: {}",
                self.target,
                describe(&error)
            )
        })
    }

    /// A connection of its own, outside the pool (held for the server's life by the
    /// single-replica guard), and a task that ends when the connection does.
    pub(crate) async fn dedicated_connection(
        &self,
    ) -> anyhow::Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        let (client, connection) = self.raw_connection().await?;
        let target = Arc::clone(&self.target);
        let ended = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::error!("the dedicated PostgreSQL connection to {target} ended: {error}");
            }
        });
        Ok((client, ended))
    }

    /// A connection of its own, outside the pool, whose driving half the caller polls
    /// (it carries the server's notifications); the client does nothing until it is polled.
    pub(crate) async fn raw_connection(
        &self,
    ) -> anyhow::Result<(tokio_postgres::Client, RawConnection)> {
        self.config
            .connect(self.tls.clone())
            .await
            .with_context(|| format!("while connecting to PostgreSQL at {}", self.target))
    }

    /// How many migrations the database has applied.
    pub async fn schema_version(&self) -> anyhow::Result<usize> {
        let connection = self.connection().await?;
        applied_version(&connection).await
    }

    /// This database's own id, made by the first replica to ask and kept in `store_meta`.
    pub async fn installation_id(&self) -> anyhow::Result<String> {
        let made = super::database::new_installation_id()?;
        let connection = self.connection().await?;
        connection
            .execute(
                "INSERT INTO store_meta (key, value) VALUES ('installation_id', $1) \
                 ON CONFLICT (key) DO NOTHING",
                &[&made],
            )
            .await
            .context("while recording the installation id")?;
        let row = connection
            .query_one("SELECT value FROM store_meta WHERE key = 'installation_id'", &[])
            .await
            .context("while reading the installation id")?;
        Ok(row.try_get(0)?)
    }

    /// Applies the steps this database lacks, in one transaction holding the migration lock:
    /// a replica starting meanwhile waits, then finds nothing left to do.
    async fn migrate(&self) -> anyhow::Result<()> {
        let mut connection = self.connection().await?;
        let transaction = connection.transaction().await?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LOCK_CLASS, &MIGRATION_LOCK])
            .await
            .context("while taking the migration lock")?;
        transaction
            .batch_execute(BOOKKEEPING)
            .await
            .context("while creating the store's bookkeeping tables")?;
        let applied = applied_version(&transaction).await?;
        if applied > MIGRATIONS.len() {
            bail!(
                "the database schema is version {applied}, newer than this build knows ({}); \
                 refusing to touch it",
                MIGRATIONS.len()
            );
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let version = i32::try_from(index + 1).context("too many migrations")?;
            transaction
                .batch_execute(sql)
                .await
                .with_context(|| format!("while applying migration {version}"))?;
            transaction
                .execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[&version, &crate::clock::now_ms()],
                )
                .await?;
        }
        transaction.commit().await.context("while committing the migrations")?;
        Ok(())
    }
}

async fn applied_version(client: &impl deadpool_postgres::GenericClient) -> anyhow::Result<usize> {
    let exists: bool =
        client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> =
        client.query_one("SELECT MAX(version) FROM schema_migrations", &[]).await?.get(0);
    Ok(version.unwrap_or(0).max(0) as usize)
}

/// A pool error without anything of the URL (tokio-postgres never quotes the password).
fn describe(error: &deadpool_postgres::PoolError) -> String {
    use std::error::Error;
    match error {
        deadpool_postgres::PoolError::Backend(backend) => {
            let mut text = backend.to_string();
            if let Some(source) = backend.source() {
                text = format!("{text}: {source}");
            }
            text
        }
        other => other.to_string(),
    }
}
