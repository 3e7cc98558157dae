//! Who the caller is and what they may do. The [`Caller`] identity is found once per
//! request (by the extractor in `routes::caller`) from the first credential present (api.md
//! "Authentication"; no falling through to another credential), and every handler checks its
//! [`Permission`] explicitly.
//! Static API keys, GitHub tokens (validated against GitHub, cached) and proxy-issued OAuth
//! sessions (`aps_` bearer tokens and the browser cookie) each have their module.

pub mod api_keys;
mod credentials;
pub mod github;
pub mod login_throttle;
pub mod oauth;
pub mod proxy_sessions;
pub mod reload;
pub mod roles;

use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{HeaderMap, Method};

use crate::config::Config;
use crate::error::ApiError;
use crate::sessions::agent_token::{AgentTokens, TOKEN_PREFIX};
use crate::store::oauth::OAuthStore;
use api_keys::{ApiKeys, KeyDigest, loggable_prefix};
use credentials::{Presented, Sources};
use github::{GitHubApi, GithubAuth};
use login_throttle::LoginThrottle;
use oauth::OAuth;
use proxy_sessions::ProxySessions;

/// Every permission name a key, a role mapping or a default may grant (`*` = all).
pub const PERMISSIONS: &[&str] = &[
    "session:create",
    "session:list",
    "session:delete",
    "session:access",
    "profile:create",
    "profile:list",
    "profile:read",
    "profile:update",
    "profile:delete",
    "metrics:read",
    "*",
];

/// Roles in rank order, lowest first. Other role names are allowed but never outrank these.
pub const RANKED_ROLES: &[&str] = &["guest", "user", "member", "developer", "admin"];

/// A permission a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    SessionCreate,
    SessionList,
    SessionDelete,
    SessionAccess,
    ProfileCreate,
    ProfileList,
    ProfileRead,
    ProfileUpdate,
    ProfileDelete,
    MetricsRead,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreate => "session:create",
            Self::SessionList => "session:list",
            Self::SessionDelete => "session:delete",
            Self::SessionAccess => "session:access",
            Self::ProfileCreate => "profile:create",
            Self::ProfileList => "profile:list",
            Self::ProfileRead => "profile:read",
            Self::ProfileUpdate => "profile:update",
            Self::ProfileDelete => "profile:delete",
            Self::MetricsRead => "metrics:read",
        }
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    None,
    ApiKey,
    Github,
    Oauth,
    /// A session's own agent, with its `APX_SESSION_TOKEN`: `user_id` is the session id and
    /// the caller holds no permission (routes/caller.rs admits it to its own routes only).
    SessionToken,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey => "api_key",
            Self::Github => "github",
            Self::Oauth => "oauth",
            Self::SessionToken => "session_token",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Arc<str>,
    pub role: Arc<str>,
    pub permissions: Arc<[String]>,
    pub auth_type: AuthType,
    /// SHA-256 of the credential, so long-lived streams can re-check it.
    pub credential: Option<KeyDigest>,
}

impl Caller {
    /// Everyone, when authentication is disabled.
    pub fn anonymous_admin() -> Self {
        Self {
            user_id: "anonymous".into(),
            role: "admin".into(),
            permissions: Arc::new(["*".to_string()]),
            auth_type: AuthType::None,
            credential: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        &*self.role == "admin"
    }

    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.iter().any(|p| p == "*" || p == permission.as_str())
    }

    /// 403 unless the caller holds `permission` (or `*`).
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!("this needs the {} permission", permission.as_str())))
        }
    }

    /// Whether the caller may see and control something owned by `owner`. Everything else
    /// is answered as if it did not exist (404).
    pub fn can_see(&self, owner: &str) -> bool {
        self.is_admin() || &*self.user_id == owner
    }
}

/// Turns request headers into a [`Caller`].
#[derive(Debug)]
pub struct Authenticator {
    enabled: bool,
    static_header: Option<HeaderName>,
    github_enabled: bool,
    /// `auth.github.token_header` when GitHub tokens are on and it is not `Authorization`.
    token_header: Option<HeaderName>,
    keys: Arc<ApiKeys>,
    /// Present when GitHub tokens or the OAuth flows are configured.
    github: Option<Arc<GithubAuth>>,
    oauth: Option<Arc<OAuth>>,
    /// Proxy-issued sessions (`aps_` tokens, the session cookie); present when auth is on.
    proxy_sessions: Option<Arc<ProxySessions>>,
    session_cookie: Option<String>,
    /// Failed `POST /auth/login` attempts per client address.
    login_throttle: LoginThrottle,
    agent_tokens: Option<Arc<AgentTokens>>,
}

/// The services authentication is made of, built by `AppState::build` (tests may build
/// their own).
#[derive(Debug)]
pub struct AuthServices {
    pub keys: Arc<ApiKeys>,
    /// The GitHub API, given when GitHub tokens or the OAuth flows are configured.
    pub github: Option<Arc<dyn GitHubApi>>,
    /// Where proxy-issued sessions and pending logins are kept.
    pub oauth_store: Arc<dyn OAuthStore>,
    /// Agent tokens (`apxs_`), when the server issues them.
    pub agent_tokens: Option<Arc<AgentTokens>>,
}

impl Authenticator {
    pub fn new(config: &Config, services: AuthServices) -> anyhow::Result<Self> {
        let AuthServices { keys, github, oauth_store, agent_tokens } = services;
        let statics = &config.auth.static_keys;
        let static_header = statics
            .enabled
            .then(|| HeaderName::from_bytes(statics.header_name.as_bytes()))
            .transpose()?;
        let github_config = &config.auth.github;
        let token_header = github_config
            .enabled
            .then(|| HeaderName::from_bytes(github_config.token_header.as_bytes()))
            .transpose()?
            .filter(|name| *name != AUTHORIZATION);
        let github = github.map(|api| Arc::new(GithubAuth::new(api, github_config)));
        let oauth = match &github {
            Some(github) => OAuth::new(config, oauth_store.clone(), github.clone())?.map(Arc::new),
            None => None,
        };
        let proxy_sessions = config
            .auth
            .enabled
            .then(|| Arc::new(ProxySessions::new(config, oauth_store, keys.clone())));
        let session_cookie =
            proxy_sessions.as_ref().map(|sessions| sessions.cookies().session_name());
        Ok(Self {
            enabled: config.auth.enabled,
            static_header,
            github_enabled: github_config.enabled,
            token_header,
            keys,
            github,
            oauth,
            proxy_sessions,
            session_cookie,
            login_throttle: LoginThrottle::default(),
            agent_tokens,
        })
    }

    /// The OAuth flows, when `auth.github.oauth` is configured.
    /// Every request header that may carry a credential: marked sensitive before anything
    /// could log or index it.
    pub fn credential_headers(&self) -> Vec<HeaderName> {
        let mut names = vec![AUTHORIZATION, http::header::COOKIE];
        names.extend(self.static_header.iter().chain(&self.token_header).cloned());
        names
    }

    pub fn oauth(&self) -> Option<&Arc<OAuth>> {
        self.oauth.as_ref()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Proxy-issued sessions and their cookie, when authentication is on.
    pub fn proxy_sessions(&self) -> Option<&Arc<ProxySessions>> {
        self.proxy_sessions.as_ref()
    }

    pub fn login_throttle(&self) -> &LoginThrottle {
        &self.login_throttle
    }

    /// The caller a credential given in a body (`POST /auth/login`) stands for: checked
    /// exactly as the same text sent as `Authorization: Bearer` would be.
    pub async fn authenticate_presented(&self, credential: &str) -> Result<Caller, ApiError> {
        let value = HeaderValue::from_str(&format!("Bearer {}", credential.trim()))
            .map_err(|_| ApiError::Unauthenticated)?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        self.authenticate(&Method::POST, &headers).await
    }

    pub fn keys(&self) -> &Arc<ApiKeys> {
        &self.keys
    }

    /// The caller behind these headers, or the one uniform 401.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Caller, ApiError> {
        if !self.enabled {
            return Ok(Caller::anonymous_admin());
        }
        let refused = |why: &'static str, shown: &str| {
            crate::telemetry::auth_failure(why);
            tracing::info!(reason = why, credential = %loggable_prefix(shown), "authentication refused");
            ApiError::Unauthenticated
        };
        let sources = Sources {
            static_header: self.static_header.as_ref(),
            token_header: self.token_header.as_ref(),
            session_cookie: self.session_cookie.as_deref(),
        };
        match credentials::presented(headers, sources) {
            Presented::StaticKey(key) => {
                self.static_key(key).await.ok_or_else(|| refused("unknown_api_key", key))
            }
            Presented::Bearer(token) if token.starts_with("aps_") => match &self.proxy_sessions {
                Some(sessions) => sessions.authenticate(token).await.map_err(|error| match error {
                    ApiError::Unauthenticated => refused("unknown_proxy_token", token),
                    other => other,
                }),
                None => Err(refused("no_proxy_sessions", token)),
            },
            Presented::Bearer(token) if token.starts_with(TOKEN_PREFIX) => {
                let found = match &self.agent_tokens {
                    Some(tokens) => tokens.session_of_stored(token).await,
                    None => None,
                };
                let Some(session_id) = found else {
                    return Err(refused("unknown_agent_token", token));
                };
                Ok(Caller {
                    user_id: session_id.into(),
                    role: "agent".into(),
                    permissions: Arc::new([]),
                    auth_type: AuthType::SessionToken,
                    credential: Some(api_keys::digest(token)),
                })
            }
            Presented::SessionCookie(token) => {
                let Some(sessions) = &self.proxy_sessions else {
                    return Err(ApiError::Unauthenticated);
                };
                let caller = sessions.authenticate(token).await.map_err(|error| match error {
                    ApiError::Unauthenticated => refused("unknown_session_cookie", ""),
                    other => other,
                })?;
                sessions.cookies().guard(method, headers)?;
                Ok(caller)
            }
            Presented::Bearer(token) => {
                let token_digest = api_keys::digest(token);
                if self.static_header.is_some()
                    && let Some(caller) = self.static_key_digested(token, token_digest).await
                {
                    return Ok(caller);
                }
                if self.github_enabled
                    && credentials::looks_like_github_token(token)
                    && let Some(github) = &self.github
                {
                    return github.authenticate(token, token_digest).await;
                }
                Err(refused("unknown_bearer_token", token))
            }
            Presented::Malformed => Err(refused("malformed_credential", "")),
            Presented::Nothing => {
                crate::telemetry::auth_failure("no_credential");
                Err(ApiError::Unauthenticated)
            }
        }
    }

    async fn static_key(&self, key: &str) -> Option<Caller> {
        self.static_key_digested(key, api_keys::digest(key)).await
    }

    async fn static_key_digested(&self, key: &str, key_digest: KeyDigest) -> Option<Caller> {
        let identity = self.keys.verify_digested(key, key_digest).await?;
        if identity.is_expired(time::OffsetDateTime::now_utc()) {
            return None;
        }
        Some(Caller {
            user_id: identity.user_id.clone(),
            role: identity.role.clone(),
            permissions: identity.permissions.clone(),
            auth_type: AuthType::ApiKey,
            credential: Some(key_digest),
        })
    }

    /// Whether a credential presented earlier (by digest) still authenticates: a removed or
    /// expired key, a logged-out or expired OAuth session, or a GitHub identity whose cache
    /// entry expired ends the caller's open streams.
    pub async fn still_valid(&self, caller: &Caller) -> bool {
        match (caller.auth_type, caller.credential) {
            (AuthType::ApiKey, Some(credential)) => self.keys.still_valid(&credential),
            (AuthType::Github, Some(credential)) => {
                self.github.as_ref().is_some_and(|github| github.still_cached(&credential))
            }
            (AuthType::Oauth, Some(credential)) => match &self.proxy_sessions {
                Some(sessions) => sessions.still_valid(&credential).await,
                None => false,
            },
            _ => true,
        }
    }
}
