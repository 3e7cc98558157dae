//! Who the caller is and what they may do. The [`Caller`] identity is extracted once per
//! request from the first credential present (api.md "Authentication"; no falling through to
//! another credential), and every handler checks its [`Permission`] explicitly.
//! GitHub tokens and proxy-issued OAuth tokens arrive with the GitHub issue; until then they
//! are refused like any unknown credential.

pub mod api_keys;
mod credentials;
pub mod reload;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::HeaderMap;
use http::header::HeaderName;
use http::request::Parts;

use crate::config::Config;
use crate::error::ApiError;
use crate::state::AppState;
use api_keys::{ApiKeys, KeyDigest, loggable_prefix};
use credentials::Presented;

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
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey => "api_key",
            Self::Github => "github",
            Self::Oauth => "oauth",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub role: String,
    pub permissions: Vec<String>,
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
            permissions: vec!["*".into()],
            auth_type: AuthType::None,
            credential: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == "admin"
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
        self.is_admin() || self.user_id == owner
    }
}

/// Turns request headers into a [`Caller`].
#[derive(Debug)]
pub struct Authenticator {
    enabled: bool,
    static_header: Option<HeaderName>,
    github_enabled: bool,
    keys: Arc<ApiKeys>,
}

impl Authenticator {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let statics = &config.auth.static_keys;
        let static_header = statics
            .enabled
            .then(|| HeaderName::from_bytes(statics.header_name.as_bytes()))
            .transpose()?;
        Ok(Self {
            enabled: config.auth.enabled,
            static_header,
            github_enabled: config.auth.github.enabled,
            keys: Arc::new(ApiKeys::load(config)?),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn keys(&self) -> &Arc<ApiKeys> {
        &self.keys
    }

    /// The caller behind these headers, or the one uniform 401.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        if !self.enabled {
            return Ok(Caller::anonymous_admin());
        }
        let refused = |why: &'static str, shown: &str| {
            crate::telemetry::auth_failure(why);
            tracing::info!(reason = why, credential = %loggable_prefix(shown), "authentication refused");
            ApiError::Unauthenticated
        };
        match credentials::presented(headers, self.static_header.as_ref()) {
            Presented::StaticKey(key) => {
                self.static_key(key).await.ok_or_else(|| refused("unknown or expired API key", key))
            }
            Presented::Bearer(token) if token.starts_with("aps_") => {
                Err(refused("proxy-issued tokens are not accepted yet", token))
            }
            Presented::Bearer(token) => {
                if self.static_header.is_some()
                    && let Some(caller) = self.static_key(token).await
                {
                    return Ok(caller);
                }
                if self.github_enabled && credentials::looks_like_github_token(token) {
                    return Err(refused("GitHub token authentication is not built yet", token));
                }
                Err(refused("unknown bearer token", token))
            }
            Presented::Malformed => Err(refused("unreadable Authorization header", "")),
            Presented::Nothing => {
                crate::telemetry::auth_failure("no credential");
                Err(ApiError::Unauthenticated)
            }
        }
    }

    async fn static_key(&self, key: &str) -> Option<Caller> {
        let key_digest = api_keys::digest(key);
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
    /// expired key ends the caller's open streams.
    pub fn still_valid(&self, caller: &Caller) -> bool {
        match (caller.auth_type, caller.credential) {
            (AuthType::ApiKey, Some(credential)) => self.keys.still_valid(&credential),
            _ => true,
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.authenticate(&parts.headers).await
    }
}
