//! `GET /openapi.json` (no authentication): the OpenAPI 3.1 description of every route.
//!
//! The document is written by hand in `src/openapi.json` and compiled in. The integration
//! test `openapi` keeps it honest: it parses it, and checks that every `.route(...)` in
//! `router.rs` appears in it with its methods and that it names no route that does not exist.

use axum::response::IntoResponse;
use http::header;

/// The document, exactly as served.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// `GET /openapi.json`
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
