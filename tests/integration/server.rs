//! The listener and the routes every deployment relies on: health, readiness, JSON errors
//! for unknown routes, the header-read timeout, and a bounded drain on shutdown.

use std::time::{Duration, Instant};

use agentapi_proxy::shutdown::Stage;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::server::TestServer;

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "every answer of the proxy itself is JSON"
    );
    (status, response.json().await.expect("json body"))
}

#[tokio::test]
async fn health_and_readiness_answer_without_authentication() {
    let server = TestServer::start(|config| config.auth.enabled = true).await;
    assert_eq!(get_json(&server.url("/health")).await, (200, json!({"status": "ok"})));
    assert_eq!(get_json(&server.url("/healthz")).await, (200, json!({"status": "ok"})));
    assert_eq!(get_json(&server.url("/readyz")).await, (200, json!({"status": "ready"})));
    server.stop(Duration::from_secs(10)).await.expect("clean stop");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_the_json_error_shape() {
    let server = TestServer::start(|_| {}).await;
    let (status, body) = get_json(&server.url("/no/such/route")).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let response =
        reqwest::Client::new().delete(server.url("/healthz")).send().await.expect("send");
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn a_client_sending_headers_slowly_is_cut_off_while_others_are_served() {
    let server = TestServer::start(|config| config.server.header_read_timeout_seconds = 1).await;
    let mut slow = TcpStream::connect(server.address).await.expect("connect");
    let head =
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: slowly-slowly-slowly\r\n\r\n";
    let started = Instant::now();
    let trickle = async {
        let mut pace = tokio::time::interval(Duration::from_millis(250));
        for byte in head {
            pace.tick().await;
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
        }
    };
    let normal = async {
        let (status, _) = get_json(&server.url("/healthz")).await;
        assert_eq!(status, 200, "a normal request is served meanwhile");
    };
    tokio::join!(trickle, normal);
    // The head would take ~20 s at this pace; the server must have given up after ~1 s.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the slow connection is closed by the server");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(8), "cut off after {elapsed:?}");
    let answered = String::from_utf8_lossy(&rest);
    assert!(!answered.contains("200 OK"), "the slow request was never served: {answered}");
}

#[tokio::test]
async fn readyz_answers_503_draining_once_shutdown_begins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shutdown = agentapi_proxy::shutdown::Shutdown::new();
    let state = agentapi_proxy::state::AppState::build(
        crate::support::server::test_config(dir.path()),
        shutdown.clone(),
        &Default::default(),
    )
    .await
    .expect("state");
    let router = agentapi_proxy::router::build(state);
    let ask = || {
        tower::ServiceExt::oneshot(
            router.clone(),
            http::Request::get("/readyz").body(axum::body::Body::empty()).expect("request"),
        )
    };
    assert_eq!(ask().await.expect("infallible").status(), 200);
    shutdown.advance_to(Stage::Draining);
    let response = ask().await.expect("infallible");
    assert_eq!(response.status(), 503);
    let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("body");
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body, json!({"message": "shutting down", "code": "draining"}));
}

/// The listener worker threads of this test process (nextest runs one test per process).
fn listener_workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("http-worker-"))
        })
        .count()
}

#[tokio::test]
async fn server_workers_sets_how_many_listener_threads_serve() {
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let wanted = cpus + 2;
    let server = TestServer::start(|config| config.server.workers = wanted as u64).await;
    let client = reqwest::Client::new();
    let health = client.get(server.url("/healthz")).send().await.expect("the server answers");
    assert_eq!(health.status(), 200);
    // A thread shows its name once it runs: wait for all of them, then for no more.
    let what = format!("{wanted} listener threads");
    crate::support::wait_until(&what, Duration::from_secs(20), || async {
        (listener_workers() == wanted).then_some(())
    })
    .await;
    assert_eq!(listener_workers(), wanted);
}

#[tokio::test]
async fn run_returns_within_the_drain_timeout_with_an_idle_connection_open() {
    // An idle connection that held the drain would keep `run` for the whole minute.
    let server = TestServer::start(|config| config.server.drain_timeout_seconds = 60).await;
    let client = reqwest::Client::new();
    client.get(server.url("/healthz")).send().await.expect("warm keep-alive connection");
    server.stop(Duration::from_secs(20)).await.expect("clean stop");
}

#[tokio::test]
async fn metrics_count_a_scripted_workload_and_need_permission_unless_public() {
    use agentapi_proxy::config::ApiKeyEntry;
    let server = TestServer::start(|config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        let entry = |key: &str, permissions: &[&str]| ApiKeyEntry {
            key: Some(key.into()),
            user_id: key.into(),
            role: "user".into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            ..ApiKeyEntry::default()
        };
        config.auth.static_keys.api_keys =
            vec![entry("ap_metrics_reader", &["metrics:read"]), entry("ap_worker", &["*"])];
    })
    .await;
    let client = reqwest::Client::new();
    let scrape = |key: &'static str| {
        let request = client.get(server.url("/metrics")).header("X-API-Key", key);
        async move {
            let response = request.send().await.expect("scrape");
            (response.status().as_u16(), response.text().await.expect("text"))
        }
    };
    assert_eq!(scrape("ap_worker").await.0, 200, "* includes metrics:read");
    let (code, _) = get_json(&server.url("/metrics")).await;
    assert_eq!(code, 401);

    let worker = |request: reqwest::RequestBuilder| request.header("X-API-Key", "ap_worker");
    let started: Value = worker(client.post(server.url("/start")))
        .json(&json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}}))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let id = started["session_id"].as_str().expect("id");
    for _ in 0..3 {
        let proxied =
            worker(client.get(server.url(&format!("/{id}/status")))).send().await.expect("proxied");
        assert_eq!(proxied.status(), 200);
    }
    let refused =
        client.get(server.url("/search")).header("X-API-Key", "nope").send().await.expect("send");
    assert_eq!(refused.status(), 401);
    for invented in ["FROBNICATE", "X-SCAN-1", "X-SCAN-2"] {
        let method = reqwest::Method::from_bytes(invented.as_bytes()).expect("method");
        worker(client.request(method, server.url("/healthz"))).send().await.expect("send");
    }
    worker(client.delete(server.url(&format!("/sessions/{id}")))).send().await.expect("delete");

    let (code, text) = scrape("ap_metrics_reader").await;
    assert_eq!(code, 200);
    let value = |needle: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with(needle))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(value("agentapi_proxy_proxied_requests_total") >= 3.0, "{text}");
    assert!(value("agentapi_proxy_proxied_bytes_total{direction=\"to_client\"}") > 100.0, "{text}");
    assert!(value("agentapi_proxy_session_starts_total{outcome=\"active\"}") >= 1.0, "{text}");
    assert!(value("agentapi_proxy_auth_failures_total") >= 2.0, "{text}");
    assert!(
        value(
            "agentapi_proxy_http_requests_total{route=\"/{id}/{*rest}\",method=\"GET\",status=\"200\"}"
        ) >= 3.0,
        "{text}"
    );
    assert!(text.contains("method=\"other\""), "invented methods share one label: {text}");
    assert!(!text.contains("FROBNICATE") && !text.contains("X-SCAN"), "{text}");
    assert!(text.contains("agentapi_proxy_sessions{state=\"active\"} 0"), "{text}");
    assert!(text.contains("agentapi_proxy_http_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_plain_incoming_one_is_kept() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let fresh = client.get(server.url("/healthz")).send().await.expect("send");
    let id = fresh.headers()["x-request-id"].to_str().expect("ascii").to_string();
    assert!(id.len() > 12 && id.contains('-'), "{id}");
    let kept = client
        .get(server.url("/nope"))
        .header("X-Request-Id", "trace-123")
        .send()
        .await
        .expect("send");
    assert_eq!(kept.headers()["x-request-id"], "trace-123");
    let replaced = client
        .get(server.url("/healthz"))
        .header("X-Request-Id", "bad id with spaces")
        .send()
        .await
        .expect("send");
    assert_ne!(replaced.headers()["x-request-id"], "bad id with spaces");
}

/// The API's own answers are gzipped for a client that asks; what agents send (proxied
/// answers, event streams) passes as they sent it.
#[tokio::test]
async fn api_answers_are_gzipped_on_request_and_agent_answers_never_are() {
    use std::io::Read;
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let plain = client.get(server.url("/openapi.json")).send().await.expect("plain");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.expect("body");
    let zipped = client
        .get(server.url("/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("gzipped");
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let zipped = zipped.bytes().await.expect("body");
    assert!(zipped.len() < plain.len() / 2, "{} vs {}", zipped.len(), plain.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut unzipped).expect("gunzip");
    assert_eq!(unzipped, plain);

    let (id, _) = crate::support::sessions::start_ok(
        &client,
        &server.base(),
        json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}}),
    )
    .await;
    for path in ["messages", "openapi.json"] {
        let proxied = client
            .get(server.url(&format!("/{id}/{path}")))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .expect("proxied");
        assert_eq!(proxied.status(), 200, "{path}");
        assert!(proxied.headers().get("content-encoding").is_none(), "{path} was compressed");
    }
    let mut events = client
        .get(server.url(&format!("/{id}/events")))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("events");
    assert!(events.headers().get("content-encoding").is_none());
    let first = events.chunk().await.expect("read").expect("a frame");
    assert!(first.starts_with(b"event: "), "{first:?}");
}
