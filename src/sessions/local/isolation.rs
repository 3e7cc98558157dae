//! Keeping agents away from the proxy and the host: with `agent.run_as_user` (proxy running
//! as root) agents run as that user with no supplementary groups, in session directories they
//! own; with `agent.limits` they start under `prlimit`. No unsafe code: std drops
//! supplementary groups itself when root sets a uid, and `prlimit` applies the limits.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use nix::unistd::{Gid, Uid, User, chown};

use crate::config::{AgentConfig, AgentLimits};

/// How agent processes are confined.
#[derive(Debug, Clone, Default)]
pub struct Isolation {
    user: Option<(Uid, Gid)>,
    limits: AgentLimits,
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
        Ok(Self { user, limits: agent.limits.clone() })
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

    /// Gives a session's directories to the agents' user.
    pub fn hand_over(&self, dirs: &[&Path]) -> anyhow::Result<()> {
        let Some((uid, gid)) = self.user else { return Ok(()) };
        for dir in dirs {
            chown(*dir, Some(uid), Some(gid))
                .with_context(|| format!("while giving {} to the agent user", dir.display()))?;
        }
        Ok(())
    }

    /// A command that runs `program args...` confined: under `prlimit` when limits are set,
    /// as the agents' user when one is set.
    pub fn command(&self, program: &str) -> Command {
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
            let mut command = Command::new("prlimit");
            command.args(&set).arg("--").arg(program);
            command
        };
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }
}
