//! CORS for the whole server, per `cors.allowed_origins` (security.md rule 8): off when the
//! list is empty; `["*"]` allows any origin but never with credentials; otherwise exact
//! origins are echoed with `Access-Control-Allow-Credentials: true` and `Vary: Origin`.
//!
//! Preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are answered here,
//! before authentication, on every path including `/{id}/...`: `204` with the allow headers
//! for an allowed origin, `403` JSON (`forbidden`) for any other. Agents' own CORS headers
//! are dropped by the proxy path, so what a browser sees comes from here only.
//!
//! Why not `tower_http::cors::CorsLayer` (tower-http 0.6, checked): it answers *every*
//! `OPTIONS` request as a preflight, without looking for `Access-Control-Request-Method`, so a
//! plain `OPTIONS /{id}/...` meant for an agent would never reach it (sessions.md: the rest is
//! forwarded as sent); and it answers a preflight from an origin that is not allowed with 200
//! and no allow headers, where api.md wants `403` with the JSON error body. Wrapping it would
//! need this module's origin decision anyway, so the decision and the headers stay here.
//!
//! Install it as the outermost layer (added last) so it runs before auth:
//! ```ignore
//! router.layer(axum::middleware::from_fn_with_state(settings.cors.clone(), cors::cors))
//! ```

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::config::CorsConfig;
use crate::error::ApiError;

/// Methods a preflight is told are allowed.
const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";
/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: &str = "600";

/// The prepared `cors.allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsSettings {
    /// Empty list: no CORS headers, preflights go on to the routes like any request.
    Off,
    /// `["*"]`: any origin, never with credentials.
    Any,
    /// Exact origins (`scheme://host[:port]`), compared byte for byte.
    Origins(Vec<HeaderValue>),
}

/// What to tell a request with this `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// CORS is off, or the request sent no `Origin`: add nothing.
    NotCors,
    /// Allowed: `Access-Control-Allow-Origin` is `allow_origin`.
    Allowed { allow_origin: HeaderValue, credentials: bool },
    /// An origin not on the list: no CORS headers; a preflight is refused.
    Denied,
}

impl CorsSettings {
    pub fn from_config(config: &CorsConfig) -> Self {
        let origins = &config.allowed_origins;
        if origins.is_empty() {
            Self::Off
        } else if origins.iter().any(|origin| origin == "*") {
            Self::Any
        } else {
            Self::Origins(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect())
        }
    }

    pub fn is_enabled(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// The decision for a request carrying `origin`.
    pub fn decide(&self, origin: Option<&HeaderValue>) -> Decision {
        let Some(origin) = origin else { return Decision::NotCors };
        match self {
            Self::Off => Decision::NotCors,
            Self::Any => Decision::Allowed {
                allow_origin: HeaderValue::from_static("*"),
                credentials: false,
            },
            Self::Origins(allowed) => {
                if allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()) {
                    Decision::Allowed { allow_origin: origin.clone(), credentials: true }
                } else {
                    Decision::Denied
                }
            }
        }
    }
}

/// Whether `request` is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The middleware: answers preflights itself and decorates every other response.
pub async fn cors(
    State(settings): State<Arc<CorsSettings>>,
    request: Request,
    next: Next,
) -> Response {
    if !settings.is_enabled() {
        return next.run(request).await;
    }
    let decision = settings.decide(request.headers().get(header::ORIGIN));
    if is_preflight(request.method(), request.headers()) {
        return preflight(&settings, decision, request.headers());
    }
    let mut response = next.run(request).await;
    decorate(&settings, decision, response.headers_mut());
    response
}

fn preflight(settings: &CorsSettings, decision: Decision, request: &HeaderMap) -> Response {
    let mut response = match &decision {
        Decision::Allowed { .. } => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            if let Some(requested) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
            }
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
            response
        }
        Decision::NotCors | Decision::Denied => {
            ApiError::Forbidden("origin not allowed".into()).into_response()
        }
    };
    let headers = response.headers_mut();
    headers.append(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    decorate_headers(settings, decision, headers, false);
    response
}

fn decorate(settings: &CorsSettings, decision: Decision, headers: &mut HeaderMap) {
    decorate_headers(settings, decision, headers, true);
}

fn decorate_headers(
    settings: &CorsSettings,
    decision: Decision,
    headers: &mut HeaderMap,
    vary: bool,
) {
    // With exact origins the answer depends on `Origin`; tell caches, whatever the decision.
    if vary && matches!(settings, CorsSettings::Origins(_)) {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Decision::Allowed { allow_origin, credentials } = decision {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if credentials {
            headers
                .insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::any;
    use tower::ServiceExt;

    fn settings(origins: &[&str]) -> CorsSettings {
        CorsSettings::from_config(&CorsConfig {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        })
    }

    fn origin(value: &'static str) -> HeaderValue {
        HeaderValue::from_static(value)
    }

    #[test]
    fn decisions() {
        assert_eq!(settings(&[]), CorsSettings::Off);
        assert_eq!(settings(&[]).decide(Some(&origin("http://a.example"))), Decision::NotCors);

        let any = settings(&["*"]);
        assert_eq!(
            any.decide(Some(&origin("http://a.example"))),
            Decision::Allowed { allow_origin: origin("*"), credentials: false }
        );
        assert_eq!(any.decide(None), Decision::NotCors);

        let exact = settings(&["http://a.example", "https://b.example:8443"]);
        assert_eq!(
            exact.decide(Some(&origin("https://b.example:8443"))),
            Decision::Allowed { allow_origin: origin("https://b.example:8443"), credentials: true }
        );
        assert_eq!(exact.decide(Some(&origin("http://A.example"))), Decision::Denied);
        assert_eq!(exact.decide(Some(&origin("http://a.example.evil"))), Decision::Denied);
        assert_eq!(exact.decide(Some(&origin("null"))), Decision::Denied);
        assert_eq!(exact.decide(None), Decision::NotCors);
    }

    fn app(origins: &[&str]) -> Router {
        let settings = Arc::new(settings(origins));
        Router::new()
            .route("/{*rest}", any(|| async { (StatusCode::UNAUTHORIZED, "behind auth") }))
            .layer(axum::middleware::from_fn_with_state(settings, cors))
    }

    async fn send(app: Router, method: Method, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::builder().method(method).uri("/11111111/events");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn get<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    const PREFLIGHT: [(&str, &str); 3] = [
        ("origin", "http://a.example"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "x-api-key, content-type"),
    ];

    #[tokio::test]
    async fn preflights_from_allowed_origins_are_answered_before_auth() {
        let response = send(app(&["http://a.example"]), Method::OPTIONS, &PREFLIGHT).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(get(&response, "access-control-allow-origin"), Some("http://a.example"));
        assert_eq!(get(&response, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&response, "access-control-allow-headers"), Some("x-api-key, content-type"));
        assert!(get(&response, "access-control-allow-methods").unwrap().contains("POST"));
        assert!(get(&response, "vary").unwrap().contains("Origin"));

        let any = send(app(&["*"]), Method::OPTIONS, &PREFLIGHT).await;
        assert_eq!(any.status(), StatusCode::NO_CONTENT);
        assert_eq!(get(&any, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&any, "access-control-allow-credentials"), None);
    }

    #[tokio::test]
    async fn preflights_from_other_origins_get_403_without_allow_headers() {
        let response = send(app(&["http://b.example"]), Method::OPTIONS, &PREFLIGHT).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(get(&response, "access-control-allow-origin"), None);
        assert_eq!(get(&response, "access-control-allow-methods"), None);
        assert_eq!(get(&response, "content-type"), Some("application/json"));
    }

    #[tokio::test]
    async fn other_responses_are_decorated_per_origin() {
        let allowed =
            send(app(&["http://a.example"]), Method::GET, &[("origin", "http://a.example")]).await;
        assert_eq!(allowed.status(), StatusCode::UNAUTHORIZED, "the route still decides");
        assert_eq!(get(&allowed, "access-control-allow-origin"), Some("http://a.example"));
        assert_eq!(get(&allowed, "vary"), Some("Origin"));

        let other =
            send(app(&["http://a.example"]), Method::GET, &[("origin", "http://evil.example")])
                .await;
        assert_eq!(get(&other, "access-control-allow-origin"), None);
        assert_eq!(get(&other, "vary"), Some("Origin"));
    }

    #[tokio::test]
    async fn off_by_default_adds_nothing_and_leaves_preflights_to_the_routes() {
        let response = send(app(&[]), Method::OPTIONS, &PREFLIGHT).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().keys().all(|n| !n.as_str().starts_with("access-control-")));
        assert_eq!(get(&response, "vary"), None);
    }
}
