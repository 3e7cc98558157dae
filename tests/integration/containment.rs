//! Hostile agents that try to outlive or outgrow their session (security.md rules 13 and 14,
//! row 28): processes that `setsid` and double-fork end with DELETE and with the server's
//! SIGTERM, in cgroup mode and in the forced fallback; a `keep` restart finds the session's
//! cgroup again; process limits are per session; agents with their own uids cannot read
//! each other's environment. These need root (cgroups, other uids): under `CI=true` a
//! missing privilege fails the test instead of skipping it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::json;

use crate::support::server::{BinaryServer, TestServer};
use crate::support::sessions::{agent_debug_env, start, start_ok};
use crate::support::wait_until;

/// Sessions' escape attempts: a `setsid` child and a `setsid` grandchild whose parent
/// exited (double fork); each writes its own pid, then the script execs the agent. With
/// `FILL_PIDS=N` it first starts N sleepers and never becomes an agent.
const HOSTILE_SCRIPT: &str = r#"#!/usr/bin/env bash
set -u
cd -- "$APX_SESSION_DIR"
if [[ -n "${FILL_PIDS:-}" ]]; then
  for _ in $(seq 1 "$FILL_PIDS"); do sleep 1000 </dev/null >/dev/null 2>&1 & done
  touch "$APX_SESSION_DIR/full"
  exec sleep 1000
fi
if [[ -n "${ESCAPE:-}" ]]; then
  f="$APX_SESSION_DIR/escapees"
  setsid bash -c 'echo $$ >> "$1"; exec sleep 1000' _ "$f" </dev/null >/dev/null 2>&1 &
  ( ( setsid bash -c 'echo $$ >> "$1"; exec sleep 1000' _ "$f" </dev/null >/dev/null 2>&1 & ) & )
  until [[ -f "$f" && $(wc -l < "$f") -ge 2 ]]; do sleep 0.01; done
fi
exec "$@"
"#;

/// True when this test may run: root (cgroups, other uids). Otherwise fails under `CI=true`
/// and says why it is skipped elsewhere.
fn privileged(what: &str) -> bool {
    let lacking = format!("{what} needs root");
    crate::support::host_can_run((!nix::unistd::geteuid().is_root()).then_some(&lacking))
}

fn write_script(dir: &Path) -> PathBuf {
    let path = dir.join("hostile.sh");
    std::fs::write(&path, HOSTILE_SCRIPT).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Alive in the kernel's eyes (zombies count until reaped): `kill(pid, 0)` is not ESRCH.
fn exists(pid: i32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

fn escapees(data_dir: &Path, session_id: &str) -> Vec<i32> {
    let file = data_dir.join("sessions").join(session_id).join("escapees");
    let text = std::fs::read_to_string(&file).expect("escapees recorded");
    let pids: Vec<i32> = text.lines().map(|line| line.trim().parse().expect("pid")).collect();
    assert_eq!(pids.len(), 2, "{text}");
    for pid in &pids {
        assert!(exists(*pid), "escapee {pid} runs before the session ends");
        let group = nix::unistd::getpgid(Some(Pid::from_raw(*pid))).expect("pgid");
        assert_eq!(group.as_raw(), *pid, "the escapee left the agent's process group");
    }
    pids
}

async fn all_gone(pids: &[i32], when: &str) {
    let pids = pids.to_vec();
    wait_until(when, Duration::from_secs(10), || {
        let gone = pids.iter().all(|pid| !exists(*pid));
        async move { gone.then_some(()) }
    })
    .await;
}

/// The `agentapi_proxy_containment_mode` gauge that is 1.
async fn metrics_mode(client: &reqwest::Client, base: &str) -> String {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    let line = text
        .lines()
        .find(|line| line.starts_with("agentapi_proxy_containment_mode{") && line.ends_with(" 1"))
        .unwrap_or_else(|| panic!("no containment mode in /metrics:\n{text}"));
    line.split('"').nth(1).expect("mode label").to_string()
}

fn data_dir_of(config_path: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config_path).expect("config");
    let config: serde_json::Value = serde_json::from_str(&text).expect("json");
    PathBuf::from(config["data_dir"].as_str().expect("data_dir"))
}

async fn escaped_processes_end_with_delete(containment: &str, expected_modes: &[&str]) {
    let scripts = tempfile::tempdir().expect("dir");
    let script = write_script(scripts.path());
    let server = BinaryServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.agent.containment = containment.into();
    })
    .await;
    let client = reqwest::Client::new();
    let base = server.url("");
    let mode = metrics_mode(&client, &base).await;
    assert!(expected_modes.contains(&mode.as_str()), "mode {mode}");
    assert!(server.logged(&format!("\"mode\":\"{mode}\"")), "the mode is logged at start");
    let (id, _) = start_ok(&client, &base, json!({"environment": {"ESCAPE": "1"}})).await;
    let pids = escapees(&data_dir_of(&server.config_path), &id);
    let response =
        client.delete(server.url(&format!("/sessions/{id}"))).send().await.expect("DELETE");
    assert_eq!(response.status(), 200);
    all_gone(&pids, "escaped processes to end with DELETE").await;
}

async fn escaped_processes_end_with_sigterm(containment: &str) {
    let scripts = tempfile::tempdir().expect("dir");
    let script = write_script(scripts.path());
    let server = BinaryServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.agent.containment = containment.into();
    })
    .await;
    let client = reqwest::Client::new();
    let base = server.url("");
    let data_dir = data_dir_of(&server.config_path);
    let mut pids = Vec::new();
    for _ in 0..2 {
        let (id, _) = start_ok(&client, &base, json!({"environment": {"ESCAPE": "1"}})).await;
        pids.extend(escapees(&data_dir, &id));
    }
    let (status, _dir, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
    all_gone(&pids, "escaped processes to end with the server's SIGTERM").await;
}

#[tokio::test]
async fn escaped_processes_end_with_delete_in_cgroup_mode() {
    if privileged("creating cgroups") {
        escaped_processes_end_with_delete("cgroup", &["cgroup_v2", "cgroup_v1"]).await;
    }
}

#[tokio::test]
async fn escaped_processes_end_with_delete_in_the_forced_fallback() {
    escaped_processes_end_with_delete("descendants", &["descendants"]).await;
}

#[tokio::test]
async fn escaped_processes_end_with_server_sigterm_in_cgroup_mode() {
    if privileged("creating cgroups") {
        escaped_processes_end_with_sigterm("cgroup").await;
    }
}

#[tokio::test]
async fn escaped_processes_end_with_server_sigterm_in_the_forced_fallback() {
    escaped_processes_end_with_sigterm("descendants").await;
}

#[tokio::test]
async fn a_kept_session_is_still_contained_after_a_restart() {
    if !privileged("creating cgroups") {
        return;
    }
    let scripts = tempfile::tempdir().expect("dir");
    let script = write_script(scripts.path());
    let server = BinaryServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.agent.containment = "cgroup".into();
        config.session.on_shutdown = agentapi_proxy::config::OnShutdown::Keep;
    })
    .await;
    let client = reqwest::Client::new();
    let (id, _) = start_ok(&client, &server.url(""), json!({"environment": {"ESCAPE": "1"}})).await;
    let (gone_id, _) =
        start_ok(&client, &server.url(""), json!({"environment": {"ESCAPE": "1"}})).await;
    let data_dir = data_dir_of(&server.config_path);
    let pids = escapees(&data_dir, &id);
    let orphaned = escapees(&data_dir, &gone_id);
    let (status, dir, config_path) = server.stop().await;
    assert_eq!(status.code(), Some(0));
    assert!(pids.iter().chain(&orphaned).all(|pid| exists(*pid)), "keep leaves them running");
    // While the server is down, one session's agent dies: its escapees are left over.
    kill_agent_of(&data_dir, &gone_id);

    let server = BinaryServer::launch(dir, config_path, &[]).await;
    all_gone(&orphaned, "the escapees of a session lost while down to be cleaned up").await;
    assert!(pids.iter().all(|pid| exists(*pid)), "the kept session is untouched");
    let response =
        client.delete(server.url(&format!("/sessions/{id}"))).send().await.expect("DELETE");
    assert_eq!(response.status(), 200);
    all_gone(&pids, "a re-adopted session's escapees to end with DELETE").await;
}

/// Kills the agent (the process whose cwd is the session directory and that listens), not
/// its escapees, as a crash would.
fn kill_agent_of(data_dir: &Path, session_id: &str) {
    let escapees = escapees(data_dir, session_id);
    let dir = std::fs::canonicalize(data_dir.join("sessions").join(session_id)).expect("dir");
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let in_dir = std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir);
        if in_dir && !escapees.contains(&pid) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The first uid of a range nobody uses on this host.
const UID_RANGE: [u32; 2] = [3_900_000, 3_900_099];

fn status_uid(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|line| line.starts_with("Uid:")).expect("Uid line");
    line.split_whitespace().nth(1).expect("real uid").parse().expect("uid")
}

async fn server_with_uid_range(script: &Path, max_processes: u64) -> TestServer {
    let script = script.display().to_string();
    let server = TestServer::start(|config| {
        config.agent.script = script;
        config.agent.run_as_user = "nobody".into();
        config.agent.uid_range = UID_RANGE.to_vec();
        config.agent.limits.max_processes = max_processes;
    })
    .await;
    // The agents must pass through the test's own temporary directory.
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod");
    server
}

#[tokio::test]
async fn one_agent_at_its_process_limit_does_not_stop_another_from_starting() {
    if !privileged("running agents as other uids") {
        return;
    }
    let scripts = tempfile::tempdir().expect("dir");
    let script = write_script(scripts.path());
    let limit = 40;
    let server = server_with_uid_range(&script, limit).await;
    let client = reqwest::Client::new();
    let filler = json!({"environment": {"FILL_PIDS": (limit - 4).to_string()}});
    let response = client
        .post(server.url("/start?wait=false"))
        .json(&filler)
        .send()
        .await
        .expect("POST /start");
    assert!(response.status().is_success(), "{}", response.status());
    let full = server.dir.path().join("data/sessions");
    wait_until("the first agent to fill its process limit", Duration::from_secs(20), || {
        let found = std::fs::read_dir(&full)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| entry.path().join("full").exists());
        async move { found.then_some(()) }
    })
    .await;
    for _ in 0..2 {
        let (status, answer) = start(&client, &server.base(), json!({})).await;
        assert_eq!(status, 200, "another session's start failed: {answer}");
    }
}

#[tokio::test]
async fn agents_with_their_own_uids_cannot_read_each_others_environment() {
    if !privileged("running agents as other uids") {
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        panic!("this test needs the user `nobody`");
    };
    let scripts = tempfile::tempdir().expect("dir");
    let script = write_script(scripts.path());
    let server = server_with_uid_range(&script, 0).await;
    let client = reqwest::Client::new();
    let secret = json!({"environment": {"GITHUB_TOKEN": "ghp_secret_of_a"}});
    let (_, port_a) = start_ok(&client, &server.base(), secret).await;
    let (_, port_b) = start_ok(&client, &server.base(), json!({})).await;
    let pid_a = agent_debug_env(&client, port_a).await["pid"].as_i64().expect("pid") as i32;
    let pid_b = agent_debug_env(&client, port_b).await["pid"].as_i64().expect("pid") as i32;
    let (uid_a, uid_b) = (status_uid(pid_a), status_uid(pid_b));
    assert_ne!(uid_a, uid_b, "each session has its own uid");
    for uid in [uid_a, uid_b] {
        assert!((UID_RANGE[0]..=UID_RANGE[1]).contains(&uid), "uid {uid} is outside the range");
    }
    let environ = std::fs::read(format!("/proc/{pid_a}/environ")).expect("root reads it");
    assert!(String::from_utf8_lossy(&environ).contains("ghp_secret_of_a"));
    let read_as_b = std::process::Command::new("cat")
        .arg(format!("/proc/{pid_a}/environ"))
        .uid(uid_b)
        .gid(nobody.gid.as_raw())
        .output()
        .expect("cat runs");
    assert!(!read_as_b.status.success(), "agent B read agent A's environment");
    assert!(!String::from_utf8_lossy(&read_as_b.stdout).contains("ghp_secret_of_a"));
}
