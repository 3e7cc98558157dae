//! The agent token (sessions.md §5): every agent gets `APX_SESSION_TOKEN` and
//! `APX_PROXY_URL`; as `Authorization: Bearer` the token reaches only its own session
//! (403 elsewhere, 404 for another session's id), and it survives a `kill -9` of the proxy.

use reqwest::{Client, Method};
use serde_json::json;

use crate::support::key;
use crate::support::server::BinaryServer;
use crate::support::sessions::{agent_debug_env, start_ok};

const ADMIN: &str = "ap_admin_key_for_agent_tokens";

fn admin_client() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("X-API-Key", ADMIN.parse().expect("header"));
    Client::builder().default_headers(headers).build().expect("client")
}

async fn status_with(client: &Client, method: Method, url: &str, token: &str) -> u16 {
    client
        .request(method, url)
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn with_admin_key(config: &mut agentapi_proxy::config::Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys = vec![key(ADMIN, "root", "admin", &["*"])];
}

#[tokio::test]
async fn an_agent_token_reaches_only_its_own_session_and_survives_a_kill_9() {
    let server = BinaryServer::start(with_admin_key).await;
    let base = format!("http://{}", server.address);
    let admin = admin_client();
    let (own, port) = start_ok(&admin, &base, json!({})).await;
    let (other, _) = start_ok(&admin, &base, json!({})).await;
    let env = agent_debug_env(&admin, port).await;
    let token = env["env"]["APX_SESSION_TOKEN"].as_str().expect("APX_SESSION_TOKEN").to_string();
    assert!(token.starts_with("apxs_") && token.len() == 5 + 64, "{token}");
    assert_eq!(env["env"]["APX_PROXY_URL"], base);

    let plain = Client::new();
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
    let cases = [
        (get.clone(), format!("/sessions/{own}"), 200),
        (get.clone(), format!("/sessions/{other}"), 404),
        (get.clone(), format!("/sessions/{other}/chat/history"), 404),
        (delete, format!("/sessions/{own}"), 403),
        (get.clone(), format!("/sessions/{own}/logs"), 403),
        (get.clone(), "/search".to_string(), 403),
        (post, "/start".to_string(), 403),
        (get.clone(), format!("/{own}/status"), 403),
        (get.clone(), "/profiles".to_string(), 403),
    ];
    for (method, path, expected) in cases {
        let got = status_with(&plain, method.clone(), &server.url(&path), &token).await;
        assert_eq!(got, expected, "{method} {path}");
    }
    let wrong = format!("apxs_{}", "0".repeat(64));
    let own_url = server.url(&format!("/sessions/{own}"));
    assert_eq!(status_with(&plain, get.clone(), &own_url, &wrong).await, 401);
    let stored =
        std::fs::read(server.dir_path().join("data/agentapi-proxy.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&stored).contains(&token), "the token is stored hashed");

    // A re-adopted agent keeps a working token.
    let (dir, config_path) = server.kill9().await;
    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let got = status_with(&plain, get, &server.url(&format!("/sessions/{own}")), &token).await;
    assert_eq!(got, 200);
    for id in [&own, &other] {
        let response = admin.delete(server.url(&format!("/sessions/{id}"))).send().await;
        assert_eq!(response.expect("delete").status(), 200);
    }
    let own_url = server.url(&format!("/sessions/{own}"));
    let got = status_with(&plain, Method::GET, &own_url, &token).await;
    assert_eq!(got, 401, "a deleted session's token is no credential");
    server.stop().await;
}
