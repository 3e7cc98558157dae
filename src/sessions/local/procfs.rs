//! What `/proc` tells about processes and sockets: process groups, start times, zombies,
//! and which process group owns a listening port. Linux only.

use std::collections::HashSet;
use std::fs;

/// The fields of `/proc/<pid>/stat` the supervisor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub parent: i32,
    pub group: i32,
    /// Start time in clock ticks after boot; with the pid it identifies one process.
    pub start_ticks: u64,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parses `/proc/<pid>/stat`; the command name may hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once(" (")?.0.trim().parse().ok()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... starttime(22), counted from 1 with pid.
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

pub fn stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The uid `pid` runs as (the owner of its `/proc` entry).
pub fn owner(pid: i32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}")).ok().map(|meta| meta.uid())
}

/// Every process on the host, as far as it can be read.
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// Members of process group `group` that are not zombies (a zombie counts as gone).
pub fn live_group_members(group: i32) -> Vec<i32> {
    all_processes()
        .into_iter()
        .filter(|process| process.group == group && !process.is_zombie())
        .map(|process| process.pid)
        .collect()
}

/// True while any non-zombie process is in `group`. A live leader answers at once; the
/// other members (a scan of every process) are looked for only once it is gone.
pub fn group_alive(group: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), None) {
        Err(Errno::ESRCH) => false,
        _ => {
            stat(group).is_some_and(|leader| leader.group == group && !leader.is_zombie())
                || !live_group_members(group).is_empty()
        }
    }
}

/// Socket inodes listening on TCP `port` (IPv4 and IPv6), from `/proc/net/tcp*`: slow (it
/// lists every connection on the host), so only when netlink cannot tell.
fn listening_inodes_from_proc(port: u16) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port =
                local.rsplit_once(':').and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port)
                && *state == "0A"
                && let Ok(inode) = inode.parse()
            {
                inodes.insert(inode);
            }
        }
    }
    inodes
}

/// Whether a process of `group` holds a socket listening on `port`: the agent that answers
/// is ours, not a stranger that took the port first. `None` when nothing is seen listening.
pub fn group_listens_on(group: i32, port: u16) -> Option<bool> {
    let inodes = super::listeners::listening_inodes(port)
        .unwrap_or_else(|| listening_inodes_from_proc(port));
    if inodes.is_empty() {
        return None;
    }
    // The leader is the agent itself (the startup script execs it); the rest of the group
    // is looked at only when it does not hold the socket.
    let owned = holds_socket(group, &inodes)
        || live_group_members(group)
            .into_iter()
            .any(|pid| pid != group && holds_socket(pid, &inodes));
    Some(owned)
}

/// Whether `pid` has one of the sockets `inodes` open.
fn holds_socket(pid: i32, inodes: &HashSet<u64>) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok()).any(|target| {
        target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse::<u64>().ok())
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        let parsed = parse_stat(line).expect("parses");
        assert_eq!(
            parsed,
            ProcStat { pid: 1234, state: 'S', parent: 1, group: 1234, start_ticks: 98765 }
        );
    }

    #[test]
    fn this_process_is_visible_and_alive() {
        let me = std::process::id() as i32;
        let mine = stat(me).expect("own stat");
        assert_eq!(mine.pid, me);
        assert!(!mine.is_zombie());
        assert!(group_alive(mine.group));
    }

    #[test]
    fn a_listening_socket_is_attributed_to_its_process_group() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let group = stat(std::process::id() as i32).expect("stat").group;
        assert_eq!(group_listens_on(group, port), Some(true));
        assert_eq!(group_listens_on(group + 1_000_000, port), Some(false));
    }

    #[test]
    fn proc_net_tcp_tells_the_same_listeners_as_netlink() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let from_proc = listening_inodes_from_proc(port);
        assert_eq!(from_proc.len(), 1);
        assert_eq!(super::super::listeners::listening_inodes(port), Some(from_proc));
    }
}
