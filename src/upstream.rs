//! The one pooled HTTP/1.1 client to agents, shared by readiness polls, status refreshes,
//! initial prompts and the proxy. Agents are always addressed as `127.0.0.1:<port>` with that
//! `Host` header (agentapi refuses other hosts).

use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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

/// Sends a small request to an agent and collects its (small) answer within `timeout`.
pub async fn exchange(
    client: &UpstreamClient,
    port: u16,
    method: Method,
    path: &str,
    json_body: Option<&serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let authority = format!("127.0.0.1:{port}");
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{authority}{path}"))
        .header(header::HOST, &authority);
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
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("while reading the agent's answer")?
            .to_bytes();
        Ok::<_, anyhow::Error>((status, bytes))
    };
    tokio::time::timeout(timeout, work).await.context("the agent did not answer in time")?
}

/// `GET /status` of an agent: `Some("running" | "stable")` when it answers like agentapi.
pub async fn agent_status(client: &UpstreamClient, port: u16, timeout: Duration) -> Option<String> {
    let (status, body) =
        exchange(client, port, Method::GET, "/status", None, timeout).await.ok()?;
    if !status.is_success() {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
    match value.get("status")?.as_str()? {
        state @ ("running" | "stable") => Some(state.to_string()),
        _ => None,
    }
}
