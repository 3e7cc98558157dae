//! Which sockets listen on TCP ports, asked of the kernel over netlink (`sock_diag`, TCP
//! sockets in state LISTEN only): port, inode, and whether a connection to `127.0.0.1` can
//! reach it. Reading `/proc/net/tcp` instead walks every connection on the host and took
//! milliseconds per agent start.

use std::net::{Ipv4Addr, Ipv6Addr};

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HEADER_LEN: usize = 16;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u32 = 10;
/// `struct inet_diag_msg`: family, state, timer, retrans, then `inet_diag_sockid` (source
/// port first, big-endian), ..., and the socket's inode last.
const DIAG_MSG_LEN: usize = 72;
const DIAG_MSG_SOURCE_PORT: usize = 4;
const DIAG_MSG_SOURCE_ADDRESS: usize = 8;
const DIAG_MSG_INODE: usize = 68;
/// `INET_DIAG_SKV6ONLY`: an attribute every listening IPv6 socket carries.
const ATTRIBUTE_V6ONLY: u16 = 11;
const ATTRIBUTE_HEADER_LEN: usize = 4;

/// One listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub inode: u64,
    /// A connection to `127.0.0.1:port` can land on it: bound to `127.0.0.1` or `0.0.0.0`,
    /// or to `::` (unless IPv6-only) or their IPv4-mapped forms.
    pub reaches_loopback: bool,
}

/// Every TCP socket (IPv4 and IPv6) listening on the host: one netlink dump per family, or
/// `/proc/net/tcp*` when the kernel cannot be asked over netlink (a restrictive sandbox).
pub fn all_listeners() -> Vec<Listener> {
    let mut listeners = Vec::new();
    for family in [AddressFamily::INET, AddressFamily::INET6] {
        if dump_listeners(family, &mut listeners).is_err() {
            return listeners_from_proc();
        }
    }
    listeners
}

/// The listeners on `port` (see [`all_listeners`]).
pub fn listeners_on(port: u16) -> Vec<Listener> {
    let mut listeners = all_listeners();
    listeners.retain(|listener| listener.port == port);
    listeners
}

/// The listeners from `/proc/net/tcp*`: slow (it lists every connection on the host), so
/// only when netlink cannot tell. Whether an IPv6 socket is IPv6-only is not shown there:
/// `::` counts as reaching IPv4.
fn listeners_from_proc() -> Vec<Listener> {
    let mut listeners = Vec::new();
    for (table, ipv6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let Some((address, port)) = local.rsplit_once(':') else { continue };
            let (Ok(port), Ok(inode)) = (u16::from_str_radix(port, 16), inode.parse()) else {
                continue;
            };
            let Some(words) = hex_words(address) else { continue };
            let reaches_loopback = if ipv6 {
                let mut octets = [0u8; 16];
                for (chunk, word) in octets.chunks_mut(4).zip(&words) {
                    chunk.copy_from_slice(&word.to_ne_bytes());
                }
                let address = Ipv6Addr::from(octets);
                address.is_unspecified()
                    || address.to_ipv4_mapped().is_some_and(|mapped| {
                        mapped == Ipv4Addr::LOCALHOST || mapped.is_unspecified()
                    })
            } else {
                let address = Ipv4Addr::from(words.first().copied().unwrap_or(1).to_ne_bytes());
                address == Ipv4Addr::LOCALHOST || address.is_unspecified()
            };
            listeners.push(Listener { port, inode, reaches_loopback });
        }
    }
    listeners
}

/// `/proc/net/tcp` addresses: 32-bit words in host byte order, printed as 8 hex digits each.
fn hex_words(text: &str) -> Option<Vec<u32>> {
    if text.is_empty() || !text.len().is_multiple_of(8) {
        return None;
    }
    (0..text.len() / 8)
        .map(|at| u32::from_str_radix(text.get(at * 8..at * 8 + 8)?, 16).ok())
        .collect()
}

fn dump_listeners(family: AddressFamily, listeners: &mut Vec<Listener>) -> std::io::Result<()> {
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    rustix::net::sendto(
        &socket,
        &request(family),
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )?;
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let (received, _) = rustix::net::recv(&socket, &mut buffer[..], RecvFlags::empty())?;
        if received == 0 {
            return Ok(());
        }
        let mut messages = &buffer[..received];
        while messages.len() >= NLMSG_HEADER_LEN {
            let length = u32::from_ne_bytes(bytes(messages, 0)) as usize;
            let kind = u16::from_ne_bytes(bytes(messages, 4));
            if length < NLMSG_HEADER_LEN || length > messages.len() {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => return Err(std::io::ErrorKind::Other.into()),
                SOCK_DIAG_BY_FAMILY if length >= NLMSG_HEADER_LEN + DIAG_MSG_LEN => {
                    listeners.push(parse_listener(family, &messages[NLMSG_HEADER_LEN..length]));
                }
                _ => {}
            }
            let aligned = (length + 3) & !3;
            messages = &messages[aligned.min(messages.len())..];
        }
    }
}

/// One `inet_diag_msg` (at least [`DIAG_MSG_LEN`] bytes) and its attributes.
fn parse_listener(family: AddressFamily, message: &[u8]) -> Listener {
    let port = u16::from_be_bytes(bytes(message, DIAG_MSG_SOURCE_PORT));
    let inode = u64::from(u32::from_ne_bytes(bytes(message, DIAG_MSG_INODE)));
    let reaches_loopback = if family == AddressFamily::INET {
        let address = Ipv4Addr::from(bytes::<4>(message, DIAG_MSG_SOURCE_ADDRESS));
        address == Ipv4Addr::LOCALHOST || address.is_unspecified()
    } else {
        let address = Ipv6Addr::from(bytes::<16>(message, DIAG_MSG_SOURCE_ADDRESS));
        match address.to_ipv4_mapped() {
            Some(mapped) => mapped == Ipv4Addr::LOCALHOST || mapped.is_unspecified(),
            // Without the attribute (an old kernel), `::` counts as reaching IPv4 too.
            None => address.is_unspecified() && v6only(&message[DIAG_MSG_LEN..]) != Some(true),
        }
    };
    Listener { port, inode, reaches_loopback }
}

/// The `INET_DIAG_SKV6ONLY` attribute among a message's attributes.
fn v6only(mut attributes: &[u8]) -> Option<bool> {
    while attributes.len() >= ATTRIBUTE_HEADER_LEN {
        let length = usize::from(u16::from_ne_bytes(bytes(attributes, 0)));
        let kind = u16::from_ne_bytes(bytes(attributes, 2));
        if length < ATTRIBUTE_HEADER_LEN || length > attributes.len() {
            return None;
        }
        if kind == ATTRIBUTE_V6ONLY && length > ATTRIBUTE_HEADER_LEN {
            return Some(attributes[ATTRIBUTE_HEADER_LEN] != 0);
        }
        attributes = &attributes[((length + 3) & !3).min(attributes.len())..];
    }
    None
}

/// A dump request for `family`'s TCP sockets in state LISTEN: `nlmsghdr` and
/// `inet_diag_req_v2` (whose socket id stays zero: a dump ignores it).
fn request(family: AddressFamily) -> Vec<u8> {
    const REQUEST_LEN: usize = NLMSG_HEADER_LEN + 56;
    let mut request = Vec::with_capacity(REQUEST_LEN);
    request.extend_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns it
    request.push(family.as_raw() as u8);
    request.push(IPPROTO_TCP);
    request.push(0); // no extensions
    request.push(0);
    request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    request.resize(REQUEST_LEN, 0);
    request
}

fn bytes<const N: usize>(slice: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&slice[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_and_a_closed_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let found = listeners_on(port);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].reaches_loopback);
        assert_ne!(found[0].inode, 0);
        drop(listener);
        assert!(listeners_on(port).is_empty());
    }

    #[test]
    fn what_reaches_ipv4_loopback_is_told_apart() {
        let other = std::net::TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let port = other.local_addr().expect("addr").port();
        let found = listeners_on(port);
        assert_eq!(found.len(), 1);
        assert!(!found[0].reaches_loopback, "127.0.0.2 is not 127.0.0.1");
    }

    #[test]
    fn what_reaches_ipv4_loopback_over_ipv6_sockets_is_told_apart() {
        let Ok(ipv6) = std::net::TcpListener::bind("[::1]:0") else {
            // Not run without IPv6, but never silently on CI, which has it.
            assert!(std::env::var("CI").as_deref() != Ok("true"), "no IPv6; CI must have it");
            eprintln!("not run: no IPv6 on this host");
            return;
        };
        let port = ipv6.local_addr().expect("addr").port();
        let found = listeners_on(port);
        assert_eq!(found.len(), 1);
        assert!(!found[0].reaches_loopback, "[::1] is IPv6 only");
        let dual = std::net::TcpListener::bind("[::]:0").expect("[::1] binds, so [::] does");
        let port = dual.local_addr().expect("addr").port();
        let found = listeners_on(port);
        assert!(found[0].reaches_loopback, "a dual-stack [::] takes IPv4 connections");
    }

    #[test]
    fn proc_net_tcp_tells_the_same_listeners_as_netlink() {
        let loopback = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let other = std::net::TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let ports = [&loopback, &other].map(|listener| listener.local_addr().expect("addr").port());
        let mine = |listeners: Vec<Listener>| {
            let mut listeners: Vec<Listener> =
                listeners.into_iter().filter(|listener| ports.contains(&listener.port)).collect();
            listeners.sort_by_key(|listener| listener.inode);
            listeners
        };
        let mut from_netlink = Vec::new();
        for family in [AddressFamily::INET, AddressFamily::INET6] {
            dump_listeners(family, &mut from_netlink).expect("netlink answers");
        }
        let from_proc = mine(listeners_from_proc());
        assert_eq!(from_proc.len(), 2);
        assert_eq!(mine(from_netlink), from_proc);
    }
}
