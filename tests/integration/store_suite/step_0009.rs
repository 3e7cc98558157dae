//! Schema step 0009 (leases; on PostgreSQL also revisions, tombstones and notices) applied to
//! databases that a build at step 8 wrote rows into.

use agentapi_proxy::store::changes::ChangeLog;
use agentapi_proxy::store::postgres::changes::PgChangeLog;
use agentapi_proxy::store::postgres::sessions::PgSessions;
use agentapi_proxy::store::sessions::{SessionStore, SqliteSessions};
use agentapi_proxy::store::{Location, Store};

use super::{pg_replica, session};
use crate::support::postgres as test_postgres;

const SQLITE_STEPS: [&str; 8] = [
    include_str!("../../../src/store/migrations/0001_store_meta.sql"),
    include_str!("../../../src/store/migrations/0002_sessions.sql"),
    include_str!("../../../src/store/migrations/0003_profiles.sql"),
    include_str!("../../../src/store/migrations/0004_oauth.sql"),
    include_str!("../../../src/store/migrations/0005_sessions_by_user_status.sql"),
    include_str!("../../../src/store/migrations/0006_oauth_sessions_bound_to.sql"),
    include_str!("../../../src/store/migrations/0007_chat.sql"),
    include_str!("../../../src/store/migrations/0008_backend_ref.sql"),
];

const POSTGRES_STEPS: [&str; 8] = [
    include_str!("../../../src/store/postgres/migrations/0001_store_meta.sql"),
    include_str!("../../../src/store/postgres/migrations/0002_sessions.sql"),
    include_str!("../../../src/store/postgres/migrations/0003_profiles.sql"),
    include_str!("../../../src/store/postgres/migrations/0004_oauth.sql"),
    include_str!("../../../src/store/postgres/migrations/0005_sessions_by_user_status.sql"),
    include_str!("../../../src/store/postgres/migrations/0006_oauth_sessions_bound_to.sql"),
    include_str!("../../../src/store/postgres/migrations/0007_chat.sql"),
    include_str!("../../../src/store/postgres/migrations/0008_backend_ref.sql"),
];

const OLD_ROWS: &str = "INSERT INTO sessions (id, user_id, status, port, backend_ref, started_at) \
     VALUES ('old-1', 'alice', 'active', 9001, '{\"v\":1}', 1), \
            ('old-2', 'bob', 'exited', NULL, NULL, 2)";

#[tokio::test]
async fn step_0009_upgrades_a_sqlite_database_at_step_8() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let old = rusqlite::Connection::open(&path).expect("open");
    for sql in SQLITE_STEPS {
        old.execute_batch(sql).expect("an old step");
    }
    old.execute_batch("PRAGMA user_version = 8;").expect("version");
    old.execute_batch(OLD_ROWS).expect("old rows");
    drop(old);

    let store = Store::open(Location::File(path)).expect("upgrades");
    assert_eq!(store.schema_version().await.expect("version"), 9);
    let sessions = SqliteSessions::new(store);
    let rows = sessions.all().await.expect("all");
    let kept: Vec<(&str, Option<&str>, Option<i64>)> = rows
        .iter()
        .map(|row| (row.id.as_str(), row.supervisor.as_deref(), row.lease_expires_at_ms))
        .collect();
    assert_eq!(kept, [("old-1", None, None), ("old-2", None, None)], "kept, unsupervised");
    let claimed = sessions.claim_expired("new".into(), 1_000, 10).await.expect("claim");
    assert_eq!(claimed.len(), 1, "the live old row is claimable: {claimed:?}");
    assert_eq!(claimed[0].id, "old-1");
}

#[tokio::test]
async fn step_0009_upgrades_a_postgres_database_at_step_8() {
    let Some(database) = test_postgres::database().await else { return };
    let old = database.connect().await;
    old.batch_execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .expect("bookkeeping");
    for (index, sql) in POSTGRES_STEPS.iter().enumerate() {
        old.batch_execute(sql).await.expect("an old step");
        let version = index as i32 + 1;
        old.execute("INSERT INTO schema_migrations VALUES ($1, 0)", &[&version])
            .await
            .expect("recorded");
    }
    old.batch_execute(OLD_ROWS).await.expect("old rows");

    let store = pg_replica(&database.url, "upgrader").await;
    assert_eq!(store.schema_version().await.expect("version"), 9);
    let sessions = PgSessions::new(store.clone());
    let rows = sessions.all().await.expect("all");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|row| row.supervisor.is_none() && row.lease_expires_at_ms.is_none()));

    let revisions: Vec<i64> = old
        .query("SELECT revision FROM sessions ORDER BY revision", &[])
        .await
        .expect("revisions")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(revisions.len(), 2);
    assert!(revisions[0] > 0 && revisions[0] < revisions[1], "old rows numbered: {revisions:?}");

    let log = PgChangeLog::new(store);
    let since = log.sessions_since(0).await.expect("since");
    assert_eq!(since.rows.len(), 2, "old rows are in the change log");
    sessions.insert(session("new-1", "carol", 3, &[])).await.expect("insert after");
    assert!(sessions.delete("old-2".into()).await.expect("delete"));
    let after = log.sessions_since(since.newest).await.expect("since");
    assert_eq!(after.rows.len(), 1);
    assert_eq!(after.rows[0].1.id, "new-1");
    assert!(after.rows[0].0 > revisions[1], "new revisions come after the old ones");
    let deleted: Vec<&str> = after.deleted.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(deleted, ["old-2"]);
}
