//! The proxy path (`proxy::forward`) against the real echo agent, over loopback: a tiny axum
//! server whose fallback splits `/{id}/rest` and forwards to one agent's port, without the
//! session manager and authentication that `routes::proxy` puts in front of it. This file holds the harness; the tests are in `rewrite` (targets and
//! headers), `streams` (SSE, disconnects, drain, upgrades, failures) and `limits` (bodies,
//! memory, timeouts, CORS).

mod limits;
mod rewrite;
mod streams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentapi_proxy::config::Config;
use agentapi_proxy::endpoint::{Endpoint, Host};
use agentapi_proxy::proxy::{self, Activity, ProxySettings};
use agentapi_proxy::shutdown::Shutdown;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::echo_agent::{self, DEADLINE, EchoAgent};

/// The session id every test URL uses; the harness only forwards this one.
pub const ID: &str = "11111111-1111-4111-8111-111111111111";

/// Counts every [`Activity`] hook call.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicUsize,
    pub opened: AtomicUsize,
    pub closed: AtomicUsize,
    pub refused: AtomicUsize,
}

impl Counts {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

impl Activity for Counts {
    fn request_seen(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
    fn stream_opened(&self) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }
    fn stream_closed(&self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
    fn upstream_refused(&self) {
        self.refused.fetch_add(1, Ordering::SeqCst);
    }
}

struct ProxyState {
    connections: Arc<proxy::AgentConnections>,
    settings: ProxySettings,
    shutdown: Shutdown,
    endpoint: Endpoint,
    activity: Arc<Counts>,
    /// Whose stream budget the proxied streams count against.
    user: Arc<str>,
}

/// A proxy in this test process, forwarding `/{ID}/...` to `127.0.0.1:port`.
pub struct Proxy {
    pub address: SocketAddr,
    pub shutdown: Shutdown,
    pub activity: Arc<Counts>,
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The test defaults: 1 s heartbeat, 10 s header timeout, 2 MiB body limit, CORS off.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.proxy.sse_heartbeat_seconds = 1;
    config.proxy.header_timeout_seconds = 10;
    config.proxy.max_body_bytes = 2 * 1024 * 1024;
    config
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:port` with [`test_config`] changed by `configure`.
    pub async fn start(port: u16, configure: impl FnOnce(&mut Config)) -> Self {
        let endpoint = Endpoint::new(Host::Ip(std::net::Ipv4Addr::LOCALHOST.into()), port);
        Self::start_at(endpoint, configure).await
    }

    /// Starts a proxy to `endpoint` with [`test_config`] changed by `configure`.
    pub async fn start_at(endpoint: Endpoint, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        configure(&mut config);
        let settings = ProxySettings::from_config(&config);
        let shutdown = Shutdown::new();
        let activity = Arc::new(Counts::default());
        let cors = settings.cors.clone();
        let state = Arc::new(ProxyState {
            connections: Arc::default(),
            settings,
            shutdown: shutdown.clone(),
            endpoint,
            activity: activity.clone(),
            user: "proxy-path-test".into(),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(state)
            .layer(axum::middleware::from_fn_with_state(cors, agentapi_proxy::cors::cors));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service).await;
        });
        Proxy { address, shutdown, activity, client: echo_agent::client(), server }
    }

    /// `http://<proxy>/{ID}<rest>`.
    pub fn url(&self, rest: &str) -> String {
        format!("http://{}/{ID}{rest}", self.address)
    }

    pub async fn get(&self, rest: &str) -> reqwest::Response {
        self.client.get(self.url(rest)).send().await.expect("GET through the proxy answers")
    }

    /// `POST /{ID}/message` with a JSON message.
    pub async fn post_message(&self, content: &str, kind: &str) -> reqwest::Response {
        self.client
            .post(self.url("/message"))
            .json(&serde_json::json!({"content": content, "type": kind}))
            .send()
            .await
            .expect("POST /message through the proxy answers")
    }

    /// Waits until the agent reports `stable` through the proxy.
    pub async fn wait_stable(&self) {
        crate::support::wait_until("agent stable through the proxy", DEADLINE, || async {
            let response = self.get("/status").await;
            let body: serde_json::Value = response.json().await.ok()?;
            (body["status"] == "stable").then_some(())
        })
        .await;
    }
}

async fn handle(
    State(state): State<Arc<ProxyState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    match proxy::split_session_path(&path) {
        Some((id, rest)) if id == ID => {
            let activity: Arc<dyn Activity> = state.activity.clone();
            proxy::forward(
                &state.connections,
                &state.settings,
                &state.shutdown,
                &state.endpoint,
                &rest,
                &proxy::Peer::new(peer, &state.settings.trusted_proxies),
                &state.user,
                activity,
                request,
            )
            .await
        }
        _ => (StatusCode::NOT_FOUND, "no such session").into_response(),
    }
}

/// An echo agent and a proxy in front of it.
pub struct Harness {
    pub agent: EchoAgent,
    pub proxy: Proxy,
}

impl Harness {
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        Self::with_agent_env(&[], configure).await
    }

    pub async fn with_agent_env(env: &[(&str, &str)], configure: impl FnOnce(&mut Config)) -> Self {
        let agent = EchoAgent::start(&[], env).await;
        let proxy = Proxy::start(agent.port, configure).await;
        Harness { agent, proxy }
    }
}

/// A raw HTTP/1.1 exchange (the request must say `Connection: close`): status, head, body.
pub async fn raw_exchange(address: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let work = async {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        answer
    };
    let answer = tokio::time::timeout(DEADLINE, work).await.expect("raw answer in time");
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&answer[..end]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, head, answer[end + 4..].to_vec())
}

/// The `headers` list of a `/debug/request` answer as (name, value) pairs.
pub fn header_pairs(debug: &serde_json::Value) -> Vec<(String, String)> {
    debug["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().expect("name").to_string(),
                pair[1].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

/// All values of header `name` (lower case) in a `/debug/request` answer.
pub fn header_values(debug: &serde_json::Value, name: &str) -> Vec<String> {
    header_pairs(debug).into_iter().filter(|(n, _)| n == name).map(|(_, v)| v).collect()
}

/// Reads an event stream as raw chunks and splits it into frames (`\n\n`-terminated).
pub struct RawEvents {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl RawEvents {
    pub fn new(response: reqwest::Response) -> Self {
        RawEvents { body: response.bytes_stream().boxed(), buffer: Vec::new() }
    }

    /// The next whole frame (text including its blank line), or `None` when the stream
    /// ended (cleanly or not), within the deadline.
    pub async fn next(&mut self) -> Option<String> {
        let work = async {
            loop {
                if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                    let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
                    return Some(String::from_utf8(raw).expect("UTF-8 frame"));
                }
                match self.body.next().await {
                    Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                    Some(Err(_)) | None => return None,
                }
            }
        };
        tokio::time::timeout(DEADLINE, work).await.expect("a frame or the end arrives in time")
    }

    /// Frames until (and including) the first that `stop` accepts.
    pub async fn until(&mut self, stop: impl Fn(&str) -> bool) -> Vec<String> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await.expect("the stream stays open");
            let done = stop(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }
}

/// The `data:` JSON of an `event: <name>` frame.
pub fn event_data(frame: &str, name: &str) -> Option<serde_json::Value> {
    let mut lines = frame.lines();
    if lines.next()? != format!("event: {name}") {
        return None;
    }
    serde_json::from_str(lines.next()?.strip_prefix("data: ")?).ok()
}

/// Established loopback TCP sockets whose local port is `port` (the agent's side of each
/// connection to it), from `/proc/net/tcp`.
pub fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            local_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

/// Resident memory of this process in bytes (`VmRSS`).
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 =
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value");
    kib * 1024
}

/// Reads a JSON error body and returns its `code`.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    assert!(body["message"].is_string(), "error has a message: {body}");
    body["code"].as_str().expect("error has a code").to_string()
}

/// Nothing listens here any more (a port that was just released).
pub async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}
