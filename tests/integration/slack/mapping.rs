//! Who a Slack user is and where the bot answers: a direct message is a session too; with
//! `map_users_by_email` the Slack email picks the `auth.users` entry; a channel outside
//! `channels` gets a private refusal and no session; a named profile is started from.

use std::collections::BTreeMap;

use agentapi_proxy::config::UserEntry;
use serde_json::json;

use super::{PATIENCE, session_of_thread, sessions_of_thread, slack_config, wait_for_post};
use crate::support::fake_slack::{ALICE, CHANNEL, DM_CHANNEL, FakeSlack};
use crate::support::server::TestServer;
use crate::support::sessions::{agent_debug_env, get_json};
use crate::support::wait_until;

#[tokio::test]
async fn a_direct_message_is_a_session_of_its_own() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| slack_config(config, &fake)).await;
    let message = fake.direct_message("hi from a DM");
    fake.send(&message);
    wait_for_post(&fake, DM_CHANNEL, &message.ts, "the echo", |p| p.text == "echo: hi from a DM")
        .await;
    let session = session_of_thread(&server.base(), &message.ts).await;
    assert_eq!(session["tags"]["slack_channel"], DM_CHANNEL);
}

#[tokio::test]
async fn the_slack_email_maps_to_the_auth_users_entry() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.chat.slack.users.clear();
        config.chat.slack.map_users_by_email = true;
        config.auth.users = BTreeMap::from([(
            "alice.by.email".to_string(),
            UserEntry { email: "ALICE@example.com".into(), ..UserEntry::default() },
        )]);
    })
    .await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "who am i", None);
    wait_for_post(&fake, CHANNEL, &mention.ts, "the echo", |p| p.text == "echo: who am i").await;
    let session = session_of_thread(&server.base(), &mention.ts).await;
    assert_eq!(session["user_id"], "alice.by.email");
}

#[tokio::test]
async fn a_channel_outside_the_allowed_ones_is_refused_privately() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.chat.slack.channels = vec!["C0SOMEWHERE".into()];
    })
    .await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "here?", None);
    wait_until("the private refusal", PATIENCE, || {
        let refused = fake.ephemerals().iter().any(|e| e.user == ALICE && e.channel == CHANNEL);
        async move { refused.then_some(()) }
    })
    .await;
    assert!(sessions_of_thread(&server.base(), &mention.ts).await.is_empty());
    assert!(fake.bot_posts(CHANNEL, &mention.ts).is_empty());
}

#[tokio::test]
async fn a_named_profile_is_started_from() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| slack_config(config, &fake)).await;
    let client = reqwest::Client::new();
    // With authentication off, profiles belong to `anonymous`; Alice acts as `alice`.
    let created = client
        .post(server.url("/profiles"))
        .json(&json!({"name": "backend", "environment": {"PROFILE_MARK": "from-profile"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let profile: serde_json::Value = created.json().await.expect("json");
    let profile_id = profile["profile"]["id"].as_str().expect("id").to_string();
    let mention = fake.inject_mention(ALICE, CHANNEL, "go profile:backend", None);
    wait_until("a refusal naming the profile", PATIENCE, || {
        let refused = fake.ephemerals().iter().any(|e| e.text.contains("no profile named"));
        async move { refused.then_some(()) }
    })
    .await;
    assert!(sessions_of_thread(&server.base(), &mention.ts).await.is_empty());

    // Admins (everyone, with auth off) may name any profile by its id.
    let text = format!("go profile:{profile_id}");
    let mention = fake.inject_mention(ALICE, CHANNEL, &text, None);
    wait_for_post(&fake, CHANNEL, &mention.ts, "the echo", |p| p.text == "echo: go").await;
    let session = session_of_thread(&server.base(), &mention.ts).await;
    let id = session["session_id"].as_str().expect("id");
    let (_, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    let env = agent_debug_env(&client, detail["port"].as_u64().expect("port") as u16).await;
    assert_eq!(env["env"]["PROFILE_MARK"], "from-profile");
}

#[tokio::test]
async fn a_start_that_fails_is_told_in_the_thread_with_the_reason() {
    // `repo:` names a repository on a host where nothing listens: the clone fails at once.
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.agent.repository_hosts = vec!["127.0.0.1:1".into()];
    })
    .await;
    let mention = fake.inject_mention(ALICE, CHANNEL, "build it repo:owner/repo", None);
    let posts = wait_for_post(&fake, CHANNEL, &mention.ts, "the failure", |p| {
        p.text.starts_with("The session could not start")
    })
    .await;
    assert!(!posts.iter().any(|p| p.text.starts_with("echo:")), "{posts:?}");
    let session = session_of_thread(&server.base(), &mention.ts).await;
    assert_eq!(session["tags"]["repository"], "owner/repo");
    assert_eq!(session["status"], "failed");
    assert_eq!(
        super::count_posts(&fake, CHANNEL, &mention.ts, "The session ended"),
        0,
        "told once"
    );
}
