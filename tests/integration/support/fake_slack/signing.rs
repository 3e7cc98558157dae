//! Signing Events API requests the way Slack does (`v0=` + hex HMAC-SHA256 of
//! `v0:{timestamp}:{body}` with the signing secret), for tests of the events route.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SIGNING_SECRET;

/// The `X-Slack-Signature` Slack sends with an Events API request.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers of an Events API request signed with [`SIGNING_SECRET`] at `timestamp`
/// (Unix seconds), as Slack sends them (`retry` sets `X-Slack-Retry-Num`).
pub fn signed_headers(body: &[u8], timestamp: i64, retry: Option<u32>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", http::HeaderValue::from_static("application/json"));
    let stamp = http::HeaderValue::from_str(&timestamp.to_string()).expect("digits");
    headers.insert("x-slack-request-timestamp", stamp);
    let signed = signature(SIGNING_SECRET, timestamp, body);
    headers.insert("x-slack-signature", http::HeaderValue::from_str(&signed).expect("hex"));
    if let Some(retry) = retry {
        let number = http::HeaderValue::from_str(&retry.to_string()).expect("digits");
        headers.insert("x-slack-retry-num", number);
        headers.insert("x-slack-retry-reason", http::HeaderValue::from_static("http_timeout"));
    }
    headers
}

/// Now, in Unix seconds (for [`signed_headers`]).
pub fn unix_now() -> i64 {
    agentapi_proxy::clock::now_ms() / 1000
}
