//! `GET /auth/status` (who am I) and `GET /auth/types` (which sign-in methods exist).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::openapi::responses::{GithubUnavailable, Unauthenticated};
use crate::openapi::schemas::{AuthStatus, AuthTypes};
use crate::state::AppState;

/// `GET /auth/status`: the authenticated caller.
#[utoipa::path(
    get,
    path = "/auth/status",
    tag = "auth",
    operation_id = "authStatus",
    summary = "Who the caller is",
    responses(
        (status = 200, description = "The authenticated caller.", body = AuthStatus),
        (status = 401, response = Unauthenticated),
        (status = 503, response = GithubUnavailable),
    )
)]
pub async fn status(caller: Caller) -> Json<Value> {
    Json(json!({
        "user_id": caller.user_id,
        "role": caller.role,
        "permissions": caller.permissions,
        "auth_type": caller.auth_type.as_str(),
    }))
}

/// `GET /auth/types` (no authentication).
#[utoipa::path(
    get,
    path = "/auth/types",
    tag = "auth",
    operation_id = "authTypes",
    summary = "Which sign-in methods are enabled",
    security(),
    responses((status = 200, description = "`{\"enabled\": false, \"types\": []}` when \
        authentication is off.", body = AuthTypes))
)]
pub async fn types(State(state): State<AppState>) -> Json<Value> {
    let auth = &state.config.auth;
    if !auth.enabled {
        return Json(json!({"enabled": false, "types": []}));
    }
    let mut types = Vec::new();
    if auth.static_keys.enabled {
        types.push(json!({"type": "api_key", "header": auth.static_keys.header_name}));
    }
    if auth.github.enabled {
        types.push(json!({"type": "github"}));
    }
    if auth.github.oauth.is_some() {
        types.push(json!({"type": "oauth", "login_url": "/oauth/login"}));
    }
    Json(json!({"enabled": true, "types": types}))
}
