//! What only the PostgreSQL store does: migrations under a lock (replicas starting together
//! migrate once), a newer schema refused, the single-server guard, and connecting with
//! retries that give up at the timeout without ever showing the password.

use std::time::{Duration, Instant};

use agentapi_proxy::store::postgres::guard::{self, DatabaseInUse};
use agentapi_proxy::store::postgres::{Options, PgStore, Unreachable};

use crate::store_suite::pg_store;
use crate::support::postgres;

#[tokio::test]
async fn replicas_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(database) = postgres::database().await else { return };
    let starts = (0..4).map(|_| pg_store(&database.url));
    let stores = futures_util::future::join_all(starts).await;
    let version = stores[0].schema_version().await.expect("version");
    assert!(version >= 6, "every known step applied: {version}");
    let client = database.connect().await;
    let applied: i64 = client
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(applied as usize, version, "each step recorded once");

    client
        .execute("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)", &[])
        .await
        .expect("pretend a newer build migrated");
    let options = Options {
        url: database.url.clone(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        replica_id: "test-replica".into(),
    };
    let error = PgStore::connect(&options).await.expect_err("a newer schema is refused");
    assert!(format!("{error:#}").contains("newer than this build"), "{error:#}");
}

#[tokio::test]
async fn a_second_server_on_the_database_is_refused_naming_the_holder() {
    let Some(database) = postgres::database().await else { return };
    let store = pg_store(&database.url).await;
    let held = guard::acquire(&store).await.expect("the first server takes the database");
    let refused = guard::acquire(&store).await.expect_err("the second is refused");
    let in_use = refused.downcast_ref::<DatabaseInUse>().expect("DatabaseInUse");
    assert!(in_use.holder.contains(&format!("pid {}", std::process::id())), "{}", in_use.holder);

    // A database restart (here: the holding backend terminated) drops the lock; the guard
    // takes it again, so a second server is still refused.
    let admin = database.connect().await;
    let lock_holder = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                       AND classid::bigint = 1634760816 AND objid::bigint = 2 AND objsubid = 2";
    let first: i32 = admin.query_one(lock_holder, &[]).await.expect("held").get(0);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .expect("terminate the holding backend");
    crate::support::wait_until("the guard to take the lock again", Duration::from_secs(20), || {
        let admin = &admin;
        async move {
            let row = admin.query_opt(lock_holder, &[]).await.expect("query")?;
            (row.get::<_, i32>(0) != first).then_some(())
        }
    })
    .await;
    let refused = guard::acquire(&store).await.expect_err("still held");
    assert!(refused.downcast_ref::<DatabaseInUse>().is_some(), "{refused:#}");
    drop(held);
    // The lock goes with the holder's connection; the server closes it asynchronously.
    crate::support::wait_until("the database to be free again", Duration::from_secs(10), || {
        let store = store.clone();
        async move { guard::acquire(&store).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_is_retried_until_the_timeout_without_showing_the_password() {
    // A port nobody listens on: bound by the system, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let options = Options {
        url: format!("postgres://agent:hunter2-secret@127.0.0.1:{port}/agents"),
        pool_size: 2,
        connect_timeout: Duration::from_secs(1),
        replica_id: "test-replica".into(),
    };
    let began = Instant::now();
    let error = PgStore::connect(&options).await.expect_err("nothing listens");
    let elapsed = began.elapsed();
    let unreachable = error.downcast_ref::<Unreachable>().expect("Unreachable");
    assert_eq!((unreachable.target.host.as_str(), unreachable.target.port), ("127.0.0.1", port));
    let text = format!("{error:#} {error:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn tls_is_negotiated_and_an_unknown_certificate_refused() {
    let Some(cluster) = postgres::tls_cluster().await else { return };
    let options = |mode: &str| Options {
        url: format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}", cluster.port),
        pool_size: 1,
        connect_timeout: Duration::from_secs(1),
        replica_id: "test-replica".into(),
    };
    let plain = PgStore::connect(&options("disable")).await.expect("plain TCP connects");
    assert_eq!(plain.target().port, cluster.port);
    for mode in ["require", "prefer"] {
        let error = PgStore::connect(&options(mode)).await.expect_err("self-signed is refused");
        let text = format!("{error:#}");
        assert!(text.contains("certificate"), "{mode}: {text}");
    }
}
