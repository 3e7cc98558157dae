//! A thread's life: a mention starts a session owned by the mapped user and the echo (with
//! the thread's history) comes back; a follow-up while the agent works waits, marked, and
//! is delivered in order; a file reaches the agent through `/upload`; `stop` ends it.

use serde_json::Value;

use super::{PATIENCE, count_posts, session_of_thread, slack_config, wait_for_post};
use crate::support::fake_slack::{ALICE, BOB, CHANNEL, FakeSlack};
use crate::support::server::TestServer;
use crate::support::sessions::{agent_debug_env, get_json};
use crate::support::wait_until;

#[tokio::test]
async fn a_mention_starts_a_session_of_the_mapped_user_and_the_echo_comes_back() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| slack_config(config, &fake)).await;
    let earlier = fake.user_message("message", BOB, CHANNEL, "the build is red", None, vec![]);
    let root = earlier.ts.clone();
    let mention = fake.inject_mention(ALICE, CHANNEL, "please fix it", Some(&root));

    let posts =
        wait_for_post(&fake, CHANNEL, &root, "the echo", |post| post.text.starts_with("echo: "))
            .await;
    let echo = posts.iter().find(|post| post.text.starts_with("echo: ")).expect("echo");
    assert!(echo.text.contains("alice: please fix it") || echo.text.contains("please fix it"));
    assert!(echo.text.contains("bob: the build is red"), "history with authors: {}", echo.text);
    assert!(fake.reactions(CHANNEL, &mention.ts).contains(&"eyes".to_string()));
    assert!(posts.iter().any(|post| post.text.starts_with("Session started")), "{posts:?}");
    assert!(echo.metadata.is_some(), "the reply carries its turn id");

    let session = session_of_thread(&server.base(), &root).await;
    assert_eq!(session["user_id"], "alice");
    assert_eq!(session["tags"]["slack_channel"], CHANNEL);
    assert_eq!(session["tags"]["slack_user"], ALICE);
    let client = reqwest::Client::new();
    let id = session["session_id"].as_str().expect("id");
    let (_, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    let port = detail["port"].as_u64().expect("port") as u16;
    let env = agent_debug_env(&client, port).await;
    assert_eq!(env["env"]["GIT_AUTHOR_NAME"], "alice");
    assert_eq!(env["env"]["GIT_AUTHOR_EMAIL"], "alice@example.com");
}

#[tokio::test]
async fn a_follow_up_while_the_agent_works_waits_marked_and_arrives_in_order() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.agent.environment.insert("ECHO_AGENT_REPLY_MS".into(), "1500".into());
    })
    .await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "first", None);
    let root = mention.ts.clone();
    let session = session_of_thread(&server.base(), &root).await;
    let id = session["session_id"].as_str().expect("id").to_string();
    let client = reqwest::Client::new();
    // The agent has the first message and is working on it.
    wait_until("the agent to work on the first message", PATIENCE, || {
        let client = client.clone();
        let url = server.url(&format!("/{id}/status"));
        async move {
            let (_, status) = get_json(&client, &url).await;
            (status["status"] == "running").then_some(())
        }
    })
    .await;
    let second = fake.thread_message(ALICE, CHANNEL, &root, "second");
    fake.send(&second);
    let third = fake.thread_message(ALICE, CHANNEL, &root, "third");
    fake.send(&third);
    wait_until("the follow-up to be marked as waiting", PATIENCE, || {
        let marked = fake.reactions(CHANNEL, &second.ts).contains(&"hourglass".to_string());
        async move { marked.then_some(()) }
    })
    .await;
    let posts = wait_for_post(&fake, CHANNEL, &root, "the third echo", |post| {
        post.text.contains("echo: alice: third")
    })
    .await;
    let echoes: Vec<&str> =
        posts.iter().filter(|p| p.text.starts_with("echo: ")).map(|p| p.text.as_str()).collect();
    assert_eq!(echoes, ["echo: first", "echo: alice: second", "echo: alice: third"], "{posts:?}");
    wait_until("the hourglass to be removed", PATIENCE, || {
        let marked = fake.reactions(CHANNEL, &second.ts).contains(&"hourglass".to_string());
        async move { (!marked).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn an_attached_file_reaches_the_agent_through_upload_before_the_message() {
    let fake = FakeSlack::start(PATIENCE).await;
    let _server = TestServer::start(|config| slack_config(config, &fake)).await;
    let bytes = b"stack trace: line 42\n".to_vec();
    let url = fake.host_file("F0LOG", "crash.log", bytes.clone(), true);
    let file = fake.file_object("F0LOG", "crash.log", bytes.len(), &url);
    let text = format!("<@{}> look at this", crate::support::fake_slack::BOT_USER_ID);
    let injected = fake.user_message("app_mention", ALICE, CHANNEL, &text, None, vec![file]);
    fake.send(&injected);
    let posts = wait_for_post(&fake, CHANNEL, &injected.ts, "the echo", |post| {
        post.text.starts_with("echo: look at this")
    })
    .await;
    let echo = posts.iter().find(|p| p.text.starts_with("echo: ")).expect("echo");
    let path = echo.text.rsplit("uploaded to: ").next().expect("a path").trim_end_matches(')');
    assert!(path.ends_with("crash.log"), "{}", echo.text);
    assert_eq!(std::fs::read(path).expect("the uploaded file"), bytes);
}

#[tokio::test]
async fn stop_ends_the_session_and_says_so_and_a_later_mention_starts_another() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| slack_config(config, &fake)).await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "hello", None);
    let root = mention.ts.clone();
    wait_for_post(&fake, CHANNEL, &root, "the echo", |p| p.text == "echo: hello").await;
    let first: Value = session_of_thread(&server.base(), &root).await;
    fake.inject_mention(ALICE, CHANNEL, "stop", Some(&root));
    wait_for_post(&fake, CHANNEL, &root, "the confirmation", |p| p.text.starts_with("Stopped"))
        .await;
    wait_until("the session to be gone", PATIENCE, || {
        let base = server.base();
        let root = root.clone();
        async move { super::sessions_of_thread(&base, &root).await.is_empty().then_some(()) }
    })
    .await;
    assert_eq!(count_posts(&fake, CHANNEL, &root, "The session ended"), 0, "told once");
    fake.inject_mention(ALICE, CHANNEL, "again", Some(&root));
    wait_for_post(&fake, CHANNEL, &root, "the new echo", |p| {
        p.text.starts_with("echo: again\n\nEarlier in this thread")
            && p.text.contains("echo: hello")
    })
    .await;
    let second = session_of_thread(&server.base(), &root).await;
    assert_ne!(first["session_id"], second["session_id"]);
    assert_eq!(count_posts(&fake, CHANNEL, &root, "starting a new one"), 1);
}

#[tokio::test]
async fn a_session_ended_elsewhere_is_told_in_its_thread_and_counted() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| slack_config(config, &fake)).await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "hello", None);
    let root = mention.ts.clone();
    wait_for_post(&fake, CHANNEL, &root, "the echo", |p| p.text == "echo: hello").await;
    let client = reqwest::Client::new();
    let (_, status) = get_json(&client, &server.url("/chat/status")).await;
    let platform = &status["platforms"][0];
    assert_eq!(platform["platform"], "slack");
    assert_eq!(platform["mode"], "socket");
    assert_eq!(platform["connected"], true);
    assert_eq!(platform["live_threads"], 1);
    assert_eq!(platform["queue_depth"], 0);
    assert!(platform["last_event_at"].is_string(), "{status}");

    let session = session_of_thread(&server.base(), &root).await;
    let id = session["session_id"].as_str().expect("id");
    let deleted = client.delete(server.url(&format!("/sessions/{id}"))).send().await;
    assert_eq!(deleted.expect("delete").status(), 200);
    wait_for_post(&fake, CHANNEL, &root, "the end notice", |p| {
        p.text.starts_with("The session ended (deleted)")
    })
    .await;
    let metrics = client.get(server.url("/metrics")).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("text");
    assert!(metrics.contains("agentapi_proxy_chat_events_total"), "{metrics}");
    assert!(metrics.contains("agentapi_proxy_chat_posts_total"));
}

#[tokio::test]
async fn stream_replies_edit_a_placeholder_that_ends_as_the_reply() {
    let fake = FakeSlack::start(PATIENCE).await;
    let _server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.chat.slack.reply = "stream".into();
        config.agent.environment.insert("ECHO_AGENT_REPLY_MS".into(), "4000".into());
    })
    .await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "stream me", None);
    let root = mention.ts.clone();
    let posts =
        wait_for_post(&fake, CHANNEL, &root, "the finished reply", |p| p.text == "echo: stream me")
            .await;
    let reply = posts.iter().find(|p| p.text == "echo: stream me").expect("reply");
    assert!(reply.edited, "the placeholder was edited into the reply");
    let updates: Vec<_> = fake.updates().into_iter().filter(|u| u.ts == reply.ts).collect();
    assert!(updates.len() >= 2, "edited while streaming, then finished: {updates:?}");
    assert!(updates.iter().any(|u| u.text.ends_with(" …")), "{updates:?}");
    assert_eq!(count_posts(&fake, CHANNEL, &root, "echo: stream me"), 1);
}
