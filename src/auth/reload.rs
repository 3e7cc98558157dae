//! Keeping the keys file current: it is re-read when its contents change (checked every
//! second) or on SIGHUP. A broken edit keeps the previous keys and logs why.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::api_keys::ApiKeys;

const POLL: Duration = Duration::from_secs(1);

/// Starts watching the keys file (if one is configured); the task ends with `keys`.
pub fn spawn_watcher(keys: &Arc<ApiKeys>) -> anyhow::Result<()> {
    let Some(path) = keys.keys_file().map(|path| path.to_path_buf()) else { return Ok(()) };
    let mut hangups = signal(SignalKind::hangup())
        .map_err(|error| anyhow::anyhow!("cannot listen for SIGHUP: {error}"))?;
    let weak: Weak<ApiKeys> = Arc::downgrade(keys);
    let mut last_seen = std::fs::read(&path).ok();
    tokio::spawn(async move {
        loop {
            let forced = tokio::select! {
                _ = hangups.recv() => true,
                () = tokio::time::sleep(POLL) => false,
            };
            let Some(keys) = weak.upgrade() else { return };
            let contents = std::fs::read(&path).ok();
            if !forced && contents == last_seen {
                continue;
            }
            last_seen = contents;
            match keys.reload() {
                Ok(()) => tracing::info!(path = %path.display(), "API keys reloaded"),
                Err(problem) => tracing::error!(
                    path = %path.display(),
                    problem,
                    "the keys file is invalid; keeping the previous keys"
                ),
            }
        }
    });
    Ok(())
}
