//! Which sockets listen on a TCP port, asked of the kernel over netlink (`sock_diag`, TCP
//! sockets in state LISTEN only). Reading `/proc/net/tcp` instead walks every connection
//! on the host and took milliseconds per agent start.

use std::collections::HashSet;

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
const DIAG_MSG_INODE: usize = 68;

/// Inodes of the TCP sockets (IPv4 and IPv6) listening on `port`; `None` when the kernel
/// cannot be asked (no netlink, e.g. under a restrictive sandbox).
pub fn listening_inodes(port: u16) -> Option<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for family in [AddressFamily::INET, AddressFamily::INET6] {
        dump_listeners(family, port, &mut inodes).ok()?;
    }
    Some(inodes)
}

fn dump_listeners(
    family: AddressFamily,
    port: u16,
    inodes: &mut HashSet<u64>,
) -> std::io::Result<()> {
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
                    let message = &messages[NLMSG_HEADER_LEN..length];
                    let source_port = u16::from_be_bytes(bytes(message, DIAG_MSG_SOURCE_PORT));
                    if source_port == port {
                        inodes
                            .insert(u64::from(u32::from_ne_bytes(bytes(message, DIAG_MSG_INODE))));
                    }
                }
                _ => {}
            }
            let aligned = (length + 3) & !3;
            messages = &messages[aligned.min(messages.len())..];
        }
    }
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
        let found = listening_inodes(port).expect("netlink answers");
        assert_eq!(found.len(), 1, "{found:?}");
        drop(listener);
        assert!(listening_inodes(port).expect("netlink answers").is_empty());
    }

    #[test]
    fn ipv6_listeners_are_found_too() {
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else { return };
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(listening_inodes(port).expect("netlink answers").len(), 1);
    }
}
