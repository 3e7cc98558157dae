//! The errors a new user meets in the first hour, each saying what to do: endpoints the
//! client cannot use or reach, a missing API key, values the server would refuse, a port
//! already taken, a misspelt configuration key or `/start` field.

use std::process::Stdio;
use std::time::Duration;

use agentapi_proxy::config::{ApiKeyEntry, Config};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::support::binary;
use crate::support::server::TestServer;
use crate::support::sessions::{get_json, start};

/// `agentapi-proxy ARGS` in `dir`, without the caller's API key or endpoint variables:
/// `(exit code, stdout, stderr)`.
async fn run(args: &[&str], dir: Option<&std::path::Path>) -> (i32, String, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("AGENTAPI_PROXY_API_KEY")
        .env_remove("AGENTAPI_PROXY_ENDPOINT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    if let Some(dir) = dir {
        command.current_dir(dir);
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

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test]
async fn a_bare_host_and_port_is_an_http_endpoint() {
    let server = TestServer::start(|_| {}).await;
    let bare = server.address.to_string();
    let (code, out, err) = run(&["client", "search", "-e", &bare], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 of 0 sessions"), "{out}");
}

#[tokio::test]
async fn an_endpoint_that_cannot_be_used_says_why_and_exits_2() {
    for (endpoint, why) in [("ftp://127.0.0.1:8080", "only http and https"), ("http://", "host")] {
        let (code, _, err) = run(&["client", "search", "-e", endpoint], None).await;
        assert_eq!(code, 2, "{endpoint}: {err}");
        assert!(
            err.contains(&format!("cannot use the endpoint {endpoint:?}")) && err.contains(why),
            "{endpoint}: {err}"
        );
        assert!(!err.contains("builder error"), "{err}");
    }
}

#[tokio::test]
async fn no_server_at_the_endpoint_is_not_reachable_and_says_how_to_start_one() {
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let (code, _, err) = run(&["client", "search", "-e", &endpoint], None).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("the server at {endpoint} is not reachable (connection refused)")),
        "{err}"
    );
    assert!(err.contains("hint: start a server with `agentapi-proxy server`"), "{err}");
    assert!(!err.contains("error sending request"), "{err}");
}

#[tokio::test]
async fn a_401_says_how_to_pass_a_key() {
    let server = TestServer::start(|config: &mut Config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.api_keys = vec![ApiKeyEntry {
            key: Some("ap_first_hour_key".into()),
            user_id: "ann".into(),
            role: "user".into(),
            permissions: vec!["*".into()],
            ..ApiKeyEntry::default()
        }];
    })
    .await;
    let (code, _, err) = run(&["client", "search", "-e", &server.base()], None).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401") && err.contains("-k/--api-key"), "{err}");
    assert!(err.contains("AGENTAPI_PROXY_API_KEY"), "{err}");
    let (code, _, err) =
        run(&["client", "search", "-e", &server.base(), "-k", "ap_wrong"], None).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("was not accepted"), "{err}");
}

#[tokio::test]
async fn search_status_lists_the_values_the_server_accepts_before_any_request() {
    // No server at all: the value is refused before anything is sent.
    let endpoint = format!("127.0.0.1:{}", closed_port());
    let (code, _, err) =
        run(&["client", "search", "--status", "running", "-e", &endpoint], None).await;
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(
        err.contains("must be one of starting, active, stopping, exited, failed"),
        "the server's own list: {err}"
    );
    assert!(err.contains("`client status`"), "explains `running`: {err}");
    assert!(!err.contains("not reachable"), "{err}");
}

#[tokio::test]
async fn send_wait_0_is_a_usage_error() {
    let (code, _, err) =
        run(&["client", "send", "-s", "any", "hi", "--wait", "0", "-e", "127.0.0.1:1"], None).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 1 second") && err.contains("leave --wait out"), "{err}");
}

#[tokio::test]
async fn a_port_in_use_names_the_port_and_the_flag_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port().to_string();
    std::fs::write(
        dir.path().join("config.json"),
        json!({"data_dir": dir.path().join("data"), "agent": {"server": "builtin:echo"}})
            .to_string(),
    )
    .expect("write");
    let (code, _, err) =
        run(&["server", "-p", &port, "--log-format", "human"], Some(dir.path())).await;
    assert_eq!(code, 1, "{err}");
    let said = format!("port {port} on 127.0.0.1 is already in use by another process");
    assert_eq!(err.matches(&said).count(), 1, "said once: {err}");
    assert!(err.contains("-p/--port"), "{err}");
}

#[tokio::test]
async fn an_unknown_configuration_key_suggests_the_nearest_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.json"), r#"{"sesion": {"max_sessions": 3}}"#)
        .expect("write");
    let (code, _, err) = run(&["config", "check"], Some(dir.path())).await;
    assert_eq!(code, 0, "a warning, not an error: {err}");
    assert!(
        err.contains("unknown configuration key `sesion` (ignored); did you mean `session`?"),
        "{err}"
    );
}

#[tokio::test]
async fn a_misspelt_start_field_is_refused_by_name_and_starts_nothing() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (status, answer) = start(&client, &server.base(), json!({"tag": {"team": "web"}})).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid_request");
    let message = answer["message"].as_str().expect("message");
    assert!(message.contains("unknown field `tag`") && message.contains("`tags`"), "{message}");
    let (_, found) = get_json(&client, &server.url("/search")).await;
    assert_eq!(found["total"], 0, "{found}");
    // The Go proxy's clients send `user_id`: still accepted (and ignored).
    let (status, answer) = start(&client, &server.base(), json!({"user_id": "x"})).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn the_echo_agent_reports_echo_as_its_type() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (status, answer) = start(&client, &server.base(), json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["session_id"].as_str().expect("id");
    let (code, out, err) =
        run(&["client", "status", "-s", id, "-e", &server.base(), "--json"], None).await;
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(status["agent_type"], "echo", "{status}");
}

#[tokio::test]
async fn every_metric_has_a_help_line() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (status, answer) = start(&client, &server.base(), json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let text = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    let typed: Vec<&str> =
        text.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    assert!(typed.len() >= 5, "{text}");
    for name in typed {
        assert!(text.contains(&format!("# HELP {name} ")), "no # HELP for {name}:\n{text}");
    }
}

#[tokio::test]
async fn log_lines_name_stop_reasons_in_the_apis_words() {
    let server = crate::support::server::BinaryServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (status, answer) = start(&client, &format!("http://{}", server.address), json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let logs = server.logs.clone();
    let (exit, _dir, _config) = server.stop().await;
    assert!(exit.success(), "{exit:?}");
    let logs = logs.lock().expect("logs").join("\n");
    let stopped: Vec<&str> = logs.lines().filter(|line| line.contains("session stopped")).collect();
    assert!(!stopped.is_empty(), "{logs}");
    for line in stopped {
        let entry: Value = serde_json::from_str(line).expect("a JSON log line");
        assert_eq!(entry["reason"], "server_shutdown", "{line}");
    }
}

#[tokio::test]
async fn bash_completion_completes_client_subcommands() {
    let (code, script, err) = run(&["completions", "bash"], None).await;
    assert_eq!(code, 0, "{err}");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agentapi-proxy.bash");
    std::fs::write(&path, &script).expect("write");
    let syntax = Command::new("bash").arg("-n").arg(&path).output().await.expect("bash -n");
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    // What bash does on `agentapi-proxy client s<TAB>`: the function `complete -F` names,
    // called with the command, the word being completed and the word before it.
    let complete = format!(
        r#"source {path}
function_name=$(complete -p agentapi-proxy | sed -E 's/.*-F ([^ ]+).*/\1/')
COMP_WORDS=(agentapi-proxy client s); COMP_CWORD=2
COMP_LINE="agentapi-proxy client s"; COMP_POINT=${{#COMP_LINE}}
"$function_name" agentapi-proxy s client
printf '%s\n' "${{COMPREPLY[@]}}""#,
        path = path.display()
    );
    let output = Command::new("bash").arg("-c").arg(complete).output().await.expect("bash");
    let offered = String::from_utf8_lossy(&output.stdout);
    let mut words: Vec<&str> = offered.split_whitespace().collect();
    words.sort_unstable();
    assert_eq!(words, ["search", "send", "start", "status"], "{offered}");
}

#[tokio::test]
async fn the_manual_page_is_roff_naming_the_commands() {
    let (code, page, err) = run(&["man"], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH agentapi-proxy 1"), "{page}");
    assert!(page.contains("client") && page.contains("server"), "{page}");
}

/// However many listener workers drain, the server says "draining open connections" once.
#[tokio::test]
async fn draining_is_announced_once_whatever_the_worker_count() {
    let server =
        crate::support::server::BinaryServer::start(|config| config.server.workers = 3).await;
    let logs = server.logs.clone();
    let (status, _, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
    let lines = logs.lock().expect("logs");
    let announced = lines.iter().filter(|line| line.contains("draining open connections")).count();
    assert_eq!(announced, 1, "{lines:#?}");
}
