//! The bridge's calls to a session's agent (agentapi's API on the agent's own port, as the
//! initial prompt reaches it): messages, a user message, an upload, the event
//! stream. Answers are bounded; the event stream is cut into frames by `eventsource-stream`,
//! after [`bounded_frames`] has ended any stream whose frame outgrows the cap (the parser
//! would buffer a frame without end, and re-read it at every chunk).

use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use crate::endpoint::Endpoint;

/// agentapi answers `POST /message` once the agent starts working: seconds, up to ~18 s.
const POST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a `/messages` answer read (bounded answers, security.md rule 17).
const MAX_MESSAGES_BYTES: usize = 8 * 1024 * 1024;
/// The most one event frame of the agent's stream may hold (a message update carries the
/// whole message, so as much as a `/messages` answer).
const MAX_FRAME_BYTES: usize = MAX_MESSAGES_BYTES;

/// One message of the agent's conversation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AgentMessage {
    pub id: u64,
    pub role: String,
    pub content: String,
}

#[derive(Deserialize)]
struct Messages {
    messages: Vec<AgentMessage>,
}

/// An event of the agent's stream the bridge acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    Status(String),
    /// An agent message appeared or grew (its whole text so far).
    AgentMessage(String),
    Other,
}

fn event_of(name: &str, data: &str) -> AgentEvent {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else {
        return AgentEvent::Other;
    };
    match name {
        "status_change" => {
            value["status"].as_str().map_or(AgentEvent::Other, |s| AgentEvent::Status(s.into()))
        }
        "message_update" if value["role"] == "agent" => value["message"]
            .as_str()
            .map_or(AgentEvent::Other, |text| AgentEvent::AgentMessage(text.into())),
        _ => AgentEvent::Other,
    }
}

/// How a user message was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Accepted,
    /// The agent was busy (500): try again when it is stable.
    Busy,
}

/// One agent, at its endpoint.
#[derive(Debug, Clone)]
pub struct AgentCalls {
    http: reqwest::Client,
    base: String,
    /// The loopback `Host` agentapi accepts, whatever address the agent is reached at.
    host: http::HeaderValue,
}

impl AgentCalls {
    pub fn new(http: reqwest::Client, endpoint: &Endpoint) -> Self {
        let base = format!("http://{}:{}", endpoint.host(), endpoint.port());
        Self { http, base, host: endpoint.host_header().clone() }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base)).header(http::header::HOST, &self.host)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base)).header(http::header::HOST, &self.host)
    }

    async fn bounded(response: reqwest::Response, limit: usize) -> anyhow::Result<Bytes> {
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if body.len() + chunk.len() > limit {
                anyhow::bail!("the agent's answer is over {limit} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }

    pub async fn messages(&self) -> anyhow::Result<Vec<AgentMessage>> {
        let response = self.get("/messages").timeout(POST_TIMEOUT).send().await?;
        let body = Self::bounded(response.error_for_status()?, MAX_MESSAGES_BYTES).await?;
        Ok(serde_json::from_slice::<Messages>(&body)?.messages)
    }

    pub async fn send(&self, content: &str) -> anyhow::Result<Sent> {
        let response = self
            .post("/message")
            .json(&json!({"content": content, "type": "user"}))
            .timeout(POST_TIMEOUT)
            .send()
            .await?;
        match response.status() {
            status if status.is_success() => Ok(Sent::Accepted),
            status if status.is_server_error() => Ok(Sent::Busy),
            status => anyhow::bail!("the agent refused the message ({status})"),
        }
    }

    /// Uploads a file; returns where the agent put it.
    pub async fn upload(&self, name: &str, bytes: Bytes) -> anyhow::Result<String> {
        let part = reqwest::multipart::Part::stream(bytes).file_name(name.to_string());
        let form = reqwest::multipart::Form::new().part("file", part);
        let response = self.post("/upload").multipart(form).timeout(POST_TIMEOUT).send().await?;
        let body = Self::bounded(response.error_for_status()?, 64 * 1024).await?;
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        value["filePath"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("the agent's upload answer names no filePath"))
    }

    /// The agent's event stream (it replays the conversation, then the status).
    pub async fn events(&self) -> anyhow::Result<impl Stream<Item = AgentEvent> + Send + use<>> {
        let response = self
            .get("/events")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await?
            .error_for_status()?;
        let frames = bounded_frames(response.bytes_stream(), MAX_FRAME_BYTES).eventsource();
        Ok(frames.take_while(|frame| std::future::ready(frame.is_ok())).filter_map(|frame| {
            std::future::ready(frame.ok().map(|frame| event_of(&frame.event, &frame.data)))
        }))
    }
}

/// `chunks` until a frame (the bytes since the last blank line; lines end in LF, CR or
/// CRLF) holds more than `limit` bytes; then the stream ends, as if the agent had closed it.
fn bounded_frames<E>(
    chunks: impl Stream<Item = Result<Bytes, E>>,
    limit: usize,
) -> impl Stream<Item = Result<Bytes, E>> {
    #[derive(Default)]
    struct Scan {
        /// Bytes of the unfinished frame.
        frame: usize,
        /// Bytes of the unfinished line.
        line: usize,
        /// The last byte was a CR (so an LF right after it ends no further line).
        after_cr: bool,
    }
    chunks.scan(Scan::default(), move |scan, chunk| {
        if let Ok(bytes) = &chunk {
            for byte in bytes.iter() {
                match byte {
                    b'\n' if scan.after_cr => scan.after_cr = false,
                    b'\n' | b'\r' => {
                        if scan.line == 0 {
                            scan.frame = 0;
                        } else {
                            scan.line = 0;
                            scan.frame += 1;
                        }
                        scan.after_cr = *byte == b'\r';
                    }
                    _ => {
                        scan.after_cr = false;
                        scan.line += 1;
                        scan.frame += 1;
                    }
                }
            }
        }
        std::future::ready((scan.frame <= limit).then_some(chunk))
    })
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, ()>> {
        futures_util::stream::iter(parts.iter().map(|part| Ok(Bytes::from_static(part))))
    }

    async fn passed(parts: &[&'static [u8]], limit: usize) -> usize {
        bounded_frames(chunks(parts), limit).count().await
    }

    #[tokio::test]
    async fn frames_within_the_cap_pass_whole_however_they_are_split() {
        let parts: &[&[u8]] = &[b"data: 12345\n", b"\n", b"data: 678", b"90\n\ndata: x\n\n"];
        assert_eq!(passed(parts, 12).await, 4);
        let crlf: &[&[u8]] = &[b"data: 12345\r\n", b"\r\n", b"data: 1234567\r", b"\n\r\n"];
        assert_eq!(passed(crlf, 14).await, 4, "CRLF and CR line ends");
    }

    #[tokio::test]
    async fn a_frame_that_never_ends_ends_the_stream_at_the_cap() {
        let parts: &[&[u8]] =
            &[b"data: ok\n\n", b"data: aaaaaaaa", b"aaaaaaaa", b"aaaaaaaa", b"\n\n"];
        assert_eq!(passed(parts, 20).await, 2, "the first frame and the frame's first chunk");
    }
}
