//! Liveness and readiness: `/health`, `/healthz`, `/readyz` (no authentication).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::openapi::responses::{Alive, Draining};
use crate::openapi::schemas::Status;
use crate::shutdown::Stage;
use crate::state::AppState;

/// `GET /health`, `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "health",
    summary = "Liveness (same as /healthz)",
    security(),
    responses((status = 200, response = Alive))
)]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: ready for new work until shutdown begins.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    summary = "Readiness: 503 `draining` once shutdown began",
    description = "A store that cannot be written does not make the instance unready: \
        proxying still works.",
    security(),
    responses(
        (status = 200, description = "Ready for new work.", body = Status,
            example = json!({"status": "ready"})),
        (status = 503, response = Draining),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.shutdown.stage() {
        Stage::Running => Ok(Json(json!({ "status": "ready" }))),
        Stage::Draining | Stage::Immediate => Err(ApiError::Draining),
    }
}
