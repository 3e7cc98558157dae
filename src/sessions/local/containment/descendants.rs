//! The fallback without cgroups: a record of every process of each session (pid and start
//! time), kept up to date by walking the process tree by parent pid on a short tick and
//! whenever a session ends. The server is the child subreaper of its agents, so a process
//! whose parent died is re-parented to the server, not lost to PID 1; such an orphan is
//! claimed by the session whose uid it runs as (`agent.uid_range`) or whose
//! `APX_SESSION_DIR` it still carries. Ending a session stops (SIGSTOP) everything found,
//! looks again for children forked meanwhile, then SIGKILLs the lot.
//!
//! What it can miss: a process that double-forks between two looks, after clearing its
//! environment, under a uid shared with other sessions (docs/security.md).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::super::procfs::{self, ProcStat};

#[derive(Debug, Default)]
struct Record {
    /// pid → start time in clock ticks (the pair names one process; pids are reused).
    members: HashMap<i32, u64>,
    /// The session's own uid (from `agent.uid_range`): every process with it is the session's.
    uid: Option<u32>,
}

/// The processes of every session this server runs.
#[derive(Debug)]
pub struct Records {
    sessions_dir: PathBuf,
    sessions: Mutex<HashMap<String, Record>>,
}

impl Records {
    pub fn new(sessions_dir: PathBuf) -> Self {
        Self { sessions_dir, sessions: Mutex::new(HashMap::new()) }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts recording the processes of `session_id`, whose agent is `leader`.
    pub fn attach(&self, session_id: &str, leader: i32, uid: Option<u32>) {
        let mut record = Record { members: HashMap::new(), uid };
        if let Some(stat) = procfs::stat(leader) {
            record.members.insert(leader, stat.start_ticks);
        }
        let processes = procfs::all_processes();
        extend(&mut record.members, &processes);
        self.sessions().insert(session_id.to_string(), record);
    }

    pub fn forget(&self, session_id: &str) {
        self.sessions().remove(session_id);
    }

    /// One look at the process tree for every session (the tick).
    pub fn refresh(&self) {
        let processes = procfs::all_processes();
        let alive: HashSet<(i32, u64)> =
            processes.iter().map(|process| (process.pid, process.start_ticks)).collect();
        for record in self.sessions().values_mut() {
            record.members.retain(|pid, ticks| alive.contains(&(*pid, *ticks)));
            extend(&mut record.members, &processes);
        }
    }

    /// One round of ending `session_id`: stops everything of it found, looks again for
    /// children forked meanwhile, and kills them all. Returns how many were signalled.
    pub fn kill_round(&self, session_id: &str) -> usize {
        let (mut members, uid) = match self.sessions().get(session_id) {
            Some(record) => (record.members.clone(), record.uid),
            None => (HashMap::new(), None),
        };
        let tag = self.tag(session_id);
        let mut signalled: HashSet<i32> = HashSet::new();
        loop {
            let processes = procfs::all_processes();
            let alive: HashSet<(i32, u64)> = processes
                .iter()
                .filter(|process| !process.is_zombie())
                .map(|process| (process.pid, process.start_ticks))
                .collect();
            members.retain(|pid, ticks| alive.contains(&(*pid, *ticks)));
            for process in &processes {
                if belongs_by_identity(process, uid, &tag) {
                    members.insert(process.pid, process.start_ticks);
                }
            }
            extend(&mut members, &processes);
            let fresh: Vec<i32> =
                members.keys().copied().filter(|pid| !signalled.contains(pid)).collect();
            if fresh.is_empty() {
                break;
            }
            for pid in fresh {
                let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
                signalled.insert(pid);
            }
        }
        for pid in &signalled {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if let Some(record) = self.sessions().get_mut(session_id) {
            record.members = members;
        }
        signalled.len()
    }

    /// The sessions whose directory some live process carries in its environment.
    pub fn sessions_in_environment(&self) -> BTreeSet<String> {
        let prefix = format!("APX_SESSION_DIR={}/", self.sessions_dir.display());
        let me = std::process::id() as i32;
        procfs::all_processes()
            .iter()
            .filter(|process| process.pid != me && process.pid != 1 && !process.is_zombie())
            .filter_map(|process| environment_value(process.pid, &prefix))
            .collect()
    }

    /// The session whose directory `pid` carries in its environment (an adopted agent).
    pub fn session_from_environment(&self, pid: i32) -> Option<String> {
        let prefix = format!("APX_SESSION_DIR={}/", self.sessions_dir.display());
        environment_value(pid, &prefix)
    }

    fn tag(&self, session_id: &str) -> String {
        format!("APX_SESSION_DIR={}", self.sessions_dir.join(session_id).display())
    }
}

/// Adds every live descendant (by parent pid) of the recorded processes.
fn extend(members: &mut HashMap<i32, u64>, processes: &[ProcStat]) {
    let mut children: HashMap<i32, Vec<&ProcStat>> = HashMap::new();
    for process in processes.iter().filter(|process| !process.is_zombie()) {
        children.entry(process.parent).or_default().push(process);
    }
    let mut queue: Vec<i32> = members.keys().copied().collect();
    while let Some(pid) = queue.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if members.insert(child.pid, child.start_ticks).is_none() {
                queue.push(child.pid);
            }
        }
    }
}

/// A process that is the session's whatever its parent: it runs as the session's own uid,
/// or carries the session's directory in its environment.
fn belongs_by_identity(process: &ProcStat, uid: Option<u32>, tag: &str) -> bool {
    let me = std::process::id() as i32;
    if process.pid == me || process.pid == 1 || process.is_zombie() {
        return false;
    }
    if let Some(uid) = uid
        && std::fs::metadata(format!("/proc/{}", process.pid)).is_ok_and(|meta| meta.uid() == uid)
    {
        return true;
    }
    std::fs::read(format!("/proc/{}/environ", process.pid))
        .is_ok_and(|environ| environ.split(|byte| *byte == 0).any(|entry| entry == tag.as_bytes()))
}

/// The value after `prefix` of the first environment entry of `pid` that starts with it.
fn environment_value(pid: i32, prefix: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|byte| *byte == 0).find_map(|entry| {
        let rest = entry.strip_prefix(prefix.as_bytes())?;
        let text = std::str::from_utf8(rest).ok()?;
        (!text.is_empty() && !text.contains('/')).then(|| text.to_string())
    })
}
