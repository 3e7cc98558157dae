//! `GET /metrics`: Prometheus text. Needs `metrics:read` unless `metrics.public`.

use axum::extract::{FromRequestParts, Request, State};
use axum::response::IntoResponse;
use http::header;

use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn metrics(
    State(state): State<AppState>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    if !state.config.metrics.public {
        let (mut parts, _) = request.into_parts();
        Caller::from_request_parts(&mut parts, &state).await?.require(Permission::MetricsRead)?;
    }
    crate::telemetry::set_sessions(&state.sessions.count_by_status());
    let text = crate::telemetry::handle().render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text))
}
