//! `GET /sessions/events`: an event stream of the sessions the caller may see (admins: all).
//! First the current list (newest first, at most [`REPLAY_LIMIT`]) as `event: session`
//! frames, then `event: ready`, then one frame per change from the session feed: `session`
//! (created, `status` or `agent_status` changed; data = the `GET /sessions/{id}` object) or
//! `removed` (`{"session_id"}`). A `: ping` comment every `proxy.sse_heartbeat_seconds`.
//! The stream ends when the caller's credential ends or the server drains; it counts
//! against the caller's stream budget. A listener that falls behind the feed is resent the
//! current list (with `removed` for what went meanwhile) instead of losing changes.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use agentapi_proxy_client::SessionDetail;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::openapi::responses::{Forbidden, GithubUnavailable, TooManyStreams, Unauthenticated};
use crate::proxy::StreamTicket;
use crate::sessions::feed::SessionChange;
use crate::shutdown::Stage;
use crate::state::AppState;

/// Most sessions replayed when a stream opens (or resynchronises).
pub const REPLAY_LIMIT: usize = 500;
/// The heartbeat comment, as on proxied event streams.
const PING: &[u8] = b": ping\n\n";
/// Frames buffered for a slow client before the feed itself starts to lag.
const OUTBOX: usize = 64;

/// `GET /sessions/events`
#[utoipa::path(
    get,
    path = "/sessions/events",
    tag = "sessions",
    operation_id = "sessionEvents",
    summary = "Live changes of the sessions the caller may see (permission session:list)",
    description = "A `text/event-stream`. First `event: session` for each current session \
        (newest first, at most 500), then `event: ready` with `data: {}`. Then `event: \
        session` whenever a session is created or its `status` or `agent_status` changes \
        (data: the `GET /sessions/{id}` object as of that change), and `event: removed` with \
        `data: {\"session_id\": ...}` when one is deleted or purged. Admins see every \
        user's sessions, others their own. A `: ping` comment every \
        `proxy.sse_heartbeat_seconds`. The stream ends when the credential ends (logout, key \
        removed, expiry; within 15 s) or the server drains. Counts against \
        `proxy.max_streams_per_user`.",
    responses(
        (status = 200, description = "The event stream.", body = String,
            content_type = "text/event-stream"),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyStreams),
        (status = 503, response = GithubUnavailable),
    )
)]
pub async fn events(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Permission::SessionList)?;
    let ticket =
        state.proxy.streams.try_open(&caller.user_id).ok_or_else(|| ApiError::QuotaExceeded {
            message: format!(
                "too many open streams: at most {} per user (proxy.max_streams_per_user)",
                state.proxy.streams.max()
            ),
            retry_after_seconds: 5,
        })?;
    let changes = state.sessions.changes();
    let (outbox, frames) = mpsc::channel::<Bytes>(OUTBOX);
    tokio::spawn(feed_stream(state, caller, changes, outbox, ticket));
    let body = futures_util::stream::unfold(frames, |mut frames| async move {
        frames.recv().await.map(|frame| (Ok::<_, Infallible>(frame), frames))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn frame(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn session_frame(detail: &SessionDetail) -> Bytes {
    match serde_json::to_string(detail) {
        Ok(data) => frame("session", &data),
        Err(_) => Bytes::new(),
    }
}

fn removed_frame(session_id: &str) -> Bytes {
    frame("removed", &json!({ "session_id": session_id }).to_string())
}

/// Writes one caller's stream until it ends; `known` is what the client has been told exists.
async fn feed_stream(
    state: AppState,
    caller: Caller,
    mut changes: broadcast::Receiver<SessionChange>,
    outbox: mpsc::Sender<Bytes>,
    _ticket: StreamTicket,
) {
    let visible = |owner: &str| caller.can_see(owner);
    let mut known = HashSet::new();
    if replay(&state, &visible, &mut known, &outbox).await.is_err()
        || outbox.send(frame("ready", "{}")).await.is_err()
    {
        return;
    }
    let revoked = crate::routes::proxy::credential_ended(state.clone(), caller.clone());
    tokio::pin!(revoked);
    let draining = state.shutdown.reached(Stage::Draining);
    tokio::pin!(draining);
    let mut heartbeat = state
        .proxy
        .sse_heartbeat
        .map(|period| tokio::time::interval_at(tokio::time::Instant::now() + period, period));
    loop {
        let next = tokio::select! {
            biased;
            () = outbox.closed() => return,
            () = &mut draining => return,
            () = &mut revoked => return,
            change = changes.recv() => change,
            () = tick(&mut heartbeat) => {
                if outbox.send(Bytes::from_static(PING)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let sent = match next {
            Ok(change) if !visible(change.user_id()) => Ok(()),
            Ok(SessionChange::Updated(detail)) => {
                known.insert(detail.summary.session_id.clone());
                outbox.send(session_frame(&detail)).await
            }
            Ok(SessionChange::Removed { session_id, .. }) => {
                known.remove(&*session_id);
                outbox.send(removed_frame(&session_id)).await
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "a session event stream fell behind; replaying");
                changes = changes.resubscribe();
                replay(&state, &visible, &mut known, &outbox).await
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The next heartbeat; never without one.
async fn tick(heartbeat: &mut Option<tokio::time::Interval>) {
    match heartbeat {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sends `removed` for every known session that is gone, then the current list.
async fn replay(
    state: &AppState,
    visible: &impl Fn(&str) -> bool,
    known: &mut HashSet<String>,
    outbox: &mpsc::Sender<Bytes>,
) -> Result<(), mpsc::error::SendError<Bytes>> {
    let current: Vec<Arc<crate::sessions::Session>> =
        state.sessions.newest_visible(visible, REPLAY_LIMIT);
    let now: HashSet<String> = current.iter().map(|session| session.id.clone()).collect();
    for gone in known.difference(&now) {
        outbox.send(removed_frame(gone)).await?;
    }
    *known = now;
    for session in current {
        outbox.send(session_frame(&session.detail())).await?;
    }
    Ok(())
}
