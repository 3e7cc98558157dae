//! The echo agent's `/events` stream and the `/fake` directives that shape replies: replay on
//! connect, growing `message_update` frames, `status_change`, `agent_error`, big replies,
//! slow POSTs and hanging.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use super::{DEADLINE, EchoAgent};
use crate::support::wait_until;

/// One parsed SSE frame.
#[derive(Debug, Clone)]
struct Frame {
    event: String,
    data: Value,
}

/// Reads `/events` as raw bytes and splits frames exactly as they were written.
struct Events {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl Events {
    async fn open(agent: &EchoAgent) -> (reqwest::header::HeaderMap, Self) {
        let response = agent.client.get(agent.url("/events")).send().await.expect("GET /events");
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        let events = Events { body: response.bytes_stream().boxed(), buffer: Vec::new() };
        (headers, events)
    }

    /// The next frame, within the deadline.
    async fn next(&mut self) -> Frame {
        tokio::time::timeout(DEADLINE, self.next_inner()).await.expect("a frame arrives in time")
    }

    async fn next_inner(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return parse_frame(&raw);
            }
            let chunk = self.body.next().await.expect("stream still open").expect("chunk");
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Frames until (and including) the first one `stop` accepts.
    async fn until(&mut self, stop: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let done = stop(&frame);
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }
}

fn parse_frame(raw: &[u8]) -> Frame {
    let text = std::str::from_utf8(raw).expect("UTF-8 frame");
    let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
    assert_eq!(lines.len(), 2, "exactly `event:` and `data:` lines, no ids or comments: {text:?}");
    let event = lines[0].strip_prefix("event: ").expect("event line").to_string();
    let data = lines[1].strip_prefix("data: ").expect("data line");
    Frame { event, data: serde_json::from_str(data).expect("JSON data") }
}

fn is_stable(frame: &Frame) -> bool {
    frame.event == "status_change" && frame.data["status"] == "stable"
}

#[tokio::test]
async fn events_replay_then_stream_growing_replies() {
    let agent = EchoAgent::start(&[], &[("ECHO_AGENT_REPLY_MS", "200")]).await;
    agent.say("earlier").await;
    agent.wait_message("agent", "echo: earlier").await;
    agent.wait_stable().await;

    let (headers, mut events) = Events::open(&agent).await;
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(headers["cache-control"].to_str().unwrap_or_default().starts_with("no-cache"));
    assert_eq!(headers["x-accel-buffering"], "no");

    // Replay: every message in order, then the status.
    let replay = events.until(|f| f.event == "status_change").await;
    let ids: Vec<i64> = replay.iter().filter_map(|f| f.data["id"].as_i64()).collect();
    assert_eq!(ids, vec![0, 1, 2], "{replay:?}");
    assert_eq!(replay[1].data["message"], "earlier");
    assert_eq!(replay[2].data["message"], "echo: earlier");
    assert!(replay[2].data.get("content").is_none(), "the field is `message`");
    assert_eq!(replay[3].data["status"], "stable");
    assert_eq!(replay[3].data["agent_type"], "echo");

    agent.say("hi").await;
    let live = events.until(is_stable).await;
    assert!(
        live.iter().any(|f| f.event == "status_change" && f.data["status"] == "running"),
        "{live:?}"
    );
    let user: Vec<&Frame> = live.iter().filter(|f| f.data["id"] == 3).collect();
    assert_eq!(user.len(), 1, "{live:?}");
    assert_eq!(user[0].data["role"], "user");
    assert_eq!(user[0].data["message"], "hi");
    let reply: Vec<String> = live
        .iter()
        .filter(|f| f.event == "message_update" && f.data["id"] == 4)
        .map(|f| {
            assert_eq!(f.data["role"], "agent");
            assert!(f.data["time"].is_string());
            f.data["message"].as_str().expect("message text").to_string()
        })
        .collect();
    assert!(reply.len() >= 2, "several growing updates: {reply:?}");
    for pair in reply.windows(2) {
        assert!(pair[1].starts_with(&pair[0]) && pair[1].len() > pair[0].len(), "{reply:?}");
    }
    assert_eq!(reply.last().map(String::as_str), Some("echo: hi"));
    // No earlier message was re-sent live, and the last frame is the final status.
    assert!(live.iter().all(|f| f.data["id"].as_i64().is_none_or(|id| id >= 3)), "{live:?}");
    assert!(is_stable(live.last().expect("frames")));
}

#[tokio::test]
async fn fake_error_emits_an_agent_error_event() {
    let agent = EchoAgent::start(&[], &[]).await;
    let (_, mut events) = Events::open(&agent).await;
    events.until(|f| f.event == "status_change").await;
    agent.say("/fake error boom here").await;
    let frames = events.until(|f| f.event == "agent_error").await;
    let error = frames.last().expect("frame");
    assert_eq!(error.data["message"], "boom here");
    assert_eq!(error.data["level"], "error");
    assert!(error.data["time"].is_string());
    agent.wait_message("agent", "echo: /fake error boom here").await;
}

#[tokio::test]
async fn fake_big_makes_a_large_reply_served_by_messages() {
    let agent = EchoAgent::start(&[], &[]).await;
    agent.say("/fake big 1024").await;
    let length = wait_until("big reply complete", DEADLINE, || async {
        if agent.status().await != "stable" {
            return None;
        }
        let messages = agent.get_json("/messages").await;
        let last = messages["messages"].as_array()?.last()?.clone();
        (last["role"] == "agent").then(|| last["content"].as_str().map(str::len))?
    })
    .await;
    assert!(length >= 1024 * 1024, "reply is {length} bytes");
}

#[tokio::test]
async fn fake_sleep_holds_the_post() {
    let agent = EchoAgent::start(&[], &[]).await;
    let started = Instant::now();
    agent.say("/fake sleep 300").await;
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    agent.wait_message("agent", "echo: /fake sleep 300").await;
}

#[tokio::test]
async fn fake_hang_stops_answering() {
    let agent = EchoAgent::start(&[], &[]).await;
    let (_, mut events) = Events::open(&agent).await;
    events.until(|f| f.event == "status_change").await;
    agent.say("/fake hang").await;
    let quick = super::client();
    let attempt = quick.get(agent.url("/status")).timeout(Duration::from_millis(1500)).send().await;
    let err = attempt.expect_err("no answer after /fake hang");
    assert!(err.is_timeout(), "{err}");
    // The open stream goes quiet too: nothing beyond what the hang message itself caused.
    let more = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            let frame = events.next_inner().await;
            if frame.data["message"] == "echo: /fake hang" {
                return frame;
            }
        }
    })
    .await;
    assert!(more.is_err(), "no reply is streamed after a hang");
}
