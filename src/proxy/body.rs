//! Request bodies on their way to an agent: streamed as they arrive, never collected, and cut
//! off with [`BodyTooLarge`] once they pass `proxy.max_body_bytes` (for bodies whose
//! `Content-Length` did not already tell).

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// The request body went over the limit while streaming. Travels inside the upstream
/// client's error so [`super::forward`] can answer 413.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// Whether `error` (or anything it was caused by) is a [`BodyTooLarge`].
pub fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<BodyTooLarge>() {
            return true;
        }
        current = error.source();
    }
    false
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
}
