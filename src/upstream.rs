//! The pooled HTTP/1.1 client for the server's own calls to agents: readiness polls, status
//! refreshes and initial prompts (the proxy path keeps its own connections, `proxy::pool`).
//! Each call connects to the agent's [`Endpoint`] and names it with the endpoint's loopback
//! `Host` header (agentapi refuses other hosts, wherever it runs). These calls read at most [`MAX_ANSWER_BYTES`] of an answer (security.md
//! rule 17): an agent is not trusted to answer small.

use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::endpoint::Endpoint;

/// The most the server reads of an agent's answer to one of its own calls; a larger answer
/// is a failed call.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Pooled keep-alive client to agent ports.
pub type UpstreamClient = Client<HttpConnector, Body>;

/// Builds the client: no proxies, TCP_NODELAY, bounded connect time.
pub fn client(connect_timeout: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(connector)
}

/// Sends a small request to an agent and collects its answer within `timeout`; an answer
/// over [`MAX_ANSWER_BYTES`] (declared or sent) fails without being read further.
pub async fn exchange(
    client: &UpstreamClient,
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    json_body: Option<&serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{endpoint}{path}"))
        .header(header::HOST, endpoint.host_header());
    let body = match json_body {
        Some(value) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(value).context("while encoding a request body")?)
        }
        None => Body::empty(),
    };
    let request = builder.body(body).context("while building a request to an agent")?;
    let work = async {
        let response = client.request(request).await.context("while calling the agent")?;
        let status = response.status();
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > MAX_ANSWER_BYTES as u64) {
            anyhow::bail!("the agent's answer is over {MAX_ANSWER_BYTES} bytes");
        }
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("while reading the agent's answer: {error}"))?
            .to_bytes();
        Ok::<_, anyhow::Error>((status, bytes))
    };
    tokio::time::timeout(timeout, work).await.context("the agent did not answer in time")?
}

/// `GET /status` of an agent: `Some("running" | "stable")` when it answers like agentapi.
pub async fn agent_status(
    client: &UpstreamClient,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Option<String> {
    let (status, body) =
        exchange(client, endpoint, Method::GET, "/status", None, timeout).await.ok()?;
    if !status.is_success() {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
    match value.get("status")?.as_str()? {
        state @ ("running" | "stable") => Some(state.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::endpoint::Host;

    /// A stand-in agent that answers every request with `head` and then `body_bytes` zeros
    /// (or without end when `None`), as fast as it can.
    async fn agent(head: &'static str, body_bytes: Option<usize>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![0u8; 64 * 1024];
                    let mut left = body_bytes.unwrap_or(usize::MAX);
                    while left > 0 {
                        let size = left.min(chunk.len());
                        if stream.write_all(&chunk[..size]).await.is_err() {
                            return;
                        }
                        left -= size;
                    }
                });
            }
        });
        port
    }

    async fn get_status(port: u16) -> anyhow::Result<(StatusCode, Bytes)> {
        let client = client(Duration::from_secs(1));
        let endpoint = Endpoint::new(Host::Ip(std::net::Ipv4Addr::LOCALHOST.into()), port);
        exchange(&client, &endpoint, Method::GET, "/status", None, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn a_named_endpoint_is_reached_by_name_and_told_a_loopback_host() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (heads, mut seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let heads = heads.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let read = stream.read(&mut request).await.unwrap_or(0);
                    let _ = heads.send(String::from_utf8_lossy(&request[..read]).to_lowercase());
                    let answer =
                        "HTTP/1.1 200 OK\r\ncontent-length: 19\r\n\r\n{\"status\":\"stable\"}";
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        let endpoint = Endpoint::new(Host::Name("localhost".into()), port);
        let client = client(Duration::from_secs(1));
        let status = agent_status(&client, &endpoint, Duration::from_secs(5)).await;
        assert_eq!(status.as_deref(), Some("stable"));
        let head = seen.recv().await.expect("a request");
        assert!(head.starts_with("get /status http/1.1\r\n"), "origin-form: {head}");
        assert!(head.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn an_endless_answer_fails_after_the_limit_without_waiting_for_the_timeout() {
        let port = agent("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", None).await;
        let error = get_status(port).await.expect_err("over the limit");
        // The limit's error, not the timeout's ("did not answer in time").
        assert!(format!("{error:#}").contains("length limit"), "{error:#}");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 4294967296\r\n\r\n";
        let port = agent(head, Some(16)).await;
        let error = get_status(port).await.expect_err("declared too large");
        assert!(format!("{error:#}").contains("over 1048576 bytes"), "{error:#}");
    }

    #[tokio::test]
    async fn an_answer_at_the_limit_is_read_whole() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n";
        let port = agent(head, Some(MAX_ANSWER_BYTES)).await;
        let (status, body) = get_status(port).await.expect("at the limit");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), MAX_ANSWER_BYTES);
    }
}
