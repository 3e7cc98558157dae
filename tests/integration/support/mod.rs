//! Shared test helpers: waiting on conditions with deadlines, locating the built binary,
//! starting servers.

#![allow(dead_code)]

pub mod fake_github;
pub mod fake_kube;
pub mod fake_slack;
pub mod postgres;
pub mod server;
pub mod sessions;

use std::future::Future;
use std::time::{Duration, Instant};

/// A plaintext static-key entry for a test configuration.
pub fn key(
    key: &str,
    user: &str,
    role: &str,
    permissions: &[&str],
) -> agentapi_proxy::config::ApiKeyEntry {
    agentapi_proxy::config::ApiKeyEntry {
        key: Some(key.into()),
        user_id: user.into(),
        role: role.into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        ..agentapi_proxy::config::ApiKeyEntry::default()
    }
}

/// The `agentapi-proxy` binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_agentapi-proxy")
}

/// For a test that needs something this host may lack (root, nginx, IPv6, ...): `true` when
/// `lacking` is `None`. A test must not pass without checking anything: under `CI=true`
/// (where `.ci/run` provides everything) a lack fails the test; elsewhere it says why it did
/// not run.
pub fn host_can_run(lacking: Option<&str>) -> bool {
    let Some(lacking) = lacking else { return true };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{lacking}; CI must provide it");
    eprintln!("not run: {lacking}");
    false
}

/// Polls `check` until it yields `Some`, or panics with `what` once `deadline` has passed.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < give_up, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
