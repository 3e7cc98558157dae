//! agentapi's event stream (`text/event-stream`) as a `Stream` of typed events. Comment
//! lines (the proxy's `: ping` heartbeats) are skipped; a stream that ends yields
//! [`Error::Disconnected`] once, then ends.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use serde::Deserialize;

use crate::error::{Error, Result};

/// One event from an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A message appeared or grew (the whole text so far).
    MessageUpdate {
        id: u64,
        role: String,
        message: String,
        time: String,
    },
    /// The agent went `running` or `stable`.
    StatusChange {
        status: String,
        agent_type: String,
    },
    AgentError {
        message: String,
        level: String,
        time: String,
    },
    /// An event this client does not know, kept as received.
    Other {
        event: String,
        data: String,
    },
}

#[derive(Deserialize)]
struct MessageUpdate {
    id: u64,
    role: String,
    message: String,
    #[serde(default)]
    time: String,
}

#[derive(Deserialize)]
struct StatusChange {
    status: String,
    #[serde(default)]
    agent_type: String,
}

#[derive(Deserialize)]
struct AgentErrorEvent {
    message: String,
    #[serde(default)]
    level: String,
    #[serde(default)]
    time: String,
}

impl AgentEvent {
    fn parse(event: &str, data: &str) -> Result<Self> {
        let decode = |error: serde_json::Error| Error::Decode(format!("{event} event: {error}"));
        Ok(match event {
            "message_update" => {
                let update: MessageUpdate = serde_json::from_str(data).map_err(decode)?;
                Self::MessageUpdate {
                    id: update.id,
                    role: update.role,
                    message: update.message,
                    time: update.time,
                }
            }
            "status_change" => {
                let change: StatusChange = serde_json::from_str(data).map_err(decode)?;
                Self::StatusChange { status: change.status, agent_type: change.agent_type }
            }
            "agent_error" => {
                let error: AgentErrorEvent = serde_json::from_str(data).map_err(decode)?;
                Self::AgentError { message: error.message, level: error.level, time: error.time }
            }
            _ => Self::Other { event: event.to_string(), data: data.to_string() },
        })
    }
}

/// Splits SSE bytes into `(event, data)` frames.
#[derive(Debug, Default)]
pub(crate) struct FrameParser {
    buffer: String,
}

impl FrameParser {
    /// Feeds bytes; returns every frame they completed.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        if self.buffer.contains('\r') {
            self.buffer = self.buffer.replace("\r\n", "\n").replace('\r', "\n");
        }
        let mut frames = Vec::new();
        while let Some(end) = self.buffer.find("\n\n") {
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data: Vec<&str> = Vec::new();
            for line in block.lines() {
                if line.starts_with(':') || line.is_empty() {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = value.to_string(),
                    "data" => data.push(value),
                    _ => {}
                }
            }
            if !data.is_empty() {
                frames.push((event, data.join("\n")));
            }
        }
        frames
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The events of one agent, as they happen.
pub struct EventStream {
    bytes: Option<ByteStream>,
    parser: FrameParser,
    ready: VecDeque<Result<AgentEvent>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EventStream").field("open", &self.bytes.is_some()).finish()
    }
}

impl EventStream {
    pub(crate) fn new(response: reqwest::Response) -> Self {
        Self {
            bytes: Some(Box::pin(response.bytes_stream())),
            parser: FrameParser::default(),
            ready: VecDeque::new(),
        }
    }
}

impl Stream for EventStream {
    type Item = Result<AgentEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Poll::Ready(Some(event));
            }
            let Some(bytes) = self.bytes.as_mut() else { return Poll::Ready(None) };
            match bytes.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let frames = self.parser.feed(&chunk);
                    self.ready
                        .extend(frames.iter().map(|(event, data)| AgentEvent::parse(event, data)));
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                    self.bytes = None;
                    return Poll::Ready(Some(Err(Error::Disconnected)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_heartbeats_and_crlf_are_handled() {
        let mut parser = FrameParser::default();
        assert!(parser.feed(b"event: status_change\ndata: {\"status\":").is_empty());
        let frames =
            parser.feed(b"\"stable\"}\n\n: ping\n\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n");
        assert_eq!(
            frames,
            vec![
                ("status_change".into(), "{\"status\":\"stable\"}".into()),
                ("x".into(), "a\nb".into())
            ]
        );
        let event = AgentEvent::parse(
            "message_update",
            r#"{"id":2,"role":"agent","message":"echo: hi","time":"t"}"#,
        )
        .expect("parses");
        assert_eq!(
            event,
            AgentEvent::MessageUpdate {
                id: 2,
                role: "agent".into(),
                message: "echo: hi".into(),
                time: "t".into()
            }
        );
    }
}
