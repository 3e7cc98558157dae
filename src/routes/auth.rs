//! `GET /auth/status` (who am I) and `GET /auth/types` (which sign-in methods exist).

use axum::Json;
use axum::extract::State;

use crate::auth::Caller;
use crate::openapi::responses::{GithubUnavailable, Unauthenticated};
use crate::openapi::schemas::{AuthMethod, AuthMethodKind, AuthStatus, AuthTypes};
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
pub async fn status(caller: Caller) -> Json<AuthStatus> {
    Json(AuthStatus {
        user_id: caller.user_id.to_string(),
        role: caller.role.to_string(),
        permissions: caller.permissions.to_vec(),
        auth_type: caller.auth_type.into(),
    })
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
pub async fn types(State(state): State<AppState>) -> Json<AuthTypes> {
    let auth = &state.config.auth;
    if !auth.enabled {
        return Json(AuthTypes { enabled: false, types: Vec::new() });
    }
    let method = |kind| AuthMethod { kind, header: None, login_url: None };
    let mut types = Vec::new();
    if auth.static_keys.enabled {
        types.push(AuthMethod {
            header: Some(auth.static_keys.header_name.clone()),
            ..method(AuthMethodKind::ApiKey)
        });
    }
    if auth.github.enabled {
        types.push(method(AuthMethodKind::Github));
    }
    if auth.github.oauth.is_some() {
        types.push(AuthMethod {
            login_url: Some("/oauth/login".into()),
            ..method(AuthMethodKind::Oauth)
        });
    }
    Json(AuthTypes { enabled: true, types })
}
