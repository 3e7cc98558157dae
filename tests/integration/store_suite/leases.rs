//! Admission, leases and agent-token lookup (scale-out.md §3), the same assertions on SQLite
//! and PostgreSQL: limits that hold under concurrent starts on two replicas, leases that
//! fence a replica that lost its session, and claims that never hand one session to two.

use std::collections::BTreeSet;
use std::sync::Arc;

use agentapi_proxy::sessions::search::PagedStore;
use agentapi_proxy::store::agent_tokens::{AgentTokenStore, SqliteAgentTokens};
use agentapi_proxy::store::postgres::{agent_tokens::PgAgentTokens, sessions::PgSessions};
use agentapi_proxy::store::sessions::{
    Admission, Admitted, SessionFilter, SessionRow, SessionStore, SqliteSessions,
};
use agentapi_proxy::store::{Location, Store};
use agentapi_proxy_client::SessionStatus;

use super::{pg_replica, session};
use crate::support::postgres as test_postgres;

/// A SQLite store in a temp dir (kept while the store is used).
fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(Location::File(dir.path().join("store.db"))).expect("open");
    (dir, store)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64
}

#[tokio::test]
async fn admission_on_sqlite() {
    let (_dir, store) = sqlite();
    admission_holds_the_limits(&SqliteSessions::new(store)).await;
}

#[tokio::test]
async fn admission_on_postgres() {
    let Some(database) = test_postgres::database().await else { return };
    admission_holds_the_limits(&PgSessions::new(pg_replica(&database.url, "r1").await)).await;
}

#[tokio::test]
async fn concurrent_admission_on_sqlite() {
    let (_dir, store) = sqlite();
    let one: Arc<dyn SessionStore> = Arc::new(SqliteSessions::new(store));
    fifty_concurrent_starts_admit_exactly_twenty([one.clone(), one]).await;
}

#[tokio::test]
async fn concurrent_admission_on_postgres() {
    let Some(database) = test_postgres::database().await else { return };
    let a: Arc<dyn SessionStore> = Arc::new(PgSessions::new(pg_replica(&database.url, "a").await));
    let b: Arc<dyn SessionStore> = Arc::new(PgSessions::new(pg_replica(&database.url, "b").await));
    fifty_concurrent_starts_admit_exactly_twenty([a, b]).await;
}

#[tokio::test]
async fn leases_on_sqlite() {
    let (_dir, store) = sqlite();
    leases_fence_renew_claim_and_release(&SqliteSessions::new(store)).await;
}

#[tokio::test]
async fn leases_on_postgres() {
    let Some(database) = test_postgres::database().await else { return };
    let store = PgSessions::new(pg_replica(&database.url, "r1").await);
    leases_fence_renew_claim_and_release(&store).await;
}

#[tokio::test]
async fn concurrent_claims_on_sqlite() {
    let (_dir, store) = sqlite();
    let one: Arc<dyn SessionStore> = Arc::new(SqliteSessions::new(store));
    concurrent_claimers_never_take_one_row_twice([one.clone(), one]).await;
}

#[tokio::test]
async fn concurrent_claims_on_postgres() {
    let Some(database) = test_postgres::database().await else { return };
    let a: Arc<dyn SessionStore> = Arc::new(PgSessions::new(pg_replica(&database.url, "a").await));
    let b: Arc<dyn SessionStore> = Arc::new(PgSessions::new(pg_replica(&database.url, "b").await));
    concurrent_claimers_never_take_one_row_twice([a, b]).await;
}

#[tokio::test]
async fn agent_tokens_on_sqlite() {
    let (_dir, store) = sqlite();
    agent_tokens_find_their_session(&SqliteAgentTokens::new(store)).await;
}

#[tokio::test]
async fn agent_tokens_on_postgres() {
    let Some(database) = test_postgres::database().await else { return };
    agent_tokens_find_their_session(&PgAgentTokens::new(pg_replica(&database.url, "r1").await))
        .await;
}

#[tokio::test]
async fn paged_store_on_sqlite() {
    let (_dir, store) = sqlite();
    kept_pages_go_with_lease_writes_and_on_request(Arc::new(SqliteSessions::new(store))).await;
}

#[tokio::test]
async fn paged_store_on_postgres() {
    let Some(database) = test_postgres::database().await else { return };
    let store = PgSessions::new(pg_replica(&database.url, "r1").await);
    kept_pages_go_with_lease_writes_and_on_request(Arc::new(store)).await;
}

fn starting(id: &str, user: &str) -> SessionRow {
    SessionRow { status: SessionStatus::Starting, ..session(id, user, now_ms(), &[("t", "v")]) }
}

async fn admission_holds_the_limits(store: &dyn SessionStore) {
    let limits = Admission { max_sessions: 3, max_sessions_per_user: 2 };
    let admit = |row: SessionRow, limits: Admission| {
        store.insert_admitted(row, limits, "r1".into(), 30_000)
    };
    let mut ended = session("ended", "alice", 1, &[]);
    ended.status = SessionStatus::Exited;
    store.insert(ended).await.expect("an ended session");

    let before = now_ms();
    let mut lying = starting("a1", "alice");
    lying.supervisor = Some("someone-else".into());
    lying.lease_expires_at_ms = Some(1);
    assert_eq!(admit(lying, limits).await.expect("admit"), Admitted::Inserted, "ended don't count");
    let stored = store.get("a1".into()).await.expect("get").expect("inserted");
    assert_eq!(stored.supervisor.as_deref(), Some("r1"), "the supervisor given, not the row's");
    let lease = stored.lease_expires_at_ms.expect("a lease");
    assert!(
        lease >= before + 30_000 - 5_000 && lease <= now_ms() + 30_000 + 5_000,
        "the lease runs about 30 s from now: {lease} vs {before}"
    );
    assert_eq!(stored.tags, starting("a1", "alice").tags, "tags written");

    assert_eq!(admit(starting("a2", "alice"), limits).await.expect("admit"), Admitted::Inserted);
    assert_eq!(
        admit(starting("a3", "alice"), limits).await.expect("admit"),
        Admitted::QuotaExceeded
    );
    assert_eq!(store.get("a3".into()).await.expect("get"), None, "a refused start is not stored");
    let mut stopping = starting("b1", "bob");
    stopping.status = SessionStatus::Stopping;
    assert_eq!(admit(stopping, limits).await.expect("admit"), Admitted::Inserted);
    assert_eq!(admit(starting("c1", "carol"), limits).await.expect("admit"), Admitted::AtCapacity);
    assert_eq!(
        admit(starting("a4", "alice"), limits).await.expect("admit"),
        Admitted::AtCapacity,
        "capacity is checked before the owner's quota"
    );

    let mut exited = store.get("a1".into()).await.expect("get").expect("a1");
    exited.status = SessionStatus::Exited;
    store.save_state(exited).await.expect("a1 ends");
    assert_eq!(admit(starting("c1", "carol"), limits).await.expect("admit"), Admitted::Inserted);

    let unlimited_per_user = Admission { max_sessions: 10, max_sessions_per_user: 0 };
    for id in ["a5", "a6", "a7"] {
        let admitted = admit(starting(id, "alice"), unlimited_per_user).await.expect("admit");
        assert_eq!(admitted, Admitted::Inserted, "0: no per-user limit");
    }
    let duplicate = admit(starting("a5", "alice"), unlimited_per_user).await;
    assert!(duplicate.is_err(), "an id taken is an error, not a refusal");
}

async fn fifty_concurrent_starts_admit_exactly_twenty(stores: [Arc<dyn SessionStore>; 2]) {
    let limits = Admission { max_sessions: 20, max_sessions_per_user: 7 };
    let users = ["u0", "u1", "u2"];
    let starts = (0..50).map(|index| {
        let store = stores[index % 2].clone();
        let row = starting(&format!("s-{index:02}"), users[index % 3]);
        tokio::spawn(async move {
            let replica = format!("replica-{}", index % 2);
            store.insert_admitted(row, limits, replica, 30_000).await.expect("admit")
        })
    });
    let answers: Vec<Admitted> = futures_util::future::join_all(starts)
        .await
        .into_iter()
        .map(|answer| answer.expect("the task ran"))
        .collect();
    let inserted = answers.iter().filter(|answer| **answer == Admitted::Inserted).count();
    assert_eq!(inserted, 20, "{answers:?}");
    let all = stores[0].all().await.expect("all");
    assert_eq!(all.len(), 20, "what was said inserted is all that is stored");
    for user in users {
        let owned = all.iter().filter(|row| row.user_id == user).count();
        assert!(owned <= 7, "{user} has {owned}");
    }
}

async fn leases_fence_renew_claim_and_release(store: &dyn SessionStore) {
    let now = now_ms();
    let held = |id: &str, status: SessionStatus, supervisor: Option<&str>, lease: Option<i64>| {
        let mut row = session(id, "alice", now, &[]);
        row.status = status;
        row.supervisor = supervisor.map(str::to_string);
        row.lease_expires_at_ms = lease;
        row
    };
    let own = held("own", SessionStatus::Active, Some("r1"), Some(now + 60_000));
    let rows = [
        own.clone(),
        held("own-ended", SessionStatus::Exited, Some("r1"), Some(now + 60_000)),
        held("other-fresh", SessionStatus::Active, Some("r2"), Some(now + 60_000)),
        held("other-expired", SessionStatus::Stopping, Some("r2"), Some(1)),
        held("orphan", SessionStatus::Starting, None, None),
        held("ended-orphan", SessionStatus::Failed, None, None),
        held("ended-expired", SessionStatus::Exited, Some("r2"), Some(1)),
    ];
    for row in &rows {
        store.insert(row.clone()).await.expect("insert");
    }
    assert_eq!(store.get("own".into()).await.expect("get"), Some(own.clone()), "lease written");

    assert_eq!(store.renew_leases("r1".into(), 120_000).await.expect("renew"), ["own"]);
    let renewed = store.get("own".into()).await.expect("get").expect("own");
    assert!(renewed.lease_expires_at_ms > own.lease_expires_at_ms, "{renewed:?}");

    let mut taken = store.claim_expired("r3".into(), 30_000, 10).await.expect("claim");
    taken.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = taken.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(ids, ["orphan", "other-expired"], "expired and unsupervised live rows only");
    for row in &taken {
        assert_eq!(row.supervisor.as_deref(), Some("r3"));
        assert!(row.lease_expires_at_ms.expect("lease") > now_ms() + 20_000, "{row:?}");
    }
    assert!(store.claim_expired("r4".into(), 30_000, 10).await.expect("claim").is_empty());

    // r3 takes `own` (a DELETE answered by r3): r1 is fenced off.
    let claimed = store.claim("own".into(), "r3".into(), 30_000).await.expect("claim");
    assert_eq!(claimed.as_ref().and_then(|row| row.supervisor.as_deref()), Some("r3"));
    let mut late = renewed.clone();
    late.status = SessionStatus::Exited;
    late.exit_code = Some(9);
    assert!(!store.save_state_as(late.clone(), "r1".into()).await.expect("fenced"));
    let kept = store.get("own".into()).await.expect("get").expect("own");
    assert_eq!((kept.status, kept.exit_code), (SessionStatus::Active, None), "nothing written");
    assert!(store.renew_leases("r1".into(), 30_000).await.expect("renew").is_empty());
    assert!(store.save_state_as(late.clone(), "r3".into()).await.expect("held"));
    let saved = store.get("own".into()).await.expect("get").expect("own");
    assert_eq!((saved.status, saved.exit_code), (SessionStatus::Exited, Some(9)));
    assert_eq!(saved.supervisor.as_deref(), Some("r3"), "save_state_as keeps the lease");
    assert!(
        !store
            .save_state_as(held("gone", SessionStatus::Active, None, None), "r3".into())
            .await
            .expect("a missing row")
    );
    assert_eq!(store.claim("gone".into(), "r3".into(), 1).await.expect("claim"), None);

    // `save_state` never writes the lease columns.
    let mut plain = saved.clone();
    plain.supervisor = None;
    plain.lease_expires_at_ms = None;
    store.save_state(plain).await.expect("save");
    let after = store.get("own".into()).await.expect("get").expect("own");
    assert_eq!(
        (after.supervisor, after.lease_expires_at_ms),
        (saved.supervisor, saved.lease_expires_at_ms)
    );

    // r2 shuts down cleanly: its fresh lease ends at once and another replica takes it.
    assert_eq!(store.release_leases("r2".into()).await.expect("release"), 2, "fresh and ended");
    let released = store.get("other-fresh".into()).await.expect("get").expect("row");
    assert_eq!(
        (released.supervisor.as_deref(), released.lease_expires_at_ms),
        (Some("r2"), Some(0))
    );
    let retaken = store.claim_expired("r4".into(), 30_000, 10).await.expect("claim");
    let ids: Vec<&str> = retaken.iter().map(|row| row.id.as_str()).collect();
    assert_eq!(ids, ["other-fresh"]);
    let limited = store.claim_expired("r4".into(), 30_000, 0).await.expect("claim");
    assert!(limited.is_empty(), "limit 0 takes nothing");
}

async fn concurrent_claimers_never_take_one_row_twice(stores: [Arc<dyn SessionStore>; 2]) {
    let total = 40;
    for index in 0..total {
        stores[0].insert(starting(&format!("c-{index:02}"), "alice")).await.expect("insert");
    }
    let claimers = (0..4).map(|claimer| {
        let store = stores[claimer % 2].clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let taken = store
                    .claim_expired(format!("claimer-{claimer}"), 60_000, 3)
                    .await
                    .expect("claim");
                if taken.is_empty() {
                    return mine;
                }
                mine.extend(taken.into_iter().map(|row| row.id));
            }
        })
    });
    let mut seen = BTreeSet::new();
    let mut count = 0;
    for mine in futures_util::future::join_all(claimers).await {
        for id in mine.expect("the task ran") {
            count += 1;
            assert!(seen.insert(id.clone()), "{id} was taken twice");
        }
    }
    assert_eq!((count, seen.len()), (total, total), "every row taken, once");
    for row in stores[1].all().await.expect("all") {
        let supervisor = row.supervisor.expect("supervised");
        assert!(supervisor.starts_with("claimer-"), "{supervisor}");
    }
}

async fn agent_tokens_find_their_session(store: &dyn AgentTokenStore) {
    store.insert("s1".into(), "h1".into(), 1).await.expect("insert");
    store.insert("s2".into(), "h2".into(), 1).await.expect("insert");
    assert_eq!(store.session_of_hash("h1".into()).await.expect("find"), Some("s1".into()));
    assert_eq!(store.session_of_hash("h2".into()).await.expect("find"), Some("s2".into()));
    assert_eq!(store.session_of_hash("s1".into()).await.expect("find"), None, "by hash only");
    store.insert("s1".into(), "h3".into(), 2).await.expect("replace");
    assert_eq!(store.session_of_hash("h1".into()).await.expect("find"), None, "replaced");
    assert_eq!(store.session_of_hash("h3".into()).await.expect("find"), Some("s1".into()));
    store.delete("s2".into()).await.expect("delete");
    assert_eq!(store.session_of_hash("h2".into()).await.expect("find"), None, "deleted");
}

async fn kept_pages_go_with_lease_writes_and_on_request(store: Arc<dyn SessionStore>) {
    let paged = PagedStore::new(store.clone());
    let any = SessionFilter { limit: 10, ..SessionFilter::default() };
    let ids = |page: bytes::Bytes| {
        let answer: serde_json::Value = serde_json::from_slice(&page).expect("JSON");
        let sessions = answer["sessions"].as_array().expect("sessions").clone();
        sessions
            .iter()
            .map(|s| s["session_id"].as_str().expect("session_id").to_string())
            .collect::<Vec<_>>()
    };
    assert!(ids(paged.search_json(any.clone()).await.expect("search")).is_empty());
    let limits = Admission { max_sessions: 5, max_sessions_per_user: 0 };
    let admitted =
        paged.insert_admitted(starting("p-1", "alice"), limits, "r1".into(), 1_000).await;
    assert_eq!(admitted.expect("admit"), Admitted::Inserted);
    assert_eq!(ids(paged.search_json(any.clone()).await.expect("search")), ["p-1"]);

    let exited = SessionFilter { status: Some(SessionStatus::Exited), ..any.clone() };
    assert!(ids(paged.search_json(exited.clone()).await.expect("search")).is_empty());
    let mut ended = store.get("p-1".into()).await.expect("get").expect("p-1");
    ended.status = SessionStatus::Exited;
    assert!(paged.save_state_as(ended, "r1".into()).await.expect("save"));
    assert_eq!(ids(paged.search_json(exited).await.expect("search")), ["p-1"]);

    // Another replica writes behind this one's back: the kept page stays until told.
    assert_eq!(ids(paged.search_json(any.clone()).await.expect("search")), ["p-1"]);
    store.insert(starting("p-2", "bob")).await.expect("insert elsewhere");
    assert_eq!(ids(paged.search_json(any.clone()).await.expect("search")), ["p-1"], "kept");
    paged.forget_pages();
    let mut both = ids(paged.search_json(any).await.expect("search"));
    both.sort();
    assert_eq!(both, ["p-1", "p-2"]);
}
