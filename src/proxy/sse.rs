//! `text/event-stream` responses: passed on frame by frame as they arrive, with a `: ping`
//! comment injected when the stream has been idle for the heartbeat period — only at a frame
//! boundary, never inside a partly received frame — and ended when the server starts
//! draining. The stream's lifetime is reported to [`Activity`](super::Activity) exactly once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::pool::PooledBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::Activity;
use super::budget::StreamTicket;
use crate::shutdown::{Shutdown, Stage};

/// The comment a heartbeat writes: ignored by every SSE parser, keeps intermediaries open.
pub const PING: &[u8] = b": ping\n\n";

/// Whether the bytes of an event stream seen so far end at a frame boundary (the start, or a
/// blank line). Lines end with LF, CRLF or CR (the SSE grammar).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FrameBoundary {
    /// At a boundary.
    #[default]
    Boundary,
    /// At a boundary whose blank line ended with CR; an LF may still follow as part of it.
    BoundaryCr,
    /// Inside a line.
    InLine,
    /// A non-empty line just ended (LF or CRLF).
    LineEnd,
    /// A non-empty line just ended with CR; an LF may still follow.
    LineEndCr,
}

impl FrameBoundary {
    pub fn at_boundary(self) -> bool {
        matches!(self, Self::Boundary | Self::BoundaryCr)
    }

    fn step(self, byte: u8) -> Self {
        match (self, byte) {
            (Self::Boundary | Self::BoundaryCr | Self::LineEnd, b'\n') => Self::Boundary,
            (Self::LineEndCr, b'\n') | (Self::InLine, b'\n') => Self::LineEnd,
            (Self::InLine, b'\r') => Self::LineEndCr,
            (_, b'\r') => Self::BoundaryCr,
            _ => Self::InLine,
        }
    }

    /// Advances over `chunk`. Only its trailing run of CR/LF bytes is looked at: any other
    /// byte puts the state inside a line whatever came before.
    pub fn observe(&mut self, chunk: &[u8]) {
        let tail_start =
            chunk.iter().rposition(|b| *b != b'\n' && *b != b'\r').map_or(0, |index| index + 1);
        if tail_start > 0 {
            *self = Self::InLine;
        }
        for byte in &chunk[tail_start..] {
            *self = self.step(*byte);
        }
    }
}

/// Calls [`Activity::stream_closed`] once, when dropped, and gives the stream's place in its
/// user's budget back.
pub struct StreamGuard {
    activity: Arc<dyn Activity>,
    _ticket: StreamTicket,
}

impl StreamGuard {
    /// Reports the stream as opened now.
    pub fn open(activity: Arc<dyn Activity>, ticket: StreamTicket) -> Self {
        activity.stream_opened();
        Self { activity, _ticket: ticket }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.activity.stream_closed();
    }
}

type Draining = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The body of a proxied event stream.
pub struct SseBody {
    upstream: PooledBody,
    boundary: FrameBoundary,
    heartbeat: Option<(Duration, Pin<Box<Sleep>>)>,
    /// When data last passed; the heartbeat timer is only moved when it fires, not per frame.
    last_data: Instant,
    draining: Draining,
    done: bool,
    _guard: StreamGuard,
}

impl SseBody {
    pub fn new(
        upstream: PooledBody,
        heartbeat: Option<Duration>,
        shutdown: &Shutdown,
        guard: StreamGuard,
    ) -> Self {
        let shutdown = shutdown.clone();
        Self {
            upstream,
            boundary: FrameBoundary::default(),
            heartbeat: heartbeat.map(|period| {
                (period, Box::pin(tokio::time::sleep_until(Instant::now() + period)))
            }),
            last_data: Instant::now(),
            draining: Box::pin(async move { shutdown.reached(Stage::Draining).await }),
            done: false,
            _guard: guard,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.draining.as_mut().poll(cx).is_ready() {
            tracing::debug!("ending a proxied event stream: the server is draining");
            this.done = true;
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.upstream).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.boundary.observe(data);
                }
                if this.heartbeat.is_some() {
                    this.last_data = Instant::now();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(%error, "the agent broke off an event stream; cutting it off");
                this.done = true;
                return Poll::Ready(Some(Err(error)));
            }
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let at_boundary = this.boundary.at_boundary();
        if let Some((period, sleep)) = &mut this.heartbeat
            && sleep.as_mut().poll(cx).is_ready()
        {
            let idle_until = this.last_data + *period;
            let now = Instant::now();
            let ping = now >= idle_until;
            sleep.as_mut().reset(if ping { now + *period } else { idle_until });
            // Re-register the timer's waker for the next deadline.
            let _ = sleep.as_mut().poll(cx);
            if ping {
                this.last_data = now;
                if at_boundary {
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(PING)))));
                }
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(chunks: &[&str]) -> FrameBoundary {
        let mut state = FrameBoundary::default();
        for chunk in chunks {
            state.observe(chunk.as_bytes());
        }
        state
    }

    #[test]
    fn a_fresh_stream_is_at_a_boundary() {
        assert!(after(&[]).at_boundary());
        assert!(after(&[""]).at_boundary());
    }

    #[test]
    fn complete_frames_end_at_a_boundary() {
        assert!(after(&["event: a\ndata: {}\n\n"]).at_boundary());
        assert!(after(&["event: a\r\ndata: {}\r\n\r\n"]).at_boundary());
        assert!(after(&["data: x\r\r"]).at_boundary());
        assert!(after(&["data: x\n\n\n"]).at_boundary(), "extra blank lines are harmless");
        assert!(after(&[": ping\n\n", "data: 1\n\n"]).at_boundary());
    }

    #[test]
    fn partial_frames_are_not_at_a_boundary() {
        assert!(!after(&["event: a"]).at_boundary());
        assert!(!after(&["event: a\n"]).at_boundary());
        assert!(!after(&["event: a\ndata: {"]).at_boundary());
        assert!(!after(&["event: a\r\n"]).at_boundary());
        assert!(!after(&["event: a\r"]).at_boundary());
        assert!(!after(&["data: 1\n\n", "data: 2"]).at_boundary());
    }

    #[test]
    fn boundaries_split_across_chunks_are_seen() {
        assert!(after(&["data: x", "\n", "\n"]).at_boundary());
        assert!(after(&["data: x\n", "\n"]).at_boundary());
        assert!(after(&["data: x\r", "\n", "\r", "\n"]).at_boundary());
        assert!(!after(&["data: x\r", "\n"]).at_boundary());
        assert!(!after(&["data: 1\n\n", "data: 2\n"]).at_boundary());
        assert!(after(&["d", "a", "t", "a", ":", "\n", "\n"]).at_boundary());
    }

    #[test]
    fn the_ping_itself_leaves_a_boundary() {
        let mut state = FrameBoundary::default();
        state.observe(PING);
        assert!(state.at_boundary());
    }
}
