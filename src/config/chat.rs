//! `chat.*` (chat.md) and `auth.users` (config.md): their shape, defaults and the checks a
//! type cannot express. The Slack tokens are `${VAR}` values, redacted when printed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::shape::Findings;

/// `auth.users.<id>`: a person who may act without presenting a key (a chat user).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserEntry {
    pub role: String,
    pub permissions: Vec<String>,
    pub email: String,
    pub name: String,
}

/// `chat`: one block per chat service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatConfig {
    pub slack: SlackConfig,
}

/// `chat.slack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlackConfig {
    pub enabled: bool,
    /// `socket` (Socket Mode) or `events` (HTTP Events API).
    pub mode: String,
    pub bot_token: String,
    pub app_token: String,
    pub signing_secret: String,
    pub api_base_url: String,
    /// Allowed channel ids; empty = every channel the bot is in, DMs included.
    pub channels: Vec<String>,
    /// Slack user id → proxy user id.
    pub users: BTreeMap<String, String>,
    pub map_users_by_email: bool,
    pub default_profile: String,
    pub channel_profiles: BTreeMap<String, String>,
    /// `final` or `stream`.
    pub reply: String,
    pub follow_up_without_mention: bool,
    pub history_messages: u64,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: "socket".into(),
            bot_token: String::new(),
            app_token: String::new(),
            signing_secret: String::new(),
            api_base_url: "https://slack.com/api".into(),
            channels: Vec::new(),
            users: BTreeMap::new(),
            map_users_by_email: false,
            default_profile: String::new(),
            channel_profiles: BTreeMap::new(),
            reply: "final".into(),
            follow_up_without_mention: true,
            history_messages: 50,
        }
    }
}

/// Most earlier thread messages `history_messages` may ask for (one `conversations.replies`
/// page holds up to 1000).
pub const MAX_HISTORY_MESSAGES: u64 = 1000;

/// The JSON pointers of the chat secrets, for redaction.
pub const CHAT_SECRETS: &[&str] =
    &["/chat/slack/bot_token", "/chat/slack/app_token", "/chat/slack/signing_secret"];

/// Checks `chat.slack` when it is enabled, and `auth.users`.
pub(super) fn validate_chat(config: &super::Config, out: &mut Findings) {
    for (id, user) in &config.auth.users {
        if id.trim().is_empty() {
            out.problems.push("`auth.users`: a user id must not be empty".into());
        }
        super::validate::check_permissions(
            &user.permissions,
            &format!("auth.users.{id}.permissions"),
            out,
        );
    }
    let slack = &config.chat.slack;
    if !slack.enabled {
        return;
    }
    let required = |value: &str, key: &str, why: &str, out: &mut Findings| {
        if value.trim().is_empty() {
            out.problems.push(format!("`chat.slack.{key}` is required {why}"));
        }
    };
    required(&slack.bot_token, "bot_token", "when `chat.slack.enabled` is true", out);
    if !slack.bot_token.is_empty() && !slack.bot_token.starts_with("xoxb-") {
        out.warnings.push("`chat.slack.bot_token` does not look like a bot token (xoxb-)".into());
    }
    match slack.mode.as_str() {
        "socket" => {
            required(&slack.app_token, "app_token", "in socket mode", out);
            if !slack.app_token.is_empty() && !slack.app_token.starts_with("xapp-") {
                out.warnings
                    .push("`chat.slack.app_token` does not look like an app token (xapp-)".into());
            }
        }
        "events" => required(&slack.signing_secret, "signing_secret", "in events mode", out),
        _ => {}
    }
    if super::origin_of(&slack.api_base_url).is_none() {
        out.problems.push(format!(
            "`chat.slack.api_base_url`: {:?} is not an http(s) URL",
            slack.api_base_url
        ));
    }
    if slack.history_messages > MAX_HISTORY_MESSAGES {
        out.problems
            .push(format!("`chat.slack.history_messages` must be at most {MAX_HISTORY_MESSAGES}"));
    }
    for (slack_user, user_id) in &slack.users {
        if user_id.trim().is_empty() {
            out.problems.push(format!("`chat.slack.users.{slack_user}`: the user id is empty"));
        }
    }
    if slack.users.is_empty() && !slack.map_users_by_email {
        out.warnings.push(
            "`chat.slack` maps no users (`users` empty, `map_users_by_email` false): every \
             message will be refused"
                .into(),
        );
    }
}
