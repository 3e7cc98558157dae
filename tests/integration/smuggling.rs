//! Request framing and header abuse over raw sockets: conflicting Content-Length and
//! Transfer-Encoding, duplicate Content-Length, oversized and too many headers. Each gets
//! an error answer and the connection is not reused for a smuggled request.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::server::TestServer;
use crate::support::sessions::start_ok;

/// Sends raw bytes and returns everything the server answers until it closes (or 5 s pass).
async fn exchange(server: &TestServer, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    stream.write_all(raw).await.expect("send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn statuses(answer: &str) -> Vec<&str> {
    answer.match_indices("HTTP/1.1 ").map(|(at, _)| &answer[at + 9..at + 12]).collect()
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_second_request() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (id, _) = start_ok(&client, &server.base(), serde_json::json!({})).await;
    // If the body were framed by Content-Length, "GET /search" would be a second request.
    let smuggled = format!(
        "POST /{id}/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /search HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    let answer = exchange(&server, smuggled.as_bytes()).await;
    let seen = statuses(&answer);
    assert!(!seen.is_empty(), "an answer: {answer}");
    assert!(!answer.contains("\"sessions\""), "the smuggled GET /search was served: {answer}");
    assert!(seen.len() <= 1 || seen[0] == "400", "{answer}");
}

#[tokio::test]
async fn duplicate_or_invalid_content_length_is_refused() {
    let server = TestServer::start(|_| {}).await;
    for raw in [
        "POST /start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
        "POST /start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -2\r\n\r\n{}",
        "POST /start HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
    ] {
        let answer = exchange(&server, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{raw:?}: {answer}");
    }
    let (_, search) =
        crate::support::sessions::get_json(&reqwest::Client::new(), &server.url("/search")).await;
    assert_eq!(search["total"], 0, "nothing was started");
}

#[tokio::test]
async fn oversized_and_too_many_headers_are_refused_and_the_server_keeps_serving() {
    let server = TestServer::start(|_| {}).await;
    let huge =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(128 * 1024));
    let answer = exchange(&server, huge.as_bytes()).await;
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 431")
            || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer =
        exchange(&server, format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes())
            .await;
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 431")
            || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert!(!answer.contains("\"ok\""), "not served: {answer}");
    let fine = reqwest::get(server.url("/healthz")).await.expect("healthz");
    assert_eq!(fine.status(), 200);
}
