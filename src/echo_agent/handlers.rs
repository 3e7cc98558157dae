//! The agentapi API handlers: `GET /status`, `GET /messages`, `POST /message`, `GET /events`.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::conversation;
use super::http::App;
use super::problem::{MessageKind, Problem, host_of, read_json, schema_link, schema_url};
use super::state::Status;
use super::text::quoted;

/// A 200 JSON answer with huma's `$schema` field (first) and `Link` header.
pub fn json_ok(host: &str, schema: &str, body: &impl Serialize) -> Response {
    #[derive(Serialize)]
    struct WithSchema<'a, T> {
        #[serde(rename = "$schema")]
        schema: String,
        #[serde(flatten)]
        body: &'a T,
    }
    let value = WithSchema { schema: schema_url(host, schema), body };
    match serde_json::to_vec(&value) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (header::LINK, schema_link(host, schema)),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => {
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, host, "encoding failed").into_response()
        }
    }
}

pub async fn status(State(app): State<App>, headers: HeaderMap) -> Response {
    #[derive(Serialize)]
    struct StatusBody<'a> {
        status: Status,
        agent_type: &'a str,
        transport: &'a str,
    }
    let body = StatusBody {
        status: app.agent.status(),
        agent_type: &app.agent.agent_type,
        transport: app.agent.transport,
    };
    json_ok(&host_of(&headers), "StatusResponseBody", &body)
}

/// `GET /messages`, assembled from each message's pre-escaped pieces and streamed, so a
/// reply of tens of MiB is neither re-serialized nor copied.
pub async fn messages(State(app): State<App>, headers: HeaderMap) -> Response {
    let host = host_of(&headers);
    let snapshot = app.agent.messages();
    let mut chunks: Vec<Bytes> = Vec::with_capacity(snapshot.len() * 2 + 2);
    chunks.push(Bytes::from(format!(
        "{{\"$schema\":{},\"messages\":[",
        quoted(&schema_url(&host, "MessagesResponseBody"))
    )));
    for (index, message) in snapshot.iter().enumerate() {
        chunks.push(Bytes::from(format!(
            "{}{{\"id\":{},\"content\":\"",
            if index == 0 { "" } else { "," },
            message.id
        )));
        chunks.push(message.escaped.clone());
        chunks.push(Bytes::from(format!(
            "\",\"role\":\"{}\",\"time\":{}}}",
            message.role.as_str(),
            message.time
        )));
    }
    chunks.push(Bytes::from_static(b"]}"));
    let length: usize = chunks.iter().map(Bytes::len).sum();
    let body = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>));
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_LENGTH, length.to_string()),
            (header::LINK, schema_link(&host, "MessagesResponseBody")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

pub async fn message(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let host = host_of(&headers);
    let value = match read_json(&headers, body).await {
        Ok(value) => value,
        Err(problem) => return problem.into_response(),
    };
    let request = match super::problem::validate_message(&host, &value) {
        Ok(request) => request,
        Err(problem) => return problem.into_response(),
    };
    #[derive(Serialize)]
    struct Ok {
        ok: bool,
    }
    match request.kind {
        // Keystrokes go nowhere: the echo agent has no terminal.
        MessageKind::Raw => json_ok(&host, "MessageResponseBody", &Ok { ok: true }),
        MessageKind::User => {
            match conversation::send_user_message(&app.agent, app.timing, &request.content) {
                Err(refusal) => {
                    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, &host, refusal.detail())
                        .into_response()
                }
                Result::Ok(accepted) => {
                    if !accepted.delay.is_zero() {
                        tokio::time::sleep(accepted.delay).await;
                    }
                    let response = json_ok(&host, "MessageResponseBody", &Ok { ok: true });
                    if accepted.hang {
                        app.agent.hang();
                    }
                    response
                }
            }
        }
    }
}

/// The live part of an event stream.
struct EventStream {
    replay: VecDeque<Bytes>,
    live: mpsc::Receiver<Bytes>,
    hung: watch::Receiver<bool>,
    exit: watch::Receiver<Option<u8>>,
}

impl EventStream {
    /// The next frame; `None` ends the stream (shutdown, or dropped as too slow). After
    /// `/fake hang` it never yields again.
    async fn next(&mut self) -> Option<Bytes> {
        if *self.hung.borrow() {
            std::future::pending::<()>().await;
        }
        if let Some(frame) = self.replay.pop_front() {
            return Some(frame);
        }
        enum Woke {
            Frame(Option<Bytes>),
            Exit,
            Hung,
        }
        let woke = tokio::select! {
            frame = self.live.recv() => Woke::Frame(frame),
            _ = self.exit.wait_for(Option::is_some) => Woke::Exit,
            _ = self.hung.wait_for(|hung| *hung) => Woke::Hung,
        };
        let frame = match woke {
            Woke::Frame(frame) => frame?,
            Woke::Exit => return None,
            Woke::Hung => {
                std::future::pending::<()>().await;
                return None;
            }
        };
        if *self.hung.borrow() {
            std::future::pending::<()>().await;
        }
        Some(frame)
    }
}

pub async fn events(State(app): State<App>) -> Response {
    let (replay, live) = app.agent.subscribe();
    let stream = EventStream {
        replay: replay.into(),
        live,
        hung: app.agent.hung_watch(),
        exit: app.agent.exit_watch(),
    };
    let frames = futures_util::stream::unfold(stream, |mut stream| async move {
        let frame = stream.next().await?;
        Some((Ok::<_, Infallible>(frame), stream))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
            (header::EXPIRES, "0"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
            (header::HeaderName::from_static("x-proxy-buffering"), "no"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}
