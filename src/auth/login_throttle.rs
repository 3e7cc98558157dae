//! Failed `POST /auth/login` attempts per client address: past [`MAX_FAILURES`] in a
//! [`WINDOW`], every attempt from that address is refused (429 `too_many_attempts`) until the
//! window ends, right key or not. IPv6 clients count per /64. Memory is bounded: at most
//! `MAX_ADDRESSES` windows are kept; when full, ended windows go, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const MAX_FAILURES: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counts by client address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64.
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

impl LoginThrottle {
    /// `Err(seconds to wait)` when `ip` failed too often in its current window.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(window) = windows.get(&counted_as(ip)) else { return Ok(()) };
        let elapsed = window.started.elapsed();
        if elapsed >= WINDOW || window.failures < MAX_FAILURES {
            return Ok(());
        }
        Err((WINDOW - elapsed).as_secs().max(1))
    }

    /// Counts one failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let ip = counted_as(ip);
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if !windows.contains_key(&ip) && windows.len() >= MAX_ADDRESSES {
            windows.retain(|_, window| now.duration_since(window.started) < WINDOW);
            if windows.len() >= MAX_ADDRESSES
                && let Some(oldest) =
                    windows.iter().min_by_key(|(_, window)| window.started).map(|(ip, _)| *ip)
            {
                windows.remove(&oldest);
            }
        }
        let window = windows.entry(ip).or_insert(Window { started: now, failures: 0 });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window { started: now, failures: 0 };
        }
        window.failures = window.failures.saturating_add(1);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_attempt_is_refused_and_others_are_not_affected() {
        let throttle = LoginThrottle::default();
        let (one, two): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..MAX_FAILURES {
            assert!(throttle.check(one).is_ok());
            throttle.failed(one);
        }
        let wait = throttle.check(one).expect_err("over the limit");
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(throttle.check(two).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let throttle = LoginThrottle::default();
        for index in 0..MAX_FAILURES {
            throttle.failed(format!("2001:db8::{index:x}").parse().unwrap());
        }
        assert!(throttle.check("2001:db8::ffff:1".parse().unwrap()).is_err());
        assert!(throttle.check("2001:db8:0:1::1".parse().unwrap()).is_ok());
        for _ in 0..MAX_FAILURES {
            throttle.failed("::ffff:192.0.2.9".parse().unwrap());
        }
        assert!(throttle.check("192.0.2.9".parse().unwrap()).is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let throttle = LoginThrottle::default();
        for index in 0..(MAX_ADDRESSES as u32 + 500) {
            throttle.failed(IpAddr::V4(index.into()));
        }
        assert_eq!(throttle.len(), MAX_ADDRESSES);
    }
}
