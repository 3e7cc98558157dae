//! Request bodies decoded into the client crate's wire types: a wrong type, a missing required
//! field or a `null` where a value is needed is a 400 `invalid_request` whose message names the
//! field by its path, never shows the value, and changes nothing.

use serde_json::{Value, json};

use crate::support::server::TestServer;
use crate::support::sessions::{get_json, start_ok};

async fn send(client: &reqwest::Client, method: &str, url: &str, body: Value) -> (u16, Value) {
    let response = client
        .request(method.parse().expect("method"), url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends each body and expects a 400 `invalid_request` with exactly that message.
async fn refused_with(client: &reqwest::Client, method: &str, url: &str, cases: &[(Value, &str)]) {
    for (body, message) in cases {
        let (status, answer) = send(client, method, url, body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str(), answer["message"].as_str()),
            (400, Some("invalid_request"), Some(*message)),
            "{method} {url} {body}: {answer}"
        );
    }
}

async fn no_session(server: &TestServer, client: &reqwest::Client) {
    let (_, search) = get_json(client, &server.url("/search")).await;
    assert_eq!(search["total"], 0, "{search}");
}

#[tokio::test]
async fn start_names_a_wrong_type_or_a_null_and_still_bounds_nesting() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let cases = [
        (json!({"tags": {"team": 5}}), "`tags.team`: expected a string, found a number"),
        (json!({"environment": {"FOO": null}}), "`environment.FOO`: expected a string, found null"),
        (
            json!({"environment": "TOKEN=s3cret"}),
            "`environment`: expected an object, found a string",
        ),
        (json!({"message": ["hi"]}), "`message`: expected a string, found an array"),
    ];
    refused_with(&client, "POST", &server.url("/start"), &cases).await;
    // A field the request type ignores is still read under the nesting bound.
    let deep = format!(r#"{{"ignored": {}{}}}"#, "[".repeat(200), "]".repeat(200));
    let response = client
        .post(server.url("/start"))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.expect("json");
    assert!(answer["message"].as_str().expect("message").contains("nested too deeply"), "{answer}");
    no_session(&server, &client).await;
    // `null` reads as absent where a field is optional; unknown fields are ignored.
    let body = json!({"environment": null, "tags": null, "message": null, "user_id": "mallory"});
    let (id, _) = start_ok(&client, &server.base(), body).await;
    let (_, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(
        (detail["tags"].clone(), detail["user_id"].clone()),
        (json!({}), json!("anonymous"))
    );
}

#[tokio::test]
async fn start_with_profile_and_profile_updates_name_the_nested_field() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let profile = json!({"name": "P", "tags": {"team": "web"},
                         "message_templates": [{"name": "R", "content": "Review {{code}}"}]});
    let (_, created) = send(&client, "POST", &server.url("/profiles"), profile).await;
    let id = created["profile"]["id"].as_str().expect("id").to_string();

    let cases = [
        (json!({}), "`profile_id` is required"),
        (json!({"profile_id": null}), "`profile_id`: expected a string, found null"),
        (
            json!({"profile_id": id, "template_id": "R", "template_variables": {"code": 1}}),
            "`template_variables.code`: expected a string, found a number",
        ),
        (
            json!({"profile_id": id, "environment": {"A": {"nested": "x"}}}),
            "`environment.A`: expected a string, found an object",
        ),
    ];
    refused_with(&client, "POST", &server.url("/start-with-profile"), &cases).await;
    no_session(&server, &client).await;

    let url = server.url(&format!("/profiles/{id}"));
    let (_, before) = get_json(&client, &url).await;
    let cases = [
        (
            json!({"message_templates": [{"name": "ok", "content": "c"}, {"name": "t"}]}),
            "`message_templates[1].content` is required",
        ),
        (
            json!({"message_templates": [{"name": null, "content": "c"}]}),
            "`message_templates[0].name`: expected a string, found null",
        ),
        (
            json!({"repository_history": [{"url": "o/r", "metadata": []}]}),
            "`repository_history[0].metadata`: expected an object, found an array",
        ),
        (
            json!({"name": "Q", "tags": {"team": null}}),
            "`tags.team`: expected a string, found null",
        ),
    ];
    refused_with(&client, "PUT", &url, &cases).await;
    let templates = server.url(&format!("/profiles/{id}/templates"));
    refused_with(&client, "POST", &templates, &[(json!({"name": "x"}), "`content` is required")])
        .await;
    let (_, after) = get_json(&client, &url).await;
    assert_eq!(after, before, "a refused update changes nothing");
}
