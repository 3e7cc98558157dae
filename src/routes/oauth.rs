//! `/oauth/*` (only routed when `auth.github.oauth` is configured; no authentication needed):
//! `POST /oauth/authorize` and `GET /oauth/login` start a login, `GET /oauth/callback`
//! finishes it (JSON for API clients, cookie + 302 for browsers), `POST /oauth/refresh` and
//! `POST /oauth/logout` act on the session. The logic lives in `auth::oauth`.

use std::sync::Arc;

use agentapi_proxy_client::OAuthAuthorizeRequest;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::json_body::JsonBody;
use super::query;
use crate::auth::oauth::{LOGIN_LIFETIME_SECONDS, OAuth, cookie};
use crate::clock::format_ms;
use crate::error::ApiError;
use crate::openapi::params::{CallbackParams, OAuthSessionHeader, ReturnToParam};
use crate::openapi::responses::{
    BadRequest, Done, Forbidden, GithubUnavailable, PayloadTooLarge, Redirect, StoreUnavailable,
    Unauthenticated, UnsupportedMediaType,
};
use crate::openapi::schemas::{
    Message, OAuthAuthorizeResponse, OAuthCallbackResponse, OAuthRefreshResponse, OAuthUser,
    TokenType,
};
use crate::state::AppState;

fn oauth_of(state: &AppState) -> Result<Arc<OAuth>, ApiError> {
    state.auth.oauth().cloned().ok_or(ApiError::NotFound("no such route"))
}

fn header(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("a redirect target is not a header")))
}

/// A 302 to `location` that no cache keeps, with these cookies set.
fn redirect(location: &str, cookies: Vec<HeaderValue>) -> Result<Response, ApiError> {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, header(location)?);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for value in cookies {
        headers.append(SET_COOKIE, value);
    }
    Ok(response)
}

/// `POST /oauth/authorize {"redirect_uri"}` → `{"auth_url", "state"}`.
#[utoipa::path(
    post,
    path = "/oauth/authorize",
    tag = "oauth",
    operation_id = "oauthAuthorize",
    summary = "Start the API-client login flow (Go-proxy compatible)",
    security(),
    request_body = OAuthAuthorizeRequest,
    responses(
        (status = 200, description = "Send the user to `auth_url`; GitHub redirects back to \
            `redirect_uri` with `code` and `state`.", body = OAuthAuthorizeResponse),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn authorize(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<OAuthAuthorizeRequest>,
) -> Result<Json<OAuthAuthorizeResponse>, ApiError> {
    let oauth = oauth_of(&state)?;
    let started = oauth.authorize(&body.redirect_uri).await?;
    Ok(Json(OAuthAuthorizeResponse { auth_url: started.auth_url, state: started.state }))
}

/// `GET /oauth/login?return_to=/ui/` → 302 to GitHub, with the login cookie.
#[utoipa::path(
    get,
    path = "/oauth/login",
    tag = "oauth",
    operation_id = "oauthLogin",
    summary = "Start the browser login flow",
    description = "Redirects to GitHub with `redirect_uri = <server.public_url>/oauth/callback`; \
        state and PKCE verifier are bound to a 10-minute HttpOnly, SameSite=Lax cookie \
        (`__Host-apx_oauth`, or `apx_oauth` with `server.insecure_cookies`).",
    security(),
    params(ReturnToParam),
    responses(
        (status = 302, response = Redirect),
        (status = 400, response = BadRequest),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    RawQuery(raw_query): RawQuery,
) -> Result<Response, ApiError> {
    let oauth = oauth_of(&state)?;
    let pairs = query::pairs(raw_query.as_deref())?;
    let return_to = query::text(&pairs, "return_to").unwrap_or("/");
    let started = oauth.browser_login(return_to).await?;
    let binding = started
        .login_cookie
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a browser login without a cookie")))?;
    let cookies = oauth.cookies();
    let set = cookies.set_cookie(&cookies.login_name(), &binding, LOGIN_LIFETIME_SECONDS)?;
    redirect(&started.auth_url, vec![set])
}

/// `GET /oauth/callback?code&state`: JSON with a proxy token (API clients), or the session
/// cookie and a 302 to `return_to` (browsers).
#[utoipa::path(
    get,
    path = "/oauth/callback",
    tag = "oauth",
    operation_id = "oauthCallback",
    summary = "Finish a login: JSON with a proxy token for API clients, cookie and 302 for \
        browsers",
    security(),
    params(CallbackParams),
    responses(
        (status = 200, description = "API-client flow. The GitHub token itself is never \
            returned.", body = OAuthCallbackResponse),
        (status = 302, response = Redirect),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = GithubUnavailable),
    )
)]
pub async fn callback(
    State(state): State<AppState>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let oauth = oauth_of(&state)?;
    let pairs = query::pairs(raw_query.as_deref())?;
    let state_param = query::text(&pairs, "state").unwrap_or_default();
    let issued = oauth.callback(query::text(&pairs, "code"), state_param, &headers).await?;
    if let Some(return_to) = &issued.return_to {
        let cookies = oauth.cookies();
        let session = cookies.set_cookie(
            &cookies.session_name(),
            &issued.token,
            oauth.cookie_max_age(issued.expires_at_ms),
        )?;
        let cleared = cookies.set_cookie(&cookies.login_name(), "", 0)?;
        return redirect(return_to, vec![session, cleared]);
    }
    let mut response = Json(OAuthCallbackResponse {
        session_id: issued.session_id,
        access_token: issued.token,
        token_type: TokenType::Bearer,
        expires_at: format_ms(issued.expires_at_ms),
        user: OAuthUser {
            user_id: issued.caller.user_id.to_string(),
            role: issued.caller.role.to_string(),
            permissions: issued.caller.permissions.to_vec(),
        },
    })
    .into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /oauth/refresh` (`X-Session-ID`, bearer token or session cookie) → new expiry.
#[utoipa::path(
    post,
    path = "/oauth/refresh",
    tag = "oauth",
    operation_id = "oauthRefresh",
    summary = "Extend a proxy session (`X-Session-ID`, bearer token or session cookie)",
    description = "The new expiry is at most 30 days after the login.",
    security(),
    params(OAuthSessionHeader),
    responses(
        (status = 200, description = "The session with its new expiry.",
            body = OAuthRefreshResponse),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let oauth = oauth_of(&state)?;
    let (which, by_cookie) = oauth.session_ref(&method, &headers)?;
    let row = oauth.refresh(which).await?;
    let mut response = Json(OAuthRefreshResponse {
        session_id: row.session_id,
        token_type: TokenType::Bearer,
        expires_at: format_ms(row.expires_at_ms),
    })
    .into_response();
    let cookies = oauth.cookies();
    if by_cookie && let Some(token) = cookie(&headers, &cookies.session_name()) {
        let renewed = cookies.set_cookie(
            &cookies.session_name(),
            token,
            oauth.cookie_max_age(row.expires_at_ms),
        )?;
        response.headers_mut().insert(SET_COOKIE, renewed);
    }
    Ok(response)
}

/// `POST /oauth/logout` → the session ends at once (and a browser's cookie is cleared).
#[utoipa::path(
    post,
    path = "/oauth/logout",
    tag = "oauth",
    operation_id = "oauthLogout",
    summary = "End a proxy session at once (`X-Session-ID`, bearer token or session cookie)",
    security(),
    params(OAuthSessionHeader),
    responses(
        (status = 200, response = Done),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let oauth = oauth_of(&state)?;
    let (which, by_cookie) = oauth.session_ref(&method, &headers)?;
    oauth.logout(which).await?;
    if let Some(sessions) = state.auth.proxy_sessions() {
        sessions.ended();
    }
    let mut response = Json(Message { message: "Successfully logged out".into() }).into_response();
    if by_cookie {
        let cookies = oauth.cookies();
        let cleared = cookies.set_cookie(&cookies.session_name(), "", 0)?;
        response.headers_mut().insert(SET_COOKIE, cleared);
    }
    Ok(response)
}
