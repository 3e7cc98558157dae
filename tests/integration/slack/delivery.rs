//! Never lose or double an event (chat.md): a redelivered event acts once; a `kill -9` of
//! the proxy while the agent works still gets the reply posted exactly once; a 429 on
//! `chat.postMessage` is retried after `Retry-After`; a dropped socket loses nothing.

use std::time::Duration;

use super::{
    PATIENCE, count_posts, session_of_thread, sessions_of_thread, slack_config, wait_for_post,
};
use crate::support::fake_slack::{ALICE, CHANNEL, ConnectionEvent, Failure, FakeSlack};
use crate::support::server::{BinaryServer, TestServer};
use crate::support::sessions::get_json;
use crate::support::wait_until;

#[tokio::test]
async fn a_redelivered_event_is_acknowledged_and_acts_once() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| slack_config(config, &fake)).await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "hello", None);
    let root = mention.ts.clone();
    wait_for_post(&fake, CHANNEL, &root, "the echo", |p| p.text == "echo: hello").await;
    fake.send(&mention);
    wait_until("the redelivery to be acknowledged", PATIENCE, || {
        let acks = fake.acks(&mention.event_id).len();
        async move { (acks >= 2).then_some(()) }
    })
    .await;
    // Processed in order: once the next message's echo is back, the redelivery was handled.
    let next = fake.thread_message(ALICE, CHANNEL, &root, "next");
    fake.send(&next);
    wait_for_post(&fake, CHANNEL, &root, "the next echo", |p| p.text == "echo: alice: next").await;
    assert_eq!(count_posts(&fake, CHANNEL, &root, "echo: hello"), 1);
    assert_eq!(sessions_of_thread(&server.base(), &root).await.len(), 1);
}

#[tokio::test]
async fn a_kill_9_while_the_agent_works_still_posts_the_reply_exactly_once() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = BinaryServer::start(|config| {
        slack_config(config, &fake);
        config.agent.environment.insert("ECHO_AGENT_REPLY_MS".into(), "2000".into());
    })
    .await;
    let base = format!("http://{}", server.address);
    let mention = fake.inject_mention(ALICE, CHANNEL, "survive", None);
    let root = mention.ts.clone();
    let session = session_of_thread(&base, &root).await;
    let id = session["session_id"].as_str().expect("id").to_string();
    let client = reqwest::Client::new();
    wait_until("the agent to work on the message", PATIENCE, || {
        let client = client.clone();
        let url = format!("{base}/{id}/status");
        async move {
            let (_, status) = get_json(&client, &url).await;
            (status["status"] == "running").then_some(())
        }
    })
    .await;
    assert_eq!(fake.acks(&mention.event_id).len(), 1, "acknowledged before the crash");
    let (dir, config_path) = server.kill9().await;
    let server = BinaryServer::launch(dir, config_path, &[]).await;
    wait_for_post(&fake, CHANNEL, &root, "the reply", |p| p.text == "echo: survive").await;
    let next = fake.thread_message(ALICE, CHANNEL, &root, "after");
    fake.send(&next);
    wait_for_post(&fake, CHANNEL, &root, "the next echo", |p| p.text == "echo: alice: after").await;
    assert_eq!(count_posts(&fake, CHANNEL, &root, "echo: survive"), 1);
    let base = format!("http://{}", server.address);
    let sessions = sessions_of_thread(&base, &root).await;
    assert_eq!(sessions.len(), 1, "the same session continues");
    assert_eq!(sessions[0]["session_id"], id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn a_rate_limited_post_is_retried_after_retry_after() {
    let fake = FakeSlack::start(PATIENCE).await;
    let _server = TestServer::start(|config| slack_config(config, &fake)).await;
    fake.fail_next("chat.postMessage", 1, Failure::RateLimited { retry_after_secs: 1 });
    let started = std::time::Instant::now();
    let mention = fake.inject_mention(ALICE, CHANNEL, "limited", None);
    let root = mention.ts.clone();
    let posts =
        wait_for_post(&fake, CHANNEL, &root, "the echo", |p| p.text == "echo: limited").await;
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    assert_eq!(fake.calls("chat.postMessage"), posts.len() + 1, "one retry, nothing doubled");
}

#[tokio::test]
async fn a_dropped_socket_reconnects_and_loses_nothing() {
    // An envelope sent into the dying connection is redelivered when nobody acked it.
    let fake = FakeSlack::start(Duration::from_secs(2)).await;
    let _server = TestServer::start(|config| slack_config(config, &fake)).await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "one", None);
    let root = mention.ts.clone();
    wait_for_post(&fake, CHANNEL, &root, "the first echo", |p| p.text == "echo: one").await;
    fake.drop_connections();
    let second = fake.thread_message(ALICE, CHANNEL, &root, "two");
    fake.send(&second);
    wait_for_post(&fake, CHANNEL, &root, "the second echo", |p| p.text == "echo: alice: two").await;
    assert_eq!(count_posts(&fake, CHANNEL, &root, "echo: "), 2);
    let log = fake.connection_log();
    let opened = log.iter().filter(|event| matches!(event, ConnectionEvent::Opened(_))).count();
    assert!(opened >= 2, "reconnected: {log:?}");
}
