//! Following one session's Pod: kube-rs's `runtime::watcher` (list, then watch from the
//! list's resourceVersion; a dropped watch resumes from the last version seen, a `410 Gone`
//! relists), with a short retry backoff of our own so an API server that comes back is
//! seen again within seconds. Each event is read with [`super::status::phase_of`].

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::utils::{Backoff, WatchStreamExt};
use kube::runtime::watcher::{self, Event};

use super::error::PodFailure;
use super::status::{PodPhase, phase_of};

/// What a watch saw of the Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Phase(PodPhase),
    /// The Pod is not there (deleted, or never created).
    Gone,
}

/// Retry delays after a failed list or watch: 100 ms doubling to 2 s.
#[derive(Debug)]
struct Retry {
    next: Duration,
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(2);

impl Iterator for Retry {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(LAST_RETRY);
        Some(delay)
    }
}

impl Backoff for Retry {
    fn reset(&mut self) {
        self.next = FIRST_RETRY;
    }
}

/// Follows the Pod `name` until `done` returns a value for what was seen.
/// Errors (the API server away, a 410) are retried by the watcher; they never end it.
pub async fn follow<T>(api: Api<Pod>, name: &str, mut done: impl FnMut(&Seen) -> Option<T>) -> T {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    loop {
        let mut events = watcher::watcher(api.clone(), config.clone())
            .backoff(Retry { next: FIRST_RETRY })
            .boxed();
        let mut listed = false;
        // The watcher does not end by itself; should it, a new one starts with a fresh list.
        while let Some(event) = events.next().await {
            let seen = match event {
                Ok(Event::Init) => {
                    listed = false;
                    continue;
                }
                Ok(Event::InitApply(pod) | Event::Apply(pod)) => {
                    listed = true;
                    Seen::Phase(phase_of(&pod))
                }
                Ok(Event::InitDone) if !listed => Seen::Gone,
                Ok(Event::InitDone) => continue,
                Ok(Event::Delete(_)) => Seen::Gone,
                Err(error) => {
                    tracing::debug!(pod = name, %error, "watching a session Pod; retrying");
                    continue;
                }
            };
            if let Some(value) = done(&seen) {
                return value;
            }
        }
    }
}

/// The failure a Pod that is no longer there reports.
pub fn gone() -> PodFailure {
    PodFailure {
        reason: "Deleted".into(),
        message: "the Pod no longer exists".into(),
        exit_code: None,
    }
}
