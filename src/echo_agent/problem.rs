//! Errors shaped like huma's (the framework agentapi uses): `application/problem+json`
//! `{"$schema","title","status","detail","errors"}`, and the checks huma applies to a JSON
//! request body (content type, size, syntax, schema) before a handler sees it.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

/// Largest JSON request body huma accepts by default.
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// One entry of `errors`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A huma error response.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    pub errors: Vec<ErrorDetail>,
    /// The request's `Host`, for the `$schema` link.
    pub host: String,
}

impl Problem {
    pub fn new(status: StatusCode, host: &str, detail: impl Into<String>) -> Self {
        Problem { status, detail: detail.into(), errors: Vec::new(), host: host.to_string() }
    }

    pub fn with_error(mut self, message: impl Into<String>, location: &str, value: Value) -> Self {
        self.errors.push(ErrorDetail {
            message: message.into(),
            location: Some(location.to_string()),
            value: Some(value),
        });
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "$schema")]
            schema: String,
            title: &'a str,
            status: u16,
            detail: &'a str,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            errors: &'a [ErrorDetail],
        }
        let body = Body {
            schema: schema_url(&self.host, "ErrorModel"),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            errors: &self.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/problem+json")
            .header(header::LINK, schema_link(&self.host, "ErrorModel"))
            .body(axum::body::Body::from(bytes))
            .unwrap_or_else(|_| self.status.into_response())
    }
}

/// `http://<host>/schemas/<Name>.json`, as huma's `$schema` fields say.
pub fn schema_url(host: &str, name: &str) -> String {
    format!("http://{host}/schemas/{name}.json")
}

/// huma's `Link: </schemas/Name.json>; rel="describedBy"` header value.
pub fn schema_link(_host: &str, name: &str) -> String {
    format!("</schemas/{name}.json>; rel=\"describedBy\"")
}

/// The request's `Host` header (empty when absent), for `$schema` links.
pub fn host_of(headers: &HeaderMap) -> String {
    headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string()
}

/// Reads a JSON request body like huma: unknown content type → 415, larger than 1 MiB →
/// 413, empty → 400, bad syntax → 400. A missing content type counts as JSON.
pub async fn read_json(headers: &HeaderMap, body: Body) -> Result<Value, Problem> {
    let host = host_of(headers);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .unwrap_or_default();
    if !is_json(&content_type) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &host,
            "Error while parsing input body",
        )
        .with_error(format!("unknown content type: {content_type}"), "body", Value::Null));
    }
    let bytes = match axum::body::to_bytes(body, MAX_JSON_BODY).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|e| e.is::<http_body_util::LengthLimitError>())
                || err.to_string().contains("length limit");
            return Err(if too_large {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &host,
                    format!("request body is too large limit={MAX_JSON_BODY} bytes"),
                )
            } else {
                Problem::new(StatusCode::BAD_REQUEST, &host, "unable to read request body")
            });
        }
    };
    if bytes.is_empty() {
        return Err(Problem::new(StatusCode::BAD_REQUEST, &host, "request body is required"));
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        Problem::new(StatusCode::BAD_REQUEST, &host, "Error while parsing input body").with_error(
            err.to_string(),
            "body",
            Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        )
    })
}

fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    mime.is_empty() || mime == "application/json" || mime.ends_with("+json")
}

/// The validated body of `POST /message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRequest {
    pub content: String,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    User,
    Raw,
}

/// Validates `{"content": string, "type": "user"|"raw"}` like huma's schema check: every
/// problem is listed; unknown properties are refused (`$schema` is allowed).
pub fn validate_message(host: &str, value: &Value) -> Result<MessageRequest, Problem> {
    let invalid = || Problem::new(StatusCode::UNPROCESSABLE_ENTITY, host, "validation failed");
    let Some(object) = value.as_object() else {
        return Err(invalid().with_error("expected object", "body", value.clone()));
    };
    let mut problem = invalid();
    let mut content = None;
    let mut kind = None;
    for (key, field) in object {
        match key.as_str() {
            "$schema" => {}
            "content" => match field.as_str() {
                Some(text) => content = Some(text.to_string()),
                None => {
                    problem = problem.with_error("expected string", "body.content", field.clone())
                }
            },
            "type" => match field.as_str() {
                Some("user") => kind = Some(MessageKind::User),
                Some("raw") => kind = Some(MessageKind::Raw),
                _ => {
                    problem = problem.with_error(
                        "expected value to be one of \"user, raw\"",
                        "body.type",
                        field.clone(),
                    )
                }
            },
            other => {
                problem = problem.with_error(
                    "unexpected property",
                    &format!("body.{other}"),
                    field.clone(),
                )
            }
        }
    }
    for required in ["content", "type"] {
        if !object.contains_key(required) {
            problem = problem.with_error(
                format!("expected required property {required} to be present"),
                "body",
                value.clone(),
            );
        }
    }
    match (content, kind) {
        (Some(content), Some(kind)) if problem.errors.is_empty() => {
            Ok(MessageRequest { content, kind })
        }
        _ => Err(problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_validation() {
        let ok = validate_message("h", &json!({"content": "hi", "type": "user", "$schema": "x"}));
        assert_eq!(ok.ok(), Some(MessageRequest { content: "hi".into(), kind: MessageKind::User }));
        let err = validate_message("h", &json!({"type": "bogus", "extra": 1}))
            .err()
            .map(|p| p.errors.iter().filter_map(|e| e.location.clone()).collect::<Vec<_>>());
        assert_eq!(err, Some(vec!["body.extra".into(), "body.type".into(), "body".into()]));
        assert!(validate_message("h", &json!([1])).is_err());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(""));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
    }
}
