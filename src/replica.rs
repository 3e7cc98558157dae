//! Who this server is among several replicas on one PostgreSQL (scale-out.md §3): its id
//! (`server.replica_id`, or the hostname and a random suffix), where other replicas reach it
//! (`server.advertise_url`), and how long its supervision leases hold.

use std::time::Duration;

use crate::config::Config;

/// Longest replica id: PostgreSQL keeps 63 bytes of `application_name`, which carries it.
const MAX_ID_LEN: usize = 63;

/// This replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    /// Empty when not configured.
    pub advertise_url: String,
    /// How long a lease holds without renewal.
    pub lease_ttl: Duration,
}

impl Replica {
    /// From the configuration; an empty `server.replica_id` becomes the hostname and a
    /// random suffix (a restarted replica is a new one: its old leases run out first).
    pub fn from_config(config: &Config) -> Self {
        let id = if config.server.replica_id.is_empty() {
            generated_id()
        } else {
            config.server.replica_id.clone()
        };
        Self {
            id,
            advertise_url: config.server.advertise_url.clone(),
            lease_ttl: Duration::from_secs(config.server.lease_ttl_seconds.max(1)),
        }
    }

    /// How often the leases are renewed (and expired ones looked for).
    pub fn renew_every(&self) -> Duration {
        self.lease_ttl / 3
    }

    pub fn lease_ttl_ms(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Whether `id` may name a replica: 1 to 63 of `[A-Za-z0-9._-]`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
}

fn generated_id() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut name: String = hostname
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
        .take(MAX_ID_LEN - 7)
        .collect();
    if name.is_empty() {
        name = "replica".into();
    }
    let mut suffix = [0u8; 3];
    let _ = getrandom::fill(&mut suffix);
    format!("{name}-{}", hex::encode(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_is_valid_and_differs_per_start() {
        let config = Config::default();
        let first = Replica::from_config(&config);
        let second = Replica::from_config(&config);
        assert!(is_valid_id(&first.id), "{}", first.id);
        assert_ne!(first.id, second.id);
        assert_eq!(first.lease_ttl, Duration::from_secs(15));
        assert_eq!(first.renew_every(), Duration::from_secs(5));
    }

    #[test]
    fn ids_are_short_and_plain() {
        for good in ["a", "proxy-0", "host.example_1"] {
            assert!(is_valid_id(good), "{good}");
        }
        for bad in ["", "has space", "é", "a/b", &"x".repeat(64), "quote'"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
