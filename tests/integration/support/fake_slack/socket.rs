//! The fake's Socket Mode server: `apps.connections.open` hands out single-use URLs; a
//! connection gets `hello`, then `events_api` envelopes on the newest connection; an envelope
//! not acked (`{"envelope_id"}`) within the redelivery delay is sent again with
//! `retry_attempt` + 1 and a new `envelope_id`. It can send `disconnect` and close later, or
//! drop connections without a close frame.

// tungstenite's handshake callback returns its (large) error response by value.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::{APP_ID, Shared};

/// A connection opening or closing, in the order the fake saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionEvent {
    Opened(u64),
    Closed(u64),
}

enum Command {
    Send(String),
    Close,
    Abort,
}

struct Connection {
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
    /// Told to reconnect: gets no new envelopes.
    retiring: bool,
}

struct Pending {
    event_id: String,
    payload: Value,
    attempts: u32,
    last_sent: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    tickets: HashSet<String>,
    connections: Vec<Connection>,
    pending: Vec<Pending>,
    envelope_events: HashMap<String, String>,
    acks: HashMap<String, Vec<String>>,
    deliveries: HashMap<String, usize>,
    log: Vec<ConnectionEvent>,
}

pub struct SocketState {
    ws_base: String,
    redeliver_after: Duration,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for SocketState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SocketState").field("ws_base", &self.ws_base).finish()
    }
}

impl SocketState {
    pub fn new(ws_base: String, redeliver_after: Duration) -> Self {
        Self { ws_base, redeliver_after, inner: Mutex::new(Inner::default()) }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("the fake's socket lock is never poisoned")
    }

    /// A fresh single-use connection URL (what `apps.connections.open` returns).
    pub fn new_url(&self, app_id: &str) -> String {
        let ticket = uuid::Uuid::new_v4().to_string();
        self.inner().tickets.insert(ticket.clone());
        format!("{}/link/?ticket={ticket}&app_id={app_id}", self.ws_base)
    }

    pub fn deliver(&self, event_id: &str, payload: Value) {
        let mut inner = self.inner();
        let pending = Pending { event_id: event_id.into(), payload, attempts: 0, last_sent: None };
        inner.pending.push(pending);
        send_due(&mut inner, Duration::MAX);
    }

    pub fn disconnect_all(&self, reason: &str, close_after: Duration) {
        let message =
            json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-socket"}});
        let mut inner = self.inner();
        for connection in inner.connections.iter_mut().filter(|connection| !connection.retiring) {
            connection.retiring = true;
            let _ = connection.commands.send(Command::Send(message.to_string()));
            let commands = connection.commands.clone();
            tokio::spawn(async move {
                tokio::time::sleep(close_after).await;
                let _ = commands.send(Command::Close);
            });
        }
    }

    pub fn abort_all(&self) {
        for connection in &self.inner().connections {
            let _ = connection.commands.send(Command::Abort);
        }
    }

    pub fn acks(&self, event_id: &str) -> Vec<String> {
        self.inner().acks.get(event_id).cloned().unwrap_or_default()
    }

    pub fn deliveries(&self, event_id: &str) -> usize {
        self.inner().deliveries.get(event_id).copied().unwrap_or(0)
    }

    pub fn log(&self) -> Vec<ConnectionEvent> {
        self.inner().log.clone()
    }

    pub fn open_count(&self) -> usize {
        self.inner().connections.len()
    }

    fn acked(&self, envelope_id: &str) {
        let mut inner = self.inner();
        let Some(event_id) = inner.envelope_events.get(envelope_id).cloned() else { return };
        inner.acks.entry(event_id.clone()).or_default().push(envelope_id.into());
        inner.pending.retain(|pending| pending.event_id != event_id);
    }
}

/// Sends every pending envelope never sent, or last sent more than `redeliver_after` ago, to
/// the newest connection not told to reconnect.
fn send_due(inner: &mut Inner, redeliver_after: Duration) {
    let Some(target) = inner.connections.iter().rev().find(|connection| !connection.retiring)
    else {
        return;
    };
    let commands = target.commands.clone();
    let now = Instant::now();
    let mut sent = Vec::new();
    for pending in &mut inner.pending {
        let due = pending.last_sent.is_none_or(|at| now.duration_since(at) >= redeliver_after);
        if !due {
            continue;
        }
        if pending.last_sent.is_some() {
            pending.attempts += 1;
        }
        pending.last_sent = Some(now);
        let envelope_id = uuid::Uuid::new_v4().to_string();
        let envelope = json!({
            "envelope_id": envelope_id, "payload": pending.payload, "type": "events_api",
            "accepts_response_payload": false, "retry_attempt": pending.attempts,
            "retry_reason": if pending.attempts == 0 { "" } else { "timeout" },
        });
        let _ = commands.send(Command::Send(envelope.to_string()));
        sent.push((envelope_id, pending.event_id.clone()));
    }
    for (envelope_id, event_id) in sent {
        *inner.deliveries.entry(event_id.clone()).or_default() += 1;
        inner.envelope_events.insert(envelope_id, event_id);
    }
}

/// Redelivers un-acked envelopes until the fake stops.
pub async fn redeliver(shared: Arc<Shared>) {
    let socket = &shared.socket;
    let tick = (socket.redeliver_after / 4).max(Duration::from_millis(20));
    loop {
        tokio::time::sleep(tick).await;
        send_due(&mut socket.inner(), socket.redeliver_after);
    }
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, shared.clone()));
    }
}

async fn connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let socket = &shared.socket;
    let check_ticket = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let query = request.uri().query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        let ticket = pairs.into_iter().find(|(key, _)| key == "ticket").map(|(_, value)| value);
        let valid = ticket.is_some_and(|ticket| socket.inner().tickets.remove(&ticket));
        if valid {
            Ok(response)
        } else {
            let mut refusal = ErrorResponse::new(Some("invalid ticket".into()));
            *refusal.status_mut() = http::StatusCode::UNAUTHORIZED;
            Err(refusal)
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, check_ticket).await else {
        return;
    };
    let (commands, mut incoming) = mpsc::unbounded_channel();
    let id = {
        let mut inner = socket.inner();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.log.push(ConnectionEvent::Opened(id));
        let hello = json!({
            "type": "hello", "num_connections": inner.connections.len() + 1,
            "debug_info": {"host": format!("fake-socket-{id}"), "build_number": 1,
                "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        });
        let _ = commands.send(Command::Send(hello.to_string()));
        inner.connections.push(Connection { id, commands, retiring: false });
        send_due(&mut inner, Duration::MAX);
        id
    };
    loop {
        tokio::select! {
            command = incoming.recv() => match command {
                Some(Command::Send(text)) => {
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Command::Close) => {
                    let _ = ws.close(None).await;
                    break;
                }
                Some(Command::Abort) | None => break,
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let ack: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                    if let Some(envelope_id) = ack["envelope_id"].as_str() {
                        socket.acked(envelope_id);
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    let _ = ws.flush().await;
                    break;
                }
                Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let mut inner = socket.inner();
    inner.connections.retain(|connection| connection.id != id);
    inner.log.push(ConnectionEvent::Closed(id));
}
