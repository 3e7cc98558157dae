//! A small WebDriver client for the dashboard's browser tests: starts Debian's
//! `chromedriver` with a headless Chromium (fresh profile, no network of its own) and speaks
//! the W3C WebDriver protocol to it over loopback HTTP. Only the commands the tests use.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::wait_until;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C identifier of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// True when Chromium and its driver are installed. Otherwise fails under `CI=true` (where
/// `.ci/run` installs them) and says loudly why the test is skipped elsewhere.
pub fn available(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: Chromium is missing ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them"
    );
    eprintln!(
        "\n*** SKIPPED {test}: headless Chromium is not installed \
         (apt-get install -y chromium chromium-driver) ***\n"
    );
    false
}

/// One headless Chromium, driven through its own chromedriver.
pub struct Browser {
    http: reqwest::Client,
    endpoint: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser with a fresh profile, `width`×`height` pixels.
    pub async fn launch(width: u32, height: u32) -> Self {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so the browsers it starts end with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chromedriver");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let root = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver answers", Duration::from_secs(20), || {
            let http = http.clone();
            let url = format!("{root}/status");
            async move {
                let status: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                (status["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer: Value = http
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("new session answer");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {answer}"));
        let endpoint = format!("{root}/session/{session}");
        Self { http, endpoint, driver, _profile: profile }
    }

    /// One WebDriver command; returns its `value`, panics on a WebDriver error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body).await.unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self.http.request(method, format!("{}{path}", self.endpoint));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|error| error.to_string())?;
        let ok = response.status().is_success();
        let answer: Value = response.json().await.map_err(|error| error.to_string())?;
        if ok { Ok(answer["value"].clone()) } else { Err(answer["value"].to_string()) }
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page; its result.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `script` returns something other than null/false/"" and returns it.
    pub async fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        wait_until(what, Duration::from_secs(30), || {
            let args = args.clone();
            async move {
                let value = self
                    .try_command(
                        reqwest::Method::POST,
                        "/execute/sync",
                        Some(json!({"script": script, "args": args})),
                    )
                    .await
                    .ok()?;
                let empty = value.is_null() || value == false || value == "";
                (!empty).then_some(value)
            }
        })
        .await
    }

    /// Waits until an element matches `css`; its WebDriver reference.
    pub async fn find(&self, css: &str) -> String {
        let found = self
            .wait_for(
                &format!("an element {css}"),
                "return document.querySelector(arguments[0]);",
                json!([css]),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("element reference in {found}"))
            .to_string()
    }

    /// Clicks the element `css` once it is there and enabled.
    pub async fn click(&self, css: &str) {
        self.wait_for(
            &format!("{css} enabled"),
            "const e = document.querySelector(arguments[0]); return !!e && !e.disabled && e.offsetParent !== null;",
            json!([css]),
        )
        .await;
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({})))
            .await;
    }

    /// Types `text` into the element `css` (WebDriver key codes such as `\u{E009}` work).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Empties the field `css`.
    pub async fn clear(&self, css: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/clear"), Some(json!({})))
            .await;
    }

    /// The visible text of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        let value = self
            .eval(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                json!([css]),
            )
            .await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the element `css` shows text containing `needle`; its whole text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let value = self
            .wait_for(
                &format!("{css} to show {needle:?}"),
                "const e = document.querySelector(arguments[0]); \
                 return e && e.innerText.includes(arguments[1]) ? e.innerText : null;",
                json!([css, needle]),
            )
            .await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// True when the page opened a dialog (`alert`, `confirm`): hostile strings must not.
    pub async fn dialog_open(&self) -> bool {
        self.try_command(reqwest::Method::GET, "/alert/text", None).await.is_ok()
    }

    /// `prefers-color-scheme` as the page sees it (`light` or `dark`).
    pub async fn color_scheme(&self, scheme: &str) {
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": scheme}]}})),
        )
        .await;
    }

    /// Runs `source` in every document this window loads from now on, before the page's own
    /// scripts (Chromium's `Page.addScriptToEvaluateOnNewDocument`).
    pub async fn before_page_scripts(&self, source: &str) {
        self.command(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Page.addScriptToEvaluateOnNewDocument",
                "params": {"source": source}})),
        )
        .await;
    }

    /// Opens a new window, switches to it and returns its handle.
    pub async fn new_window(&self) -> String {
        let value = self
            .command(reqwest::Method::POST, "/window/new", Some(json!({"type": "window"})))
            .await;
        let handle = value["handle"].as_str().expect("window handle").to_string();
        self.switch_to(&handle).await;
        handle
    }

    /// The handle of the window commands go to.
    pub async fn window(&self) -> String {
        let value = self.command(reqwest::Method::GET, "/window", None).await;
        value.as_str().expect("window handle").to_string()
    }

    /// Sends the following commands to the window `handle`.
    pub async fn switch_to(&self, handle: &str) {
        self.command(reqwest::Method::POST, "/window", Some(json!({"handle": handle}))).await;
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let value = self.command(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64 screenshot"))
            .expect("PNG")
    }

    /// Ends the browser session and the driver.
    pub async fn quit(self) {
        let _ = self.try_command(reqwest::Method::DELETE, "", None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A loopback port nobody listens on right now, for chromedriver (which wants a number).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}
