//! What the server leaves on disk and in its logs: private file modes under `data_dir`, and
//! not one key, token or secret environment value anywhere in either.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use agentapi_proxy::config::ApiKeyEntry;
use serde_json::json;

use crate::support::server::BinaryServer;
use crate::support::sessions::start_ok;

const KEY: &str = "ap_secret_probe_key_a1b2c3d4e5";
const WRONG: &str = "ap_wrong_probe_key_f6g7h8";
const GITHUB_LIKE: &str = "ghp_probeTokenThatMustNotAppear0123456";
const ENV_SECRET: &str = "env-secret-value-9f8e7d";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(all_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn data_dir_is_private_and_neither_files_nor_logs_hold_secrets() {
    let server = BinaryServer::start(|config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.github.enabled = false;
        config.auth.static_keys.api_keys = vec![ApiKeyEntry {
            key: Some(KEY.into()),
            user_id: "erin".into(),
            role: "admin".into(),
            permissions: vec!["*".into()],
            ..ApiKeyEntry::default()
        }];
    })
    .await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", KEY.parse().expect("header"));
    let client = reqwest::Client::builder().default_headers(headers).build().expect("client");
    let base = format!("http://{}", server.address);
    let (id, _) = start_ok(
        &client,
        &base,
        json!({"environment": {"PROBE_SECRET": ENV_SECRET, "ECHO_AGENT_BOOT_MS": "0"}}),
    )
    .await;
    // Credentials of every shape, right and wrong, through every kind of route.
    let anonymous = reqwest::Client::new();
    for key in [WRONG, GITHUB_LIKE] {
        let refused = anonymous
            .get(format!("{base}/search"))
            .header("X-API-Key", key)
            .send()
            .await
            .expect("send");
        assert_eq!(refused.status(), 401);
        let refused =
            anonymous.get(format!("{base}/search")).bearer_auth(key).send().await.expect("send");
        assert_eq!(refused.status(), 401);
    }
    let proxied = client
        .get(format!("{base}/{id}/status"))
        .bearer_auth(GITHUB_LIKE)
        .send()
        .await
        .expect("send");
    assert_eq!(proxied.status(), 200);
    let captured_logs = server.logs.clone();
    let (status, dir, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));

    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data_dir");
    assert_eq!(mode(&data.join("sessions")), 0o700);
    let mut checked_log = false;
    for file in all_files(&data) {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with("agentapi-proxy.db") {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        if name == "agent.log" {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
            assert_eq!(mode(file.parent().expect("session dir")), 0o700);
            checked_log = true;
        }
        let bytes = std::fs::read(&file).expect("read");
        for secret in [KEY, WRONG, GITHUB_LIKE, ENV_SECRET] {
            let found = bytes.windows(secret.len()).any(|window| window == secret.as_bytes());
            assert!(!found, "{secret} written to {}", file.display());
        }
    }
    assert!(checked_log, "an agent.log was there to check");
    let logs = captured_logs.lock().expect("logs").join("\n");
    assert!(!logs.is_empty());
    for secret in [KEY, WRONG, GITHUB_LIKE, ENV_SECRET] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
}
