//! The OpenAPI 3.1 document of the whole HTTP surface, generated from the code with utoipa:
//! the `#[utoipa::path]` annotations on the handlers in `routes/`, the wire types of the
//! client crate (feature `openapi`), and the pieces in this module's files. [`document`]
//! serialises it once; `GET /openapi.json` serves those bytes.
//!
//! The integration test `openapi` checks the document against `src/router.rs` (every route
//! with its methods, nothing that is not routed) and against `docs/api.md`.

pub mod params;
pub mod responses;
pub mod schemas;
mod security;
mod stub_paths;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use bytes::Bytes;
use utoipa::OpenApi;

use crate::routes;
use security::SecuritySchemes;

const DESCRIPTION: &str = "\
A front door for many coding agents: one agentapi server per session, reverse-proxied under \
`/{session_id}/`.

Every answer carries `X-Request-Id` (the caller's own when it is short and plain, else a new \
one). Every non-2xx answer the proxy itself produces is the JSON `Error` object; answers that \
come from an agent under `/{id}/...` are passed through untouched. With `auth.enabled=false` \
every caller is user `anonymous` with role `admin`, and the security requirements below do not \
apply. When authentication is on, the first credential present decides (static key header, \
then `Authorization: Bearer|token`, then the session cookie); an invalid one is a 401 without \
falling through. The static key header is `auth.static.header_name` (default `X-API-Key`); the \
cookie is `__Host-apx_session` (`apx_session` with `server.insecure_cookies`).

This document is generated from the code (utoipa: `src/openapi.rs` and the annotations of the \
handlers in `src/routes/`); the integration test `openapi` checks it against every route in \
`src/router.rs` and against `docs/api.md`.";

#[derive(OpenApi)]
#[openapi(
    info(description = DESCRIPTION),
    paths(
        routes::health::live,
        stub_paths::healthz,
        routes::health::ready,
        routes::openapi::openapi,
        routes::metrics::metrics,
        routes::auth::status,
        routes::auth::types,
        routes::login::login,
        routes::login::logout,
        routes::root::root,
        routes::sessions::start,
        routes::start_with_profile::start_with_profile,
        routes::sessions::search,
        routes::session_events::events,
        routes::sessions::detail,
        routes::sessions::delete,
        routes::sessions::logs,
        routes::chat::history,
        routes::chat::post_message,
        routes::chat::status,
        routes::chat::slack_events,
        routes::profiles::create,
        routes::profiles::list,
        routes::profiles::read,
        routes::profiles::update,
        routes::profiles::delete,
        routes::profiles::add_repository,
        routes::profiles::add_template,
        routes::oauth::authorize,
        routes::oauth::login,
        routes::oauth::callback,
        routes::oauth::refresh,
        routes::oauth::logout,
        stub_paths::proxy_root_get,
        stub_paths::proxy_root_put,
        stub_paths::proxy_root_post,
        stub_paths::proxy_root_delete,
        stub_paths::proxy_root_options,
        stub_paths::proxy_root_head,
        stub_paths::proxy_root_patch,
        stub_paths::proxy_root_trace,
        stub_paths::proxy_get,
        stub_paths::proxy_put,
        stub_paths::proxy_post,
        stub_paths::proxy_delete,
        stub_paths::proxy_options,
        stub_paths::proxy_head,
        stub_paths::proxy_patch,
        stub_paths::proxy_trace,
    ),
    components(
        schemas(
            schemas::ErrorBody,
            schemas::Status,
            schemas::Message,
            agentapi_proxy_client::StartRequest,
            agentapi_proxy_client::StartResponse,
            agentapi_proxy_client::ProfileResponse,
        ),
        responses(
            responses::AgentAnswer,
            responses::Alive,
            responses::Started,
            responses::OneProfile,
            responses::Done,
            responses::Redirect,
            responses::BadRequest,
            responses::Unauthenticated,
            responses::Forbidden,
            responses::NotFound,
            responses::Conflict,
            responses::PayloadTooLarge,
            responses::UnsupportedMediaType,
            responses::QuotaExceeded,
            responses::RequestTimeout,
            responses::TooManyStreams,
            responses::Internal,
            responses::AgentFailedToStart,
            responses::AgentUnavailable,
            responses::AgentStarting,
            responses::AgentTimeout,
            responses::StopTimeout,
            responses::StartUnavailable,
            responses::StoreUnavailable,
            responses::GithubUnavailable,
            responses::Draining,
            responses::SignedIn,
            responses::SignedOut,
            responses::TooManyAttempts,
        ),
    ),
    modifiers(&SecuritySchemes),
    security(("apiKey" = []), ("bearer" = []), ("sessionCookie" = [])),
    tags(
        (name = "health", description = "Liveness, readiness and introspection (no authentication)."),
        (name = "auth", description = "Who the caller is and which sign-in methods exist."),
        (name = "sessions", description = "Starting, listing, inspecting and stopping agent sessions."),
        (name = "proxy", description = "Reverse proxy to a session's agent (agentapi's own routes: \
            /status, /messages, /message, /upload, /events, /chat/...)."),
        (name = "profiles", description = "Reusable starting points for sessions; owner-scoped, \
            admins see all."),
        (name = "oauth", description = "GitHub OAuth; these routes exist only when \
            `auth.github.oauth` is configured and never need authentication."),
        (name = "chat", description = "Chat bridges (Slack): a thread is a session. The \
            agent-facing routes take the session's own `APX_SESSION_TOKEN` as a bearer token."),
    ),
)]
struct ApiDoc;

/// The document as served: built from the annotations and serialised on first use, then
/// shared by every request.
pub fn document() -> &'static Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let text = ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document is plain data with string keys, so it serialises");
        Bytes::from(text)
    })
}
