//! Hostile input on the session routes (security.md rows 1–9b): each gets a clear JSON
//! error, and nothing is started, stored or executed.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::server::TestServer;
use crate::support::sessions::{get_json, start, start_ok};

/// Asserts that no session exists and no agent was spawned.
async fn nothing_started(server: &TestServer, client: &reqwest::Client) {
    let (_, search) = get_json(client, &server.url("/search")).await;
    assert_eq!(search["total"], 0, "{search}");
    let sessions_dir = server.dir.path().join("data/sessions");
    let spawned = std::fs::read_dir(&sessions_dir).map(|dir| dir.count()).unwrap_or(0);
    assert_eq!(spawned, 0, "no session directory was created");
}

async fn post_raw(server: &TestServer, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url("/start"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json");
    (status, response.json().await.expect("JSON error body"))
}

#[tokio::test]
async fn malformed_bodies_are_refused_before_anything_starts() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (code, body) = post_raw(&server, "application/json", b"{\"environment\":".to_vec()).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_request")));
    let (code, body) = post_raw(&server, "text/plain", b"{}".to_vec()).await;
    assert_eq!((code, body["code"].as_str()), (415, Some("unsupported_media_type")));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (code, body) = post_raw(&server, "application/json", deep.into_bytes()).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_request")));
    let (code, _) = post_raw(&server, "application/json", b"[1, 2]".to_vec()).await;
    assert_eq!(code, 400, "the body must be an object");
    let (code, body) =
        post_raw(&server, "application/json", br#"{"environment": {"A": 1}}"#.to_vec()).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().expect("message").contains("environment.A"));
    nothing_started(&server, &client).await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let server = TestServer::start(|_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(server.address).await.expect("connect");
    let head = "POST /start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.expect("send head");
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the rest of the body")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..read]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
}

#[tokio::test]
async fn bad_and_dangerous_environment_names_are_refused_naming_the_key() {
    let server = TestServer::start(|config| {
        config.agent.environment.insert("ANTHROPIC_API_KEY".into(), "operator-value".into());
    })
    .await;
    let client = reqwest::Client::new();
    let long = "A".repeat(200);
    let cases: Vec<(&str, &str)> = vec![
        ("", "invalid_env_name"),
        ("1X", "invalid_env_name"),
        ("A=B", "invalid_env_name"),
        ("A\u{0}B", "invalid_env_name"),
        ("ÄPFEL", "invalid_env_name"),
        (long.as_str(), "invalid_env_name"),
        ("LD_PRELOAD", "invalid_env_name"),
        ("BASH_ENV", "invalid_env_name"),
        ("PATH", "invalid_env_name"),
        ("BASH_FUNC_x%%", "invalid_env_name"),
        ("AGENTAPI_PORT", "invalid_env_name"),
        ("ANTHROPIC_API_KEY", "reserved_env_name"),
        ("LANG", "reserved_env_name"),
    ];
    for (name, code) in cases {
        let (status, body) =
            start(&client, &server.base(), json!({"environment": {name: "x"}})).await;
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{name:?}: {body}");
        if name.chars().all(|c| c.is_ascii_graphic()) {
            let shown: String = name.chars().take(20).collect();
            assert!(
                body["message"].as_str().expect("message").contains(&shown),
                "{name:?}: {body}"
            );
        }
    }
    nothing_started(&server, &client).await;
    // The operator's value is what agents get.
    let (_, port) = start_ok(&client, &server.base(), json!({})).await;
    let seen = crate::support::sessions::agent_debug_env(&client, port).await;
    assert_eq!(seen["env"]["ANTHROPIC_API_KEY"], "operator-value");
}

#[tokio::test]
async fn tags_are_stored_byte_exact_and_repository_injection_is_refused() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (status, body) = start(
        &client,
        &server.base(),
        json!({"tags": {"repository": "a/$(touch /tmp/pwned-by-repository)"}}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_repository")));
    for bad in [json!({"tags": {"bad key": "v"}}), json!({"tags": {"k": "line\nbreak"}})] {
        let (status, body) = start(&client, &server.base(), bad).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_tag")));
    }
    nothing_started(&server, &client).await;
    assert!(!std::path::Path::new("/tmp/pwned-by-repository").exists());

    let tags =
        json!({"a": "`id`", "b": "$(touch /tmp/pwned-by-tag)", "c": "'\"\\", "d": "tab\there"});
    let (id, _) = start_ok(&client, &server.base(), json!({"tags": tags})).await;
    let (_, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(detail["tags"], tags);
    let (_, search) = get_json(&client, &server.url("/search?tag.a=%60id%60")).await;
    assert_eq!(search["total"], 1, "searchable byte-exact");
    assert!(!std::path::Path::new("/tmp/pwned-by-tag").exists());
}
