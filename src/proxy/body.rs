//! Request bodies: on their way to an agent they are streamed as they arrive, never
//! collected, and cut off with [`BodyTooLarge`] once they pass `proxy.max_body_bytes` (for
//! bodies whose `Content-Length` did not already tell). Every request body, proxied or not,
//! fails with [`BodyStalled`] when no byte arrives for `proxy.body_read_timeout_seconds`
//! (security.md rule 18), so a stalled upload cannot hold its connection for ever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The request body went over the limit while streaming. Travels inside the upstream
/// client's error so [`super::forward`] can answer 413.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// Whether `error` (or anything it was caused by) is a [`BodyTooLarge`].
pub fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    cause::<BodyTooLarge>(error).is_some()
}

/// The client sent no byte of its request body for the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled for {} seconds", .after.as_secs_f64())]
pub struct BodyStalled {
    pub after: Duration,
}

/// How long the request body stalled, when `error` (or anything it was caused by) is a
/// [`BodyStalled`].
pub fn stalled_after(error: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    cause::<BodyStalled>(error).map(|stalled| stalled.after)
}

fn cause<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

/// A request body that fails with [`BodyStalled`] once `limit` passes without a frame. The
/// timer is only created when the body first waits, and only moved when it fires.
pub struct StallLimitedBody<B> {
    inner: B,
    limit: Duration,
    last_frame: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> StallLimitedBody<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        Self { inner, limit, last_frame: Instant::now(), timer: None }
    }
}

impl<B> http_body::Body for StallLimitedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.timer.is_some() {
                    this.last_frame = Instant::now();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let deadline = this.last_frame + this.limit;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = this.last_frame + this.limit;
            if Instant::now() >= deadline {
                return Poll::Ready(Some(Err(BodyStalled { after: this.limit }.into())));
            }
            timer.as_mut().reset(deadline);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails once more than `limit` bytes went through.
pub struct LimitedBody {
    inner: Body,
    limit: u64,
    seen: u64,
}

impl LimitedBody {
    pub fn new(inner: Body, limit: u64) -> Self {
        Self { inner, limit, seen: 0 }
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(BodyTooLarge { limit: this.limit }.into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn bodies_within_the_limit_pass_and_larger_ones_fail() {
        let small = LimitedBody::new(Body::from(vec![b'x'; 10]), 10);
        assert_eq!(small.collect().await.unwrap().to_bytes().len(), 10);

        let chunks = futures_util::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&[b'y'; 4]))),
        );
        let streamed = LimitedBody::new(Body::from_stream(chunks), 10);
        let error = streamed.collect().await.expect_err("over the limit");
        assert!(is_body_too_large(&*error));

        let other: Box<dyn std::error::Error> = "unrelated".into();
        assert!(!is_body_too_large(&*other));
    }

    #[tokio::test]
    async fn a_body_that_stalls_fails_after_the_limit_and_one_that_trickles_does_not() {
        let limit = Duration::from_millis(300);
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let trickle = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                sender.send(Ok(Bytes::from_static(b"x"))).await.expect("send");
            }
        });
        let body = StallLimitedBody::new(Body::from_stream(tokio_stream_from(receiver)), limit);
        let collected = body.collect().await.expect("a trickle within the limit passes");
        assert_eq!(collected.to_bytes().len(), 5, "longer in total than the limit");
        trickle.await.expect("joined");

        let (_sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let body = StallLimitedBody::new(Body::from_stream(tokio_stream_from(receiver)), limit);
        let started = Instant::now();
        let collected = tokio::time::timeout(Duration::from_secs(30), body.collect()).await;
        let error = collected.expect("ends at the limit").expect_err("stalled");
        assert_eq!(stalled_after(&*error), Some(limit), "{error}");
        assert!(started.elapsed() >= limit);
    }

    fn tokio_stream_from(
        mut receiver: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
    }
}
