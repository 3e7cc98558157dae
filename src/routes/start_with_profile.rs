//! `POST /start-with-profile`: a session started from a profile, overlaid by the request.

use agentapi_proxy_client::{StartResponse, StartWithProfile};
use axum::Json;
use axum::extract::{RawQuery, State};

use super::json_body::JsonBody;
use super::sessions::start_response;
use crate::auth::{Caller, Permission};
use crate::clock::{format_ms, now_ms};
use crate::error::ApiError;
use crate::openapi::params::WaitParam;
use crate::openapi::responses::{
    AgentFailedToStart, AgentTimeout, BadRequest, Forbidden, Internal, NotFound, PayloadTooLarge,
    QuotaExceeded, StartUnavailable, Started, Unauthenticated, UnsupportedMediaType,
};
use crate::profiles;
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/start-with-profile",
    tag = "sessions",
    operation_id = "startSessionWithProfile",
    summary = "Start a session from a profile (permission session:create)",
    description = "Environment = the profile's overlaid by the request's; tags likewise. The \
        first prompt is the request `message`, else the merged `tags.message`, else the named \
        template rendered with `template_variables`, else none. A `repository` tag is recorded \
        in the profile's `repository_history`; `last_used_at` is set.",
    params(WaitParam),
    request_body = StartWithProfile,
    responses(
        (status = 200, response = Started),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = QuotaExceeded),
        (status = 500, response = Internal),
        (status = 502, response = AgentFailedToStart),
        (status = 503, response = StartUnavailable),
        (status = 504, response = AgentTimeout),
    )
)]
pub async fn start_with_profile(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw_query): RawQuery,
    JsonBody(body): JsonBody<StartWithProfile>,
) -> Result<Json<StartResponse>, ApiError> {
    caller.require(Permission::SessionCreate)?;
    let wait = super::sessions::wait_parameter(raw_query.as_deref())?;
    if body.profile_id.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "`profile_id` is required"));
    }
    let profile = profiles::visible(&*state.profiles, &caller, &body.profile_id).await?.profile;
    let input = profiles::start_input(&profile, body)?;
    let repository = input.tags.get("repository").filter(|r| !r.is_empty()).cloned();
    let session = state.sessions.start_session(&caller.user_id, input, wait).await?;

    let used_at = format_ms(now_ms());
    let recorded = profiles::modify(&*state.profiles, &caller, &profile.id, |profile| {
        profiles::record_use(profile, &used_at, repository.as_deref())
    })
    .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, profile_id = %profile.id, "could not record the profile's use");
    }
    Ok(Json(start_response(&session)))
}
