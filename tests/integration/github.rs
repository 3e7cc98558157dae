//! GitHub sign-in against a fake GitHub on 127.0.0.1: tokens → identity, team mapping,
//! pagination, `allowed_orgs`, the cache, failing closed, both OAuth flows end to end (state,
//! PKCE, refresh, logout, cookies and the CSRF guard), tokens across a restart, and secrets
//! kept out of bodies, logs and the database. The OAuth flows are in `github/oauth.rs`.

mod dashboard;
mod oauth;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agentapi_proxy::config::{Config, OAuthConfig, TeamRole};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::support::fake_github::{CLIENT_ID, CLIENT_SECRET, FakeGithub, FakeUser, Mode};
use crate::support::server::{BinaryServer, TestServer};

const OCTOCAT: &str = "ghp_octocat_token_0000000000000000000000";
const HUBOT: &str = "gho_hubot_token_00000000000000000000000000";
const OUTSIDER: &str = "ghu_outsider_token_000000000000000000000";
const MONA: &str = "ghs_mona_token_0000000000000000000000000000";
const PUBLIC_URL: &str = "https://agents.example";
const REDIRECT: &str = "http://app.test/cb";

const DEFAULT_PERMISSIONS: &[&str] =
    &["profile:create", "profile:delete", "profile:list", "profile:read", "session:list"];

/// A fake with octocat (acme/frontend), hubot (acme/platform on the last page → admin),
/// mona (acme, no team) and an outsider; lists come one entry per page.
async fn fake() -> FakeGithub {
    let fake = FakeGithub::start(1).await;
    fake.add_user(OCTOCAT, FakeUser::new("octocat", &["acme"], &[("acme", "frontend")]));
    fake.add_user(
        HUBOT,
        FakeUser::new(
            "hubot",
            &["acme", "robots"],
            &[("acme", "frontend"), ("robots", "builders"), ("Acme", "Platform")],
        ),
    );
    fake.add_user(MONA, FakeUser::new("mona", &["acme"], &[]));
    fake.add_user(OUTSIDER, FakeUser::new("outsider", &["elsewhere"], &[]));
    fake
}

fn github(config: &mut Config, fake: &FakeGithub) {
    config.auth.enabled = true;
    config.auth.github.enabled = true;
    config.auth.github.base_url = fake.url.clone();
    let mapping = &mut config.auth.github.user_mapping;
    mapping.default_role = "user".into();
    mapping.default_permissions = DEFAULT_PERMISSIONS.iter().map(|p| p.to_string()).collect();
    mapping.team_role_mapping.insert(
        "acme/platform".into(),
        TeamRole { role: "admin".into(), permissions: vec!["*".into()] },
    );
    mapping.team_role_mapping.insert(
        "acme/frontend".into(),
        TeamRole { role: "developer".into(), permissions: vec!["session:create".into()] },
    );
}

fn with_oauth(config: &mut Config, fake: &FakeGithub) {
    github(config, fake);
    config.auth.github.oauth = Some(OAuthConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        base_url: fake.url.clone(),
        allowed_redirect_uris: vec![REDIRECT.into(), "http://localhost:7000/".into()],
        ..OAuthConfig::default()
    });
    config.server.public_url = PUBLIC_URL.into();
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

async fn send(request: reqwest::RequestBuilder) -> (u16, HeaderMap, Value, String) {
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

async fn status_with(base: &str, name: &str, value: &str) -> (u16, Value) {
    let (code, _, body, _) =
        send(no_redirects().get(format!("{base}/auth/status")).header(name, value)).await;
    (code, body)
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location).expect("url").query_pairs().into_owned().collect()
}

fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().expect("text").to_string())
        .collect()
}

/// The API-client flow up to the callback's answer; returns it and every body seen.
async fn api_login(base: &str, fake: &FakeGithub, as_token: &str) -> (Value, Vec<String>) {
    let client = no_redirects();
    let (code, _, started, started_text) = send(
        client.post(format!("{base}/oauth/authorize")).json(&json!({"redirect_uri": REDIRECT})),
    )
    .await;
    assert_eq!(code, 200, "{started}");
    fake.approve_as(as_token);
    let back = fake.approve(started["auth_url"].as_str().expect("auth_url")).await;
    assert!(back.starts_with(REDIRECT), "{back}");
    let params = query_of(&back);
    assert_eq!(params["state"], started["state"].as_str().expect("state"));
    let callback = format!(
        "{base}/oauth/callback?{}",
        serde_urlencoded::to_string([("code", &params["code"]), ("state", &params["state"])])
            .expect("query")
    );
    let (code, _, issued, issued_text) = send(client.get(callback)).await;
    assert_eq!(code, 200, "{issued}");
    (issued, vec![started_text, issued_text])
}

#[tokio::test]
async fn a_github_token_becomes_its_login_with_roles_from_teams_on_every_page() {
    let fake = fake().await;
    let server = TestServer::start(|config| {
        github(config, &fake);
        config.metrics.public = true;
    })
    .await;
    let base = server.base();
    let (code, me) = status_with(&base, "Authorization", &format!("Bearer {HUBOT}")).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(me["user_id"], "hubot");
    assert_eq!(me["auth_type"], "github");
    assert_eq!(me["role"], "admin", "acme/platform is on the third page of teams");
    assert!(me["permissions"].as_array().expect("list").contains(&json!("*")));
    assert_eq!(fake.calls().teams.load(Ordering::SeqCst), 3, "one team per page");
    assert_eq!(fake.calls().orgs.load(Ordering::SeqCst), 2, "two orgs, one per page");

    let (code, me) = status_with(&base, "Authorization", &format!("token {OCTOCAT}")).await;
    assert_eq!(code, 200);
    assert_eq!(me["role"], "developer");
    let mut expected: Vec<&str> = DEFAULT_PERMISSIONS.to_vec();
    expected.push("session:create");
    expected.sort();
    assert_eq!(me["permissions"], json!(expected), "defaults united with the team's");
    let (_, me) = status_with(&base, "Authorization", &format!("Bearer {MONA}")).await;
    assert_eq!(
        (me["role"].as_str(), me["permissions"].clone()),
        (Some("user"), json!(DEFAULT_PERMISSIONS))
    );

    // Cached: asking again does not reach GitHub.
    let before = fake.calls().api();
    for token in [HUBOT, OCTOCAT, MONA] {
        let (code, _) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
        assert_eq!(code, 200);
    }
    assert_eq!(fake.calls().api(), before, "every identity came from the cache");
    // A token GitHub does not know is the uniform 401, and is not asked about again soon.
    for _ in 0..2 {
        let unknown = "Bearer ghp_unknown_00000000000000000000000000";
        let (code, body) = status_with(&base, "Authorization", unknown).await;
        assert_eq!((code, body["code"].as_str()), (401, Some("unauthenticated")));
    }
    assert_eq!(fake.calls().user.load(Ordering::SeqCst), 4, "three users and one refusal");
    let metrics =
        reqwest::get(server.url("/metrics")).await.expect("scrape").text().await.expect("text");
    let count = |outcome: &str| -> f64 {
        let prefix = format!("agentapi_proxy_github_token_lookups_total{{outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|line| line.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0.0)
    };
    assert!(count("cache_hit") >= 3.0, "{metrics}");
    assert!(count("github_ok") >= 3.0 && count("github_rejected") >= 1.0, "{metrics}");
}

#[tokio::test]
async fn allowed_orgs_keep_everyone_else_out() {
    let fake = fake().await;
    let server = TestServer::start(|config| {
        github(config, &fake);
        config.auth.github.allowed_orgs = vec!["ACME".into()];
    })
    .await;
    let (code, _) = status_with(&server.base(), "Authorization", &format!("Bearer {MONA}")).await;
    assert_eq!(code, 200, "organisation names compare case-insensitively");
    let (code, body) =
        status_with(&server.base(), "Authorization", &format!("Bearer {OUTSIDER}")).await;
    assert_eq!((code, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert!(!body.to_string().contains("acme"), "the allowed organisations are not told");
}

#[tokio::test]
async fn github_down_fails_closed_for_new_tokens_while_cached_ones_keep_working() {
    let fake = fake().await;
    let server = TestServer::start(|config| github(config, &fake)).await;
    let base = server.base();
    let (code, _) = status_with(&base, "Authorization", &format!("Bearer {OCTOCAT}")).await;
    assert_eq!(code, 200);

    fake.set_mode(Mode::Down);
    let (code, body) = status_with(&base, "Authorization", &format!("Bearer {HUBOT}")).await;
    assert_eq!((code, body["code"].as_str()), (503, Some("github_unavailable")), "{body}");
    let (code, _) = status_with(&base, "Authorization", &format!("Bearer {OCTOCAT}")).await;
    assert_eq!(code, 200, "a cached identity keeps working");

    fake.set_mode(Mode::Hang);
    let started = Instant::now();
    let (code, body) = status_with(&base, "Authorization", &format!("Bearer {MONA}")).await;
    let waited = started.elapsed();
    assert_eq!((code, body["code"].as_str()), (503, Some("github_unavailable")), "{body}");
    assert!(waited >= Duration::from_secs(4) && waited < Duration::from_secs(15), "{waited:?}");
    let (code, _) = status_with(&base, "Authorization", &format!("Bearer {OCTOCAT}")).await;
    assert_eq!(code, 200);

    fake.set_mode(Mode::Normal);
    let (code, _) = status_with(&base, "Authorization", &format!("Bearer {HUBOT}")).await;
    assert_eq!(code, 200, "a refusal while GitHub was down is not remembered");
}

#[tokio::test]
async fn credentials_not_shaped_like_github_tokens_never_reach_github() {
    let fake = fake().await;
    let server = TestServer::start(|config| {
        github(config, &fake);
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.api_keys = vec![agentapi_proxy::config::ApiKeyEntry {
            key: Some("ap_static_0123456789".into()),
            user_id: "static".into(),
            permissions: vec!["*".into()],
            ..Default::default()
        }];
        config.auth.github.token_header = "X-GitHub-Token".into();
    })
    .await;
    let base = server.base();
    for (name, value) in [
        ("Authorization", "Bearer ap_alice_0123456789abcdef"),
        ("Authorization", "Bearer aps_not_issued_by_us"),
        ("Authorization", "Bearer something-else"),
        ("Authorization", "Basic b2N0b2NhdDpwdw=="),
        ("X-GitHub-Token", "not-a-github-token"),
        ("Cookie", "apx_session=aps_whatever; __Host-apx_session=aps_whatever"),
    ] {
        let (code, body) = status_with(&base, name, value).await;
        assert_eq!(
            (code, body["code"].as_str()),
            (401, Some("unauthenticated")),
            "{name}: {value}"
        );
    }
    assert_eq!(fake.calls().all(), 0, "nothing was sent to GitHub");
    let (code, me) = status_with(&base, "Authorization", "Bearer ap_static_0123456789").await;
    assert_eq!((code, me["auth_type"].as_str()), (200, Some("api_key")));
    let (code, me) = status_with(&base, "X-GitHub-Token", OCTOCAT).await;
    assert_eq!((code, me["user_id"].as_str()), (200, Some("octocat")), "the token header works");
}
