//! The real server on `persistence.backend: "postgres"`: sessions are stored there and
//! re-adopted after a restart, a second server on the same database exits 2 naming the
//! holder, a malformed URL exits 2 and an unreachable server exits 1 after the timeout,
//! and the password never shows in what the server writes.

use std::time::Duration;

use agentapi_proxy::config::{Config, OnShutdown};
use serde_json::json;
use tokio::process::Command;

use crate::support::postgres as test_postgres;
use crate::support::server::{BinaryServer, test_config};
use crate::support::sessions::{get_json, start_ok};
use crate::support::{binary, wait_until};

fn on_postgres(config: &mut Config, url: &str) {
    config.persistence.backend = "postgres".into();
    config.persistence.postgres_url = url.into();
    config.persistence.connect_timeout_seconds = 10;
}

/// Runs `server` with `config` (in a temp dir) until it exits; its exit code and stderr.
async fn run_to_exit(adjust: impl FnOnce(&mut Config)) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).expect("json")).expect("write");
    let run = Command::new(binary())
        .args(["server", "--log-format", "json", "-p", "0", "-c"])
        .arg(&config_path)
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the server gives up in time")
        .expect("runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn sessions_live_in_postgres_survive_a_restart_and_a_second_server_is_refused() {
    let Some(database) = test_postgres::database().await else { return };
    // The test cluster trusts local connections; the password is there to be kept secret.
    let url =
        database.url.replacen("postgres://postgres@", "postgres://postgres:hunter2-secret@", 1);
    assert_ne!(url, database.url);
    let first = BinaryServer::start(|config| {
        on_postgres(config, &url);
        config.session.on_shutdown = OnShutdown::Keep;
    })
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", first.address);
    let env = json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}, "tags": {"team": "web"}});
    let (id, _) = start_ok(&client, &base, env).await;
    let (code, page) = get_json(&client, &format!("{base}/search?tag.team=web")).await;
    assert_eq!((code, page["total"].as_u64()), (200, Some(1)), "{page}");
    assert_eq!(page["sessions"][0]["session_id"].as_str(), Some(id.as_str()));
    let rows: i64 = database
        .connect()
        .await
        .query_one("SELECT COUNT(*) FROM sessions WHERE id = $1", &[&id])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 1, "the session row is in PostgreSQL");
    let created = client
        .post(format!("{base}/profiles"))
        .json(&json!({"name": "Dev", "environment": {"NODE_ENV": "development"}}))
        .send()
        .await
        .expect("POST /profiles");
    assert_eq!(created.status().as_u16(), 201);
    let created: serde_json::Value = created.json().await.expect("JSON");
    let profile_id = created["profile"]["id"].as_str().expect("id").to_string();

    let first_pid = first.child.id().expect("running");
    let (code, stderr) = run_to_exit(|config| on_postgres(config, &url)).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("pid {first_pid}")), "names the holder: {stderr}");
    assert!(stderr.contains("in use by another agentapi-proxy server"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !first.logged("hunter2"), "the password leaked");

    let (status, dir, config_path) = first.stop().await;
    assert!(status.success(), "{status:?}");
    let next = BinaryServer::launch(dir, config_path, &[]).await;
    let base = format!("http://{}", next.address);
    let detail = wait_until("the session to be re-adopted", Duration::from_secs(20), || {
        let client = client.clone();
        let url = format!("{base}/sessions/{id}");
        async move {
            let (code, detail) = get_json(&client, &url).await;
            (code == 200 && detail["status"] == "active").then_some(detail)
        }
    })
    .await;
    assert_eq!(detail["session_id"].as_str(), Some(id.as_str()));
    let (code, status) = get_json(&client, &format!("{base}/{id}/status")).await;
    assert_eq!((code, status["status"].as_str()), (200, Some("stable")), "through the proxy");
    let (code, profile) = get_json(&client, &format!("{base}/profiles/{profile_id}")).await;
    assert_eq!((code, profile["profile"]["name"].as_str()), (200, Some("Dev")), "{profile}");
    assert!(!next.logged("hunter2"), "the password leaked");
    let sqlite = next.dir_path().join("data").join("agentapi-proxy.db");
    assert!(!sqlite.exists(), "nothing went to SQLite");
    let response = client.delete(format!("{base}/sessions/{id}")).send().await.expect("DELETE");
    assert!(response.status().is_success(), "{}", response.status());
    let _ = next.stop().await;
}

#[tokio::test]
async fn a_malformed_postgres_url_exits_2_without_showing_it() {
    let (code, stderr) = run_to_exit(|config| {
        on_postgres(config, "postgres://agent:hunter2-secret@db.example:not-a-port/agents");
    })
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("persistence.postgres_url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_database_exits_1_after_the_timeout_naming_host_and_port_only() {
    // A port nobody listens on: bound by the system, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let (code, stderr) = run_to_exit(|config| {
        on_postgres(config, &format!("postgres://agent:hunter2-secret@127.0.0.1:{port}/agents"));
        config.persistence.connect_timeout_seconds = 1;
    })
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    let retries = stderr.lines().filter(|line| line.contains("cannot reach PostgreSQL")).count();
    assert!(retries >= 2, "each failure is logged: {stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "names host and port: {stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn config_check_redacts_the_postgres_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    on_postgres(&mut config, "postgres://agent:hunter2-secret@db.example:5432/agents");
    let path = dir.path().join("config.json");
    std::fs::write(&path, serde_json::to_string(&config).expect("json")).expect("write");
    let output = Command::new(binary())
        .args(["config", "check", "-c"])
        .arg(&path)
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(printed["persistence"]["postgres_url"], "<redacted>");
    assert!(!stdout.contains("hunter2"), "{stdout}");
}
