//! The outermost request layer: a request id for every request (`X-Request-Id` in and out,
//! on every log line of the request), a debug log line per request, and HTTP metrics.
//! Only the path is logged, never the query (OAuth codes and states travel there).

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";

/// A caller's request id is kept if it is short and plain; otherwise a new one is made.
fn request_id(request: &Request) -> HeaderValue {
    request
        .headers()
        .get(REQUEST_ID)
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

/// Runs `handle` for `request` inside the request's span, then records its metrics and log
/// line and sets `X-Request-Id` on the answer. `route` is the matched route pattern.
pub async fn observed<F, Fut>(route: &str, request: Request, handle: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = %method,
        path = request.uri().path(),
    );
    let mut response = handle(request).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    crate::telemetry::http_request(route, &method, status, seconds);
    span.in_scope(|| {
        tracing::debug!(status, route = %route, ms = seconds * 1000.0, "request");
    });
    response.headers_mut().insert(REQUEST_ID, id);
    response
}
