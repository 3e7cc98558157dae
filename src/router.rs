//! Every route path of the server, written once, and the layers around them.

use axum::Router;
use axum::routing::get;

use crate::error::ApiError;
use crate::routes::health;
use crate::state::AppState;

/// The whole HTTP surface of the proxy.
pub fn build(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::live))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .fallback(|| async { ApiError::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}
