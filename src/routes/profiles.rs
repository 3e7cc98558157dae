//! Profile routes: `POST/GET /profiles`, `GET/PUT/DELETE /profiles/{id}`,
//! `POST /profiles/{id}/repositories`, `POST /profiles/{id}/templates`. Owner-scoped; admins
//! see all; a profile the caller may not see is 404. Answers never show secret-looking
//! environment values.

use agentapi_proxy_client::{
    Profile, ProfileInput, ProfileList, ProfileResponse, RepositoryInput, TemplateInput,
};
use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde_json::{Value, json};

use super::json_body::JsonBody;
use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::openapi::params::ProfileIdPath;
use crate::openapi::responses::{
    BadRequest, Conflict, Done, Forbidden, NotFound, OneProfile, PayloadTooLarge, StoreUnavailable,
    Unauthenticated, UnsupportedMediaType,
};
use crate::openapi::schemas::ProfileDeleted;
use crate::profiles::{self, Rules, redacted, store_error};
use crate::state::AppState;

fn rules_with<'a>(reserved: &'a [&'a str]) -> Rules<'a> {
    Rules { reserved_env: reserved }
}

/// `POST /profiles`
#[utoipa::path(
    post,
    path = "/profiles",
    tag = "profiles",
    operation_id = "createProfile",
    summary = "Create a profile (permission profile:create)",
    request_body = ProfileInput,
    responses(
        (status = 201, response = OneProfile),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<ProfileInput>,
) -> Result<(StatusCode, Json<ProfileResponse>), ApiError> {
    caller.require(Permission::ProfileCreate)?;
    let reserved = state.sessions.reserved_env();
    let profile = profiles::create(&caller.user_id, &body, &rules_with(&reserved))?;
    state.profiles.insert(profile.clone(), crate::clock::now_ms()).await.map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(ProfileResponse { profile: redacted(profile) })))
}

/// `GET /profiles`
#[utoipa::path(
    get,
    path = "/profiles",
    tag = "profiles",
    operation_id = "listProfiles",
    summary = "List profiles, newest first (permission profile:list)",
    responses(
        (status = 200, description = "The caller's profiles (every profile for admins).",
            body = ProfileList),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ProfileList>, ApiError> {
    caller.require(Permission::ProfileList)?;
    let owner = (!caller.is_admin()).then(|| caller.user_id.to_string());
    let profiles: Vec<Profile> =
        state.profiles.list(owner).await.map_err(store_error)?.into_iter().map(redacted).collect();
    Ok(Json(ProfileList { total: profiles.len() as u64, profiles }))
}

/// `GET /profiles/{id}`
#[utoipa::path(
    get,
    path = "/profiles/{id}",
    tag = "profiles",
    operation_id = "getProfile",
    summary = "One profile (permission profile:read)",
    params(ProfileIdPath),
    responses(
        (status = 200, response = OneProfile),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ProfileResponse>, ApiError> {
    caller.require(Permission::ProfileRead)?;
    let found = profiles::visible(&*state.profiles, &caller, &id).await?;
    Ok(Json(ProfileResponse { profile: redacted(found.profile) }))
}

/// `PUT /profiles/{id}`
#[utoipa::path(
    put,
    path = "/profiles/{id}",
    tag = "profiles",
    operation_id = "updateProfile",
    summary = "Partially update a profile (permission profile:update)",
    description = "A present, non-null field replaces the stored value (objects and arrays \
        wholesale); an absent or null one keeps it. An environment value sent back as \
        `\"<redacted>\"` keeps the stored value.",
    params(ProfileIdPath),
    request_body = ProfileInput,
    responses(
        (status = 200, response = OneProfile),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProfileInput>,
) -> Result<Json<ProfileResponse>, ApiError> {
    caller.require(Permission::ProfileUpdate)?;
    let reserved = state.sessions.reserved_env();
    let rules = rules_with(&reserved);
    let profile = profiles::modify(&*state.profiles, &caller, &id, |profile| {
        profiles::update(profile, &body, &rules)
    })
    .await?;
    Ok(Json(ProfileResponse { profile: redacted(profile) }))
}

/// `DELETE /profiles/{id}`
#[utoipa::path(
    delete,
    path = "/profiles/{id}",
    tag = "profiles",
    operation_id = "deleteProfile",
    summary = "Delete a profile (permission profile:delete)",
    params(ProfileIdPath),
    responses(
        (status = 200, description = "Deleted.", body = ProfileDeleted),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ProfileDelete)?;
    let found = profiles::visible(&*state.profiles, &caller, &id).await?;
    state.profiles.delete(found.profile.id.clone()).await.map_err(store_error)?;
    Ok(Json(json!({"message": "Profile deleted successfully", "profile_id": found.profile.id})))
}

/// `POST /profiles/{id}/repositories`
#[utoipa::path(
    post,
    path = "/profiles/{id}/repositories",
    tag = "profiles",
    operation_id = "addProfileRepository",
    summary = "Record a repository in the profile's history, upserted by `url` (permission \
        profile:update)",
    params(ProfileIdPath),
    request_body = RepositoryInput,
    responses(
        (status = 200, response = Done),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn add_repository(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RepositoryInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ProfileUpdate)?;
    let entry = profiles::repository_entry(body)?;
    profiles::modify(&*state.profiles, &caller, &id, |profile| {
        profiles::record_repository(profile, entry.clone());
        Ok(())
    })
    .await?;
    Ok(Json(json!({"message": "Repository added to profile successfully"})))
}

/// `POST /profiles/{id}/templates`
#[utoipa::path(
    post,
    path = "/profiles/{id}/templates",
    tag = "profiles",
    operation_id = "addProfileTemplate",
    summary = "Add a message template; the same `name` replaces it (permission profile:update)",
    params(ProfileIdPath),
    request_body = TemplateInput,
    responses(
        (status = 200, response = Done),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn add_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TemplateInput>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ProfileUpdate)?;
    let template = profiles::message_template(body)?;
    profiles::modify(&*state.profiles, &caller, &id, |profile| {
        profiles::add_template(profile, template.clone());
        Ok(())
    })
    .await?;
    Ok(Json(json!({"message": "Template added to profile successfully"})))
}
