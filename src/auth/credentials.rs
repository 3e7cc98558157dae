//! Which credential a request presents, in the order api.md fixes: the static key header,
//! then `Authorization: Bearer|token`, then (with the OAuth issue) the session cookie.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};

/// The first credential present in a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    StaticKey(&'a str),
    Bearer(&'a str),
    /// A credential header that cannot be read (not text, or another scheme).
    Malformed,
    Nothing,
}

pub fn presented<'a>(headers: &'a HeaderMap, static_header: Option<&HeaderName>) -> Presented<'a> {
    if let Some(name) = static_header
        && let Some(value) = headers.get(name)
    {
        return match value.to_str() {
            Ok(key) if !key.trim().is_empty() => Presented::StaticKey(key.trim()),
            _ => Presented::Malformed,
        };
    }
    let Some(value) = headers.get(AUTHORIZATION) else { return Presented::Nothing };
    let Ok(text) = value.to_str() else { return Presented::Malformed };
    let Some((scheme, token)) = text.trim().split_once(' ') else { return Presented::Malformed };
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
        let both = headers(&[("x-api-key", "k1"), ("authorization", "Bearer t1")]);
        assert_eq!(presented(&both, Some(&key)), Presented::StaticKey("k1"));
        assert_eq!(presented(&both, None), Presented::Bearer("t1"), "static keys disabled");
        let token = headers(&[("authorization", "token ghp_x")]);
        assert_eq!(presented(&token, Some(&key)), Presented::Bearer("ghp_x"));
        let basic = headers(&[("authorization", "Basic dXNlcjpwdw==")]);
        assert_eq!(presented(&basic, Some(&key)), Presented::Malformed);
        assert_eq!(presented(&HeaderMap::new(), Some(&key)), Presented::Nothing);
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
