//! The outermost request layer: a request id for every request (`X-Request-Id` in and out,
//! on every log line of the request, through a task-local the log format reads), a debug log
//! line per request, and HTTP metrics.
//! Only the path is logged, never the query (OAuth codes and states travel there).

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A caller's request id is kept if it is short and plain; otherwise a new one is made.
fn request_id(request: &Request) -> HeaderValue {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .filter(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 128
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// `<random per process>-<counter>`: unique, and cheap enough for every request.
fn new_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    let number = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = [prefix.as_str(), "-", itoa::Buffer::new().format(number)].concat();
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The middleware the router installs outermost.
pub async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |matched| matched.as_str().to_string());
    observed(&route, request, |request| next.run(request)).await
}

tokio::task_local! {
    /// The id of the request the current task is serving.
    static REQUEST_ID: HeaderValue;
}

/// The id of the request being served by the current task, for log lines.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_str().ok().map(str::to_owned)).ok().flatten()
}

/// Runs `handle` for `request` with the request's id in scope for log lines, then records its
/// metrics and debug log line and sets `X-Request-Id` on the answer. `route` is the matched
/// route pattern.
pub async fn observed<F, Fut>(route: &str, request: Request, handle: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().clone();
    let path = tracing::enabled!(tracing::Level::DEBUG).then(|| request.uri().path().to_owned());
    let mut response = REQUEST_ID.scope(id.clone(), handle(request)).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    crate::telemetry::http_request(route, &method, status, seconds);
    if let Some(path) = path {
        REQUEST_ID.sync_scope(id.clone(), || {
            tracing::debug!(status, %method, path, route, ms = seconds * 1000.0, "request");
        });
    }
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    response
}
