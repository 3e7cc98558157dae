//! Who may do what: an unmapped user is refused without a session; the Events API refuses
//! bad and stale signatures and acts once on a retry; the agent's own token reaches its
//! thread and nothing else; no Slack token reaches a log, `config check` or the store.

use std::collections::BTreeMap;

use agentapi_proxy::config::UserEntry;
use reqwest::Client;
use serde_json::{Value, json};

use super::{PATIENCE, sessions_of_thread, slack_config, wait_for_post};
use crate::support::fake_slack::{
    ALICE, APP_TOKEN, BOB, BOT_TOKEN, CHANNEL, FakeSlack, SIGNING_SECRET, signature,
    signed_headers, unix_now,
};
use crate::support::key;
use crate::support::server::{BinaryServer, TestServer};
use crate::support::sessions::{agent_debug_env, get_json, start_ok};
use crate::support::wait_until;

#[tokio::test]
async fn an_unmapped_user_is_refused_privately_and_gets_no_session() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| slack_config(config, &fake)).await;
    let mention = fake.inject_mention(BOB, CHANNEL, "let me in", None);
    wait_until("the private refusal", PATIENCE, || {
        let refused =
            fake.ephemerals().iter().any(|e| e.user == BOB && e.text.contains("don't know"));
        async move { refused.then_some(()) }
    })
    .await;
    assert!(sessions_of_thread(&server.base(), &mention.ts).await.is_empty());
    assert!(fake.bot_posts(CHANNEL, &mention.ts).is_empty());
    assert!(fake.reactions(CHANNEL, &mention.ts).is_empty());
}

async fn wait_for_bridge(client: &Client, base: &str) {
    wait_until("the bridge to run", PATIENCE, || async move {
        let (_, status) = get_json(client, &format!("{base}/chat/status")).await;
        (status["platforms"].as_array().is_some_and(|p| !p.is_empty())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_events_api_refuses_bad_and_stale_signatures_and_acts_once_on_a_retry() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.chat.slack.mode = "events".into();
        config.chat.slack.app_token = String::new();
        config.chat.slack.signing_secret = SIGNING_SECRET.into();
    })
    .await;
    let client = Client::new();
    wait_for_bridge(&client, &server.base()).await;
    let url = server.url("/chat/slack/events");
    let mention = fake.mention(ALICE, CHANNEL, "signed", None);
    let body = serde_json::to_vec(&mention.payload).expect("json");
    let post = |headers: http::HeaderMap, body: Vec<u8>| {
        let client = client.clone();
        let url = url.clone();
        async move { client.post(url).headers(headers).body(body).send().await.expect("post") }
    };
    let mut forged = signed_headers(&body, unix_now(), None);
    let wrong = signature("not-the-secret", unix_now(), &body);
    forged.insert("x-slack-signature", wrong.parse().expect("header"));
    assert_eq!(post(forged, body.clone()).await.status(), 401);
    let stale = signed_headers(&body, unix_now() - 360, None);
    assert_eq!(post(stale, body.clone()).await.status(), 401);
    let huge = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(post(signed_headers(&huge, unix_now(), None), huge).await.status(), 413);
    assert!(sessions_of_thread(&server.base(), &mention.ts).await.is_empty());

    assert_eq!(post(signed_headers(&body, unix_now(), None), body.clone()).await.status(), 200);
    let retry = post(signed_headers(&body, unix_now(), Some(1)), body.clone()).await;
    assert_eq!(retry.status(), 200);
    wait_for_post(&fake, CHANNEL, &mention.ts, "the echo", |p| p.text == "echo: signed").await;
    let next = fake.thread_message(ALICE, CHANNEL, &mention.ts, "next");
    let next_body = serde_json::to_vec(&next.payload).expect("json");
    assert_eq!(post(signed_headers(&next_body, unix_now(), None), next_body).await.status(), 200);
    wait_for_post(&fake, CHANNEL, &mention.ts, "the next echo", |p| p.text == "echo: alice: next")
        .await;
    assert_eq!(super::count_posts(&fake, CHANNEL, &mention.ts, "echo: signed"), 1);
    assert_eq!(sessions_of_thread(&server.base(), &mention.ts).await.len(), 1);
}

const ADMIN_KEY: &str = "ap_admin_key_for_slack_tests";

#[tokio::test]
async fn the_agent_token_reaches_its_own_thread_and_nothing_else() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.api_keys = vec![key(ADMIN_KEY, "root", "admin", &["*"])];
        let permissions = ["session:create", "session:list", "session:access"];
        config.auth.users = BTreeMap::from([(
            "alice".to_string(),
            UserEntry {
                role: "user".into(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
                email: "alice@corp.example".into(),
                name: "Alice Example".into(),
            },
        )]);
    })
    .await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("X-API-Key", ADMIN_KEY.parse().expect("header"));
    let admin = Client::builder().default_headers(headers).build().expect("client");
    let mention = fake.inject_mention(ALICE, CHANNEL, "hello", None);
    let root = mention.ts.clone();
    wait_for_post(&fake, CHANNEL, &root, "the echo", |p| p.text == "echo: hello").await;
    let (_, found) =
        get_json(&admin, &server.url(&format!("/search?tag.slack_thread={root}"))).await;
    let session = &found["sessions"][0];
    assert_eq!(session["user_id"], "alice");
    let id = session["session_id"].as_str().expect("id").to_string();
    let (_, detail) = get_json(&admin, &server.url(&format!("/sessions/{id}"))).await;
    let env = agent_debug_env(&admin, detail["port"].as_u64().expect("port") as u16).await;
    assert_eq!(env["env"]["GIT_AUTHOR_NAME"], "Alice Example");
    assert_eq!(env["env"]["GIT_AUTHOR_EMAIL"], "alice@corp.example");
    let token = env["env"]["APX_SESSION_TOKEN"].as_str().expect("token").to_string();
    let (other, _) = start_ok(&admin, &server.base(), json!({})).await;

    let agent = Client::new();
    let note = agent
        .post(server.url(&format!("/sessions/{id}/chat/messages")))
        .bearer_auth(&token)
        .json(&json!({"text": "a note from the agent"}))
        .send()
        .await
        .expect("post");
    assert_eq!(note.status(), 200);
    wait_for_post(&fake, CHANNEL, &root, "the note", |p| p.text == "a note from the agent").await;
    let history = agent
        .get(server.url(&format!("/sessions/{id}/chat/history?limit=10")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("history");
    assert_eq!(history.status(), 200);
    let history: Value = history.json().await.expect("json");
    assert!(history["messages"].as_array().is_some_and(|m| !m.is_empty()), "{history}");
    let other_chat = agent
        .post(server.url(&format!("/sessions/{other}/chat/messages")))
        .bearer_auth(&token)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .expect("request");
    assert_eq!(other_chat.status(), 404, "another session's thread");
    let start = agent.post(server.url("/start")).bearer_auth(&token).json(&json!({})).send();
    assert_eq!(start.await.expect("start").status(), 403);
    let logs = agent.get(server.url(&format!("/sessions/{id}/logs"))).bearer_auth(&token).send();
    assert_eq!(logs.await.expect("logs").status(), 403);
    let search = agent.get(server.url("/search")).bearer_auth(&token).send().await.expect("search");
    assert_eq!(search.status(), 403);
    let status = agent.get(server.url("/chat/status")).bearer_auth(&token).send().await;
    assert_eq!(status.expect("status").status(), 403);
}

#[tokio::test]
async fn slack_tokens_reach_no_log_no_config_check_output_and_no_store() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = BinaryServer::start(|config| slack_config(config, &fake)).await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "hello", None);
    wait_for_post(&fake, CHANNEL, &mention.ts, "the echo", |p| p.text == "echo: hello").await;
    let config_path = server.config_path.clone();
    let dir = server.dir_path().to_path_buf();
    let logs = server.logs.clone();
    let (status, _dir, _) = server.stop().await;
    let logged = logs.lock().expect("logs").join("\n");
    assert!(logged.contains("the Slack bridge runs"), "{logged}");
    assert_eq!(status.code(), Some(0));
    let check = tokio::process::Command::new(crate::support::binary())
        .args(["config", "check", "-c"])
        .arg(&config_path)
        .output()
        .await
        .expect("config check");
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.join("data")).expect("data dir").flatten() {
        if entry.file_name().to_string_lossy().starts_with("agentapi-proxy.db") {
            stored.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    let stored = String::from_utf8_lossy(&stored).to_string();
    for secret in [BOT_TOKEN, APP_TOKEN] {
        assert!(!printed.contains(secret), "config check shows {secret}");
        assert!(!stored.contains(secret), "the store holds {secret}");
        assert!(!logged.contains(secret), "a log line holds {secret}");
    }
    assert!(printed.contains("<redacted>"));
}

#[tokio::test]
async fn anyone_mapped_may_follow_up_but_only_the_owner_or_an_admin_may_stop() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.chat.slack.users.insert(BOB.into(), "bob".into());
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.api_keys = vec![key(ADMIN_KEY, "root", "admin", &["*"])];
        let user = |permissions: &[&str]| UserEntry {
            role: "user".into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            ..UserEntry::default()
        };
        config.auth.users = BTreeMap::from([
            ("alice".to_string(), user(&["session:create", "session:access"])),
            ("bob".to_string(), user(&["session:list"])),
        ]);
    })
    .await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "mine", None);
    let root = mention.ts.clone();
    wait_for_post(&fake, CHANNEL, &root, "the echo", |p| p.text == "echo: mine").await;
    fake.inject_mention(BOB, CHANNEL, "stop", Some(&root));
    wait_until("bob's private refusal", PATIENCE, || {
        let refused = fake.ephemerals().iter().any(|e| e.user == BOB && e.text.contains("owner"));
        async move { refused.then_some(()) }
    })
    .await;
    let follow_up = fake.thread_message(BOB, CHANNEL, &root, "and mine");
    fake.send(&follow_up);
    wait_for_post(&fake, CHANNEL, &root, "bob's echo", |p| p.text == "echo: bob: and mine").await;
    assert!(!fake.bot_posts(CHANNEL, &root).iter().any(|p| p.text.starts_with("Stopped")));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("X-API-Key", ADMIN_KEY.parse().expect("header"));
    let admin = Client::builder().default_headers(headers).build().expect("client");
    let (_, found) =
        get_json(&admin, &server.url(&format!("/search?tag.slack_thread={root}"))).await;
    assert_eq!(found["sessions"][0]["status"], "active", "{found}");
}
