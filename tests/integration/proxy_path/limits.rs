//! Sizes, times and origins: big bodies stream both ways with flat memory, bodies over
//! `max_body_bytes` get 413, silent agents 504, and CORS is the proxy's alone.

use std::time::{Duration, Instant};

use super::{Counts, Harness, error_code, resident_bytes};

const MIB: usize = 1024 * 1024;

/// A `multipart/form-data` body with one `file` field of `size` bytes.
fn multipart(size: usize) -> (String, Vec<u8>) {
    let boundary = "----proxy-path-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::iter::repeat_n(b'z', size));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn big_bodies_stream_both_ways_with_flat_memory() {
    let harness = Harness::start(|_| {}).await;
    let proxy = &harness.proxy;

    let (content_type, body) = multipart(MIB);
    let upload = proxy
        .client
        .post(proxy.url("/upload"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload answers");
    assert_eq!(upload.status(), 200);
    let answer: serde_json::Value = upload.json().await.expect("JSON");
    assert_eq!(answer["ok"], true);

    let kib = 51_200;
    let sent = proxy.post_message(&format!("/fake big {kib}"), "user").await;
    assert_eq!(sent.status(), 200);
    proxy.wait_stable().await;

    let before = resident_bytes();
    let mut response = proxy.get("/messages").await;
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    let mut peak = before;
    let started = Instant::now();
    while let Some(chunk) = response.chunk().await.expect("the body streams to its end") {
        received += chunk.len();
        if received % (4 * MIB) < chunk.len() {
            peak = peak.max(resident_bytes());
        }
    }
    let after = resident_bytes();
    peak = peak.max(after);
    assert!(received >= kib * 1024, "the whole reply arrived: {received} bytes");
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 20 * MIB as u64,
        "memory grew by {} MiB while streaming 50 MiB (took {:?})",
        growth / MIB as u64,
        started.elapsed()
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let limit = 64 * 1024;
    let harness = Harness::start(|config| config.proxy.max_body_bytes = limit as u64).await;
    let proxy = &harness.proxy;
    let message = |size: usize| {
        serde_json::to_vec(&serde_json::json!({"content": "a".repeat(size), "type": "raw"}))
            .expect("JSON")
    };

    // Declared too big: refused before anything is read or sent on.
    let declared = proxy
        .client
        .post(proxy.url("/message"))
        .header("content-type", "application/json")
        .body(message(100 * 1024))
        .send()
        .await
        .expect("answer");
    assert_eq!(declared.status(), 413);
    assert_eq!(error_code(declared).await, "payload_too_large");

    // Streamed without a length: cut off once it passes the limit.
    let body = message(200 * 1024);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(8 * 1024).map(|chunk| Ok(chunk.to_vec())).collect();
    let streamed = proxy
        .client
        .post(proxy.url("/message"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("answer");
    assert_eq!(streamed.status(), 413);
    assert_eq!(error_code(streamed).await, "payload_too_large");

    // Under the limit, declared or streamed, the agent gets it.
    let small = message(limit / 2);
    let fits = proxy
        .client
        .post(proxy.url("/message"))
        .header("content-type", "application/json")
        .body(small.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(fits.status(), 200, "{:?}", fits.text().await);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        small.chunks(8 * 1024).map(|chunk| Ok(chunk.to_vec())).collect();
    let fits_streamed = proxy
        .client
        .post(proxy.url("/message"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("answer");
    assert_eq!(fits_streamed.status(), 200);
    assert_eq!(Counts::get(&proxy.activity.refused), 0, "the agent was never blamed");
}

#[tokio::test]
async fn no_response_headers_in_time_is_504() {
    let harness = Harness::start(|config| config.proxy.header_timeout_seconds = 1).await;
    let proxy = &harness.proxy;
    proxy.wait_stable().await;
    let started = Instant::now();
    let response = proxy.post_message("/fake sleep 3000", "user").await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 504);
    assert_eq!(error_code(response).await, "agent_timeout");
    assert!(waited < Duration::from_millis(2900), "answered at the timeout, not after: {waited:?}");
}

#[tokio::test]
async fn cors_is_answered_by_the_proxy_per_allowed_origins() {
    let harness = Harness::start(|config| {
        config.cors.allowed_origins = vec!["http://app.example".into()];
    })
    .await;
    let proxy = &harness.proxy;
    let preflight = |origin: &'static str| {
        proxy
            .client
            .request(reqwest::Method::OPTIONS, proxy.url("/message"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type, x-api-key")
            .send()
    };
    let allowed = preflight("http://app.example").await.expect("answer");
    assert_eq!(allowed.status(), 204);
    let header = |response: &reqwest::Response, name: &str| {
        response.headers().get(name).map(|v| v.to_str().expect("ASCII").to_string())
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("http://app.example")
    );
    assert_eq!(header(&allowed, "access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(
        header(&allowed, "access-control-allow-headers").as_deref(),
        Some("content-type, x-api-key")
    );
    let refused = preflight("http://evil.example").await.expect("answer");
    assert_eq!(refused.status(), 403);
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    assert_eq!(error_code(refused).await, "forbidden");
    assert_eq!(Counts::get(&proxy.activity.requests), 0, "preflights never reach the agent");

    let get = |origin: &'static str| {
        proxy.client.get(proxy.url("/status")).header("Origin", origin).send()
    };
    let listed = get("http://app.example").await.expect("answer");
    assert_eq!(listed.status(), 200);
    let values: Vec<_> = listed.headers().get_all("access-control-allow-origin").iter().collect();
    assert_eq!(values, ["http://app.example"]);
    // The agent would allow this one itself; the proxy does not.
    let unlisted = get("http://localhost:3000").await.expect("answer");
    assert_eq!(unlisted.status(), 200);
    assert_eq!(header(&unlisted, "access-control-allow-origin"), None);
    assert!(header(&unlisted, "vary").is_some_and(|v| v.contains("Origin")));
}
