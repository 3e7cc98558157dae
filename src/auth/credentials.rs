//! Which credential a request presents, in the order api.md fixes: the static key header,
//! then `Authorization: Bearer|token` (or `auth.github.token_header` when it names another
//! header), then the browser session cookie. The first one present decides.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};

use super::oauth::cookie;

/// Where credentials may arrive besides `Authorization`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sources<'a> {
    pub static_header: Option<&'a HeaderName>,
    /// `auth.github.token_header`, when it is not `Authorization`.
    pub token_header: Option<&'a HeaderName>,
    /// Name of the browser session cookie, when the OAuth flows are configured.
    pub session_cookie: Option<&'a str>,
}

/// The first credential present in a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    StaticKey(&'a str),
    Bearer(&'a str),
    SessionCookie(&'a str),
    /// A credential header that cannot be read (not text, or another scheme).
    Malformed,
    Nothing,
}

pub fn presented<'a>(headers: &'a HeaderMap, sources: Sources<'_>) -> Presented<'a> {
    if let Some(name) = sources.static_header
        && let Some(value) = headers.get(name)
    {
        return match value.to_str() {
            Ok(key) if !key.trim().is_empty() => Presented::StaticKey(key.trim()),
            _ => Presented::Malformed,
        };
    }
    if let Some(value) = headers.get(AUTHORIZATION) {
        return bearer(value, false);
    }
    if let Some(name) = sources.token_header
        && let Some(value) = headers.get(name)
    {
        return bearer(value, true);
    }
    if let Some(name) = sources.session_cookie
        && let Some(value) = cookie(headers, name)
    {
        return Presented::SessionCookie(value);
    }
    Presented::Nothing
}

/// `Bearer <t>` or `token <t>`; a bare token too where `bare_allowed` (a custom header).
fn bearer(value: &http::HeaderValue, bare_allowed: bool) -> Presented<'_> {
    let Ok(text) = value.to_str() else { return Presented::Malformed };
    let text = text.trim();
    let Some((scheme, token)) = text.split_once(' ') else {
        return if bare_allowed && !text.is_empty() {
            Presented::Bearer(text)
        } else {
            Presented::Malformed
        };
    };
    let token = token.trim();
    if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        && !token.is_empty()
    {
        Presented::Bearer(token)
    } else {
        Presented::Malformed
    }
}

/// GitHub's token shapes: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`, or 40 hex.
pub fn looks_like_github_token(token: &str) -> bool {
    const PREFIXES: &[&str] = &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"];
    PREFIXES.iter().any(|prefix| token.starts_with(prefix))
        || (token.len() == 40 && token.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn the_static_header_wins_then_bearer_then_nothing() {
        let key = HeaderName::from_static("x-api-key");
        let statics = Sources { static_header: Some(&key), ..Sources::default() };
        let both = headers(&[("x-api-key", "k1"), ("authorization", "Bearer t1")]);
        assert_eq!(presented(&both, statics), Presented::StaticKey("k1"));
        assert_eq!(presented(&both, Sources::default()), Presented::Bearer("t1"), "no statics");
        let token = headers(&[("authorization", "token ghp_x")]);
        assert_eq!(presented(&token, statics), Presented::Bearer("ghp_x"));
        let basic = headers(&[("authorization", "Basic dXNlcjpwdw==")]);
        assert_eq!(presented(&basic, statics), Presented::Malformed);
        assert_eq!(presented(&HeaderMap::new(), statics), Presented::Nothing);
    }

    #[test]
    fn the_token_header_and_the_cookie_come_after_authorization() {
        let custom = HeaderName::from_static("x-github-token");
        let sources = Sources {
            token_header: Some(&custom),
            session_cookie: Some("apx_session"),
            ..Sources::default()
        };
        let bare = headers(&[("x-github-token", "ghp_bare"), ("cookie", "apx_session=aps_c")]);
        assert_eq!(presented(&bare, sources), Presented::Bearer("ghp_bare"));
        let cookie_only = headers(&[("cookie", "other=1; apx_session=aps_c")]);
        assert_eq!(presented(&cookie_only, sources), Presented::SessionCookie("aps_c"));
        let broken = headers(&[("authorization", "Basic x"), ("cookie", "apx_session=aps_c")]);
        assert_eq!(presented(&broken, sources), Presented::Malformed, "no falling through");
        assert_eq!(
            presented(&cookie_only, Sources::default()),
            Presented::Nothing,
            "cookies count only with OAuth configured"
        );
    }

    #[test]
    fn github_token_shapes() {
        assert!(looks_like_github_token("ghp_abc"));
        assert!(looks_like_github_token("github_pat_abc"));
        assert!(looks_like_github_token(&"a1".repeat(20)));
        assert!(!looks_like_github_token("ap_alice_123"));
        assert!(!looks_like_github_token(&"g".repeat(40)));
    }
}
