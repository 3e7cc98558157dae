//! T11 (performance.md): an event reaching the proxy (a signed Events API request with a
//! follow-up) → the agent receiving the message, side by side with a direct `POST
//! /<id>/message` through the proxy; interleaved repetitions, the ratio of the medians.
//! Both are timed to the agent's own `message_update` frame of the user message, read from
//! the agent's event stream. A measurement, not a pass/fail test: run it with
//! `cargo nextest run --test integration --run-ignored only slack::t11`.

use std::time::Instant;

use futures_util::StreamExt;
use reqwest::Client;
use serde_json::json;

use super::{PATIENCE, session_of_thread, slack_config, wait_for_post};
use crate::support::fake_slack::{
    ALICE, CHANNEL, FakeSlack, SIGNING_SECRET, signed_headers, unix_now,
};
use crate::support::server::TestServer;
use crate::support::sessions::get_json;
use crate::support::wait_until;

const REPETITIONS: usize = 25;

/// Reads the agent's event stream until a user message containing `marker` appears.
async fn frame_with(
    lines: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    marker: &str,
) -> Instant {
    loop {
        if let Some(at) = buffer.find(marker) {
            let cut = buffer[at..].find("\n\n").map_or(buffer.len(), |end| at + end);
            buffer.drain(..cut);
            return Instant::now();
        }
        let chunk = tokio::time::timeout(PATIENCE, lines.next())
            .await
            .expect("a frame in time")
            .expect("the stream stays open")
            .expect("a chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn wait_stable(client: &Client, port: u16) {
    wait_until("the agent to be stable", PATIENCE, || async move {
        let (_, status) = get_json(client, &format!("http://127.0.0.1:{port}/status")).await;
        (status["status"] == "stable").then_some(())
    })
    .await;
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test]
#[ignore = "a measurement (T11); run on a quiet machine"]
async fn t11_slack_event_to_agent_versus_a_direct_message() {
    let fake = FakeSlack::start(PATIENCE).await;
    let server = TestServer::start(|config| {
        slack_config(config, &fake);
        config.chat.slack.mode = "events".into();
        config.chat.slack.app_token = String::new();
        config.chat.slack.signing_secret = SIGNING_SECRET.into();
        config.agent.environment.insert("ECHO_AGENT_REPLY_MS".into(), "0".into());
    })
    .await;
    let client = Client::new();
    wait_until("the bridge to run", PATIENCE, || {
        let client = client.clone();
        let url = server.url("/chat/status");
        async move {
            let (_, status) = get_json(&client, &url).await;
            status["platforms"].as_array().is_some_and(|p| !p.is_empty()).then_some(())
        }
    })
    .await;
    let events_url = server.url("/chat/slack/events");
    let post_event = |payload: serde_json::Value| {
        let client = client.clone();
        let url = events_url.clone();
        async move {
            let body = serde_json::to_vec(&payload).expect("json");
            let headers = signed_headers(&body, unix_now(), None);
            let answer = client.post(url).headers(headers).body(body).send().await.expect("post");
            assert_eq!(answer.status(), 200);
        }
    };
    let mention = fake.mention(ALICE, CHANNEL, "warm up", None);
    let root = mention.ts.clone();
    post_event(mention.payload.clone()).await;
    wait_for_post(&fake, CHANNEL, &root, "the echo", |p| p.text == "echo: warm up").await;
    let session = session_of_thread(&server.base(), &root).await;
    let id = session["session_id"].as_str().expect("id").to_string();
    let (_, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    let port = detail["port"].as_u64().expect("port") as u16;
    let events =
        client.get(format!("http://127.0.0.1:{port}/events")).send().await.expect("agent events");
    let mut frames = events.bytes_stream();
    let mut buffer = String::new();

    let (mut via_slack, mut direct) = (Vec::new(), Vec::new());
    for round in 0..REPETITIONS {
        wait_stable(&client, port).await;
        let marker = format!("slack-{round}-marker");
        let follow_up = fake.thread_message(ALICE, CHANNEL, &root, &marker);
        let started = Instant::now();
        post_event(follow_up.payload).await;
        let seen = frame_with(&mut frames, &mut buffer, &format!("alice: {marker}")).await;
        via_slack.push((seen - started).as_secs_f64());

        wait_stable(&client, port).await;
        let marker = format!("direct-{round}-marker");
        let started = Instant::now();
        let body = json!({"content": marker, "type": "user"});
        let sending = client.post(server.url(&format!("/{id}/message"))).json(&body).send();
        let (seen, answer) = tokio::join!(frame_with(&mut frames, &mut buffer, &marker), sending);
        assert_eq!(answer.expect("message").status(), 200);
        direct.push((seen - started).as_secs_f64());
    }
    let (slack_ms, direct_ms) = (median(via_slack) * 1e3, median(direct) * 1e3);
    println!(
        "T11: Slack event -> agent median {slack_ms:.2} ms, direct POST /message median \
         {direct_ms:.2} ms, ratio {:.2} (target <= 1.5)",
        slack_ms / direct_ms
    );
}
