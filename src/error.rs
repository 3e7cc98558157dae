//! `ApiError`: everything the proxy itself can answer with besides success, and the one
//! place that turns it into the JSON error body `{"message", "code"}` (api.md "Errors").

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Marks a response the proxy itself produced from an [`ApiError`] (never one passed on from
/// an agent), with its stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnError(pub &'static str);

/// An error answer. Variants name what the client sees; `into_response` picks the status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unknown route, unknown session, or one the caller may not see.
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A malformed request or field; `code` is e.g. `invalid_request`, `invalid_env_name`.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("expected a JSON body (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// The request body stalled for `proxy.body_read_timeout_seconds`.
    #[error("the request body stalled: no data for {seconds} seconds")]
    RequestTimeout { seconds: u64 },
    #[error("{message}")]
    QuotaExceeded { message: String, retry_after_seconds: u64 },
    #[error("{message}")]
    AtCapacity { message: String, retry_after_seconds: u64 },
    /// Too many failed sign-ins from one address (`POST /auth/login`).
    #[error("too many failed sign-in attempts; try again later")]
    TooManyAttempts { retry_after_seconds: u64 },
    #[error("shutting down")]
    Draining,
    #[error("the session store cannot be written right now")]
    StoreUnavailable,
    /// GitHub could not be asked (down, timeout) and the token is not in the cache.
    #[error("GitHub cannot be reached to check this credential; try again shortly")]
    GithubUnavailable,
    /// Where agents run (the Kubernetes API server) cannot be reached; nothing was started.
    #[error("the session backend cannot be reached; no agent was started, try again shortly")]
    BackendUnavailable,
    /// The agent behind a session refused, died or sent garbage; details go to its owner.
    #[error("{message}")]
    AgentUnavailable { code: &'static str, message: String, details: Option<Value> },
    #[error("the agent is still starting")]
    AgentStarting,
    #[error("{message}")]
    AgentTimeout { message: String, details: Option<Value> },
    /// The agent could not be stopped within its grace and the backend's slack (the
    /// Kubernetes API server unreachable); the session stays `stopping`.
    #[error("the agent could not be stopped in time; the session stays stopping: try DELETE again")]
    StopTimeout,
    /// Our own failure: logged once here, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }

    /// Status, stable code, and the `Retry-After` seconds where one applies.
    fn parts(&self) -> (StatusCode, &'static str, Option<u64>) {
        match self {
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code, None),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", None),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            Self::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None)
            }
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None)
            }
            Self::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout", None),
            Self::QuotaExceeded { retry_after_seconds, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", Some(*retry_after_seconds))
            }
            Self::TooManyAttempts { retry_after_seconds } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", Some(*retry_after_seconds))
            }
            Self::AtCapacity { retry_after_seconds, .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "at_capacity", Some(*retry_after_seconds))
            }
            Self::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining", None),
            Self::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", None),
            Self::GithubUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "github_unavailable", Some(5))
            }
            Self::BackendUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable", Some(5))
            }
            Self::AgentUnavailable { code, .. } => (StatusCode::BAD_GATEWAY, code, None),
            Self::AgentStarting => (StatusCode::SERVICE_UNAVAILABLE, "agent_starting", Some(1)),
            Self::AgentTimeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "agent_timeout", None),
            Self::StopTimeout => (StatusCode::GATEWAY_TIMEOUT, "stop_timeout", Some(5)),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry_after) = self.parts();
        if let Self::Internal(error) = &self {
            tracing::error!(
                error = format!("{error:#}"),
                "internal error while answering a request"
            );
        }
        let mut body = json!({ "message": self.to_string(), "code": code });
        if let Self::AgentUnavailable { details: Some(details), .. }
        | Self::AgentTimeout { details: Some(details), .. } = &self
        {
            body["details"] = details.clone();
        }
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(OwnError(code));
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(error)
    }
}
