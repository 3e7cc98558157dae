//! Header rewriting on the proxy path, done in place on the `HeaderMap`: hop-by-hop removal
//! (including the names `Connection` lists), credential stripping, `Host`, the
//! `X-Forwarded-*` family with trusted-proxy handling, and the response-side filter that drops
//! agents' `Set-Cookie` and `Access-Control-*` (sessions.md "Proxying").

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses what `config::parse_cidr` accepts (a bare address is a /32 or /128).
    pub fn parse(text: &str) -> Option<Self> {
        let (network, prefix) = crate::config::parse_cidr(text)?;
        Some(Self { network: network.to_canonical(), prefix })
    }

    /// Whether `ip` lies in this network; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The client end of a connection, prepared once per connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ip: IpAddr,
    /// Whether `ip` is in `proxy.trusted_proxies` (its forwarding headers are kept).
    pub trusted: bool,
    /// `ip` as an `X-Forwarded-For` entry.
    pub forwarded_for: HeaderValue,
}

impl Peer {
    pub fn new(address: SocketAddr, trusted_proxies: &[Cidr]) -> Self {
        let ip = address.ip().to_canonical();
        let forwarded_for = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip, trusted: trusted_proxies.iter().any(|cidr| cidr.contains(ip)), forwarded_for }
    }

    fn text(&self) -> &str {
        self.forwarded_for.to_str().unwrap_or("unknown")
    }
}

/// What the request rewrite needs to know besides the headers themselves.
pub struct RequestContext<'a> {
    /// The endpoint's loopback `Host` ([`crate::endpoint::Endpoint::host_header`]), the only
    /// `Host` an agent ever sees.
    pub upstream_host: &'a HeaderValue,
    pub peer: &'a Peer,
    /// Drop `credential_headers`, `Authorization` and `Cookie`.
    pub strip_credentials: bool,
    pub credential_headers: &'a [HeaderName],
    /// The authority of an absolute-form request target, used when no `Host` was sent.
    pub uri_authority: Option<&'a str>,
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has_token(headers, "upgrade")
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether `name` is hop-by-hop: `Connection` and every name it `listed`, `Keep-Alive`,
/// `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, and `Upgrade` unless `upgrading` (then
/// [`restore_upgrade`] puts `Connection: upgrade` back so the next hop sees the request).
fn is_hop_by_hop(name: &HeaderName, listed: &[HeaderName], upgrading: bool) -> bool {
    let fixed = match name.as_str() {
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" => true,
        "upgrade" => !upgrading,
        other => other.starts_with("proxy-"),
    };
    fixed || (listed.contains(name) && !(upgrading && name == header::UPGRADE))
}

fn restore_upgrade(headers: &mut HeaderMap, upgrading: bool) {
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The header names `Connection` lists (rare; an empty Vec does not allocate).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut listed = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',') {
            if let Ok(name) = HeaderName::from_bytes(token.trim().as_bytes()) {
                listed.push(name);
            }
        }
    }
    listed
}

/// Removes every header `doomed` picks, looking at each name once.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let names: Vec<HeaderName> = headers.keys().filter(|name| doomed(name)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// Rewrites a client's request headers for an agent, in place.
pub fn rewrite_request(headers: &mut HeaderMap, context: &RequestContext<'_>, upgrading: bool) {
    let peer = context.peer;
    let listed = connection_listed(headers);
    remove_where(headers, |name| {
        is_hop_by_hop(name, &listed, upgrading)
            || (context.strip_credentials && is_credential(name, context.credential_headers))
            || (!peer.trusted && is_forwarding(name))
    });
    let client_host = match headers.get(header::HOST) {
        Some(host) => Some(host.clone()),
        None => context.uri_authority.and_then(|a| HeaderValue::from_str(a).ok()),
    };
    let prior_forwarded_for = if peer.trusted { forwarded_for_chain(headers) } else { None };
    restore_upgrade(headers, upgrading);
    headers.insert(header::HOST, context.upstream_host.clone());
    match prior_forwarded_for {
        Some(prior) => set(headers, &X_FORWARDED_FOR, &format!("{prior}, {}", peer.text())),
        None => {
            headers.insert(&X_FORWARDED_FOR, peer.forwarded_for.clone());
        }
    }
    if let Some(host) = client_host
        && !(peer.trusted && headers.contains_key(&X_FORWARDED_HOST))
    {
        headers.insert(&X_FORWARDED_HOST, host);
    }
    if !(peer.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

fn is_credential(name: &HeaderName, credential_headers: &[HeaderName]) -> bool {
    name == header::AUTHORIZATION || name == header::COOKIE || credential_headers.contains(name)
}

/// `X-Forwarded-*` and `Forwarded`: only a trusted proxy in front may set them.
fn is_forwarding(name: &HeaderName) -> bool {
    name == FORWARDED || name.as_str().starts_with("x-forwarded-")
}

/// The `X-Forwarded-For` entries a trusted proxy sent, joined; `None` when there are none.
fn forwarded_for_chain(headers: &HeaderMap) -> Option<String> {
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .collect();
    (!prior.is_empty()).then(|| prior.join(", "))
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    // Addresses and header-derived text are always valid header values; skip if not.
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Rewrites an agent's response headers, in place: hop-by-hop (keeping the upgrade pair of a
/// `101`), `Set-Cookie`, and every `Access-Control-*` (CORS is the proxy's job).
pub fn rewrite_response(headers: &mut HeaderMap, upgrading: bool) {
    let listed = connection_listed(headers);
    remove_where(headers, |name| {
        is_hop_by_hop(name, &listed, upgrading)
            || name == header::SET_COOKIE
            || name.as_str().starts_with("access-control-")
    });
    restore_upgrade(headers, upgrading);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    /// Only the hop-by-hop part of the rewrites.
    fn remove_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
        let listed = connection_listed(headers);
        remove_where(headers, |name| is_hop_by_hop(name, &listed, upgrading));
        restore_upgrade(headers, upgrading);
    }

    fn peer(address: &str, trusted: bool) -> Peer {
        let ip: IpAddr = address.parse().unwrap();
        let trusted_all = [Cidr::parse("0.0.0.0/0").unwrap(), Cidr::parse("::/0").unwrap()];
        Peer::new(SocketAddr::new(ip, 40000), if trusted { &trusted_all } else { &[] })
    }

    fn context(peer: &Peer) -> RequestContext<'_> {
        static KEY: HeaderName = HeaderName::from_static("x-api-key");
        static HOST: HeaderValue = HeaderValue::from_static("127.0.0.1:9001");
        RequestContext {
            upstream_host: &HOST,
            peer,
            strip_credentials: true,
            credential_headers: std::slice::from_ref(&KEY),
            uri_authority: None,
        }
    }

    /// Header names, sorted (removal reorders a `HeaderMap`).
    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn cidr_matching() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()), "mapped IPv4 counts");
        assert!(!net.contains("::1".parse().unwrap()));
        let host = Cidr::parse("192.168.1.5").unwrap();
        assert!(host.contains("192.168.1.5".parse().unwrap()));
        assert!(!host.contains("192.168.1.6".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(Cidr::parse("::/0").unwrap().contains("2001:db8::1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nonsense"), None);
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "x-other"),
            ("x-secret-hop", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "application/json"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut headers, false);
        assert_eq!(names(&headers), ["accept", "content-type"]);
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection_upgrade() {
        let mut headers = map(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(is_upgrade_request(&headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(get(&headers, "upgrade"), Some("websocket"));
        assert_eq!(get(&headers, "connection"), Some("upgrade"));
        assert_eq!(get(&headers, "x-hop"), None);
        assert_eq!(get(&headers, "sec-websocket-key"), Some("abc"));
        assert!(!is_upgrade_request(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade_request(&map(&[("connection", "upgrade")])));
    }

    #[test]
    fn credentials_are_stripped_and_host_is_the_agents() {
        let mut headers = map(&[
            ("host", "proxy.example:8080"),
            ("x-api-key", "secret"),
            ("authorization", "Bearer t"),
            ("cookie", "a=b"),
            ("accept", "text/html"),
        ]);
        rewrite_request(&mut headers, &context(&peer("203.0.113.7", false)), false);
        assert_eq!(get(&headers, "host"), Some("127.0.0.1:9001"));
        assert_eq!(get(&headers, "x-api-key"), None);
        assert_eq!(get(&headers, "authorization"), None);
        assert_eq!(get(&headers, "cookie"), None);
        assert_eq!(get(&headers, "accept"), Some("text/html"));
        assert_eq!(get(&headers, "x-forwarded-host"), Some("proxy.example:8080"));

        let mut kept = map(&[("authorization", "Bearer t"), ("cookie", "a=b")]);
        let client = peer("203.0.113.7", false);
        let keep = RequestContext { strip_credentials: false, ..context(&client) };
        rewrite_request(&mut kept, &keep, false);
        assert_eq!(get(&kept, "authorization"), Some("Bearer t"));
        assert_eq!(get(&kept, "cookie"), Some("a=b"));
    }

    #[test]
    fn untrusted_peers_lose_their_forwarding_headers() {
        let mut headers = map(&[
            ("host", "evil.example"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "spoofed.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        rewrite_request(&mut headers, &context(&peer("::ffff:198.51.100.2", false)), false);
        assert_eq!(get(&headers, "x-forwarded-for"), Some("198.51.100.2"));
        assert_eq!(get(&headers, "x-forwarded-host"), Some("evil.example"));
        assert_eq!(get(&headers, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&headers, "x-forwarded-port"), None);
        assert_eq!(get(&headers, "forwarded"), None);
    }

    #[test]
    fn trusted_peers_keep_theirs_and_the_peer_is_appended() {
        let mut headers = map(&[
            ("host", "internal:8080"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-forwarded-host", "public.example"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        rewrite_request(&mut headers, &context(&peer("10.0.0.2", true)), false);
        assert_eq!(get(&headers, "x-forwarded-for"), Some("1.2.3.4, 5.6.7.8, 10.0.0.2"));
        assert_eq!(get(&headers, "x-forwarded-host"), Some("public.example"));
        assert_eq!(get(&headers, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&headers, "forwarded"), Some("for=1.2.3.4"));

        let mut bare = map(&[("host", "internal:8080")]);
        rewrite_request(&mut bare, &context(&peer("10.0.0.2", true)), false);
        assert_eq!(get(&bare, "x-forwarded-for"), Some("10.0.0.2"));
        assert_eq!(get(&bare, "x-forwarded-host"), Some("internal:8080"));
        assert_eq!(get(&bare, "x-forwarded-proto"), Some("http"));
    }

    #[test]
    fn absolute_form_authority_stands_in_for_a_missing_host() {
        let mut headers = HeaderMap::new();
        let local = peer("127.0.0.1", false);
        let absolute = RequestContext { uri_authority: Some("evil.example"), ..context(&local) };
        rewrite_request(&mut headers, &absolute, false);
        assert_eq!(get(&headers, "host"), Some("127.0.0.1:9001"));
        assert_eq!(get(&headers, "x-forwarded-host"), Some("evil.example"));
    }

    #[test]
    fn agent_cookies_and_cors_headers_are_dropped() {
        let mut headers = map(&[
            ("content-type", "text/event-stream"),
            ("set-cookie", "session=1"),
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("vary", "Origin"),
        ]);
        rewrite_response(&mut headers, false);
        assert_eq!(names(&headers), ["content-type", "vary"]);
    }
}
