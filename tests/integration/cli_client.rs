//! `agentapi-proxy client ...` against a live server: human and `--json` output, the API key
//! from the flag or the environment, and non-zero exits on errors.

use std::process::Stdio;
use std::time::Duration;

use agentapi_proxy::config::{ApiKeyEntry, Config};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::binary;
use crate::support::server::TestServer;

const KEY: &str = "ap_cli_test_key";

fn with_key(config: &mut Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys = vec![ApiKeyEntry {
        key: Some(KEY.into()),
        user_id: "dora".into(),
        role: "user".into(),
        permissions: vec!["*".into()],
        ..ApiKeyEntry::default()
    }];
}

async fn cli(server: &TestServer, args: &[&str], env_key: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command
        .arg("client")
        .args(args)
        .args(["-e", &server.base()])
        .env_remove("AGENTAPI_PROXY_API_KEY");
    if let Some(key) = env_key {
        command.env("AGENTAPI_PROXY_API_KEY", key);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("finishes")
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn every_client_command_works_against_a_live_server() {
    let server = TestServer::start(with_key).await;
    let (code, out, err) = cli(
        &server,
        &["start", "--env", "ECHO_AGENT_BOOT_MS=0", "--tag", "team=cli", "--json", "-k", KEY],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out).expect("JSON");
    let id = started["session_id"].as_str().expect("id").to_string();
    assert_eq!(started["status"], "active");

    let (code, out, _) = cli(&server, &["search", "--tag", "team=cli"], Some(KEY)).await;
    assert_eq!(code, 0);
    assert!(out.contains("SESSION_ID") && out.contains(&id) && out.contains("team=cli"), "{out}");
    let (code, out, _) = cli(&server, &["search", "--json"], Some(KEY)).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("JSON")["total"], 1);

    let (code, out, err) =
        cli(&server, &["send", "-s", &id, "-m", "from the shell", "--wait", "20"], Some(KEY)).await;
    assert_eq!((code, out.trim()), (0, "echo: from the shell"), "{err}");
    let (code, out, _) = cli(&server, &["history", "-s", &id], Some(KEY)).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("[user] from the shell") && out.contains("[agent] echo: from the shell"),
        "{out}"
    );
    let (code, out, _) = cli(&server, &["status", "-s", &id, "--json"], Some(KEY)).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("JSON")["status"], "stable");

    // `events` streams until interrupted: read a few lines, then stop it.
    let mut events = Command::new(binary())
        .args(["client", "events", "-s", &id, "-e", &server.base(), "-k", KEY])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("events");
    let mut lines = BufReader::new(events.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines.next_line().await.expect("read").expect("a line");
            if line.starts_with("status_change") {
                return line;
            }
        }
    })
    .await
    .expect("an event arrives");
    assert!(line.contains("status="), "{line}");
    events.kill().await.expect("stop events");

    let (code, out, _) = cli(&server, &["delete", "-s", &id], Some(KEY)).await;
    assert_eq!((code, out.trim().to_string()), (0, format!("deleted {id}")));
}

#[tokio::test]
async fn errors_exit_non_zero_with_the_servers_message() {
    let server = TestServer::start(with_key).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let (code, _, err) = cli(&server, &["delete", "-s", &unknown], Some(KEY)).await;
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("not_found"), "{err}");
    let (code, _, err) = cli(&server, &["search"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = cli(&server, &["search", "-k", "ap_wrong"], None).await;
    assert_eq!(code, 1, "{err}");
    let (code, _, _) = cli(&server, &["start", "--env", "no-equals-sign"], Some(KEY)).await;
    assert_eq!(code, 2, "usage errors exit 2");
}

/// The Go CLI's form: `client send -s ID "text"`; and `-` (or no message with a pipe on
/// standard input) reads the message from standard input.
#[tokio::test]
async fn send_takes_the_message_as_a_positional_argument_or_from_stdin() {
    let server = TestServer::start(with_key).await;
    let (code, out, err) =
        cli(&server, &["start", "--env", "ECHO_AGENT_BOOT_MS=0", "--json"], Some(KEY)).await;
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out).expect("JSON");
    let id = started["session_id"].as_str().expect("id").to_string();

    let (code, out, err) =
        cli(&server, &["send", "-s", &id, "as the Go CLI sends it", "--wait", "20"], Some(KEY))
            .await;
    assert_eq!((code, out.trim()), (0, "echo: as the Go CLI sends it"), "{err}");

    for args in
        [vec!["send", "-s", &id, "-", "--wait", "20"], vec!["send", "-s", &id, "--wait", "20"]]
    {
        let mut child = Command::new(binary())
            .arg("client")
            .args(&args)
            .args(["-e", &server.base(), "-k", KEY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        let mut stdin = child.stdin.take().expect("stdin");
        tokio::io::AsyncWriteExt::write_all(&mut stdin, b"from a pipe\n").await.expect("write");
        drop(stdin);
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("finishes")
            .expect("runs");
        let out = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            (output.status.code(), out.trim()),
            (Some(0), "echo: from a pipe"),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let (code, _, err) =
        cli(&server, &["send", "-s", &id, "twice", "-m", "twice"], Some(KEY)).await;
    assert_eq!(code, 2, "a message given twice is a usage error: {err}");
}
