//! Socket Mode: `apps.connections.open` (app token) gives a WebSocket URL; after `hello`, each
//! `events_api` envelope is turned into a message, stored in the inbox, and only then acked
//! with `{"envelope_id"}` (ignored events are acked at once; an inbox error leaves it un-acked
//! so Slack redelivers it). A `disconnect` envelope opens the next connection before the old
//! one is closed; any drop reconnects with capped backoff and jitter. Stops when the server
//! starts draining.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{SlackPlatform, events, web_api};
use crate::chat::platform::{Inbox, PlatformError};
use crate::shutdown::{Shutdown, Stage};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Time allowed to connect and receive `hello`.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// We ping this often; a connection silent for [`STALE_AFTER`] is replaced.
const PING_EVERY: Duration = Duration::from_secs(30);
const STALE_AFTER: Duration = Duration::from_secs(90);
/// How long a connection told to go away may still deliver after its successor is up.
const RETIRE_WITHIN: Duration = Duration::from_secs(5);
/// An inbox slower than this is treated as failing (Slack redelivers after 3 s anyway), so
/// one stuck write cannot stall the connection.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack's envelopes are small; refuse giant frames.
const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Receives events until shutdown; see the module header.
pub(super) async fn run(platform: &SlackPlatform, inbox: Arc<dyn Inbox>, shutdown: Shutdown) {
    let policy = platform.settings.retry;
    let mut failures: u32 = 0;
    loop {
        let opened = tokio::select! {
            _ = shutdown.reached(Stage::Draining) => break,
            opened = open(platform) => opened,
        };
        match opened {
            Ok(socket) => {
                failures = 0;
                platform.connected.store(true, Ordering::SeqCst);
                tracing::info!("slack socket mode connected");
                let stopped = serve(platform, socket, inbox.as_ref(), &shutdown).await;
                platform.connected.store(false, Ordering::SeqCst);
                if stopped {
                    break;
                }
                tracing::warn!("slack socket mode connection lost; reconnecting");
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %error, failures, "could not open a slack socket mode connection");
            }
        }
        let delay =
            policy.initial_backoff.saturating_mul(1 << failures.min(16)).min(policy.max_backoff);
        tokio::select! {
            _ = shutdown.reached(Stage::Draining) => break,
            _ = tokio::time::sleep(web_api::jittered(delay)) => {}
        }
    }
    platform.connected.store(false, Ordering::SeqCst);
}

/// Asks Slack for a URL, connects, and waits for `hello`.
async fn open(platform: &SlackPlatform) -> Result<Socket, PlatformError> {
    let unavailable = |why: &str| PlatformError::Unavailable(format!("socket mode: {why}"));
    let token = platform.settings.app_token.as_ref().ok_or_else(|| unavailable("no app token"))?;
    let answer = platform.api.call_form("apps.connections.open", token, &[]).await?;
    let url =
        answer["url"].as_str().ok_or_else(|| unavailable("no URL from apps.connections.open"))?;
    if !(url.starts_with("wss://") || url.starts_with("ws://")) {
        return Err(unavailable("apps.connections.open gave a URL that is not a WebSocket"));
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), false);
    let waited = tokio::time::timeout(OPEN_TIMEOUT, async {
        let (mut socket, _) =
            connect.await.map_err(|_| unavailable("the WebSocket did not open"))?;
        while let Some(frame) = socket.next().await {
            let Ok(Message::Text(text)) = frame else { continue };
            let envelope: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            if envelope["type"] == "hello" {
                return Ok(socket);
            }
        }
        Err(unavailable("the WebSocket closed before hello"))
    });
    waited.await.map_err(|_| unavailable("no hello in time"))?
}

/// What one text frame asks of us.
enum Action {
    Ack(String),
    Refresh,
    Nothing,
}

async fn handle(platform: &SlackPlatform, text: &str, inbox: &dyn Inbox) -> Action {
    let Ok(envelope) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("slack sent a frame that is not JSON");
        return Action::Nothing;
    };
    let envelope_id = envelope["envelope_id"].as_str().map(str::to_string);
    match envelope["type"].as_str() {
        Some("hello") => Action::Nothing,
        Some("disconnect") => {
            tracing::info!(reason = envelope["reason"].as_str(), "slack asks to reconnect");
            Action::Refresh
        }
        Some("events_api") => {
            let Some(envelope_id) = envelope_id else { return Action::Nothing };
            let Some(message) = events::incoming(&envelope["payload"], &platform.identity) else {
                return Action::Ack(envelope_id);
            };
            match tokio::time::timeout(STORE_TIMEOUT, inbox.store(message)).await {
                Ok(Ok(_)) => Action::Ack(envelope_id),
                Ok(Err(error)) => {
                    tracing::error!(error = %error, "could not store a slack event; slack will redeliver");
                    Action::Nothing
                }
                Err(_) => {
                    tracing::error!("storing a slack event timed out; slack will redeliver");
                    Action::Nothing
                }
            }
        }
        _ => envelope_id.map_or(Action::Nothing, Action::Ack),
    }
}

async fn ack(socket: &mut Socket, envelope_id: &str) -> bool {
    let ack = json!({"envelope_id": envelope_id}).to_string();
    socket.send(Message::text(ack)).await.is_ok()
}

/// The next frame of an optional socket (never, without one).
async fn next_frame(
    socket: &mut Option<Socket>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match socket {
        Some(socket) => socket.next().await,
        None => std::future::pending().await,
    }
}

/// Serves one connection (and the one it replaced, while it retires) until it drops (`false`)
/// or shutdown (`true`).
async fn serve(
    platform: &SlackPlatform,
    socket: Socket,
    inbox: &dyn Inbox,
    shutdown: &Shutdown,
) -> bool {
    let mut current = socket;
    let mut retiring: Option<Socket> = None;
    let mut retire_by = Instant::now();
    let mut last_frame = Instant::now();
    let mut pings = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.reached(Stage::Draining) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), current.close(None)).await;
                return true;
            }
            frame = current.next() => {
                last_frame = Instant::now();
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
                    Some(Ok(_)) => continue,
                };
                match handle(platform, text.as_str(), inbox).await {
                    Action::Ack(envelope_id) => {
                        if !ack(&mut current, &envelope_id).await {
                            return false;
                        }
                    }
                    Action::Refresh => match open(platform).await {
                        Ok(next) => {
                            let mut old = std::mem::replace(&mut current, next);
                            let _ = old.send(Message::Close(None)).await;
                            retiring = Some(old);
                            retire_by = Instant::now() + RETIRE_WITHIN;
                            last_frame = Instant::now();
                        }
                        Err(error) => {
                            tracing::warn!(error = %error, "could not open the next slack connection");
                        }
                    },
                    Action::Nothing => {}
                }
            }
            frame = next_frame(&mut retiring) => match frame {
                Some(Ok(Message::Text(text))) => {
                    let action = handle(platform, text.as_str(), inbox).await;
                    if let (Action::Ack(envelope_id), Some(old)) = (action, retiring.as_mut()) {
                        ack(old, &envelope_id).await;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => retiring = None,
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(retire_by), if retiring.is_some() => retiring = None,
            _ = pings.tick() => {
                if last_frame.elapsed() > STALE_AFTER || current.send(Message::Ping(Default::default())).await.is_err() {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_wss_url_uses_the_tls_stack_we_already_have() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            drop(stream);
        });
        let url = format!("wss://127.0.0.1:{}/link", address.port());
        let result = tokio_tungstenite::connect_async(url).await;
        assert!(
            result.is_err(),
            "a TLS handshake against a closed socket fails (and does not panic)"
        );
        server.await.expect("the server task ends");
    }
}
