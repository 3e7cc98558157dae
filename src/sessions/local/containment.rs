//! Per-session containment (security.md rule 13): everything a session's agent starts
//! belongs to the session, whatever it does to leave its process group (`setsid`, double
//! fork), and ends with it. This module owns the mode decision:
//!
//! - `cgroup_v2`: the server can create cgroups in the v2 hierarchy (beneath its own cgroup,
//!   in a parent named after its sessions directory): each session gets one, killed with
//!   `cgroup.kill`; limits through the v2 `pids`/`memory` controllers when delegated, else
//!   through the v1 hierarchies of a hybrid host.
//! - `cgroup_v1`: no usable v2, but v1 `freezer` (or `pids`): killed by freezing, SIGKILLing
//!   every member and thawing.
//! - `descendants`: no cgroups can be created (or `agent.containment: descendants`): the
//!   record of each session's descendants kept as the child subreaper (`descendants.rs`).
//!
//! The agent is inside its cgroups before it runs any code of its own (`enter.rs`): on v2 it
//! is born there (`clone3(CLONE_INTO_CGROUP)`), because moving a task into a cgroup waits
//! for an RCU grace period (7–25 ms per start, measured) unless the hierarchy is mounted
//! `favordynmods`. Where clone3 is unavailable, and for the v1 hierarchies of a hybrid host,
//! a `pre_exec` hook writes `0` into the session's `cgroup.procs` files. Moving the child
//! after the spawn would race with a fork in its first instructions.

mod cgroups;
mod descendants;
mod enter;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::AgentConfig;
use cgroups::{Cgroups, Wanted};
use descendants::Records;
pub use enter::Entry;

/// How often the fallback looks at the process tree.
const RECORD_TICK: Duration = Duration::from_millis(250);
/// Longest wait for a killed session to be empty.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// How sessions are held together on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    CgroupV2,
    CgroupV1,
    Descendants,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::CgroupV2, Mode::CgroupV1, Mode::Descendants];

    /// The name in logs and in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Mode::CgroupV2 => "cgroup_v2",
            Mode::CgroupV1 => "cgroup_v1",
            Mode::Descendants => "descendants",
        }
    }
}

/// The containment of every session of this server.
#[derive(Debug)]
pub struct Containment {
    mode: Mode,
    cgroups: Option<Cgroups>,
    records: Records,
    /// Running agents (group leaders) and the session each belongs to.
    leaders: Mutex<HashMap<i32, String>>,
    /// Creating and removing session cgroups (and their parent) one at a time.
    cgroup_changes: Mutex<()>,
}

impl Containment {
    /// Decides the mode (`agent.containment`) and logs it.
    pub fn new(agent: &AgentConfig, sessions_dir: &Path) -> anyhow::Result<Arc<Self>> {
        let wanted = Wanted {
            max_processes: agent.limits.max_processes,
            memory_bytes: agent.limits.memory_bytes,
        };
        let cgroups = match agent.containment.as_str() {
            "descendants" => None,
            forced => {
                let found = Cgroups::discover(sessions_dir, wanted);
                if found.is_none() && forced == "cgroup" {
                    anyhow::bail!(
                        "agent.containment is \"cgroup\" but this server cannot create cgroups \
                         (run it as root, or under systemd with Delegate=yes)"
                    );
                }
                found
            }
        };
        let mode = match &cgroups {
            Some(found) if found.is_v2() => Mode::CgroupV2,
            Some(_) => Mode::CgroupV1,
            None => Mode::Descendants,
        };
        let parents = cgroups.as_ref().map(Cgroups::describe).unwrap_or_default();
        tracing::info!(mode = mode.label(), cgroups = %parents, "session containment");
        let containment = Arc::new(Self {
            mode,
            cgroups,
            records: Records::new(sessions_dir.to_path_buf()),
            leaders: Mutex::new(HashMap::new()),
            cgroup_changes: Mutex::new(()),
        });
        if mode == Mode::Descendants {
            spawn_record_ticks(Arc::downgrade(&containment));
        }
        Ok(containment)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether each session's process count is limited by its cgroup (`pids.max`).
    pub fn limits_processes(&self) -> bool {
        self.cgroups.as_ref().is_some_and(Cgroups::limits_processes)
    }

    /// Whether each session's memory is limited by its cgroup.
    pub fn limits_memory(&self) -> bool {
        self.cgroups.as_ref().is_some_and(Cgroups::limits_memory)
    }

    fn leaders(&self) -> std::sync::MutexGuard<'_, HashMap<i32, String>> {
        self.leaders.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates the session's containment before its agent is spawned; the returned entry
    /// makes the agent join it before exec.
    pub fn prepare(&self, session_id: &str) -> anyhow::Result<Entry> {
        let Some(cgroups) = &self.cgroups else { return Ok(Entry::default()) };
        let _changing = self.cgroup_changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        cgroups
            .create(session_id)
            .with_context(|| format!("while creating the cgroup of session {session_id}"))
    }

    /// Records that `leader` is the agent of `session_id` (just spawned, with `uid`).
    pub fn attach(&self, session_id: &str, leader: i32, uid: Option<u32>) {
        self.leaders().insert(leader, session_id.to_string());
        if self.mode == Mode::Descendants {
            self.records.attach(session_id, leader, uid);
        }
    }

    /// Takes back the containment of an agent left running by a previous server process.
    pub fn adopt(&self, leader: i32, uid: Option<u32>) {
        let session = match &self.cgroups {
            Some(cgroups) => cgroups.session_of(leader),
            None => self.records.session_from_environment(leader),
        };
        match session {
            Some(session_id) => self.attach(&session_id, leader, uid),
            None => tracing::warn!(leader, "an adopted agent is outside any session containment"),
        }
    }

    fn session_of(&self, leader: i32) -> Option<String> {
        self.leaders().get(&leader).cloned()
    }

    /// Kills everything of the session of `leader` now, without waiting.
    pub fn kill_now(&self, leader: i32) {
        let Some(session_id) = self.session_of(leader) else { return };
        self.kill_session(&session_id);
    }

    fn kill_session(&self, session_id: &str) {
        match &self.cgroups {
            Some(cgroups) => cgroups.kill(session_id),
            None => {
                self.records.kill_round(session_id);
            }
        }
    }

    /// Kills everything of the session of `leader` and waits until nothing of it is
    /// left, calling `reap` while waiting (our own children must be reaped to vanish).
    pub async fn kill_all(&self, leader: i32, reap: &(dyn Fn() + Sync)) -> bool {
        let Some(session_id) = self.session_of(leader) else { return true };
        self.kill_and_wait(&session_id, reap).await
    }

    async fn kill_and_wait(&self, session_id: &str, reap: &(dyn Fn() + Sync)) -> bool {
        let give_up = Instant::now() + EMPTY_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            self.kill_session(session_id);
            reap();
            let empty = match &self.cgroups {
                Some(cgroups) => cgroups.is_empty(session_id),
                None => self.records.kill_round(session_id) == 0,
            };
            if empty {
                return true;
            }
            if Instant::now() >= give_up {
                tracing::error!(session_id, "processes of the session survived SIGKILL");
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Ends the session of `leader` for good: kills what is left, removes its cgroup and
    /// forgets it.
    pub async fn end(&self, leader: i32, reap: &(dyn Fn() + Sync)) {
        let Some(session_id) = self.session_of(leader) else { return };
        self.end_session(&session_id, reap).await;
        self.leaders().remove(&leader);
    }

    async fn end_session(&self, session_id: &str, reap: &(dyn Fn() + Sync)) {
        self.kill_and_wait(session_id, reap).await;
        match &self.cgroups {
            Some(cgroups) => {
                let _changing =
                    self.cgroup_changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Err(error) = cgroups.remove(session_id) {
                    tracing::warn!(%error, session_id, "could not remove the session's cgroup");
                }
            }
            None => self.records.forget(session_id),
        }
    }

    /// The sessions that have something on this host: their cgroups, or in the fallback
    /// the processes carrying their session directory in their environment. Blocking.
    pub fn sessions_found(&self) -> BTreeSet<String> {
        match &self.cgroups {
            Some(cgroups) => cgroups.existing(),
            None => self.records.sessions_in_environment(),
        }
    }

    /// Ends whatever is left of a session no agent of this server belongs to (left over
    /// from a previous run): kills it, removes its cgroup.
    pub async fn end_orphan(&self, session_id: &str, reap: &(dyn Fn() + Sync)) {
        if self.leaders().values().any(|session| session == session_id) {
            return; // taken back after all: not an orphan
        }
        tracing::info!(session_id, "ending what a previous run left of a session");
        self.end_session(session_id, reap).await;
    }
}

/// Kills and removes the session cgroups a server with `sessions_dir` left behind (it
/// ended without ending its sessions: killed, or a test's in-process server).
pub fn remove_leftover_cgroups(sessions_dir: &Path) -> usize {
    cgroups::remove_all(sessions_dir)
}

/// The fallback's regular look at the process tree, until the containment is dropped.
fn spawn_record_ticks(containment: std::sync::Weak<Containment>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECORD_TICK).await;
            let Some(containment) = containment.upgrade() else { return };
            containment.records.refresh();
        }
    });
}
