//! Profile shapes of the HTTP API: reusable environments, tags, a system prompt, message
//! templates and repository history for starting sessions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A saved starting point for sessions.
// The server always sends every field; `#[serde(default)]` only makes this client lenient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Profile {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub id: String,
    pub user_id: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub description: String,
    /// Values whose name contains TOKEN, KEY, SECRET, PASSWORD or CREDENTIAL (any case) are
    /// shown as `<redacted>`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub tags: BTreeMap<String, String>,
    /// Reaches the agent as `APX_SYSTEM_PROMPT` and, for Claude, `--append-system-prompt`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub system_prompt: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub repository_history: Vec<RepositoryEntry>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub message_templates: Vec<MessageTemplate>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub updated_at: String,
    #[cfg_attr(feature = "openapi", schema(required = true, format = DateTime))]
    pub last_used_at: Option<String>,
}

/// A repository a profile's sessions worked on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepositoryEntry {
    pub id: String,
    pub url: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub branch: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_commit: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub metadata: BTreeMap<String, Value>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub accessed_at: String,
}

/// A first prompt with `{{name}}` placeholders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageTemplate {
    pub id: String,
    pub name: String,
    /// With `{{name}}` placeholders.
    pub content: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub variables: Vec<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub category: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub metadata: BTreeMap<String, Value>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
}

/// Answer of `GET/POST/PUT /profiles/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileResponse {
    pub profile: Profile,
}

/// Answer of `GET /profiles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileList {
    pub profiles: Vec<Profile>,
    pub total: u64,
}

/// Body of `POST /profiles` (`name` required) and `PUT /profiles/{id}` (every field
/// optional; a present, non-null field replaces the stored one, objects and arrays wholesale;
/// an absent or `null` one keeps it). Other fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Validated like the environment of `POST /start`. On `PUT`, a value sent back as
    /// `<redacted>` keeps the stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_history: Option<Vec<RepositoryInput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_templates: Option<Vec<TemplateInput>>,
}

/// A repository to record in a profile (`POST /profiles/{id}/repositories`, upserted by
/// `url`). `null` reads as absent in the optional fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepositoryInput {
    /// Must not be empty.
    pub url: String,
    /// Default: a new UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Default: the last segment of `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub accessed_at: Option<String>,
}

/// A message template to add to a profile (`POST /profiles/{id}/templates`); the same
/// `name` replaces it. `null` reads as absent in the optional fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateInput {
    pub name: String,
    /// With `{{name}}` placeholders.
    pub content: String,
    /// Default: the placeholders found in `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<String>>,
    /// Default: a new UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, Value>>,
    /// Default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: Option<String>,
}
