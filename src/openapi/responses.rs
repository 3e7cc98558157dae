//! Reusable responses (`#/components/responses/...`): the error answers with the JSON
//! [`ErrorBody`] and the success answers several routes share. Routes name them in their
//! `#[utoipa::path(responses(...))]`; each is registered once in `ApiDoc` (`src/openapi.rs`).

use agentapi_proxy_client::{ProfileResponse, StartResponse};
use utoipa::ToResponse;

use super::schemas::{ErrorBody, Message, Status};

/// The agent's own answer, passed through untouched (hop-by-hop headers, `Set-Cookie` and
/// `Access-Control-*` removed; event streams flushed frame by frame, with a `: ping` comment
/// after `proxy.sse_heartbeat_seconds` of silence).
#[derive(ToResponse)]
pub struct AgentAnswer;

/// The process answers.
#[derive(ToResponse)]
#[response(example = json!({"status": "ok"}))]
pub struct Alive(pub Status);

/// The session is `active` (its agent answers), or `starting` with `wait=false`.
#[derive(ToResponse)]
pub struct Started(pub StartResponse);

/// The profile; secret-looking environment values are shown as `<redacted>`.
#[derive(ToResponse)]
pub struct OneProfile(pub ProfileResponse);

/// Done.
#[derive(ToResponse)]
pub struct Done(pub Message);

/// Redirect (`Location`), `Cache-Control: no-store`, with `Set-Cookie`.
#[derive(ToResponse)]
#[response(headers(("Location" = String, description = "Where to go next.")))]
pub struct Redirect;

/// Malformed JSON or query, or an invalid field (named, never echoing secrets). Codes:
/// `invalid_request`, `invalid_env_name`, `invalid_env_value`, `reserved_env_name`,
/// `invalid_tag`, `invalid_repository`, `missing_template_variable`; on `/oauth/*` also
/// `invalid_redirect_uri`, `invalid_return_to`, `invalid_state`, `invalid_grant`,
/// `oauth_denied`.
#[derive(ToResponse)]
#[response(example = json!({
    "message": "`environment` key `1X` is not a valid variable name", "code": "invalid_env_name"
}))]
pub struct BadRequest(pub ErrorBody);

/// No, bad or expired credential; one uniform body whatever the reason. Code
/// `unauthenticated`.
#[derive(ToResponse)]
#[response(example = json!({"message": "authentication required", "code": "unauthenticated"}))]
pub struct Unauthenticated(pub ErrorBody);

/// Authenticated but lacking the permission, or a cookie request failing the CSRF guard.
/// Code `forbidden`.
#[derive(ToResponse)]
pub struct Forbidden(pub ErrorBody);

/// Unknown route, unknown id, or a session/profile the caller may not see. Code `not_found`.
#[derive(ToResponse)]
pub struct NotFound(pub ErrorBody);

/// The profile changed meanwhile, several times in a row. Code `conflict`.
#[derive(ToResponse)]
pub struct Conflict(pub ErrorBody);

/// Body over the limit: 1 MiB on API routes, `proxy.max_body_bytes` when proxying. Code
/// `payload_too_large`.
#[derive(ToResponse)]
pub struct PayloadTooLarge(pub ErrorBody);

/// A non-JSON body on a JSON route. Code `unsupported_media_type`.
#[derive(ToResponse)]
pub struct UnsupportedMediaType(pub ErrorBody);

/// The caller's `session.max_sessions_per_user` is reached. Code `quota_exceeded`.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again.")))]
pub struct QuotaExceeded(pub ErrorBody);

/// The request body stalled: no data for `proxy.body_read_timeout_seconds` (on any route
/// with a body). Code `request_timeout`. Once the answer has started the connection is
/// closed instead.
#[derive(ToResponse)]
pub struct RequestTimeout(pub ErrorBody);

/// The caller already holds `proxy.max_streams_per_user` open proxied streams (event
/// streams, WebSocket tunnels, responses without a length). Code `quota_exceeded`.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again.")))]
pub struct TooManyStreams(pub ErrorBody);

/// Our own failure; logged with the request id, never detailed. Code `internal_error`.
#[derive(ToResponse)]
pub struct Internal(pub ErrorBody);

/// The agent exited before it answered. Code `agent_failed_to_start`; `details` holds the
/// exit code and the tail of its log. The session stays visible as `failed`.
#[derive(ToResponse)]
pub struct AgentFailedToStart(pub ErrorBody);

/// The session is `stopping`, `exited` or `failed`, or its agent refused the connection or
/// sent garbage. Code `agent_unavailable`; `details` holds the session status.
#[derive(ToResponse)]
pub struct AgentUnavailable(pub ErrorBody);

/// The session is still `starting` (code `agent_starting`, `Retry-After: 1`), or GitHub
/// cannot be reached to check an uncached token (`github_unavailable`).
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again.")))]
pub struct AgentStarting(pub ErrorBody);

/// The agent did not start (`session.ready_timeout_seconds`) or answer
/// (`proxy.header_timeout_seconds`) in time. Code `agent_timeout`; on start, `details` holds
/// the tail of its log.
#[derive(ToResponse)]
pub struct AgentTimeout(pub ErrorBody);

/// The agent could not be stopped within `session.stop_grace_seconds` + 30 s (the
/// Kubernetes API server unreachable). Code `stop_timeout`, with `Retry-After`; the session
/// stays `stopping` and a `DELETE` again tries once more.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again.")))]
pub struct StopTimeout(pub ErrorBody);

/// `session.max_sessions` reached or the port range exhausted (`at_capacity`, with
/// `Retry-After`), shutting down (`draining`), the store cannot be written
/// (`store_unavailable`), GitHub cannot be reached to check an uncached token
/// (`github_unavailable`), or the Kubernetes API server cannot be reached
/// (`backend_unavailable`, with `Retry-After`).
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again.")))]
pub struct StartUnavailable(pub ErrorBody);

/// The store cannot be written right now (`store_unavailable`), or GitHub cannot be reached
/// to check an uncached token (`github_unavailable`, with `Retry-After`).
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again.")))]
pub struct StoreUnavailable(pub ErrorBody);

/// GitHub cannot be reached to check an uncached token. Code `github_unavailable`, with
/// `Retry-After`.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again.")))]
pub struct GithubUnavailable(pub ErrorBody);

/// Shutting down. Code `draining`.
#[derive(ToResponse)]
#[response(example = json!({"message": "shutting down", "code": "draining"}))]
pub struct Draining(pub ErrorBody);

/// Signed in: the session cookie is set (`Set-Cookie`, HttpOnly, SameSite=Lax, `Secure`
/// unless `server.insecure_cookies`); `Cache-Control: no-store`. With authentication off
/// there is nothing to sign in to: 204 without a cookie.
#[derive(ToResponse)]
#[response(headers(("Set-Cookie" = String, description = "The session cookie.")))]
pub struct SignedIn;

/// Signed out: the session cookie is cleared (`Set-Cookie` with `Max-Age=0`).
#[derive(ToResponse)]
#[response(headers(("Set-Cookie" = String, description = "Clears the session cookie.")))]
pub struct SignedOut;

/// More than 10 failed sign-ins in a minute from this address; every attempt is refused
/// until the minute is over. Code `too_many_attempts`.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again.")))]
pub struct TooManyAttempts(pub ErrorBody);
