//! Chat routes (chat.md): `POST /chat/slack/events` (Slack's Events API; Slack's signature
//! instead of proxy authentication), `GET /chat/status` (admin), and the agent-facing
//! `GET /sessions/{id}/chat/history` and `POST /sessions/{id}/chat/messages` (the session's
//! agent token, or its owner or an admin; only the session's own thread).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::json_body::JsonBody;
use super::query;
use super::sessions::visible_session;
use crate::auth::{AuthType, Caller, Permission};
use crate::chat::platform::{PlatformError, ThreadRef};
use crate::chat::setup::Chat;
use crate::chat::slack::MAX_EVENT_BODY_BYTES;
use crate::error::ApiError;
use crate::openapi::params::SessionIdPath;
use crate::openapi::responses::{
    BadRequest, Forbidden, Internal, NotFound, PayloadTooLarge, Unauthenticated,
    UnsupportedMediaType,
};
use crate::state::AppState;

/// Default and largest `limit` of the history route.
const DEFAULT_HISTORY: u64 = 20;
const MAX_HISTORY: u64 = 200;
/// Longest note an agent may post (Slack's own hard limit on `text`).
const MAX_NOTE_CHARS: usize = 40_000;

fn chat(state: &AppState) -> Result<&Chat, ApiError> {
    state.chat.get().ok_or(ApiError::NotFound("no chat bridge runs"))
}

/// `POST /chat/slack/events`
#[utoipa::path(
    post,
    path = "/chat/slack/events",
    tag = "chat",
    operation_id = "slackEvents",
    summary = "Slack's Events API (events mode only; Slack's request signature, no proxy auth)",
    description = "A bad, missing or stale (over 300 s from now) `X-Slack-Signature` is 401.",
    security(),
    request_body(content = Object, description = "An Events API payload (at most 1 MiB)."),
    responses(
        (status = 200, description = "Stored (or a duplicate, or nothing for the bridge); \
            `url_verification` is answered with its `challenge`.", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
    )
)]
pub async fn slack_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let chat = chat(&state)?;
    if state.config.chat.slack.mode != "events" {
        return Err(ApiError::NotFound("the Slack Events API is not enabled"));
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    let limit = MAX_EVENT_BODY_BYTES;
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit: limit as u64 });
    }
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit: limit as u64 })?;
    let answer = chat.slack.receive_http(&headers, &body, &chat.bridge).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((status, Json(answer.body)).into_response())
}

/// `GET /chat/status` answer.
#[derive(Serialize, ToSchema)]
pub struct ChatStatus {
    /// One entry per running chat platform.
    #[schema(value_type = Vec<Object>)]
    pub platforms: Vec<crate::chat::bridge::PlatformStatus>,
}

/// `GET /chat/status`
#[utoipa::path(
    get,
    path = "/chat/status",
    tag = "chat",
    operation_id = "chatStatus",
    summary = "The chat bridges' state (admin)",
    responses(
        (status = 200, body = ChatStatus, example = json!({"platforms": [{"platform": "slack",
            "mode": "socket", "connected": true, "last_event_at": "2026-12-02T10:00:00.000Z",
            "queue_depth": 0, "live_threads": 3}]})),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ChatStatus>, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden("the chat status is for admins".into()));
    }
    let mut platforms = Vec::new();
    if let Some(chat) = state.chat.get() {
        platforms.push(chat.bridge.status().await.map_err(ApiError::Internal)?);
    }
    Ok(Json(ChatStatus { platforms }))
}

/// The thread of a session the caller may use: its agent (token) or, with
/// `session:access`, its owner or an admin.
async fn own_thread(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(Chat, ThreadRef), ApiError> {
    if caller.auth_type != AuthType::SessionToken {
        caller.require(Permission::SessionAccess)?;
    }
    let session = visible_session(state, caller, id)?;
    let chat = chat(state)?.clone();
    let thread = chat
        .bridge
        .thread_of(&session.id)
        .await
        .map_err(ApiError::Internal)?
        .ok_or(ApiError::NotFound("this session has no chat thread"))?;
    Ok((chat, thread))
}

fn platform_error(error: PlatformError) -> ApiError {
    ApiError::AgentUnavailable {
        code: "chat_unavailable",
        message: format!("{error}"),
        details: None,
    }
}

/// One message of the history answer.
#[derive(Serialize, ToSchema)]
pub struct ChatHistoryMessage {
    pub message_id: String,
    pub user: Option<String>,
    pub text: String,
    pub from_bot: bool,
}

/// `GET /sessions/{id}/chat/history` answer.
#[derive(Serialize, ToSchema)]
pub struct ChatHistory {
    pub messages: Vec<ChatHistoryMessage>,
}

/// `GET /sessions/{id}/chat/history?before=<ts>&limit=N`
#[utoipa::path(
    get,
    path = "/sessions/{id}/chat/history",
    tag = "chat",
    operation_id = "chatHistory",
    summary = "Older messages of the session's own thread (agent token, or owner/admin with session:access)",
    params(SessionIdPath,
        ("before" = Option<String>, Query, description = "Only messages older than this id (Slack `ts`)."),
        ("limit" = Option<u64>, Query, description = "At most this many (20, max 200)."),
    ),
    responses(
        (status = 200, body = ChatHistory),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw_query): RawQuery,
) -> Result<Json<ChatHistory>, ApiError> {
    let (chat, thread) = own_thread(&state, &caller, &id).await?;
    let params = query::pairs(raw_query.as_deref())?;
    let limit = query::number(&params, "limit", DEFAULT_HISTORY)?.clamp(1, MAX_HISTORY);
    let before = query::text(&params, "before");
    let found =
        chat.bridge.history(&thread, before, limit as usize).await.map_err(platform_error)?;
    let messages = found
        .into_iter()
        .map(|m| ChatHistoryMessage {
            message_id: m.message_id,
            user: m.user,
            text: m.text,
            from_bot: m.from_bot,
        })
        .collect();
    Ok(Json(ChatHistory { messages }))
}

/// `POST /sessions/{id}/chat/messages` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatNote {
    /// The note or question (not empty, at most 40,000 characters).
    pub text: String,
}

/// `POST /sessions/{id}/chat/messages` answer.
#[derive(Serialize, ToSchema)]
pub struct ChatPosted {
    pub message_id: String,
}

/// `POST /sessions/{id}/chat/messages`
#[utoipa::path(
    post,
    path = "/sessions/{id}/chat/messages",
    tag = "chat",
    operation_id = "chatPost",
    summary = "Post a note into the session's own thread (agent token, or owner/admin with session:access)",
    params(SessionIdPath),
    request_body = ChatNote,
    responses(
        (status = 200, body = ChatPosted),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub async fn post_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(note): JsonBody<ChatNote>,
) -> Result<Json<ChatPosted>, ApiError> {
    let text = note.text.trim();
    if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("`text` must hold 1 to {MAX_NOTE_CHARS} characters"),
        ));
    }
    let (chat, thread) = own_thread(&state, &caller, &id).await?;
    let message_id = chat.bridge.post_note(&thread, text).await.map_err(platform_error)?;
    Ok(Json(ChatPosted { message_id }))
}
