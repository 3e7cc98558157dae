//! A fake Slack on 127.0.0.1 for the chat tests, following Slack's documented wire behaviour:
//! the Web API methods the bridge uses (`web_api`), a Socket Mode WebSocket server that
//! redelivers un-acked envelopes and can send `disconnect` or drop abruptly (`socket`), files
//! behind the bot token, and a signer for Events API requests. Everything the client does is
//! recorded for assertions (messages per thread, updates, ephemerals, reactions, acks).

mod events;
mod signing;
mod socket;
mod web_api;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

pub use signing::{signature, signed_headers, unix_now};
pub use socket::ConnectionEvent;

pub const BOT_TOKEN: &str = "xoxb-fake-0000-bot-token-secret";
pub const APP_TOKEN: &str = "xapp-1-fake-0000-app-token-secret";
pub const SIGNING_SECRET: &str = "fake-signing-secret-8f3a";
pub const TEAM_ID: &str = "T0FAKETEAM";
pub const APP_ID: &str = "A0FAKEAPP";
pub const BOT_USER_ID: &str = "U0FAKEBOT";
pub const BOT_ID: &str = "B0FAKEBOT";
/// A public channel the bot is in.
pub const CHANNEL: &str = "C0GENERAL";
/// The direct-message channel between [`ALICE`] and the bot.
pub const DM_CHANNEL: &str = "D0ALICEDM";
pub const ALICE: &str = "U0ALICE";
pub const BOB: &str = "U0BOB";

/// How a Web API method misbehaves on its next calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 429 with `Retry-After: <seconds>` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// This HTTP status (5xx) with an HTML body, as a load balancer answers.
    Status(u16),
}

/// A message as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub ts: String,
    pub thread_ts: Option<String>,
    pub user: Option<String>,
    pub bot_id: Option<String>,
    pub text: String,
    pub metadata: Option<Value>,
    /// Reaction name → users who reacted.
    pub reactions: Vec<(String, Vec<String>)>,
    pub edited: bool,
    pub files: Vec<Value>,
}

impl StoredMessage {
    /// The thread this message belongs to (its own `ts` for a root).
    pub fn root(&self) -> &str {
        self.thread_ts.as_deref().unwrap_or(&self.ts)
    }

    fn to_json(&self, with_metadata: bool) -> Value {
        let mut message = json!({"type": "message", "ts": self.ts, "text": self.text});
        let object = message.as_object_mut().expect("a json! object is an object");
        if let Some(thread_ts) = &self.thread_ts {
            object.insert("thread_ts".into(), json!(thread_ts));
        }
        if let Some(user) = &self.user {
            object.insert("user".into(), json!(user));
        }
        if let Some(bot_id) = &self.bot_id {
            object.insert("bot_id".into(), json!(bot_id));
            object.insert("app_id".into(), json!(APP_ID));
        }
        if with_metadata && let Some(metadata) = &self.metadata {
            object.insert("metadata".into(), metadata.clone());
        }
        if self.edited {
            object.insert("edited".into(), json!({"user": self.user, "ts": self.ts}));
        }
        if !self.files.is_empty() {
            object.insert("files".into(), json!(self.files));
        }
        if !self.reactions.is_empty() {
            let reactions: Vec<Value> = self
                .reactions
                .iter()
                .map(|(name, users)| json!({"name": name, "users": users, "count": users.len()}))
                .collect();
            object.insert("reactions".into(), json!(reactions));
        }
        message
    }
}

/// An ephemeral message (`chat.postEphemeral`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub thread_ts: Option<String>,
    pub text: String,
}

/// A `chat.update` call that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub channel: String,
    pub ts: String,
    pub text: String,
}

/// A user as `users.info` shows it.
#[derive(Debug, Clone, Default)]
pub struct FakeUser {
    pub name: String,
    pub display_name: String,
    pub real_name: String,
    pub email: Option<String>,
}

/// A hosted file.
#[derive(Debug, Clone)]
struct HostedFile {
    bytes: Vec<u8>,
    /// Send `Content-Length` (else the body is streamed in chunks without it).
    announce_length: bool,
}

/// An event handed to the fake's Socket Mode or to an Events API request.
#[derive(Debug, Clone)]
pub struct Injected {
    pub event_id: String,
    /// The message's `ts` (for message events).
    pub ts: String,
    /// The whole `event_callback` payload.
    pub payload: Value,
}

#[derive(Debug, Default)]
pub struct State {
    /// Channel id → its messages, oldest first.
    channels: HashMap<String, Vec<StoredMessage>>,
    ims: Vec<String>,
    users: HashMap<String, FakeUser>,
    files: HashMap<String, HostedFile>,
    failures: HashMap<String, VecDeque<Failure>>,
    /// Method name → number of calls (failed ones included).
    calls: HashMap<String, usize>,
    updates: Vec<Update>,
    ephemerals: Vec<Ephemeral>,
}

#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    /// Microseconds added to the next `ts`.
    next_ts: AtomicU64,
    next_event: AtomicU64,
    pub(crate) socket: socket::SocketState,
    base: String,
}

/// A running fake Slack; it stops when dropped.
pub struct FakeSlack {
    /// The Web API base (`http://127.0.0.1:port/api`), like `https://slack.com/api`.
    pub api_url: String,
    /// Where hosted files live (`http://127.0.0.1:port/files`).
    pub files_url: String,
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.socket.abort_all();
    }
}

impl FakeSlack {
    /// Starts the Web API and the Socket Mode server; un-acked envelopes are redelivered
    /// after `redeliver_after`.
    pub async fn start(redeliver_after: Duration) -> Self {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake api");
        let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake socket");
        let base = format!("http://{}", http.local_addr().expect("address"));
        let ws_base = format!("ws://{}", ws.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            next_ts: AtomicU64::new(100),
            next_event: AtomicU64::new(1),
            socket: socket::SocketState::new(ws_base, redeliver_after),
            base: base.clone(),
        });
        {
            let mut state = shared.state();
            state.channels.insert(CHANNEL.into(), Vec::new());
            state.channels.insert(DM_CHANNEL.into(), Vec::new());
            state.ims.push(DM_CHANNEL.into());
            for (id, name, email) in
                [(ALICE, "alice", "alice@example.com"), (BOB, "bob", "bob@example.com")]
            {
                let user = FakeUser {
                    name: name.into(),
                    display_name: name.into(),
                    real_name: format!("{name} Example"),
                    email: Some(email.into()),
                };
                state.users.insert(id.into(), user);
            }
        }
        let app = web_api::router(shared.clone());
        let api = tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        let sockets = tokio::spawn(socket::serve(ws, shared.clone()));
        let redelivery = tokio::spawn(socket::redeliver(shared.clone()));
        Self {
            api_url: format!("{base}/api"),
            files_url: format!("{base}/files"),
            shared,
            tasks: vec![api, sockets, redelivery],
        }
    }

    /// The next `times` calls of `method` fail as `failure` says.
    pub fn fail_next(&self, method: &str, times: usize, failure: Failure) {
        let mut state = self.shared.state();
        let queue = state.failures.entry(method.into()).or_default();
        queue.extend(std::iter::repeat_n(failure, times));
    }

    /// How many times `method` was called (refused and failed calls included).
    pub fn calls(&self, method: &str) -> usize {
        self.shared.state().calls.get(method).copied().unwrap_or(0)
    }

    pub fn add_channel(&self, channel: &str) {
        self.shared.state().channels.entry(channel.into()).or_default();
    }

    pub fn add_user(&self, id: &str, user: FakeUser) {
        self.shared.state().users.insert(id.into(), user);
    }

    /// Hosts `bytes` as a file and returns its `url_private_download`.
    pub fn host_file(&self, id: &str, name: &str, bytes: Vec<u8>, announce_length: bool) -> String {
        self.shared.state().files.insert(id.into(), HostedFile { bytes, announce_length });
        format!("{}/{id}/download/{name}", self.files_url)
    }

    /// Every message of the thread rooted at `root`, root first.
    pub fn thread(&self, channel: &str, root: &str) -> Vec<StoredMessage> {
        let state = self.shared.state();
        let messages = state.channels.get(channel).map(Vec::as_slice).unwrap_or_default();
        messages.iter().filter(|message| message.root() == root).cloned().collect()
    }

    /// The bot's messages in the thread rooted at `root`.
    pub fn bot_posts(&self, channel: &str, root: &str) -> Vec<StoredMessage> {
        let mut posts = self.thread(channel, root);
        posts.retain(|message| message.bot_id.is_some());
        posts
    }

    pub fn message(&self, channel: &str, ts: &str) -> Option<StoredMessage> {
        let state = self.shared.state();
        state.channels.get(channel)?.iter().find(|message| message.ts == ts).cloned()
    }

    pub fn updates(&self) -> Vec<Update> {
        self.shared.state().updates.clone()
    }

    pub fn ephemerals(&self) -> Vec<Ephemeral> {
        self.shared.state().ephemerals.clone()
    }

    /// Reaction names on a message.
    pub fn reactions(&self, channel: &str, ts: &str) -> Vec<String> {
        let message = self.message(channel, ts);
        message
            .map(|message| message.reactions.into_iter().map(|(name, _)| name).collect())
            .unwrap_or_default()
    }

    /// Asks the live connections to reconnect (`refresh_requested`, `warning`, ...); the fake
    /// closes them itself after `close_after` unless the client did first.
    pub fn send_disconnect(&self, reason: &str, close_after: Duration) {
        self.shared.socket.disconnect_all(reason, close_after);
    }

    /// Drops every Socket Mode connection without a close frame.
    pub fn drop_connections(&self) {
        self.shared.socket.abort_all();
    }

    /// Envelope ids acked for `event_id`, in order.
    pub fn acks(&self, event_id: &str) -> Vec<String> {
        self.shared.socket.acks(event_id)
    }

    /// How many times the envelope carrying `event_id` was sent.
    pub fn deliveries(&self, event_id: &str) -> usize {
        self.shared.socket.deliveries(event_id)
    }

    /// Opened and closed Socket Mode connections, in order.
    pub fn connection_log(&self) -> Vec<ConnectionEvent> {
        self.shared.socket.log()
    }

    /// Socket Mode connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.socket.open_count()
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the fake's state lock is never poisoned")
    }

    /// A fresh, increasing `ts` like `"1733140000.000100"`.
    fn next_ts(&self) -> String {
        let micros = self.next_ts.fetch_add(100, Ordering::SeqCst);
        format!("{}.{:06}", 1_733_140_000 + micros / 1_000_000, micros % 1_000_000)
    }

    /// Stores `message` with a fresh `ts` and returns it.
    fn store_message(&self, channel: &str, mut message: StoredMessage) -> String {
        let ts = self.next_ts();
        message.ts = ts.clone();
        self.state().channels.entry(channel.into()).or_default().push(message);
        ts
    }
}
