//! The browser flow's cookies and the CSRF guard. Cookies are HttpOnly, SameSite=Lax,
//! Path=/, and `Secure` with the `__Host-` name prefix unless `server.insecure_cookies`.
//! Cookie-authenticated unsafe requests must prove they come from our own origin.

use http::header::{CONTENT_TYPE, COOKIE, ORIGIN};
use http::{HeaderMap, HeaderValue, Method};

use crate::error::ApiError;

/// Names and flags of the cookies one server sets.
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    secure: bool,
    /// `scheme://host[:port]` of `server.public_url`, for the CSRF guard.
    public_origin: Option<String>,
}

/// Base names; `__Host-` is put in front when cookies are secure.
const LOGIN: &str = "apx_oauth";
const SESSION: &str = "apx_session";

impl CookiePolicy {
    pub fn new(insecure_cookies: bool, public_origin: Option<String>) -> Self {
        Self { secure: !insecure_cookies, public_origin }
    }

    fn name(&self, base: &str) -> String {
        if self.secure { format!("__Host-{base}") } else { base.to_string() }
    }

    /// The cookie binding a browser to its login in progress.
    pub fn login_name(&self) -> String {
        self.name(LOGIN)
    }

    /// The cookie carrying a browser's proxy token.
    pub fn session_name(&self) -> String {
        self.name(SESSION)
    }

    /// A `Set-Cookie` value; `max_age_seconds` 0 deletes the cookie.
    pub fn set_cookie(
        &self,
        name: &str,
        value: &str,
        max_age_seconds: u64,
    ) -> Result<HeaderValue, ApiError> {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Lax{secure}"
        ))
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("a cookie value is not a header value")))
    }

    /// 403 unless an unsafe (state-changing) request shows it comes from our own pages:
    /// `Origin` equal to `server.public_url`'s, `Sec-Fetch-Site: same-origin`,
    /// `X-Requested-With`, or a JSON body (none of which a cross-site form can send).
    pub fn guard(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
            return Ok(());
        }
        let origin_matches = headers.get(ORIGIN).is_some_and(|origin| {
            self.public_origin.as_deref().is_some_and(|ours| origin.as_bytes() == ours.as_bytes())
        });
        let same_site = headers
            .get("sec-fetch-site")
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"same-origin"));
        let scripted = headers.contains_key("x-requested-with");
        let json = headers.get(CONTENT_TYPE).is_some_and(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.split(';').next())
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
        });
        if origin_matches || same_site || scripted || json {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "a cookie-authenticated request must come from this server's own pages".into(),
            ))
        }
    }
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn secure_cookies_get_the_host_prefix_and_flags() {
        let secure = CookiePolicy::new(false, None);
        assert_eq!(secure.session_name(), "__Host-apx_session");
        let value = secure.set_cookie("__Host-apx_oauth", "v", 600).expect("header");
        assert_eq!(
            value.to_str().expect("text"),
            "__Host-apx_oauth=v; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure"
        );
        let plain = CookiePolicy::new(true, None);
        assert_eq!(plain.login_name(), "apx_oauth");
        let value = plain.set_cookie("apx_oauth", "v", 0).expect("header");
        assert!(!value.to_str().expect("text").contains("Secure"));
    }

    #[test]
    fn cookies_are_found_among_several_headers() {
        let map = headers(&[("cookie", "a=1; apx_session=tok"), ("cookie", "b=2")]);
        assert_eq!(cookie(&map, "apx_session"), Some("tok"));
        assert_eq!(cookie(&map, "b"), Some("2"));
        assert_eq!(cookie(&map, "apx"), None);
    }

    #[test]
    fn unsafe_requests_need_proof_of_origin() {
        let policy = CookiePolicy::new(false, Some("https://agents.example".into()));
        let post = Method::POST;
        assert!(policy.guard(&Method::GET, &HeaderMap::new()).is_ok());
        assert!(policy.guard(&post, &HeaderMap::new()).is_err());
        assert!(policy.guard(&post, &headers(&[("origin", "https://evil.example")])).is_err());
        assert!(policy.guard(&post, &headers(&[("content-type", "text/plain")])).is_err());
        for proof in [
            ("origin", "https://agents.example"),
            ("sec-fetch-site", "same-origin"),
            ("x-requested-with", "XMLHttpRequest"),
            ("content-type", "application/json; charset=utf-8"),
        ] {
            assert!(policy.guard(&Method::DELETE, &headers(&[proof])).is_ok(), "{proof:?}");
        }
    }
}
