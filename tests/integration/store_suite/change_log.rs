//! The PostgreSQL change log between two replicas: what replica A writes is read back by
//! replica B in revision order (deletes as tombstones), and heard by B's subscription with
//! A's id as origin, also after B's listening connection was killed.

use std::time::Duration;

use agentapi_proxy::store::changes::{ChangeLog, Notice};
use agentapi_proxy::store::oauth::{OAuthSessionRow, OAuthStore};
use agentapi_proxy::store::postgres::changes::PgChangeLog;
use agentapi_proxy::store::postgres::{oauth::PgOAuth, sessions::PgSessions};
use agentapi_proxy::store::sessions::SessionStore;
use agentapi_proxy_client::SessionStatus;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{pg_replica, session};
use crate::support::postgres as test_postgres;

const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn changes_by_one_replica_are_read_by_another_in_revision_order() {
    let Some(database) = test_postgres::database().await else { return };
    let a = PgSessions::new(pg_replica(&database.url, "replica-a").await);
    let log = PgChangeLog::new(pg_replica(&database.url, "replica-b").await);

    let start = log.newest_revision().await.expect("newest");
    let empty = log.sessions_since(start).await.expect("since");
    assert!(empty.rows.is_empty() && empty.deleted.is_empty());
    assert_eq!(empty.newest, start, "nothing new: `after` again");

    let row = session("s-1", "alice", 1, &[("k", "v")]);
    a.insert(row.clone()).await.expect("insert");
    let inserted = log.sessions_since(start).await.expect("since");
    assert_eq!(inserted.rows.len(), 1, "{inserted:?}");
    let (first, read) = &inserted.rows[0];
    assert_eq!(read, &row, "the row as written");
    assert!(*first > start && inserted.newest == *first);

    let mut ended = row.clone();
    ended.status = SessionStatus::Exited;
    a.save_state(ended.clone()).await.expect("update");
    let updated = log.sessions_since(inserted.newest).await.expect("since");
    let revisions: Vec<i64> = updated.rows.iter().map(|(revision, _)| *revision).collect();
    assert_eq!(revisions.len(), 1, "{updated:?}");
    assert!(revisions[0] > *first, "an update takes a newer revision");
    assert_eq!(updated.rows[0].1.status, SessionStatus::Exited);

    a.insert(session("s-2", "bob", 2, &[])).await.expect("insert");
    assert!(a.delete("s-1".into()).await.expect("delete"));
    let deleted = log.sessions_since(updated.newest).await.expect("since");
    let ids: Vec<&str> = deleted.rows.iter().map(|(_, row)| row.id.as_str()).collect();
    assert_eq!(ids, ["s-2"], "the deleted row is not read as a row");
    assert_eq!(deleted.deleted.len(), 1, "{deleted:?}");
    let (tombstone, id) = &deleted.deleted[0];
    assert_eq!(id, "s-1");
    assert!(*tombstone > deleted.rows[0].0, "the delete came after the insert");
    assert_eq!(deleted.newest, *tombstone);
    assert_eq!(log.newest_revision().await.expect("newest"), *tombstone);

    let everything = log.sessions_since(0).await.expect("since");
    let mut previous = 0;
    for (revision, _) in &everything.rows {
        assert!(*revision > previous, "in revision order");
        previous = *revision;
    }
    assert_eq!(everything.rows.len(), 1, "one row left");

    // A lease renewal alone is no change to follow; taking the session from its supervisor is.
    let live = session("s-3", "carol", 3, &[]);
    a.insert(live.clone()).await.expect("insert");
    let before = log.newest_revision().await.expect("newest");
    let renewed = a.renew_leases("replica-a".into(), 60_000).await.expect("renew");
    assert!(renewed.is_empty(), "s-3 has no supervisor yet");
    a.claim("s-3".into(), "replica-a".into(), 60_000).await.expect("claim").expect("row");
    let claimed = log.sessions_since(before).await.expect("since");
    assert_eq!(claimed.rows.len(), 1, "a new supervisor is a change: {claimed:?}");
    let after_claim = claimed.newest;
    let renewed = a.renew_leases("replica-a".into(), 120_000).await.expect("renew");
    assert_eq!(renewed, ["s-3"]);
    let quiet = log.sessions_since(after_claim).await.expect("since");
    assert!(quiet.rows.is_empty(), "a renewal is not read back: {quiet:?}");
}

/// The next notice, skipping those `skip` accepts, within the deadline.
async fn next_notice(
    notices: &mut UnboundedReceiver<Notice>,
    skip: impl Fn(&Notice) -> bool,
) -> Notice {
    let wait = async {
        loop {
            let notice = notices.recv().await.expect("the subscription is open");
            if !skip(&notice) {
                return notice;
            }
        }
    };
    tokio::time::timeout(DEADLINE, wait).await.expect("a notice within the deadline")
}

#[tokio::test]
async fn notices_arrive_with_their_origin_and_again_after_the_connection_is_killed() {
    let Some(database) = test_postgres::database().await else { return };
    let a_store = pg_replica(&database.url, "replica-a").await;
    let a = PgSessions::new(a_store.clone());
    let a_oauth = PgOAuth::new(a_store);
    let log = PgChangeLog::new(pg_replica(&database.url, "replica-b").await);
    let mut notices = log.subscribe().await.expect("subscribe");

    a.insert(session("n-1", "alice", 1, &[])).await.expect("insert");
    let notice = next_notice(&mut notices, |_| false).await;
    assert_eq!(notice, Notice::Session { id: "n-1".into(), origin: "replica-a".into() });

    let sign_in = OAuthSessionRow {
        token_hash: "secret-hash".into(),
        session_id: "o-1".into(),
        user_id: "alice".into(),
        role: "user".into(),
        permissions: Vec::new(),
        kind: "browser".into(),
        created_at_ms: 1,
        expires_at_ms: i64::MAX,
        max_expires_at_ms: i64::MAX,
        bound_to: None,
    };
    a_oauth.insert_session(sign_in).await.expect("sign in");
    assert!(a_oauth.delete_session("secret-hash".into()).await.expect("log out"));
    assert_eq!(next_notice(&mut notices, |_| false).await, Notice::SignInEnded);

    let admin = database.connect().await;
    let killed = crate::support::wait_until("B's listening connection", DEADLINE, || {
        let admin = &admin;
        async move {
            let rows = admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = 'replica-b' AND query LIKE 'LISTEN%'",
                    &[],
                )
                .await
                .expect("terminate");
            (!rows.is_empty()).then_some(rows.len())
        }
    })
    .await;
    assert_eq!(killed, 1, "one listening connection");
    assert_eq!(next_notice(&mut notices, |_| false).await, Notice::Reconnected);

    a.insert(session("n-2", "alice", 2, &[])).await.expect("insert");
    let notice = next_notice(&mut notices, |notice| *notice == Notice::Reconnected).await;
    assert_eq!(notice, Notice::Session { id: "n-2".into(), origin: "replica-a".into() });

    drop(log);
    let ended =
        tokio::time::timeout(DEADLINE, async { while notices.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the subscription ends with the log");
}
