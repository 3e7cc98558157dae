//! The hand-described parts of the document stay true to the code they describe: the error
//! schema to the bodies [`ApiError`] writes, the enumerations to the server's own names.

use axum::response::IntoResponse;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::auth::{AuthType, PERMISSIONS, Permission};
use crate::error::ApiError;

fn schema(name: &str) -> Value {
    let document: Value = serde_json::from_slice(super::document()).expect("the document is JSON");
    document["components"]["schemas"][name].clone()
}

fn strings(value: &Value) -> Vec<String> {
    let items = value.as_array().expect("an array");
    items.iter().map(|item| item.as_str().expect("a string").to_string()).collect()
}

async fn body_of(error: ApiError) -> Value {
    let bytes = error.into_response().into_body().collect().await.expect("a body").to_bytes();
    serde_json::from_slice(&bytes).expect("a JSON body")
}

#[tokio::test]
async fn every_error_body_has_the_fields_of_the_error_schema() {
    let schema = schema("Error");
    let properties = schema["properties"].as_object().expect("properties");
    let required = strings(&schema["required"]);
    let errors = [
        ApiError::NotFound("no such session"),
        ApiError::MethodNotAllowed,
        ApiError::bad_request("invalid_request", "bad"),
        ApiError::Unauthenticated,
        ApiError::Forbidden("no".into()),
        ApiError::Conflict("again".into()),
        ApiError::PayloadTooLarge { limit: 1 },
        ApiError::UnsupportedMediaType,
        ApiError::RequestTimeout { seconds: 30 },
        ApiError::QuotaExceeded { message: "quota".into(), retry_after_seconds: 1 },
        ApiError::AtCapacity { message: "full".into(), retry_after_seconds: 1 },
        ApiError::Draining,
        ApiError::StoreUnavailable,
        ApiError::GithubUnavailable,
        ApiError::AgentUnavailable {
            code: "agent_unavailable",
            message: "gone".into(),
            details: Some(json!({"status": "exited"})),
        },
        ApiError::AgentStarting,
        ApiError::AgentTimeout { message: "slow".into(), details: Some(json!({"log": []})) },
        ApiError::StopTimeout,
        ApiError::Internal(anyhow::anyhow!("boom")),
    ];
    for error in errors {
        let body = body_of(error).await;
        let fields = body.as_object().expect("an object");
        for name in &required {
            assert!(fields[name].is_string(), "{name} in {body}");
        }
        for name in fields.keys() {
            assert!(properties.contains_key(name), "{name} of {body} is in the Error schema");
        }
    }
}

/// Every permission a route can require, and `*`. The `match` stops compiling when a
/// permission is added, until it is listed here too.
fn every_permission_name() -> Vec<&'static str> {
    use Permission::*;
    let all = [
        SessionCreate,
        SessionList,
        SessionDelete,
        SessionAccess,
        ProfileCreate,
        ProfileList,
        ProfileRead,
        ProfileUpdate,
        ProfileDelete,
        MetricsRead,
    ];
    for permission in all {
        match permission {
            SessionCreate | SessionList | SessionDelete | SessionAccess | ProfileCreate
            | ProfileList | ProfileRead | ProfileUpdate | ProfileDelete | MetricsRead => {}
        }
    }
    all.iter().map(|permission| permission.as_str()).chain(["*"]).collect()
}

#[test]
fn the_permission_schema_lists_every_permission_a_route_can_require() {
    assert_eq!(strings(&schema("Permission")["enum"]), every_permission_name());
}

#[test]
fn keys_and_roles_may_grant_exactly_the_permissions_routes_require() {
    assert_eq!(PERMISSIONS, every_permission_name());
}

#[test]
fn the_auth_type_enumeration_is_the_servers() {
    let names = strings(&schema("AuthStatus")["properties"]["auth_type"]["enum"]);
    let server = [
        AuthType::None,
        AuthType::ApiKey,
        AuthType::Github,
        AuthType::Oauth,
        AuthType::SessionToken,
    ];
    assert_eq!(names, server.map(AuthType::as_str));
}
