//! No polling: an open Sessions page and an open Session page, left idle for a minute of the
//! pages' own time, ask the server for nothing but their event streams.
//!
//! A real minute would make this the slowest test by far, so the pages' timers run ten times
//! faster: a script that runs before the page's own replaces `setTimeout`/`setInterval` with
//! versions that divide every delay by ten and count the ticks of each delay. Six and a half
//! seconds then hold 65 s of timers, and the Sessions page's own 30 s clock ticking twice
//! proves that a page minute went by. Requests are counted by the server, in its debug
//! request log (one line per answered request, with its path), so any polling loop,
//! whatever starts it, shows up as a path that is not a stream.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{desktop, open, webdriver};
use crate::support::server::BinaryServer;

/// How much faster than real time the pages' timers run.
const SPEEDUP: u32 = 10;
/// A minute and a bit of the pages' time.
const IDLE: Duration = Duration::from_millis(65_000 / SPEEDUP as u64);

/// Runs before any of the page's scripts: timers `SPEEDUP` times faster, ticks counted per
/// requested delay in `window.timerTicks`.
fn fast_timers() -> String {
    format!(
        r#"(() => {{
        const speedup = {SPEEDUP};
        const ticks = window.timerTicks = {{}};
        const wrap = (real) => (callback, delay = 0, ...rest) => {{
            const counted = typeof callback === 'function'
                ? (...args) => {{ ticks[delay] = (ticks[delay] || 0) + 1; return callback(...args); }}
                : callback;
            return real(counted, Number(delay) / speedup, ...rest);
        }};
        window.setTimeout = wrap(window.setTimeout.bind(window));
        window.setInterval = wrap(window.setInterval.bind(window));
    }})();"#
    )
}

/// The paths of the requests the server answered, in order, from its debug request log.
fn answered_paths(server: &BinaryServer) -> Vec<String> {
    let logs = server.logs.lock().expect("logs");
    logs.iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["message"] == "request")
        .filter_map(|entry| {
            let path = entry.get("path").or_else(|| entry.pointer("/fields/path"))?;
            Some(path.as_str()?.to_string())
        })
        .collect()
}

/// Waits until the server's request log has not grown for a while: the pages are loaded.
async fn settled(server: &BinaryServer) -> usize {
    let quiet = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = answered_paths(server).len();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = answered_paths(server).len();
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "the pages kept making requests: {:?}",
            answered_paths(server)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_pages_make_no_requests_but_their_streams() {
    if !webdriver::available("idle_pages_make_no_requests_but_their_streams") {
        return;
    }
    let server =
        BinaryServer::start_with_env(|_| {}, &[("RUST_LOG", "info,agentapi_proxy::observe=debug")])
            .await;
    let base = format!("http://{}", server.address);
    let id = super::start_session(&base, &[], json!({"tags": {"idle": "yes"}})).await;

    let browser = desktop().await;
    let list_window = browser.window().await;
    browser.before_page_scripts(&fast_timers()).await;
    open(&browser, &base, "/ui/").await;
    browser.wait_text(&format!("li[data-session-id='{id}'] .badge"), "active").await;

    browser.new_window().await;
    browser.before_page_scripts(&fast_timers()).await;
    open(&browser, &base, &format!("/ui/sessions/{id}")).await;
    browser
        .wait_for(
            "the composer to be ready",
            "return !document.querySelector('#composer-send').disabled;",
            json!([]),
        )
        .await;

    let before = settled(&server).await;
    let loaded = answered_paths(&server);
    let events = format!("/{id}/events");
    for stream in ["/sessions/events", events.as_str()] {
        assert!(loaded.iter().any(|path| path == stream), "{stream} was never opened: {loaded:?}");
    }
    let started = Instant::now();
    tokio::time::sleep(IDLE).await;
    let idle_for = started.elapsed();

    let during: Vec<String> = answered_paths(&server).split_off(before);
    let not_streams: Vec<&String> =
        during.iter().filter(|path| *path != "/sessions/events" && **path != events).collect();
    assert!(
        not_streams.is_empty(),
        "idle pages asked for {not_streams:?} in {idle_for:?} ({SPEEDUP}× timers); all: {during:?}"
    );
    assert!(during.len() <= 2, "the streams reconnected over and over: {during:?}");

    // A page minute went by: the Sessions page's 30 s clock ticked at least twice; and
    // neither page says it lost its streams.
    browser.switch_to(&list_window).await;
    let ticks = browser.eval("return window.timerTicks['30000'] || 0;", json!([])).await;
    assert!(ticks.as_u64() >= Some(2), "the 30 s clock ticked {ticks} times");
    assert_eq!(
        browser.eval("return document.querySelector('#conn').hidden;", json!([])).await,
        true
    );
    browser.quit().await;
}
