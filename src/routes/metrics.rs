//! `GET /metrics`: Prometheus text. Needs `metrics:read` unless `metrics.public`.

use axum::extract::{FromRequestParts, Request, State};
use axum::response::IntoResponse;
use http::header;

use crate::auth::{Caller, Permission};
use crate::error::ApiError;
use crate::openapi::responses::{Forbidden, GithubUnavailable, Unauthenticated};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Needs `metrics:read` when authentication is on, unless `metrics.public` is \
        true (then no authentication at all).",
    security((), ("apiKey" = []), ("bearer" = []), ("sessionCookie" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 503, response = GithubUnavailable),
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    if !state.config.metrics.public {
        let (mut parts, _) = request.into_parts();
        Caller::from_request_parts(&mut parts, &state).await?.require(Permission::MetricsRead)?;
    }
    crate::telemetry::set_sessions(&state.sessions.count_by_status());
    if let Some(mode) = state.sessions.containment_mode() {
        crate::telemetry::set_containment_mode(mode);
    }
    let text = crate::telemetry::handle().render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text))
}
