//! `agentapi-proxy migrate-store --to <postgres url>`: copies the configured SQLite store
//! (sessions, profiles, OAuth sessions) into an empty PostgreSQL database. Run it with the
//! server stopped (the data directory's lock says whether it is); then switch
//! `persistence.backend` to `"postgres"`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::EXIT_USAGE;
use crate::config::{Config, FlagOverrides, LoadOptions, load, parse_postgres_url};
use crate::store::postgres::{self, PgStore, import};
use crate::store::{Location, Store};

#[derive(Debug, Clone, clap::Args)]
pub struct MigrateStoreArgs {
    /// Configuration file naming the SQLite store (default: ./config.json when present).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The PostgreSQL database to fill (`postgres://user:password@host:5432/db`); the
    /// environment variable keeps the password out of the process list.
    #[arg(long = "to", env = "AGENTAPI_PROXY_MIGRATE_TO", hide_env_values = true)]
    pub to: String,
}

pub fn main(args: MigrateStoreArgs) -> ExitCode {
    let config = match load(&LoadOptions::from_process(args.config, FlagOverrides::default())) {
        Ok(loaded) => loaded.config,
        Err(error) => return usage_error(&error.to_string()),
    };
    if let Err(problem) = parse_postgres_url(&args.to) {
        return usage_error(&format!("--to: {problem}"));
    }
    if !config.persistence.enabled || config.persistence.is_postgres() {
        return usage_error(
            "the configured store is not a SQLite file (`persistence.backend` \"sqlite\" with \
             `persistence.enabled` true): nothing to migrate",
        );
    }
    let database = config.sqlite_path();
    if !database.exists() {
        return usage_error(&format!("no SQLite store at {}", database.display()));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(migrate(&config, &database, &args.to)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<crate::data_dir::InUse>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

async fn migrate(config: &Config, database: &Path, url: &str) -> anyhow::Result<String> {
    // A running server holds this lock: copying under it would miss its latest writes.
    let _lock = crate::data_dir::prepare_and_lock(Path::new(&config.data_dir), Some(database))?;
    let source = Store::open(Location::File(database.to_path_buf()))?;
    let options = postgres::Options {
        url: url.to_string(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(config.persistence.connect_timeout_seconds.max(1)),
        replica_id: "migrate-store".into(),
    };
    let target = PgStore::connect(&options).await?;
    let copied = import::copy_from_sqlite(&source, &target).await?;
    Ok(format!(
        "copied {} sessions, {} profiles, {} OAuth sessions, {} agent tokens and chat state \
         ({} threads, {} queued follow-ups, {} posted replies, {} unprocessed events) from {} \
         to PostgreSQL at {}",
        copied.sessions,
        copied.profiles,
        copied.oauth_sessions,
        copied.agent_tokens,
        copied.chat.threads,
        copied.chat.queued,
        copied.chat.turns,
        copied.chat.unprocessed_events,
        database.display(),
        target.target()
    ))
}
