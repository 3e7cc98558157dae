//! The Slack bridge on `persistence.backend: "postgres"` (scale-out.md §2): a mention starts
//! a session that answers in the thread, a redelivered event acts once, and the bridge's rows
//! (inbox, thread mapping, posted turn) are in PostgreSQL; after a `kill -9` the thread keeps
//! its session and the next message is answered once.

use super::wait_for_post;
use super::{PATIENCE, count_posts, session_of_thread, sessions_of_thread, slack_config};
use crate::support::fake_slack::{ALICE, CHANNEL, FakeSlack};
use crate::support::postgres as test_postgres;
use crate::support::server::BinaryServer;
use crate::support::wait_until;

#[tokio::test]
async fn the_bridge_on_postgres_answers_once_and_its_rows_survive_a_kill_9() {
    let Some(database) = test_postgres::database().await else { return };
    let fake = FakeSlack::start(PATIENCE).await;
    let server = BinaryServer::start(|config| {
        slack_config(config, &fake);
        config.persistence.backend = "postgres".into();
        config.persistence.postgres_url = database.url.clone();
        config.persistence.connect_timeout_seconds = 10;
    })
    .await;
    let base = format!("http://{}", server.address);
    let mention = fake.inject_mention(ALICE, CHANNEL, "hello", None);
    let root = mention.ts.clone();
    wait_for_post(&fake, CHANNEL, &root, "the echo", |p| p.text == "echo: hello").await;
    let session = session_of_thread(&base, &root).await;
    let id = session["session_id"].as_str().expect("id").to_string();
    assert_eq!(session["user_id"], "alice");

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
    assert_eq!(count_posts(&fake, CHANNEL, &root, "echo: hello"), 1, "the duplicate acted once");
    assert_eq!(sessions_of_thread(&base, &root).await.len(), 1);

    let client = database.connect().await;
    let inbox: i64 = client
        .query_one("SELECT COUNT(*) FROM chat_inbox WHERE event_id = $1", &[&mention.event_id])
        .await
        .expect("inbox")
        .get(0);
    assert_eq!(inbox, 1, "the event is stored once, in PostgreSQL");
    let mapped: String = client
        .query_one("SELECT session_id FROM chat_threads WHERE root = $1", &[&root])
        .await
        .expect("the thread is mapped in PostgreSQL")
        .get(0);
    assert_eq!(mapped, id);
    let turns: i64 = client
        .query_one("SELECT COUNT(*) FROM chat_turns WHERE session_id = $1", &[&id])
        .await
        .expect("turns")
        .get(0);
    assert!(turns >= 2, "both replies recorded by turn: {turns}");

    let (dir, config_path) = server.kill9().await;
    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let base = format!("http://{}", server.address);
    let after = fake.thread_message(ALICE, CHANNEL, &root, "after");
    fake.send(&after);
    wait_for_post(&fake, CHANNEL, &root, "the echo after", |p| p.text == "echo: alice: after")
        .await;
    let sessions = sessions_of_thread(&base, &root).await;
    assert_eq!(sessions.len(), 1, "the same session continues");
    assert_eq!(sessions[0]["session_id"], id.as_str());
    assert_eq!(count_posts(&fake, CHANNEL, &root, "echo: hello"), 1);
    assert_eq!(count_posts(&fake, CHANNEL, &root, "echo: alice: next"), 1);
    server.stop().await;
}
