//! Who may do what: static API keys in every stored form, the uniform 401, permissions,
//! ownership (a stranger's session is a 404), admins, expiry, the keys file reloading, and
//! `helpers generate-token`.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentapi_proxy::config::{ApiKeyEntry, Config};
use serde_json::{Value, json};

use crate::support::server::{BinaryServer, TestServer};
use crate::support::{key, wait_until};

const ALICE: &str = "ap_alice_0123456789abcdef";
const BOB: &str = "ap_bob_0123456789abcdef";
const ADMIN: &str = "ap_admin_0123456789abcdef";
const READER: &str = "ap_reader_0123456789abcdef";
const OLD: &str = "ap_old_0123456789abcdef";

fn with_keys(config: &mut Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys = vec![
        key(
            ALICE,
            "alice",
            "user",
            &["session:create", "session:list", "session:delete", "session:access"],
        ),
        key(
            BOB,
            "bob",
            "user",
            &["session:create", "session:list", "session:delete", "session:access"],
        ),
        key(ADMIN, "root", "admin", &["*"]),
        key(READER, "reader", "user", &["session:list"]),
        ApiKeyEntry {
            expires_at: Some("2020-01-01T00:00:00Z".into()),
            ..key(OLD, "old", "user", &["*"])
        },
    ];
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = client.request(method.parse().expect("method"), url);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    if method == "POST" {
        request = request.json(&json!({}));
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A TCP listener that only counts connections: stands in for GitHub to prove it is never asked.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, count)
}

#[tokio::test]
async fn every_bad_credential_gets_the_same_401_and_github_is_never_called() {
    let (github, github_calls) = counting_listener();
    let server = TestServer::start(|config| {
        with_keys(config);
        config.auth.github.enabled = true;
        config.auth.github.base_url = github;
    })
    .await;
    let client = reqwest::Client::new();
    let url = server.url("/search");
    let mut flipped = ALICE.to_string();
    flipped.replace_range(3..4, "A");
    let attempts: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("X-API-Key", "wrong".into())],
        vec![("X-API-Key", format!("{}X", &ALICE[..ALICE.len() - 1]))],
        vec![("X-API-Key", flipped.clone())],
        vec![("X-API-Key", ALICE.to_uppercase())],
        vec![("X-API-Key", OLD.into())],
        vec![("Authorization", "Bearer ap_unknown_key".into())],
        vec![("Authorization", "Basic YWxpY2U6cHc=".into())],
        vec![("Authorization", "Bearer aps_not_issued_by_us".into())],
        // The static header decides: a valid bearer token behind a bad key does not help.
        vec![("X-API-Key", "wrong".into()), ("Authorization", format!("Bearer {ALICE}"))],
    ];
    for headers in attempts {
        let mut request = client.get(&url);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("send");
        assert_eq!(response.status(), 401, "{headers:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body,
            json!({"message": "authentication required", "code": "unauthenticated"}),
            "{headers:?}"
        );
    }
    assert_eq!(github_calls.load(Ordering::SeqCst), 0, "nothing was sent to GitHub");
}

#[tokio::test]
async fn keys_authenticate_by_header_or_bearer_and_auth_status_says_who() {
    let server = TestServer::start(|config| {
        with_keys(config);
        config.auth.static_keys.header_name = "X-Team-Key".into();
    })
    .await;
    let client = reqwest::Client::new();
    let status = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("send");
        (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (code, me) =
        status(client.get(server.url("/auth/status")).header("X-Team-Key", ALICE)).await;
    assert_eq!(code, 200);
    assert_eq!(me["user_id"], "alice");
    assert_eq!(me["auth_type"], "api_key");
    assert_eq!(me["role"], "user");
    let (code, me) = status(client.get(server.url("/auth/status")).bearer_auth(ADMIN)).await;
    assert_eq!((code, me["user_id"].as_str()), (200, Some("root")));
    let (code, _) = status(
        client.get(server.url("/auth/status")).header("Authorization", format!("token {BOB}")),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = status(client.get(server.url("/auth/status")).header("X-API-Key", ALICE)).await;
    assert_eq!(code, 401, "the default header name is not used when another is configured");
    let (_, types) = status(client.get(server.url("/auth/types"))).await;
    assert_eq!(
        types,
        json!({"enabled": true, "types": [{"type": "api_key", "header": "X-Team-Key"}]})
    );
}

#[tokio::test]
async fn missing_permissions_are_403_on_each_route() {
    let server = TestServer::start(with_keys).await;
    let client = reqwest::Client::new();
    let (_, started) = call(&client, "POST", &server.url("/start"), Some(ALICE)).await;
    let id = started["session_id"].as_str().expect("id").to_string();
    // The reader may list but not start, read logs or delete; as admin-less user it sees only
    // its own sessions, so alice's are 404 before any permission question about them.
    let (code, body) = call(&client, "POST", &server.url("/start"), Some(READER)).await;
    assert_eq!((code, body["code"].as_str()), (403, Some("forbidden")));
    let (code, _) = call(&client, "GET", &server.url("/search"), Some(READER)).await;
    assert_eq!(code, 200);
    for (method, path) in
        [("GET", format!("/sessions/{id}/logs")), ("DELETE", format!("/sessions/{id}"))]
    {
        let (code, body) = call(&client, method, &server.url(&path), Some(READER)).await;
        assert_eq!((code, body["code"].as_str()), (403, Some("forbidden")), "{method} {path}");
    }
}

#[tokio::test]
async fn a_strangers_session_does_not_exist_for_you_but_admins_see_everything() {
    let server = TestServer::start(with_keys).await;
    let client = reqwest::Client::new();
    let (code, started) = call(&client, "POST", &server.url("/start"), Some(ALICE)).await;
    assert_eq!(code, 200, "{started}");
    let id = started["session_id"].as_str().expect("id").to_string();
    for (method, path) in [
        ("GET", format!("/sessions/{id}")),
        ("GET", format!("/sessions/{id}/logs")),
        ("DELETE", format!("/sessions/{id}")),
    ] {
        let (code, body) = call(&client, method, &server.url(&path), Some(BOB)).await;
        assert_eq!(
            (code, body),
            (404, json!({"message": "no such session", "code": "not_found"})),
            "{method} {path}"
        );
    }
    let (_, bobs) = call(&client, "GET", &server.url("/search"), Some(BOB)).await;
    assert_eq!(bobs["total"], 0);
    let (_, asked) = call(&client, "GET", &server.url("/search?user_id=alice"), Some(BOB)).await;
    assert_eq!(asked["total"], 0, "naming another user shows nothing");
    let (_, alices) = call(&client, "GET", &server.url("/search"), Some(ALICE)).await;
    assert_eq!(
        (alices["total"].clone(), alices["sessions"][0]["user_id"].clone()),
        (json!(1), json!("alice"))
    );
    let (_, all) = call(&client, "GET", &server.url("/search?user_id=alice"), Some(ADMIN)).await;
    assert_eq!(all["total"], 1, "admins filter by any user");
    let (code, _) =
        call(&client, "GET", &server.url(&format!("/sessions/{id}")), Some(ADMIN)).await;
    assert_eq!(code, 200);
    let (code, _) =
        call(&client, "DELETE", &server.url(&format!("/sessions/{id}")), Some(ADMIN)).await;
    assert_eq!(code, 200, "admins control every session");
}

#[tokio::test]
async fn sha256_and_argon2_entries_authenticate() {
    let argon = agentapi_proxy::auth::api_keys::hash_key("ap_carol_secret_key").expect("hash");
    let sha = hex_sha256("ap_dave_secret_key");
    let server = TestServer::start(|config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.api_keys = vec![
            ApiKeyEntry {
                key_hash: Some(argon),
                key_prefix: Some("ap_carol".into()),
                ..key("", "carol", "user", &["*"])
            },
            ApiKeyEntry {
                key_hash: Some(format!("sha256:{sha}")),
                ..key("", "dave", "user", &["*"])
            },
        ]
        .into_iter()
        .map(|mut entry| {
            entry.key = None;
            entry
        })
        .collect();
    })
    .await;
    let client = reqwest::Client::new();
    for (key, user) in [("ap_carol_secret_key", "carol"), ("ap_dave_secret_key", "dave")] {
        let (code, me) = call(&client, "GET", &server.url("/auth/status"), Some(key)).await;
        assert_eq!((code, me["user_id"].as_str()), (200, Some(user)));
    }
    let (code, _) =
        call(&client, "GET", &server.url("/auth/status"), Some("ap_carol_secret_kez")).await;
    assert_eq!(code, 401);
}

fn hex_sha256(text: &str) -> String {
    agentapi_proxy::auth::api_keys::digest(text).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_keys_file_reloads_on_change_and_a_broken_edit_keeps_the_old_keys() {
    let files = tempfile::tempdir().expect("dir");
    let keys_file = files.path().join("keys.json");
    let write = |entries: Value| {
        std::fs::write(&keys_file, json!({"api_keys": entries}).to_string()).expect("write")
    };
    write(json!([{"key": "ap_file_one", "user_id": "one", "role": "user", "permissions": ["*"]}]));
    let path = keys_file.display().to_string();
    let server = BinaryServer::start(|config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.keys_file = path;
    })
    .await;
    let client = reqwest::Client::new();
    let url = server.url("/auth/status");
    let code_for = |key: &'static str| {
        let (client, url) = (client.clone(), url.clone());
        async move { call(&client, "GET", &url, Some(key)).await.0 }
    };
    assert_eq!(code_for("ap_file_one").await, 200);
    assert_eq!(code_for("ap_file_two").await, 401);

    write(json!([{"key": "ap_file_two", "user_id": "two", "role": "user", "permissions": ["*"]}]));
    wait_until("the added key to work", Duration::from_secs(10), || async {
        (code_for("ap_file_two").await == 200).then_some(())
    })
    .await;
    assert_eq!(code_for("ap_file_one").await, 401, "the removed key stops working");

    std::fs::write(&keys_file, "{ this is not json").expect("break the file");
    wait_until("the broken edit to be noticed", Duration::from_secs(10), || async {
        server.logged("keeping the previous keys").then_some(())
    })
    .await;
    assert_eq!(code_for("ap_file_two").await, 200, "previous keys are kept");
    for line in server.logs.lock().expect("logs").iter() {
        for secret in ["ap_file_one", "ap_file_two"] {
            assert!(!line.contains(secret), "a key was logged: {line}");
        }
    }
}

#[tokio::test]
async fn generate_token_appends_a_hashed_key_that_authenticates() {
    let files = tempfile::tempdir().expect("dir");
    let keys_file = files.path().join("keys.json");
    let output = tokio::process::Command::new(crate::support::binary())
        .args([
            "helpers",
            "generate-token",
            "--user-id",
            "carol",
            "--permissions",
            "session:list,session:create",
            "--output-path",
        ])
        .arg(&keys_file)
        .output()
        .await
        .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let key = String::from_utf8(output.stdout).expect("utf8").trim().to_string();
    assert!(key.starts_with("ap_") && key.len() > 60, "{key}");
    let stored = std::fs::read_to_string(&keys_file).expect("keys file");
    assert!(!stored.contains(&key), "the file holds no plaintext key");
    assert!(stored.contains("$argon2id$"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&keys_file).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let path = keys_file.display().to_string();
    let server = TestServer::start(|config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.keys_file = path;
    })
    .await;
    let (code, me) =
        call(&reqwest::Client::new(), "GET", &server.url("/auth/status"), Some(&key)).await;
    assert_eq!((code, me["user_id"].as_str()), (200, Some("carol")));
    assert_eq!(me["permissions"], json!(["session:list", "session:create"]));
}

#[tokio::test]
async fn auth_disabled_makes_everyone_the_anonymous_admin() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (code, me) = call(&client, "GET", &server.url("/auth/status"), None).await;
    assert_eq!(code, 200);
    assert_eq!(
        me,
        json!({"user_id": "anonymous", "role": "admin", "permissions": ["*"], "auth_type": "none"})
    );
    let (_, types) = call(&client, "GET", &server.url("/auth/types"), None).await;
    assert_eq!(types, json!({"enabled": false, "types": []}));
}
