//! Every route path of the server, written once, and the layers around them.

use axum::Router;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::routes::{auth, health, sessions};
use crate::state::AppState;

/// The whole HTTP surface of the proxy.
pub fn build(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::live))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/auth/status", get(auth::status))
        .route("/auth/types", get(auth::types))
        .route("/start", post(sessions::start))
        .route("/search", get(sessions::search))
        .route("/sessions/{id}", get(sessions::detail).delete(sessions::delete))
        .route("/sessions/{id}/logs", get(sessions::logs))
        .fallback(|| async { ApiError::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}
