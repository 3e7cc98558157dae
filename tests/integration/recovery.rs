//! Nothing is lost: the real binary killed with SIGKILL or stopped with `on_shutdown: keep`
//! comes back with every session re-adopted or visibly ended, and no orphan processes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::server::BinaryServer;
use crate::support::sessions::{agent_debug_env, agent_message, get_json, group_gone, start_ok};
use crate::support::wait_until;

async fn sessions_by_id(client: &reqwest::Client, server: &BinaryServer) -> Vec<Value> {
    let (code, search) = get_json(client, &server.url("/search")).await;
    assert_eq!(code, 200);
    search["sessions"].as_array().expect("sessions").clone()
}

#[tokio::test]
async fn after_kill_9_live_agents_are_re_adopted_and_dead_ones_are_shown_ended() {
    let server = BinaryServer::start(|config| config.session.stop_grace_seconds = 1).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let env = json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}});
    let (survivor, survivor_port) = start_ok(&client, &base, env.clone()).await;
    let (victim, victim_port) = start_ok(&client, &base, env.clone()).await;
    let survivor_pid =
        agent_debug_env(&client, survivor_port).await["pid"].as_i64().expect("pid") as i32;
    let victim_pid =
        agent_debug_env(&client, victim_port).await["pid"].as_i64().expect("pid") as i32;
    wait_until("the survivor to take a message", Duration::from_secs(10), || {
        let client = client.clone();
        async move { (agent_message(&client, survivor_port, "remember me").await == 200).then_some(()) }
    })
    .await;

    // A client is mid event stream through the proxy when it dies.
    let events =
        client.get(server.url(&format!("/{survivor}/events"))).send().await.expect("events");
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();
    use futures_util::StreamExt;
    assert!(stream.next().await.is_some_and(|chunk| chunk.is_ok()), "the stream was flowing");

    let (dir, config_path) = server.kill9().await;
    // While the proxy is down one agent dies.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(victim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the victim's group");
    wait_until("the victim to die", Duration::from_secs(10), || async {
        group_gone(victim_pid).then_some(())
    })
    .await;

    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let sessions = sessions_by_id(&client, &server).await;
    assert_eq!(sessions.len(), 2, "none lost, none duplicated: {sessions:?}");
    let find = |id: &str| sessions.iter().find(|s| s["session_id"] == id).cloned().expect("listed");
    let kept = find(&survivor);
    assert_eq!(kept["status"], "active", "{kept}");
    assert_eq!(kept["port"], survivor_port);
    let lost = find(&victim);
    assert_eq!(lost["status"], "exited", "{lost}");
    assert_eq!(lost["exit_reason"], "lost_while_down");
    assert_eq!(
        agent_debug_env(&client, survivor_port).await["pid"],
        survivor_pid,
        "the same process"
    );
    let (_, messages) =
        get_json(&client, &format!("http://127.0.0.1:{survivor_port}/messages")).await;
    assert!(messages.to_string().contains("remember me"), "the conversation is intact");

    // The adopted agent is fully under control again: DELETE stops its whole group.
    let response =
        client.delete(server.url(&format!("/sessions/{survivor}"))).send().await.expect("delete");
    assert_eq!(response.status(), 200);
    assert!(group_gone(survivor_pid));
    let (status, _, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_row_written_before_the_spawn_becomes_failed_after_a_crash() {
    let server = BinaryServer::start(|_| {}).await;
    let (dir, config_path) = server.kill9().await;
    let database = dir.path().join("data/agentapi-proxy.db");
    let id = uuid::Uuid::new_v4().to_string();
    rusqlite::Connection::open(&database)
        .and_then(|connection| {
            connection.execute(
                "INSERT INTO sessions (id, user_id, status, started_at) VALUES (?1, 'alice', 'starting', 1)",
                [&id],
            )
        })
        .expect("seed a half-started session");
    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let client = reqwest::Client::new();
    let (code, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(code, 200);
    assert_eq!(detail["status"], "failed");
    let (status, _, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn on_shutdown_keep_leaves_agents_running_for_the_next_server() {
    let server = BinaryServer::start(|config| {
        config.session.on_shutdown = agentapi_proxy::config::OnShutdown::Keep;
    })
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let (id, port) =
        start_ok(&client, &base, json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}})).await;
    let pid = agent_debug_env(&client, port).await["pid"].as_i64().expect("pid") as i32;
    wait_until("the agent to take a message", Duration::from_secs(10), || {
        let client = client.clone();
        async move { (agent_message(&client, port, "before the upgrade").await == 200).then_some(()) }
    })
    .await;
    let (status, dir, config_path) = server.stop().await;
    assert_eq!(status.code(), Some(0));
    assert!(!group_gone(pid), "the agent kept running");

    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let (_, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(detail["status"], "active", "{detail}");
    let (_, messages) = get_json(&client, &format!("http://127.0.0.1:{port}/messages")).await;
    assert!(messages.to_string().contains("before the upgrade"));
    // Clean up through the proxy so no agent outlives the test.
    let response =
        client.delete(server.url(&format!("/sessions/{id}"))).send().await.expect("delete");
    assert_eq!(response.status(), 200);
    assert!(group_gone(pid));
    server.stop().await;
}

#[tokio::test]
async fn a_corrupted_database_stops_startup_and_is_left_untouched() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let database = data.join("agentapi-proxy.db");
    let garbage = b"SQLite format 3\0 but then nothing that makes sense at all.........".repeat(64);
    std::fs::write(&database, &garbage).expect("write garbage");
    let config = crate::support::server::test_config(dir.path());
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_string(&config).expect("json")).expect("write");
    let output = tokio::process::Command::new(crate::support::binary())
        .args(["server", "-p", "0", "--log-format", "json", "-c"])
        .arg(&config_path)
        .current_dir(dir.path())
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(30), output).await.expect("exits").expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("agentapi-proxy.db") && stderr.contains("untouched"), "{stderr}");
    assert_eq!(std::fs::read(&database).expect("read"), garbage);
}

/// A tiny tmpfs, unmounted on drop; `None` where this process may not mount.
struct TinyDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|status| status.success());
        mounted.then_some(Self { path, _dir: dir })
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.path.join("filler")).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while filler.write_all(&chunk).is_ok() {}
        let _ = filler.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).expect("remove filler");
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_new_sessions_with_503_keeps_serving_and_recovers() {
    let disk = TinyDisk::mount("4m");
    if !crate::support::host_can_run(disk.is_none().then_some("mounting a tmpfs needs root")) {
        return;
    }
    let disk = disk.expect("checked above");
    let database = disk.path.join("store.db");
    let db_path = database.display().to_string();
    let server = BinaryServer::start(|config| config.persistence.sqlite_path = db_path).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let env = json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}});
    let (id, _) = start_ok(&client, &base, env.clone()).await;

    disk.fill();
    let response = client.post(server.url("/start")).json(&env).send().await.expect("start");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "store_unavailable");
    let (code, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!((code, detail["status"].as_str()), (200, Some("active")), "reads keep working");
    let (code, _) = get_json(&client, &server.url(&format!("/{id}/status"))).await;
    assert_eq!(code, 200, "proxying keeps working");
    let (_, search) = get_json(&client, &server.url("/search")).await;
    assert_eq!(search["total"], 1, "nothing half-written");

    disk.free();
    start_ok(&client, &base, env).await;
    let (status, _, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
    let verdict: String = rusqlite::Connection::open(&database)
        .and_then(|connection| connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)))
        .expect("integrity check");
    assert_eq!(verdict, "ok");
}
