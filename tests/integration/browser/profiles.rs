//! The Profiles page: create, edit, start from, delete; hostile names shown as text; secret
//! values stay redacted in the page yet reach the agent.

use serde_json::{Value, json};

use super::{HOSTILE, assert_inert, desktop, open, webdriver};
use crate::support::server::TestServer;
use crate::support::sessions::{agent_debug_env, get_json};

#[tokio::test(flavor = "multi_thread")]
async fn profiles_can_be_created_edited_started_and_deleted() {
    if !webdriver::available("profiles_can_be_created_edited_started_and_deleted") {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let base = server.base();
    let client = reqwest::Client::new();
    let browser = desktop().await;
    open(&browser, &base, "/ui/profiles").await;
    browser.wait_text("main", "No profiles yet").await;

    browser.click("#new-profile").await;
    browser.type_into("#profile-form input[name=name]", HOSTILE).await;
    browser.type_into("#profile-form textarea[name=tags]", &format!("team={HOSTILE}")).await;
    browser
        .type_into(
            "#profile-form textarea[name=environment]",
            "API_TOKEN=s3cret-value\nPLAIN=visible",
        )
        .await;
    browser.click("#profile-form button[type=submit]").await;
    let row = browser.wait_text("#profile-list .profile-row", HOSTILE).await;
    assert!(row.contains(&format!("team={HOSTILE}")), "{row}");
    assert!(row.contains("API_TOKEN=<redacted>") && row.contains("PLAIN=visible"), "{row}");
    assert!(!row.contains("s3cret-value"), "a secret value is shown: {row}");
    assert_inert(&browser).await;

    // Editing sends the redacted value back, which keeps the stored secret.
    browser.click("#profile-list .profile-row .actions button:nth-child(2)").await;
    browser.type_into("#profile-form input[name=description]", "edited in the page").await;
    browser.click("#profile-form button[type=submit]").await;
    browser.wait_text("#profile-list .profile-row", "edited in the page").await;
    let (_, listed) = get_json(&client, &server.url("/profiles")).await;
    let profile: &Value = &listed["profiles"][0];
    assert_eq!(profile["name"], HOSTILE);
    assert_eq!(profile["description"], "edited in the page");

    // Starting from it opens the new session; its agent got the real secret.
    browser.click("#profile-list .profile-row .actions button.primary").await;
    let url = browser
        .wait_for(
            "the session page",
            "return location.pathname.startsWith('/ui/sessions/') ? location.pathname : null;",
            json!([]),
        )
        .await;
    let id = url.as_str().unwrap().trim_start_matches("/ui/sessions/").to_string();
    let (_, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    let port = detail["port"].as_u64().expect("port") as u16;
    let env = agent_debug_env(&client, port).await;
    assert_eq!(env["env"]["API_TOKEN"], "s3cret-value", "{env}");

    // Delete asks first.
    open(&browser, &base, "/ui/profiles").await;
    browser.click("#profile-list .profile-row .actions button.danger").await;
    browser.click("#profile-list .profile-row button.confirm-delete").await;
    browser.wait_text("main", "No profiles yet").await;
    let (_, listed) = get_json(&client, &server.url("/profiles")).await;
    assert_eq!(listed["total"], 0);
    browser.quit().await;
}
