//! Configuration: `config.json` + `AGENTAPI_PROXY_*` environment + flags → a validated
//! [`Config`]. Nothing here is async; the server reads it once at startup.

mod chat;
mod kubernetes;
mod load;
mod schema;
mod shape;
mod validate;

use std::path::PathBuf;

use serde_json::Value;

pub use chat::{ChatConfig, MAX_HISTORY_MESSAGES, SlackConfig, UserEntry};
pub use kubernetes::{
    is_dns_label, is_dns_subdomain, is_label_value, is_qualified_name, is_quantity,
    validate_kubernetes,
};
pub use load::{
    ConfigSource, DEFAULT_CONFIG_FILE, ENV_PREFIX, FlagOverrides, LoadOptions, Loaded, load,
};
pub use schema::*;
pub use validate::{
    PROXY_SET_ENV, is_env_name, origin_of, parse_cidr, parse_postgres_url, parse_timestamp,
    read_keys_file,
};

/// Why the configuration could not be used. Every variant means exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {error}", path.display())]
    Unreadable { path: PathBuf, error: std::io::Error },
    #[error("config file {} is not valid JSON at line {line}, column {column}: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
    Invalid { problems: Vec<String> },
}

/// Shown instead of every secret when the configuration is printed.
pub const REDACTED: &str = "<redacted>";

impl Config {
    /// The configuration as JSON with every secret replaced by `"<redacted>"`.
    pub fn redacted_json(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        let redact = |slot: Option<&mut Value>| {
            if let Some(slot) = slot
                && !slot.is_null()
            {
                *slot = Value::String(REDACTED.into());
            }
        };
        if let Some(Value::Array(keys)) = value.pointer_mut("/auth/static/api_keys") {
            for entry in keys {
                redact(entry.get_mut("key"));
                redact(entry.get_mut("key_hash"));
            }
        }
        redact(value.pointer_mut("/auth/github/oauth/client_secret"));
        if let Some(url) = value.pointer_mut("/persistence/postgres_url")
            && url.as_str().is_some_and(|url| !url.is_empty())
        {
            *url = Value::String(REDACTED.into());
        }
        for pointer in chat::CHAT_SECRETS {
            if value.pointer(pointer).and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
                redact(value.pointer_mut(pointer));
            }
        }
        if let Some(Value::Object(environment)) = value.pointer_mut("/agent/environment") {
            for slot in environment.values_mut() {
                *slot = Value::String(REDACTED.into());
            }
        }
        value
    }

    /// Where the SQLite database lives (`persistence.sqlite_path` or inside `data_dir`).
    pub fn sqlite_path(&self) -> PathBuf {
        if self.persistence.sqlite_path.is_empty() {
            PathBuf::from(&self.data_dir).join("agentapi-proxy.db")
        } else {
            PathBuf::from(&self.persistence.sqlite_path)
        }
    }
}

#[cfg(test)]
mod tests;
