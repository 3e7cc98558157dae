//! Who the caller is and what they may do. Credential checking arrives with the auth issue;
//! for now this module owns the vocabulary the configuration is validated against.

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
