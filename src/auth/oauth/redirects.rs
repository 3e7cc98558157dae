//! Where an OAuth flow may send someone: `redirect_uri` of the API-client flow must be on
//! the allow-list (exact, or a prefix entry ending in `/`), and `return_to` of the browser
//! flow must be a local path (`/x`; not `//x`, no scheme, no backslash, no control bytes).

use crate::error::ApiError;

/// `redirect_uri` checked against `auth.github.oauth.allowed_redirect_uris`.
pub fn check_redirect_uri(uri: &str, allowed: &[String]) -> Result<(), ApiError> {
    let permitted = !uri.is_empty()
        && !uri.chars().any(char::is_control)
        && allowed.iter().any(|entry| {
            uri == entry
                || (entry.ends_with('/') && uri.starts_with(entry.as_str()) && !uri.contains(".."))
        });
    if permitted {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_redirect_uri",
            "`redirect_uri` is not in auth.github.oauth.allowed_redirect_uris",
        ))
    }
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
        for ok in ["https://app.example/cb", "http://localhost:3000/auth/done"] {
            assert!(check_redirect_uri(ok, &allowed).is_ok(), "{ok}");
        }
        for bad in [
            "https://app.example/cb/more",
            "https://app.example/c",
            "https://evil.com",
            "http://localhost:30000/",
            "http://localhost:3000/../x",
            "",
        ] {
            assert!(check_redirect_uri(bad, &allowed).is_err(), "{bad}");
        }
        assert!(check_redirect_uri("https://app.example/cb", &[]).is_err(), "empty list");
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
