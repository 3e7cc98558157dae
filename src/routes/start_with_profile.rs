//! `POST /start-with-profile`: a session started from a profile, overlaid by the request.

use agentapi_proxy_client::{RepositoryInput, StartResponse, StartWithProfile};
use axum::Json;
use axum::extract::{RawQuery, State};

use super::json_body::JsonBody;
use super::profiles::{modify, visible_profile};
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
use crate::sessions::{StartInput, first_prompt};
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
    let profile = visible_profile(&state, &caller, &body.profile_id).await?.profile;

    let mut environment = profile.environment.clone();
    environment.extend(body.environment);
    let mut tags = profile.tags.clone();
    tags.extend(body.tags);
    let first_prompt = first_prompt::for_profile_start(body.message.as_deref(), &tags, || {
        let Some(template_id) = body.template_id.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let template = profile
            .message_templates
            .iter()
            .find(|t| t.id == template_id || t.name == template_id)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_request",
                    "`template_id` names no template of this profile",
                )
            })?;
        Ok(Some(profiles::render(&template.content, &body.template_variables)?))
    })?;
    let repository = tags.get("repository").filter(|r| !r.is_empty()).cloned();
    let input = StartInput {
        environment,
        tags,
        first_prompt,
        system_prompt: Some(profile.system_prompt.clone()).filter(|p| !p.is_empty()),
    };
    let session = state.sessions.start_session(&caller.user_id, input, wait).await?;

    let used_at = format_ms(now_ms());
    let recorded = modify(&state, &caller, &profile.id, |profile| {
        profile.last_used_at = Some(used_at.clone());
        if let Some(url) = &repository {
            let entry = profiles::repository_entry(RepositoryInput {
                url: url.clone(),
                accessed_at: Some(used_at.clone()),
                ..RepositoryInput::default()
            })?;
            profiles::record_repository(profile, entry);
        }
        Ok(())
    })
    .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, profile_id = %profile.id, "could not record the profile's use");
    }
    Ok(Json(start_response(&session)))
}
