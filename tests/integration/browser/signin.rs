//! Signing in with an API key: a wrong key shows the error, a right one opens the
//! dashboard as that user; a second user sees none of the first one's sessions; an admin
//! sees them all.

use agentapi_proxy::config::{ApiKeyEntry, Config};
use serde_json::json;

use super::{desktop, open, start_session, webdriver};
use crate::support::server::TestServer;

const ALICE: &str = "ap_ui_alice_0123456789abcdef";
const BOB: &str = "ap_ui_bob_0123456789abcdef";
const ADMIN: &str = "ap_ui_admin_0123456789abcdef";

fn with_keys(config: &mut Config) {
    let key = |key: &str, user: &str, role: &str| ApiKeyEntry {
        key: Some(key.into()),
        user_id: user.into(),
        role: role.into(),
        permissions: vec!["*".into()],
        ..ApiKeyEntry::default()
    };
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys =
        vec![key(ALICE, "alice", "user"), key(BOB, "bob", "user"), key(ADMIN, "root", "admin")];
    // The test server speaks plain HTTP.
    config.server.insecure_cookies = true;
}

async fn sign_in(browser: &webdriver::Browser, key: &str) {
    browser.type_into("#key-signin input[name=api_key]", key).await;
    browser.click("#key-signin button[type=submit]").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_cookie_the_page_asks_for_a_key() {
    if !webdriver::available("without_a_cookie_the_page_asks_for_a_key") {
        return;
    }
    let server = TestServer::start(with_keys).await;
    let browser = desktop().await;
    open(&browser, &server.base(), "/ui/").await;
    browser.find("#key-signin input[name=api_key]").await;
    let label = browser.text("label[for]").await;
    assert_eq!(label, "API key");
    // No GitHub OAuth configured: no GitHub button.
    assert_eq!(
        browser.eval("return !!document.querySelector('#github-signin');", json!([])).await,
        false
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_sign_in_and_each_user_sees_only_their_sessions() {
    if !webdriver::available("keys_sign_in_and_each_user_sees_only_their_sessions") {
        return;
    }
    let server = TestServer::start(with_keys).await;
    let base = server.base();
    let alices =
        start_session(&base, &[("X-API-Key", ALICE)], json!({"tags": {"who": "alice"}})).await;

    let browser = desktop().await;
    open(&browser, &base, "/ui/").await;
    sign_in(&browser, "ap_ui_wrong_0123456789abcdef").await;
    let error = browser.wait_text("#key-signin .error", "not accepted").await;
    assert!(!error.is_empty());

    browser.clear("#key-signin input[name=api_key]").await;
    sign_in(&browser, BOB).await;
    browser.wait_text("#who .user", "bob").await;
    browser.wait_text("main", "No sessions yet").await;
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#session-list li').length;", json!([]))
            .await,
        0,
        "bob sees alice's session"
    );
    browser.click("#signout").await;
    browser.find("#key-signin").await;

    sign_in(&browser, ADMIN).await;
    browser.wait_text("#who", "admin").await;
    let row = browser.wait_text(&format!("li[data-session-id='{alices}']"), "who=alice").await;
    assert!(row.contains("alice"), "the admin view names the owner: {row}");
    browser.click("#signout").await;

    sign_in(&browser, ALICE).await;
    browser.wait_text(&format!("li[data-session-id='{alices}']"), "who=alice").await;
    browser.quit().await;
}
