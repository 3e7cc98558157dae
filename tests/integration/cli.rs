//! The command line as operators use it: exit codes, `config check`, refusing unsafe binds,
//! and stopping on signals.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::process::Command;

use crate::support::binary;
use crate::support::server::BinaryServer;

async fn run_cli(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let output = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output();
    tokio::time::timeout(Duration::from_secs(30), output).await.expect("finishes").expect("runs")
}

#[tokio::test]
async fn a_missing_config_file_exits_2_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    for command in [&["server", "-p", "0"][..], &["config", "check"][..]] {
        let mut args = command.to_vec();
        args.extend(["-c", "missing.json"]);
        let output = run_cli(&args, dir.path()).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("missing.json"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"auth": {"enabled": true, "static": {"enabled": true, "api_keys": [
              {"key": "ap_alice_topsecret", "user_id": "alice", "role": "user", "permissions": ["*"]}]},
            "github": {"oauth": {"client_id": "cid", "client_secret": "${TEST_OAUTH_SECRET}",
                                  "allowed_redirect_uris": ["https://app.example/cb"]}}},
            "agent": {"environment": {"ANTHROPIC_API_KEY": "sk-ant-xyz"}}}"#,
    )
    .expect("write");
    let output = Command::new(binary())
        .args(["config", "check"])
        .current_dir(dir.path())
        .env("TEST_OAUTH_SECRET", "oauth-shh")
        .env("AGENTAPI_PROXY_SESSION__MAX_SESSIONS", "7")
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for secret in ["ap_alice_topsecret", "oauth-shh", "sk-ant-xyz"] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    let printed: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(printed["session"]["max_sessions"], 7, "environment applied");
    assert_eq!(printed["auth"]["static"]["api_keys"][0]["key"], "<redacted>");
    assert_eq!(printed["auth"]["static"]["api_keys"][0]["user_id"], "alice");
    assert_eq!(printed["auth"]["github"]["oauth"]["client_secret"], "<redacted>");
    assert_eq!(printed["auth"]["github"]["oauth"]["client_id"], "cid");
}

#[tokio::test]
async fn config_check_reports_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"end_port": 10, "server": {"bind": "nowhere"}, "session": {"stop_grace_seconds": 0}}"#,
    )
    .expect("write");
    let output = run_cli(&["config", "check"], dir.path()).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for key in ["`end_port`", "`server.bind`", "`session.stop_grace_seconds`"] {
        assert!(stderr.contains(key), "{key} missing: {stderr}");
    }
}

#[tokio::test]
async fn binding_beyond_loopback_without_auth_needs_an_explicit_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output =
        run_cli(&["server", "-p", "0", "--bind", "0.0.0.0", "--log-format", "json"], dir.path())
            .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allow-unauthenticated"));
    assert!(!dir.path().join(".agentapi-proxy").exists(), "nothing was created");
}

#[tokio::test]
async fn sigterm_drains_and_exits_0_within_the_drain_timeout() {
    // Nothing in flight: the server exits long before the drain timeout.
    let mut server = BinaryServer::start(|config| config.server.drain_timeout_seconds = 60).await;
    let client = reqwest::Client::new();
    let health = client.get(server.url("/healthz")).send().await.expect("request");
    assert_eq!(health.status(), 200);
    server.signal(Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait())
        .await
        .expect("exits well within the drain timeout")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Logging to a pipe nobody reads any more (a log shipper that died) must not stop the server
/// from hearing SIGTERM: a failed log write once panicked the task that logged it.
#[tokio::test]
async fn sigterm_still_stops_the_server_when_its_log_pipe_is_gone() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.json");
    let data_dir = dir.path().join("data");
    std::fs::write(&config, serde_json::json!({ "data_dir": data_dir }).to_string())
        .expect("config");
    let mut child = Command::new(binary())
        .args(["server", "-p", "0", "--log-format", "json", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let listening = async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains("listening") {
                return;
            }
        }
        panic!("the server ended before listening");
    };
    tokio::time::timeout(Duration::from_secs(10), listening).await.expect("listens in time");
    drop(lines);
    let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).expect("signal");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn the_shipped_example_and_demo_configurations_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["config.json.example", "config.demo.json"] {
        let output = Command::new(binary())
            .args(["config", "check", "-c"])
            .arg(format!("{root}/{file}"))
            .env("GITHUB_CLIENT_ID", "id")
            .env("GITHUB_CLIENT_SECRET", "secret")
            .env("ANTHROPIC_API_KEY", "sk")
            .env("SLACK_BOT_TOKEN", "xoxb-example")
            .env("SLACK_APP_TOKEN", "xapp-example")
            .env("SLACK_SIGNING_SECRET", "example-secret")
            .output()
            .await
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{file}: {stderr}");
        assert!(!stderr.contains("unknown configuration key"), "{file}: {stderr}");
    }
}

#[tokio::test]
async fn setup_claude_code_marks_onboarding_and_trust_done_keeping_other_settings() {
    let dir = tempfile::tempdir().expect("dir");
    let claude = dir.path().join("claude");
    std::fs::create_dir_all(&claude).expect("dir");
    std::fs::write(claude.join(".claude.json"), r#"{"theme": "dark"}"#).expect("seed");
    let output = Command::new(binary())
        .args(["helpers", "setup-claude-code"])
        .env("CLAUDE_DIR", &claude)
        .current_dir(dir.path())
        .output()
        .await
        .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(claude.join(".claude.json")).expect("read"))
            .expect("json");
    assert_eq!(settings["theme"], "dark");
    assert_eq!(settings["hasCompletedOnboarding"], true);
    let project = std::fs::canonicalize(dir.path()).expect("canonical").display().to_string();
    assert_eq!(
        settings["projects"][project.as_str()]["hasTrustDialogAccepted"],
        true,
        "{settings}"
    );
}

#[tokio::test]
async fn log_lines_are_json_and_carry_the_request_id() {
    let server = BinaryServer::start_with_env(|_| {}, &[("RUST_LOG", "debug")]).await;
    let response = reqwest::Client::new()
        .get(server.url("/healthz?code=secret-oauth-code"))
        .header("X-Request-Id", "trace-abc-123")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let line =
        crate::support::wait_until("the request's log line", Duration::from_secs(10), || async {
            server
                .logs
                .lock()
                .expect("logs")
                .iter()
                .find(|line| line.contains("trace-abc-123"))
                .cloned()
        })
        .await;
    let entry: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(entry["request_id"], "trace-abc-123", "{entry}");
    assert_eq!(entry["path"], "/healthz", "{entry}");
    assert_eq!(entry["level"], "DEBUG", "{entry}");
    assert!(entry["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{entry}");
    let all = server.logs.lock().expect("logs").join("\n");
    assert!(!all.contains("secret-oauth-code"), "query strings are never logged");
}
