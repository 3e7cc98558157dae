//! The chat bridge (chat.md "Flow"): it is the platforms' [`Inbox`] (every incoming message
//! stored before the platform acknowledges it), processes stored messages in order (also
//! those left unprocessed by a crash), starts a session per thread through the session
//! manager, queues follow-ups durably, and runs one follower per live session that
//! delivers them and posts each turn's reply once. It reaches only its own tables.

mod agent;
mod follower;
mod handle;
pub mod metrics;
pub mod people;
mod start;
pub mod text;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::auth::api_keys::ApiKeys;
use crate::chat::platform::{
    AttachedFile, ChatPlatform, HistoryMessage, Inbox, IncomingMessage, PlatformError, Stored,
    ThreadRef,
};
use crate::config::{Config, SlackConfig};
use crate::sessions::SessionManager;
use crate::shutdown::{Shutdown, Stage};
use crate::store::chat::{ChatStore, ThreadRow};
use crate::store::profiles::ProfileStore;
use people::People;

/// How often the gauges are refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(5);
/// Inbox rows processed per read.
const INBOX_BATCH: usize = 64;
/// How often the inbox is read without being woken: another replica may have stored a
/// message (the Events API reaches any replica; one of them processes).
const INBOX_POLL: Duration = Duration::from_secs(1);
/// Message ids remembered to drop the second event Slack sends for one message (a mention
/// in a channel arrives as `app_mention` and as `message`).
const RECENT_MESSAGES: usize = 4096;

/// What the bridge is built from.
#[derive(Debug)]
pub struct BridgeParts {
    pub platform: Arc<dyn ChatPlatform>,
    pub store: Arc<dyn ChatStore>,
    pub sessions: SessionManager,
    pub profiles: Arc<dyn ProfileStore>,
    pub config: Arc<Config>,
    pub keys: Arc<ApiKeys>,
    pub shutdown: Shutdown,
}

/// A follow-up (or the first message) waiting in a session's queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Queued {
    text: String,
    #[serde(default)]
    files: Vec<AttachedFile>,
    /// The chat message it came from (to unmark it).
    message_id: String,
    /// Marked as waiting on the chat service.
    marked: bool,
}

/// How the bridge reaches a session's follower.
#[derive(Debug, Default)]
struct FollowerLink {
    /// Woken when the session's queue grows.
    wake: Notify,
    /// The agent is stable and nothing was sent to it since.
    stable: std::sync::atomic::AtomicBool,
}

/// The `GET /chat/status` entry of one platform.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformStatus {
    pub platform: &'static str,
    pub mode: &'static str,
    pub connected: bool,
    pub last_event_at: Option<String>,
    pub queue_depth: u64,
    pub live_threads: usize,
}

/// The running bridge; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bridge(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    platform: Arc<dyn ChatPlatform>,
    store: Arc<dyn ChatStore>,
    sessions: SessionManager,
    profiles: Arc<dyn ProfileStore>,
    people: People,
    settings: SlackConfig,
    public_url: String,
    http: reqwest::Client,
    /// Wakes the inbox processor.
    wake: Notify,
    /// Live followers by session id.
    followers: Mutex<HashMap<String, Arc<FollowerLink>>>,
    recent: Mutex<(HashSet<String>, VecDeque<String>)>,
    last_event_at_ms: AtomicI64,
    shutdown: Shutdown,
}

#[async_trait::async_trait]
impl Inbox for Bridge {
    async fn store(&self, message: IncomingMessage) -> anyhow::Result<Stored> {
        let inner = &self.0;
        let platform = inner.platform.name();
        let document = serde_json::to_string(&message)?;
        let now = crate::clock::now_ms();
        let new = inner
            .store
            .store_incoming(platform.into(), message.event_id.clone(), document, now)
            .await?;
        inner.last_event_at_ms.store(now, Ordering::Relaxed);
        if new {
            metrics::event(platform, "received");
            inner.wake.notify_one();
            Ok(Stored::New)
        } else {
            metrics::event(platform, "duplicate");
            Ok(Stored::Duplicate)
        }
    }
}

impl Bridge {
    /// Builds the bridge and starts its tasks: the platform's event loop, the inbox
    /// processor, and a follower for every thread whose session still lives.
    pub fn start(parts: BridgeParts) -> anyhow::Result<Self> {
        let bridge = Self::passive(parts)?;
        bridge.run_tasks();
        Ok(bridge)
    }

    /// Builds the bridge without its tasks: it stores incoming messages and answers the
    /// chat routes, while the replica that leads the bridge processes them.
    pub fn passive(parts: BridgeParts) -> anyhow::Result<Self> {
        metrics::describe();
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()?;
        let inner = Arc::new(Inner {
            platform: parts.platform,
            store: parts.store,
            sessions: parts.sessions,
            profiles: parts.profiles,
            people: People::new(parts.config.clone(), parts.keys),
            settings: parts.config.chat.slack.clone(),
            public_url: parts.config.server.public_url.trim_end_matches('/').to_string(),
            http,
            wake: Notify::new(),
            followers: Mutex::new(HashMap::new()),
            recent: Mutex::new((HashSet::new(), VecDeque::new())),
            last_event_at_ms: AtomicI64::new(0),
            shutdown: parts.shutdown,
        });
        Ok(Self(inner))
    }

    fn run_tasks(&self) {
        let events = self.clone();
        tokio::spawn(async move {
            let inbox: Arc<dyn Inbox> = Arc::new(events.clone());
            events.0.platform.run(inbox, events.0.shutdown.clone()).await;
        });
        let gauges = self.clone();
        tokio::spawn(async move { gauges.keep_gauges().await });
        let processor = self.clone();
        tokio::spawn(async move {
            processor.resume_threads().await;
            processor.process_inbox().await;
        });
    }

    /// Stops the bridge's tasks (another replica leads it now, or the server stops).
    pub fn stop(&self) {
        self.0.shutdown.advance_to(Stage::Draining);
    }

    /// The platform, for routes that hand it requests (the Events API).
    pub fn platform(&self) -> &Arc<dyn ChatPlatform> {
        &self.0.platform
    }

    /// `GET /chat/status`.
    pub async fn status(&self) -> anyhow::Result<PlatformStatus> {
        let inner = &self.0;
        let last = inner.last_event_at_ms.load(Ordering::Relaxed);
        let queue_depth = inner.store.queue_depth().await?;
        let live_threads = inner.store.live_threads().await?.len();
        metrics::queue_depth(inner.platform.name(), queue_depth);
        Ok(PlatformStatus {
            platform: inner.platform.name(),
            mode: inner.platform.mode(),
            connected: inner.platform.connected(),
            last_event_at: (last > 0).then(|| crate::clock::format_ms(last)),
            queue_depth,
            live_threads,
        })
    }

    /// The thread of a session (for the agent-facing chat routes).
    pub async fn thread_of(&self, session_id: &str) -> anyhow::Result<Option<ThreadRef>> {
        let row = self.0.store.thread_of_session(session_id.to_string()).await?;
        Ok(row.map(|row| thread_of_row(&row)))
    }

    /// Older messages of a session's thread (`GET /sessions/{id}/chat/history`).
    pub async fn history(
        &self,
        thread: &ThreadRef,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryMessage>, PlatformError> {
        self.0.platform.history(thread, before, limit).await
    }

    /// Posts an agent's note into its thread (`POST /sessions/{id}/chat/messages`).
    pub async fn post_note(&self, thread: &ThreadRef, text: &str) -> Result<String, PlatformError> {
        let posted = self.0.platform.post(thread, text, None).await;
        metrics::post(self.0.platform.name(), posted.is_ok());
        posted
    }

    /// Processes stored messages in order until shutdown.
    async fn process_inbox(&self) {
        let inner = &self.0;
        loop {
            if inner.shutdown.stage() != Stage::Running {
                return;
            }
            let rows = match inner.store.unprocessed(INBOX_BATCH).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "cannot read the chat inbox");
                    self.pause(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = tokio::time::sleep(INBOX_POLL) => {}
                    _ = inner.shutdown.reached(Stage::Draining) => return,
                }
                continue;
            }
            for row in rows {
                match serde_json::from_str::<IncomingMessage>(&row.message) {
                    Ok(message) if self.first_sight(&message) => self.handle(message).await,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "an unreadable chat inbox row"),
                }
                if let Err(error) = inner.store.mark_processed(row.seq).await {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "cannot mark a chat message processed"
                    );
                }
            }
        }
    }

    /// False for the second event of one chat message.
    fn first_sight(&self, message: &IncomingMessage) -> bool {
        let key =
            format!("{}/{}/{}", message.thread.team, message.thread.channel, message.message_id);
        let mut recent = self.0.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (seen, order) = &mut *recent;
        if !seen.insert(key.clone()) {
            return false;
        }
        order.push_back(key);
        if order.len() > RECENT_MESSAGES
            && let Some(oldest) = order.pop_front()
        {
            seen.remove(&oldest);
        }
        true
    }

    /// Keeps the connection-state and queue-depth gauges current.
    async fn keep_gauges(&self) {
        let platform = self.0.platform.name();
        while self.0.shutdown.stage() == Stage::Running {
            metrics::connected(platform, self.0.platform.connected());
            if let Ok(depth) = self.0.store.queue_depth().await {
                metrics::queue_depth(platform, depth);
            }
            self.pause(GAUGE_EVERY).await;
        }
    }

    /// Waits `pause` unless the server stops first.
    async fn pause(&self, pause: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = self.0.shutdown.reached(Stage::Draining) => {}
        }
    }

    /// After a restart: a follower for every thread whose session lives; the others are told
    /// their session ended.
    async fn resume_threads(&self) {
        let threads = match self.0.store.live_threads().await {
            Ok(threads) => threads,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read chat threads");
                return;
            }
        };
        for row in threads {
            self.follow(row.session_id.clone(), thread_of_row(&row), false);
        }
    }

    /// The link or id people see for a session.
    fn session_link(&self, session_id: &str) -> String {
        if self.0.public_url.is_empty() {
            format!("session `{session_id}`")
        } else {
            format!("{}/ui/sessions/{session_id}", self.0.public_url)
        }
    }

    /// One short answer only `user` sees; never a session.
    async fn refuse(&self, message: &IncomingMessage, reason: &'static str, text: &str) {
        metrics::event(self.0.platform.name(), reason);
        let answer = self.0.platform.post_private(&message.thread, &message.user, text).await;
        if let Err(error) = answer {
            tracing::warn!(%error, reason, "could not tell a chat user why they were refused");
        }
    }

    /// Posts into a thread, counting the outcome.
    async fn say(&self, thread: &ThreadRef, text: &str) {
        let posted = self.0.platform.post(thread, text, None).await;
        metrics::post(self.0.platform.name(), posted.is_ok());
        if let Err(error) = posted {
            tracing::warn!(%error, "could not post into a chat thread");
        }
    }
}

fn thread_of_row(row: &ThreadRow) -> ThreadRef {
    ThreadRef { team: row.team.clone(), channel: row.channel.clone(), root: row.root.clone() }
}
