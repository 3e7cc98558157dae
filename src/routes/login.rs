//! `POST /auth/login` (a credential in the body → the session cookie the OAuth browser flow
//! sets) and `POST /auth/logout` (ends the cookie session, however it was made). Both are
//! always routed. Failed sign-ins are counted per client address (`auth::login_throttle`).

use std::net::{IpAddr, SocketAddr};

use agentapi_proxy_client::LoginRequest;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::json_body::JsonBody;
use crate::auth::oauth::cookie;
use crate::error::ApiError;
use crate::openapi::responses::{
    BadRequest, Forbidden, GithubUnavailable, PayloadTooLarge, SignedIn, SignedOut,
    StoreUnavailable, TooManyAttempts, Unauthenticated, UnsupportedMediaType,
};
use crate::proxy::Peer;
use crate::state::AppState;

fn no_content(cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(value) = cookie {
        headers.insert(SET_COOKIE, value);
    }
    response
}

/// The address failures are counted under: the peer, or the last `X-Forwarded-For` entry
/// when the peer is a trusted proxy (`proxy.trusted_proxies`).
fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let peer = Peer::new(peer, &state.proxy.trusted_proxies);
    if !peer.trusted {
        return peer.ip;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer.ip)
}

/// `POST /auth/login {"api_key"}` → 204 with the session cookie.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    operation_id = "login",
    summary = "Sign in with a credential: sets the session cookie",
    description = "The credential is checked exactly as the same text sent as \
        `Authorization: Bearer` would be. The cookie session carries that credential's \
        identity, is stored hashed, lasts `auth.github.oauth.session_ttl_seconds` (24 h \
        without OAuth), and ends as soon as the credential does (a key removed from the \
        configuration or the keys file, a proxy token logged out). Cookie-authenticated \
        unsafe requests must pass the CSRF guard. With authentication off: 204 without a \
        cookie.",
    security(),
    request_body = LoginRequest,
    responses(
        (status = 204, response = SignedIn),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyAttempts),
        (status = 503, response = GithubUnavailable),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let credential = body.api_key;
    if credential.trim().is_empty() {
        return Err(ApiError::bad_request("invalid_request", "`api_key` is required"));
    }
    let Some(sessions) = state.auth.proxy_sessions() else { return Ok(no_content(None)) };
    let ip = client_ip(&state, peer, &headers);
    let throttle = state.auth.login_throttle();
    throttle.check(ip).map_err(|retry_after_seconds| {
        tracing::info!(client = %ip, "sign-in refused: too many failed attempts");
        ApiError::TooManyAttempts { retry_after_seconds }
    })?;
    let caller = match state.auth.authenticate_presented(&credential).await {
        Ok(caller) => caller,
        Err(ApiError::Unauthenticated) => {
            throttle.failed(ip);
            return Err(ApiError::Unauthenticated);
        }
        Err(other) => return Err(other),
    };
    let opened = sessions.open(&caller).await?;
    let cookies = sessions.cookies();
    let set = cookies.set_cookie(&cookies.session_name(), &opened.token, opened.max_age_seconds)?;
    Ok(no_content(Some(set)))
}

/// `POST /auth/logout` → 204; the cookie session ends and the cookie is cleared.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    operation_id = "logout",
    summary = "Sign out: ends the cookie session, however it was made",
    description = "Always 204 (also without a cookie, or with authentication off). A \
        cookie-authenticated request must pass the CSRF guard (403 otherwise). Bearer \
        tokens are ended with `POST /oauth/logout`.",
    security(),
    responses(
        (status = 204, response = SignedOut),
        (status = 403, response = Forbidden),
        (status = 503, response = StoreUnavailable),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(sessions) = state.auth.proxy_sessions() else { return Ok(no_content(None)) };
    let cookies = sessions.cookies();
    if let Some(token) = cookie(&headers, &cookies.session_name()) {
        cookies.guard(&method, &headers)?;
        sessions.close(token).await?;
    }
    Ok(no_content(Some(cookies.set_cookie(&cookies.session_name(), "", 0)?)))
}
