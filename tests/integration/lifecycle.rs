//! Supervision of agent processes: failed and never-ready starts, the agent's exact
//! environment, the initial prompt, idle timeout, retention, restart on failure, the default
//! `agentapi` server found on PATH, and stopping every agent on SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::server::{BinaryServer, TestServer};
use crate::support::sessions::{
    agent_debug_env, agent_message, get_json, group_gone, process_alive, session_status, start,
    start_ok,
};
use crate::support::wait_until;

/// A startup script for tests: behaves like the default one, but can fail or hang on demand.
fn write_test_script(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("test_start.sh");
    std::fs::write(
        &path,
        r#"#!/usr/bin/env bash
set -euo pipefail
echo $$ > "$APX_SESSION_DIR/script.pid"
if [[ -n "${FAIL_NOW:-}" ]]; then echo "failing on purpose: $FAIL_NOW" >&2; exit 7; fi
if [[ -n "${HANG_NOW:-}" ]]; then exec sleep 1000; fi
exec "$@"
"#,
    )
    .expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    path
}

fn script_pid(server: &TestServer, id: &str) -> i32 {
    let path = server.dir.path().join("data/sessions").join(id).join("script.pid");
    std::fs::read_to_string(path).expect("pid file").trim().parse().expect("pid")
}

#[tokio::test]
async fn an_agent_that_exits_at_once_fails_the_start_with_its_output_and_frees_the_port() {
    let scripts = tempfile::tempdir().expect("dir");
    let script = write_test_script(scripts.path());
    // One port, which the system just handed out and nobody else's range contains: the next
    // start proves it was freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let server = TestServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.start_port = port;
        config.end_port = port;
    })
    .await;
    let client = reqwest::Client::new();
    let (status, answer) =
        start(&client, &server.base(), json!({"environment": {"FAIL_NOW": "now"}})).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["code"], "agent_failed_to_start");
    assert_eq!(answer["details"]["exit_code"], 7);
    assert!(
        answer["details"]["log_tail"].as_str().expect("tail").contains("failing on purpose: now")
    );
    let id = answer["session_id"].as_str().map(str::to_string);
    let (_, search) = get_json(&client, &server.url("/search?status=failed")).await;
    assert_eq!(search["total"], 1, "the failed session stays visible");
    assert_eq!(search["sessions"][0]["exit_code"], 7);
    assert!(id.is_none() || id.as_deref() == search["sessions"][0]["session_id"].as_str());
    start_ok(&client, &server.base(), json!({})).await;
}

#[tokio::test]
async fn an_agent_that_never_answers_is_killed_at_the_ready_timeout() {
    let scripts = tempfile::tempdir().expect("dir");
    let script = write_test_script(scripts.path());
    let server = TestServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.session.ready_timeout_seconds = 1;
    })
    .await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (status, answer) =
        start(&client, &server.base(), json!({"environment": {"HANG_NOW": "1"}})).await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["code"], "agent_timeout");
    // The spec's deadline (the ready timeout, 1 s), with a generous margin.
    assert!(started.elapsed() < Duration::from_secs(1 + 10), "{:?}", started.elapsed());
    let (_, search) = get_json(&client, &server.url("/search")).await;
    let id = search["sessions"][0]["session_id"].as_str().expect("id").to_string();
    assert_eq!(search["sessions"][0]["status"], "failed");
    let pid = script_pid(&server, &id);
    assert!(!process_alive(pid), "the hung agent is gone");
    assert!(group_gone(pid));
}

#[tokio::test]
async fn the_agent_sees_exactly_the_proxy_operator_and_request_variables() {
    let server = TestServer::start(|config| {
        config.agent.environment.insert("OPERATOR_SETTING".into(), "from-operator".into());
        config.agent.pass_env = vec!["CARGO_MANIFEST_DIR".into()];
    })
    .await;
    let client = reqwest::Client::new();
    let evil = "$(touch /tmp/pwned-by-env) * -- --evil";
    let env = json!({"REQUEST_VALUE": evil, "ECHO_AGENT_BOOT_MS": "0"});
    let (id, port) = start_ok(&client, &server.base(), json!({"environment": env})).await;
    let seen = agent_debug_env(&client, port).await;
    let env = seen["env"].as_object().expect("env object");
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    // bash itself exports these three to the program it execs.
    names.retain(|name| !matches!(*name, "PWD" | "SHLVL" | "_" | "OLDPWD"));
    names.sort();
    let mut expected = vec![
        "APX_PORT",
        "APX_PROXY_BIN",
        "APX_PROXY_URL",
        "APX_SESSION_DIR",
        "APX_SESSION_ID",
        "APX_SESSION_TOKEN",
        "APX_USER_ID",
        "CARGO_MANIFEST_DIR",
        "ECHO_AGENT_BOOT_MS",
        "HOME",
        "LANG",
        "OPERATOR_SETTING",
        "PATH",
        "REQUEST_VALUE",
        "TERM",
        "TMPDIR",
    ];
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(env["REQUEST_VALUE"], evil, "the value arrives byte-exact");
    assert_eq!(env["OPERATOR_SETTING"], "from-operator");
    assert_eq!(env["CARGO_MANIFEST_DIR"], env!("CARGO_MANIFEST_DIR"));
    assert_eq!(env["APX_SESSION_ID"], id.as_str());
    assert_eq!(env["APX_PORT"], port.to_string());
    let session_dir = env["APX_SESSION_DIR"].as_str().expect("dir");
    assert_eq!(env["HOME"], session_dir);
    assert_eq!(env["TMPDIR"], format!("{session_dir}/tmp"));
    assert_eq!(seen["cwd"], session_dir);
    assert!(!Path::new("/tmp/pwned-by-env").exists(), "nothing was executed");
    let argv: Vec<&str> =
        seen["argv"].as_array().expect("argv").iter().filter_map(Value::as_str).collect();
    assert!(argv.contains(&"--port") && argv.contains(&port.to_string().as_str()), "{argv:?}");
    assert!(!argv.iter().any(|arg| arg.contains("touch")), "request data never reaches argv");
}

/// Waits until the session reports its initial prompt `sent`, then returns the user messages
/// the agent holds, in order.
async fn user_messages_once_prompt_sent(
    client: &reqwest::Client,
    server: &TestServer,
    id: &str,
    port: u16,
) -> Vec<String> {
    let detail_url = server.url(&format!("/sessions/{id}"));
    wait_until("the initial prompt to be sent", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), detail_url.clone());
        async move { (get_json(&client, &url).await.1["initial_message"] == "sent").then_some(()) }
    })
    .await;
    let (_, messages) = get_json(client, &format!("http://127.0.0.1:{port}/messages")).await;
    messages["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_initial_prompt_is_delivered_once_the_agent_is_stable() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let body = json!({"message": "first prompt", "environment": {"ECHO_AGENT_BOOT_MS": "700"}});
    let (id, port) = start_ok(&client, &server.base(), body).await;
    let users = user_messages_once_prompt_sent(&client, &server, &id, port).await;
    assert_eq!(users, vec!["first prompt"], "delivered exactly once");
}

#[tokio::test]
async fn the_initial_prompt_is_retried_while_the_agent_is_busy() {
    let server = TestServer::start(|config| {
        // The agent sends itself a prompt the moment its boot ends, so it is busy (500) when
        // ours first arrives; its reply takes 1.5 s.
        config.agent.server_args = vec!["-I".into(), "self prompt".into()];
    })
    .await;
    let client = reqwest::Client::new();
    let body = json!({"tags": {"message": "ours"},
                      "environment": {"ECHO_AGENT_BOOT_MS": "300", "ECHO_AGENT_REPLY_MS": "1500"}});
    let (id, port) = start_ok(&client, &server.base(), body).await;
    let users = user_messages_once_prompt_sent(&client, &server, &id, port).await;
    assert_eq!(users, vec!["self prompt", "ours"]);
}

#[tokio::test]
async fn an_idle_session_is_stopped_and_a_finished_one_is_purged_after_retention() {
    let server = TestServer::start(|config| {
        config.session.idle_timeout_seconds = 1;
        config.session.retain_finished_seconds = 2;
    })
    .await;
    let client = reqwest::Client::new();
    let env = json!({"ECHO_AGENT_BOOT_MS": "0"});
    let (id, port) = start_ok(&client, &server.base(), json!({"environment": env})).await;
    let pid = agent_debug_env(&client, port).await["pid"].as_i64().expect("pid") as i32;
    let base = server.base();
    let stopped_at = wait_until("the idle timeout", Duration::from_secs(15), || {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        async move {
            let (_, detail) = get_json(&client, &format!("{base}/sessions/{id}")).await;
            (detail["status"] == "exited").then(|| {
                assert_eq!(detail["exit_reason"], "idle_timeout");
                Instant::now()
            })
        }
    })
    .await;
    assert!(group_gone(pid), "the idle agent is gone");
    wait_until("the finished session to be purged", Duration::from_secs(15), || {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        async move { session_status(&client, &base, &id).await.is_none().then_some(()) }
    })
    .await;
    assert!(stopped_at.elapsed() >= Duration::from_millis(1500), "kept for its retention");
    let (_, search) = get_json(&client, &server.url("/search")).await;
    assert_eq!(search["total"], 0);
}

#[tokio::test]
async fn a_failing_agent_is_restarted_under_the_same_id_with_restart_on_failure() {
    let server = TestServer::start(|config| {
        config.session.restart = agentapi_proxy::config::RestartPolicy::OnFailure;
    })
    .await;
    let client = reqwest::Client::new();
    let env = json!({"ECHO_AGENT_BOOT_MS": "0"});
    let (id, port) = start_ok(&client, &server.base(), json!({"environment": env})).await;
    let first_pid = agent_debug_env(&client, port).await["pid"].as_i64().expect("pid");
    wait_until("the agent to be stable", Duration::from_secs(10), || {
        let client = client.clone();
        async move { (agent_message(&client, port, "/fake exit 3").await == 200).then_some(()) }
    })
    .await;
    let base = server.base();
    let detail = wait_until("the restart", Duration::from_secs(20), || {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        async move {
            let (_, detail) = get_json(&client, &format!("{base}/sessions/{id}")).await;
            (detail["status"] == "active" && detail["restarts"] == 1).then_some(detail)
        }
    })
    .await;
    let new_port = detail["port"].as_u64().expect("port") as u16;
    let second_pid = agent_debug_env(&client, new_port).await["pid"].as_i64().expect("pid");
    assert_ne!(first_pid, second_pid);
    assert_eq!(
        agent_debug_env(&client, new_port).await["env"]["ECHO_AGENT_BOOT_MS"],
        "0",
        "same environment"
    );
}

#[tokio::test]
async fn the_default_agentapi_server_is_found_on_path_and_sigterm_stops_every_agent() {
    let shims = tempfile::tempdir().expect("dir");
    let shim = shims.path().join("agentapi");
    // A stand-in for the real agentapi: same command line, served by the echo agent.
    std::fs::write(
        &shim,
        format!("#!/bin/sh\nshift\nexec '{}' echo-agent server \"$@\"\n", crate::support::binary()),
    )
    .expect("write shim");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", shims.path().display(), std::env::var("PATH").unwrap_or_default());
    let mut server = BinaryServer::start_with_env(
        |config| {
            config.agent.server = "agentapi".into();
            config.session.stop_grace_seconds = 1;
        },
        &[("PATH", path.as_str())],
    )
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let mut pids = Vec::new();
    for _ in 0..2 {
        let (_, port) = start_ok(&client, &base, json!({})).await;
        let seen = agent_debug_env(&client, port).await;
        let argv: Vec<&str> =
            seen["argv"].as_array().expect("argv").iter().filter_map(Value::as_str).collect();
        assert!(argv.contains(&"--chat-base-path") && argv.contains(&"claude"), "{argv:?}");
        pids.push(seen["pid"].as_i64().expect("pid") as i32);
    }
    server.signal(Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    for pid in pids {
        assert!(group_gone(pid), "agent {pid} outlived the server");
    }
}
