//! The router: every route path written once, and the layers around them. Layer order,
//! outermost first: `hang` (after `/fake hang` nothing answers), host check (agentapi's, so a
//! proxy that forgets to rewrite `Host` fails), CORS (agentapi's, so a proxy can be seen to
//! strip it), then the routes.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use super::args::{Settings, split_host_port};
use super::conversation::Timing;
use super::problem::{Problem, host_of};
use super::state::Agent;
use super::{debug, handlers, pages, upload};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub agent: Arc<Agent>,
    pub timing: Timing,
    pub settings: Arc<Settings>,
    /// Where uploads go (one subdirectory per upload).
    pub upload_dir: Arc<PathBuf>,
}

/// Builds the echo agent's router.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/status", get(handlers::status))
        .route("/messages", get(handlers::messages))
        .route("/message", post(handlers::message))
        .route("/events", get(handlers::events))
        .route("/upload", post(upload::upload).layer(DefaultBodyLimit::max(upload::MAX_BODY)))
        .route("/", any(pages::root))
        .route("/chat", get(pages::chat))
        .route("/chat/", get(pages::chat))
        .route("/chat/{*rest}", get(pages::chat))
        .route("/openapi.json", get(pages::openapi))
        .route("/docs", get(pages::docs))
        .route("/debug/env", get(debug::env))
        .route("/debug/request", any(debug::request))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), cors))
        .layer(middleware::from_fn_with_state(app.clone(), host_check))
        .layer(middleware::from_fn_with_state(app.clone(), hang))
        .with_state(app)
}

async fn not_found(headers: HeaderMap) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, &host_of(&headers), "Not Found")
}

async fn method_not_allowed(headers: HeaderMap) -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, &host_of(&headers), "Method Not Allowed")
}

/// After `/fake hang`, every request waits forever.
async fn hang(State(app): State<App>, request: Request, next: Next) -> Response {
    if app.agent.is_hung() {
        std::future::pending::<()>().await;
    }
    next.run(request).await
}

/// agentapi's host check: the host (port ignored, case-insensitive) must be allowed. Like Go,
/// an absolute-form target's authority counts as the host; `X-Forwarded-Host` is ignored.
async fn host_check(State(app): State<App>, request: Request, next: Next) -> Response {
    let allowed = &app.settings.allowed_hosts;
    if allowed.iter().any(|h| h == "*") {
        return next.run(request).await;
    }
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str().to_string()),
        None => {
            request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string)
        }
    };
    let ok = host.filter(|h| !h.is_empty()).is_some_and(|h| {
        let (name, _) = split_host_port(&h);
        let name = name.to_ascii_lowercase();
        allowed.contains(&name)
    });
    if ok {
        return next.run(request).await;
    }
    let body = format!("Invalid host header. Allowed hosts: {}\n", allowed.join(", "));
    (
        StatusCode::BAD_REQUEST,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// CORS like agentapi's go-chi/cors setup: allowed origins are echoed back with credentials;
/// preflights are answered here.
async fn cors(State(app): State<App>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin.as_ref().is_some_and(|o| {
        let origins = &app.settings.allowed_origins;
        origins.iter().any(|a| a == "*" || a.as_bytes() == o.as_bytes())
    });
    let preflight = request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let requested = request.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD).cloned();
        let method_ok = requested.as_ref().is_some_and(|m| {
            matches!(m.as_bytes(), b"GET" | b"POST" | b"PUT" | b"DELETE" | b"OPTIONS" | b"HEAD")
        });
        let mut response = StatusCode::OK.into_response();
        let headers = response.headers_mut();
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        headers.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Method"));
        headers.append(header::VARY, HeaderValue::from_static("Access-Control-Request-Headers"));
        if let (true, true, Some(origin), Some(method)) = (allowed, method_ok, origin, requested) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method);
            if let Some(wanted) = request.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, wanted.clone());
            }
            headers
                .insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("300"));
        }
        return response;
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let (true, Some(origin)) = (allowed, origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Link"));
    }
    response
}
