//! Keeping agents away from the proxy and the host: with `agent.run_as_user` (proxy running
//! as root) agents run as that user with no supplementary groups, in session directories they
//! own; with `agent.limits` they start under `prlimit`. No unsafe code: std drops
//! supplementary groups itself when root sets a uid, and `prlimit` applies the limits.
//! Session directories are prepared through directory handles, never by path.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use nix::sys::stat::{Mode, fchmod};
use nix::unistd::{Gid, Uid, User, fchown};

use super::nofollow;
use crate::config::{AgentConfig, AgentLimits};

/// How agent processes are confined.
#[derive(Debug, Clone, Default)]
pub struct Isolation {
    user: Option<(Uid, Gid)>,
    limits: AgentLimits,
    prlimit: PathBuf,
}

impl Isolation {
    pub fn from_config(agent: &AgentConfig) -> anyhow::Result<Self> {
        let user = if agent.run_as_user.is_empty() {
            None
        } else {
            let user = User::from_name(&agent.run_as_user)
                .context("while looking up agent.run_as_user")?
                .with_context(|| format!("no user {:?}", agent.run_as_user))?;
            Some((user.uid, user.gid))
        };
        let path = std::env::var("PATH").unwrap_or_default();
        Ok(Self { user, limits: agent.limits.clone(), prlimit: locate("prlimit", &path) })
    }

    /// Agents run as another user, who must be able to pass through `data_dir`.
    pub fn separate_user(&self) -> bool {
        self.user.is_some()
    }

    /// Lets the agents' user traverse (not list) `dirs` on the way to its session directory.
    pub fn open_path(&self, dirs: &[&Path]) -> anyhow::Result<()> {
        if self.user.is_none() {
            return Ok(());
        }
        for dir in dirs {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .with_context(|| format!("while letting agents pass through {}", dir.display()))?;
        }
        Ok(())
    }

    /// Creates (or finds again) a session's directory `dir` and its `tmp/`, both 0700, and
    /// gives them to the agents' user, or to the session's own uid (`agent.uid_range`) in
    /// the user's group. Everything goes through handles opened without
    /// following links: `dir` sits in the server's own directory, but `tmp` is the agent's
    /// to change, and a `tmp` it replaced with a link is refused, never chmod-ed or chown-ed.
    pub fn hand_over(&self, dir: &Path, session_uid: Option<u32>) -> anyhow::Result<()> {
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
        else {
            anyhow::bail!("{} is not a session directory", dir.display());
        };
        let refused = |what: &str| format!("refusing to prepare {}", dir.join(what).display());
        let session = nofollow::open_dir(parent)
            .and_then(|parent| nofollow::ensure_dir_at(parent, name, 0o700))
            .with_context(|| refused(""))?;
        let tmp =
            nofollow::ensure_dir_at(&session, "tmp", 0o700).with_context(|| refused("tmp"))?;
        for (handle, what) in [(session, ""), (tmp, "tmp")] {
            fchmod(&handle, Mode::from_bits_truncate(0o700)).with_context(|| refused(what))?;
            if let Some((user_uid, gid)) = self.user {
                let uid = session_uid.map_or(user_uid, Uid::from_raw);
                fchown(&handle, Some(uid), Some(gid)).with_context(|| refused(what))?;
            }
        }
        Ok(())
    }

    /// Limits the session's cgroup already applies are not set again as rlimits: a
    /// per-uid `RLIMIT_NPROC` would count every agent of a shared user (finding 6). Without
    /// a memory cgroup, `memory_bytes` falls back to `RLIMIT_AS` unless that is set.
    pub fn leave_to_cgroup(&mut self, processes: bool, memory: bool) {
        if processes {
            self.limits.max_processes = 0;
        }
        if !memory && self.limits.memory_bytes > 0 && self.limits.address_space_bytes == 0 {
            tracing::warn!("no memory cgroup: agent.limits.memory_bytes is applied as RLIMIT_AS");
            self.limits.address_space_bytes = self.limits.memory_bytes;
        }
    }

    /// The `(uid, gid)` [`Isolation::command`] switches to, if any.
    pub fn credentials(&self, session_uid: Option<u32>) -> Option<(u32, u32)> {
        self.user.map(|(uid, gid)| (session_uid.unwrap_or(uid.as_raw()), gid.as_raw()))
    }

    /// A command that runs `program args...` confined: under `prlimit` when limits are set,
    /// as the agents' user (or the session's own uid in its group) when one is set.
    pub fn command(&self, program: &Path, session_uid: Option<u32>) -> Command {
        let limits = [
            ("--nproc", self.limits.max_processes),
            ("--nofile", self.limits.open_files),
            ("--as", self.limits.address_space_bytes),
        ];
        let set: Vec<String> = limits
            .iter()
            .filter(|(_, value)| *value > 0)
            .map(|(flag, value)| format!("{flag}={value}"))
            .collect();
        let mut command = if set.is_empty() {
            Command::new(program)
        } else {
            let mut command = Command::new(&self.prlimit);
            command.args(&set).arg("--").arg(program);
            command
        };
        if let Some((user_uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(session_uid.unwrap_or(user_uid.as_raw())).gid(gid.as_raw());
        }
        command
    }
}

/// `program` as found on `path` (agents get the proxy's `PATH`, so they would find the same
/// one), or the name as it is when it is not there or holds a `/`. An absolute program lets the spawn use
/// `posix_spawn` (vfork) instead of forking the whole proxy, which a `PATH` lookup in the
/// child's environment rules out.
pub fn locate(program: &str, path: &str) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let executable = |candidate: &Path| {
        std::fs::metadata(candidate)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    path.split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| executable(candidate))
        .unwrap_or_else(|| PathBuf::from(program))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_located_on_the_path_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        for sub in [&first, &second] {
            std::fs::create_dir(sub).expect("mkdir");
            let tool = sub.join("tool");
            std::fs::write(&tool, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::write(first.join("plain"), "not executable").expect("write");
        let path = format!("relative:{}:{}", first.display(), second.display());
        assert_eq!(locate("tool", &path), first.join("tool"));
        assert_eq!(locate("plain", &path), PathBuf::from("plain"));
        assert_eq!(locate("missing", &path), PathBuf::from("missing"));
        assert_eq!(locate("./tool", &path), PathBuf::from("./tool"));
    }
}
