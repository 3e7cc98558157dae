//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! against the real server and echo agents: signing in, the live session list, a
//! conversation streaming in, profiles, hostile strings shown as text, reconnecting.
//! Without Chromium these tests fail under `CI=true` and are skipped loudly elsewhere.

mod idle;
mod oauth;
mod profiles;
mod reconnect;
mod screenshots;
mod session_page;
mod sessions_page;
mod signin;
pub mod webdriver;

use std::time::Duration;

use serde_json::{Value, json};

use self::webdriver::Browser;

/// A string that runs script if it is ever parsed as HTML.
pub const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// Opens the dashboard and waits until it shows who is signed in (or the sign-in form).
pub async fn open(browser: &Browser, base: &str, path: &str) {
    browser.goto(&format!("{base}{path}")).await;
    browser
        .wait_for(
            "the dashboard to load",
            "return document.querySelector('#who span') || document.querySelector('#key-signin');",
            json!([]),
        )
        .await;
}

/// Nothing from a hostile string became markup or ran: no `<img src=x>` anywhere, no
/// dialog opened.
pub async fn assert_inert(browser: &Browser) {
    let images = browser
        .eval("return document.querySelectorAll('img[src=\"x\"], img[onerror]').length;", json!([]))
        .await;
    assert_eq!(images, 0, "a hostile string became an element");
    assert!(!browser.dialog_open().await, "a hostile string opened a dialog");
}

/// `POST /start` through the API with `headers`; the new session's id.
pub async fn start_session(base: &str, headers: &[(&str, &str)], body: Value) -> String {
    let mut request = reqwest::Client::new().post(format!("{base}/start")).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.timeout(Duration::from_secs(30)).send().await.expect("POST /start");
    let status = response.status();
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "start failed: {answer}");
    answer["session_id"].as_str().expect("session_id").to_string()
}

/// A browser at a desktop size.
pub async fn desktop() -> Browser {
    Browser::launch(1280, 900).await
}
