//! The conversation state shared by every handler: messages, status, event subscribers, and
//! the process-wide switches (`hung`, requested exit code). Every change goes through here so
//! that each one is broadcast to `/events` subscribers while the lock is held: a subscriber
//! sees the replay and then every later change, with no gap and no duplicate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::text::{Text, quoted};

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};

/// How many frames a subscriber may fall behind before it is dropped (agentapi: 1024).
const SUBSCRIBER_BUFFER: usize = 1024;

/// `running` or `stable`, as agentapi reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Stable,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    User,
}

/// One conversation message. The first `len` bytes of `text` are what has been "typed" so
/// far (`escaped` is that prefix as a JSON string body), so a large reply grows without being
/// copied; `frame` is its latest `message_update` frame, kept for replays.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: usize,
    pub role: Role,
    pub text: Text,
    pub len: usize,
    pub escaped: Bytes,
    /// RFC 3339, already quoted for JSON.
    pub time: String,
    frame: Bytes,
}

#[cfg(test)]
impl Message {
    /// The content shown so far.
    pub fn content(&self) -> &str {
        let text = self.text.as_str();
        text.get(..self.len).unwrap_or(text)
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::User => "user",
        }
    }
}

/// The agent's state and switches; cheap to share behind an `Arc`.
pub struct Agent {
    inner: Mutex<ConversationState>,
    pub agent_type: String,
    pub transport: &'static str,
    hung: AtomicBool,
    hung_tx: watch::Sender<bool>,
    exit_tx: watch::Sender<Option<u8>>,
}

/// The conversation and who listens to it, behind the agent's one lock.
struct ConversationState {
    messages: Vec<Message>,
    status: Status,
    subscribers: Vec<mpsc::Sender<Bytes>>,
}

/// Current time as RFC 3339 UTC with fractional seconds (what Go's `time.Time` marshals to).
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// One SSE frame: `event: <name>\ndata: <json>\n\n`.
pub fn frame(event: &str, data: &impl Serialize) -> Bytes {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    // Serializing plain structs of strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut out, data).is_err() {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A `message_update` frame assembled from pieces (`escaped` may be tens of MiB).
fn message_frame(id: usize, role: Role, escaped: &[u8], time: &str) -> Bytes {
    let head = format!(
        "event: message_update\ndata: {{\"id\":{id},\"role\":\"{}\",\"message\":\"",
        role.as_str()
    );
    let tail = format!("\",\"time\":{time}}}\n\n");
    let mut out = Vec::with_capacity(head.len() + escaped.len() + tail.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(escaped);
    out.extend_from_slice(tail.as_bytes());
    Bytes::from(out)
}

impl Agent {
    /// A fresh agent holding the initial agent message, `running` unless `stable` is asked.
    pub fn new(agent_type: String, transport: &'static str, stable: bool) -> Arc<Self> {
        let (hung_tx, _) = watch::channel(false);
        let (exit_tx, _) = watch::channel(None);
        let agent = Arc::new(Agent {
            inner: Mutex::new(ConversationState {
                messages: Vec::new(),
                status: if stable { Status::Stable } else { Status::Running },
                subscribers: Vec::new(),
            }),
            agent_type,
            transport,
            hung: AtomicBool::new(false),
            hung_tx,
            exit_tx,
        });
        let text = Text::new("Echo agent ready.".to_string());
        let len = text.len();
        agent.push_message(Role::Agent, text, len);
        agent
    }

    fn lock(&self) -> MutexGuard<'_, ConversationState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        self.lock().status
    }

    /// A snapshot of every message (cheap: the texts are shared).
    pub fn messages(&self) -> Vec<Message> {
        self.lock().messages.clone()
    }

    /// Appends a message showing `text[..len]`; returns its id.
    pub fn push_message(&self, role: Role, text: Text, len: usize) -> usize {
        let time = quoted(&now_rfc3339());
        let escaped = text.escaped_prefix(len);
        let mut inner = self.lock();
        let id = inner.messages.len();
        let frame = message_frame(id, role, &escaped, &time);
        inner.messages.push(Message { id, role, text, len, escaped, time, frame: frame.clone() });
        inner.broadcast(frame);
        id
    }

    /// Shows more of message `id` (`len` bytes of its text); the frame is built outside the lock.
    pub fn grow_message(&self, id: usize, len: usize) {
        let Some(message) = self.lock().messages.get(id).cloned() else {
            return;
        };
        let escaped = message.text.escaped_prefix(len);
        let frame = message_frame(id, message.role, &escaped, &message.time);
        let mut inner = self.lock();
        if let Some(message) = inner.messages.get_mut(id) {
            message.len = len;
            message.escaped = escaped;
            message.frame = frame.clone();
            inner.broadcast(frame);
        }
    }

    /// Moves to `to` if the status is `from`; false when it was not.
    pub fn transition(&self, from: Status, to: Status) -> bool {
        let mut inner = self.lock();
        if inner.status != from {
            return false;
        }
        inner.status = to;
        let frame = inner.status_frame(&self.agent_type);
        inner.broadcast(frame);
        true
    }

    /// Emits an `agent_error` event (not replayed, like agentapi).
    pub fn agent_error(&self, message: &str) {
        #[derive(Serialize)]
        struct AgentError<'a> {
            message: &'a str,
            level: &'a str,
            time: String,
        }
        let frame =
            frame("agent_error", &AgentError { message, level: "error", time: now_rfc3339() });
        self.lock().broadcast(frame);
    }

    /// Registers an event subscriber; returns the replay (every message, then the status) and
    /// the receiver of every later frame.
    pub fn subscribe(&self) -> (Vec<Bytes>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
        let mut inner = self.lock();
        let mut replay: Vec<Bytes> = inner.messages.iter().map(|m| m.frame.clone()).collect();
        replay.push(inner.status_frame(&self.agent_type));
        inner.subscribers.push(tx);
        (replay, rx)
    }

    /// Stops answering HTTP from now on (`/fake hang`).
    pub fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
        self.hung_tx.send_replace(true);
    }

    pub fn is_hung(&self) -> bool {
        self.hung.load(Ordering::SeqCst)
    }

    pub fn hung_watch(&self) -> watch::Receiver<bool> {
        self.hung_tx.subscribe()
    }

    /// Asks the server to shut down and the process to exit with `code`.
    pub fn request_exit(&self, code: u8) {
        self.exit_tx.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(code);
                true
            } else {
                false
            }
        });
    }

    pub fn exit_watch(&self) -> watch::Receiver<Option<u8>> {
        self.exit_tx.subscribe()
    }
}

impl ConversationState {
    fn status_frame(&self, agent_type: &str) -> Bytes {
        #[derive(Serialize)]
        struct StatusChange<'a> {
            status: Status,
            agent_type: &'a str,
        }
        frame("status_change", &StatusChange { status: self.status, agent_type })
    }

    /// Sends `frame` to every subscriber; one that is gone or too far behind is dropped
    /// (its stream ends after what it already has), like agentapi.
    fn broadcast(&mut self, frame: Bytes) {
        self.subscribers.retain(|tx| tx.try_send(frame.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_then_live_without_gap() {
        let agent = Agent::new("custom".into(), "pty", true);
        let (replay, mut rx) = agent.subscribe();
        assert_eq!(replay.len(), 2);
        assert!(replay[0].starts_with(b"event: message_update\ndata: {\"id\":0,"));
        assert!(replay[1].starts_with(b"event: status_change\ndata: {\"status\":\"stable\""));
        assert!(agent.transition(Status::Stable, Status::Running));
        assert!(!agent.transition(Status::Stable, Status::Running));
        let text = Text::new("echo: hi".to_string());
        let id = agent.push_message(Role::Agent, text, 2);
        agent.grow_message(id, 8);
        let frames: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(frames.len(), 3);
        assert!(String::from_utf8_lossy(&frames[1]).contains("\"message\":\"ec\""));
        assert!(String::from_utf8_lossy(&frames[2]).contains("\"message\":\"echo: hi\""));
        assert_eq!(agent.messages()[1].content(), "echo: hi");
    }

    #[test]
    fn time_has_fraction_and_utc() {
        let t = now_rfc3339();
        assert!(t.ends_with('Z'), "{t}");
    }
}
