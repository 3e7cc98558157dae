//! `GET /`: a browser (`Accept` naming `text/html`) is sent to the dashboard at `/ui/`; API
//! callers get the 404 JSON answer every unknown path gets.

use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, LOCATION, VARY};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::ApiError;
use crate::openapi::responses::NotFound;

/// Whether the `Accept` headers name `text/html` (with any parameters, q=0 excluded).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let is_html = parts.next().is_some_and(|media| media.eq_ignore_ascii_case("text/html"));
            let refused = parts.any(|param| {
                param.split_once('=').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("q")
                        && value.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            is_html && !refused
        })
}

/// `GET /`
#[utoipa::path(
    get,
    path = "/",
    tag = "health",
    operation_id = "root",
    summary = "Browsers go to the dashboard",
    description = "With `Accept` naming `text/html`: 302 to `/ui/`. Otherwise the 404 every \
        unknown path gets.",
    security(),
    responses(
        (status = 302, description = "To the dashboard.",
            headers(("Location" = String, description = "`/ui/`"))),
        (status = 404, response = NotFound),
    )
)]
pub async fn root(headers: HeaderMap) -> Response {
    if !wants_html(&headers) {
        let mut response = ApiError::NotFound("no such route").into_response();
        response.headers_mut().insert(VARY, HeaderValue::from_static("Accept"));
        return response;
    }
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static("/ui/"));
    headers.insert(VARY, HeaderValue::from_static("Accept"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn browsers_want_html_and_api_callers_do_not() {
        assert!(wants_html(&accept("text/html,application/xhtml+xml,*/*;q=0.8")));
        assert!(wants_html(&accept("TEXT/HTML; charset=utf-8")));
        assert!(!wants_html(&accept("application/json")));
        assert!(!wants_html(&accept("*/*")));
        assert!(!wants_html(&accept("text/html;q=0")));
        assert!(!wants_html(&HeaderMap::new()));
    }
}
