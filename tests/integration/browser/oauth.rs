//! Signing in with GitHub in the browser: the page's "Sign in with GitHub" goes through
//! `/oauth/login`, the fake GitHub's authorize page (which approves at once and sends the
//! browser back) and `/oauth/callback`, and lands on the dashboard signed in as the GitHub
//! user, their sessions listed. Signing out returns to the sign-in page.

use std::sync::atomic::Ordering;

use agentapi_proxy::config::{Config, OAuthConfig};
use serde_json::json;

use super::{desktop, open, start_session, webdriver};
use crate::support::fake_github::{CLIENT_ID, CLIENT_SECRET, FakeGithub, FakeUser};
use crate::support::server::TestServer;

const OCTOCAT: &str = "ghp_ui_octocat_token_00000000000000000000";

/// GitHub sign-in with the OAuth browser flow against `fake`; the callback comes back to
/// `public_url`, the server's own plain-HTTP address.
fn with_github_oauth(config: &mut Config, fake: &FakeGithub, public_url: String) {
    config.auth.enabled = true;
    config.auth.github.enabled = true;
    config.auth.github.base_url = fake.url.clone();
    let mapping = &mut config.auth.github.user_mapping;
    mapping.default_role = "user".into();
    mapping.default_permissions =
        ["session:create", "session:list", "session:read", "session:delete", "profile:list"]
            .map(String::from)
            .to_vec();
    config.auth.github.oauth = Some(OAuthConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        base_url: fake.url.clone(),
        ..OAuthConfig::default()
    });
    config.server.public_url = public_url;
    config.server.insecure_cookies = true;
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_with_github_lands_on_the_dashboard_as_that_user() {
    if !webdriver::available("sign_in_with_github_lands_on_the_dashboard_as_that_user") {
        return;
    }
    let fake = FakeGithub::start(10).await;
    fake.add_user(OCTOCAT, FakeUser::new("octocat", &["acme"], &[]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server =
        TestServer::start_on(listener, |config| with_github_oauth(config, &fake, base.clone()))
            .await;
    assert_eq!(server.base(), base);
    let authorization = format!("Bearer {OCTOCAT}");
    let id = start_session(
        &base,
        &[("Authorization", authorization.as_str())],
        json!({"tags": {"who": "octocat"}}),
    )
    .await;
    let authorized_before = fake.calls().authorize.load(Ordering::SeqCst);

    let browser = desktop().await;
    open(&browser, &base, "/ui/").await;
    let button = browser.wait_text("#github-signin", "Sign in with GitHub").await;
    assert_eq!(button, "Sign in with GitHub");
    fake.approve_as(OCTOCAT);
    browser.click("#github-signin").await;

    browser.wait_text("#who .user", "octocat").await;
    browser.wait_text(&format!("li[data-session-id='{id}']"), "who=octocat").await;
    let at = browser.eval("return location.pathname;", json!([])).await;
    assert_eq!(at, "/ui/", "the flow returns to the dashboard");
    assert_eq!(fake.calls().authorize.load(Ordering::SeqCst), authorized_before + 1);
    assert_eq!(fake.calls().token.load(Ordering::SeqCst), 1, "one code exchanged");
    // The GitHub token stays on the server: the page holds only an HttpOnly cookie.
    let visible_cookies = browser.eval("return document.cookie;", json!([])).await;
    assert_eq!(visible_cookies, "", "cookies readable by scripts: {visible_cookies}");

    browser.click("#signout").await;
    browser.find("#github-signin").await;
    browser.quit().await;
}
