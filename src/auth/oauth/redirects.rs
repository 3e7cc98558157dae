//! Where an OAuth flow may send someone: `redirect_uri` of the API-client flow must be on
//! the allow-list (exact, or under a prefix entry ending in `/`), and `return_to` of the
//! browser flow must be a local path (`/x`; not `//x`, no scheme, no backslash, no control
//! bytes).
//!
//! A `redirect_uri` is compared in normal form (security.md row 32), the way a browser will
//! resolve it: scheme and host lower-cased, default ports dropped, percent-encoded unreserved
//! characters decoded, `.`/`..` segments (also `%2e%2e`) resolved. Anything that could be
//! read two ways is refused: encoded `/` or `\\` in the path, a backslash, user info, a
//! fragment, bytes outside printable ASCII, `..` above the root.

use crate::error::ApiError;

/// `redirect_uri` checked against `auth.github.oauth.allowed_redirect_uris`.
pub fn check_redirect_uri(uri: &str, allowed: &[String]) -> Result<(), ApiError> {
    if redirect_allowed(uri, allowed) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_redirect_uri",
            "`redirect_uri` is not in auth.github.oauth.allowed_redirect_uris",
        ))
    }
}

fn redirect_allowed(uri: &str, allowed: &[String]) -> bool {
    if uri.is_empty() || uri.chars().any(char::is_control) {
        return false;
    }
    // An entry listed verbatim is what the operator allowed, whatever its form.
    if allowed.iter().any(|entry| entry == uri) {
        return true;
    }
    let Some(wanted) = NormalUri::parse(uri) else { return false };
    allowed.iter().filter_map(|entry| Some((entry, NormalUri::parse(entry)?))).any(
        |(raw_entry, entry)| {
            let same_origin = wanted.scheme == entry.scheme
                && wanted.host == entry.host
                && wanted.port == entry.port;
            let exact = wanted.path == entry.path && wanted.query == entry.query;
            let under_prefix = raw_entry.ends_with('/')
                && entry.query.is_none()
                && entry.path.ends_with('/')
                && wanted.path.starts_with(&entry.path);
            same_origin && (exact || under_prefix)
        },
    )
}

/// An absolute `scheme://host[:port]/path[?query]` URI in the form it is compared in.
#[derive(Debug, PartialEq, Eq)]
struct NormalUri {
    /// Lower case.
    scheme: String,
    /// Lower case; IPv6 literals keep their brackets.
    host: String,
    /// `None` for no port or the scheme's default one.
    port: Option<u16>,
    /// Starts with `/`; dot segments resolved, unreserved characters decoded, other escapes
    /// in upper case.
    path: String,
    /// As given.
    query: Option<String>,
}

impl NormalUri {
    fn parse(uri: &str) -> Option<Self> {
        if !uri.bytes().all(|byte| byte.is_ascii_graphic()) || uri.contains(['\\', '#']) {
            return None;
        }
        let (scheme, rest) = uri.split_once("://")?;
        let scheme_ok = scheme.bytes().next().is_some_and(|first| first.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let (host, port) = host_and_port(authority, &scheme)?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query.to_string())),
            None => (rest, None),
        };
        Some(Self { scheme, host, port, path: normal_path(path)?, query })
    }
}

/// `host[:port]` without user info or escapes; the scheme's default port reads as none.
fn host_and_port(authority: &str, scheme: &str) -> Option<(String, Option<u16>)> {
    if authority.contains(['@', '%']) {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        match after {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[')
            || host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if !host_ok {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let default = match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let port = port.filter(|port| Some(*port) != default);
    Some((host.to_ascii_lowercase(), port))
}

/// Resolves `path` (empty, or starting with `/`) as RFC 3986 §5.2.4 does, after decoding
/// escaped unreserved characters; `None` when it holds an encoded `/` or `\\`, a bad escape,
/// or climbs above the root.
fn normal_path(path: &str) -> Option<String> {
    let mut kept: Vec<String> = Vec::new();
    let mut ends_in_directory = false;
    for segment in path.split('/').skip(1) {
        let segment = decode_unreserved(segment)?;
        ends_in_directory = matches!(segment.as_str(), "." | "..");
        match segment.as_str() {
            "." => {}
            ".." => {
                kept.pop()?;
            }
            _ => kept.push(segment),
        }
    }
    let mut normal = String::with_capacity(path.len() + 1);
    for segment in &kept {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() || ends_in_directory {
        normal.push('/');
    }
    Some(normal)
}

/// One path segment with `%XX` of unreserved characters decoded and other escapes in upper
/// case; `None` for an encoded `/` or `\\` or a malformed escape.
fn decode_unreserved(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'%' {
            out.push(char::from(bytes[index]));
            index += 1;
            continue;
        }
        let hex = segment.get(index + 1..index + 3)?;
        let value = u8::from_str_radix(hex, 16).ok()?;
        if value == b'/' || value == b'\\' {
            return None;
        }
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(value));
        } else {
            out.push('%');
            out.push_str(&hex.to_ascii_uppercase());
        }
        index += 3;
    }
    Some(out)
}

/// `return_to` of `GET /oauth/login`, when it is a path on this server.
pub fn check_return_to(return_to: &str) -> Result<(), ApiError> {
    let local = return_to.starts_with('/')
        && !return_to.starts_with("//")
        && !return_to.contains('\\')
        && !return_to.chars().any(char::is_control)
        && !return_to.split(['?', '#']).next().unwrap_or_default().contains(':');
    if local {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_return_to", "`return_to` must be a path on this server"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_match_exactly_or_under_a_prefix_entry() {
        let allowed = vec!["https://app.example/cb".to_string(), "http://localhost:3000/".into()];
        for ok in [
            "https://app.example/cb",
            "http://localhost:3000/auth/done",
            "HTTPS://App.Example:443/cb",
            "https://app.example/%63b",
            "http://localhost:3000/a/../b",
            "http://localhost:3000",
        ] {
            assert!(check_redirect_uri(ok, &allowed).is_ok(), "{ok}");
        }
        for bad in [
            "https://app.example/cb/more",
            "https://app.example/c",
            "https://evil.com",
            "http://localhost:30000/",
            "http://localhost:3000/../x",
            "https://app.example:8443/cb",
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://app.example@evil.com/cb",
            "",
        ] {
            assert!(check_redirect_uri(bad, &allowed).is_err(), "{bad}");
        }
        assert!(check_redirect_uri("https://app.example/cb", &[]).is_err(), "empty list");
    }

    #[test]
    fn dot_segments_are_resolved_before_the_prefix_check() {
        let allowed = vec!["http://localhost:3000/app/".to_string()];
        for ok in [
            "http://localhost:3000/app/",
            "http://localhost:3000/app/done?x=1",
            "http://localhost:3000/app/./done",
            "http://localhost:3000/app/x/%2e%2e/done",
            "http://localhost:3000/%61pp/done",
        ] {
            assert!(check_redirect_uri(ok, &allowed).is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost:3000/app/%2e%2e/evil",
            "http://localhost:3000/app/%2E%2E/evil",
            "http://localhost:3000/app/.%2e/evil",
            "http://localhost:3000/app/%2e./evil",
            "http://localhost:3000/app/..",
            "http://localhost:3000/app/%2e%2e",
            "http://localhost:3000/app/..%2fevil",
            "http://localhost:3000/app/%2F..%2Fevil",
            "http://localhost:3000/app/%5C..%5Cevil",
            "http://localhost:3000/app\\..\\evil",
            "http://localhost:3000/app/\t../evil",
            "http://localhost:3000/appendix",
            "http://localhost:3000/app",
            "http://localhost:3000/app/%zz",
        ] {
            assert!(check_redirect_uri(bad, &allowed).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_normal_form_follows_rfc_3986() {
        let parse = |uri: &str| NormalUri::parse(uri);
        let path = |uri: &str| parse(uri).map(|normal| normal.path);
        assert_eq!(path("http://h/a/b/c/./../../g").as_deref(), Some("/a/g"));
        assert_eq!(path("http://h/a/b/..").as_deref(), Some("/a/"));
        assert_eq!(path("http://h/a/.").as_deref(), Some("/a/"));
        assert_eq!(path("http://h").as_deref(), Some("/"));
        assert_eq!(path("http://h/%7Euser/%2d%5f%41").as_deref(), Some("/~user/-_A"));
        assert_eq!(path("http://h/a%3ab%2a").as_deref(), Some("/a%3Ab%2A"));
        assert_eq!(path("http://h//a").as_deref(), Some("//a"));
        assert_eq!(path("http://h/.."), None, "above the root");
        assert_eq!(path("http://h/a/%2e%2e/%2E%2E"), None);
        let normal = parse("HTTP://LocalHost:80/x?Q=%2e%2e").expect("parses");
        assert_eq!(
            normal,
            NormalUri {
                scheme: "http".into(),
                host: "localhost".into(),
                port: None,
                path: "/x".into(),
                query: Some("Q=%2e%2e".into()),
            }
        );
        assert_eq!(
            parse("http://[::1]:3000/").map(|n| (n.host, n.port)),
            Some(("[::1]".into(), Some(3000)))
        );
        for bad in [
            "/relative",
            "//host/x",
            "http:/x",
            "1http://h/",
            "http://h:99999/",
            "http://h:1:2/",
            "http:///x",
            "http://h/é",
            "http://%68/",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn return_to_is_a_local_path() {
        for ok in ["/", "/ui/", "/ui/?tab=a:b", "/sessions/x#top"] {
            assert!(check_return_to(ok).is_ok(), "{ok}");
        }
        for bad in ["//evil.com", "https://evil.com", "/\\evil", "evil", "", "/a\nb", "/x:y"] {
            assert!(check_return_to(bad).is_err(), "{bad:?}");
        }
    }
}
