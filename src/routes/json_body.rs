//! Reading JSON request bodies on API routes into the client crate's wire types: media type
//! (415), size (413), syntax and nesting (400), then a typed decode whose 400 messages name
//! the field by its path (`environment.FOO`, `message_templates[0].content`) but never echo
//! values.
//!
//! The body is read into a `serde_json::Value` before the typed decode, on purpose: serde_json
//! bounds nesting (its recursion limit, 128) only while it builds values, and skips fields a
//! struct does not know without any bound, so `{"x": [[[...]]]}` would pass a direct decode.
//! Going through `Value` also keeps a repeated key meaning "the last one wins".

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use http::header;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use serde_path_to_error::{Path, Segment};

use crate::error::ApiError;

/// Largest JSON body an API route reads (security.md rule 11).
pub const MAX_JSON_BYTES: usize = 1024 * 1024;

/// A request body decoded into `T`; an empty body reads as `{}`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let object = read_object(request).await?;
        decode(Value::Object(object)).map(Self)
    }
}

/// The body as a JSON object, after the media type, size, syntax and nesting checks.
async fn read_object(request: Request) -> Result<Map<String, Value>, ApiError> {
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
        return Ok(Map::new());
    }
    if is_json != Some(true) {
        return Err(ApiError::UnsupportedMediaType);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("invalid_request", "the body must be a JSON object")),
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

/// Decodes a JSON value into `T`; a mismatch is a 400 `invalid_request` naming its field.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let message = describe(error.path(), &error.inner().to_string());
        ApiError::bad_request("invalid_request", message)
    })
}

/// A message for serde's `reason` at `path`, without the value serde quotes in it.
fn describe(path: &Path, reason: &str) -> String {
    let mut field = shown_path(path);
    if let Some(missing) = reason.strip_prefix("missing field `").and_then(|r| r.strip_suffix('`'))
    {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(missing);
        return format!("`{field}` is required");
    }
    // "unknown field `tag`, expected one of `environment`, ...": the path ends in the
    // caller's field name, already escaped and cut; serde's list of known fields follows.
    if reason.starts_with("unknown field `")
        && let Some(end) = reason.rfind("`, expected ").or_else(|| reason.rfind("`, there are"))
    {
        return format!("unknown field `{field}`; {}", &reason[end + "`, ".len()..]);
    }
    let field = if field.is_empty() { "the body".to_string() } else { format!("`{field}`") };
    // "invalid type: string \"...\", expected a map": the found value is dropped, its kind kept.
    let mismatch = ["invalid type: ", "invalid value: ", "invalid length "]
        .iter()
        .find_map(|prefix| reason.strip_prefix(prefix))
        .and_then(|rest| Some((rest, rest.rfind(", expected ")?)));
    match mismatch {
        Some((rest, at)) => {
            let expected = plain_expectation(&rest[at + ", expected ".len()..]);
            match found_kind(rest) {
                Some(found) => format!("{field}: expected {expected}, found {found}"),
                None => format!("{field}: expected {expected}"),
            }
        }
        None => format!("{field} is invalid"),
    }
}

/// The path as shown in messages: `tags.team`, `repository_history[2].url`; map keys are
/// escaped and cut to 64 characters.
fn shown_path(path: &Path) -> String {
    let mut shown = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => shown.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !shown.is_empty() {
                    shown.push('.');
                }
                shown.extend(key.chars().take(64).flat_map(char::escape_default));
            }
            Segment::Unknown => shown.push_str(if shown.is_empty() { "?" } else { ".?" }),
        }
    }
    shown
}

/// serde's Rust-flavoured expectation in JSON words.
fn plain_expectation(expected: &str) -> &str {
    match expected {
        "a map" => "an object",
        "a sequence" => "an array",
        _ if expected.starts_with("struct ") => "an object",
        _ => expected,
    }
}

/// The JSON kind of what serde found, from the start of its description.
fn found_kind(unexpected: &str) -> Option<&'static str> {
    let word = unexpected.split([' ', ',']).next()?;
    Some(match word {
        "integer" | "floating" => "a number",
        "string" => "a string",
        "boolean" => "a boolean",
        "null" => "null",
        "map" => "an object",
        "sequence" => "an array",
        _ => return None,
    })
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

    fn message_of<T: DeserializeOwned + std::fmt::Debug>(body: Value) -> String {
        match decode::<T>(body) {
            Err(ApiError::BadRequest { code: "invalid_request", message }) => message,
            other => panic!("expected a 400 invalid_request, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_start_field_is_named_and_user_id_is_still_accepted() {
        use agentapi_proxy_client::StartRequest;
        use serde_json::json;
        assert_eq!(
            message_of::<StartRequest>(json!({"tag": {"team": "web"}})),
            "unknown field `tag`; expected one of `environment`, `tags`, `message`, `user_id`"
        );
        let odd = "x`, expected \u{7}".repeat(30);
        let message = message_of::<StartRequest>(json!({ odd: 1 }));
        assert!(message.starts_with("unknown field `x`, expected \\u{7}x`"), "{message}");
        assert!(message.ends_with("; expected one of `environment`, `tags`, `message`, `user_id`"));
        assert!(!message.contains('\u{7}') && message.len() < 400, "{message}");
        assert!(decode::<StartRequest>(json!({"user_id": "mallory", "tags": {}})).is_ok());
    }

    #[test]
    fn type_errors_name_the_field_by_its_path_without_the_value() {
        use agentapi_proxy_client::{ProfileInput, StartRequest};
        use serde_json::json;
        assert_eq!(
            message_of::<StartRequest>(json!({"environment": {"FOO": 1}})),
            "`environment.FOO`: expected a string, found a number"
        );
        assert_eq!(
            message_of::<StartRequest>(json!({"environment": {"FOO": null}})),
            "`environment.FOO`: expected a string, found null"
        );
        let shown = message_of::<StartRequest>(json!({"tags": "s3cret-value"}));
        assert_eq!(shown, "`tags`: expected an object, found a string");
        assert_eq!(
            message_of::<ProfileInput>(
                json!({"message_templates": [{"name": "t", "content": "c", "variables": ["a", 7]}]})
            ),
            "`message_templates[0].variables[1]`: expected a string, found a number"
        );
        assert_eq!(
            message_of::<ProfileInput>(json!({"repository_history": [{"url": "o/r"}, {}]})),
            "`repository_history[1].url` is required"
        );
        assert_eq!(
            message_of::<StartRequest>(json!({"environment": {"A\nB\u{7}": true}})),
            "`environment.A\\nB\\u{7}`: expected a string, found a boolean"
        );
    }

    #[test]
    fn null_reads_as_absent_where_a_field_is_optional() {
        use agentapi_proxy_client::StartRequest;
        let decoded: StartRequest = decode(
            serde_json::json!({"environment": null, "tags": null, "message": null, "user_id": "x"}),
        )
        .expect("decodes");
        assert_eq!(decoded, StartRequest::default());
    }

    #[test]
    fn nesting_is_bounded_even_in_fields_the_type_ignores() {
        #[derive(serde::Deserialize)]
        struct IgnoresOtherFields {}
        let deep = format!(r#"{{"ignored": {}{}}}"#, "[".repeat(200), "]".repeat(200));
        let direct = serde_json::from_str::<IgnoresOtherFields>(&deep);
        assert!(direct.is_ok(), "serde_json skips an unknown field without its depth limit");
        assert!(serde_json::from_str::<Value>(&deep).is_err(), "so the body is read as a Value");
    }
}
