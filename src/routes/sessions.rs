//! Session routes: `POST /start`, `GET /search`, `GET /sessions/{id}`,
//! `GET /sessions/{id}/logs`, `DELETE /sessions/{id}`. Each checks its permission and the
//! caller's right to see the session explicitly; a session the caller may not see is 404.

use std::sync::Arc;

use agentapi_proxy_client::{
    DeleteResponse, SearchResponse, SessionDetail, SessionStatus, StartRequest, StartResponse,
};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use http::header;

use super::json_body::JsonBody;
use super::query;
use crate::auth::{Caller, Permission};
use crate::clock::format_ms;
use crate::error::ApiError;
use crate::openapi::params::{SearchParams, SessionIdPath, TailParam, WaitParam};
use crate::openapi::responses::{
    AgentFailedToStart, AgentTimeout, BadRequest, Forbidden, GithubUnavailable, Internal, NotFound,
    PayloadTooLarge, QuotaExceeded, StartUnavailable, Started, StopTimeout, StoreUnavailable,
    Unauthenticated, UnsupportedMediaType,
};
use crate::sessions::{Session, StartInput, first_prompt, validate};
use crate::state::AppState;
use crate::store::sessions::SessionFilter;

/// Default and largest page of `/search`.
const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 1000;
/// Default and largest `tail` of `/logs`.
const DEFAULT_TAIL: u64 = 200;
const MAX_TAIL: u64 = 10_000;

/// The session `id` names, if the caller may see it; 404 otherwise (also for ids that are
/// not canonical UUIDs, before any lookup).
pub fn visible_session(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Arc<Session>, ApiError> {
    const UNKNOWN: ApiError = ApiError::NotFound("no such session");
    if !validate::is_session_id(id) {
        return Err(UNKNOWN);
    }
    let session = state.sessions.get(id).ok_or(UNKNOWN)?;
    if !caller.can_see(&session.user_id) {
        return Err(UNKNOWN);
    }
    Ok(session)
}

/// `POST /start`
#[utoipa::path(
    post,
    path = "/start",
    tag = "sessions",
    operation_id = "startSession",
    summary = "Start a session (permission session:create)",
    description = "Answers once the agent answers `/status` on its port, within \
        `session.ready_timeout_seconds`, unless `wait=false`. The owner is the authenticated \
        user (`anonymous` without auth); a `user_id` in the body is ignored. The first prompt \
        is `tags.message` if non-empty, else `message`; it is delivered once the agent is \
        `stable`. An empty body reads as `{}`.",
    params(WaitParam),
    request_body(
        description = "Every field optional; an empty body reads as `{}`.",
        content = ref("#/components/schemas/StartRequest"),
        content_type = "application/json"
    ),
    responses(
        (status = 200, response = Started),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = QuotaExceeded),
        (status = 500, response = Internal),
        (status = 502, response = AgentFailedToStart),
        (status = 503, response = StartUnavailable),
        (status = 504, response = AgentTimeout),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw_query): RawQuery,
    JsonBody(body): JsonBody<StartRequest>,
) -> Result<Json<StartResponse>, ApiError> {
    caller.require(Permission::SessionCreate)?;
    let wait = wait_parameter(raw_query.as_deref())?;
    let input = StartInput {
        first_prompt: first_prompt::for_start(&body.tags, body.message.as_deref()),
        environment: body.environment,
        tags: body.tags,
        system_prompt: None,
    };
    let session = state.sessions.start_session(&caller.user_id, input, wait).await?;
    Ok(Json(start_response(&session)))
}

/// `?wait=false` answers at once; anything else but true/false is a 400.
pub fn wait_parameter(raw_query: Option<&str>) -> Result<bool, ApiError> {
    let params = query::pairs(raw_query)?;
    match query::text(&params, "wait") {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(_) => Err(ApiError::bad_request("invalid_request", "`wait` must be true or false")),
    }
}

/// The answer of `/start` and `/start-with-profile`.
pub fn start_response(session: &Session) -> StartResponse {
    let (status, port) = session.status_and_port();
    StartResponse {
        session_id: session.id.clone(),
        status,
        started_at: format_ms(session.started_at_ms),
        port: port.or(session.state().port),
    }
}

/// `GET /search`
#[utoipa::path(
    get,
    path = "/search",
    tag = "sessions",
    operation_id = "searchSessions",
    summary = "List sessions, newest first (permission session:list)",
    description = "Besides the parameters below, up to 32 `tag.<key>=<value>` parameters \
        filter by tags (all must match exactly; more are a 400). Non-admins only ever see their own sessions: \
        a `user_id` of someone else gives an empty list.",
    params(SearchParams),
    responses(
        (status = 200, description = "The matching sessions; `total` counts every match.",
            body = SearchResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
        (status = 503, response = GithubUnavailable),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw_query): RawQuery,
) -> Result<EncodedJson, ApiError> {
    caller.require(Permission::SessionList)?;
    let params = query::pairs(raw_query.as_deref())?;
    let status = match query::text(&params, "status") {
        None | Some("") => None,
        Some(text) => Some(SessionStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                "`status` must be one of starting, active, stopping, exited, failed",
            )
        })?),
    };
    let requested_user = query::text(&params, "user_id").filter(|user| !user.is_empty());
    let user_id = if caller.is_admin() {
        requested_user.map(str::to_string)
    } else {
        match requested_user {
            Some(other) if other != &*caller.user_id => {
                return EncodedJson::of(&SearchResponse { sessions: Vec::new(), total: 0 });
            }
            _ => Some(caller.user_id.to_string()),
        }
    };
    let tags: Vec<(String, String)> = params
        .iter()
        .filter_map(|(key, value)| Some((key.strip_prefix("tag.")?.to_string(), value.clone())))
        .take(SessionFilter::MAX_TAG_FILTERS + 1)
        .collect();
    if tags.len() > SessionFilter::MAX_TAG_FILTERS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("at most {} `tag.<key>` filters per search", SessionFilter::MAX_TAG_FILTERS),
        ));
    }
    let filter = SessionFilter {
        user_id,
        status,
        tags,
        limit: query::number(&params, "limit", DEFAULT_LIMIT)?.min(MAX_LIMIT) as u32,
        offset: query::number(&params, "offset", 0)?,
    };
    Ok(EncodedJson(state.sessions.search_json(filter).await?))
}

/// An answer already encoded as JSON (the `/search` page is written by the store).
pub struct EncodedJson(bytes::Bytes);

impl EncodedJson {
    fn of(value: &impl serde::Serialize) -> Result<Self, ApiError> {
        let json = serde_json::to_vec(value).map_err(|error| ApiError::Internal(error.into()))?;
        Ok(Self(json.into()))
    }
}

impl IntoResponse for EncodedJson {
    fn into_response(self) -> axum::response::Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// `GET /sessions/{id}`
#[utoipa::path(
    get,
    path = "/sessions/{id}",
    tag = "sessions",
    operation_id = "getSession",
    summary = "One session (permission session:list; owner or admin)",
    params(SessionIdPath),
    responses(
        (status = 200, description = "The session object itself (not wrapped).",
            body = SessionDetail),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = GithubUnavailable),
    )
)]
pub async fn detail(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SessionDetail>, ApiError> {
    caller.require(Permission::SessionList)?;
    Ok(Json(visible_session(&state, &caller, &id)?.detail()))
}

/// `GET /sessions/{id}/logs?tail=N`
#[utoipa::path(
    get,
    path = "/sessions/{id}/logs",
    tag = "sessions",
    operation_id = "getSessionLogs",
    summary = "The tail of the agent's log (permission session:access; owner or admin)",
    params(SessionIdPath, TailParam),
    responses(
        (status = 200, description = "The last `tail` lines of the agent's stdout and stderr.",
            body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = GithubUnavailable),
    )
)]
pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw_query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::SessionAccess)?;
    let session = visible_session(&state, &caller, &id)?;
    let params = query::pairs(raw_query.as_deref())?;
    let tail = query::number(&params, "tail", DEFAULT_TAIL)?.min(MAX_TAIL) as usize;
    let text = state.sessions.logs(&session, tail).await;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// `DELETE /sessions/{id}`
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "sessions",
    operation_id = "deleteSession",
    summary = "Stop and remove a session (permission session:delete; owner or admin)",
    description = "Answers after the agent's whole process group is gone (SIGTERM, \
        `session.stop_grace_seconds`, SIGKILL). Exited and failed sessions are simply removed. \
        Deleting again, or someone else's session, is 404. On Kubernetes, a stop the API \
        server does not allow within the grace + 30 s answers 504 `stop_timeout` and leaves \
        the session `stopping`.",
    params(SessionIdPath),
    responses(
        (status = 200, description = "Terminated.", body = DeleteResponse),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
        (status = 504, response = StopTimeout),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    caller.require(Permission::SessionDelete)?;
    let session = visible_session(&state, &caller, &id)?;
    state.sessions.delete(&session).await?;
    Ok(Json(DeleteResponse {
        message: "Session terminated successfully".into(),
        session_id: session.id.clone(),
        status: "terminated".into(),
    }))
}
