//! The `ChatPlatform` seam: what the chat bridge needs from a chat service (Slack now;
//! Telegram and Discord later), in the bridge's own words. A platform turns the service's
//! events into [`IncomingMessage`]s, hands each to an [`Inbox`] and acknowledges it to the
//! service only once the inbox has stored it; it posts, edits and marks messages for the
//! bridge. Nothing here knows about sessions or the store.

use bytes::Bytes;

/// One conversation thread: where a session's messages come from and its replies go.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ThreadRef {
    /// The workspace (Slack `team_id`).
    pub team: String,
    pub channel: String,
    /// The thread's root message id (Slack `thread_ts`, or the message's own `ts` when it
    /// starts the thread).
    pub root: String,
}

/// A file attached to a message, not yet downloaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachedFile {
    pub id: String,
    pub name: String,
    /// Bytes, as the service announced (the download is still capped).
    pub size: u64,
    /// Where the platform downloads it from (with its own credentials).
    pub download_url: String,
}

/// A message that may concern the bridge. Platforms drop what never does (bots, edits,
/// deletions, joins) before the inbox sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncomingMessage {
    /// The service's unique id of the delivery (Slack `event_id`): the inbox's dedupe key.
    pub event_id: String,
    pub thread: ThreadRef,
    /// This message's own id (Slack `ts`).
    pub message_id: String,
    /// The author's id on the service.
    pub user: String,
    /// The text with the bot's own mention removed and trimmed.
    pub text: String,
    /// The bot was mentioned (Slack `app_mention`).
    pub mentions_bot: bool,
    /// A direct message with the bot.
    pub direct: bool,
    pub files: Vec<AttachedFile>,
}

/// An earlier message of a thread, for the agent's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryMessage {
    pub message_id: String,
    /// Author id; `None` for a message without a user (e.g. a bot's).
    pub user: Option<String>,
    pub text: String,
    pub from_bot: bool,
}

/// What the service knows of a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatUser {
    pub display_name: Option<String>,
    pub email: Option<String>,
}

/// What storing an incoming message in the inbox gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now: it will be processed (also after a crash).
    New,
    /// Seen before (a retry or a redelivery): acknowledge and drop.
    Duplicate,
}

/// Where a platform hands incoming messages; implemented by the bridge. The platform
/// acknowledges a delivery to the service only after `store` returned `Ok`; on `Err` it does
/// not acknowledge, so the service delivers it again.
#[async_trait::async_trait]
pub trait Inbox: Send + Sync {
    async fn store(&self, message: IncomingMessage) -> anyhow::Result<Stored>;
}

/// Why a call to the service failed, after the platform's own retries (429 after
/// `Retry-After`, 5xx and connection errors with capped backoff).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The service refused for good (Slack `ok: false` with this error code).
    #[error("the chat service refused: {0}")]
    Refused(String),
    /// Retries were exhausted or the service could not be reached.
    #[error("the chat service is unavailable: {0}")]
    Unavailable(String),
}

/// A chat service, as the bridge uses it.
#[async_trait::async_trait]
pub trait ChatPlatform: Send + Sync + std::fmt::Debug {
    /// `"slack"`, …: the name in metrics, `/chat/status` and session tags.
    fn name(&self) -> &'static str;

    /// How events arrive (`"socket"`, `"events"`).
    fn mode(&self) -> &'static str;

    /// Whether the platform's event connection is up now (always true for pushed HTTP events).
    fn connected(&self) -> bool;

    /// Receives events until `shutdown` fires, handing each to `inbox` before acknowledging
    /// it; reconnects on its own. Returns at once for modes where events arrive over our
    /// own HTTP route.
    async fn run(&self, inbox: std::sync::Arc<dyn Inbox>, shutdown: crate::shutdown::Shutdown);

    /// Posts `text` into `thread`; `turn` (when given) is recorded with the message so that
    /// [`ChatPlatform::find_turn`] can find it after a crash. Returns the new message's id.
    async fn post(
        &self,
        thread: &ThreadRef,
        text: &str,
        turn: Option<&str>,
    ) -> Result<String, PlatformError>;

    /// Replaces the text of a message the bot posted.
    async fn update(
        &self,
        thread: &ThreadRef,
        message_id: &str,
        text: &str,
    ) -> Result<(), PlatformError>;

    /// A short answer only `user` sees (a refusal).
    async fn post_private(
        &self,
        thread: &ThreadRef,
        user: &str,
        text: &str,
    ) -> Result<(), PlatformError>;

    /// Adds (`on`) or removes a reaction/mark on a message (`"eyes"`, `"hourglass"`).
    async fn mark(
        &self,
        thread: &ThreadRef,
        message_id: &str,
        name: &str,
        on: bool,
    ) -> Result<(), PlatformError>;

    /// Thread messages older than `before` (all when `None`), oldest first, at most `limit`.
    async fn history(
        &self,
        thread: &ThreadRef,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryMessage>, PlatformError>;

    /// The id of the bot's message in `thread` that carries `turn`, if one was posted.
    async fn find_turn(
        &self,
        thread: &ThreadRef,
        turn: &str,
    ) -> Result<Option<String>, PlatformError>;

    async fn user(&self, user: &str) -> Result<ChatUser, PlatformError>;

    /// Downloads an attached file, refusing more than `max_bytes`.
    async fn download(&self, file: &AttachedFile, max_bytes: u64) -> Result<Bytes, PlatformError>;

    /// The largest text one message may carry (the bridge splits longer replies).
    fn max_message_chars(&self) -> usize;
}
