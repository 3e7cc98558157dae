//! Profiles: CRUD with partial updates and redaction, repositories and templates, ownership,
//! starting sessions from a profile (merge rules, templates, system prompt), and persistence.

use agentapi_proxy::config::{ApiKeyEntry, Config};
use serde_json::{Value, json};

use crate::support::server::{BinaryServer, TestServer};
use crate::support::sessions::{agent_debug_env, get_json};

async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method.parse().expect("method"), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn keyed(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", key.parse().expect("header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

fn with_users(config: &mut Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    let entry = |key: &str, user: &str, role: &str| ApiKeyEntry {
        key: Some(key.into()),
        user_id: user.into(),
        role: role.into(),
        permissions: vec!["*".into()],
        ..ApiKeyEntry::default()
    };
    config.auth.static_keys.api_keys = vec![
        entry("ap_alice_p", "alice", "user"),
        entry("ap_bob_p", "bob", "user"),
        entry("ap_root_p", "root", "admin"),
    ];
}

/// A startup script that skips the repository clone (tests have no network).
fn no_clone_script(dir: &std::path::Path) -> String {
    let path = dir.join("no_clone.sh");
    std::fs::write(&path, "#!/usr/bin/env bash\nexec \"$@\"\n").expect("script");
    path.display().to_string()
}

#[tokio::test]
async fn profiles_are_created_read_updated_partially_and_deleted_with_secrets_redacted() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let body = json!({"name": "Dev", "description": "d", "environment": {"GITHUB_TOKEN": "ghp_secret", "NODE_ENV": "development"},
                      "tags": {"team": "web"}, "system_prompt": "be brief"});
    let (code, created) = send(&client, "POST", &server.url("/profiles"), Some(body)).await;
    assert_eq!(code, 201, "{created}");
    let profile = &created["profile"];
    let id = profile["id"].as_str().expect("id").to_string();
    assert_eq!(profile["user_id"], "anonymous");
    assert_eq!(
        profile["environment"],
        json!({"GITHUB_TOKEN": "<redacted>", "NODE_ENV": "development"})
    );
    assert!(!created.to_string().contains("ghp_secret"));
    assert_eq!(profile["last_used_at"], Value::Null);
    assert_eq!(profile["repository_history"], json!([]));

    let (code, _) =
        send(&client, "POST", &server.url("/profiles"), Some(json!({"name": "Second"}))).await;
    assert_eq!(code, 201);
    let (_, list) = get_json(&client, &server.url("/profiles")).await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["profiles"][0]["name"], "Second", "newest first");

    let update = json!({"environment": {"GITHUB_TOKEN": "<redacted>", "NODE_ENV": "production"}, "description": null});
    let (code, updated) =
        send(&client, "PUT", &server.url(&format!("/profiles/{id}")), Some(update)).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["profile"]["environment"]["NODE_ENV"], "production");
    assert_eq!(updated["profile"]["description"], "d", "null keeps the stored value");
    assert_eq!(updated["profile"]["tags"], json!({"team": "web"}), "absent keeps the stored value");

    let (code, deleted) =
        send(&client, "DELETE", &server.url(&format!("/profiles/{id}")), None).await;
    assert_eq!(
        (code, deleted),
        (200, json!({"message": "Profile deleted successfully", "profile_id": id}))
    );
    let (code, _) = get_json(&client, &server.url(&format!("/profiles/{id}"))).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn invalid_profiles_are_400s_naming_the_field() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    for (body, needle) in [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"name": "ok", "environment": {"LD_PRELOAD": "/x.so"}}), "LD_PRELOAD"),
        (json!({"name": "ok", "tags": {"bad key": "v"}}), "bad key"),
        (json!({"name": "ok", "message_templates": [{"name": "t"}]}), "content"),
    ] {
        let (code, answer) =
            send(&client, "POST", &server.url("/profiles"), Some(body.clone())).await;
        assert_eq!(code, 400, "{body}: {answer}");
        assert!(answer["message"].as_str().expect("message").contains(needle), "{body}: {answer}");
    }
    for id in [uuid::Uuid::new_v4().to_string(), "nope".to_string()] {
        let (code, answer) = get_json(&client, &server.url(&format!("/profiles/{id}"))).await;
        assert_eq!((code, answer["code"].as_str()), (404, Some("not_found")));
    }
    let (_, list) = get_json(&client, &server.url("/profiles")).await;
    assert_eq!(list, json!({"profiles": [], "total": 0}));
}

#[tokio::test]
async fn repositories_upsert_by_url_and_templates_replace_by_name() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (_, created) =
        send(&client, "POST", &server.url("/profiles"), Some(json!({"name": "P"}))).await;
    let id = created["profile"]["id"].as_str().expect("id").to_string();
    let repos = server.url(&format!("/profiles/{id}/repositories"));
    for body in [
        json!({"url": "owner/a"}),
        json!({"url": "owner/b"}),
        json!({"url": "owner/a", "branch": "dev"}),
    ] {
        let (code, answer) = send(&client, "POST", &repos, Some(body)).await;
        assert_eq!(
            (code, answer),
            (200, json!({"message": "Repository added to profile successfully"}))
        );
    }
    let templates = server.url(&format!("/profiles/{id}/templates"));
    for content in ["Review {{code}}", "Check {{code}} in {{lang}}"] {
        let (code, answer) = send(
            &client,
            "POST",
            &templates,
            Some(json!({"name": "Review", "content": content, "category": "review"})),
        )
        .await;
        assert_eq!(
            (code, answer),
            (200, json!({"message": "Template added to profile successfully"}))
        );
    }
    let (_, read) = get_json(&client, &server.url(&format!("/profiles/{id}"))).await;
    let history = read["profile"]["repository_history"].as_array().expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0]["url"].clone(), history[0]["branch"].clone()),
        (json!("owner/a"), json!("dev"))
    );
    let templates = read["profile"]["message_templates"].as_array().expect("templates");
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0]["variables"], json!(["code", "lang"]));
    let (code, _) = send(
        &client,
        "POST",
        &server.url(&format!("/profiles/{id}/repositories")),
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 400, "url is required");
}

#[tokio::test]
async fn another_users_profile_is_404_but_admins_manage_it() {
    let server = TestServer::start(with_users).await;
    let (alice, bob, root) = (keyed("ap_alice_p"), keyed("ap_bob_p"), keyed("ap_root_p"));
    let (_, created) =
        send(&alice, "POST", &server.url("/profiles"), Some(json!({"name": "Mine"}))).await;
    let id = created["profile"]["id"].as_str().expect("id").to_string();
    let url = server.url(&format!("/profiles/{id}"));
    for (method, body) in [("GET", None), ("PUT", Some(json!({"name": "Taken"}))), ("DELETE", None)]
    {
        let (code, _) = send(&bob, method, &url, body).await;
        assert_eq!(code, 404, "{method}");
    }
    let (code, _) =
        send(&bob, "POST", &server.url("/start-with-profile"), Some(json!({"profile_id": id})))
            .await;
    assert_eq!(code, 404);
    let (_, bobs) = get_json(&bob, &server.url("/profiles")).await;
    assert_eq!(bobs["total"], 0);
    let (_, all) = get_json(&root, &server.url("/profiles")).await;
    assert_eq!(all["total"], 1);
    let (code, renamed) = send(&root, "PUT", &url, Some(json!({"name": "Renamed by admin"}))).await;
    assert_eq!((code, renamed["profile"]["user_id"].as_str()), (200, Some("alice")));
    let (code, _) = send(&root, "DELETE", &url, None).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn starting_from_a_profile_merges_environment_and_tags_and_renders_the_template() {
    let scripts = tempfile::tempdir().expect("dir");
    let script = no_clone_script(scripts.path());
    let server = TestServer::start(|config| config.agent.script = script).await;
    let client = reqwest::Client::new();
    let profile = json!({"name": "P", "environment": {"SHARED": "profile", "ONLY_PROFILE": "p", "ECHO_AGENT_BOOT_MS": "0"},
                         "tags": {"team": "web", "repository": "owner/repo"}, "system_prompt": "Be terse.",
                         "message_templates": [{"name": "Review", "content": "Review {{code}} please"}]});
    let (_, created) = send(&client, "POST", &server.url("/profiles"), Some(profile)).await;
    let id = created["profile"]["id"].as_str().expect("id").to_string();

    let (code, answer) =
        send(&client, "POST", &server.url("/start-with-profile"), Some(json!({}))).await;
    assert_eq!((code, answer["code"].as_str()), (400, Some("invalid_request")));
    let missing =
        json!({"profile_id": id, "template_id": "Review", "template_variables": {"lang": "rust"}});
    let (code, answer) =
        send(&client, "POST", &server.url("/start-with-profile"), Some(missing)).await;
    assert_eq!(code, 400);
    assert!(answer["message"].as_str().expect("message").contains("code"), "{answer}");

    let start = json!({"profile_id": id, "environment": {"SHARED": "request"}, "tags": {"extra": "yes"},
                       "template_id": "Review", "template_variables": {"code": "fn main() {}", "unused": "x"}});
    let (code, started) =
        send(&client, "POST", &server.url("/start-with-profile"), Some(start)).await;
    assert_eq!(code, 200, "{started}");
    let session = started["session_id"].as_str().expect("id").to_string();
    let port = started["port"].as_u64().expect("port") as u16;
    let seen = agent_debug_env(&client, port).await;
    assert_eq!(seen["env"]["SHARED"], "request", "the request wins");
    assert_eq!(seen["env"]["ONLY_PROFILE"], "p");
    assert_eq!(seen["env"]["APX_SYSTEM_PROMPT"], "Be terse.");
    assert_eq!(seen["env"]["APX_REPO_FULLNAME"], "owner/repo");
    let argv: Vec<&str> =
        seen["argv"].as_array().expect("argv").iter().filter_map(Value::as_str).collect();
    let flag = argv
        .iter()
        .position(|a| *a == "--append-system-prompt")
        .expect("claude gets the system prompt");
    assert_eq!(argv[flag + 1], "Be terse.");
    let (_, detail) = get_json(&client, &server.url(&format!("/sessions/{session}"))).await;
    assert_eq!(detail["tags"], json!({"team": "web", "repository": "owner/repo", "extra": "yes"}));

    let base = server.base();
    crate::support::wait_until(
        "the rendered prompt to arrive",
        std::time::Duration::from_secs(20),
        || {
            let (client, base, session) = (client.clone(), base.clone(), session.clone());
            async move {
                let (_, messages) = get_json(&client, &format!("{base}/{session}/messages")).await;
                messages.to_string().contains("Review fn main() {} please").then_some(())
            }
        },
    )
    .await;
    let (_, read) = get_json(&client, &server.url(&format!("/profiles/{id}"))).await;
    assert!(read["profile"]["last_used_at"].is_string());
    assert_eq!(read["profile"]["repository_history"][0]["url"], "owner/repo");
}

/// The request's `message` beats a `message` tag the profile carries (and the `/start` rule,
/// tag first, is not applied a second time behind it).
#[tokio::test]
async fn the_typed_message_beats_the_profiles_message_tag() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let profile = json!({"name": "P", "environment": {"ECHO_AGENT_BOOT_MS": "0"},
                         "tags": {"message": "from the profile"}});
    let (_, created) = send(&client, "POST", &server.url("/profiles"), Some(profile)).await;
    let id = created["profile"]["id"].as_str().expect("id").to_string();
    let start = json!({"profile_id": id, "message": "typed by the caller"});
    let (code, started) =
        send(&client, "POST", &server.url("/start-with-profile"), Some(start)).await;
    assert_eq!(code, 200, "{started}");
    let session = started["session_id"].as_str().expect("id").to_string();
    let url = server.url(&format!("/{session}/messages"));
    let messages = crate::support::wait_until(
        "the first prompt to arrive",
        std::time::Duration::from_secs(20),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let (_, messages) = get_json(&client, &url).await;
                let text = messages.to_string();
                (text.contains("echo: typed by the caller") || text.contains("from the profile"))
                    .then_some(messages)
            }
        },
    )
    .await;
    let text = messages.to_string();
    assert!(text.contains("echo: typed by the caller"), "{text}");
    assert!(!text.contains("from the profile"), "{text}");
}

#[tokio::test]
async fn profiles_survive_a_restart() {
    let server = BinaryServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (code, created) = send(
        &client,
        "POST",
        &server.url("/profiles"),
        Some(json!({"name": "Durable", "environment": {"A": "1"}})),
    )
    .await;
    assert_eq!(code, 201);
    let id = created["profile"]["id"].as_str().expect("id").to_string();
    let (dir, config_path) = server.kill9().await;
    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let (code, read) = get_json(&client, &server.url(&format!("/profiles/{id}"))).await;
    assert_eq!(code, 200);
    assert_eq!(read["profile"]["name"], "Durable");
    assert_eq!(read["profile"]["environment"], json!({"A": "1"}));
    server.stop().await;
}
