//! The Slack bridge end to end (chat.md "Tests"): the fake Slack, the real proxy and the
//! echo agent. Helpers here; the cases in `slack/`: the flow of a thread (`flow.rs`),
//! nothing lost or doubled (`delivery.rs`), who may do what (`access.rs`), who a Slack user
//! is and where the bot answers (`mapping.rs`), the bridge on PostgreSQL (`postgres.rs`), and
//! the T11 measurement (`t11.rs`).

mod access;
mod delivery;
mod flow;
mod mapping;
mod postgres;
mod t11;

use std::time::Duration;

use agentapi_proxy::config::Config;
use serde_json::Value;

use crate::support::fake_slack::{ALICE, APP_TOKEN, BOT_TOKEN, FakeSlack, StoredMessage};
use crate::support::sessions::get_json;
use crate::support::wait_until;

/// How long a test waits for anything the bridge does.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `chat.slack` in socket mode against `fake`, Alice mapped to `alice`, a quick echo agent.
pub fn slack_config(config: &mut Config, fake: &FakeSlack) {
    let slack = &mut config.chat.slack;
    slack.enabled = true;
    slack.mode = "socket".into();
    slack.bot_token = BOT_TOKEN.into();
    slack.app_token = APP_TOKEN.into();
    slack.api_base_url = fake.api_url.clone();
    slack.users.insert(ALICE.into(), "alice".into());
    config.agent.environment.insert("ECHO_AGENT_BOOT_MS".into(), "0".into());
}

/// Waits until the bot posted a message in the thread that `matches`; returns them all.
pub async fn wait_for_post(
    fake: &FakeSlack,
    channel: &str,
    root: &str,
    what: &str,
    matches: impl Fn(&StoredMessage) -> bool,
) -> Vec<StoredMessage> {
    wait_until(what, PATIENCE, || {
        let posts = fake.bot_posts(channel, root);
        let found = posts.iter().any(&matches);
        async move { found.then_some(posts) }
    })
    .await
}

/// The sessions `/search` lists with `tag.slack_thread=<root>` (auth off).
pub async fn sessions_of_thread(base: &str, root: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let url = format!("{base}/search?tag.slack_thread={root}");
    let (status, answer) = get_json(&client, &url).await;
    assert_eq!(status, 200, "{answer}");
    answer["sessions"].as_array().cloned().unwrap_or_default()
}

/// The one session of a thread, once it exists.
pub async fn session_of_thread(base: &str, root: &str) -> Value {
    wait_until("the thread's session", PATIENCE, || async move {
        sessions_of_thread(base, root).await.into_iter().next()
    })
    .await
}

/// How many bot posts of the thread contain `needle`.
pub fn count_posts(fake: &FakeSlack, channel: &str, root: &str, needle: &str) -> usize {
    fake.bot_posts(channel, root).iter().filter(|post| post.text.contains(needle)).count()
}
