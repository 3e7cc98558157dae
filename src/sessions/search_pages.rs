//! The latest `/search` answers, kept until the next write to any session: a dashboard that
//! polls a list nobody changed is answered from memory, without reading a row. Bounded in
//! number and bytes; any session write (insert, state change, delete) drops them all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::store::sessions::SessionFilter;

/// At most this many answers, and this many bytes of them, are kept.
const MAX_PAGES: usize = 32;
const MAX_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub(crate) struct PageCache {
    /// Counts session writes; an answer is valid only in the generation it was read in.
    generation: AtomicU64,
    pages: Mutex<Pages>,
}

#[derive(Debug, Default)]
struct Pages {
    generation: u64,
    bytes: usize,
    answers: HashMap<SessionFilter, Bytes>,
}

impl PageCache {
    /// The generation a page read from now on belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Drops every kept answer; called after each committed write to the sessions tables
    /// (before the writer returns, so whoever learns of the change cannot get an older page).
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn get(&self, filter: &SessionFilter) -> Option<Bytes> {
        let generation = self.generation();
        let pages = self.pages.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if pages.generation != generation {
            return None;
        }
        pages.answers.get(filter).cloned()
    }

    /// Keeps `page`, read for `filter` in `generation`, unless a write came in since.
    pub(crate) fn put(&self, filter: SessionFilter, generation: u64, page: Bytes) {
        if page.len() > MAX_BYTES / 4 || generation != self.generation() {
            return;
        }
        let mut pages = self.pages.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let full = pages.answers.len() >= MAX_PAGES || pages.bytes + page.len() > MAX_BYTES;
        if pages.generation != generation || full {
            pages.answers.clear();
            pages.bytes = 0;
            pages.generation = generation;
        }
        pages.bytes += page.len();
        if let Some(replaced) = pages.answers.insert(filter, page) {
            pages.bytes -= replaced.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(limit: u32) -> SessionFilter {
        SessionFilter { limit, ..SessionFilter::default() }
    }

    #[test]
    fn an_answer_is_kept_until_the_next_write() {
        let cache = PageCache::default();
        let generation = cache.generation();
        cache.put(filter(1), generation, Bytes::from_static(b"one"));
        assert_eq!(cache.get(&filter(1)), Some(Bytes::from_static(b"one")));
        assert_eq!(cache.get(&filter(2)), None);
        cache.invalidate();
        assert_eq!(cache.get(&filter(1)), None);
    }

    #[test]
    fn a_page_read_before_a_write_is_not_kept() {
        let cache = PageCache::default();
        let generation = cache.generation();
        cache.invalidate();
        cache.put(filter(1), generation, Bytes::from_static(b"stale"));
        assert_eq!(cache.get(&filter(1)), None);
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let cache = PageCache::default();
        let generation = cache.generation();
        for limit in 0..(MAX_PAGES as u32 * 2) {
            cache.put(filter(limit), generation, Bytes::from(vec![b'x'; 1000]));
        }
        let pages = cache.pages.lock().expect("lock");
        assert!(pages.answers.len() <= MAX_PAGES && pages.bytes <= MAX_BYTES);
        assert_eq!(pages.bytes, pages.answers.values().map(Bytes::len).sum::<usize>());
        drop(pages);
        cache.put(filter(999), generation, Bytes::from(vec![b'x'; MAX_BYTES]));
        assert_eq!(cache.get(&filter(999)), None, "too large to keep");
    }
}
