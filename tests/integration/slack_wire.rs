//! The Slack wire layer (`SlackPlatform`) against the fake Slack: Web API calls and their
//! retries here, Socket Mode in `slack_wire/socket_mode.rs`, the Events API request check in
//! `slack_wire/events_api.rs`. A small inbox in the test collects what the platform hands on
//! (deduplicating by event id like the bridge's inbox does, so a test sees nothing lost).

mod events_api;
mod socket_mode;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentapi_proxy::chat::platform::{
    AttachedFile, ChatPlatform, Inbox, IncomingMessage, PlatformError, Stored, ThreadRef,
};
use agentapi_proxy::chat::slack::{
    RetryPolicy, SlackMode, SlackPlatform, SlackSettings, SlackToken, TURN_EVENT_TYPE,
};
use serde_json::json;

use crate::support::fake_slack::{
    ALICE, APP_TOKEN, BOB, BOT_TOKEN, BOT_USER_ID, CHANNEL, Failure, FakeSlack, SIGNING_SECRET,
    TEAM_ID,
};

/// An inbox that keeps each event once, can fail its next calls, and can hold every call at
/// a closed gate.
pub struct CollectingInbox {
    stored: Mutex<Vec<IncomingMessage>>,
    calls: AtomicUsize,
    failures_left: AtomicUsize,
    gate: tokio::sync::watch::Sender<bool>,
}

impl CollectingInbox {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            stored: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            failures_left: AtomicUsize::new(0),
            gate: tokio::sync::watch::Sender::new(true),
        })
    }

    pub fn stored(&self) -> Vec<IncomingMessage> {
        self.stored.lock().expect("inbox").clone()
    }

    pub fn stored_event(&self, event_id: &str) -> Option<IncomingMessage> {
        self.stored().into_iter().find(|message| message.event_id == event_id)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn fail_next(&self, times: usize) {
        self.failures_left.store(times, Ordering::SeqCst);
    }

    pub fn set_gate(&self, open: bool) {
        self.gate.send_replace(open);
    }
}

#[async_trait::async_trait]
impl Inbox for CollectingInbox {
    async fn store(&self, message: IncomingMessage) -> anyhow::Result<Stored> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.gate.subscribe().wait_for(|open| *open).await;
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1));
        if failing.is_ok() {
            anyhow::bail!("the test's inbox is failing on purpose");
        }
        let mut stored = self.stored.lock().expect("inbox");
        if stored.iter().any(|seen| seen.event_id == message.event_id) {
            return Ok(Stored::Duplicate);
        }
        stored.push(message);
        Ok(Stored::New)
    }
}

/// Quick retries so tests do not wait on production backoffs.
pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        max_retry_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
    }
}

pub fn settings(fake: &FakeSlack, mode: SlackMode) -> SlackSettings {
    let base = url::Url::parse(&fake.api_url).expect("the fake's URL");
    let mut settings = SlackSettings::new(mode, SlackToken::new(BOT_TOKEN), base);
    settings.app_token = Some(SlackToken::new(APP_TOKEN));
    settings.signing_secret = Some(SlackToken::new(SIGNING_SECRET));
    settings.retry = quick_retries();
    settings
}

pub async fn platform(fake: &FakeSlack, mode: SlackMode) -> Arc<SlackPlatform> {
    let platform = SlackPlatform::connect(settings(fake, mode)).await.expect("auth.test passes");
    Arc::new(platform)
}

fn thread(root: &str) -> ThreadRef {
    ThreadRef { team: TEAM_ID.into(), channel: CHANNEL.into(), root: root.into() }
}

#[tokio::test]
async fn connect_learns_the_bot_from_auth_test() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    assert_eq!(platform.identity().user_id, BOT_USER_ID);
    assert_eq!(platform.identity().team_id, TEAM_ID);
    assert_eq!((platform.name(), platform.mode()), ("slack", "events"));
    assert!(platform.max_message_chars() <= 4_000);
    assert_eq!(fake.calls("auth.test"), 1);
}

#[tokio::test]
async fn a_post_lands_escaped_in_the_thread_and_find_turn_finds_it_across_pages() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let root = fake.mention(ALICE, CHANNEL, "start", None).ts;
    for number in 0..250 {
        fake.thread_message(BOB, CHANNEL, &root, &format!("chatter {number}"));
    }
    let ts = platform.post(&thread(&root), "a <b> & c", Some("turn-7")).await.expect("posted");

    let posts = fake.bot_posts(CHANNEL, &root);
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].ts, ts);
    assert_eq!(posts[0].text, "a &lt;b&gt; &amp; c");
    let metadata = posts[0].metadata.clone().expect("metadata");
    assert_eq!(
        metadata,
        json!({"event_type": TURN_EVENT_TYPE, "event_payload": {"turn": "turn-7"}})
    );

    let before = fake.calls("conversations.replies");
    let found = platform.find_turn(&thread(&root), "turn-7").await.expect("searched");
    assert_eq!(found.as_deref(), Some(ts.as_str()));
    assert!(fake.calls("conversations.replies") - before >= 2, "the search followed the cursor");
    assert_eq!(platform.find_turn(&thread(&root), "turn-8").await.expect("searched"), None);
}

#[tokio::test]
async fn history_gives_the_newest_messages_before_a_point_oldest_first() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let root = fake.mention(ALICE, CHANNEL, "start", None).ts;
    let replies: Vec<String> = (1..=5)
        .map(|number| fake.thread_message(BOB, CHANNEL, &root, &format!("r{number} &lt;x&gt;")).ts)
        .collect();
    let history = platform.history(&thread(&root), Some(&replies[3]), 2).await.expect("history");
    let texts: Vec<&str> = history.iter().map(|message| message.text.as_str()).collect();
    assert_eq!(texts, ["r2 <x>", "r3 <x>"]);
    assert_eq!(history[0].user.as_deref(), Some(BOB));
    assert!(!history[0].from_bot);

    platform.post(&thread(&root), "bot says", None).await.expect("posted");
    let all = platform.history(&thread(&root), None, 100).await.expect("history");
    assert_eq!(all.len(), 7);
    assert_eq!(all[0].message_id, root);
    assert!(all[6].from_bot);
}

#[tokio::test]
async fn a_rate_limited_post_waits_for_retry_after_and_posts_once() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let root = fake.mention(ALICE, CHANNEL, "start", None).ts;
    fake.fail_next("chat.postMessage", 1, Failure::RateLimited { retry_after_secs: 1 });
    let started = Instant::now();
    platform.post(&thread(&root), "after the limit", None).await.expect("posted");
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert_eq!(fake.calls("chat.postMessage"), 2);
    assert_eq!(fake.bot_posts(CHANNEL, &root).len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_and_refusals_are_not() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let root = fake.mention(ALICE, CHANNEL, "start", None).ts;
    fake.fail_next("chat.postMessage", 2, Failure::Status(503));
    platform.post(&thread(&root), "third time", None).await.expect("posted");
    assert_eq!(fake.calls("chat.postMessage"), 3);
    assert_eq!(fake.bot_posts(CHANNEL, &root).len(), 1);

    let nowhere =
        ThreadRef { team: TEAM_ID.into(), channel: "C0NOWHERE".into(), root: root.clone() };
    let refused = platform.post(&nowhere, "lost", None).await.expect_err("no such channel");
    assert!(
        matches!(&refused, PlatformError::Refused(code) if code == "channel_not_found"),
        "{refused}"
    );
    assert_eq!(fake.calls("chat.postMessage"), 4, "a refusal is not retried");

    fake.fail_next("chat.postMessage", 5, Failure::Status(502));
    let down = platform.post(&thread(&root), "never", None).await.expect_err("always 502");
    assert!(matches!(down, PlatformError::Unavailable(_)), "{down}");
    assert_eq!(fake.calls("chat.postMessage"), 9, "five tries, then it gives up");
    assert_eq!(fake.bot_posts(CHANNEL, &root).len(), 1);
}

#[tokio::test]
async fn updates_private_answers_and_marks() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let mention = fake.mention(ALICE, CHANNEL, "start", None);
    let here = thread(&mention.ts);
    let ts = platform.post(&here, "working", None).await.expect("posted");
    platform.update(&here, &ts, "done").await.expect("updated");
    assert_eq!(fake.message(CHANNEL, &ts).expect("kept").text, "done");
    assert_eq!(fake.updates().len(), 1);
    let foreign = platform.update(&here, &mention.ts, "hijack").await.expect_err("not ours");
    assert!(matches!(&foreign, PlatformError::Refused(code) if code == "cant_update_message"));

    platform.post_private(&here, BOB, "you are not mapped").await.expect("ephemeral");
    let ephemerals = fake.ephemerals();
    assert_eq!(ephemerals.len(), 1);
    assert_eq!(
        (ephemerals[0].user.as_str(), ephemerals[0].thread_ts.as_deref()),
        (BOB, Some(here.root.as_str()))
    );

    for _ in 0..2 {
        platform.mark(&here, &mention.ts, "eyes", true).await.expect("already_reacted is fine");
    }
    assert_eq!(fake.reactions(CHANNEL, &mention.ts), ["eyes"]);
    for _ in 0..2 {
        platform.mark(&here, &mention.ts, "eyes", false).await.expect("no_reaction is fine");
    }
    assert!(fake.reactions(CHANNEL, &mention.ts).is_empty());
    let missing = platform.mark(&here, "1.000000", "eyes", true).await.expect_err("no message");
    assert!(matches!(&missing, PlatformError::Refused(code) if code == "message_not_found"));
}

#[tokio::test]
async fn users_info_gives_the_display_name_and_email() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let alice = platform.user(ALICE).await.expect("known");
    assert_eq!(alice.display_name.as_deref(), Some("alice"));
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
    let nobody = platform.user("U0NOBODY").await.expect_err("unknown");
    assert!(matches!(&nobody, PlatformError::Refused(code) if code == "user_not_found"));
}

#[tokio::test]
async fn downloads_are_capped_and_go_only_to_slack() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let platform = platform(&fake, SlackMode::Events).await;
    let file = |id: &str, url: String, size: u64| AttachedFile {
        id: id.into(),
        name: "blob.bin".into(),
        size,
        download_url: url,
    };
    let small: Vec<u8> = (0..100u8).collect();
    let small_file = file("F1", fake.host_file("F1", "blob.bin", small.clone(), true), 100);
    assert_eq!(platform.download(&small_file, 1000).await.expect("fits"), small);
    let refused = platform.download(&small_file, 99).await.expect_err("one byte too many");
    assert!(matches!(&refused, PlatformError::Refused(code) if code == "file_too_large"));

    let big = vec![7u8; 300 * 1024];
    let streamed = file("F2", fake.host_file("F2", "big.bin", big.clone(), false), 0);
    assert_eq!(
        platform.download(&streamed, 300 * 1024).await.expect("exactly fits").len(),
        big.len()
    );
    let capped =
        platform.download(&streamed, 100 * 1024).await.expect_err("no length, still capped");
    assert!(matches!(&capped, PlatformError::Refused(code) if code == "file_too_large"));

    let before = fake.calls("files.download");
    let elsewhere = file("F3", "http://127.0.0.2:9/files/F3/download/x".into(), 1);
    let refused = platform.download(&elsewhere, 1000).await.expect_err("not Slack");
    assert!(matches!(&refused, PlatformError::Refused(code) if code == "file_url_not_on_slack"));
    assert_eq!(fake.calls("files.download"), before);
}

#[tokio::test]
async fn tokens_never_show_in_debug_output_or_errors() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let secrets = [BOT_TOKEN, APP_TOKEN, SIGNING_SECRET, "xoxb-wrong-token-secret"];
    let assert_clean = |text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} leaked into: {text}");
        }
    };
    let settings = settings(&fake, SlackMode::Socket);
    assert_clean(&format!("{settings:?} {:?}", SlackToken::new(BOT_TOKEN)));
    let platform = SlackPlatform::connect(settings.clone()).await.expect("connects");
    assert_clean(&format!("{platform:?}"));

    let mut wrong = settings.clone();
    wrong.bot_token = SlackToken::new("xoxb-wrong-token-secret");
    let error = SlackPlatform::connect(wrong).await.expect_err("invalid_auth");
    assert!(matches!(&error, PlatformError::Refused(code) if code == "invalid_auth"), "{error}");
    assert_clean(&format!("{error} {error:?}"));

    let mut unreachable = settings.clone();
    unreachable.api_base_url = url::Url::parse("http://127.0.0.1:9/api").expect("url");
    unreachable.retry.attempts = 2;
    let error = SlackPlatform::connect(unreachable).await.expect_err("nothing listens");
    assert!(matches!(error, PlatformError::Unavailable(_)), "{error}");
    assert_clean(&format!("{error} {error:?}"));

    let mut no_app_token = settings;
    no_app_token.app_token = None;
    let error = SlackPlatform::connect(no_app_token).await.expect_err("socket mode needs it");
    assert_clean(&format!("{error} {error:?}"));
}

/// The fake itself answers as Slack documents, so the tests above check something real.
#[tokio::test]
async fn the_fake_refuses_like_slack() {
    let fake = FakeSlack::start(Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    let call = |method: &str, token: Option<&str>, json_body: Option<serde_json::Value>| {
        let mut request = client.post(format!("{}/{method}", fake.api_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match json_body {
            Some(body) => request.json(&body),
            None => request.form(&[("channel", CHANNEL)]),
        };
        async move {
            let response = request.send().await.expect("the fake answers");
            assert_eq!(response.status(), 200, "refusals are HTTP 200");
            response.json::<serde_json::Value>().await.expect("json")
        }
    };
    let error = |answer: serde_json::Value| {
        assert_eq!(answer["ok"], false, "{answer}");
        answer["error"].as_str().expect("an error code").to_string()
    };
    assert_eq!(error(call("auth.test", None, None).await), "not_authed");
    assert_eq!(error(call("auth.test", Some("xoxb-nope"), None).await), "invalid_auth");
    assert_eq!(
        error(call("chat.postMessage", Some(APP_TOKEN), None).await),
        "not_allowed_token_type"
    );
    assert_eq!(
        error(call("apps.connections.open", Some(BOT_TOKEN), None).await),
        "not_allowed_token_type"
    );
    let read_with_json = json!({"channel": CHANNEL, "ts": "1733140000.000100"});
    let answer = call("conversations.replies", Some(BOT_TOKEN), Some(read_with_json)).await;
    assert_eq!(error(answer), "channel_not_found", "read methods ignore JSON bodies");
    let post = json!({"channel": "C0NOWHERE", "text": "x"});
    assert_eq!(
        error(call("chat.postMessage", Some(BOT_TOKEN), Some(post)).await),
        "channel_not_found"
    );
    let too_long = json!({"channel": CHANNEL, "text": "x".repeat(40_001)});
    assert_eq!(
        error(call("chat.postMessage", Some(BOT_TOKEN), Some(too_long)).await),
        "msg_too_long"
    );
    let open = call("apps.connections.open", Some(APP_TOKEN), None).await;
    assert!(open["url"].as_str().is_some_and(|url| url.starts_with("ws://127.0.0.1:")), "{open}");
}
