//! Upgrading onto `backend_ref`: a database written by the build before it (agents found by
//! `pid`/`pid_start_ticks`/`port` columns) still recovers its live agents, and a reference
//! this build cannot read ends its session visibly instead of crashing the server.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::support::server::BinaryServer;
use crate::support::sessions::{agent_debug_env, get_json, group_gone, start_ok};
use crate::support::wait_until;

/// The migrations of the build before `backend_ref` (0007 never touched sessions).
const OLD_MIGRATIONS: [&str; 6] = [
    include_str!("../../src/store/migrations/0001_store_meta.sql"),
    include_str!("../../src/store/migrations/0002_sessions.sql"),
    include_str!("../../src/store/migrations/0003_profiles.sql"),
    include_str!("../../src/store/migrations/0004_oauth.sql"),
    include_str!("../../src/store/migrations/0005_sessions_by_user_status.sql"),
    include_str!("../../src/store/migrations/0006_oauth_sessions_bound_to.sql"),
];

/// The process start time, field 22 of `/proc/<pid>/stat` (after the parenthesised name).
fn start_ticks(pid: i32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("name") + 2..];
    after_name.split(' ').nth(19).expect("field 22").parse().expect("ticks")
}

/// Replaces the database by one the old build would have written for this one session.
fn write_old_database(database: &Path, id: &str, port: u16, pid: i32, ticks: i64) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
    let old = rusqlite::Connection::open(database).expect("a fresh database");
    for sql in OLD_MIGRATIONS {
        old.execute_batch(sql).expect("an old migration");
    }
    old.execute_batch(&format!("PRAGMA user_version = {};", OLD_MIGRATIONS.len()))
        .expect("old schema version");
    old.execute(
        "INSERT INTO sessions (id, user_id, status, port, pid, pid_start_ticks, started_at, \
         agent_status) VALUES (?1, 'anonymous', 'active', ?2, ?3, ?4, 1, 'stable')",
        rusqlite::params![id, port, pid, ticks],
    )
    .expect("the old row");
}

#[tokio::test]
async fn a_database_of_the_previous_build_recovers_its_live_agents() {
    let server = BinaryServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let (id, port) =
        start_ok(&client, &base, json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}})).await;
    let pid = agent_debug_env(&client, port).await["pid"].as_i64().expect("pid") as i32;
    let (dir, config_path) = server.kill9().await;
    let database = dir.path().join("data/agentapi-proxy.db");
    write_old_database(&database, &id, port, pid, start_ticks(pid));

    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let (code, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(code, 200);
    assert_eq!(detail["status"], "active", "re-adopted: {detail}");
    assert_eq!(detail["port"], port);
    assert!(!group_gone(pid), "the agent was kept, not killed");
    let (code, status) = get_json(&client, &server.url(&format!("/{id}/status"))).await;
    assert_eq!(code, 200, "proxied to the adopted agent: {status}");
    assert_eq!(status["status"], "stable");
    let stored: String = rusqlite::Connection::open(&database)
        .and_then(|db| {
            db.query_row("SELECT backend_ref FROM sessions WHERE id = ?1", [&id], |r| r.get(0))
        })
        .expect("the migrated row");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).expect("JSON"),
        json!({"v": 1, "kind": "local", "pid": pid, "start_ticks": start_ticks(pid), "port": port})
    );

    let response =
        client.delete(server.url(&format!("/sessions/{id}"))).send().await.expect("delete");
    assert_eq!(response.status(), 200);
    assert!(group_gone(pid), "the adopted agent is under control again");
    let (status, _, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_reference_of_an_unknown_version_ends_its_session_and_its_agent() {
    let server = BinaryServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let (id, port) =
        start_ok(&client, &base, json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}})).await;
    let pid = agent_debug_env(&client, port).await["pid"].as_i64().expect("pid") as i32;
    let (dir, config_path) = server.kill9().await;
    let database = dir.path().join("data/agentapi-proxy.db");
    let future = json!({"v": 99, "kind": "local", "somewhere": "else"}).to_string();
    rusqlite::Connection::open(&database)
        .and_then(|db| {
            db.execute("UPDATE sessions SET backend_ref = ?2 WHERE id = ?1", [&id, &future])
        })
        .expect("a reference from a newer build");

    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let (code, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(code, 200);
    assert_eq!(detail["status"], "exited", "{detail}");
    assert_eq!(detail["exit_reason"], "lost_while_down");
    // Nobody took it back: what the backend still runs for the session is an orphan.
    wait_until("the orphaned agent to be ended", Duration::from_secs(10), || async {
        group_gone(pid).then_some(())
    })
    .await;
    assert!(server.logged("unknown to this build"), "the refusal is logged");
    let (status, _, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
}
