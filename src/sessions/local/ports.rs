//! Port reservation for agents over `[start_port, end_port]`. A port is handed out only when
//! no live session holds it and nothing on the host listens on it (agentapi binds every
//! interface, so both `0.0.0.0` and `127.0.0.1` are tried). The check is racy by nature;
//! the supervisor retries on another port when the agent finds its port taken.
//!
//! Why not `portpicker::is_free_tcp` (0.1): it binds only the loopback addresses and calls a
//! port free when *either* `[::1]` or `127.0.0.1` binds, so a port held by an IPv4 wildcard
//! listener (`0.0.0.0`, which is how agentapi listens) is reported free whenever IPv6 works.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::Mutex;

/// Hands out free ports from a range; each reservation is released exactly once.
#[derive(Debug)]
pub struct PortAllocator {
    range: RangeInclusive<u16>,
    state: Mutex<Allocations>,
}

#[derive(Debug)]
struct Allocations {
    held: HashSet<u16>,
    /// Where the next search starts, so recently released ports rest a while.
    cursor: u16,
}

impl PortAllocator {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let cursor = *range.start();
        Self { range, state: Mutex::new(Allocations { held: HashSet::new(), cursor }) }
    }

    /// The ports agents are given.
    pub fn range(&self) -> &RangeInclusive<u16> {
        &self.range
    }

    /// Reserves a free port, preferring `preferred` when it is free and never one of `avoid`
    /// (ports a start already found taken); `None` when the range is exhausted.
    pub fn reserve(&self, preferred: Option<u16>, avoid: &[u16]) -> Option<u16> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(port) = preferred
            && self.range.contains(&port)
            && !state.held.contains(&port)
            && !avoid.contains(&port)
            && is_free(port)
        {
            state.held.insert(port);
            return Some(port);
        }
        let (start, end) = (*self.range.start(), *self.range.end());
        let span = u32::from(end - start) + 1;
        for step in 0..span {
            let offset = (u32::from(state.cursor - start) + step) % span;
            let port = start + offset as u16;
            if !state.held.contains(&port) && !avoid.contains(&port) && is_free(port) {
                state.held.insert(port);
                state.cursor = if port == end { start } else { port + 1 };
                return Some(port);
            }
        }
        None
    }

    /// Marks `port` as held without checking (a re-adopted agent already listens on it).
    pub fn claim(&self, port: u16) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.held.insert(port);
    }

    pub fn release(&self, port: u16) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.held.remove(&port);
    }
}

/// True when nothing listens on `port` on any interface or on loopback.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
        && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_range(len: u16) -> RangeInclusive<u16> {
        // Find `len` consecutive free ports by asking the system for one and probing upward.
        loop {
            let base =
                TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
            if base < 60000 && (base..base + len).all(is_free) {
                return base..=base + len - 1;
            }
        }
    }

    #[test]
    fn ports_are_never_handed_out_twice_and_the_range_can_run_out() {
        let allocator = PortAllocator::new(free_range(3));
        let mut got: Vec<u16> = (0..3).filter_map(|_| allocator.reserve(None, &[])).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 3);
        assert_eq!(allocator.reserve(None, &[]), None, "exhausted");
        allocator.release(got[1]);
        assert_eq!(allocator.reserve(None, &[got[1]]), None, "avoided");
        assert_eq!(allocator.reserve(Some(got[1]), &[]), Some(got[1]));
    }

    #[test]
    fn a_port_someone_else_listens_on_is_skipped() {
        let range = free_range(2);
        let foreign = TcpListener::bind(("127.0.0.1", *range.start())).expect("occupy");
        let allocator = PortAllocator::new(range.clone());
        assert_eq!(allocator.reserve(None, &[]), Some(*range.end()));
        drop(foreign);
    }
}
