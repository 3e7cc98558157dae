//! The non-API routes: `/` (redirect to the chat UI), `/chat/*` (a tiny chat page),
//! `/openapi.json` and `/docs`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::http::App;

/// `GET /` → 307 to `<chat base path>/embed`, with Go's little HTML body.
pub async fn root(State(app): State<App>) -> Response {
    let target = format!("{}/embed", app.settings.chat_base_path);
    let body = format!("<a href=\"{}\">Temporary Redirect</a>.\n\n", escape(&target));
    (
        StatusCode::TEMPORARY_REDIRECT,
        [
            (header::LOCATION, target),
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
        ],
        body,
    )
        .into_response()
}

/// Any page under `/chat`: a minimal chat UI that uses the API next to the base path.
pub async fn chat(State(app): State<App>) -> Html<String> {
    let base = &app.settings.chat_base_path;
    let api = base.rsplit_once('/').map(|(parent, _)| parent).unwrap_or("");
    Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Echo agent</title></head>
<body>
<h1>Echo agent</h1>
<pre id="log"></pre>
<form id="f"><input id="c" autofocus size="60"><button>Send</button></form>
<script>
const api = {api};
const log = document.getElementById("log");
const messages = new Map();
function render() {{ log.textContent = [...messages.values()].map(m => m.role + ": " + m.message).join("\n"); }}
const events = new EventSource(api + "/events");
events.addEventListener("message_update", e => {{ const m = JSON.parse(e.data); messages.set(m.id, m); render(); }});
document.getElementById("f").onsubmit = async e => {{
  e.preventDefault();
  const c = document.getElementById("c");
  await fetch(api + "/message", {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{content: c.value, type: "user"}})}});
  c.value = "";
}};
</script>
</body></html>
"#,
        api = serde_json::Value::String(api.to_string()),
    ))
}

/// `GET /docs`: a small page pointing at the schema.
pub async fn docs() -> Html<&'static str> {
    Html(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Echo agent API</title></head>\n\
         <body><h1>Echo agent API</h1><p>An agentapi-compatible echo agent. \
         The schema is at <a href=\"openapi.json\">openapi.json</a>.</p></body></html>\n",
    )
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    axum::Json(openapi_document()).into_response()
}

/// A small OpenAPI 3.1 description of the routes (also printed by `--print-openapi`).
pub fn openapi_document() -> serde_json::Value {
    let json_body = |schema: &str| json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let problem = json!({"description": "Error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ErrorModel"}}}});
    let doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "AgentAPI", "version": env!("CARGO_PKG_VERSION"),
                 "description": "agentapi-compatible echo agent (agentapi-proxy echo-agent)"},
        "paths": {
            "/status": {"get": {"operationId": "get-status", "responses": {"200": json_body("StatusResponseBody"), "default": problem}}},
            "/messages": {"get": {"operationId": "get-messages", "responses": {"200": json_body("MessagesResponseBody"), "default": problem}}},
            "/message": {"post": {"operationId": "post-message",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MessageRequestBody"}}}},
                "responses": {"200": json_body("MessageResponseBody"), "default": problem}}},
            "/upload": {"post": {"operationId": "post-upload",
                "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "contentEncoding": "binary"}}}}}},
                "responses": {"200": json_body("UploadResponseBody"), "default": problem}}},
            "/events": {"get": {"operationId": "subscribeEvents", "summary": "Subscribe to events",
                "responses": {"200": {"description": "OK", "content": {"text/event-stream": {"schema": {"type": "array", "items": {"oneOf": [
                    {"type": "object", "properties": {"event": {"const": "message_update"}, "data": {"$ref": "#/components/schemas/MessageUpdateBody"}}},
                    {"type": "object", "properties": {"event": {"const": "status_change"}, "data": {"$ref": "#/components/schemas/StatusChangeBody"}}},
                    {"type": "object", "properties": {"event": {"const": "agent_error"}, "data": {"$ref": "#/components/schemas/AgentErrorBody"}}}
                ]}}}}}}}}
        },
        "components": {"schemas": {
            "StatusResponseBody": {"type": "object", "required": ["status", "agent_type", "transport"], "properties": {
                "status": {"type": "string", "enum": ["running", "stable"]}, "agent_type": {"type": "string"}, "transport": {"type": "string"}}},
            "Message": {"type": "object", "required": ["id", "content", "role", "time"], "properties": {
                "id": {"type": "integer"}, "content": {"type": "string"}, "role": {"type": "string", "enum": ["user", "agent"]}, "time": {"type": "string", "format": "date-time"}}},
            "MessagesResponseBody": {"type": "object", "required": ["messages"], "properties": {"messages": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}}}},
            "MessageRequestBody": {"type": "object", "additionalProperties": false, "required": ["content", "type"], "properties": {
                "content": {"type": "string"}, "type": {"type": "string", "enum": ["user", "raw"]}}},
            "MessageResponseBody": {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
            "UploadResponseBody": {"type": "object", "required": ["ok", "filePath"], "properties": {"ok": {"type": "boolean"}, "filePath": {"type": "string"}}},
            "MessageUpdateBody": {"type": "object", "required": ["id", "role", "message", "time"], "properties": {
                "id": {"type": "integer"}, "role": {"type": "string"}, "message": {"type": "string"}, "time": {"type": "string", "format": "date-time"}}},
            "StatusChangeBody": {"type": "object", "required": ["status", "agent_type"], "properties": {"status": {"type": "string"}, "agent_type": {"type": "string"}}},
            "AgentErrorBody": {"type": "object", "required": ["message", "level", "time"], "properties": {"message": {"type": "string"}, "level": {"type": "string"}, "time": {"type": "string", "format": "date-time"}}},
            "ErrorModel": {"type": "object", "properties": {"title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object", "properties": {"message": {"type": "string"}, "location": {"type": "string"}, "value": {}}}}}}
        }}
    });
    doc
}

/// Minimal HTML escaping for attribute text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}
