//! The echo agent's HTTP API as a proxy sees it: shapes, `$schema`, status codes, huma-style
//! errors, the host check, CORS, redirects, uploads and the debug routes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{DEADLINE, EchoAgent};
use crate::support::wait_until;

fn assert_problem(response_status: u16, content_type: &str, body: &Value, status: u16) {
    assert_eq!(response_status, status, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string(), "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert!(
        body["$schema"].as_str().is_some_and(|s| s.ends_with("/schemas/ErrorModel.json")),
        "{body}"
    );
}

async fn problem_of(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let body = response.json().await.expect("problem body is JSON");
    (status, content_type, body)
}

#[tokio::test]
async fn boots_running_then_stable_and_refuses_user_messages_meanwhile() {
    let agent = EchoAgent::start(&["-t", "claude"], &[("ECHO_AGENT_BOOT_MS", "4000")]).await;
    let status = agent.get_json("/status").await;
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["agent_type"], "claude");
    assert_eq!(status["transport"], "pty");
    assert_eq!(
        status["$schema"],
        format!("http://127.0.0.1:{}/schemas/StatusResponseBody.json", agent.port)
    );

    let (code, content_type, body) =
        problem_of(agent.post_message("too early", "user").await).await;
    assert_problem(code, &content_type, &body, 500);

    wait_until("boot to finish", Duration::from_secs(20), || async {
        (agent.status().await == "stable").then_some(())
    })
    .await;
    agent.say("now").await;
    agent.wait_message("agent", "echo: now").await;
}

#[tokio::test]
async fn messages_start_with_the_agent_and_echo_user_messages() {
    let agent = EchoAgent::start(&[], &[]).await;
    let messages = agent.get_json("/messages").await;
    assert!(
        messages["$schema"]
            .as_str()
            .is_some_and(|s| s.ends_with("/schemas/MessagesResponseBody.json")),
        "{messages}"
    );
    let first = &messages["messages"][0];
    assert_eq!(first["id"], 0);
    assert_eq!(first["role"], "agent");
    assert!(!first["content"].as_str().unwrap_or_default().is_empty());
    let time = first["time"].as_str().expect("time is a string");
    assert!(time.contains('T') && time.ends_with('Z'), "RFC 3339 UTC: {time}");
    assert_eq!(agent.get_json("/status").await["agent_type"], "echo");

    let response = agent.post_message("hi", "user").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["ok"], true);
    assert!(body["$schema"].is_string());

    let user = agent.wait_message("user", "hi").await;
    let reply = agent.wait_message("agent", "echo: hi").await;
    assert_eq!(user["id"], 1);
    assert_eq!(reply["id"], 2);
    agent.wait_stable().await;
}

/// agentapi refuses a `user` message that is empty or not trimmed (500, its own words), and
/// stays `stable`; raw keystrokes may be anything.
#[tokio::test]
async fn empty_or_untrimmed_user_messages_are_refused_as_agentapi_does() {
    let agent = EchoAgent::start(&[], &[]).await;
    agent.wait_stable().await;
    for (content, detail) in [
        ("", "failed to send message: message must not be empty"),
        (
            "   ",
            "failed to send message: message must be trimmed of leading and trailing whitespace",
        ),
        (
            " hi",
            "failed to send message: message must be trimmed of leading and trailing whitespace",
        ),
        (
            "hi\n",
            "failed to send message: message must be trimmed of leading and trailing whitespace",
        ),
    ] {
        let (code, content_type, body) =
            problem_of(agent.post_message(content, "user").await).await;
        assert_problem(code, &content_type, &body, 500);
        assert_eq!(body["detail"], detail, "{content:?}");
        assert_eq!(agent.status().await, "stable", "{content:?} left the agent working");
    }
    assert_eq!(agent.post_message(" ", "raw").await.status(), 200);
    let messages = agent.get_json("/messages").await;
    assert_eq!(messages["messages"].as_array().map(Vec::len), Some(1), "{messages}");
}

#[tokio::test]
async fn busy_agent_refuses_user_messages_but_takes_raw_ones() {
    let agent = EchoAgent::start(&[], &[("ECHO_AGENT_REPLY_MS", "60000")]).await;
    agent.say("first").await;
    assert_eq!(agent.status().await, "running", "a user message makes the agent work");
    let (code, content_type, body) = problem_of(agent.post_message("second", "user").await).await;
    assert_problem(code, &content_type, &body, 500);
    assert_eq!(body["title"], "Internal Server Error");

    let raw = agent.post_message("\x1b[A", "raw").await;
    assert_eq!(raw.status(), 200);
    let messages = agent.get_json("/messages").await;
    let contents: Vec<&str> = messages["messages"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(contents.contains(&"first"));
    assert!(!contents.iter().any(|c| c.contains("second") || c.contains('\x1b')), "{contents:?}");
}

#[tokio::test]
async fn bad_message_bodies_get_huma_errors() {
    let agent = EchoAgent::start(&[], &[]).await;
    let post = |content_type: &'static str, body: Vec<u8>| {
        agent
            .client
            .post(agent.url("/message"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let (code, ct, body) =
        problem_of(post("text/plain", b"{}".to_vec()).await.expect("answers")).await;
    assert_problem(code, &ct, &body, 415);

    let (code, ct, body) =
        problem_of(post("application/json", b"{not json".to_vec()).await.expect("answers")).await;
    assert_problem(code, &ct, &body, 400);

    let (code, ct, body) = problem_of(
        post("application/json", br#"{"type": "user"}"#.to_vec()).await.expect("answers"),
    )
    .await;
    assert_problem(code, &ct, &body, 422);
    let messages: Vec<String> = body["errors"]
        .as_array()
        .expect("errors listed")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(messages.iter().any(|m| m.contains("content")), "{body}");

    let (code, ct, body) = problem_of(
        post("application/json", br#"{"content": "x", "type": "robot"}"#.to_vec())
            .await
            .expect("answers"),
    )
    .await;
    assert_problem(code, &ct, &body, 422);
    assert_eq!(body["errors"][0]["location"], "body.type", "{body}");
    assert_eq!(body["errors"][0]["value"], "robot", "{body}");

    let huge = serde_json::to_vec(&json!({"content": "x".repeat(1024 * 1024), "type": "user"}))
        .expect("encodes");
    let (code, ct, body) = problem_of(post("application/json", huge).await.expect("answers")).await;
    assert_problem(code, &ct, &body, 413);

    // None of these reached the conversation.
    assert_eq!(agent.get_json("/messages").await["messages"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn host_header_is_checked_like_agentapi() {
    let agent = EchoAgent::start(&[], &[]).await;
    let with_host =
        |host: String| agent.client.get(agent.url("/status")).header("host", host).send();
    let bad = with_host("evil.example".into()).await.expect("answers");
    assert_eq!(bad.status(), 400);
    assert!(bad.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/plain"));
    let text = bad.text().await.expect("text");
    assert!(text.starts_with("Invalid host header. Allowed hosts: localhost, 127.0.0.1"), "{text}");

    let forwarded = agent
        .client
        .get(agent.url("/status"))
        .header("host", "evil.example")
        .header("x-forwarded-host", "localhost")
        .send()
        .await
        .expect("answers");
    assert_eq!(forwarded.status(), 400, "X-Forwarded-Host is ignored");

    for host in [
        format!("127.0.0.1:{}", agent.port),
        "localhost".to_string(),
        format!("LOCALHOST:{}", agent.port),
        "[::1]:9".to_string(),
    ] {
        let ok = with_host(host.clone()).await.expect("answers");
        assert_eq!(ok.status(), 200, "Host {host} is allowed");
    }

    // The environment fallback, space separated like agentapi's.
    let custom =
        EchoAgent::start(&[], &[("AGENTAPI_ALLOWED_HOSTS", "example.com other.example")]).await;
    let get =
        |host: &'static str| custom.client.get(custom.url("/status")).header("host", host).send();
    assert_eq!(get("example.com").await.expect("answers").status(), 200);
    assert_eq!(get("other.example:1").await.expect("answers").status(), 200);
    assert_eq!(get("localhost").await.expect("answers").status(), 400);
}

#[tokio::test]
async fn cors_answers_allowed_origins_only() {
    let agent = EchoAgent::start(&[], &[]).await;
    let with_origin = |origin: &'static str| {
        agent.client.get(agent.url("/status")).header("origin", origin).send()
    };
    let allowed = with_origin("http://localhost:3000").await.expect("answers");
    assert_eq!(allowed.headers()["access-control-allow-origin"], "http://localhost:3000");
    assert!(allowed.headers().get_all("vary").iter().any(|v| v == "Origin"));
    let other = with_origin("http://evil.example").await.expect("answers");
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn root_redirects_to_the_chat_and_other_pages_exist() {
    let agent = EchoAgent::start(&[], &[]).await;
    let root = agent.client.get(agent.url("/")).send().await.expect("answers");
    assert_eq!(root.status(), 307);
    assert_eq!(root.headers()["location"], "/chat/embed");
    let chat = agent.client.get(agent.url("/chat/embed")).send().await.expect("answers");
    assert_eq!(chat.status(), 200);
    assert!(chat.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
    let openapi = agent.get_json("/openapi.json").await;
    assert!(openapi["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
    assert!(openapi["paths"]["/message"]["post"].is_object());
    let docs = agent.client.get(agent.url("/docs")).send().await.expect("answers");
    assert_eq!(docs.status(), 200);
    let (code, ct, body) =
        problem_of(agent.client.get(agent.url("/nope")).send().await.expect("answers")).await;
    assert_problem(code, &ct, &body, 404);

    let based = EchoAgent::start(&["--chat-base-path", "/abc/chat"], &[]).await;
    let root = based.client.get(based.url("/")).send().await.expect("answers");
    assert_eq!(root.status(), 307);
    assert_eq!(root.headers()["location"], "/abc/chat/embed");
}

/// Sends raw bytes and returns the response body (the request asks to close).
async fn raw_request(port: u16, request: String) -> Value {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connects");
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut response = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut response))
        .await
        .expect("answers in time")
        .expect("reads");
    let text = String::from_utf8(response).expect("UTF-8 response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (_, body) = text.split_once("\r\n\r\n").expect("head and body");
    serde_json::from_str(body).expect("JSON body")
}

#[tokio::test]
async fn debug_request_shows_the_raw_target_and_every_header() {
    let agent = EchoAgent::start(&[], &[]).await;
    let port = agent.port;
    let body = raw_request(
        port,
        format!(
            "GET /debug/request?x=%2F..%2Fa HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Dup: one\r\n\
             X-Other: z\r\nX-Dup: two\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(body["method"], "GET");
    assert_eq!(body["target"], "/debug/request?x=%2F..%2Fa");
    let headers = body["headers"].as_array().expect("header list");
    let dups: Vec<&Value> = headers.iter().filter(|h| h[0] == "x-dup").map(|h| &h[1]).collect();
    assert_eq!(dups, vec!["one", "two"], "{body}");
    assert!(headers.iter().any(|h| h[0] == "host" && h[1] == format!("127.0.0.1:{port}")));

    let absolute = raw_request(
        port,
        format!(
            "POST http://127.0.0.1:{port}/debug/request?q=%41 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(absolute["method"], "POST");
    assert_eq!(absolute["target"], format!("http://127.0.0.1:{port}/debug/request?q=%41"));
}

#[tokio::test]
async fn debug_env_shows_what_the_agent_was_started_with() {
    let agent =
        EchoAgent::start(&["--", "some-agent", "--flag"], &[("ECHO_TEST_MARKER", "marker value")])
            .await;
    let env = agent.get_json("/debug/env").await;
    assert_eq!(env["env"]["ECHO_TEST_MARKER"], "marker value");
    assert_eq!(env["pid"], agent.pid);
    let argv: Vec<&str> =
        env["argv"].as_array().expect("argv").iter().filter_map(Value::as_str).collect();
    assert!(argv.ends_with(&["--", "some-agent", "--flag"]), "{argv:?}");
    assert!(env["cwd"].as_str().is_some_and(|c| c.starts_with('/')));
}

fn multipart(boundary: &str, file_name: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test]
async fn upload_saves_the_file_in_a_directory_of_its_own() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let tmp_path = tmp.path().to_str().expect("UTF-8 temp path").to_string();
    let agent = EchoAgent::start(&[], &[("TMPDIR", tmp_path.as_str())]).await;
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let boundary = "echoBoundary7";
    let upload = |name: &'static str, data: Vec<u8>| {
        agent
            .client
            .post(agent.url("/upload"))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(multipart(boundary, name, &data))
            .send()
    };
    let response = upload("../sneaky name.bin", data.clone()).await.expect("answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["ok"], true);
    let path = std::path::PathBuf::from(body["filePath"].as_str().expect("filePath"));
    assert!(path.is_absolute());
    assert!(path.starts_with(&tmp_path), "{path:?} is under TMPDIR");
    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("sneaky name.bin"));
    assert_eq!(std::fs::read(&path).expect("saved file"), data);

    let second = upload("other.bin", b"x".to_vec()).await.expect("answers");
    let second: Value = second.json().await.expect("JSON");
    let second = std::path::PathBuf::from(second["filePath"].as_str().expect("filePath"));
    assert_ne!(second.parent(), path.parent(), "each upload gets its own directory");

    let too_big = upload("big.bin", vec![b'a'; 10 * 1024 * 1024 + 1]).await.expect("answers");
    let (code, ct, body) = problem_of(too_big).await;
    assert_problem(code, &ct, &body, 413);
}
