//! `GET /openapi.json`: the document generated from the code (`src/openapi.rs`) is what is
//! served, it parses as OpenAPI 3.1, every route of `src/router.rs` is in it with its methods
//! (the conditional `/oauth/*` routes included), it names no route that does not exist, and
//! every `$ref` in it resolves. The routes table of `docs/api.md` lists exactly its
//! operations.
//!
//! The router is read as text because an axum `Router` cannot list its routes. A route added
//! there without a `#[utoipa::path]` (in `src/routes/` or `src/openapi/stub_paths.rs`) listed
//! in `paths(...)` of `src/openapi.rs` fails the router test below.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::server::TestServer;

/// Methods an OpenAPI path item can hold; `any(...)` in the router means all of them.
const ALL_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];
/// Method routers the router file uses (`get(...)`, `.post(...)`, ...).
const ROUTER_METHODS: &[&str] =
    &["get", "put", "post", "delete", "patch", "head", "options", "trace"];

/// Every `.route("PATH", ...)` of `src/router.rs` with its methods, the path written the
/// OpenAPI way (`{*rest}` → `{rest}`).
fn router_routes() -> BTreeMap<String, BTreeSet<String>> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/router.rs"))
        .expect("router.rs is readable");
    let mut routes = BTreeMap::new();
    for chunk in source.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').expect("a quoted path");
        // The method part ends where the next builder call that is not a method starts.
        let end = [".route(", ".fallback(", ".with_state(", ".layer("]
            .iter()
            .filter_map(|stop| rest.find(stop))
            .min()
            .unwrap_or(rest.len());
        let methods_part = &rest[..end];
        let mut methods = BTreeSet::new();
        if calls(methods_part, "any") {
            methods.extend(ALL_METHODS.iter().map(|m| m.to_string()));
        }
        for method in ROUTER_METHODS {
            if calls(methods_part, method) {
                methods.insert(method.to_string());
            }
        }
        assert!(!methods.is_empty(), "no method found for route {path} in router.rs");
        let path = path.replace("{*", "{");
        let previous = routes.insert(path.clone(), methods);
        assert!(previous.is_none(), "route {path} appears twice in router.rs");
    }
    routes
}

/// Whether `text` calls `name(` as a function or method (not as part of a longer name).
fn calls(text: &str, name: &str) -> bool {
    let needle = format!("{name}(");
    text.match_indices(&needle).any(|(at, _)| {
        at == 0 || {
            let before = text.as_bytes()[at - 1];
            !(before.is_ascii_alphanumeric() || before == b'_' || before == b':')
        }
    })
}

/// Follows a local JSON pointer (`#/components/...`).
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

fn check_refs(document: &Value, value: &Value, broken: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref")
                && resolve(document, reference).is_none()
            {
                broken.push(reference.clone());
            }
            map.values().for_each(|inner| check_refs(document, inner, broken));
        }
        Value::Array(items) => items.iter().for_each(|inner| check_refs(document, inner, broken)),
        _ => {}
    }
}

/// The object itself, or what its `$ref` points at.
fn deref<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => resolve(document, reference).expect("resolvable reference"),
        None => value,
    }
}

#[test]
fn the_route_scan_reads_router_rs_as_expected() {
    let routes = router_routes();
    let methods = |path: &str| routes[path].iter().cloned().collect::<Vec<_>>();
    assert_eq!(methods("/sessions/{id}"), ["delete", "get"]);
    assert_eq!(methods("/profiles/{id}"), ["delete", "get", "put"]);
    assert_eq!(methods("/{id}/{rest}").len(), ALL_METHODS.len());
    assert_eq!(methods("/oauth/authorize"), ["post"]);
    assert!(routes.contains_key("/openapi.json"));
    assert!(routes.len() >= 20, "{routes:?}");
}

#[tokio::test]
async fn the_served_document_describes_exactly_the_routes_of_the_router() {
    // Authentication on: the document needs none.
    let server = TestServer::start(|config| config.auth.enabled = true).await;
    let response = reqwest::get(server.url("/openapi.json")).await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.bytes().await.expect("the document");
    assert_eq!(served, *agentapi_proxy::openapi::document(), "the generated document is served");
    let document: Value = serde_json::from_slice(&served).expect("the document is JSON");

    let version = document["openapi"].as_str().expect("an `openapi` field");
    assert!(version.starts_with("3.1"), "OpenAPI version {version}");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));

    let paths = document["paths"].as_object().expect("paths");
    let documented: BTreeMap<String, BTreeSet<String>> = paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item")
                .keys()
                .filter(|key| ALL_METHODS.contains(&key.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect();
    let routed = router_routes();
    for (path, methods) in &routed {
        assert_eq!(documented.get(path), Some(methods), "route {path} in router.rs");
    }
    for path in documented.keys() {
        assert!(routed.contains_key(path), "{path} is documented but not routed");
    }

    let mut broken = Vec::new();
    check_refs(&document, &document, &mut broken);
    assert!(broken.is_empty(), "unresolved references: {broken:?}");

    let error_schema = &document["components"]["schemas"]["Error"];
    assert_eq!(error_schema["required"], serde_json::json!(["message", "code"]));
    let schemes = document["components"]["securitySchemes"].as_object().expect("schemes");
    assert_eq!(schemes["apiKey"]["in"], "header");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["sessionCookie"]["in"], "cookie");

    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        let path_parameters: Vec<&Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| deref(&document, p))
            .collect();
        for (method, operation) in item.as_object().expect("a path item") {
            if !ALL_METHODS.contains(&method.as_str()) {
                continue;
            }
            let id = operation["operationId"].as_str().expect("an operationId");
            assert!(operation_ids.insert(id.to_string()), "operationId {id} twice");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path} has responses");
            // Every error answer of the proxy itself has the `{message, code}` body.
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let response = deref(&document, response);
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{status} of {method} {path}"
                    );
                }
            }
            // Every `{name}` in the path is described as a path parameter.
            let own: Vec<&Value> = operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| deref(&document, p))
                .collect();
            for name in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                assert!(
                    path_parameters
                        .iter()
                        .chain(own.iter())
                        .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{method} {path} describes its `{name}` parameter"
                );
            }
        }
    }
    server.stop(Duration::from_secs(10)).await.expect("clean stop");
}

/// The generated document, without a server.
fn generated() -> Value {
    serde_json::from_slice(agentapi_proxy::openapi::document()).expect("the document is JSON")
}

/// Every `(METHOD, path)` of the document, methods upper-case.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("a path item").keys();
            methods
                .filter(|method| ALL_METHODS.contains(&method.as_str()))
                .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// Every `` `METHOD /path` `` in the first column of the routes table of `docs/api.md`, the
/// path without its `?query` or `[?optional query]`; `ANY` stands for every method.
fn api_md_routes() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md is readable");
    let section = text.split("\n## Routes\n").nth(1).expect("a `## Routes` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut routes = BTreeSet::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let first_cell = row.split('|').nth(1).expect("a first cell");
        for quoted in first_cell.split('`').skip(1).step_by(2) {
            let (method, path) = quoted.split_once(' ').expect("`METHOD /path`");
            let path = path.split(['?', '[']).next().unwrap_or(path);
            routes.insert((method.to_string(), path.to_string()));
        }
    }
    routes
}

#[test]
fn the_routes_table_of_api_md_reads_as_expected() {
    let routes = api_md_routes();
    let has = |method: &str, path: &str| routes.contains(&(method.into(), path.into()));
    assert!(has("GET", "/healthz"), "{routes:?}");
    assert!(has("POST", "/start"), "{routes:?}");
    assert!(has("GET", "/sessions/{id}/logs"), "{routes:?}");
    assert!(has("ANY", "/{id}/{rest}"), "{routes:?}");
    assert!(routes.len() >= 20, "{routes:?}");
}

#[test]
fn docs_api_md_lists_every_operation_of_the_document_and_no_other() {
    let listed = api_md_routes();
    let operations = operations(&generated());
    for (method, path) in &operations {
        let mentioned = listed.contains(&(method.clone(), path.clone()))
            || listed.contains(&("ANY".to_string(), path.clone()));
        assert!(mentioned, "`{method} {path}` is in the OpenAPI document but not in docs/api.md");
    }
    for (method, path) in &listed {
        let methods: Vec<String> = if method == "ANY" {
            ALL_METHODS.iter().map(|m| m.to_uppercase()).collect()
        } else {
            vec![method.clone()]
        };
        for method in methods {
            assert!(
                operations.contains(&(method.clone(), path.clone())),
                "docs/api.md lists `{method} {path}`, which the OpenAPI document does not have"
            );
        }
    }
}
