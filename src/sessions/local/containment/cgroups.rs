//! Per-session cgroups: which hierarchies this server may create cgroups in (cgroup v2, and
//! the v1 `freezer`, `pids` and `memory` hierarchies of hybrid hosts), one server-owned
//! parent per sessions directory beneath the server's own cgroup, and per session: creating
//! its cgroup with its limits, killing everything in it, telling when it is empty, and
//! removing it. The session cgroup is named after the session id, so it is found again
//! after a restart.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::Digest;

use super::Entry;

/// One cgroup hierarchy in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    V2,
    Freezer,
    Pids,
    Memory,
}

#[derive(Debug)]
struct Hierarchy {
    kind: Kind,
    /// The server-owned parent of the session cgroups.
    parent: PathBuf,
}

/// The hierarchies sessions are placed in, and the limits written into each session cgroup.
#[derive(Debug)]
pub struct Cgroups {
    hierarchies: Vec<Hierarchy>,
    limits: Vec<(Kind, &'static str, String)>,
    /// Controllers enabled for the session cgroups in the v2 parent.
    v2_controllers: Vec<&'static str>,
}

/// What the configuration asks the cgroups to limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted {
    pub max_processes: u64,
    pub memory_bytes: u64,
}

impl Cgroups {
    /// Finds the hierarchies the server can create session cgroups in; `None` when there is
    /// none that can hold a session together (v2 with `cgroup.kill`, or v1 freezer/pids).
    pub fn discover(sessions_dir: &Path, wanted: Wanted) -> Option<Self> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
        let mounts = parse_mounts(&mountinfo);
        let own = parse_membership(&membership);
        let name = parent_name(sessions_dir);
        let locate = |key: &str| -> Option<PathBuf> {
            let (mount, root) = mounts.get(key)?;
            let path = own.get(key)?;
            let relative = path.strip_prefix(root.as_str())?.trim_start_matches('/');
            let mut dir = mount.join(relative);
            // A server that moved itself into its leaf earlier (see below) and was then
            // restarted from inside it keeps the same parent.
            if dir.file_name().is_some_and(|leaf| *leaf == *format!("{name}.server")) {
                dir.pop();
            }
            Some(dir)
        };
        let mut cgroups =
            Cgroups { hierarchies: Vec::new(), limits: Vec::new(), v2_controllers: Vec::new() };
        let add = |cgroups: &mut Cgroups, kind: Kind, own_dir: &Path| -> bool {
            let parent = own_dir.join(&name);
            if fs::create_dir_all(&parent).is_err() {
                return false;
            }
            cgroups.hierarchies.push(Hierarchy { kind, parent });
            true
        };
        // `cgroup.kill` (Linux 5.14) is what holds a v2 session together; the root cgroup
        // has none, so it is looked for in the parent once that exists.
        let v2 = locate("").filter(|own_dir| {
            add(&mut cgroups, Kind::V2, own_dir)
                && (own_dir.join(&name).join("cgroup.kill").exists() || {
                    let _ = fs::remove_dir(own_dir.join(&name));
                    cgroups.hierarchies.clear();
                    false
                })
        });
        if let Some(own_dir) = &v2 {
            let parent = own_dir.join(&name);
            let needed = [("pids", wanted.max_processes), ("memory", wanted.memory_bytes)];
            for (controller, value) in needed {
                if value > 0 && enable_v2_controller(own_dir, &parent, &name, controller) {
                    cgroups.v2_controllers.push(controller);
                }
            }
        }
        let has_v2 =
            |controller: &str, cgroups: &Cgroups| cgroups.v2_controllers.contains(&controller);
        if v2.is_none()
            && let Some(own_dir) = locate("freezer")
        {
            add(&mut cgroups, Kind::Freezer, &own_dir);
        }
        let need_v1_pids = (wanted.max_processes > 0 && !has_v2("pids", &cgroups))
            || cgroups.hierarchies.is_empty();
        if need_v1_pids && let Some(own_dir) = locate("pids") {
            add(&mut cgroups, Kind::Pids, &own_dir);
        }
        if wanted.memory_bytes > 0
            && !has_v2("memory", &cgroups)
            && let Some(own_dir) = locate("memory")
        {
            add(&mut cgroups, Kind::Memory, &own_dir);
        }
        if cgroups.hierarchies.is_empty() {
            return None;
        }
        let mut limits = Vec::new();
        for hierarchy in &cgroups.hierarchies {
            let kind = hierarchy.kind;
            let v2_or = |controller: &str| kind == Kind::V2 && has_v2(controller, &cgroups);
            if wanted.max_processes > 0 && (kind == Kind::Pids || v2_or("pids")) {
                limits.push((kind, "pids.max", wanted.max_processes.to_string()));
            }
            if wanted.memory_bytes > 0 {
                if v2_or("memory") {
                    limits.push((kind, "memory.max", wanted.memory_bytes.to_string()));
                } else if kind == Kind::Memory {
                    limits.push((kind, "memory.limit_in_bytes", wanted.memory_bytes.to_string()));
                }
            }
        }
        cgroups.limits = limits;
        // Made to prove they can be; made again with the first session (no empty parents
        // are left behind by a server that never starts one).
        for hierarchy in &cgroups.hierarchies {
            let _ = fs::remove_dir(&hierarchy.parent);
        }
        Some(cgroups)
    }

    /// True when the sessions are held by cgroup v2 (killed with `cgroup.kill`).
    pub fn is_v2(&self) -> bool {
        self.hierarchies.iter().any(|hierarchy| hierarchy.kind == Kind::V2)
    }

    /// Whether each session's process count is limited by a `pids.max`.
    pub fn limits_processes(&self) -> bool {
        self.limits.iter().any(|(_, file, _)| *file == "pids.max")
    }

    /// Whether each session's memory is limited by its cgroup.
    pub fn limits_memory(&self) -> bool {
        self.limits.iter().any(|(_, file, _)| file.starts_with("memory."))
    }

    /// The parents session cgroups are created in, for the start-up log.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .hierarchies
            .iter()
            .map(|hierarchy| hierarchy.parent.display().to_string())
            .collect();
        parts.join(", ")
    }

    fn dirs(&self, session_id: &str) -> Vec<(Kind, PathBuf)> {
        self.hierarchies.iter().map(|h| (h.kind, h.parent.join(session_id))).collect()
    }

    /// Creates (or reuses) the session's cgroups with their limits; returns what the agent
    /// enters them through: the v2 cgroup's directory and `cgroup.procs`, and the v1
    /// cgroups' `cgroup.procs`, open for writing.
    pub fn create(&self, session_id: &str) -> std::io::Result<Entry> {
        let (mut v2, mut v1) = (None, Vec::new());
        for hierarchy in &self.hierarchies {
            fs::create_dir_all(&hierarchy.parent)?;
            if hierarchy.kind == Kind::V2 && !self.v2_controllers.is_empty() {
                let enable: Vec<String> =
                    self.v2_controllers.iter().map(|controller| format!("+{controller}")).collect();
                fs::write(hierarchy.parent.join("cgroup.subtree_control"), enable.join(" "))?;
            }
            let dir = hierarchy.parent.join(session_id);
            match fs::create_dir(&dir) {
                Err(error) if error.kind() != ErrorKind::AlreadyExists => return Err(error),
                _ => {}
            }
            for (kind, file, value) in &self.limits {
                if *kind == hierarchy.kind {
                    fs::write(dir.join(file), value)?;
                }
            }
            let procs = fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs"))?;
            if hierarchy.kind == Kind::V2 {
                let handle =
                    fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(&dir)?;
                v2 = Some((OwnedFd::from(handle), OwnedFd::from(procs)));
            } else {
                v1.push(OwnedFd::from(procs));
            }
        }
        Ok(Entry::new(v2, v1))
    }

    /// Kills every process of the session now: `cgroup.kill` on v2; on v1 the cgroup is
    /// frozen (when there is a freezer), every member SIGKILLed, and thawed.
    pub fn kill(&self, session_id: &str) {
        let dirs = self.dirs(session_id);
        if let Some((_, dir)) = dirs.iter().find(|(kind, _)| *kind == Kind::V2) {
            ignore_missing(fs::write(dir.join("cgroup.kill"), "1"));
            return;
        }
        let freezer = dirs.iter().find(|(kind, _)| *kind == Kind::Freezer).map(|(_, dir)| dir);
        if let Some(dir) = freezer {
            ignore_missing(fs::write(dir.join("freezer.state"), "FROZEN"));
            wait_frozen(dir);
        }
        for (_, dir) in &dirs {
            for pid in members(dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if let Some(dir) = freezer {
            ignore_missing(fs::write(dir.join("freezer.state"), "THAWED"));
        }
    }

    /// True when no live process is left in the session's cgroups (or they do not exist).
    pub fn is_empty(&self, session_id: &str) -> bool {
        self.dirs(session_id).into_iter().all(|(kind, dir)| match kind {
            Kind::V2 => fs::read_to_string(dir.join("cgroup.events"))
                .map(|events| events.lines().any(|line| line == "populated 0"))
                .unwrap_or(true),
            _ => members(&dir).is_empty(),
        })
    }

    /// Removes the session's cgroups (they must be empty), then the parents when no other
    /// session is left in them.
    pub fn remove(&self, session_id: &str) -> std::io::Result<()> {
        let mut result = Ok(());
        for (_, dir) in self.dirs(session_id) {
            if let Err(error) = fs::remove_dir(&dir)
                && error.kind() != ErrorKind::NotFound
            {
                result = Err(error);
            }
        }
        for hierarchy in &self.hierarchies {
            let _ = fs::remove_dir(&hierarchy.parent);
        }
        result
    }

    /// Names of the session cgroups that exist now, in any hierarchy.
    pub fn existing(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for hierarchy in &self.hierarchies {
            let Ok(entries) = fs::read_dir(&hierarchy.parent) else { continue };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|kind| kind.is_dir())
                    && let Some(name) = entry.file_name().to_str()
                {
                    names.insert(name.to_string());
                }
            }
        }
        names
    }

    /// The session whose cgroup `pid` is in, if it is one of ours.
    pub fn session_of(&self, pid: i32) -> Option<String> {
        let dirs: Vec<PathBuf> =
            self.hierarchies.iter().map(|hierarchy| hierarchy.parent.clone()).collect();
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let name = text.lines().find_map(|line| {
            let path = line.splitn(3, ':').nth(2)?;
            let (parent, leaf) = path.rsplit_once('/')?;
            let parent_leaf = parent.rsplit('/').next()?;
            dirs.iter()
                .any(|dir| dir.file_name().is_some_and(|name| *name == *parent_leaf))
                .then(|| leaf.to_string())
        })?;
        self.existing().contains(&name).then_some(name)
    }
}

/// Kills and removes every session cgroup of the server whose sessions live in
/// `sessions_dir`, wherever it was made (for a server that is gone without ending its
/// sessions, such as a test's). Returns how many session cgroups were removed.
pub fn remove_all(sessions_dir: &Path) -> usize {
    let (Ok(mountinfo), Ok(membership)) =
        (fs::read_to_string("/proc/self/mountinfo"), fs::read_to_string("/proc/self/cgroup"))
    else {
        return 0;
    };
    let mounts = parse_mounts(&mountinfo);
    let own = parse_membership(&membership);
    let name = parent_name(sessions_dir);
    let mut hierarchies = Vec::new();
    for (key, kind) in
        [("", Kind::V2), ("freezer", Kind::Freezer), ("pids", Kind::Pids), ("memory", Kind::Memory)]
    {
        let (Some((mount, root)), Some(path)) = (mounts.get(key), own.get(key)) else { continue };
        let Some(relative) = path.strip_prefix(root.as_str()) else { continue };
        let parent = mount.join(relative.trim_start_matches('/')).join(&name);
        if parent.is_dir() {
            hierarchies.push(Hierarchy { kind, parent });
        }
    }
    let cgroups = Cgroups { hierarchies, limits: Vec::new(), v2_controllers: Vec::new() };
    let sessions = cgroups.existing();
    for session_id in &sessions {
        for _ in 0..500 {
            cgroups.kill(session_id);
            if cgroups.is_empty(session_id) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = cgroups.remove(session_id);
    }
    for hierarchy in &cgroups.hierarchies {
        let _ = fs::remove_dir(&hierarchy.parent);
    }
    sessions.len()
}

/// `agentapi-proxy-<hash of the sessions directory>`: servers with different data
/// directories (parallel tests, several instances) never touch each other's sessions.
fn parent_name(sessions_dir: &Path) -> String {
    let digest = sha2::Sha256::digest(sessions_dir.as_os_str().as_encoded_bytes());
    format!("agentapi-proxy-{}", &hex::encode(digest)[..12])
}

/// On pure v2 with a delegated subtree: enables `controller` for the session cgroups. A
/// cgroup with processes cannot pass controllers on to its children, so when the server's
/// own cgroup refuses, the server moves itself into a leaf beside the parent and retries.
fn enable_v2_controller(own: &Path, parent: &Path, name: &str, controller: &str) -> bool {
    let available = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
    if !available.split_whitespace().any(|known| known == controller) {
        return false;
    }
    let enable = format!("+{controller}");
    let subtree = own.join("cgroup.subtree_control");
    if fs::write(&subtree, &enable).is_err() {
        let leaf = own.join(format!("{name}.server"));
        let moved = fs::create_dir_all(&leaf)
            .and_then(|()| fs::write(leaf.join("cgroup.procs"), "0"))
            .is_ok();
        if !moved || fs::write(&subtree, &enable).is_err() {
            tracing::warn!(controller, cgroup = %own.display(), "cannot enable a cgroup v2 controller for sessions");
            return false;
        }
    }
    fs::write(parent.join("cgroup.subtree_control"), &enable).is_ok()
}

/// Live members of a cgroup (its `cgroup.procs`); none when it does not exist.
fn members(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Waits (briefly) until a v1 freezer reports `FROZEN`.
fn wait_frozen(dir: &Path) {
    for _ in 0..200 {
        match fs::read_to_string(dir.join("freezer.state")) {
            Ok(state) if state.trim() != "FREEZING" => return,
            Err(_) => return,
            Ok(_) => std::thread::sleep(std::time::Duration::from_micros(500)),
        }
    }
}

fn ignore_missing(result: std::io::Result<()>) {
    if let Err(error) = result
        && error.kind() != ErrorKind::NotFound
    {
        tracing::warn!(%error, "could not signal a session cgroup");
    }
}

/// Cgroup mounts by controller (`""` for the v2 hierarchy): mount point and the root of
/// the hierarchy that is mounted there (not `/` inside some containers).
fn parse_mounts(mountinfo: &str) -> HashMap<String, (PathBuf, String)> {
    let mut mounts = HashMap::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(kind)) = (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let entry = (PathBuf::from(point), root.to_string());
        match *kind {
            "cgroup2" => {
                mounts.entry(String::new()).or_insert(entry);
            }
            "cgroup" => {
                let options = right.get(2).copied().unwrap_or_default();
                for option in options.split(',') {
                    if ["freezer", "pids", "memory"].contains(&option) {
                        mounts.entry(option.to_string()).or_insert_with(|| entry.clone());
                    }
                }
            }
            _ => {}
        }
    }
    mounts
}

/// This process's cgroup per controller (`""` for v2), from `/proc/self/cgroup`.
fn parse_membership(text: &str) -> HashMap<String, String> {
    let mut own = HashMap::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            own.insert(String::new(), path.to_string());
        } else {
            for controller in controllers.split(',') {
                own.insert(controller.to_string(), path.to_string());
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_mounts_and_membership_are_read() {
        let mountinfo = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
            37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n\
            41 31 0:38 /inner /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let mounts = parse_mounts(mountinfo);
        assert_eq!(mounts[""], (PathBuf::from("/sys/fs/cgroup/unified"), "/inner".to_string()));
        assert_eq!(mounts["freezer"].0, PathBuf::from("/sys/fs/cgroup/freezer"));
        assert_eq!(mounts["memory"].0, PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(!mounts.contains_key("pids") && !mounts.contains_key("cpu"));
        let own = parse_membership("6:freezer:/\n4:memory:/api/x\n2:cpu,cpuacct:/\n0::/inner/a\n");
        assert_eq!(own[""], "/inner/a");
        assert_eq!(own["memory"], "/api/x");
        assert_eq!(own["cpuacct"], "/");
    }

    #[test]
    fn servers_with_different_sessions_directories_get_different_parents() {
        let one = parent_name(Path::new("/var/lib/a/sessions"));
        assert_eq!(one, parent_name(Path::new("/var/lib/a/sessions")));
        assert_ne!(one, parent_name(Path::new("/var/lib/b/sessions")));
        assert!(one.starts_with("agentapi-proxy-") && one.len() == "agentapi-proxy-".len() + 12);
    }
}
