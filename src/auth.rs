//! Who the caller is and what they may do: the [`Caller`] identity extracted once per
//! request, and the permission check each handler makes explicitly. Credential checking
//! (API keys, GitHub, OAuth) arrives with the auth issue; until then an enabled `auth`
//! refuses every caller, and a disabled one makes everyone the `anonymous` admin.

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;

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
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreate => "session:create",
            Self::SessionList => "session:list",
            Self::SessionDelete => "session:delete",
            Self::SessionAccess => "session:access",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub role: String,
    pub permissions: Vec<String>,
}

impl Caller {
    /// Everyone, when authentication is disabled.
    pub fn anonymous_admin() -> Self {
        Self { user_id: "anonymous".into(), role: "admin".into(), permissions: vec!["*".into()] }
    }

    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }

    /// 403 unless the caller holds `permission` (or `*`).
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        let held = self.permissions.iter().any(|p| p == "*" || p == permission.as_str());
        if held {
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.config.auth.enabled {
            return Err(ApiError::Unauthenticated);
        }
        Ok(Self::anonymous_admin())
    }
}
