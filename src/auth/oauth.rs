//! The GitHub OAuth flows (api.md "GitHub OAuth"): starting a login (state + PKCE S256,
//! single-use and expiring, kept in the store so any replica can finish it), finishing it at
//! the callback (code exchange, identity, a proxy-issued `aps_` token), and the sessions that
//! follow (authentication, refresh capped at 30 days after login, logout at once). The
//! GitHub token is used once to learn the identity and then dropped; tokens, states and
//! cookies are stored only as SHA-256, and none of them (nor the code) is ever logged.

mod cookies;
pub mod flow;
mod redirects;
pub(super) mod secrets;

use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, Method};
use subtle::ConstantTimeEq;

pub use cookies::{CookiePolicy, cookie};

use super::api_keys::digest;
use super::github::{CodeExchange, GithubAuth, GithubError};
use super::{AuthType, Caller};
use crate::clock::now_ms;
use crate::config::{Config, OAuthConfig, origin_of};
use crate::error::ApiError;
use crate::shutdown::{Shutdown, Stage};
use crate::store::oauth::{OAuthSessionRow, OAuthStore, PendingLogin};

/// How long a started login may take (state, verifier and login cookie).
pub const LOGIN_LIFETIME_SECONDS: u64 = 600;
/// No session lives longer than this after its login, however often it is refreshed.
const MAX_SESSION_MS: i64 = 30 * 24 * 3600 * 1000;
/// How often expired rows are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A login that was started: where to send the user, and the browser flow's cookie value.
#[derive(Debug)]
pub struct Started {
    pub auth_url: String,
    pub state: String,
    pub login_cookie: Option<String>,
}

/// A finished login.
#[derive(Debug)]
pub struct Issued {
    pub session_id: String,
    pub token: String,
    pub expires_at_ms: i64,
    pub caller: Caller,
    /// Browser flow: where the browser goes next.
    pub return_to: Option<String>,
}

/// How `/oauth/refresh` and `/oauth/logout` name the session.
#[derive(Debug)]
pub enum SessionRef {
    Id(String),
    /// SHA-256 hex of the presented token.
    TokenHash(String),
}

/// The OAuth service; exists only when `auth.github.oauth` is configured.
#[derive(Debug)]
pub struct OAuth {
    config: OAuthConfig,
    /// `<server.public_url>/oauth/callback`, when a public URL is configured.
    browser_callback: Option<String>,
    cookies: CookiePolicy,
    store: Arc<dyn OAuthStore>,
    github: Arc<GithubAuth>,
    client: flow::GithubOAuthClient,
}

impl OAuth {
    pub fn new(
        config: &Config,
        store: Arc<dyn OAuthStore>,
        github: Arc<GithubAuth>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(oauth) = config.auth.github.oauth.clone() else { return Ok(None) };
        let client = flow::client(&oauth)?;
        let public_url = config.server.public_url.trim_end_matches('/');
        let browser_callback =
            (!public_url.is_empty()).then(|| format!("{public_url}/oauth/callback"));
        let cookies =
            CookiePolicy::new(config.server.insecure_cookies, origin_of(&config.server.public_url));
        Ok(Some(Self { config: oauth, browser_callback, cookies, store, github, client }))
    }

    pub fn cookies(&self) -> &CookiePolicy {
        &self.cookies
    }

    /// `POST /oauth/authorize`: a login for an API client returning to `redirect_uri`.
    pub async fn authorize(&self, redirect_uri: &str) -> Result<Started, ApiError> {
        redirects::check_redirect_uri(redirect_uri, &self.config.allowed_redirect_uris)?;
        self.start(redirect_uri.to_string(), None, None).await
    }

    /// `GET /oauth/login`: a browser login returning to the local path `return_to`.
    pub async fn browser_login(&self, return_to: &str) -> Result<Started, ApiError> {
        redirects::check_return_to(return_to)?;
        let callback = self.browser_callback.clone().ok_or(ApiError::NotFound(
            "the browser login needs server.public_url to be configured",
        ))?;
        let binding = secrets::random_hex(32)?;
        self.start(callback, Some(return_to.to_string()), Some(binding)).await
    }

    async fn start(
        &self,
        redirect_uri: String,
        return_to: Option<String>,
        binding: Option<String>,
    ) -> Result<Started, ApiError> {
        let login = flow::authorize(&self.client, &self.config.scope, &redirect_uri)
            .map_err(|error| ApiError::Internal(anyhow::anyhow!("authorize URL: {error}")))?;
        let pending = PendingLogin {
            state_hash: secrets::hash_hex(&login.state),
            verifier: login.verifier,
            redirect_uri,
            return_to,
            binding_hash: binding.as_deref().map(secrets::hash_hex),
            expires_at_ms: now_ms() + LOGIN_LIFETIME_SECONDS as i64 * 1000,
        };
        self.store.put_pending(pending).await.map_err(store_unavailable)?;
        Ok(Started { auth_url: login.url, state: login.state, login_cookie: binding })
    }

    /// `GET /oauth/callback`: takes the state (once), exchanges the code with its PKCE
    /// verifier, learns the identity and issues a proxy session. An unknown, reused or
    /// expired state is refused before GitHub is asked anything.
    pub async fn callback(
        &self,
        code: Option<&str>,
        state: &str,
        headers: &HeaderMap,
    ) -> Result<Issued, ApiError> {
        let invalid_state = || {
            ApiError::bad_request(
                "invalid_state",
                "the login is unknown, used or expired; start again",
            )
        };
        if state.is_empty() {
            return Err(invalid_state());
        }
        let pending = self
            .store
            .take_pending(secrets::hash_hex(state), now_ms())
            .await
            .map_err(store_unavailable)?
            .ok_or_else(invalid_state)?;
        if let Some(binding) = &pending.binding_hash {
            let presented = cookie(headers, &self.cookies.login_name()).map(secrets::hash_hex);
            let matches =
                presented.is_some_and(|hash| bool::from(hash.as_bytes().ct_eq(binding.as_bytes())));
            if !matches {
                return Err(invalid_state());
            }
        }
        let code = code.filter(|code| !code.is_empty()).ok_or_else(|| {
            ApiError::bad_request("oauth_denied", "GitHub returned no authorization code")
        })?;
        let exchange = CodeExchange {
            client: &self.client,
            code,
            redirect_uri: &pending.redirect_uri,
            code_verifier: &pending.verifier,
        };
        let github_token = match self.github.api().exchange_code(exchange).await {
            Ok(token) => token,
            Err(GithubError::Rejected(why)) => {
                tracing::info!(reason = %why, "GitHub refused an OAuth code exchange");
                return Err(ApiError::bad_request(
                    "invalid_grant",
                    "GitHub did not accept the authorization code",
                ));
            }
            Err(GithubError::Unavailable(why)) => {
                tracing::warn!(reason = %why, "GitHub OAuth code exchange failed");
                return Err(ApiError::GithubUnavailable);
            }
        };
        let identity = self.github.identify(&github_token, digest(&github_token)).await?;
        drop(github_token);
        let caller = self.github.caller_for(&identity)?;
        self.issue(caller, pending).await
    }

    async fn issue(&self, caller: Caller, pending: PendingLogin) -> Result<Issued, ApiError> {
        let token = secrets::proxy_token()?;
        let now = now_ms();
        let max_expires_at_ms = now + MAX_SESSION_MS;
        let row = OAuthSessionRow {
            token_hash: secrets::hash_hex(&token),
            session_id: uuid::Uuid::new_v4().to_string(),
            user_id: caller.user_id.to_string(),
            role: caller.role.to_string(),
            permissions: caller.permissions.to_vec(),
            kind: if pending.binding_hash.is_some() { "browser" } else { "api" }.into(),
            created_at_ms: now,
            expires_at_ms: (now + self.ttl_ms()).min(max_expires_at_ms),
            max_expires_at_ms,
            bound_to: None,
        };
        self.store.insert_session(row.clone()).await.map_err(store_unavailable)?;
        tracing::info!(user_id = %row.user_id, kind = %row.kind, "OAuth login completed");
        Ok(Issued {
            session_id: row.session_id,
            expires_at_ms: row.expires_at_ms,
            caller: Caller {
                auth_type: AuthType::Oauth,
                credential: Some(digest(&token)),
                ..caller
            },
            token,
            return_to: pending.return_to,
        })
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.config.session_ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX / 2)
    }

    /// Browser session cookie lifetime: the session's, at most the 30-day cap.
    pub fn cookie_max_age(&self, expires_at_ms: i64) -> u64 {
        u64::try_from((expires_at_ms - now_ms()).max(0) / 1000).unwrap_or(0)
    }

    /// Which session `/oauth/refresh` or `/oauth/logout` means: `X-Session-ID`, else the
    /// bearer token, else the session cookie (CSRF-guarded). The flag says "by cookie".
    pub fn session_ref(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(SessionRef, bool), ApiError> {
        if let Some(id) = headers.get("x-session-id") {
            let id = id.to_str().map_err(|_| ApiError::Unauthenticated)?.trim();
            return if id.is_empty() {
                Err(ApiError::Unauthenticated)
            } else {
                Ok((SessionRef::Id(id.to_string()), false))
            };
        }
        if let Some(value) = headers.get(AUTHORIZATION) {
            let text = value.to_str().map_err(|_| ApiError::Unauthenticated)?.trim();
            let token = text
                .split_once(' ')
                .filter(|(scheme, _)| {
                    scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")
                })
                .map(|(_, token)| token.trim())
                .filter(|token| token.starts_with("aps_"))
                .ok_or(ApiError::Unauthenticated)?;
            return Ok((SessionRef::TokenHash(secrets::hash_hex(token)), false));
        }
        if let Some(token) = cookie(headers, &self.cookies.session_name()) {
            self.cookies.guard(method, headers)?;
            return Ok((SessionRef::TokenHash(secrets::hash_hex(token)), true));
        }
        Err(ApiError::Unauthenticated)
    }

    async fn live_session(&self, which: SessionRef) -> Result<OAuthSessionRow, ApiError> {
        let found = match which {
            SessionRef::Id(id) => self.store.session_by_id(id).await,
            SessionRef::TokenHash(hash) => self.store.session_by_token(hash).await,
        };
        found
            .map_err(ApiError::Internal)?
            .filter(|row| row.expires_at_ms > now_ms())
            .ok_or(ApiError::Unauthenticated)
    }

    /// `POST /oauth/refresh`: a new expiry, `session_ttl_seconds` from now, capped.
    pub async fn refresh(&self, which: SessionRef) -> Result<OAuthSessionRow, ApiError> {
        let mut row = self.live_session(which).await?;
        row.expires_at_ms = (now_ms() + self.ttl_ms()).min(row.max_expires_at_ms);
        let kept = self
            .store
            .set_expiry(row.token_hash.clone(), row.expires_at_ms)
            .await
            .map_err(store_unavailable)?;
        if !kept {
            return Err(ApiError::Unauthenticated);
        }
        Ok(row)
    }

    /// `POST /oauth/logout`: the session ends at once.
    pub async fn logout(&self, which: SessionRef) -> Result<(), ApiError> {
        let row = self.live_session(which).await?;
        self.store.delete_session(row.token_hash).await.map_err(store_unavailable)?;
        tracing::info!(user_id = %row.user_id, "OAuth session logged out");
        Ok(())
    }

    /// Deletes expired logins and sessions now and every minute, until the server drains.
    pub fn spawn_purger(store: Arc<dyn OAuthStore>, shutdown: Shutdown) {
        tokio::spawn(async move {
            loop {
                match store.purge_expired(now_ms()).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::debug!(purged, "expired OAuth rows deleted"),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "cannot purge OAuth rows")
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(PURGE_EVERY) => {}
                    () = shutdown.reached(Stage::Draining) => return,
                }
            }
        });
    }
}

fn store_unavailable(error: anyhow::Error) -> ApiError {
    tracing::warn!(error = format!("{error:#}"), "OAuth store write failed");
    ApiError::StoreUnavailable
}
