//! One store test-suite, run unchanged against SQLite and PostgreSQL (scale-out.md §2): every
//! method of the session, profile and OAuth stores, search filters, paging and totals, tags,
//! profile versions and conflicts, OAuth expiry, and the `/search` JSON written over each.

use std::collections::BTreeMap;
use std::sync::Arc;

use agentapi_proxy::sessions::search::PagedStore;
use agentapi_proxy::sessions::summary_of_row;
use agentapi_proxy::store::oauth::{OAuthSessionRow, OAuthStore, PendingLogin};
use agentapi_proxy::store::postgres::{
    self, PgStore, oauth::PgOAuth, profiles::PgProfiles, sessions::PgSessions,
};
use agentapi_proxy::store::profiles::{ProfileStore, SqliteProfiles};
use agentapi_proxy::store::sessions::{SessionFilter, SessionRow, SessionStore, SqliteSessions};
use agentapi_proxy::store::{Location, Store, oauth::SqliteOAuth};
use agentapi_proxy_client::{
    ExitReason, InitialMessageState, Profile, SearchResponse, SessionStatus,
};

use crate::support::postgres as test_postgres;

mod change_log;
mod leases;
mod step_0009;

/// The three stores of one database.
struct Stores {
    sessions: Arc<dyn SessionStore>,
    profiles: Arc<dyn ProfileStore>,
    oauth: Arc<dyn OAuthStore>,
}

#[tokio::test]
async fn the_store_suite_passes_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(Location::File(dir.path().join("store.db"))).expect("open");
    run_suite(Stores {
        sessions: Arc::new(SqliteSessions::new(store.clone())),
        profiles: Arc::new(SqliteProfiles::new(store.clone())),
        oauth: Arc::new(SqliteOAuth::new(store)),
    })
    .await;
}

#[tokio::test]
async fn the_store_suite_passes_on_postgres() {
    let Some(database) = test_postgres::database().await else { return };
    let store = pg_store(&database.url).await;
    run_suite(Stores {
        sessions: Arc::new(PgSessions::new(store.clone())),
        profiles: Arc::new(PgProfiles::new(store.clone())),
        oauth: Arc::new(PgOAuth::new(store)),
    })
    .await;
}

pub async fn pg_store(url: &str) -> PgStore {
    pg_replica(url, "test-replica").await
}

/// A store connecting as replica `replica_id` (its connections' `application_name`).
pub async fn pg_replica(url: &str, replica_id: &str) -> PgStore {
    let options = postgres::Options {
        url: url.into(),
        pool_size: 4,
        connect_timeout: std::time::Duration::from_secs(10),
        replica_id: replica_id.into(),
    };
    PgStore::connect(&options).await.expect("connect to the test database")
}

async fn run_suite(stores: Stores) {
    sessions_round_trip_and_change(&*stores.sessions).await;
    search_filters_pages_and_counts(stores.sessions.clone()).await;
    profiles_versions_and_conflicts(&*stores.profiles).await;
    oauth_logins_and_sessions(&*stores.oauth).await;
}

pub(crate) fn session(id: &str, user: &str, started: i64, tags: &[(&str, &str)]) -> SessionRow {
    SessionRow {
        id: id.into(),
        user_id: user.into(),
        status: SessionStatus::Active,
        port: Some(9000),
        backend_ref: Some(
            r#"{"v":1,"kind":"local","pid":42,"start_ticks":4294967302,"port":9000}"#.into(),
        ),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        env_names: vec!["A".into(), "B_TOKEN".into()],
        started_at_ms: started,
        ended_at_ms: None,
        exit_code: None,
        exit_reason: None,
        agent_status: None,
        initial_message: None,
        supervisor: None,
        lease_expires_at_ms: None,
        exit_details: None,
        restarts: 0,
    }
}

async fn sessions_round_trip_and_change(store: &dyn SessionStore) {
    let first = session("rt-1", "alice", 1_700_000_000_000, &[("repository", "o/r")]);
    store.insert(first.clone()).await.expect("insert");
    assert_eq!(store.get("rt-1".into()).await.expect("get"), Some(first.clone()));
    assert!(store.insert(first.clone()).await.is_err(), "a second insert of one id is refused");
    assert_eq!(store.get("missing".into()).await.expect("get"), None);

    let mut ended = first.clone();
    ended.status = SessionStatus::Exited;
    ended.port = None;
    ended.backend_ref = None;
    ended.ended_at_ms = Some(1_700_000_001_000);
    ended.exit_code = Some(-3);
    ended.exit_reason = Some(ExitReason::AgentExited);
    ended.agent_status = Some("stable".into());
    ended.initial_message = Some(InitialMessageState::Sent);
    ended.restarts = 2;
    store.save_state(ended.clone()).await.expect("save");
    assert_eq!(store.get("rt-1".into()).await.expect("get"), Some(ended.clone()));

    let second = session("rt-0", "bob", 1_600_000_000_000, &[]);
    store.insert(second.clone()).await.expect("insert");
    let all = store.all().await.expect("all");
    assert_eq!(all, vec![second.clone(), ended], "oldest first");

    assert!(store.delete("rt-1".into()).await.expect("delete"));
    assert!(!store.delete("rt-1".into()).await.expect("delete again"));
    assert!(store.delete("rt-0".into()).await.expect("delete"));
    assert!(store.all().await.expect("all").is_empty());
}

/// The page `/search` answers, from the stored rows (what serde writes).
fn expected_page(all: &[SessionRow], filter: &SessionFilter) -> String {
    let mut matching: Vec<&SessionRow> = all
        .iter()
        .filter(|row| filter.user_id.as_ref().is_none_or(|user| &row.user_id == user))
        .filter(|row| filter.status.is_none_or(|status| row.status == status))
        .filter(|row| filter.tags.iter().all(|(k, v)| row.tags.get(k) == Some(v)))
        .collect();
    matching.sort_by(|a, b| {
        (b.started_at_ms, b.id.as_bytes()).cmp(&(a.started_at_ms, a.id.as_bytes()))
    });
    let total = matching.len() as u64;
    let sessions = matching
        .into_iter()
        .skip(filter.offset as usize)
        .take(filter.limit as usize)
        .map(summary_of_row)
        .collect();
    serde_json::to_string(&SearchResponse { sessions, total }).expect("encodes")
}

async fn search_filters_pages_and_counts(store: Arc<dyn SessionStore>) {
    let statuses = [
        SessionStatus::Starting,
        SessionStatus::Active,
        SessionStatus::Stopping,
        SessionStatus::Exited,
        SessionStatus::Failed,
    ];
    let mut all = Vec::new();
    for index in 0..23usize {
        let tags: &[(&str, &str)] = match index % 3 {
            0 => &[],
            1 => &[("repository", "o/r"), ("note", "quote \" back\\slash \u{1} é")],
            _ => &[("team", "web")],
        };
        let user = if index % 2 == 0 { "alice" } else { "bob \"the\" builder" };
        // Upper and lower case ids on equal start times: ties sort byte by byte.
        let id = if index % 4 == 0 { format!("Id-{index:02}") } else { format!("id-{index:02}") };
        let mut row = session(&id, user, 1_700_000_000_000 + index as i64 % 7, tags);
        row.status = statuses[index % statuses.len()];
        row.port = (index % 4 != 0).then_some(9000 + index as u16);
        row.exit_code = (index % 2 == 1).then_some(index as i32 - 10);
        row.exit_reason = (index % 3 != 2).then_some(ExitReason::LostWhileDown);
        store.insert(row.clone()).await.expect("insert");
        all.push(row);
    }
    let paged = PagedStore::new(store.clone());
    let any = SessionFilter { limit: 100, ..SessionFilter::default() };
    let filters = [
        any.clone(),
        SessionFilter { limit: 5, ..any.clone() },
        SessionFilter { limit: 5, offset: 20, ..any.clone() },
        SessionFilter { limit: 5, offset: 40, ..any.clone() },
        SessionFilter { limit: 0, ..any.clone() },
        SessionFilter { user_id: Some("alice".into()), limit: 4, offset: 2, ..any.clone() },
        SessionFilter { status: Some(SessionStatus::Exited), ..any.clone() },
        SessionFilter {
            user_id: Some("bob \"the\" builder".into()),
            status: Some(SessionStatus::Active),
            tags: vec![("team".into(), "web".into())],
            ..any.clone()
        },
        SessionFilter {
            tags: vec![("repository".into(), "o/r".into()), ("note".into(), "x".into())],
            ..any.clone()
        },
        SessionFilter { tags: vec![("repository".into(), "o/r".into())], limit: 3, ..any.clone() },
        SessionFilter { user_id: Some("nobody".into()), ..any.clone() },
    ];
    for filter in filters {
        let page = paged.search_json(filter.clone()).await.expect("search");
        assert_eq!(String::from_utf8_lossy(&page), expected_page(&all, &filter), "{filter:?}");
        let rows = store.search(filter.clone()).await.expect("rows");
        let total: SearchResponse = serde_json::from_slice(&page).expect("a search answer");
        assert_eq!(rows.total, total.total, "{filter:?}");
    }

    // A write through the paged store is seen by the next search.
    let mut stopped = all[1].clone();
    stopped.status = SessionStatus::Exited;
    paged.save_state(stopped.clone()).await.expect("save");
    all[1] = stopped;
    assert!(paged.delete(all[0].id.clone()).await.expect("delete"));
    all.remove(0);
    assert_eq!(
        String::from_utf8_lossy(&paged.search_json(any.clone()).await.expect("search")),
        expected_page(&all, &any)
    );
    let tag_gone = SessionFilter { tags: vec![("team".into(), "web".into())], ..any.clone() };
    for row in &all {
        paged.delete(row.id.clone()).await.expect("delete");
    }
    let empty = paged.search_json(tag_gone).await.expect("search");
    assert_eq!(&empty[..], b"{\"sessions\":[],\"total\":0}", "tags go with their session");
}

fn profile(id: &str, user: &str, name: &str) -> Profile {
    Profile {
        id: id.into(),
        user_id: user.into(),
        name: name.into(),
        description: "d".into(),
        environment: BTreeMap::from([("EDITOR".into(), "vi".into())]),
        tags: BTreeMap::from([("team".into(), "web".into())]),
        system_prompt: String::new(),
        repository_history: Vec::new(),
        message_templates: Vec::new(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
        last_used_at: Some("2026-01-02T00:00:00.000Z".into()),
    }
}

async fn profiles_versions_and_conflicts(store: &dyn ProfileStore) {
    store.insert(profile("p-a", "alice", "one"), 1).await.expect("insert");
    store.insert(profile("p-b", "alice", "two"), 3).await.expect("insert");
    store.insert(profile("p-c", "bob", "three"), 2).await.expect("insert");
    assert!(store.insert(profile("p-a", "bob", "dup"), 4).await.is_err(), "ids are unique");

    let read = store.get("p-a".into()).await.expect("get").expect("present");
    assert_eq!((read.profile.clone(), read.version), (profile("p-a", "alice", "one"), 1));
    assert_eq!(store.get("p-x".into()).await.expect("get"), None);

    let names = |profiles: Vec<Profile>| profiles.into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(names(store.list(Some("alice".into())).await.expect("list")), ["two", "one"]);
    assert_eq!(names(store.list(None).await.expect("list")), ["two", "three", "one"]);
    assert!(store.list(Some("carol".into())).await.expect("list").is_empty());

    let renamed = profile("p-a", "alice", "renamed");
    assert!(store.replace(renamed.clone(), 1).await.expect("replace"));
    assert!(!store.replace(profile("p-a", "alice", "late"), 1).await.expect("stale write"));
    let read = store.get("p-a".into()).await.expect("get").expect("present");
    assert_eq!((read.profile, read.version), (renamed, 2));

    assert!(store.delete("p-a".into()).await.expect("delete"));
    assert!(!store.delete("p-a".into()).await.expect("delete again"));
    assert!(!store.replace(profile("p-a", "alice", "gone"), 2).await.expect("replace deleted"));
}

fn pending(state: &str, expires_at_ms: i64) -> PendingLogin {
    PendingLogin {
        state_hash: state.into(),
        verifier: format!("verifier-{state}"),
        redirect_uri: "https://app.example/cb".into(),
        return_to: Some("/ui/".into()),
        binding_hash: Some("b".repeat(64)),
        expires_at_ms,
    }
}

async fn oauth_logins_and_sessions(store: &dyn OAuthStore) {
    store.put_pending(pending("fresh", 2_000)).await.expect("put");
    store.put_pending(pending("stale", 1_000)).await.expect("put");
    assert!(store.put_pending(pending("fresh", 3_000)).await.is_err(), "states are unique");
    assert_eq!(
        store.take_pending("fresh".into(), 1_500).await.expect("take"),
        Some(pending("fresh", 2_000))
    );
    assert_eq!(store.take_pending("fresh".into(), 1_500).await.expect("take"), None, "taken once");
    assert_eq!(store.take_pending("stale".into(), 1_500).await.expect("take"), None, "expired");
    assert_eq!(store.take_pending("stale".into(), 0).await.expect("take"), None, "and gone");

    let row = OAuthSessionRow {
        token_hash: "t1".into(),
        session_id: "s1".into(),
        user_id: "octocat".into(),
        role: "user".into(),
        permissions: vec!["session:list".into(), "session:create".into()],
        kind: "api".into(),
        created_at_ms: 10,
        expires_at_ms: 100,
        max_expires_at_ms: 1_000,
        bound_to: Some("api_key:00".into()),
    };
    store.insert_session(row.clone()).await.expect("insert");
    let browser = OAuthSessionRow {
        token_hash: "t2".into(),
        session_id: "s2".into(),
        kind: "browser".into(),
        bound_to: None,
        ..row.clone()
    };
    store.insert_session(browser.clone()).await.expect("insert");
    let clash = OAuthSessionRow { token_hash: "t3".into(), ..row.clone() };
    assert!(store.insert_session(clash).await.is_err(), "session ids are unique");

    assert_eq!(store.session_by_token("t1".into()).await.expect("read"), Some(row.clone()));
    assert_eq!(store.session_by_id("s2".into()).await.expect("read"), Some(browser));
    assert_eq!(store.session_by_token("nope".into()).await.expect("read"), None);
    assert!(store.set_expiry("t1".into(), 500).await.expect("extend"));
    assert!(!store.set_expiry("nope".into(), 500).await.expect("extend missing"));
    let extended = store.session_by_id("s1".into()).await.expect("read").expect("present");
    assert_eq!(extended.expires_at_ms, 500);

    store.put_pending(pending("old", 150)).await.expect("put");
    assert_eq!(store.purge_expired(200).await.expect("purge"), 2, "t2 and the old state");
    assert_eq!(store.session_by_token("t2".into()).await.expect("read"), None);
    assert!(store.delete_session("t1".into()).await.expect("delete"));
    assert!(!store.delete_session("t1".into()).await.expect("delete again"));
    assert_eq!(store.purge_expired(i64::MAX).await.expect("purge"), 0);
}
