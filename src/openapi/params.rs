//! Path, query and header parameters of the routes, for `#[utoipa::path(params(...))]`.
//! Handlers read their query strings by hand (`routes::query`); these types only describe them.

use agentapi_proxy_client::SessionStatus;
use utoipa::IntoParams;

/// `{id}` of `/sessions/{id}...`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionIdPath {
    /// A session id: a canonical lowercase UUID v4. Anything else is 404.
    #[param(format = "uuid")]
    pub id: String,
}

/// `{id}` of `/profiles/{id}...`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProfileIdPath {
    /// A profile id (UUID).
    #[param(format = "uuid")]
    pub id: String,
}

/// `{id}` of the proxied routes `/{id}` and `/{id}/{rest}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProxySessionIdPath {
    /// A session id (canonical lowercase UUID v4; anything else is 404 without a lookup).
    /// Reserved first segments (`start`, `start-with-profile`, `search`, `sessions`,
    /// `profiles`, `oauth`, `auth`, `health`, `healthz`, `readyz`, `metrics`, `openapi.json`,
    /// `ui`) are never session ids.
    #[param(format = "uuid")]
    pub id: String,
}

/// `{rest}` of `/{id}/{rest}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProxyRestPath {
    /// The rest of the path, forwarded as received (still percent-encoded, may contain `/`),
    /// plus the query.
    pub rest: String,
}

/// `?wait=` of `POST /start` and `POST /start-with-profile`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParam {
    /// `false` (or `0`) answers at once with status `starting`; anything but true/false/1/0
    /// is 400.
    #[param(default = true)]
    pub wait: Option<bool>,
}

/// Filters and paging of `GET /search` (besides any number of `tag.<key>=<value>`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    pub status: Option<SessionStatus>,
    /// Someone else's id gives non-admins an empty list.
    pub user_id: Option<String>,
    /// Values above 1000 are clamped.
    #[param(default = 100, minimum = 0, maximum = 1000)]
    pub limit: Option<u64>,
    #[param(default = 0, minimum = 0)]
    pub offset: Option<u64>,
}

/// `?tail=` of `GET /sessions/{id}/logs`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TailParam {
    /// Lines to return; values above 10000 are clamped.
    #[param(default = 200, minimum = 0, maximum = 10000)]
    pub tail: Option<u64>,
}

/// `?return_to=` of `GET /oauth/login`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReturnToParam {
    /// A local path (`/x`; not `//x`, no scheme, no backslash).
    #[param(default = "/")]
    pub return_to: Option<String>,
}

/// What GitHub sends back to `GET /oauth/callback`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    pub code: String,
    pub state: String,
}

/// The OAuth session that `POST /oauth/refresh` and `POST /oauth/logout` act on.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct OAuthSessionHeader {
    /// The `session_id` of `GET /oauth/callback`; without it the bearer token or the session
    /// cookie names the session.
    #[param(rename = "X-Session-ID", required = false)]
    pub session_id: String,
}
