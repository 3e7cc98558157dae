//! The Session page: the conversation, a reply growing in place, the composer, logs,
//! commands, and a session that ends while open.

use serde_json::json;

use super::{HOSTILE, assert_inert, desktop, open, start_session, webdriver};
use crate::support::server::TestServer;

/// Records every text the agent's reply showed, and whether the composer was blocked while
/// the agent worked.
const RECORD_REPLY: &str = r#"
    window.seen = [];
    window.blockedWhileWorking = false;
    const list = document.querySelector('#conversation');
    new MutationObserver(() => {
        for (const item of list.querySelectorAll('.msg-agent')) {
            window.seen.push(item.dataset.messageId + ':' + item.querySelector('.text').textContent);
        }
        if (!document.querySelector('#agent-working').hidden
            && document.querySelector('#composer-send').disabled) window.blockedWhileWorking = true;
    }).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_streams_in_place_and_the_composer_waits_for_it() {
    if !webdriver::available("a_reply_streams_in_place_and_the_composer_waits_for_it") {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let base = server.base();
    // A slow reply: several growing frames over two seconds.
    let id =
        start_session(&base, &[], json!({"environment": {"ECHO_AGENT_REPLY_MS": "2000"}})).await;
    let browser = desktop().await;
    open(&browser, &base, &format!("/ui/sessions/{id}")).await;
    browser
        .wait_for(
            "the composer to be ready",
            "return !document.querySelector('#composer-send').disabled;",
            json!([]),
        )
        .await;
    browser.eval(RECORD_REPLY, json!([])).await;
    let message = format!("hello {HOSTILE}");
    browser.type_into("#composer-input", &message).await;
    // Ctrl+Enter sends.
    browser.type_into("#composer-input", "\u{E009}\u{E007}\u{E009}").await;
    let final_text = format!("echo: {message}");
    browser.wait_text("#conversation .msg-agent:last-child .text", &final_text).await;
    let seen = browser.eval("return window.seen;", json!([])).await;
    let seen: Vec<String> = serde_json::from_value(seen).expect("strings");
    let replies: Vec<(&str, &str)> = seen
        .iter()
        .filter_map(|entry| entry.split_once(':'))
        .filter(|(_, text)| text.starts_with("echo"))
        .collect();
    assert!(
        replies.iter().any(|(_, text)| final_text.starts_with(text) && *text != final_text),
        "the reply never showed partly: {seen:?}"
    );
    let ids: std::collections::BTreeSet<&str> = replies.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 1, "the reply was not updated in place: {seen:?}");
    assert_eq!(browser.eval("return window.blockedWhileWorking;", json!([])).await, true);
    // The user's own message is shown literally too.
    browser.wait_text("#conversation .msg-user .text", &message).await;
    assert_inert(&browser).await;

    // The logs tab shows the agent's output; the commands name this session.
    browser.click("#tab-logs").await;
    browser
        .wait_for(
            "the logs to load",
            "const t = document.querySelector('#session-logs').textContent; return t.length > 0;",
            json!([]),
        )
        .await;
    browser.click("#tab-commands").await;
    assert!(browser.text("#command-curl").await.contains(&format!("/{id}/message")));
    assert!(browser.text("#command-client").await.contains(&format!("-s {id}")));
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_ends_while_open_says_why() {
    if !webdriver::available("a_session_that_ends_while_open_says_why") {
        return;
    }
    let server = TestServer::start(|_| {}).await;
    let base = server.base();
    let id = start_session(&base, &[], json!({})).await;
    let browser = desktop().await;
    open(&browser, &base, &format!("/ui/sessions/{id}")).await;
    browser
        .wait_for(
            "the composer to be ready",
            "return !document.querySelector('#composer-send').disabled;",
            json!([]),
        )
        .await;
    browser.type_into("#composer-input", "/fake exit 3").await;
    browser.click("#composer-send").await;
    let banner = browser.wait_text("#session-ended", "exited").await;
    assert!(banner.contains("code 3"), "{banner}");
    browser.wait_text("#session-status", "exited").await;
    browser
        .wait_for(
            "the composer to close",
            "return document.querySelector('#composer-input').disabled;",
            json!([]),
        )
        .await;
    browser.quit().await;
}
