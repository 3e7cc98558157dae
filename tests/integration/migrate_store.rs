//! `agentapi-proxy migrate-store --to <url>`: the configured SQLite store's sessions, profiles,
//! OAuth sessions, agent tokens and chat tables (threads, queue, turns, unprocessed events)
//! land in PostgreSQL unchanged; a non-empty target, or a store a server holds, is refused.

use std::process::Output;

use agentapi_proxy::store::agent_tokens::{AgentTokenStore, SqliteAgentTokens};
use agentapi_proxy::store::chat::{ChatStore, SqliteChat, ThreadRow};
use agentapi_proxy::store::oauth::{OAuthSessionRow, OAuthStore, SqliteOAuth};
use agentapi_proxy::store::postgres::agent_tokens::PgAgentTokens;
use agentapi_proxy::store::postgres::chat::PgChat;
use agentapi_proxy::store::postgres::{oauth::PgOAuth, profiles::PgProfiles, sessions::PgSessions};
use agentapi_proxy::store::profiles::{ProfileStore, SqliteProfiles};
use agentapi_proxy::store::sessions::{SessionRow, SessionStore, SqliteSessions};
use agentapi_proxy::store::{Location, Store};
use agentapi_proxy_client::{ExitReason, Profile, SessionStatus};
use tokio::process::Command;

use crate::store_suite::pg_store;
use crate::support::postgres as test_postgres;
use crate::support::{binary, server::test_config};

async fn migrate(config_path: &std::path::Path, url: &str) -> Output {
    Command::new(binary())
        .args(["migrate-store", "-c"])
        .arg(config_path)
        .env("AGENTAPI_PROXY_MIGRATE_TO", url)
        .output()
        .await
        .expect("runs")
}

fn profile(id: &str) -> Profile {
    serde_json::from_value(serde_json::json!({
        "id": id, "user_id": "alice", "name": "web", "description": "",
        "environment": {"EDITOR": "vi"}, "tags": {"team": "web"}, "system_prompt": "",
        "repository_history": [], "message_templates": [],
        "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z"
    }))
    .expect("a profile")
}

#[tokio::test]
async fn the_sqlite_store_is_copied_into_an_empty_postgres_database() {
    let Some(database) = test_postgres::database().await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path());
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).expect("json")).expect("write");
    std::fs::create_dir_all(&config.data_dir).expect("data dir");
    let source = Store::open(Location::File(config.sqlite_path())).expect("open");
    let mut ended = SessionRow {
        id: "s-1".into(),
        user_id: "alice".into(),
        status: SessionStatus::Exited,
        port: None,
        backend_ref: None,
        tags: [("team".to_string(), "web".to_string())].into(),
        env_names: vec!["A".into()],
        started_at_ms: 1_700_000_000_000,
        ended_at_ms: Some(1_700_000_100_000),
        exit_code: Some(0),
        exit_reason: Some(ExitReason::AgentExited),
        agent_status: Some("stable".into()),
        initial_message: None,
        supervisor: None,
        lease_expires_at_ms: None,
        exit_details: None,
        restarts: 1,
    };
    let sessions = SqliteSessions::new(source.clone());
    sessions.insert(ended.clone()).await.expect("insert");
    ended.id = "s-2".into();
    sessions.insert(ended.clone()).await.expect("insert");
    let profiles = SqliteProfiles::new(source.clone());
    profiles.insert(profile("p-1"), 5).await.expect("insert");
    assert!(profiles.replace(profile("p-1"), 1).await.expect("replace"), "now at version 2");
    let login = OAuthSessionRow {
        token_hash: "t".repeat(64),
        session_id: "o-1".into(),
        user_id: "octocat".into(),
        role: "user".into(),
        permissions: vec!["session:list".into()],
        kind: "browser".into(),
        created_at_ms: 1,
        expires_at_ms: i64::MAX,
        max_expires_at_ms: i64::MAX,
        bound_to: None,
    };
    SqliteOAuth::new(source.clone()).insert_session(login.clone()).await.expect("insert");
    let token_hash = "a".repeat(64);
    SqliteAgentTokens::new(source.clone())
        .insert("s-1".into(), token_hash.clone(), 7)
        .await
        .expect("insert");
    let chat = SqliteChat::new(source.clone());
    let thread = ThreadRow {
        platform: "slack".into(),
        team: "T1".into(),
        channel: "C1".into(),
        root: "1.0".into(),
        session_id: "s-1".into(),
        owner: "alice".into(),
        started_at_ms: 3,
        started_by: "1.0".into(),
        ended: false,
    };
    chat.set_thread(thread.clone()).await.expect("map");
    for (id, text) in [("1.1", "sent"), ("1.2", "first"), ("1.3", "second")] {
        assert!(chat.enqueue("s-1".into(), id.into(), text.into(), 4).await.expect("queue"));
    }
    let sent = chat.queued("s-1".into()).await.expect("queued")[0].seq;
    chat.dequeue(sent).await.expect("dequeue");
    chat.record_turn("s-1".into(), "t-1".into(), "9.9".into(), 5).await.expect("record");
    for event in ["Ev-done", "Ev-left-1", "Ev-left-2"] {
        chat.store_incoming("slack".into(), event.into(), event.into(), 6).await.expect("store");
    }
    let done = chat.unprocessed(1).await.expect("inbox")[0].seq;
    chat.mark_processed(done).await.expect("mark");
    drop(chat);
    let expected_sessions = sessions.all().await.expect("all");
    drop((sessions, profiles, source));

    // While a server holds the store, nothing is copied.
    let held = agentapi_proxy::data_dir::prepare_and_lock(
        std::path::Path::new(&config.data_dir),
        Some(&config.sqlite_path()),
    )
    .expect("lock");
    let refused = migrate(&config_path, &database.url).await;
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    drop(held);

    let done = migrate(&config_path, &database.url).await;
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{stdout} {}", String::from_utf8_lossy(&done.stderr));
    assert!(
        stdout.contains(
            "copied 2 sessions, 1 profiles, 1 OAuth sessions, 1 agent tokens and chat state \
             (1 threads, 3 queued follow-ups, 1 posted replies, 2 unprocessed events)"
        ),
        "{stdout}"
    );

    let target = pg_store(&database.url).await;
    assert_eq!(PgSessions::new(target.clone()).all().await.expect("all"), expected_sessions);
    let copied = PgProfiles::new(target.clone()).get("p-1".into()).await.expect("get");
    let copied = copied.expect("the profile was copied");
    assert_eq!((copied.profile, copied.version), (profile("p-1"), 2));
    let oauth = PgOAuth::new(target.clone()).session_by_id("o-1".into()).await.expect("get");
    assert_eq!(oauth, Some(login));
    let tokens = PgAgentTokens::new(target.clone()).all().await.expect("all");
    assert_eq!(tokens, vec![("s-1".to_string(), token_hash)], "agents keep their tokens");
    let chat = PgChat::new(target.clone());
    assert_eq!(chat.live_threads().await.expect("threads"), vec![thread]);
    let queued = chat.queued("s-1".into()).await.expect("queued");
    let texts: Vec<_> = queued.iter().map(|row| row.message.as_str()).collect();
    assert_eq!(texts, ["first", "second"], "the queue in order, the sent one kept as sent");
    let resent = chat.enqueue("s-1".into(), "1.1".into(), "sent".into(), 7).await.expect("queue");
    assert!(!resent, "a follow-up sent before the move is not sent again");
    let posted = chat.posted_turn("s-1".into(), "t-1".into()).await.expect("turn");
    assert_eq!(posted.as_deref(), Some("9.9"), "a posted reply stays posted");
    let inbox = chat.unprocessed(10).await.expect("inbox");
    let events: Vec<_> = inbox.iter().map(|row| row.event_id.as_str()).collect();
    assert_eq!(events, ["Ev-left-1", "Ev-left-2"], "unprocessed events, in order");
    let again = chat.store_incoming("slack".into(), "Ev-left-1".into(), "{}".into(), 8).await;
    assert!(!again.expect("store"), "a redelivery after the move is a duplicate");

    let again = migrate(&config_path, &database.url).await;
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("only fills an empty store"), "{stderr}");
}
