//! Slack as a [`ChatPlatform`]: the Web API client (`web_api`), thread reads (`threads`),
//! incoming events turned into
//! [`IncomingMessage`](crate::chat::platform::IncomingMessage)s (`events`), Socket Mode
//! (`socket_mode`) and the Events API request check (`http_events`). Built from
//! [`SlackSettings`], which the bridge fills from `chat.slack`; tokens stay in [`SlackToken`]
//! and never reach a log or an error message. Text we post is escaped (`&`, `<`, `>`), so an
//! agent's output can never ping `@channel` or a user or forge a link; text we read back is
//! unescaped.

mod events;
mod http_events;
mod socket_mode;
mod threads;
mod web_api;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::chat::platform::{
    AttachedFile, ChatPlatform, ChatUser, HistoryMessage, Inbox, PlatformError, ThreadRef,
};
use crate::shutdown::Shutdown;

pub use http_events::{HttpAnswer, MAX_EVENT_BODY_BYTES, MAX_TIMESTAMP_SKEW_SECS};

/// The `metadata.event_type` of a reply that carries a turn id.
pub const TURN_EVENT_TYPE: &str = "agentapi_proxy_turn";

/// The longest `text` the bridge puts in one message. Slack truncates `text` at 40,000
/// characters and recommends at most 4,000; we take 4,000, which stays under the hard limit
/// even when escaping `&`, `<`, `>` grows every character to 5.
pub const MAX_MESSAGE_CHARS: usize = 4_000;

/// How events reach us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    /// Socket Mode: we open a WebSocket to Slack (no public URL needed).
    Socket,
    /// Events API: Slack POSTs to our route, which calls [`SlackPlatform::receive_http`].
    Events,
}

/// A secret (token or signing secret): `Debug` prints `[redacted]`, there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SlackToken(String);

impl SlackToken {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SlackToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("[redacted]")
    }
}

impl From<String> for SlackToken {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

/// How calls and reconnects are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per Web API call, the first included.
    pub attempts: u32,
    /// The first backoff after a 5xx or a connection error; it doubles per try.
    pub initial_backoff: Duration,
    /// The cap of one backoff (and of a Socket Mode reconnect delay).
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails as unavailable.
    pub max_retry_after: Duration,
    /// One HTTP request's time limit.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything the Slack platform needs; the bridge maps `chat.slack` onto it.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub mode: SlackMode,
    /// `xoxb-`: every Web API call and file download.
    pub bot_token: SlackToken,
    /// `xapp-`: `apps.connections.open` (Socket Mode only).
    pub app_token: Option<SlackToken>,
    /// Checks Events API requests (events mode only).
    pub signing_secret: Option<SlackToken>,
    /// `https://slack.com/api` (or GovSlack's, or a test fake's).
    pub api_base_url: url::Url,
    pub retry: RetryPolicy,
    /// Milliseconds since the Unix epoch; [`crate::clock::now_ms`] outside tests.
    pub clock: fn() -> i64,
}

impl SlackSettings {
    /// Settings with the default retry policy and clock.
    pub fn new(mode: SlackMode, bot_token: SlackToken, api_base_url: url::Url) -> Self {
        Self {
            mode,
            bot_token,
            app_token: None,
            signing_secret: None,
            api_base_url,
            retry: RetryPolicy::default(),
            clock: crate::clock::now_ms,
        }
    }
}

/// Who the bot is, from `auth.test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub team_id: String,
    /// The bot user (`U...`): how mentions name it.
    pub user_id: String,
    /// The bot (`B...`): how its own messages are marked.
    pub bot_id: Option<String>,
}

/// Slack, connected: see the module header.
pub struct SlackPlatform {
    settings: SlackSettings,
    api: web_api::WebApi,
    identity: BotIdentity,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for SlackPlatform {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SlackPlatform")
            .field("mode", &self.settings.mode)
            .field("api_base_url", &self.settings.api_base_url.as_str())
            .field("identity", &self.identity)
            .field("connected", &self.connected())
            .finish()
    }
}

impl SlackPlatform {
    /// Checks the bot token with `auth.test` and learns who the bot is.
    pub async fn connect(settings: SlackSettings) -> Result<Self, PlatformError> {
        if settings.mode == SlackMode::Socket && settings.app_token.is_none() {
            return Err(PlatformError::Refused("missing_app_token".into()));
        }
        if settings.mode == SlackMode::Events && settings.signing_secret.is_none() {
            return Err(PlatformError::Refused("missing_signing_secret".into()));
        }
        let api = web_api::WebApi::new(&settings)?;
        let answer = api.call_form("auth.test", &settings.bot_token, &[]).await?;
        let text = |name: &str| answer[name].as_str().map(str::to_string);
        let (Some(team_id), Some(user_id)) = (text("team_id"), text("user_id")) else {
            return Err(PlatformError::Unavailable("auth.test named no team or user".into()));
        };
        let identity = BotIdentity { team_id, user_id, bot_id: text("bot_id") };
        let connected = Arc::new(AtomicBool::new(settings.mode == SlackMode::Events));
        Ok(Self { settings, api, identity, connected })
    }

    pub fn identity(&self) -> &BotIdentity {
        &self.identity
    }

    pub fn settings(&self) -> &SlackSettings {
        &self.settings
    }
}

#[async_trait::async_trait]
impl ChatPlatform for SlackPlatform {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn mode(&self) -> &'static str {
        match self.settings.mode {
            SlackMode::Socket => "socket",
            SlackMode::Events => "events",
        }
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    async fn run(&self, inbox: Arc<dyn Inbox>, shutdown: Shutdown) {
        if self.settings.mode == SlackMode::Socket {
            socket_mode::run(self, inbox, shutdown).await;
        }
    }

    async fn post(
        &self,
        thread: &ThreadRef,
        text: &str,
        turn: Option<&str>,
    ) -> Result<String, PlatformError> {
        let mut body = json!({
            "channel": thread.channel, "thread_ts": thread.root, "text": events::escape(text),
            "unfurl_links": false, "unfurl_media": false,
        });
        if let Some(turn) = turn {
            body["metadata"] =
                json!({"event_type": TURN_EVENT_TYPE, "event_payload": {"turn": turn}});
        }
        let answer =
            self.api.call_json("chat.postMessage", &self.settings.bot_token, &body).await?;
        match answer["ts"].as_str() {
            Some(ts) => Ok(ts.to_string()),
            None => Err(PlatformError::Unavailable("chat.postMessage returned no ts".into())),
        }
    }

    async fn update(
        &self,
        thread: &ThreadRef,
        message_id: &str,
        text: &str,
    ) -> Result<(), PlatformError> {
        let body =
            json!({"channel": thread.channel, "ts": message_id, "text": events::escape(text)});
        self.api.call_json("chat.update", &self.settings.bot_token, &body).await.map(drop)
    }

    async fn post_private(
        &self,
        thread: &ThreadRef,
        user: &str,
        text: &str,
    ) -> Result<(), PlatformError> {
        let body = json!({
            "channel": thread.channel, "user": user, "thread_ts": thread.root,
            "text": events::escape(text),
        });
        self.api.call_json("chat.postEphemeral", &self.settings.bot_token, &body).await.map(drop)
    }

    async fn mark(
        &self,
        thread: &ThreadRef,
        message_id: &str,
        name: &str,
        on: bool,
    ) -> Result<(), PlatformError> {
        let method = if on { "reactions.add" } else { "reactions.remove" };
        let body = json!({"channel": thread.channel, "timestamp": message_id, "name": name});
        match self.api.call_json(method, &self.settings.bot_token, &body).await {
            Ok(_) => Ok(()),
            Err(PlatformError::Refused(code))
                if code == "already_reacted" || code == "no_reaction" =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    async fn history(
        &self,
        thread: &ThreadRef,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryMessage>, PlatformError> {
        threads::history(self, thread, before, limit).await
    }

    async fn find_turn(
        &self,
        thread: &ThreadRef,
        turn: &str,
    ) -> Result<Option<String>, PlatformError> {
        threads::find_turn(self, thread, turn).await
    }

    async fn user(&self, user: &str) -> Result<ChatUser, PlatformError> {
        let answer =
            self.api.call_form("users.info", &self.settings.bot_token, &[("user", user)]).await?;
        Ok(events::chat_user(&answer["user"]))
    }

    async fn download(&self, file: &AttachedFile, max_bytes: u64) -> Result<Bytes, PlatformError> {
        self.api.download(&file.download_url, &self.settings.bot_token, max_bytes).await
    }

    fn max_message_chars(&self) -> usize {
        MAX_MESSAGE_CHARS
    }
}
