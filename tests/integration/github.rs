//! GitHub sign-in against a fake GitHub on 127.0.0.1: tokens → identity, team mapping,
//! pagination, `allowed_orgs`, the cache, failing closed, both OAuth flows end to end (state,
//! PKCE, refresh, logout, cookies and the CSRF guard), tokens across a restart, and secrets
//! kept out of bodies, logs and the database.

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
    let server = TestServer::start(|config| github(config, &fake)).await;
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

#[tokio::test]
async fn the_api_client_flow_issues_a_proxy_token_that_refreshes_and_logs_out() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();
    let (issued, mut bodies) = api_login(&base, &fake, OCTOCAT).await;

    let token = issued["access_token"].as_str().expect("token").to_string();
    assert!(token.starts_with("aps_") && token.len() == 68, "{token}");
    assert_eq!(issued["token_type"], "Bearer");
    assert_eq!(issued["user"]["user_id"], "octocat");
    assert_eq!(issued["user"]["role"], "developer");
    assert_eq!(fake.calls().token.load(Ordering::SeqCst), 1);
    assert_eq!(fake.calls().verified.load(Ordering::SeqCst), 1, "PKCE verifier matched");
    let session_id = issued["session_id"].as_str().expect("session id").to_string();
    let expires_at = issued["expires_at"].as_str().expect("expiry").to_string();

    let (code, me) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(
        (code, me["auth_type"].as_str(), me["user_id"].as_str()),
        (200, Some("oauth"), Some("octocat"))
    );
    let api_calls = fake.calls().api();

    let (code, _, refreshed, text) =
        send(client.post(format!("{base}/oauth/refresh")).header("X-Session-ID", &session_id))
            .await;
    assert_eq!(code, 200, "{refreshed}");
    assert_eq!(refreshed["session_id"], session_id.as_str());
    assert!(refreshed["expires_at"].as_str().expect("expiry") >= expires_at.as_str());
    bodies.push(text);
    let (code, _, _, text) =
        send(client.post(format!("{base}/oauth/refresh")).bearer_auth(&token)).await;
    assert_eq!(code, 200);
    bodies.push(text);

    let (code, _, body, text) =
        send(client.post(format!("{base}/oauth/logout")).bearer_auth(&token)).await;
    assert_eq!((code, body), (200, json!({"message": "Successfully logged out"})));
    bodies.push(text);
    let (code, _) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(code, 401, "logged out at once");
    let (code, _, _, _) =
        send(client.post(format!("{base}/oauth/refresh")).header("X-Session-ID", &session_id))
            .await;
    assert_eq!(code, 401, "a logged-out session cannot be refreshed");
    assert_eq!(fake.calls().api(), api_calls, "proxy tokens never ask GitHub");
    for body in &bodies {
        assert!(!body.contains(OCTOCAT), "the GitHub token leaked: {body}");
    }
}

#[tokio::test]
async fn unknown_reused_and_expired_states_are_refused_without_asking_github() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();
    let callback = |code: &str, state: &str| {
        format!(
            "{base}/oauth/callback?{}",
            serde_urlencoded::to_string([("code", code), ("state", state)]).expect("query")
        )
    };
    let (code, _, body, _) = send(client.get(callback("c", "never-issued"))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")));
    let (code, _, body, _) = send(client.get(format!("{base}/oauth/callback?code=c"))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")), "no state at all");

    // A used state cannot be used again.
    let (_, _, started, _) = send(
        client.post(format!("{base}/oauth/authorize")).json(&json!({"redirect_uri": REDIRECT})),
    )
    .await;
    fake.approve_as(MONA);
    let params = query_of(&fake.approve(started["auth_url"].as_str().expect("url")).await);
    let (code, _, _, _) = send(client.get(callback(&params["code"], &params["state"]))).await;
    assert_eq!(code, 200);
    let token_calls = fake.calls().token.load(Ordering::SeqCst);
    let (code, _, body, _) = send(client.get(callback(&params["code"], &params["state"]))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")));

    // An expired state: written straight into the store, ten minutes old.
    let state = "expired-state-0123456789";
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(state.as_bytes()));
    let database = server.dir.path().join("data").join("agentapi-proxy.db");
    let connection = rusqlite::Connection::open(&database).expect("open database");
    connection.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    connection
        .execute(
            "INSERT INTO oauth_states (state_hash, verifier, redirect_uri, expires_at) \
             VALUES (?1, 'verifier', ?2, ?3)",
            rusqlite::params![hash, REDIRECT, agentapi_proxy::clock::now_ms() - 1],
        )
        .expect("insert");
    let (code, _, body, _) = send(client.get(callback("c", state))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")));
    assert_eq!(fake.calls().token.load(Ordering::SeqCst), token_calls, "GitHub was not asked");
}

#[tokio::test]
async fn redirect_uris_and_return_to_outside_the_allow_list_are_refused() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();
    for uri in ["https://evil.com/cb", "http://app.test/cb/more", "http://localhost:70000/", ""] {
        let (code, _, body, _) = send(
            client.post(format!("{base}/oauth/authorize")).json(&json!({"redirect_uri": uri})),
        )
        .await;
        assert_eq!((code, body["code"].as_str()), (400, Some("invalid_redirect_uri")), "{uri}");
    }
    let (code, _, _, _) = send(
        client
            .post(format!("{base}/oauth/authorize"))
            .json(&json!({"redirect_uri": "http://localhost:7000/done"})),
    )
    .await;
    assert_eq!(code, 200, "under a prefix entry");
    for return_to in ["//evil.com", "https://evil.com", "/\\evil", "evil"] {
        let url = format!(
            "{base}/oauth/login?{}",
            serde_urlencoded::to_string([("return_to", return_to)]).expect("query")
        );
        let (code, headers, body, _) = send(client.get(url)).await;
        assert_eq!((code, body["code"].as_str()), (400, Some("invalid_return_to")), "{return_to}");
        assert!(set_cookies(&headers).is_empty());
    }
    assert_eq!(fake.calls().all(), 0);
}

#[tokio::test]
async fn the_browser_flow_sets_cookies_and_guards_unsafe_requests() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let client = no_redirects();

    let (code, headers, _, _) =
        send(client.get(format!("{base}/oauth/login?return_to=/ui/"))).await;
    assert_eq!(code, 302);
    let to_github = headers["location"].to_str().expect("location").to_string();
    assert!(to_github.starts_with(&format!("{}/login/oauth/authorize?", fake.url)), "{to_github}");
    let params = query_of(&to_github);
    assert_eq!(params["redirect_uri"], format!("{PUBLIC_URL}/oauth/callback"));
    assert_eq!(params["code_challenge_method"], "S256");
    let cookies = set_cookies(&headers);
    assert_eq!(cookies.len(), 1);
    let login_cookie = &cookies[0];
    assert!(login_cookie.starts_with("__Host-apx_oauth="), "{login_cookie}");
    for flag in ["; Path=/", "; Max-Age=600", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(login_cookie.contains(flag), "{flag} missing in {login_cookie}");
    }

    fake.approve_as(OCTOCAT);
    let back = fake.approve(&to_github).await;
    assert!(back.starts_with(&format!("{PUBLIC_URL}/oauth/callback?")), "{back}");
    let callback = back.replace(PUBLIC_URL, &base);

    // Without the login cookie the state is not honoured (and is used up).
    let (code, _, body, _) = send(client.get(&callback)).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_state")));
    assert_eq!(fake.calls().token.load(Ordering::SeqCst), 0);

    // A second login, this time finished by the same browser.
    let (_, headers, _, _) = send(client.get(format!("{base}/oauth/login?return_to=/ui/"))).await;
    let login_pair = set_cookies(&headers)[0].split(';').next().expect("pair").to_string();
    let back = fake.approve(headers["location"].to_str().expect("location")).await;
    let (code, headers, _, text) =
        send(client.get(back.replace(PUBLIC_URL, &base)).header("Cookie", &login_pair)).await;
    assert_eq!(code, 302, "{text}");
    assert_eq!(headers["location"], "/ui/");
    let cookies = set_cookies(&headers);
    let session_cookie =
        cookies.iter().find(|c| c.starts_with("__Host-apx_session=aps_")).expect("session cookie");
    for flag in ["; Path=/", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(session_cookie.contains(flag), "{flag} missing in {session_cookie}");
    }
    assert!(cookies.iter().any(|c| c.starts_with("__Host-apx_oauth=;") && c.contains("Max-Age=0")));
    assert!(!text.contains(OCTOCAT));
    let session = session_cookie.split(';').next().expect("pair").to_string();

    let (code, me) = status_with(&base, "Cookie", &session).await;
    assert_eq!(
        (code, me["auth_type"].as_str(), me["user_id"].as_str()),
        (200, Some("oauth"), Some("octocat"))
    );

    // Unsafe requests need proof of origin; a JSON body is proof.
    let (code, _, body, _) = send(
        client
            .post(format!("{base}/profiles"))
            .header("Cookie", &session)
            .header("Content-Type", "text/plain")
            .body(r#"{"name": "x"}"#),
    )
    .await;
    assert_eq!((code, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (code, _, created, _) = send(
        client
            .post(format!("{base}/profiles"))
            .header("Cookie", &session)
            .json(&json!({"name": "p"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let profile = format!("{base}/profiles/{}", created["profile"]["id"].as_str().expect("id"));
    for origin in [None, Some("https://evil.example"), Some("http://agents.example")] {
        let mut request = client.delete(&profile).header("Cookie", &session);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let (code, _, _, _) = send(request).await;
        assert_eq!(code, 403, "origin {origin:?}");
    }
    let (code, _, _, _) =
        send(client.delete(&profile).header("Cookie", &session).header("Origin", PUBLIC_URL)).await;
    assert_eq!(code, 200, "our own origin");

    // Logout by cookie (CSRF-guarded too) clears it and ends the session.
    let (code, _, _, _) =
        send(client.post(format!("{base}/oauth/logout")).header("Cookie", &session)).await;
    assert_eq!(code, 403, "a cross-site logout is refused");
    let (code, headers, _, _) = send(
        client
            .post(format!("{base}/oauth/logout"))
            .header("Cookie", &session)
            .header("X-Requested-With", "fetch"),
    )
    .await;
    assert_eq!(code, 200);
    assert!(set_cookies(&headers).iter().any(|c| c.starts_with("__Host-apx_session=;")));
    let (code, _) = status_with(&base, "Cookie", &session).await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn insecure_cookies_drop_the_prefix_and_the_secure_flag() {
    let fake = fake().await;
    let server = TestServer::start(|config| {
        with_oauth(config, &fake);
        config.server.insecure_cookies = true;
    })
    .await;
    let (code, headers, _, _) =
        send(no_redirects().get(format!("{}/oauth/login", server.base()))).await;
    assert_eq!(code, 302);
    let cookie = &set_cookies(&headers)[0];
    assert!(cookie.starts_with("apx_oauth=") && !cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn proxy_tokens_survive_a_restart_and_stay_out_of_logs_and_the_database() {
    let fake = fake().await;
    let server = BinaryServer::start(|config| with_oauth(config, &fake)).await;
    let base = format!("http://{}", server.address);
    let (issued, _) = api_login(&base, &fake, HUBOT).await;
    let token = issued["access_token"].as_str().expect("token").to_string();
    let (code, _) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(code, 200);
    let logs = server.logs.clone();
    let (dir, config_path) = server.kill9().await;
    let database =
        std::fs::read(dir.path().join("data").join("agentapi-proxy.db")).unwrap_or_default();
    let wal =
        std::fs::read(dir.path().join("data").join("agentapi-proxy.db-wal")).unwrap_or_default();
    for stored in [&database, &wal] {
        let text = String::from_utf8_lossy(stored);
        assert!(!text.contains(&token) && !text.contains(HUBOT), "a secret is stored in clear");
    }

    let server = BinaryServer::launch(dir, config_path, &[]).await;
    let base = format!("http://{}", server.address);
    let (code, me) = status_with(&base, "Authorization", &format!("Bearer {token}")).await;
    assert_eq!(
        (code, me["user_id"].as_str(), me["role"].as_str()),
        (200, Some("hubot"), Some("admin"))
    );
    let (code, _, _, _) =
        send(no_redirects().post(format!("{base}/oauth/logout")).bearer_auth(&token)).await;
    assert_eq!(code, 200);
    let mut lines = logs.lock().expect("logs").clone();
    lines.extend(server.logs.lock().expect("logs").iter().cloned());
    assert!(lines.iter().any(|line| line.contains("OAuth login completed")), "logs were read");
    for line in &lines {
        assert!(!line.contains(&token[4..]) && !line.contains(HUBOT), "secret in log: {line}");
        assert!(!line.contains("code-"), "an OAuth code in log: {line}");
    }
}

#[tokio::test]
async fn a_logged_out_tokens_event_stream_ends() {
    let fake = fake().await;
    let server = TestServer::start(|config| with_oauth(config, &fake)).await;
    let base = server.base();
    let (issued, _) = api_login(&base, &fake, HUBOT).await;
    let token = issued["access_token"].as_str().expect("token").to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let client = reqwest::Client::builder().default_headers(headers).build().expect("client");
    let (id, _) = crate::support::sessions::start_ok(&client, &base, json!({})).await;
    let mut events = client.get(format!("{base}/{id}/events")).send().await.expect("events");
    assert_eq!(events.status(), 200);
    let (code, _, _, _) = send(client.post(format!("{base}/oauth/logout"))).await;
    assert_eq!(code, 200);
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(_)) = events.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its logged-out token");
    assert!(started.elapsed() < Duration::from_secs(30));
}
