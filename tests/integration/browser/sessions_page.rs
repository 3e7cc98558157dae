//! The Sessions page: a session started elsewhere appears without reloading, the New
//! session form starts one (tags shown as text), Stop asks first and ends in `exited`.

use serde_json::json;

use super::{HOSTILE, assert_inert, desktop, open, start_session, webdriver};
use crate::support::server::TestServer;

const ROW: &str = "#session-list li.session-row";
/// How long the API may take to catch up with the page.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn sessions_appear_live_start_from_the_form_and_stop_after_confirming() {
    let test = "sessions_appear_live_start_from_the_form_and_stop_after_confirming";
    if !webdriver::available(test) {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let base = server.base();
    let browser = desktop().await;
    open(&browser, &base, "/ui/").await;
    assert_eq!(browser.text("#who .user").await, "anonymous");
    browser.wait_text("main", "No sessions yet").await;

    // Started through the API: the open page shows it without reloading.
    let outside = start_session(&base, &[], json!({"tags": {"origin": "api"}})).await;
    browser.wait_text(&format!("{ROW}[data-session-id='{outside}']"), "origin=api").await;
    browser.wait_text(&format!("{ROW}[data-session-id='{outside}'] .badge"), "active").await;

    // Started from the form, with a hostile tag value and a secret environment value.
    browser.click("#new-session").await;
    browser.type_into("#new-session-form textarea[name=message]", "first words").await;
    browser.click("#new-session-form fieldset:nth-of-type(1) button").await;
    browser.type_into("#new-session-form .pair input[aria-label='Tag name']", "note").await;
    browser.type_into("#new-session-form .pair input[aria-label='Tag value']", HOSTILE).await;
    browser.click("#new-session-form button[type=submit]").await;
    browser.wait_text("#new-session-form .progress", "Started").await;
    let rows = browser
        .wait_for(
            "two rows",
            "const r = document.querySelectorAll(arguments[0]); return r.length === 2 ? r.length : null;",
            json!([ROW]),
        )
        .await;
    assert_eq!(rows, 2);
    browser.wait_text(ROW, &format!("note={HOSTILE}")).await;
    // The first prompt's state arrives with its own change (pending, then sent).
    browser.wait_text(ROW, "first prompt").await;
    assert_inert(&browser).await;

    // Stop asks first; cancelling keeps the session.
    let row = format!("{ROW}[data-session-id='{outside}']");
    browser.click(&format!("{row} button.stop")).await;
    browser.click(&format!("{row} .actions button:not(.confirm-stop)")).await;
    browser
        .wait_for(
            "the stop button back",
            "return document.querySelector(arguments[0]);",
            json!([format!("{row} button.stop")]),
        )
        .await;
    browser.click(&format!("{row} button.stop")).await;
    browser.click(&format!("{row} button.confirm-stop")).await;
    browser.wait_text(&format!("{row} .badge"), "exited").await;
    // The page shows `exited` as the stop ends, a moment before the DELETE removes the row.
    let url = server.url(&format!("/sessions/{outside}"));
    crate::support::wait_until("the stopped session to be gone from the API", PATIENCE, || {
        let url = url.clone();
        async move {
            let (code, _) = crate::support::sessions::get_json(&reqwest::Client::new(), &url).await;
            (code == 404).then_some(())
        }
    })
    .await;
    browser.quit().await;
}
