//! The proxy route of the real server: `/{id}/...` reaches the caller's own session's agent
//! with the path as sent and no caller credentials; sessions that cannot take traffic get
//! JSON errors; streams end when the agent dies, the key is revoked, or the server stops.

use std::time::{Duration, Instant};

use agentapi_proxy::config::{ApiKeyEntry, Config};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::server::{BinaryServer, TestServer};
use crate::support::sessions::{get_json, start_ok};
use crate::support::wait_until;

const ALICE: &str = "ap_alice_proxy_key_0123456789";
const BOB: &str = "ap_bob_proxy_key_0123456789";

fn with_keys(config: &mut Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    let entry = |key: &str, user: &str| ApiKeyEntry {
        key: Some(key.into()),
        user_id: user.into(),
        role: "user".into(),
        permissions: vec!["*".into()],
        ..ApiKeyEntry::default()
    };
    config.auth.static_keys.api_keys = vec![entry(ALICE, "alice"), entry(BOB, "bob")];
}

fn keyed(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", key.parse().expect("header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// Reads SSE frames from a response until `stop` says so or the stream ends.
async fn read_frames(
    response: reqwest::Response,
    mut stop: impl FnMut(&str) -> bool,
) -> (String, bool) {
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Err(_) => return (text, true),
        }
        if stop(&text) {
            return (text, false);
        }
    }
    (text, true)
}

#[tokio::test]
async fn the_first_call_after_start_reaches_the_agent_with_the_path_as_sent_and_no_credentials() {
    let server = TestServer::start(with_keys).await;
    let alice = keyed(ALICE);
    let (id, port) = start_ok(&alice, &server.base(), json!({})).await;
    let (code, status) = get_json(&alice, &server.url(&format!("/{id}/status"))).await;
    assert_eq!(code, 200, "{status}");
    assert!(status["status"].is_string() && status["$schema"].is_string(), "{status}");

    let response = alice
        .get(server.url(&format!("/{id}/debug/request?x=%2F..%2Fa&y=%2e")))
        .header("Authorization", "Bearer something")
        .header("Cookie", "session=secret")
        .header("X-Forwarded-For", "6.6.6.6")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.expect("json");
    assert_eq!(seen["target"], "/debug/request?x=%2F..%2Fa&y=%2e");
    let headers: Vec<(String, String)> = seen["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_string(),
                pair[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect::<Vec<_>>()
    };
    assert_eq!(header("host"), vec![format!("127.0.0.1:{port}")]);
    assert!(
        header("x-api-key").is_empty()
            && header("authorization").is_empty()
            && header("cookie").is_empty(),
        "{headers:?}"
    );
    assert_eq!(
        header("x-forwarded-for"),
        vec!["127.0.0.1".to_string()],
        "client-sent value dropped, peer appended"
    );

    let traversal =
        alice.get(server.url(&format!("/{id}/..%2F..%2Fetc/passwd"))).send().await.expect("send");
    assert_eq!(traversal.status(), 404);
    assert_eq!(
        traversal.headers()["content-type"],
        "application/problem+json",
        "the agent itself answered: the path stayed inside the session"
    );
}

#[tokio::test]
async fn host_and_absolute_form_targets_cannot_move_the_request() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (id, port) = start_ok(&client, &server.base(), json!({})).await;
    for target in
        [format!("/{id}/debug/request"), format!("http://evil.example/{id}/debug/request")]
    {
        let mut stream = tokio::net::TcpStream::connect(server.address).await.expect("connect");
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
            .await
            .expect("answered")
            .expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{target}: {answer}");
        assert!(answer.contains(&format!("\"host\",\"127.0.0.1:{port}\"")), "{target}: {answer}");
        assert!(answer.contains("\"target\":\"/debug/request\""), "{target}: {answer}");
    }
}

#[tokio::test]
async fn a_strangers_session_is_404_and_its_agent_is_never_contacted() {
    let server = TestServer::start(with_keys).await;
    let alice = keyed(ALICE);
    let (id, port) =
        start_ok(&alice, &server.base(), json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}})).await;
    let bob = keyed(BOB);
    let response = bob
        .post(server.url(&format!("/{id}/message")))
        .json(&json!({"content": "hello from bob", "type": "user"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"message": "no such session", "code": "not_found"})
    );
    let (_, messages) =
        get_json(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}/messages")).await;
    assert!(!messages.to_string().contains("hello from bob"));
    let (code, _) = get_json(&reqwest::Client::new(), &server.url(&format!("/{id}/status"))).await;
    assert_eq!(code, 401, "no credential, no proxy");
}

#[tokio::test]
async fn a_starting_session_gets_503_with_retry_after() {
    let scripts = tempfile::tempdir().expect("dir");
    let script = scripts.path().join("slow.sh");
    std::fs::write(&script, "#!/usr/bin/env bash\nsleep 3\nexec \"$@\"\n").expect("script");
    let path = script.display().to_string();
    let server = TestServer::start(|config| config.agent.script = path).await;
    let client = reqwest::Client::new();
    let answer: Value = client
        .post(server.url("/start?wait=false"))
        .json(&json!({}))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let id = answer["session_id"].as_str().expect("id");
    let response = client.get(server.url(&format!("/{id}/status"))).send().await.expect("send");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.json::<Value>().await.expect("json")["code"], "agent_starting");
}

#[tokio::test]
async fn an_agent_dying_mid_stream_ends_the_stream_and_the_next_request_gets_502() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (id, _) =
        start_ok(&client, &server.base(), json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}}))
            .await;
    let events = client.get(server.url(&format!("/{id}/events"))).send().await.expect("events");
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"].to_str().expect("ascii").starts_with("text/event-stream")
    );
    let reader = tokio::spawn(read_frames(events, |_| false));
    let sent = client
        .post(server.url(&format!("/{id}/message")))
        .json(&json!({"content": "/fake exit 0", "type": "user"}))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), 200);
    let (text, ended) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("stream ends")
        .expect("join");
    assert!(ended && text.contains("event: message_update"), "{text}");
    let base = server.base();
    let body = wait_until("the proxy to answer 502", Duration::from_secs(10), || {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        async move {
            let (code, body) = get_json(&client, &format!("{base}/{id}/status")).await;
            (code == 502).then_some(body)
        }
    })
    .await;
    assert_eq!(body["code"], "agent_unavailable");
    assert!(body["details"]["status"].is_string(), "{body}");
    wait_until("the session to show exited", Duration::from_secs(10), || {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        async move {
            let (_, detail) = get_json(&client, &format!("{base}/sessions/{id}")).await;
            (detail["status"] == "exited").then_some(())
        }
    })
    .await;
    let (code, body) = get_json(&client, &server.url(&format!("/{id}/status"))).await;
    assert_eq!((code, body["details"]["status"].as_str()), (502, Some("exited")));
}

#[tokio::test]
async fn a_removed_keys_open_event_stream_is_closed() {
    let files = tempfile::tempdir().expect("dir");
    let keys_file = files.path().join("keys.json");
    let entry =
        |key: &str| json!({"key": key, "user_id": "carol", "role": "user", "permissions": ["*"]});
    std::fs::write(
        &keys_file,
        json!({"api_keys": [entry("ap_carol_one"), entry("ap_carol_two")]}).to_string(),
    )
    .expect("write");
    let path = keys_file.display().to_string();
    let server = TestServer::start(|config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.keys_file = path;
    })
    .await;
    let client = keyed("ap_carol_one");
    let (id, _) = start_ok(&client, &server.base(), json!({})).await;
    let events = client.get(server.url(&format!("/{id}/events"))).send().await.expect("events");
    assert_eq!(events.status(), 200);
    let reader = tokio::spawn(read_frames(events, |_| false));
    std::fs::write(&keys_file, json!({"api_keys": [entry("ap_carol_two")]}).to_string())
        .expect("remove key");
    let (_, ended) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("stream closed")
        .expect("join");
    assert!(ended);
    let (code, _) = get_json(&keyed("ap_carol_two"), &server.url(&format!("/{id}/status"))).await;
    assert_eq!(code, 200, "the same user's other key still works");
}

#[tokio::test]
async fn cors_preflights_are_answered_before_authentication() {
    let server = TestServer::start(|config| {
        with_keys(config);
        config.cors.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let client = reqwest::Client::new();
    let id = uuid::Uuid::new_v4();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.url(&format!("/{id}/message")))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.expect("send");
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let denied = preflight("https://evil.example").await.expect("send");
    assert_eq!(denied.status(), 403);
    assert!(!denied.headers().contains_key("access-control-allow-origin"));
    let response = keyed(ALICE)
        .get(server.url("/search"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example.com");
}

#[tokio::test]
async fn sigterm_with_open_event_streams_exits_0_within_the_drain_timeout() {
    let server = BinaryServer::start(|config| {
        config.server.drain_timeout_seconds = 3;
        config.session.stop_grace_seconds = 1;
    })
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (id, _) = start_ok(&client, &base, json!({})).await;
        let events = client.get(format!("{base}/{id}/events")).send().await.expect("events");
        assert_eq!(events.status(), 200);
        readers.push(tokio::spawn(read_frames(events, |_| false)));
    }
    let started = Instant::now();
    let (status, _, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
    // The spec's deadline: drain timeout + stop grace, with a generous margin.
    assert!(started.elapsed() < Duration::from_secs(3 + 1 + 10), "took {:?}", started.elapsed());
    for reader in readers {
        let (_, ended) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("ended")
            .expect("join");
        assert!(ended);
    }
}

#[tokio::test]
async fn a_custom_github_token_header_is_not_passed_to_agents() {
    let server =
        TestServer::start(|config| config.auth.github.token_header = "X-GitHub-Token".into()).await;
    let client = reqwest::Client::new();
    let (id, _) = start_ok(&client, &server.base(), json!({})).await;
    let seen: Value = client
        .get(server.url(&format!("/{id}/debug/request")))
        .header("X-GitHub-Token", "ghp_must_not_reach_the_agent")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(!seen.to_string().contains("ghp_must_not_reach_the_agent"), "{seen}");
}

#[tokio::test]
async fn a_path_that_is_not_a_session_id_is_404_even_without_credentials() {
    let server = TestServer::start(with_keys).await;
    let client = reqwest::Client::new();
    for path in
        ["/not-a-session/status", "/..%2Fadmin/x", "/3F2B8C1E-9D4A-4B6E-8F21-0A1B2C3D4E5F/status"]
    {
        let (code, body) = get_json(&client, &server.url(path)).await;
        assert_eq!((code, body["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    let unknown = uuid::Uuid::new_v4();
    let (code, _) = get_json(&client, &server.url(&format!("/{unknown}/status"))).await;
    assert_eq!(code, 401, "a real session path asks for credentials first");
}
