//! Helpers for tests that start sessions: calling the session routes, reading what the agent
//! saw, and inspecting process groups.

use std::time::Duration;

use serde_json::{Value, json};

/// `POST /start` with `body`; returns the status code and the JSON answer.
pub async fn start(client: &reqwest::Client, base: &str, body: Value) -> (u16, Value) {
    let response =
        client.post(format!("{base}/start")).json(&body).send().await.expect("POST /start");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// Starts a session that must succeed; returns `(session_id, port)`.
pub async fn start_ok(client: &reqwest::Client, base: &str, body: Value) -> (String, u16) {
    let (status, answer) = start(client, base, body).await;
    assert_eq!(status, 200, "start failed: {answer}");
    let id = answer["session_id"].as_str().expect("session_id").to_string();
    let port = answer["port"].as_u64().expect("port") as u16;
    (id, port)
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The agent's own view of its process (`/debug/env` of the echo agent), asked directly.
pub async fn agent_debug_env(client: &reqwest::Client, port: u16) -> Value {
    get_json(client, &format!("http://127.0.0.1:{port}/debug/env")).await.1
}

/// Sends a user message straight to the agent (not through the proxy).
pub async fn agent_message(client: &reqwest::Client, port: u16, content: &str) -> u16 {
    client
        .post(format!("http://127.0.0.1:{port}/message"))
        .json(&json!({"content": content, "type": "user"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

/// Processes in process group `group` that are not zombies.
pub fn live_group_members(group: i32) -> Vec<i32> {
    agentapi_proxy::sessions::local::procfs::live_group_members(group)
}

/// Whether process group `group` is gone, told by the kernel rather than by the crate's
/// procfs code: `kill(-group, 0)` fails with `ESRCH`. Members that are zombies only (dead,
/// waiting for a parent other than this process to reap them) count as gone; they are found
/// by this file's own reading of `/proc`.
pub fn group_gone(group: i32) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    match kill(Pid::from_raw(-group), None) {
        Err(Errno::ESRCH) => true,
        _ => zombies_only(group),
    }
}

/// True when every process left in `group` is a zombie (or was gone before it was read).
fn zombies_only(group: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().all(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return true };
        // `pid (comm) state ppid pgrp ...`; `comm` may hold spaces and parentheses.
        let Some((_, after_comm)) = stat.rsplit_once(") ") else { return true };
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let in_group = fields.get(2).and_then(|pgrp| pgrp.parse::<i32>().ok()) == Some(group);
        !in_group || matches!(fields.first(), Some(&"Z") | Some(&"X"))
    })
}

/// True while `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    agentapi_proxy::sessions::local::procfs::stat(pid).is_some_and(|stat| !stat.is_zombie())
}

/// A session's status as the detail route reports it.
pub async fn session_status(client: &reqwest::Client, base: &str, id: &str) -> Option<String> {
    let (code, body) = get_json(client, &format!("{base}/sessions/{id}")).await;
    (code == 200).then(|| body["status"].as_str().unwrap_or_default().to_string())
}

/// Posts a user message to session `id` through the proxy at `base`; the status (0: no answer
/// within 20 s).
pub async fn send_message(client: &reqwest::Client, base: &str, id: &str, text: &str) -> u16 {
    client
        .post(format!("{base}/{id}/message"))
        .json(&serde_json::json!({"content": text, "type": "user"}))
        .timeout(std::time::Duration::from_secs(20))
        .send()
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}
