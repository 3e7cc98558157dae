//! Reading JSON request bodies on API routes: media type (415), size (413), syntax and
//! nesting (400), and typed field access whose errors name the field but never echo values.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use http::header;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest JSON body an API route reads (security.md rule 11).
pub const MAX_JSON_BYTES: usize = 1024 * 1024;

/// A JSON object from the request body; an empty body reads as `{}`.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let headers = request.headers();
        let declared_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > MAX_JSON_BYTES as u64) {
            return Err(ApiError::PayloadTooLarge { limit: MAX_JSON_BYTES as u64 });
        }
        let is_json =
            headers.get(header::CONTENT_TYPE).map(|value| is_json_media_type(value.as_bytes()));
        // A declared non-JSON body is refused before it is read.
        if is_json == Some(false) && declared_length != Some(0) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = read_limited(request.into_body()).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(Map::new()));
        }
        if is_json != Some(true) {
            return Err(ApiError::UnsupportedMediaType);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => {
                Err(ApiError::bad_request("invalid_request", "the body must be a JSON object"))
            }
            Err(error) => Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "the body is not valid JSON (line {}, column {}){}",
                    error.line(),
                    error.column(),
                    if error.to_string().contains("recursion limit") {
                        ": nested too deeply"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }
}

async fn read_limited(body: Body) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(body, MAX_JSON_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit: MAX_JSON_BYTES as u64 })
        }
        Err(error) => match crate::proxy::stalled_after(error.as_ref()) {
            Some(after) => Err(ApiError::RequestTimeout { seconds: after.as_secs() }),
            None => {
                Err(ApiError::bad_request("invalid_request", "the request body could not be read"))
            }
        },
    }
}

fn is_json_media_type(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value).to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or_default().trim().to_string();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// An optional string field; `null` counts as absent.
pub fn optional_string(
    object: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => {
            Err(ApiError::bad_request("invalid_request", format!("`{field}` must be a string")))
        }
    }
}

/// An optional object of string values; `null` counts as absent.
pub fn string_map(
    object: &Map<String, Value>,
    field: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                _ => Err(ApiError::bad_request(
                    "invalid_request",
                    format!("`{field}.{}` must be a string", printable(key)),
                )),
            })
            .collect(),
        Some(_) => {
            Err(ApiError::bad_request("invalid_request", format!("`{field}` must be an object")))
        }
    }
}

/// A key as it may appear in an error message: printable and short.
fn printable(key: &str) -> String {
    let shown: String = key.chars().take(64).flat_map(char::escape_default).collect();
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json_media_type(ok.as_bytes()), "{ok}");
        }
        for bad in ["text/plain", "application/x-www-form-urlencoded", "json", ""] {
            assert!(!is_json_media_type(bad.as_bytes()), "{bad}");
        }
    }
}
