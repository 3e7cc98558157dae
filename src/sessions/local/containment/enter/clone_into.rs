//! Spawning an agent directly inside its v2 cgroup with `clone3(CLONE_INTO_CGROUP)` (Linux
//! 5.7). Moving a task into a cgroup (a write to `cgroup.procs`) takes the kernel's global
//! cgroup threadgroup lock for writing, which waits for an RCU grace period unless the v2
//! hierarchy is mounted with `favordynmods`: 10–30 ms per start, and concurrent starts queue
//! behind each other. A child born in its cgroup is never moved.
//!
//! The child is a copy of this multi-threaded server. Until `execve` it only makes raw
//! system calls on memory prepared before the clone: no allocation, no locks, and none of
//! glibc's `setuid`/`setgid`/`setgroups`, which would signal the server's other threads to
//! change their credentials too.

use std::ffi::{CString, OsStr, c_char};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

/// `CLONE_INTO_CGROUP` from `<linux/sched.h>` (libc's constant has the wrong type).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`): every field is a 64-bit
/// value on every architecture.
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A command turned into what `execve` takes, built before the clone.
#[derive(Debug)]
pub struct Prepared {
    program: CString,
    /// Owns the strings `argv` points into.
    _args: Vec<CString>,
    argv: Vec<*const c_char>,
    _environment: Vec<CString>,
    envp: Vec<*const c_char>,
    cwd: CString,
    /// `(uid, gid)` to switch to, with supplementary groups dropped.
    credentials: Option<(u32, u32)>,
}

// SAFETY: the raw pointers point into the `CString`s owned by the same value, which never
// change after `prepare`; nothing is shared that a thread could mutate.
unsafe impl Send for Prepared {}

/// What the child reports through the error pipe before it gives up.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Step {
    JoinCgroup = 1,
    Signals,
    Descriptors,
    Directory,
    ProcessGroup,
    Credentials,
    Exec,
}

impl Step {
    fn describe(code: u32) -> &'static str {
        match code {
            1 => "joining the session's cgroups",
            2 => "resetting signals",
            3 => "setting up standard input and output",
            4 => "entering the session directory",
            5 => "starting a process group",
            6 => "switching to the agents' user",
            _ => "executing the agent",
        }
    }
}

/// What became of a spawn.
#[derive(Debug)]
pub enum Outcome {
    Spawned(i32),
    /// No child was made: `clone3` into the cgroup failed (before Linux 5.7, a seccomp
    /// filter, a server without standard descriptors…); spawn the usual way, which reports
    /// a real failure as such.
    NotCloned(io::Error),
    /// The child failed before exec.
    Failed(io::Error),
}

/// Turns `command` (with `env_clear`, an absolute program and a working directory, as
/// the local backend builds it) into its exec form; `None` when it is not of that shape.
pub fn prepare(command: &Command, credentials: Option<(u32, u32)>) -> Option<Prepared> {
    let program = command.get_program();
    if !program.as_bytes().starts_with(b"/") {
        return None;
    }
    let program = c_string(program)?;
    let mut args = vec![program.clone()];
    for arg in command.get_args() {
        args.push(c_string(arg)?);
    }
    let mut environment = Vec::new();
    for (name, value) in command.get_envs() {
        let Some(value) = value else { continue };
        let mut pair = name.as_bytes().to_vec();
        pair.push(b'=');
        pair.extend_from_slice(value.as_bytes());
        environment.push(CString::new(pair).ok()?);
    }
    let cwd = c_string(command.get_current_dir()?.as_os_str())?;
    let pointers = |strings: &[CString]| -> Vec<*const c_char> {
        strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
    };
    let (argv, envp) = (pointers(&args), pointers(&environment));
    Some(Prepared { program, _args: args, argv, _environment: environment, envp, cwd, credentials })
}

fn c_string(text: &OsStr) -> Option<CString> {
    CString::new(text.as_bytes()).ok()
}

/// Starts `prepared` born in the cgroup `cgroup_dir`, with stdin from `/dev/null`, stdout
/// and stderr to `output`, in a new process group; the child first writes itself into
/// `joins` (v1 `cgroup.procs` files of a hybrid host). Returns once the child has exec'd
/// (or failed to).
pub fn spawn(
    prepared: &Prepared,
    cgroup_dir: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    joins: &[BorrowedFd<'_>],
) -> Outcome {
    let null = match std::fs::File::open("/dev/null") {
        Ok(null) => null,
        Err(error) => return Outcome::NotCloned(error),
    };
    let (report_read, report_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(errno) => return Outcome::NotCloned(errno.into()),
    };
    let standard = [null.as_raw_fd(), output.as_raw_fd(), output.as_raw_fd()];
    // dup2 onto itself would keep close-on-exec set; a server started without standard
    // descriptors could hand out 0–2. Such a server takes the usual path.
    if standard.iter().chain([&report_write.as_raw_fd()]).any(|fd| *fd <= 2) {
        return Outcome::NotCloned(io::Error::other("a standard descriptor is not open"));
    }
    let joins: Vec<RawFd> = joins.iter().map(AsRawFd::as_raw_fd).collect();
    let drop_groups = prepared.credentials.is_some() && nix::unistd::geteuid().is_root();
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child gets
    // a copy of this address space and returns here with 0. The argument struct outlives
    // the call and its size is passed with it.
    let pid =
        unsafe { libc::syscall(libc::SYS_clone3, &raw mut args, std::mem::size_of::<CloneArgs>()) };
    if pid < 0 {
        return Outcome::NotCloned(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child: see `child`'s contract; it never returns.
        unsafe { child(prepared, &joins, standard, report_write.as_raw_fd(), drop_groups) }
    }
    let pid = pid as i32;
    drop(report_write);
    let mut report = [0u8; 8];
    match read_full(&report_read, &mut report) {
        Ok(0) => return Outcome::Spawned(pid),
        Ok(_) => {}
        Err(error) => return Outcome::Failed(error),
    }
    // It failed before exec and exited; reap it unless the reaper already did.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
    let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
    let error = io::Error::from_raw_os_error(errno);
    Outcome::Failed(io::Error::new(
        error.kind(),
        format!("while {}: {error}", Step::describe(step)),
    ))
}

fn read_full(from: &OwnedFd, buffer: &mut [u8]) -> io::Result<usize> {
    let mut file = std::fs::File::from(from.try_clone()?);
    let mut filled = 0;
    while filled < buffer.len() {
        match io::Read::read(&mut file, &mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The child between clone and exec.
///
/// # Safety
/// Must run only in the child of `clone3`; every pointer in `prepared` and `joins` is valid
/// (the child's copy of the parent's memory). Uses only system calls, no allocation.
unsafe fn child(
    prepared: &Prepared,
    joins: &[RawFd],
    standard: [RawFd; 3],
    report: RawFd,
    drop_groups: bool,
) -> ! {
    let fail = |step: Step| -> ! {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let mut message = [0u8; 8];
        message[..4].copy_from_slice(&(step as u32).to_ne_bytes());
        message[4..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: write(2) and _exit(2) on our own descriptor and buffer.
        unsafe {
            libc::write(report, message.as_ptr().cast(), message.len());
            libc::_exit(127)
        }
    };
    // SAFETY: each call below is a plain system call on descriptors and strings that exist
    // in this child; glibc's wrappers for these take no locks and allocate nothing.
    unsafe {
        for join in joins {
            if libc::write(*join, b"0".as_ptr().cast(), 1) != 1 {
                fail(Step::JoinCgroup);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const empty,
            0usize,
            8usize,
        ) != 0
            || libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR
        {
            fail(Step::Signals);
        }
        for (target, source) in standard.iter().enumerate() {
            if libc::dup2(*source, target as RawFd) < 0 {
                fail(Step::Descriptors);
            }
        }
        if libc::chdir(prepared.cwd.as_ptr()) != 0 {
            fail(Step::Directory);
        }
        if libc::setpgid(0, 0) != 0 {
            fail(Step::ProcessGroup);
        }
        if let Some((uid, gid)) = prepared.credentials {
            // Raw calls: glibc's wrappers would broadcast the change to the server's threads.
            // Dropping supplementary groups may fail harmlessly, as std lets it.
            if drop_groups {
                libc::syscall(libc::SYS_setgroups, 0usize, 0usize);
            }
            if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
            {
                fail(Step::Credentials);
            }
        }
        libc::execve(prepared.program.as_ptr(), prepared.argv.as_ptr(), prepared.envp.as_ptr());
        fail(Step::Exec)
    }
}
