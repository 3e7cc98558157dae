//! What reaches the agent: the target exactly as sent, `Host` always the agent's, credentials
//! and untrusted forwarding headers gone, and what comes back: no agent CORS or cookies.

use agentapi_proxy::endpoint::{Endpoint, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{Harness, ID, Proxy, header_values, raw_exchange};
use crate::echo_agent::{DEADLINE, EchoAgent};

#[tokio::test]
async fn path_and_query_reach_the_agent_exactly_as_sent() {
    let harness = Harness::start(|_| {}).await;
    let address = harness.proxy.address;

    // The agent echoes the raw target it received.
    let request = format!(
        "GET /{ID}/debug/request?x=%2e&y=..%2F..%2Fetc%2Fpasswd&z=a+b HTTP/1.1\r\nHost: proxy.example\r\nConnection: close\r\n\r\n"
    );
    let (status, _, body) = raw_exchange(address, &request).await;
    assert_eq!(status, 200);
    let debug: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(debug["target"], "/debug/request?x=%2e&y=..%2F..%2Fetc%2Fpasswd&z=a+b");
    assert_eq!(debug["method"], "GET");

    // A traversal-looking path goes to this agent (its own 404 problem), not anywhere else.
    let request = format!(
        "GET /{ID}/debug/request/..%2F..%2Fetc/passwd?x=%2e HTTP/1.1\r\nHost: proxy.example\r\nConnection: close\r\n\r\n"
    );
    let (status, head, _) = raw_exchange(address, &request).await;
    assert_eq!(status, 404);
    assert!(head.to_ascii_lowercase().contains("application/problem+json"), "agent's 404: {head}");
}

/// A one-shot upstream that records the request head it receives and sends `answer`.
async fn capture_one(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.expect("read the head");
            head.push(byte[0]);
        }
        stream.write_all(answer.as_bytes()).await.expect("answer");
        String::from_utf8(head).expect("ASCII head")
    });
    (port, task)
}

#[tokio::test]
async fn dot_segments_encoded_slashes_and_double_slashes_are_not_normalised() {
    let (port, captured) =
        capture_one("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
    let proxy = Proxy::start(port, |_| {}).await;
    let target = "/..%2F..%2Fetc/passwd//x/%2e%2e/./y/?q=%2e&r=..%2F";
    let request =
        format!("GET /{ID}{target} HTTP/1.1\r\nHost: proxy.example\r\nConnection: close\r\n\r\n");
    let (status, _, _) = raw_exchange(proxy.address, &request).await;
    assert_eq!(status, 204);
    let head = tokio::time::timeout(DEADLINE, captured).await.expect("in time").expect("task");
    let request_line = head.lines().next().expect("request line");
    assert_eq!(request_line, format!("GET {target} HTTP/1.1"));
    assert!(head.contains(&format!("host: 127.0.0.1:{port}\r\n")), "{head}");
}

#[tokio::test]
async fn an_agent_reached_by_name_is_still_told_a_loopback_host() {
    let agent = EchoAgent::start(&[], &[]).await;
    let named = Endpoint::new(Host::Name("localhost".into()), agent.port);
    let proxy = Proxy::start_at(named, |_| {}).await;
    let request = format!(
        "GET /{ID}/debug/request HTTP/1.1\r\nHost: proxy.example\r\nConnection: close\r\n\r\n"
    );
    let (status, _, body) = raw_exchange(proxy.address, &request).await;
    assert_eq!(status, 200, "the agent accepted the host it saw");
    let debug: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let loopback = format!("127.0.0.1:{}", agent.port);
    assert_eq!(header_values(&debug, "host"), [loopback.as_str()]);
}

#[tokio::test]
async fn absolute_form_and_a_foreign_host_do_not_change_the_target() {
    let harness = Harness::start(|_| {}).await;
    let agent_host = format!("127.0.0.1:{}", harness.agent.port);
    for request in [
        format!(
            "GET http://evil.example/{ID}/debug/request HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "GET /{ID}/debug/request HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil2.example\r\nConnection: close\r\n\r\n"
        ),
    ] {
        let (status, _, body) = raw_exchange(harness.proxy.address, &request).await;
        assert_eq!(status, 200, "the agent accepted the host it saw");
        let debug: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(debug["target"], "/debug/request", "origin-form, no foreign authority");
        assert_eq!(header_values(&debug, "host"), [agent_host.as_str()]);
        assert_eq!(header_values(&debug, "x-forwarded-host"), ["evil.example"]);
    }
}

#[tokio::test]
async fn credentials_hop_by_hop_and_untrusted_forwarding_headers_are_dropped() {
    let harness = Harness::start(|_| {}).await;
    let request = format!(
        "GET /{ID}/debug/request HTTP/1.1\r\nHost: proxy.example:8080\r\nX-API-Key: secret-key\r\nAuthorization: Bearer secret-token\r\nCookie: session=secret\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nForwarded: for=6.6.6.6\r\nX-Hop: gone\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nAccept: application/json\r\nConnection: close, X-Hop\r\n\r\n"
    );
    let (status, _, body) = raw_exchange(harness.proxy.address, &request).await;
    assert_eq!(status, 200);
    let debug: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let text = debug.to_string();
    for secret in ["secret-key", "secret-token", "session=secret", "6.6.6.6", "gone"] {
        assert!(!text.contains(secret), "{secret:?} reached the agent: {text}");
    }
    for name in [
        "x-api-key",
        "authorization",
        "cookie",
        "forwarded",
        "x-forwarded-port",
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
    ] {
        assert!(header_values(&debug, name).is_empty(), "{name} reached the agent: {text}");
    }
    assert_eq!(header_values(&debug, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_values(&debug, "x-forwarded-proto"), ["http"]);
    assert_eq!(header_values(&debug, "x-forwarded-host"), ["proxy.example:8080"]);
    assert_eq!(header_values(&debug, "accept"), ["application/json"]);
    assert!(header_values(&debug, "connection").iter().all(|v| !v.contains("X-Hop")));
}

#[tokio::test]
async fn trusted_peers_keep_their_forwarding_headers_and_the_peer_is_appended() {
    let harness = Harness::start(|config| {
        config.proxy.trusted_proxies = vec!["127.0.0.0/8".into()];
        config.proxy.strip_credentials = false;
    })
    .await;
    let response = harness
        .proxy
        .client
        .get(harness.proxy.url("/debug/request"))
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "public.example")
        .header("Authorization", "Bearer kept")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let debug: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(header_values(&debug, "x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(header_values(&debug, "x-forwarded-proto"), ["https"]);
    assert_eq!(header_values(&debug, "x-forwarded-host"), ["public.example"]);
    assert_eq!(header_values(&debug, "authorization"), ["Bearer kept"], "strip_credentials off");
}

#[tokio::test]
async fn agent_cors_headers_are_dropped() {
    let harness = Harness::start(|_| {}).await;
    let origin = "http://localhost:3000";
    // The agent itself allows this origin...
    let direct = harness
        .agent
        .client
        .get(harness.agent.url("/status"))
        .header("Origin", origin)
        .send()
        .await
        .expect("direct answer");
    assert_eq!(
        direct.headers().get("access-control-allow-origin").map(|v| v.as_bytes()),
        Some(origin.as_bytes())
    );
    // ... but through the proxy (CORS off) no agent CORS header survives.
    let proxied = harness
        .proxy
        .client
        .get(harness.proxy.url("/status"))
        .header("Origin", origin)
        .send()
        .await
        .expect("proxied answer");
    assert_eq!(proxied.status(), 200);
    let leaked: Vec<_> = proxied
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(leaked.is_empty(), "agent CORS headers leaked: {leaked:?}");
}

#[tokio::test]
async fn agent_cookies_cors_and_hop_by_hop_response_headers_are_dropped() {
    let (port, captured) = capture_one(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: agent=1\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Credentials: true\r\nConnection: close, X-Agent-Hop\r\nX-Agent-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\nok",
    )
    .await;
    let proxy = Proxy::start(port, |_| {}).await;
    let response = proxy.get("/anything").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    for name in [
        "set-cookie",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "x-agent-hop",
        "keep-alive",
    ] {
        assert!(headers.get(name).is_none(), "{name} passed through: {headers:?}");
    }
    assert_eq!(headers.get("x-kept").map(|v| v.as_bytes()), Some(&b"yes"[..]));
    assert_eq!(response.text().await.expect("body"), "ok");
    let head = tokio::time::timeout(DEADLINE, captured).await.expect("in time").expect("task");
    assert!(head.starts_with("GET /anything HTTP/1.1\r\n"), "{head}");
}
