//! Issue 17, findings 8–11 (security.md rules 18–19, rows 32–33): one user's open streams
//! are capped without touching another's, stalled request bodies are cut off, an agent's
//! refusal text cannot forge log lines, `redirect_uri` is normalised before the allow-list
//! check, `/search` refuses more than 32 tag filters, and agent pages come sandboxed
//! (rule 20).

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentapi_proxy::config::{ApiKeyEntry, Config, OAuthConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::fake_github::{CLIENT_ID, CLIENT_SECRET, FakeGithub};
use crate::support::server::{TestServer, kill_agents_under, test_config};
use crate::support::{binary, wait_until};

const ALICE: &str = "ap_alice_budget_0123456789";
const BOB: &str = "ap_bob_budget_0123456789";

fn with_two_users(config: &mut Config) {
    let key = |key: &str, user: &str| ApiKeyEntry {
        key: Some(key.into()),
        user_id: user.into(),
        role: "user".into(),
        permissions: ["session:create", "session:list", "session:delete", "session:access"]
            .iter()
            .map(|p| p.to_string())
            .collect(),
        ..ApiKeyEntry::default()
    };
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys = vec![key(ALICE, "alice"), key(BOB, "bob")];
}

async fn start_as(client: &reqwest::Client, server: &TestServer, key: &str) -> String {
    let response = client
        .post(server.url("/start"))
        .header("X-API-Key", key)
        .json(&json!({}))
        .send()
        .await
        .expect("start");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["session_id"].as_str().expect("session_id").to_string()
}

async fn open_events(
    client: &reqwest::Client,
    server: &TestServer,
    key: &str,
    id: &str,
) -> reqwest::Response {
    client
        .get(server.url(&format!("/{id}/events")))
        .header("X-API-Key", key)
        .send()
        .await
        .expect("events")
}

#[tokio::test]
async fn one_users_streams_are_capped_and_another_user_is_not_affected() {
    let server = TestServer::start(|config| {
        with_two_users(config);
        config.proxy.max_streams_per_user = 5;
    })
    .await;
    let client = reqwest::Client::new();
    let alices = start_as(&client, &server, ALICE).await;
    let bobs = start_as(&client, &server, BOB).await;

    let mut held = Vec::new();
    for _ in 0..5 {
        let stream = open_events(&client, &server, ALICE, &alices).await;
        assert_eq!(stream.status(), 200);
        held.push(stream);
    }
    let refused = open_events(&client, &server, ALICE, &alices).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "quota_exceeded", "{body}");
    assert!(body["message"].as_str().expect("message").contains('5'), "{body}");

    let mut bobs_streams = Vec::new();
    for _ in 0..5 {
        let stream = open_events(&client, &server, BOB, &bobs).await;
        assert_eq!(stream.status(), 200, "another user keeps their own budget");
        bobs_streams.push(stream);
    }
    let search = client
        .get(server.url("/search"))
        .header("X-API-Key", BOB)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("search answers while every stream is held");
    assert_eq!(search.status(), 200);

    drop(held.pop());
    let again = wait_until("a place in alice's budget", Duration::from_secs(10), || async {
        let stream = open_events(&client, &server, ALICE, &alices).await;
        (stream.status() == 200).then_some(stream)
    })
    .await;
    held.push(again);
    let refused = open_events(&client, &server, ALICE, &alices).await;
    assert_eq!(refused.status(), 429, "the budget is full again");
}

/// Sends `head` and the first bytes of a body it announced as longer, then waits; returns
/// the status line of the answer (empty when the server closed without one) and how long
/// it took.
async fn stall_body(server: &TestServer, head: &str, partial: &str) -> (String, Duration) {
    let mut socket = tokio::net::TcpStream::connect(server.address).await.expect("connect");
    socket.write_all(head.as_bytes()).await.expect("head");
    socket.write_all(partial.as_bytes()).await.expect("part of the body");
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server neither answered nor closed within 10 s");
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().unwrap_or_default().to_string(), started.elapsed())
}

#[tokio::test]
async fn a_stalled_request_body_is_cut_off_on_proxied_and_api_routes() {
    let server = TestServer::start(|config| {
        with_two_users(config);
        config.proxy.body_read_timeout_seconds = 1;
    })
    .await;
    let client = reqwest::Client::new();
    let id = start_as(&client, &server, ALICE).await;

    let proxied = format!(
        "POST /{id}/message HTTP/1.1\r\nHost: x\r\nX-API-Key: {ALICE}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let (status, took) = stall_body(&server, &proxied, "{\"content\":").await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    let api = format!(
        "POST /start HTTP/1.1\r\nHost: x\r\nX-API-Key: {ALICE}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let (status, took) = stall_body(&server, &api, "{\"tags\":").await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    let chunked = format!(
        "POST /{id}/message HTTP/1.1\r\nHost: x\r\nX-API-Key: {ALICE}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let (status, took) = stall_body(&server, &chunked, "5\r\n{\"con\r\n").await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // The agent answers without reading the body (its 404): the answer passes, and the
    // connection is closed once the body stalls.
    let answered_early = format!(
        "POST /{id}/no-such-page HTTP/1.1\r\nHost: x\r\nX-API-Key: {ALICE}\r\n\
         Content-Length: 100\r\n\r\n"
    );
    let (status, took) = stall_body(&server, &answered_early, "abc").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    let search: Value = client
        .get(server.url("/search"))
        .header("X-API-Key", ALICE)
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(search["total"], 1, "the stalled /start created nothing");
}

#[tokio::test]
async fn search_refuses_more_than_32_tag_filters() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let filters = |count: usize| {
        (0..count).map(|index| format!("tag.k{index}=v{index}")).collect::<Vec<_>>().join("&")
    };
    let (status, body) = crate::support::sessions::get_json(
        &client,
        &server.url(&format!("/search?{}", filters(1000))),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_request");
    assert!(body["message"].as_str().expect("message").contains("32"), "{body}");
    let (status, _) = crate::support::sessions::get_json(
        &client,
        &server.url(&format!("/search?{}", filters(33))),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = crate::support::sessions::get_json(
        &client,
        &server.url(&format!("/search?{}", filters(32))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 0);
}

#[tokio::test]
async fn redirect_uris_are_normalised_before_the_allow_list_check() {
    let fake = FakeGithub::start(1).await;
    let server = TestServer::start(|config| {
        config.auth.enabled = true;
        config.auth.github.enabled = true;
        config.auth.github.base_url = fake.url.clone();
        config.auth.github.oauth = Some(OAuthConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            base_url: fake.url.clone(),
            allowed_redirect_uris: vec!["http://localhost:7000/app/".into()],
            ..OAuthConfig::default()
        });
        config.server.public_url = "https://agents.example".into();
    })
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let authorize = |uri: &str| {
        let request =
            client.post(server.url("/oauth/authorize")).json(&json!({"redirect_uri": uri}));
        async move {
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = authorize("http://localhost:7000/app/done").await;
    assert_eq!(status, 200, "{body}");
    for evil in [
        "http://localhost:7000/app/%2e%2e/evil",
        "http://localhost:7000/app/%2E%2E/evil",
        "http://localhost:7000/app/.%2e/evil",
        "http://localhost:7000/app/%2e%2e%2fevil",
        "http://localhost:7000/app/..%5cevil",
    ] {
        let (status, body) = authorize(evil).await;
        assert_eq!(status, 400, "{evil}: {body}");
        assert_eq!(body["code"], "invalid_redirect_uri", "{evil}");
    }
    assert_eq!(fake.calls().all(), 0, "GitHub is never asked");
}

/// A hostile agent that answers `/status` as stable and refuses every prompt with a body
/// made to look like log lines: CR/LF, a forged `ERROR agentapi_proxy::auth` line, ESC
/// sequences that clear a terminal.
const FORGING_AGENT: &str = r#"#!/usr/bin/env bash
exec perl -MIO::Socket::INET -e '
my $server = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ENV{APX_PORT},
    Listen => 16, ReuseAddr => 1) or die "listen: $!";
while (my $client = $server->accept) {
    my $head = "";
    while (my $line = <$client>) { $head .= $line; last if $line eq "\r\n"; }
    my ($length) = $head =~ /content-length:\s*(\d+)/i;
    read($client, my $body, $length) if $length;
    my ($status, $reply) = ("404 Not Found", "{}");
    if ($head =~ m{^GET /status}) {
        ($status, $reply) = ("200 OK", "{\"status\":\"stable\",\"agent_type\":\"custom\",\"transport\":\"pty\"}");
    } elsif ($head =~ m{^POST /message}) {
        ($status, $reply) = ("400 Bad Request",
            "refused\r\n2026-01-01T00:00:00Z ERROR agentapi_proxy::auth: admin key accepted\n\e[2J\e]0;owned\a\r");
    }
    print $client "HTTP/1.1 $status\r\nContent-Type: text/plain\r\nContent-Length: "
        . length($reply) . "\r\nConnection: close\r\n\r\n$reply";
    close $client;
}'
"#;

/// The real server binary with `--log-format human`, its stderr kept as raw bytes.
struct HumanLoggedServer {
    child: tokio::process::Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    address: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl HumanLoggedServer {
    async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_string(&config).expect("json")).expect("write");
        let mut child = tokio::process::Command::new(binary())
            .args(["server", "--log-format", "human", "-p", "0", "-c"])
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn server");
        let mut pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let collected = stderr.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 8192];
            while let Ok(read) = pipe.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                collected.lock().expect("stderr").extend_from_slice(&buffer[..read]);
            }
        });
        let address = wait_until("the server to listen", Duration::from_secs(30), || {
            let text = String::from_utf8_lossy(&stderr.lock().expect("stderr")).into_owned();
            async move {
                let line = text.lines().find(|line| line.contains("agentapi-proxy listening"))?;
                let address = line.split("address=").nth(1)?.split_whitespace().next()?;
                address.parse().ok()
            }
        })
        .await;
        Self { child, stderr, address, dir }
    }

    fn log(&self) -> Vec<u8> {
        self.stderr.lock().expect("stderr").clone()
    }
}

impl Drop for HumanLoggedServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        kill_agents_under(self.dir.path());
    }
}

#[tokio::test]
async fn an_agents_refusal_cannot_forge_log_lines() {
    let scripts = tempfile::tempdir().expect("dir");
    let script = scripts.path().join("forging-agent.sh");
    std::fs::write(&script, FORGING_AGENT).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = HumanLoggedServer::start(|config| {
        config.agent.script = script.display().to_string();
    })
    .await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{}/start", server.address))
        .json(&json!({"message": "hello"}))
        .send()
        .await
        .expect("start");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    wait_until("the refusal to be logged", Duration::from_secs(20), || {
        let logged = String::from_utf8_lossy(&server.log()).contains("refused the initial prompt");
        async move { logged.then_some(()) }
    })
    .await;
    // A caller's path, percent-encoded control characters and all, is logged inert too.
    let _ = client
        .get(format!("http://{}/%1b%5b2J%0d%0aERROR%20agentapi_proxy::auth/x", server.address))
        .send()
        .await;

    let log = server.log();
    let text = String::from_utf8_lossy(&log);
    assert!(!log.contains(&0x1b), "raw ESC in the log:\n{text}");
    assert!(!log.contains(&b'\r'), "raw CR in the log:\n{text}");
    assert!(!log.contains(&0x07), "raw BEL in the log:\n{text}");
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().take(3).collect();
        let forged = line.starts_with("2026-01-01T00:00:00Z")
            || words.get(1..3) == Some(&["ERROR", "agentapi_proxy::auth:"][..]);
        assert!(!forged, "a forged line: {line:?}");
    }
    let refusal =
        text.lines().find(|line| line.contains("refused the initial prompt")).expect("line");
    assert!(
        refusal.contains(r"refused\r\n2026-01-01T00:00:00Z ERROR"),
        "escaped, still readable: {refusal}"
    );
    assert!(refusal.contains(r"\u{1b}[2J"), "{refusal}");
}

/// An agent that serves an HTML page whose script would act with the viewer's cookie.
const PAGE_AGENT: &str = r#"#!/usr/bin/env bash
exec perl -MIO::Socket::INET -e '
my $server = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ENV{APX_PORT},
    Listen => 16, ReuseAddr => 1) or die "listen: $!";
while (my $client = $server->accept) {
    my $head = "";
    while (my $line = <$client>) { $head .= $line; last if $line eq "\r\n"; }
    my ($type, $reply) = ("text/html", "<script>fetch(\"/start\", {method: \"POST\"})</script>");
    if ($head =~ m{^GET /status}) {
        ($type, $reply) = ("application/json", "{\"status\":\"stable\",\"agent_type\":\"custom\",\"transport\":\"pty\"}");
    }
    print $client "HTTP/1.1 200 OK\r\nContent-Type: $type\r\nContent-Security-Policy: default-src *\r\n"
        . "Content-Length: " . length($reply) . "\r\nConnection: close\r\n\r\n$reply";
    close $client;
}'
"#;

async fn page_policies(trust_agent_pages: bool) -> Vec<String> {
    let scripts = tempfile::tempdir().expect("dir");
    let script = scripts.path().join("page-agent.sh");
    std::fs::write(&script, PAGE_AGENT).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let server = TestServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.proxy.trust_agent_pages = trust_agent_pages;
    })
    .await;
    let client = reqwest::Client::new();
    let (id, _) = crate::support::sessions::start_ok(&client, &server.base(), json!({})).await;
    let page = client.get(server.url(&format!("/{id}/x"))).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html");
    page.headers()
        .get_all("content-security-policy")
        .iter()
        .map(|value| value.to_str().expect("text").to_string())
        .collect()
}

#[tokio::test]
async fn agent_pages_are_sandboxed_unless_the_operator_trusts_them() {
    let policies = page_policies(false).await;
    assert!(
        policies
            .iter()
            .any(|p| p == "sandbox allow-scripts allow-forms allow-popups allow-downloads"),
        "{policies:?}"
    );
    assert!(policies.iter().all(|p| !p.contains("allow-same-origin")), "{policies:?}");
    assert!(policies.iter().any(|p| p == "default-src *"), "the agent's own policy stays");
    let trusted = page_policies(true).await;
    assert_eq!(trusted, ["default-src *"], "proxy.trust_agent_pages: true");
}
