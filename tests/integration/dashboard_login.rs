//! Signing in for the dashboard: `POST /auth/login` turns a static key into the session
//! cookie (with static keys alone, no OAuth configured), the cookie works on reads and, with
//! a CSRF signal, on state changes; a wrong key is the uniform 401; repeated failures from
//! one address are throttled; `POST /auth/logout` and removing the key end the session;
//! `GET /` sends browsers to `/ui/`.

use std::time::Duration;

use agentapi_proxy::config::Config;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::support::server::{BinaryServer, TestServer};
use crate::support::{key, wait_until};

const ALICE: &str = "ap_alice_dash_0123456789abcdef";
const BOB: &str = "ap_bob_dash_0123456789abcdef";

fn with_keys(config: &mut Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys =
        vec![key(ALICE, "alice", "user", &["*"]), key(BOB, "bob", "user", &["session:list"])];
}

/// `POST /auth/login`; the status, the `Set-Cookie` header and the JSON body, if any.
pub async fn login(base: &str, credential: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .json(&json!({ "api_key": credential }))
        .send()
        .await
        .expect("POST /auth/login");
    let status = response.status().as_u16();
    let set_cookie =
        response.headers().get("set-cookie").map(|value| value.to_str().expect("text").to_string());
    (status, set_cookie, response.json().await.unwrap_or(Value::Null))
}

/// Signs in with `credential` and returns the `name=value` pair to send as `Cookie`.
pub async fn cookie_for(base: &str, credential: &str) -> String {
    let (status, set_cookie, body) = login(base, credential).await;
    assert_eq!(status, 204, "{body}");
    let set_cookie = set_cookie.expect("a session cookie");
    set_cookie.split(';').next().expect("name=value").to_string()
}

/// A client that sends `cookie` on every request (and nothing else).
pub fn cookie_client(cookie: &str) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_str(cookie).expect("header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

async fn status_of(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_static_key_signs_in_and_the_cookie_works_with_the_csrf_rule() {
    let server = TestServer::start(with_keys).await;
    let base = server.base();
    let (status, set_cookie, _) = login(&base, ALICE).await;
    assert_eq!(status, 204);
    let set_cookie = set_cookie.expect("Set-Cookie");
    assert!(set_cookie.starts_with("__Host-apx_session=aps_"), "{set_cookie}");
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=86400"] {
        assert!(set_cookie.contains(flag), "{flag} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains(ALICE), "the key itself is never the cookie");
    let cookie = set_cookie.split(';').next().expect("pair").to_string();
    let client = cookie_client(&cookie);

    let (code, me) = status_of(client.get(format!("{base}/auth/status"))).await;
    assert_eq!((code, me["user_id"].as_str()), (200, Some("alice")), "{me}");
    let (code, _) = status_of(client.get(format!("{base}/search"))).await;
    assert_eq!(code, 200);

    let (code, started) = status_of(
        client.post(format!("{base}/start")).header("X-Requested-With", "fetch").json(&json!({})),
    )
    .await;
    assert_eq!(code, 200, "{started}");
    let id = started["session_id"].as_str().expect("id").to_string();
    let (code, refused) = status_of(client.delete(format!("{base}/sessions/{id}"))).await;
    assert_eq!((code, refused["code"].as_str()), (403, Some("forbidden")), "no CSRF signal");
    let (code, _) = status_of(
        client.delete(format!("{base}/sessions/{id}")).header("X-Requested-With", "fetch"),
    )
    .await;
    assert_eq!(code, 200, "with the CSRF signal");
}

#[tokio::test]
async fn a_wrong_key_is_the_uniform_401_and_eleven_failures_are_throttled() {
    let server = TestServer::start(with_keys).await;
    let base = server.base();
    let (_, any_401) = status_of(reqwest::Client::new().get(format!("{base}/auth/status"))).await;
    for attempt in 1..=10 {
        let (status, set_cookie, body) = login(&base, &format!("{ALICE}x{attempt}")).await;
        assert_eq!((status, &body), (401, &any_401), "attempt {attempt}");
        assert!(set_cookie.is_none());
    }
    let response = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .json(&json!({ "api_key": "still-wrong" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 =
        response.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "too_many_attempts");
    let (status, set_cookie, _) = login(&base, ALICE).await;
    assert_eq!((status, set_cookie), (429, None), "even the right key waits");
    // Header authentication is not affected.
    let (code, _) = status_of(
        reqwest::Client::new().get(format!("{base}/auth/status")).header("X-API-Key", ALICE),
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn logout_ends_the_cookie_session_and_clears_the_cookie() {
    let server = TestServer::start(with_keys).await;
    let base = server.base();
    let cookie = cookie_for(&base, ALICE).await;
    let client = cookie_client(&cookie);
    assert_eq!(status_of(client.get(format!("{base}/auth/status"))).await.0, 200);
    let (code, _) = status_of(client.post(format!("{base}/auth/logout"))).await;
    assert_eq!(code, 403, "logout by cookie needs the CSRF signal too");
    let response = client
        .post(format!("{base}/auth/logout"))
        .header("X-Requested-With", "fetch")
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status().as_u16(), 204);
    let cleared = response.headers()["set-cookie"].to_str().expect("text").to_string();
    assert!(cleared.starts_with("__Host-apx_session=;") && cleared.contains("Max-Age=0"));
    let (code, body) = status_of(client.get(format!("{base}/auth/status"))).await;
    assert_eq!((code, body["code"].as_str()), (401, Some("unauthenticated")));
    // Always routed, also without a cookie.
    let (code, _) = status_of(reqwest::Client::new().post(format!("{base}/auth/logout"))).await;
    assert_eq!(code, 204);
}

#[tokio::test]
async fn removing_the_key_from_the_keys_file_ends_its_cookie_session() {
    let files = tempfile::tempdir().expect("dir");
    let keys_file = files.path().join("keys.json");
    let write = |entries: Value| {
        std::fs::write(&keys_file, json!({"api_keys": entries}).to_string()).expect("write")
    };
    let one =
        json!({"key": "ap_file_one_dash", "user_id": "one", "role": "user", "permissions": ["*"]});
    let two =
        json!({"key": "ap_file_two_dash", "user_id": "two", "role": "user", "permissions": ["*"]});
    write(json!([one.clone(), two.clone()]));
    let path = keys_file.display().to_string();
    let server = BinaryServer::start(|config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.keys_file = path;
        config.server.insecure_cookies = true;
    })
    .await;
    let base = server.url("");
    let cookie_one = cookie_for(&base, "ap_file_one_dash").await;
    assert!(cookie_one.starts_with("apx_session=aps_"), "insecure cookies: {cookie_one}");
    let cookie_two = cookie_for(&base, "ap_file_two_dash").await;
    let (one_client, two_client) = (cookie_client(&cookie_one), cookie_client(&cookie_two));
    let status_url = format!("{base}/auth/status");
    assert_eq!(status_of(one_client.get(&status_url)).await.0, 200);

    write(json!([two]));
    wait_until("the removed key's cookie session to end", Duration::from_secs(10), || async {
        (status_of(one_client.get(&status_url)).await.0 == 401).then_some(())
    })
    .await;
    let (code, me) = status_of(two_client.get(&status_url)).await;
    assert_eq!((code, me["user_id"].as_str()), (200, Some("two")), "the other key's stays");
    write(json!([
        one,
        json!({"key": "ap_file_two_dash", "user_id": "two", "role": "user", "permissions": ["*"]})
    ]));
    wait_until("the key to come back", Duration::from_secs(10), || async {
        let code = status_of(
            reqwest::Client::new().get(&status_url).header("X-API-Key", "ap_file_one_dash"),
        )
        .await
        .0;
        (code == 200).then_some(())
    })
    .await;
    assert_eq!(
        status_of(one_client.get(&status_url)).await.0,
        401,
        "an ended session stays ended when its key comes back"
    );
}

#[tokio::test]
async fn with_auth_off_login_is_a_204_without_a_cookie() {
    let server = TestServer::start(|_| {}).await;
    let (status, set_cookie, _) = login(&server.base(), "anything").await;
    assert_eq!((status, set_cookie), (204, None));
    let response =
        reqwest::Client::new().post(server.url("/auth/logout")).send().await.expect("logout");
    assert_eq!(response.status().as_u16(), 204);
}

#[tokio::test]
async fn a_missing_key_is_a_400_and_a_form_post_is_a_415() {
    let server = TestServer::start(with_keys).await;
    let client = reqwest::Client::new();
    let (code, body) =
        status_of(client.post(server.url("/auth/login")).json(&json!({"api_key": ""}))).await;
    assert_eq!((code, body["code"].as_str()), (400, Some("invalid_request")));
    let (code, _) = status_of(
        client
            .post(server.url("/auth/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("api_key={ALICE}")),
    )
    .await;
    assert_eq!(code, 415, "a cross-site form cannot sign anyone in");
}

#[tokio::test]
async fn browsers_asking_for_slash_go_to_the_dashboard_and_api_callers_get_json() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .get(server.url("/"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("GET /");
    assert_eq!(response.status().as_u16(), 302);
    assert_eq!(response.headers()["location"], "/ui/");
    let (code, body) =
        status_of(client.get(server.url("/")).header("accept", "application/json")).await;
    assert_eq!((code, body["code"].as_str()), (404, Some("not_found")));
}
