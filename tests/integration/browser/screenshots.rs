//! `make screenshots`: every page of the dashboard, light and dark, written to the
//! directory named by `UI_SCREENSHOTS_DIR` (docs/ui/). Ignored in `make test`, which writes
//! nothing tracked.

use std::path::PathBuf;

use agentapi_proxy::config::ApiKeyEntry;
use serde_json::json;

use super::{desktop, open, start_session, webdriver};
use crate::support::server::TestServer;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes docs/ui/*.png; run by `make screenshots`"]
async fn write_screenshots() {
    let Ok(dir) = std::env::var("UI_SCREENSHOTS_DIR") else {
        panic!("set UI_SCREENSHOTS_DIR (make screenshots does)");
    };
    assert!(webdriver::available("write_screenshots"), "screenshots need Chromium");
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let server = TestServer::start(|_| {}).await;
    let base = server.base();
    let client = reqwest::Client::new();
    let profile = json!({"name": "Web team", "description": "Frontend work on the shop",
        "tags": {"team": "web"}, "environment": {"NODE_ENV": "development", "NPM_TOKEN": "npm_secret"}});
    client.post(server.url("/profiles")).json(&profile).send().await.expect("profile");
    let profile = json!({"name": "Reviews", "tags": {"kind": "review"}, "system_prompt": "Review carefully."});
    client.post(server.url("/profiles")).json(&profile).send().await.expect("profile");
    start_session(&base, &[], json!({"tags": {"project": "acme/shop", "ticket": "WEB-42"}})).await;
    let id = start_session(
        &base,
        &[],
        json!({"tags": {"project": "acme/api"}, "message": "Explain the retry logic in client.rs"}),
    )
    .await;
    crate::support::wait_until(
        "the first prompt's reply",
        std::time::Duration::from_secs(20),
        || {
            let client = client.clone();
            let url = server.url(&format!("/{id}/messages"));
            async move {
                let messages: serde_json::Value =
                    client.get(url).send().await.ok()?.json().await.ok()?;
                (messages["messages"].as_array()?.len() >= 3).then_some(())
            }
        },
    )
    .await;

    let browser = desktop().await;
    for scheme in ["light", "dark"] {
        browser.color_scheme(scheme).await;
        let shot = |name: &str| dir.join(format!("{name}-{scheme}.png"));
        browser.resize(1280, 800).await;
        open(&browser, &base, "/ui/").await;
        browser.find("#session-list li .badge").await;
        write(&shot("sessions"), browser.screenshot().await);
        browser.click("#new-session").await;
        browser.find("#new-session-form select option:nth-child(2)").await;
        write(&shot("new-session"), browser.screenshot().await);
        open(&browser, &base, &format!("/ui/sessions/{id}")).await;
        browser.wait_text("#conversation", "echo:").await;
        write(&shot("session"), browser.screenshot().await);
        browser.click("#tab-logs").await;
        browser
            .wait_for(
                "logs",
                "return document.querySelector('#session-logs').textContent;",
                json!([]),
            )
            .await;
        write(&shot("session-logs"), browser.screenshot().await);
        open(&browser, &base, "/ui/profiles").await;
        browser.find("#profile-list li").await;
        write(&shot("profiles"), browser.screenshot().await);
        open(&browser, &base, "/ui/overview").await;
        browser.find("#overview-states td").await;
        write(&shot("overview"), browser.screenshot().await);
        browser.resize(375, 740).await;
        open(&browser, &base, "/ui/").await;
        browser.find("#session-list li .badge").await;
        write(&shot("sessions-375px"), browser.screenshot().await);
    }
    browser.quit().await;

    let keyed = TestServer::start(|config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.api_keys = vec![ApiKeyEntry {
            key: Some("ap_shots_0123456789abcdef".into()),
            user_id: "shots".into(),
            ..ApiKeyEntry::default()
        }];
    })
    .await;
    let browser = Browser::launch_small().await;
    for scheme in ["light", "dark"] {
        browser.color_scheme(scheme).await;
        open(&browser, &keyed.base(), "/ui/").await;
        browser.find("#key-signin").await;
        write(&dir.join(format!("signin-{scheme}.png")), browser.screenshot().await);
    }
    browser.quit().await;
}

use webdriver::Browser;

impl Browser {
    async fn launch_small() -> Self {
        Browser::launch(900, 600).await
    }
}

fn write(path: &std::path::Path, png: Vec<u8>) {
    std::fs::write(path, png).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
}
