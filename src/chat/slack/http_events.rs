//! The Events API, without a web framework: the bridge's route hands us the raw request and
//! sends back the [`HttpAnswer`]. The signature `v0=hex(HMAC-SHA256(signing_secret,
//! "v0:{timestamp}:{body}"))` is checked in constant time, timestamps more than
//! [`MAX_TIMESTAMP_SKEW_SECS`] from now are refused, `url_verification` is answered with its
//! challenge, and an event is stored in the inbox before the 200 (an inbox error gives 500,
//! so Slack retries).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{SlackPlatform, events};
use crate::chat::platform::Inbox;

/// The largest Events API body the route should accept (1 MiB); larger → 413 from the route.
pub const MAX_EVENT_BODY_BYTES: usize = 1024 * 1024;

/// How far a request's `X-Slack-Request-Timestamp` may be from now (replay protection).
pub const MAX_TIMESTAMP_SKEW_SECS: i64 = 300;

/// What the route answers Slack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    /// Sent as JSON.
    pub body: Value,
}

impl HttpAnswer {
    fn refuse(status: u16, code: &str, message: &str) -> Self {
        Self { status, body: json!({"code": code, "message": message}) }
    }
}

impl SlackPlatform {
    /// Checks and handles one Events API request (`POST /chat/slack/events`).
    pub async fn receive_http(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        inbox: &dyn Inbox,
    ) -> HttpAnswer {
        let Some(secret) = &self.settings.signing_secret else {
            return HttpAnswer::refuse(404, "not_found", "the Slack Events API is not enabled");
        };
        let now_secs = (self.settings.clock)().div_euclid(1000);
        if let Err(why) = verify(headers, body, secret.expose().as_bytes(), now_secs) {
            tracing::warn!(why, "refused a Slack Events API request");
            return HttpAnswer::refuse(401, "unauthorized", why);
        }
        let Ok(payload) = serde_json::from_slice::<Value>(body) else {
            return HttpAnswer::refuse(400, "invalid_body", "the body is not JSON");
        };
        match payload["type"].as_str() {
            Some("url_verification") => {
                let challenge = payload["challenge"].as_str().unwrap_or_default();
                HttpAnswer { status: 200, body: json!({"challenge": challenge}) }
            }
            Some("event_callback") => {
                let Some(message) = events::incoming(&payload, &self.identity) else {
                    return HttpAnswer { status: 200, body: json!({}) };
                };
                match inbox.store(message).await {
                    Ok(_) => HttpAnswer { status: 200, body: json!({}) },
                    Err(error) => {
                        tracing::error!(error = %error, "could not store a Slack event");
                        HttpAnswer::refuse(500, "internal", "the event could not be stored")
                    }
                }
            }
            _ => HttpAnswer { status: 200, body: json!({}) },
        }
    }
}

/// `Ok` when the request is signed with `secret` at a time close to `now_secs`.
fn verify(
    headers: &http::HeaderMap,
    body: &[u8],
    secret: &[u8],
    now_secs: i64,
) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let timestamp = header("x-slack-request-timestamp").ok_or("no X-Slack-Request-Timestamp")?;
    let signature = header("x-slack-signature").ok_or("no X-Slack-Signature")?;
    let seconds: i64 = timestamp.trim().parse().map_err(|_| "a malformed timestamp")?;
    if now_secs.abs_diff(seconds) > MAX_TIMESTAMP_SKEW_SECS.unsigned_abs() {
        return Err("a timestamp too far from now");
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(|hex_digits| hex::decode(hex_digits).ok())
        .ok_or("a malformed signature")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "an unusable secret")?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if bool::from(expected.as_slice().ct_eq(&given)) { Ok(()) } else { Err("a wrong signature") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &[u8], timestamp: &str, body: &[u8]) -> http::HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any length");
        mac.update(format!("v0:{timestamp}:").as_bytes());
        mac.update(body);
        let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-slack-request-timestamp", timestamp.parse().expect("header"));
        headers.insert("x-slack-signature", signature.parse().expect("header"));
        headers
    }

    #[test]
    fn a_good_signature_within_five_minutes_passes() {
        let headers = signed(b"secret", "1000000", b"{}");
        assert_eq!(verify(&headers, b"{}", b"secret", 1_000_000 + 300), Ok(()));
        assert_eq!(verify(&headers, b"{}", b"secret", 1_000_000 - 300), Ok(()));
    }

    #[test]
    fn stale_tampered_or_missing_signatures_fail() {
        let headers = signed(b"secret", "1000000", b"{}");
        assert!(verify(&headers, b"{}", b"secret", 1_000_000 + 301).is_err());
        assert!(verify(&headers, b"{ }", b"secret", 1_000_000).is_err());
        assert!(verify(&headers, b"{}", b"other", 1_000_000).is_err());
        let mut truncated = headers.clone();
        truncated.insert("x-slack-signature", "v0=abcd".parse().expect("header"));
        assert!(verify(&truncated, b"{}", b"secret", 1_000_000).is_err());
        let mut missing = headers.clone();
        missing.remove("x-slack-request-timestamp");
        assert!(verify(&missing, b"{}", b"secret", 1_000_000).is_err());
        assert!(verify(&http::HeaderMap::new(), b"{}", b"secret", 1_000_000).is_err());
    }
}
