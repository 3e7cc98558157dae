//! Operations whose handler does not carry its own `#[utoipa::path]`: `/healthz` (it shares
//! `routes::health::live` with `/health`) and the proxied routes `/{id}` and `/{id}/{rest}`
//! (`routes::proxy` forwards every method to the agent, so each method gets its own stub and
//! operation id here). The stubs are never called; only their annotations count.

#![allow(dead_code)]

use super::params::{ProxyRestPath, ProxySessionIdPath};
use super::responses::{
    AgentAnswer, AgentStarting, AgentTimeout, AgentUnavailable, Alive, Forbidden, NotFound,
    PayloadTooLarge, RequestTimeout, TooManyStreams, Unauthenticated,
};

/// `GET /healthz`: the same answer as `GET /health`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    summary = "Liveness",
    security(),
    responses((status = 200, response = Alive))
)]
pub(super) fn healthz() {}

const PROXY_DESCRIPTION: &str = "Permission `session:access`; owner or admin. The request goes \
    to the session's agent with the rest of the path and the query as received; the caller's \
    credentials are not forwarded (`proxy.strip_credentials`). CORS preflights are answered \
    by the proxy itself. The error answers below are the proxy's own.";

/// One stub per method of a proxied path, all with the same parameters and answers.
macro_rules! proxied {
    ($path:tt, params $params:tt, $($stub:ident = $method:ident, $id:tt, $summary:tt;)+) => {$(
        #[utoipa::path(
            $method,
            path = $path,
            tag = "proxy",
            operation_id = $id,
            summary = $summary,
            description = PROXY_DESCRIPTION,
            params $params,
            responses(
                (status = "default", response = AgentAnswer),
                (status = 401, response = Unauthenticated),
                (status = 403, response = Forbidden),
                (status = 404, response = NotFound),
                (status = 408, response = RequestTimeout),
                (status = 413, response = PayloadTooLarge),
                (status = 429, response = TooManyStreams),
                (status = 502, response = AgentUnavailable),
                (status = 503, response = AgentStarting),
                (status = 504, response = AgentTimeout),
            )
        )]
        pub(super) fn $stub() {}
    )+};
}

proxied! {
    "/{id}", params(ProxySessionIdPath),
    proxy_root_get = get, "proxyRootGet", "Proxy to the agent's `/` (permission session:access)";
    proxy_root_put = put, "proxyRootPut", "Proxy to the agent's `/`";
    proxy_root_post = post, "proxyRootPost", "Proxy to the agent's `/`";
    proxy_root_delete = delete, "proxyRootDelete", "Proxy to the agent's `/`";
    proxy_root_options = options, "proxyRootOptions",
        "Proxy to the agent's `/` (CORS preflights are answered by the proxy)";
    proxy_root_head = head, "proxyRootHead", "Proxy to the agent's `/`";
    proxy_root_patch = patch, "proxyRootPatch", "Proxy to the agent's `/`";
    proxy_root_trace = trace, "proxyRootTrace", "Proxy to the agent's `/`";
}

proxied! {
    "/{id}/{rest}", params(ProxySessionIdPath, ProxyRestPath),
    proxy_get = get, "proxyGet",
        "Proxy to the agent (permission session:access), e.g. GET /{id}/status, \
         /{id}/messages, /{id}/events (SSE)";
    proxy_put = put, "proxyPut", "Proxy to the agent";
    proxy_post = post, "proxyPost", "Proxy to the agent, e.g. POST /{id}/message, /{id}/upload";
    proxy_delete = delete, "proxyDelete", "Proxy to the agent";
    proxy_options = options, "proxyOptions",
        "Proxy to the agent (CORS preflights are answered by the proxy)";
    proxy_head = head, "proxyHead", "Proxy to the agent";
    proxy_patch = patch, "proxyPatch", "Proxy to the agent";
    proxy_trace = trace, "proxyTrace", "Proxy to the agent";
}
