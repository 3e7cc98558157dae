//! Profile shapes of the HTTP API: reusable environments, tags, a system prompt, message
//! templates and repository history for starting sessions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A saved starting point for sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    pub user_id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default)]
    pub repository_history: Vec<RepositoryEntry>,
    #[serde(default)]
    pub message_templates: Vec<MessageTemplate>,
    pub created_at: String,
    pub updated_at: String,
    pub last_used_at: Option<String>,
}

/// A repository a profile's sessions worked on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryEntry {
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub last_commit: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    pub accessed_at: String,
}

/// A first prompt with `{{name}}` placeholders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageTemplate {
    pub id: String,
    pub name: String,
    pub content: String,
    #[serde(default)]
    pub variables: Vec<String>,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, Value>,
    pub created_at: String,
}

/// Answer of `GET/POST/PUT /profiles/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileResponse {
    pub profile: Profile,
}

/// Answer of `GET /profiles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileList {
    pub profiles: Vec<Profile>,
    pub total: u64,
}
