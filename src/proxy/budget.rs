//! Per-user budget of open proxied streams (security.md rule 18): event streams, WebSocket
//! tunnels and response bodies of unknown length each hold a [`StreamTicket`] for the caller's
//! user id while they are open, so one user cannot hold every descriptor of the server.
//!
//! Taking a ticket is a read-locked hash lookup and one atomic add; responses whose length
//! the agent declared (almost every proxied request) take none.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Users counted past which idle counters are dropped when a new user is added.
const PRUNE_ABOVE: usize = 1024;

/// Open streams per user, against `proxy.max_streams_per_user`.
pub struct StreamBudget {
    /// `0` = unlimited.
    max: usize,
    open: RwLock<HashMap<Arc<str>, Arc<AtomicUsize>>>,
}

impl std::fmt::Debug for StreamBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamBudget").field("max", &self.max).finish_non_exhaustive()
    }
}

/// One open stream of a user; the count drops when it is dropped.
#[derive(Debug)]
pub struct StreamTicket(Option<Arc<AtomicUsize>>);

impl Drop for StreamTicket {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl StreamBudget {
    /// `max` streams per user; `0` = unlimited.
    pub fn new(max: u64) -> Self {
        Self { max: usize::try_from(max).unwrap_or(usize::MAX), open: RwLock::default() }
    }

    /// The most streams one user may hold open.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A ticket for one more stream of `user`, or `None` when they hold `max` already.
    pub fn try_open(&self, user: &Arc<str>) -> Option<StreamTicket> {
        if self.max == 0 {
            return Some(StreamTicket(None));
        }
        let count = self.counter(user);
        if count.fetch_add(1, Ordering::AcqRel) >= self.max {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(StreamTicket(Some(count)))
    }

    /// Streams `user` holds open now.
    pub fn open_streams(&self, user: &str) -> usize {
        let open = self.open.read().unwrap_or_else(PoisonError::into_inner);
        open.get(user).map_or(0, |count| count.load(Ordering::Acquire))
    }

    fn counter(&self, user: &Arc<str>) -> Arc<AtomicUsize> {
        if let Some(count) = self.open.read().unwrap_or_else(PoisonError::into_inner).get(user) {
            return count.clone();
        }
        let mut open = self.open.write().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= PRUNE_ABOVE {
            // Only this map holds the counter of a user without open streams.
            open.retain(|_, count| Arc::strong_count(count) > 1);
        }
        open.entry(user.clone()).or_default().clone()
    }
}

/// A response body that holds a [`StreamTicket`] until it is dropped.
pub struct Ticketed<B> {
    inner: B,
    _ticket: StreamTicket,
}

impl<B> Ticketed<B> {
    pub fn new(inner: B, ticket: StreamTicket) -> Self {
        Self { inner, _ticket: ticket }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Ticketed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_gets_max_streams_and_closing_one_frees_a_place() {
        let budget = StreamBudget::new(2);
        let (alice, bob): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        let first = budget.try_open(&alice).expect("first");
        let _second = budget.try_open(&alice).expect("second");
        assert!(budget.try_open(&alice).is_none(), "third is over the budget");
        assert_eq!(budget.open_streams("alice"), 2, "a refusal holds nothing");
        let _bobs = budget.try_open(&bob).expect("another user is not affected");
        drop(first);
        assert_eq!(budget.open_streams("alice"), 1);
        assert!(budget.try_open(&alice).is_some());
    }

    #[test]
    fn zero_means_unlimited() {
        let budget = StreamBudget::new(0);
        let user: Arc<str> = "u".into();
        let tickets: Vec<_> = (0..1000).map(|_| budget.try_open(&user).expect("open")).collect();
        assert_eq!(tickets.len(), 1000);
    }

    #[test]
    fn idle_users_are_forgotten_once_many_were_seen() {
        let budget = StreamBudget::new(1);
        let keeper: Arc<str> = "keeper".into();
        let _held = budget.try_open(&keeper).expect("open");
        for index in 0..(PRUNE_ABOVE * 2) {
            let user: Arc<str> = format!("user-{index}").into();
            drop(budget.try_open(&user).expect("open"));
        }
        let map_size = budget.open.read().expect("lock").len();
        assert!(map_size <= PRUNE_ABOVE + 1, "{map_size}");
        assert_eq!(budget.open_streams("keeper"), 1, "a user with a stream is kept");
        assert!(budget.try_open(&keeper).is_none());
    }
}
