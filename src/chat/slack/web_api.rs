//! The Slack Web API over reqwest: one call = `POST {base}/{method}` with
//! `Authorization: Bearer`, form arguments (read methods) or a JSON body (write methods).
//! Slack refuses with HTTP 200 and `{"ok": false, "error": code}` → [`PlatformError::Refused`];
//! 429 is retried after `Retry-After`, 5xx and connection errors with capped exponential
//! backoff and jitter, at most [`RetryPolicy::attempts`] tries. Also file downloads with the
//! bot token, capped in size. No token ever appears in an error.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::{RetryPolicy, SlackSettings, SlackToken};
use crate::chat::platform::PlatformError;

#[derive(Debug, Clone)]
pub(super) struct WebApi {
    http: reqwest::Client,
    base: url::Url,
    retry: RetryPolicy,
}

impl WebApi {
    pub(super) fn new(settings: &SlackSettings) -> Result<Self, PlatformError> {
        let http = reqwest::Client::builder()
            .timeout(settings.retry.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| PlatformError::Unavailable(format!("no HTTP client: {error}")))?;
        Ok(Self { http, base: settings.api_base_url.clone(), retry: settings.retry })
    }

    fn method_url(&self, method: &str) -> String {
        format!("{}/{method}", self.base.as_str().trim_end_matches('/'))
    }

    /// A method whose arguments go form-encoded (the read methods only take these).
    pub(super) async fn call_form(
        &self,
        method: &str,
        token: &SlackToken,
        args: &[(&str, &str)],
    ) -> Result<Value, PlatformError> {
        let url = self.method_url(method);
        let build = || self.http.post(&url).bearer_auth(token.expose()).form(args);
        self.call(method, build).await
    }

    /// A write method with a JSON body.
    pub(super) async fn call_json(
        &self,
        method: &str,
        token: &SlackToken,
        body: &Value,
    ) -> Result<Value, PlatformError> {
        let url = self.method_url(method);
        let build = || self.http.post(&url).bearer_auth(token.expose()).json(body);
        self.call(method, build).await
    }

    async fn call(
        &self,
        method: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Value, PlatformError> {
        let response = self.send_with_retries(method, build).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(PlatformError::Unavailable(format!("{method}: HTTP {status}")));
        }
        let answer: Value = response
            .json()
            .await
            .map_err(|_| PlatformError::Unavailable(format!("{method}: the answer is not JSON")))?;
        if answer["ok"].as_bool() == Some(true) {
            return Ok(answer);
        }
        Err(PlatformError::Refused(error_code(&answer["error"])))
    }

    /// Sends until the answer is neither 429 nor 5xx (nor a connection error), within the
    /// retry policy; returns that answer, whatever its status.
    async fn send_with_retries(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, PlatformError> {
        let policy = &self.retry;
        let mut backoff = policy.initial_backoff;
        let mut attempt = 1;
        loop {
            let last = attempt >= policy.attempts.max(1);
            let wait = match build().send().await {
                Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after(&response).unwrap_or(Duration::from_secs(1));
                    if last || wait > policy.max_retry_after {
                        let why = format!("{what}: rate limited (Retry-After {}s)", wait.as_secs());
                        return Err(PlatformError::Unavailable(why));
                    }
                    tracing::debug!(method = what, wait_s = wait.as_secs(), "slack rate limit");
                    wait
                }
                Ok(response) if response.status().is_server_error() => {
                    if last {
                        let why =
                            format!("{what}: HTTP {} after {attempt} tries", response.status());
                        return Err(PlatformError::Unavailable(why));
                    }
                    jittered(backoff)
                }
                Ok(response) => return Ok(response),
                Err(error) => {
                    if last {
                        let why = format!("{what}: {} after {attempt} tries", describe(&error));
                        return Err(PlatformError::Unavailable(why));
                    }
                    jittered(backoff)
                }
            };
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(policy.max_backoff);
            attempt += 1;
        }
    }

    /// GETs a file with the bot token; refuses (without reading it all) one larger than
    /// `max_bytes`, and a URL that is not on Slack's own hosts (the token goes only there).
    pub(super) async fn download(
        &self,
        file_url: &str,
        token: &SlackToken,
        max_bytes: u64,
    ) -> Result<Bytes, PlatformError> {
        let url = url::Url::parse(file_url)
            .map_err(|_| PlatformError::Refused("file_url_invalid".into()))?;
        if !is_slack_file_host(&self.base, &url) {
            return Err(PlatformError::Refused("file_url_not_on_slack".into()));
        }
        let build = || self.http.get(url.clone()).bearer_auth(token.expose());
        let mut response = self.send_with_retries("file download", build).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(PlatformError::Refused(format!("file_download_http_{}", status.as_u16())));
        }
        if response.content_length().is_some_and(|length| length > max_bytes) {
            return Err(PlatformError::Refused("file_too_large".into()));
        }
        let mut bytes = BytesMut::new();
        loop {
            let chunk = response.chunk().await.map_err(|error| {
                PlatformError::Unavailable(format!("file download: {}", describe(&error)))
            })?;
            let Some(chunk) = chunk else { break };
            if bytes.len() as u64 + chunk.len() as u64 > max_bytes {
                return Err(PlatformError::Refused("file_too_large".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.freeze())
    }
}

/// Slack's error code, if it looks like one (it goes into logs and replies).
fn error_code(error: &Value) -> String {
    match error.as_str() {
        Some(code)
            if !code.is_empty()
                && code.len() <= 64
                && code.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_') =>
        {
            code.to_string()
        }
        _ => "unknown_error".into(),
    }
}

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Half of `delay` plus a random part of the other half.
pub(super) fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    let mut random = [0u8; 4];
    let fraction = match getrandom::fill(&mut random) {
        Ok(()) => f64::from(u32::from_le_bytes(random)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    half + half.mul_f64(fraction)
}

/// A reqwest error without its URL (which is harmless but noisy).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "could not connect".into()
    } else {
        "the connection failed".into()
    }
}

/// The file's host is the API's host (same origin), or a subdomain of it over HTTPS
/// (`files.slack.com` for `slack.com`).
fn is_slack_file_host(api: &url::Url, file: &url::Url) -> bool {
    let (Some(api_host), Some(file_host)) = (api.host_str(), file.host_str()) else {
        return false;
    };
    if api.origin() == file.origin() {
        return true;
    }
    file.scheme() == "https" && file_host.ends_with(&format!(".{api_host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_fetched_only_from_slack_hosts() {
        let api = url::Url::parse("https://slack.com/api").expect("url");
        let allowed = |file: &str| is_slack_file_host(&api, &url::Url::parse(file).expect("url"));
        assert!(allowed("https://files.slack.com/files-pri/T1-F1/download/a.txt"));
        assert!(allowed("https://slack.com/files/a"));
        assert!(!allowed("http://files.slack.com/files-pri/a"));
        assert!(!allowed("https://evilslack.com/a"));
        assert!(!allowed("https://slack.com.evil.example/a"));
        let local = url::Url::parse("http://127.0.0.1:4000/api").expect("url");
        let file = url::Url::parse("http://127.0.0.1:4001/files/a").expect("url");
        assert!(!is_slack_file_host(&local, &file));
    }

    #[test]
    fn only_plain_error_codes_pass_through() {
        assert_eq!(error_code(&Value::from("channel_not_found")), "channel_not_found");
        assert_eq!(error_code(&Value::from("bad code <script>")), "unknown_error");
        assert_eq!(error_code(&Value::Null), "unknown_error");
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_delay() {
        for _ in 0..100 {
            let delay = jittered(Duration::from_millis(800));
            assert!(delay >= Duration::from_millis(400) && delay <= Duration::from_millis(800));
        }
    }
}
