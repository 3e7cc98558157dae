//! Whose listener a connection to an agent's port reaches, and which other ports of the agent
//! range a session listens on (security.md rule 16). What "the session's processes" are is
//! decided in one place, [`session_members`]: the agent's process group today.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;

use super::listeners::{self, Listener};
use super::procfs::{self, ProcStat};

/// Who a connection to `127.0.0.1:port` can land on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOwner {
    /// Nothing that takes such connections listens there.
    Nobody,
    /// Every listener such a connection can land on is held by the session.
    Session,
    /// At least one is held by something else: never talk to that port.
    Stranger,
}

/// A running agent: the process group it leads and the port it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    pub group: i32,
    pub port: u16,
}

/// Who listens on `127.0.0.1:port` (any listener that takes such connections: `127.0.0.1`,
/// `0.0.0.0`, a dual-stack `::`), as seen from the session led by `group`.
pub fn port_owner(group: i32, port: u16) -> PortOwner {
    let reachable: HashSet<u64> = listeners::listeners_on(port)
        .into_iter()
        .filter(|listener| listener.reaches_loopback)
        .map(|listener| listener.inode)
        .collect();
    if reachable.is_empty() {
        PortOwner::Nobody
    } else if session_holds(group, &reachable).len() == reachable.len() {
        PortOwner::Session
    } else {
        PortOwner::Stranger
    }
}

/// Of `sockets`, those a process of the session led by `group` holds. The leader (the agent
/// itself, as the startup script `exec`s it) is asked first; the other processes only when
/// it does not hold them all.
pub fn session_holds(group: i32, sockets: &HashSet<u64>) -> HashSet<u64> {
    let mut held: HashSet<u64> =
        procfs::socket_inodes(group).intersection(sockets).copied().collect();
    if held.len() < sockets.len() {
        let snapshot = procfs::all_processes();
        for pid in session_members(group, &snapshot).filter(|pid| *pid != group) {
            held.extend(procfs::socket_inodes(pid).intersection(sockets));
        }
    }
    held
}

/// The live processes of the session whose agent leads `group`, out of `snapshot` (every
/// process, read once per check). A session is its process group today; per-session
/// cgroups would answer from the cgroup's member list here instead.
fn session_members(group: i32, snapshot: &[ProcStat]) -> impl Iterator<Item = i32> + '_ {
    snapshot
        .iter()
        .filter(move |process| process.group == group && !process.is_zombie())
        .map(|process| process.pid)
}

/// The agents that listen on ports of `range` other than their own, each with those ports
/// (sorted). One listener dump; every agent's own sockets are read, and the rest of the
/// sessions' processes only when some listener in the range is not explained by them.
pub fn squatters(agents: &[Agent], range: &RangeInclusive<u16>) -> Vec<(Agent, Vec<u16>)> {
    let in_range: Vec<Listener> = listeners::all_listeners()
        .into_iter()
        .filter(|listener| range.contains(&listener.port))
        .collect();
    let sockets: HashSet<u64> = in_range.iter().map(|listener| listener.inode).collect();
    let mut held: HashMap<i32, HashSet<u64>> = agents
        .iter()
        .map(|agent| {
            let own = procfs::socket_inodes(agent.group).intersection(&sockets).copied().collect();
            (agent.group, own)
        })
        .collect();
    let explained: HashSet<u64> = held.values().flatten().copied().collect();
    let unexplained: HashSet<u64> = sockets.difference(&explained).copied().collect();
    if !unexplained.is_empty() {
        let snapshot = procfs::all_processes();
        for agent in agents {
            let found: Vec<u64> = session_members(agent.group, &snapshot)
                .filter(|pid| *pid != agent.group)
                .flat_map(|pid| {
                    procfs::socket_inodes(pid)
                        .intersection(&unexplained)
                        .copied()
                        .collect::<Vec<_>>()
                })
                .collect();
            held.entry(agent.group).or_default().extend(found);
        }
    }
    agents
        .iter()
        .filter_map(|agent| {
            let mine = held.get(&agent.group)?;
            let mut ports: Vec<u16> = in_range
                .iter()
                .filter(|listener| listener.port != agent.port && mine.contains(&listener.inode))
                .map(|listener| listener.port)
                .collect();
            ports.sort_unstable();
            ports.dedup();
            (!ports.is_empty()).then_some((*agent, ports))
        })
        .collect()
}

/// The ports of `range` other than its own that the agent process itself listens on: the
/// check at readiness, which reads only the agent's own descriptors (the periodic
/// [`squatters`] looks at the whole session).
pub fn leader_squats(agent: Agent, range: &RangeInclusive<u16>) -> Vec<u16> {
    let own = procfs::socket_inodes(agent.group);
    let mut ports: Vec<u16> = listeners::all_listeners()
        .into_iter()
        .filter(|listener| {
            listener.port != agent.port
                && range.contains(&listener.port)
                && own.contains(&listener.inode)
        })
        .map(|listener| listener.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn own_group() -> i32 {
        procfs::stat(std::process::id() as i32).expect("stat").group
    }

    #[test]
    fn a_listener_of_the_session_is_its_own_and_of_another_group_a_strangers() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(port_owner(own_group(), port), PortOwner::Session);
        assert_eq!(port_owner(own_group() + 1_000_000, port), PortOwner::Stranger);
        drop(listener);
        assert_eq!(port_owner(own_group(), port), PortOwner::Nobody);
    }

    #[test]
    fn a_listener_that_connections_to_127_0_0_1_never_reach_is_nobodys() {
        let listener = TcpListener::bind("127.0.0.2:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(port_owner(own_group() + 1_000_000, port), PortOwner::Nobody);
    }

    #[test]
    fn listening_on_other_ports_of_the_range_is_squatting() {
        let own = TcpListener::bind("127.0.0.1:0").expect("bind");
        let other = TcpListener::bind("127.0.0.1:0").expect("bind");
        let [own_port, other_port] =
            [&own, &other].map(|listener| listener.local_addr().expect("addr").port());
        let range = own_port.min(other_port)..=own_port.max(other_port);
        let agent = Agent { group: own_group(), port: own_port };
        assert_eq!(squatters(&[agent], &range), vec![(agent, vec![other_port])]);
        let outside = own_port..=own_port;
        assert!(squatters(&[agent], &outside).is_empty(), "only ports of the range count");
        let stranger = Agent { group: own_group() + 1_000_000, port: own_port };
        assert!(squatters(&[stranger], &range).is_empty(), "not the session's listeners");
    }

    #[test]
    fn the_readiness_check_sees_what_the_agent_process_itself_listens_on() {
        let own = TcpListener::bind("127.0.0.1:0").expect("bind");
        let other = TcpListener::bind("127.0.0.1:0").expect("bind");
        let [own_port, other_port] =
            [&own, &other].map(|listener| listener.local_addr().expect("addr").port());
        let range = own_port.min(other_port)..=own_port.max(other_port);
        let me = std::process::id() as i32;
        assert_eq!(leader_squats(Agent { group: me, port: own_port }, &range), vec![other_port]);
        drop(other);
        assert!(leader_squats(Agent { group: me, port: own_port }, &range).is_empty());
    }
}
