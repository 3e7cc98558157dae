//! The store: one repository trait per resource (sessions, profiles, OAuth and key sessions,
//! agent tokens, chat), each with a SQLite implementation beside the trait and a PostgreSQL
//! one in `postgres/`; `database` says which one a server runs on. This file is the SQLite
//! handle (rusqlite, bundled): opening in WAL mode, integrity check, schema migrations by
//! `PRAGMA user_version`, and queries run off the async workers, each write as durable as it
//! asks ([`Durability`]). Rows in, rows out; no axum types here.

pub mod agent_tokens;
pub mod changes;
pub mod chat;
pub mod database;
pub mod oauth;
pub mod postgres;
pub mod profiles;
pub mod sessions;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

/// Schema steps in order; `PRAGMA user_version` counts how many were applied.
const MIGRATIONS: &[&str] = &[
    include_str!("store/migrations/0001_store_meta.sql"),
    include_str!("store/migrations/0002_sessions.sql"),
    include_str!("store/migrations/0003_profiles.sql"),
    include_str!("store/migrations/0004_oauth.sql"),
    include_str!("store/migrations/0005_sessions_by_user_status.sql"),
    include_str!("store/migrations/0006_oauth_sessions_bound_to.sql"),
    include_str!("store/migrations/0007_chat.sql"),
    include_str!("store/migrations/0008_backend_ref.sql"),
    include_str!("store/migrations/0009_leases.sql"),
];

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// `persistence.enabled: false`: nothing survives a restart.
    Memory,
}

/// Read-only connections beside the one that writes (WAL lets them read concurrently).
const READERS: usize = 2;

/// What a write must survive once it has returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The commit waits for the disk (`synchronous = FULL`): it survives a power loss.
    PowerLoss,
    /// The commit is in the write-ahead log, in the operating system's cache
    /// (`synchronous = NORMAL`): it survives any crash or kill of this process, and the
    /// database stays consistent after a power loss, but the latest such commits may roll
    /// back then (the next `PowerLoss` commit or checkpoint makes them durable too).
    ProcessCrash,
}

/// The connection that writes, and the durability it is set to.
#[derive(Debug)]
struct Writer {
    connection: Connection,
    durability: Durability,
}

/// A handle to the database; cheap to clone. Queries run on blocking threads: writes on one
/// connection, reads on a small pool of read-only ones (file databases only).
#[derive(Debug, Clone)]
pub struct Store {
    writer: Arc<Mutex<Writer>>,
    readers: Arc<[Mutex<Connection>]>,
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store {
    /// Opens (creating if needed) the database, checks its integrity and migrates it.
    /// A damaged or newer-than-known file is refused and left untouched.
    pub fn open(location: Location) -> anyhow::Result<Self> {
        let connection = match &location {
            Location::File(path) => open_file(path)?,
            Location::Memory => {
                Connection::open_in_memory().context("while opening the in-memory database")?
            }
        };
        configure(&connection).context("while setting database pragmas")?;
        migrate(&connection).context("while migrating the database schema")?;
        let readers = match &location {
            Location::File(path) => (0..READERS)
                .map(|_| open_reader(path).map(Mutex::new))
                .collect::<anyhow::Result<Vec<_>>>()?,
            Location::Memory => Vec::new(),
        };
        let writer = Writer { connection, durability: Durability::PowerLoss };
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers: readers.into(),
            next_reader: Arc::default(),
        })
    }

    /// Runs `work` with the writing connection on a blocking thread; what it commits
    /// survives a power loss (`write` with [`Durability::PowerLoss`]).
    pub async fn write_durably<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        self.write(Durability::PowerLoss, work).await
    }

    /// Runs `work` with the writing connection on a blocking thread; what it commits is as
    /// durable as `durability` says.
    pub async fn write<T, F>(&self, durability: Durability, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard =
                writer.lock().map_err(|_| anyhow::anyhow!("a database call panicked earlier"))?;
            let writer = &mut *guard;
            if writer.durability != durability {
                let synchronous = match durability {
                    Durability::PowerLoss => "FULL",
                    Durability::ProcessCrash => "NORMAL",
                };
                writer
                    .connection
                    .execute_batch(&format!("PRAGMA synchronous = {synchronous};"))
                    .context("while setting the durability of a write")?;
                writer.durability = durability;
            }
            work(&mut writer.connection)
        })
        .await
        .context("while waiting for a database call")?
    }

    /// Runs a read-only `work` on a reader connection (the writer when there is none), so
    /// reads neither wait for nor block writes.
    pub async fn read<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.write_durably(work).await;
        }
        let readers = self.readers.clone();
        let first = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            // Take a free reader if there is one; otherwise wait for the next in turn.
            let count = readers.len();
            let free = (0..count).find_map(|step| readers[(first + step) % count].try_lock().ok());
            let mut guard = match free {
                Some(guard) => guard,
                None => readers[first % count]
                    .lock()
                    .map_err(|_| anyhow::anyhow!("a database call panicked earlier"))?,
            };
            work(&mut guard)
        })
        .await
        .context("while waiting for a database read")?
    }

    /// Folds the write-ahead log into the main file (at clean shutdown).
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        self.write_durably(|connection| {
            connection
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .context("while checkpointing the write-ahead log")
        })
        .await
    }

    /// How many migrations the database has applied.
    pub async fn schema_version(&self) -> anyhow::Result<usize> {
        self.read(|connection| Ok(user_version(connection)?)).await
    }

    /// This database's own id, made at its first use and kept in `store_meta`.
    pub async fn installation_id(&self) -> anyhow::Result<String> {
        let made = database::new_installation_id()?;
        self.write_durably(move |connection| {
            connection.execute(
                "INSERT OR IGNORE INTO store_meta (key, value) VALUES ('installation_id', ?1)",
                [&made],
            )?;
            Ok(connection.query_row(
                "SELECT value FROM store_meta WHERE key = 'installation_id'",
                [],
                |row| row.get(0),
            )?)
        })
        .await
        .context("while reading the installation id")
    }
}

fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)
        .with_context(|| format!("while opening a reader on {}", path.display()))?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(connection)
}

fn open_file(path: &Path) -> anyhow::Result<Connection> {
    let existed = path.exists();
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(path, flags)
        .with_context(|| format!("while opening the database {}", path.display()))?;
    if existed {
        // Read-only checks first, so a damaged file is refused before anything writes to it.
        let verdict: String = connection
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|error| anyhow::anyhow!("{error}"))
            .with_context(|| {
                format!(
                    "the database {} is damaged or not a SQLite file; it was left untouched",
                    path.display()
                )
            })?;
        if verdict != "ok" {
            bail!(
                "the database {} failed its integrity check ({verdict}); it was left untouched",
                path.display()
            );
        }
    } else {
        set_owner_only(path)?;
    }
    Ok(connection)
}

fn set_owner_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("while restricting {} to its owner", path.display()))
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;",
    )
}

fn user_version(connection: &Connection) -> rusqlite::Result<usize> {
    connection
        .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        .map(|v| v.max(0) as usize)
}

fn migrate(connection: &Connection) -> anyhow::Result<()> {
    let applied = user_version(connection)?;
    if applied > MIGRATIONS.len() {
        bail!(
            "the database schema is version {applied}, newer than this build knows ({}); \
             refusing to touch it",
            MIGRATIONS.len()
        );
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let version = index + 1;
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
            ))
            .with_context(|| format!("while applying migration {version}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_database_is_migrated_and_reopens_at_the_same_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let store = Store::open(Location::File(path.clone())).expect("opens");
        assert_eq!(store.schema_version().await.expect("version"), MIGRATIONS.len());
        drop(store);
        let again = Store::open(Location::File(path.clone())).expect("reopens");
        assert_eq!(again.schema_version().await.expect("version"), MIGRATIONS.len());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let garbage =
            b"this is not a database, but it is long enough to look like one........".repeat(100);
        std::fs::write(&path, &garbage).expect("write");
        let error = Store::open(Location::File(path.clone())).expect_err("must refuse");
        assert!(format!("{error:#}").contains("left untouched"), "{error:#}");
        assert_eq!(std::fs::read(&path).expect("read"), garbage);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        Connection::open(&path)
            .and_then(|c| c.execute_batch("PRAGMA user_version = 999;"))
            .expect("seed");
        let error = Store::open(Location::File(path)).expect_err("must refuse");
        assert!(format!("{error:#}").contains("newer than this build"), "{error:#}");
    }
}
