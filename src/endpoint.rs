//! Where a session's agent answers HTTP: an [`Endpoint`] (host and port) that its backend
//! reports. The proxy path, readiness checks, the initial prompt and status refreshes all
//! connect to an endpoint; none of them assumes the agent is on this host.
//!
//! Connecting and naming are two things: a request is sent to the endpoint's address, but
//! its `Host` header stays the loopback form agentapi accepts (it refuses any other host,
//! whatever address reached it), precomputed once per endpoint so the proxy's hot path does
//! not build it per request.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderValue;

/// The host part of an endpoint: an address, or a name resolved when connecting (a
/// Kubernetes Service).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(Arc<str>),
}

impl fmt::Display for Host {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(IpAddr::V6(address)) => write!(formatter, "[{address}]"),
            Self::Ip(IpAddr::V4(address)) => write!(formatter, "{address}"),
            Self::Name(name) => formatter.write_str(name),
        }
    }
}

/// Where a running agent answers HTTP, with the `Host` header requests to it carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: Host,
    port: u16,
    host_header: HeaderValue,
}

impl Endpoint {
    pub fn new(host: Host, port: u16) -> Self {
        Self { host, port, host_header: loopback_host_header(port) }
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `Host` header every request to this agent carries.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// The address to connect to when the host needs no name resolution.
    pub fn socket_address(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(address) => Some(SocketAddr::new(address, self.port)),
            Host::Name(_) => None,
        }
    }

    /// Connects to the endpoint (a name is resolved first, off the runtime's threads).
    pub async fn connect(&self) -> std::io::Result<tokio::net::TcpStream> {
        match &self.host {
            Host::Ip(address) => {
                tokio::net::TcpStream::connect(SocketAddr::new(*address, self.port)).await
            }
            Host::Name(name) => tokio::net::TcpStream::connect((&**name, self.port)).await,
        }
    }
}

impl fmt::Display for Endpoint {
    /// `host:port`, with an IPv6 address in brackets (a URI authority).
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.host, self.port)
    }
}

/// `127.0.0.1:<port>`, whatever address the agent is reached at: agentapi answers only
/// requests naming a loopback host (`localhost`, `127.0.0.1`, `[::1]`), so an agent in a
/// Pod reached through its Service still must be told it is `127.0.0.1`. The port is the
/// endpoint's, as the agent's own listener sees it.
fn loopback_host_header(port: u16) -> HeaderValue {
    let text = ["127.0.0.1:", itoa::Buffer::new().format(port)].concat();
    HeaderValue::try_from(text).expect("digits, dots and a colon always make a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(port: u16) -> Endpoint {
        Endpoint::new(Host::Ip(std::net::Ipv4Addr::LOCALHOST.into()), port)
    }

    #[test]
    fn the_host_header_stays_loopback_whatever_the_address() {
        assert_eq!(loopback(9001).host_header(), "127.0.0.1:9001");
        assert_eq!(loopback(0).host_header(), "127.0.0.1:0");
        assert_eq!(loopback(65535).host_header(), "127.0.0.1:65535");
        let service = Endpoint::new(Host::Name("s-1.agents.svc".into()), 3284);
        assert_eq!(service.host_header(), "127.0.0.1:3284");
        assert_eq!(service.to_string(), "s-1.agents.svc:3284");
        assert_eq!(service.socket_address(), None);
        let pod = Endpoint::new(Host::Ip("10.1.2.3".parse().unwrap()), 3284);
        assert_eq!(pod.host_header(), "127.0.0.1:3284");
        assert_eq!(pod.socket_address(), Some("10.1.2.3:3284".parse().unwrap()));
    }

    #[test]
    fn an_ipv6_endpoint_is_written_in_brackets() {
        let endpoint = Endpoint::new(Host::Ip("fd00::7".parse().unwrap()), 80);
        assert_eq!(endpoint.to_string(), "[fd00::7]:80");
        assert_eq!(loopback(8080).to_string(), "127.0.0.1:8080");
    }

    #[tokio::test]
    async fn a_named_endpoint_is_resolved_when_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let named = Endpoint::new(Host::Name("localhost".into()), port);
        let by_address = loopback(port);
        for endpoint in [by_address, named] {
            let (connected, accepted) = tokio::join!(endpoint.connect(), listener.accept());
            let stream = connected.expect("connects");
            assert_eq!(stream.peer_addr().expect("peer").port(), port);
            accepted.expect("accepted");
        }
    }
}
