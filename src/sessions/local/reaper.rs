//! Collecting exit statuses: each agent is the leader of its own process group, and the
//! reaper waits on whole groups, so the agent's status reaches its supervisor and the
//! orphans it leaves behind (reparented to us as child subreaper) never linger as zombies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use super::procfs;
use crate::sessions::backend::Exit;

/// Makes this process the reaper of its orphaned descendants (`PR_SET_CHILD_SUBREAPER`),
/// so an agent's grandchildren stay visible to us and can be killed and reaped.
pub fn become_child_subreaper() -> anyhow::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|errno| anyhow::anyhow!("prctl(PR_SET_CHILD_SUBREAPER) failed: {errno}"))
}

/// A handle to the reaping task; cheap to clone. The task ends when the last handle drops.
#[derive(Debug, Clone)]
pub struct Reaper {
    inner: Arc<ReaperState>,
}

/// What the reaping task and its handles share.
#[derive(Debug)]
struct ReaperState {
    groups: Mutex<HashMap<i32, Watched>>,
    /// Also reap zombie children outside agent groups (only safe when every child of this
    /// process is an agent or an inherited orphan, as in the `server` binary).
    sweep_orphans: bool,
}

#[derive(Debug)]
struct Watched {
    leader: i32,
    /// Taken when the leader's status was delivered (or nobody waits any more).
    exit: Option<oneshot::Sender<Exit>>,
    leader_reaped: bool,
}

impl Reaper {
    /// Starts the reaping task on the current runtime.
    pub fn start(sweep_orphans: bool) -> anyhow::Result<Self> {
        let mut child_signals = signal(SignalKind::child())
            .map_err(|error| anyhow::anyhow!("cannot listen for SIGCHLD: {error}"))?;
        let inner = Arc::new(ReaperState { groups: Mutex::new(HashMap::new()), sweep_orphans });
        let weak: Weak<ReaperState> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                reap_once(&inner, true);
                drop(inner);
                tokio::select! {
                    _ = child_signals.recv() => {}
                    // Signals coalesce; a slow sweep catches anything a burst hid.
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Ok(Self { inner })
    }

    /// Watches the process group led by `leader` (a child of ours); the receiver gets the
    /// leader's exit status.
    pub fn watch(&self, leader: i32) -> oneshot::Receiver<Exit> {
        let (sender, receiver) = oneshot::channel();
        let mut watched = Watched { leader, exit: Some(sender), leader_reaped: false };
        let mut groups = self.groups();
        // The agent may have ended before it was watched (its SIGCHLD already handled).
        if reap_group(leader, &mut watched) {
            groups.insert(leader, watched);
        }
        receiver
    }

    /// Reaps whatever can be reaped now in the watched groups; used while waiting for a
    /// group to vanish.
    pub fn reap_now(&self) {
        reap_once(&self.inner, false);
    }

    /// Reaps whatever can be reaped now, orphans included; used once a group is gone.
    pub fn reap_all_now(&self) {
        reap_once(&self.inner, true);
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Watched>> {
        self.inner.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reaps every exited child in the watched groups; a group whose leader was reaped and that
/// has no child of ours left is no longer watched. With `sweep_orphans`, also zombie
/// children outside those groups (when the reaper was made to look after them).
fn reap_once(inner: &ReaperState, sweep_orphans: bool) {
    let mut groups = inner.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    groups.retain(|group, watched| reap_group(*group, watched));
    if sweep_orphans && inner.sweep_orphans {
        let me = std::process::id() as i32;
        for process in procfs::all_processes() {
            if process.parent == me && process.is_zombie() && !groups.contains_key(&process.group) {
                let _ = waitpid(Pid::from_raw(process.pid), Some(WaitPidFlag::WNOHANG));
            }
        }
    }
}

/// Reaps the exited children in `group`, delivering the leader's status; false once the
/// leader was reaped and no child of ours is left in the group.
fn reap_group(group: i32, watched: &mut Watched) -> bool {
    loop {
        let status = match waitpid(Pid::from_raw(-group), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Err(Errno::ECHILD) => return !watched.leader_reaped,
            Err(Errno::EINTR) => continue,
            Err(error) => {
                tracing::warn!(%error, group, "waitpid on an agent group failed");
                return true;
            }
            Ok(status) => status,
        };
        let exit = match status {
            WaitStatus::Exited(pid, code) => Some((pid, Exit::Code(code))),
            WaitStatus::Signaled(pid, signal, _) => Some((pid, Exit::Signal(signal as i32))),
            _ => None,
        };
        if let Some((pid, exit)) = exit
            && pid.as_raw() == watched.leader
        {
            watched.leader_reaped = true;
            if let Some(sender) = watched.exit.take() {
                let _ = sender.send(exit);
            }
        }
    }
}
