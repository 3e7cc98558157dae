//! `GET /sessions/events`: the replay then `ready`, a session's life (created, active,
//! removed) in order, the detail shape, other users' sessions never shown (admins see all),
//! heartbeats when idle, and the stream ending when its credential ends or the server
//! drains.

use std::time::Duration;

use agentapi_proxy::config::Config;
use serde_json::{Value, json};

use super::dashboard_login::{cookie_client, cookie_for};
use crate::support::key;
use crate::support::server::TestServer;
use crate::support::sessions::start_ok;

const ALICE: &str = "ap_alice_events_0123456789";
const BOB: &str = "ap_bob_events_0123456789";
const ROOT: &str = "ap_root_events_0123456789";
const READER: &str = "ap_reader_events_0123456789";
/// Long enough for an echo agent to start; every wait below ends as soon as it can.
const PATIENCE: Duration = Duration::from_secs(30);

fn with_keys(config: &mut Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys = vec![
        key(ALICE, "alice", "user", &["*"]),
        key(BOB, "bob", "user", &["*"]),
        key(ROOT, "root", "admin", &["*"]),
        key(READER, "reader", "user", &["profile:list"]),
    ];
}

fn keyed(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", key.parse().expect("header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// One frame of an event stream: `event`+`data`, or a comment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    Event(String, Value),
    Comment(String),
}

/// Reads an event stream frame by frame.
pub(crate) struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    pub(crate) async fn open(client: &reqwest::Client, base: &str) -> Self {
        let response = client.get(format!("{base}/sessions/events")).send().await.expect("GET");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { response, buffer: String::new() }
    }

    /// The next frame; `None` once the stream ended. Panics after `PATIENCE`.
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(PATIENCE, self.next_unbounded()).await.expect("a frame in time")
    }

    pub(crate) async fn next_unbounded(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut data, mut comment) = (None, String::new(), None);
                for line in block.lines() {
                    if let Some(rest) = line.strip_prefix("event: ") {
                        event = Some(rest.to_string());
                    } else if let Some(rest) = line.strip_prefix("data: ") {
                        data.push_str(rest);
                    } else if let Some(rest) = line.strip_prefix(':') {
                        comment = Some(rest.trim().to_string());
                    }
                }
                return Some(match event {
                    Some(event) => Frame::Event(event, serde_json::from_str(&data).expect("JSON")),
                    None => Frame::Comment(comment.expect("a comment")),
                });
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next `event` frame, skipping comments.
    pub(crate) async fn next_event(&mut self) -> Option<(String, Value)> {
        loop {
            match self.next().await? {
                Frame::Event(event, data) => return Some((event, data)),
                Frame::Comment(_) => continue,
            }
        }
    }

    /// The next event frame about session `id` (the others' agents may change meanwhile).
    pub(crate) async fn next_of(&mut self, id: &str) -> (String, Value) {
        loop {
            let (event, data) = self.next_event().await.expect("a change");
            if data["session_id"] == id {
                return (event, data);
            }
        }
    }

    /// Event frames up to and including `ready`.
    pub(crate) async fn replay(&mut self) -> Vec<(String, Value)> {
        let mut frames = Vec::new();
        loop {
            let (event, data) = self.next_event().await.expect("the replay");
            if event == "ready" {
                assert_eq!(data, json!({}));
                return frames;
            }
            frames.push((event, data));
        }
    }

    /// Whether the stream ends within `deadline` (frames meanwhile are ignored).
    pub(crate) async fn ends_within(&mut self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, async { while self.next_unbounded().await.is_some() {} })
            .await
            .is_ok()
    }
}

fn ids(frames: &[(String, Value)]) -> Vec<&str> {
    frames.iter().map(|(_, data)| data["session_id"].as_str().expect("id")).collect()
}

#[tokio::test]
async fn the_stream_replays_then_follows_a_session_from_creation_to_removal() {
    let server = TestServer::start(with_keys).await;
    let base = server.base();
    let alice = keyed(ALICE);
    let (older, _) = start_ok(&alice, &base, json!({})).await;
    let (newer, _) = start_ok(&alice, &base, json!({"tags": {"n": "2"}})).await;

    let mut events = Events::open(&alice, &base).await;
    let replay = events.replay().await;
    assert!(replay.iter().all(|(event, _)| event == "session"), "{replay:?}");
    assert_eq!(ids(&replay), vec![newer.as_str(), older.as_str()], "newest first");
    let detail: Value = alice
        .get(format!("{base}/sessions/{newer}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let keys =
        |value: &Value| value.as_object().expect("object").keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&replay[0].1), keys(&detail), "the shape of GET /sessions/{{id}}");
    for field in ["session_id", "user_id", "tags", "started_at", "port", "restarts"] {
        assert_eq!(replay[0].1[field], detail[field], "{field}");
    }

    let (code, started) = {
        let response = alice
            .post(format!("{base}/start?wait=false"))
            .json(&json!({"tags": {"n": "3"}}))
            .send()
            .await
            .expect("start");
        (response.status().as_u16(), response.json::<Value>().await.expect("json"))
    };
    assert_eq!(code, 200, "{started}");
    let id = started["session_id"].as_str().expect("id").to_string();
    let mut seen = Vec::new();
    loop {
        let (event, data) = events.next_of(&id).await;
        assert_eq!(event, "session");
        seen.push(data["status"].as_str().expect("status").to_string());
        if data["status"] == "active" {
            break;
        }
    }
    assert_eq!(seen.first().map(String::as_str), Some("starting"), "{seen:?}");

    let response = alice.delete(format!("{base}/sessions/{id}")).send().await.expect("delete");
    assert_eq!(response.status().as_u16(), 200);
    let mut statuses = Vec::new();
    let removed = loop {
        let (event, data) = events.next_of(&id).await;
        if event == "removed" {
            break data;
        }
        statuses.push(data["status"].as_str().expect("status").to_string());
    };
    assert_eq!(removed, json!({"session_id": id}));
    assert!(
        statuses.iter().all(|s| s == "active" || s == "stopping" || s == "exited"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_user_never_sees_anothers_sessions_and_an_admin_sees_both() {
    let server = TestServer::start(with_keys).await;
    let base = server.base();
    let (alice, bob, root) = (keyed(ALICE), keyed(BOB), keyed(ROOT));
    let (alices_first, _) = start_ok(&alice, &base, json!({})).await;

    let response = keyed(READER).get(format!("{base}/sessions/events")).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 403, "session:list is needed");
    let response =
        reqwest::Client::new().get(format!("{base}/sessions/events")).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 401);

    let mut bobs = Events::open(&bob, &base).await;
    assert!(bobs.replay().await.is_empty(), "alice's session is not replayed to bob");
    let mut roots = Events::open(&root, &base).await;
    assert_eq!(ids(&roots.replay().await), vec![alices_first.as_str()]);

    let (alices_second, _) = start_ok(&alice, &base, json!({})).await;
    let (bobs_own, _) = start_ok(&bob, &base, json!({})).await;
    // Alice's changes were announced before bob's session existed: had bob's stream carried
    // them, they would come first.
    let (_, first) = bobs.next_event().await.expect("bob's own session");
    assert_eq!(first["session_id"], bobs_own.as_str(), "{first}");
    assert_eq!(first["user_id"], "bob");
    let mut admin_saw = std::collections::HashSet::new();
    while !(admin_saw.contains(&alices_second) && admin_saw.contains(&bobs_own)) {
        let (_, data) = roots.next_event().await.expect("a change");
        admin_saw.insert(data["session_id"].as_str().expect("id").to_string());
    }
    let response =
        alice.delete(format!("{base}/sessions/{alices_second}")).send().await.expect("delete");
    assert_eq!(response.status().as_u16(), 200);
    let response = bob.delete(format!("{base}/sessions/{bobs_own}")).send().await.expect("delete");
    assert_eq!(response.status().as_u16(), 200);
    loop {
        let (event, data) = bobs.next_event().await.expect("bob's removal");
        assert_eq!(data["session_id"], bobs_own.as_str(), "bob sees only his own: {data}");
        if event == "removed" {
            break;
        }
    }
    let mut bobs_again = Events::open(&bob, &base).await;
    assert!(bobs_again.replay().await.is_empty());
}

#[tokio::test]
async fn the_stream_counts_against_the_stream_budget() {
    let server = TestServer::start(|config| {
        with_keys(config);
        config.proxy.max_streams_per_user = 1;
    })
    .await;
    let base = server.base();
    let alice = keyed(ALICE);
    let mut first = Events::open(&alice, &base).await;
    first.replay().await;
    let response = alice.get(format!("{base}/sessions/events")).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 429, "a second stream is over the budget");
    let mut bobs = Events::open(&keyed(BOB), &base).await;
    bobs.replay().await;
    drop(first);
    crate::support::wait_until("the budget to be given back", PATIENCE, || async {
        let response = alice.get(format!("{base}/sessions/events")).send().await.ok()?;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn heartbeats_arrive_while_nothing_changes() {
    let server = TestServer::start(|config| config.proxy.sse_heartbeat_seconds = 1).await;
    let client = reqwest::Client::new();
    let mut events = Events::open(&client, &server.base()).await;
    assert!(events.replay().await.is_empty());
    for _ in 0..2 {
        let frame = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
        assert_eq!(frame.expect("a heartbeat within 5 s"), Some(Frame::Comment("ping".into())));
    }
}

#[tokio::test]
async fn the_stream_ends_when_its_cookie_session_logs_out() {
    let server = TestServer::start(with_keys).await;
    let base = server.base();
    let cookie = cookie_for(&base, ALICE).await;
    let client = cookie_client(&cookie);
    let mut events = Events::open(&client, &base).await;
    events.replay().await;
    let response = client
        .post(format!("{base}/auth/logout"))
        .header("X-Requested-With", "fetch")
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status().as_u16(), 204);
    assert!(events.ends_within(Duration::from_secs(5)).await, "the stream outlived its logout");
}

#[tokio::test]
async fn the_stream_ends_when_the_server_drains() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let mut events = Events::open(&client, &server.base()).await;
    events.replay().await;
    let stopping = tokio::spawn(server.stop(Duration::from_secs(30)));
    assert!(events.ends_within(Duration::from_secs(10)).await, "the stream outlived the drain");
    stopping.await.expect("joins").expect("the server stops cleanly");
}
