//! Liveness and readiness: `/health`, `/healthz`, `/readyz` (no authentication).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::shutdown::Stage;
use crate::state::AppState;

/// `GET /health`, `GET /healthz`: the process answers.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: ready for new work until shutdown begins.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.shutdown.stage() {
        Stage::Running => Ok(Json(json!({ "status": "ready" }))),
        Stage::Draining | Stage::Immediate => Err(ApiError::Draining),
    }
}
