//! The one place where our code runs in a spawned agent between fork and exec: it writes
//! `0` ("this process") into the session's `cgroup.procs` files, which the server opened
//! beforehand, so the agent is inside its cgroups before it runs a single instruction of
//! its own (a hostile agent may fork at once). A descriptor opened by the server keeps the
//! server's credentials for the kernel's permission check (open-time credentials, Linux
//! 5.16+ and stable backports), so this works after std has switched to the agent's uid.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The `cgroup.procs` files a new agent joins; kept open until the spawn returned.
#[derive(Debug, Default)]
pub struct Entry {
    files: Vec<OwnedFd>,
}

impl Entry {
    pub fn new(files: Vec<OwnedFd>) -> Self {
        Self { files }
    }

    /// Makes `command`'s child join the cgroups before exec. Nothing to join keeps the
    /// spawn on `posix_spawn`; a hook forces a fork of the server instead.
    pub fn apply(&self, command: &mut Command) {
        if self.files.is_empty() {
            return;
        }
        let descriptors: Vec<RawFd> = self.files.iter().map(AsRawFd::as_raw_fd).collect();
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
