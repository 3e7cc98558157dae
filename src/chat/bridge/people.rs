//! Who a chat user is (chat.md "Who a chat user is"): the `users` map, else (with
//! `map_users_by_email`) the service's email matched against `auth.users.<id>.email`; then
//! that user's role and permissions from `auth.users`, else the union of the user's static
//! keys. With `auth.enabled: false` a mapped user acts with admin rights.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::api_keys::ApiKeys;
use crate::auth::{AuthType, Caller, RANKED_ROLES};
use crate::chat::platform::{ChatPlatform, ChatUser};
use crate::config::Config;

/// A chat user mapped to a proxy user.
#[derive(Debug, Clone)]
pub struct Person {
    pub caller: Caller,
    /// For `GIT_AUTHOR_NAME` and message prefixes.
    pub name: String,
    pub email: Option<String>,
}

/// Why a chat user may not act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    NotMapped,
    /// Mapped, but neither `auth.users` nor a key gives the user any rights.
    NoRights,
}

/// How long what the chat service said about a user is trusted.
const PROFILE_TTL: Duration = Duration::from_secs(600);
/// Most profiles kept; past this the cache starts over.
const PROFILE_CACHE: usize = 10_000;

/// Maps chat users to proxy users.
#[derive(Debug)]
pub struct People {
    config: Arc<Config>,
    keys: Arc<ApiKeys>,
    /// Profiles from the chat service (`users.info`), by chat user id.
    profiles: Mutex<HashMap<String, (Instant, ChatUser)>>,
}

impl People {
    pub fn new(config: Arc<Config>, keys: Arc<ApiKeys>) -> Self {
        Self { config, keys, profiles: Mutex::new(HashMap::new()) }
    }

    /// The chat service's profile of `chat_user` (cached), if it answers.
    pub async fn profile(&self, platform: &dyn ChatPlatform, chat_user: &str) -> Option<ChatUser> {
        {
            let profiles = self.profiles.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((at, user)) = profiles.get(chat_user)
                && at.elapsed() < PROFILE_TTL
            {
                return Some(user.clone());
            }
        }
        let user = platform.user(chat_user).await.ok()?;
        let mut profiles = self.profiles.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if profiles.len() >= PROFILE_CACHE {
            profiles.clear();
        }
        profiles.insert(chat_user.to_string(), (Instant::now(), user.clone()));
        Some(user)
    }

    /// The proxy user behind `chat_user`, with the rights they act with.
    pub async fn resolve(
        &self,
        platform: &dyn ChatPlatform,
        chat_user: &str,
    ) -> Result<Person, Unknown> {
        let slack = &self.config.chat.slack;
        let mut service_user = None;
        let user_id = match slack.users.get(chat_user) {
            Some(user_id) => user_id.clone(),
            None if slack.map_users_by_email => {
                let found = self.profile(platform, chat_user).await;
                let email = found.as_ref().and_then(|user| user.email.clone());
                service_user = found;
                let email = email.ok_or(Unknown::NotMapped)?;
                self.config
                    .auth
                    .users
                    .iter()
                    .find(|(_, entry)| {
                        !entry.email.is_empty() && entry.email.eq_ignore_ascii_case(&email)
                    })
                    .map(|(id, _)| id.clone())
                    .ok_or(Unknown::NotMapped)?
            }
            None => return Err(Unknown::NotMapped),
        };
        let entry = self.config.auth.users.get(&user_id);
        let (role, permissions) = if !self.config.auth.enabled {
            ("admin".to_string(), vec!["*".to_string()])
        } else if let Some(entry) = entry {
            let role = if entry.role.is_empty() { "user".into() } else { entry.role.clone() };
            (role, entry.permissions.clone())
        } else {
            let keys = self.keys.identities_of(&user_id);
            if keys.is_empty() {
                return Err(Unknown::NoRights);
            }
            let mut permissions: Vec<String> =
                keys.iter().flat_map(|key| key.permissions.iter().cloned()).collect();
            permissions.sort();
            permissions.dedup();
            let rank = |role: &str| RANKED_ROLES.iter().position(|known| *known == role);
            let role = keys
                .iter()
                .map(|key| key.role.to_string())
                .max_by_key(|role| rank(role))
                .unwrap_or_else(|| "user".into());
            (role, permissions)
        };
        if service_user.is_none() && entry.is_none_or(|e| e.name.is_empty() || e.email.is_empty()) {
            service_user = self.profile(platform, chat_user).await;
        }
        let name = entry
            .map(|e| e.name.clone())
            .filter(|name| !name.is_empty())
            .or_else(|| service_user.as_ref().and_then(|u| u.display_name.clone()))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| user_id.clone());
        let email = entry
            .map(|e| e.email.clone())
            .filter(|email| !email.is_empty())
            .or_else(|| service_user.and_then(|u| u.email));
        let caller = Caller {
            user_id: user_id.as_str().into(),
            role: role.as_str().into(),
            permissions: permissions.into(),
            auth_type: AuthType::None,
            credential: None,
        };
        Ok(Person { caller, name, email })
    }
}
