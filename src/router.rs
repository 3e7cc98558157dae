//! Every route path of the server, written once, and the layers around them.
//!
//! From tower-http: gzip for the API's own answers and sensitive-header marking. Kept as our
//! own: CORS (`cors.rs` says why), the JSON body limit (`routes/json_body.rs`: tower-http's
//! `RequestBodyLimitLayer` answers 413 in plain text, api.md wants the JSON error body) and no
//! blanket API timeout (`POST /start` may rightly wait `ready_timeout_seconds` for an agent,
//! `DELETE` the stop grace; each of those waits is bounded where it happens, and a timeout
//! cutting `/start` short would hide the id of an agent that still comes up).

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{any, get, post};
use http::header::SET_COOKIE;
use tower_http::compression::CompressionLayer;
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};

use crate::cors;
use crate::error::ApiError;
use crate::routes::{
    auth, chat, health, login, metrics, oauth, profiles, proxy, root, session_events, sessions,
    start_with_profile,
};
use crate::state::AppState;

/// The whole HTTP surface of the proxy. Static paths win over `/{id}`, so a reserved word
/// (`search`, `sessions`, ...) is never taken for a session id.
pub fn build(state: AppState) -> Router {
    let cors_settings = state.proxy.cors.clone();
    let credential_headers = state.auth.credential_headers();
    let mut router = Router::new();
    // The OAuth routes exist only when `auth.github.oauth` is configured.
    if state.auth.oauth().is_some() {
        router = router
            .route("/oauth/authorize", post(oauth::authorize))
            .route("/oauth/login", get(oauth::login))
            .route("/oauth/callback", get(oauth::callback))
            .route("/oauth/refresh", post(oauth::refresh))
            .route("/oauth/logout", post(oauth::logout));
    }
    router
        .route("/", get(root::root))
        .route("/health", get(health::live))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(crate::routes::openapi::openapi))
        .route("/auth/status", get(auth::status))
        .route("/auth/types", get(auth::types))
        .route("/auth/login", post(login::login))
        .route("/auth/logout", post(login::logout))
        .route("/start", post(sessions::start))
        .route("/start-with-profile", post(start_with_profile::start_with_profile))
        .route("/search", get(sessions::search))
        .route("/sessions/events", get(session_events::events))
        .route("/sessions/{id}", get(sessions::detail).delete(sessions::delete))
        .route("/sessions/{id}/logs", get(sessions::logs))
        .route("/sessions/{id}/chat/history", get(chat::history))
        .route("/sessions/{id}/chat/messages", post(chat::post_message))
        .route("/chat/status", get(chat::status))
        .route("/chat/slack/events", post(chat::slack_events))
        .route("/profiles", post(profiles::create).get(profiles::list))
        .route("/profiles/{id}", get(profiles::read).put(profiles::update).delete(profiles::delete))
        .route("/profiles/{id}/repositories", post(profiles::add_repository))
        .route("/profiles/{id}/templates", post(profiles::add_template))
        // The API's own answers may be gzipped (event streams never are); everything added
        // after this line (the dashboard's files, compressed ahead; the agents' answers)
        // passes as it is.
        .layer(CompressionLayer::new())
        // The dashboard's pages and files (no authentication: the page asks the API).
        .merge(crate::ui::routes())
        .route("/{id}", any(proxy::proxy))
        .route("/{id}/{*rest}", any(proxy::proxy))
        .fallback(|| async { ApiError::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        // CORS preflights are answered before authentication, on every path.
        .layer(from_fn_with_state(cors_settings, cors::cors))
        // Credentials and cookies are marked sensitive before anything could log them.
        .layer(SetSensitiveRequestHeadersLayer::from_shared(credential_headers.into()))
        .layer(SetSensitiveResponseHeadersLayer::new([SET_COOKIE]))
        // Outermost: every request gets an id, a log line and metrics.
        .layer(from_fn(crate::observe::observe))
}
