//! The one place where our code runs in a spawned agent between fork and exec, to put the
//! agent inside its session's cgroups before it runs a single instruction of its own (a
//! hostile agent may fork at once). On cgroup v2 the agent is born in its cgroup
//! (`clone_into`); otherwise, and for the v1 hierarchies of a hybrid host, it writes `0`
//! ("this process") into `cgroup.procs` files the server opened beforehand. A descriptor
//! opened by the server keeps the server's credentials for the kernel's permission check
//! (open-time credentials, Linux 5.16+ and stable backports), so this works after the
//! child switched to the agent's uid.

#![allow(unsafe_code)]

mod clone_into;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

/// Set once `clone3` into a cgroup failed here: every later spawn takes the usual path.
static CLONE_INTO_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// The files a new agent's cgroups are entered through; kept open until the spawn returned.
#[derive(Debug, Default)]
pub struct Entry {
    /// The session's v2 cgroup directory, to be born in.
    v2_dir: Option<OwnedFd>,
    /// The v2 cgroup's `cgroup.procs`, written only when the agent cannot be born there.
    v2_procs: Option<OwnedFd>,
    /// `cgroup.procs` of the session's v1 cgroups (hybrid hosts), always written.
    v1_procs: Vec<OwnedFd>,
}

impl Entry {
    pub fn new(v2: Option<(OwnedFd, OwnedFd)>, v1_procs: Vec<OwnedFd>) -> Self {
        let (v2_dir, v2_procs) = v2.unzip();
        Self { v2_dir, v2_procs, v1_procs }
    }

    /// Spawns `command` (its environment cleared, its program absolute, its directory set)
    /// inside the session's cgroups with stdin from `/dev/null`, stdout and stderr into
    /// `output`, as the leader of a new process group, switching to `credentials`
    /// (`(uid, gid)`, also set on `command`) when given. Returns the agent's pid.
    pub fn spawn(
        &self,
        mut command: Command,
        output: OwnedFd,
        credentials: Option<(u32, u32)>,
    ) -> anyhow::Result<i32> {
        if let Some(v2_dir) = &self.v2_dir
            && !CLONE_INTO_UNAVAILABLE.load(Ordering::Relaxed)
            && let Some(prepared) = clone_into::prepare(&command, credentials)
        {
            let joins: Vec<BorrowedFd<'_>> = self.v1_procs.iter().map(AsFd::as_fd).collect();
            match clone_into::spawn(&prepared, v2_dir.as_fd(), output.as_fd(), &joins) {
                clone_into::Outcome::Spawned(pid) => return Ok(pid),
                clone_into::Outcome::Failed(error) => {
                    return Err(error).context("while spawning the agent");
                }
                clone_into::Outcome::NotCloned(error) => {
                    CLONE_INTO_UNAVAILABLE.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        %error,
                        "cannot start agents inside their cgroup (clone3 CLONE_INTO_CGROUP); \
                         moving them in instead, which makes each start wait for the kernel"
                    );
                }
            }
        }
        let shared = output.try_clone().context("while sharing the output pipe")?;
        command.stdin(Stdio::null()).stdout(shared).stderr(output).process_group(0);
        self.join_before_exec(&mut command);
        let child = command.spawn().context("while spawning the agent")?;
        i32::try_from(child.id()).context("pid out of range")
    }

    /// Makes `command`'s child write itself into every `cgroup.procs` before exec. Nothing
    /// to join keeps the spawn on `posix_spawn`; a hook forces a fork of the server instead.
    fn join_before_exec(&self, command: &mut Command) {
        let descriptors: Vec<RawFd> =
            self.v2_procs.iter().chain(&self.v1_procs).map(AsRawFd::as_raw_fd).collect();
        if descriptors.is_empty() {
            return;
        }
        // SAFETY: the hook runs in the forked child, which has one thread; it only calls
        // write(2), which is async-signal-safe, on descriptors the parent keeps open until
        // `spawn` returns (`self` outlives the spawn), and it allocates nothing (the vector
        // was built before the fork; a failed write becomes an `io::Error` from errno).
        unsafe {
            command.pre_exec(move || {
                for descriptor in &descriptors {
                    let written = libc::write(*descriptor, b"0".as_ptr().cast(), 1);
                    if written != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::PathBuf;

    /// A fresh cgroup in the v2 hierarchy beneath this process's own, removed on drop;
    /// `None` (with a loud note) where none can be made.
    struct ScratchCgroup(PathBuf);

    impl ScratchCgroup {
        fn new(name: &str) -> Option<Self> {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
            let mount = mountinfo
                .lines()
                .find(|line| line.contains(" - cgroup2 "))?
                .split(' ')
                .nth(4)?
                .to_string();
            let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let own = own.lines().find_map(|line| line.strip_prefix("0::"))?.to_string();
            let dir = PathBuf::from(mount)
                .join(own.trim_start_matches('/'))
                .join(format!("{name}-{}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => Some(Self(dir)),
                Err(error) => {
                    eprintln!("SKIPPED: cannot create a v2 cgroup at {}: {error}", dir.display());
                    None
                }
            }
        }

        fn entry(&self) -> Entry {
            let dir = std::fs::File::open(&self.0).expect("open the cgroup");
            let procs = std::fs::OpenOptions::new()
                .write(true)
                .open(self.0.join("cgroup.procs"))
                .expect("open cgroup.procs");
            Entry::new(Some((dir.into(), procs.into())), Vec::new())
        }
    }

    impl Drop for ScratchCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    fn output_pipe() -> (std::fs::File, OwnedFd) {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        (std::fs::File::from(read), write)
    }

    #[test]
    fn an_agent_is_born_in_its_cgroup_as_a_group_leader_with_only_its_environment() {
        let Some(cgroup) = ScratchCgroup::new("apx-born-in") else { return };
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", "cat /proc/self/cgroup; echo \"pid=$$ pgid=$(cut -d' ' -f5 /proc/$$/stat) $GREETING\""])
            .env_clear()
            .env("GREETING", "hello")
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/");
        let (mut reader, writer) = output_pipe();
        let pid = cgroup.entry().spawn(command, writer, None).expect("spawn");
        assert!(!CLONE_INTO_UNAVAILABLE.load(Ordering::Relaxed), "clone3 was not used");
        let mut output = String::new();
        reader.read_to_string(&mut output).expect("read");
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        let leaf = cgroup.0.file_name().and_then(|name| name.to_str()).expect("name");
        assert!(
            output.lines().any(|line| line.starts_with("0::/") && line.ends_with(leaf)),
            "not in its cgroup: {output}"
        );
        let pgid = output
            .split_whitespace()
            .find_map(|word| word.strip_prefix("pgid="))
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        let own = output.lines().last().unwrap_or_default();
        assert!(own.contains(&format!("pid={pid} ")), "unexpected output: {output}");
        assert!(own.ends_with("hello"), "the environment was not passed: {output}");
        assert_eq!(pgid, pid.to_string(), "not a group leader: {output}");
    }

    #[test]
    fn a_program_that_cannot_be_executed_is_an_error_and_leaves_no_child() {
        let Some(cgroup) = ScratchCgroup::new("apx-no-exec") else { return };
        let mut command = Command::new("/nonexistent/agent");
        command.env_clear().current_dir("/");
        let (_reader, writer) = output_pipe();
        let error = cgroup.entry().spawn(command, writer, None).expect_err("must fail");
        assert!(format!("{error:#}").contains("executing the agent"), "{error:#}");
        let members = std::fs::read_to_string(cgroup.0.join("cgroup.procs")).expect("read");
        assert_eq!(members.trim(), "", "the failed child is still there");
    }
}
