//! Test aids that agentapi does not have: `GET /debug/env` (what the agent was started with)
//! and `/debug/request` (what reached it: method, raw target, every header in order).

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// `{"env": {...}, "argv": [...], "cwd": "...", "pid": N}`.
pub async fn env() -> Response {
    let env: Map<String, Value> = std::env::vars_os()
        .map(|(k, v)| {
            (k.to_string_lossy().into_owned(), Value::String(v.to_string_lossy().into_owned()))
        })
        .collect();
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let cwd = std::env::current_dir().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    axum::Json(json!({
        "env": env,
        "argv": argv,
        "cwd": cwd,
        "pid": std::process::id(),
    }))
    .into_response()
}

/// `{"method": "...", "target": "<request target as received>", "headers": [[name, value]...]}`.
///
/// The target is the URI hyper parsed, which keeps the bytes as sent (percent-encoding,
/// query, absolute form). Headers come in arrival order grouped by name (the order hyper's
/// header map keeps); names are lower-case as hyper stores them; duplicates are all kept.
pub async fn request(request: Request) -> Response {
    let headers: Vec<[String; 2]> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            [name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()]
        })
        .collect();
    axum::Json(json!({
        "method": request.method().as_str(),
        "target": request.uri().to_string(),
        "headers": headers,
    }))
    .into_response()
}
