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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::chat::platform::{AttachedFile, HistoryMessage, Inbox, PlatformError, ThreadRef};
    use crate::config::{ApiKeyEntry, UserEntry};

    /// A chat service that knows one user's profile and nothing else.
    #[derive(Debug)]
    struct OneUser;

    #[async_trait::async_trait]
    impl ChatPlatform for OneUser {
        fn name(&self) -> &'static str {
            "test"
        }
        fn mode(&self) -> &'static str {
            "events"
        }
        fn connected(&self) -> bool {
            true
        }
        async fn run(&self, _: Arc<dyn Inbox>, _: crate::shutdown::Shutdown) {}
        async fn post(
            &self,
            _: &ThreadRef,
            _: &str,
            _: Option<&str>,
        ) -> Result<String, PlatformError> {
            Err(PlatformError::Refused("unused".into()))
        }
        async fn update(&self, _: &ThreadRef, _: &str, _: &str) -> Result<(), PlatformError> {
            Ok(())
        }
        async fn post_private(&self, _: &ThreadRef, _: &str, _: &str) -> Result<(), PlatformError> {
            Ok(())
        }
        async fn mark(
            &self,
            _: &ThreadRef,
            _: &str,
            _: &str,
            _: bool,
        ) -> Result<(), PlatformError> {
            Ok(())
        }
        async fn history(
            &self,
            _: &ThreadRef,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<HistoryMessage>, PlatformError> {
            Ok(Vec::new())
        }
        async fn find_turn(&self, _: &ThreadRef, _: &str) -> Result<Option<String>, PlatformError> {
            Ok(None)
        }
        async fn user(&self, user: &str) -> Result<ChatUser, PlatformError> {
            match user {
                "U1" => Ok(ChatUser {
                    display_name: Some("Una".into()),
                    email: Some("una@example.com".into()),
                }),
                _ => Err(PlatformError::Refused("user_not_found".into())),
            }
        }
        async fn download(&self, _: &AttachedFile, _: u64) -> Result<Bytes, PlatformError> {
            Err(PlatformError::Refused("unused".into()))
        }
        fn max_message_chars(&self) -> usize {
            4000
        }
    }

    fn people(adjust: impl FnOnce(&mut Config)) -> People {
        let mut config = Config::default();
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        adjust(&mut config);
        let keys = ApiKeys::load(&config).expect("keys");
        People::new(Arc::new(config), Arc::new(keys))
    }

    fn key(user: &str, role: &str, permissions: &[&str]) -> ApiKeyEntry {
        ApiKeyEntry {
            key: Some(format!("ap_{user}_{role}")),
            user_id: user.into(),
            role: role.into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            ..ApiKeyEntry::default()
        }
    }

    #[tokio::test]
    async fn a_user_without_an_entry_acts_with_the_union_of_their_keys() {
        let people = people(|config| {
            config.chat.slack.users.insert("U1".into(), "una".into());
            config.auth.static_keys.api_keys = vec![
                key("una", "user", &["session:create"]),
                key("una", "developer", &["session:access"]),
                key("other", "admin", &["*"]),
            ];
        });
        let person = people.resolve(&OneUser, "U1").await.expect("mapped");
        assert_eq!(&*person.caller.user_id, "una");
        assert_eq!(&*person.caller.role, "developer");
        assert_eq!(&*person.caller.permissions, ["session:access", "session:create"]);
        assert_eq!(person.name, "Una");
        assert_eq!(person.email.as_deref(), Some("una@example.com"));
    }

    #[tokio::test]
    async fn unmapped_or_rightless_users_are_refused_and_auth_off_makes_admins() {
        let strict = people(|config| {
            config.chat.slack.users.insert("U1".into(), "una".into());
        });
        assert_eq!(strict.resolve(&OneUser, "U2").await.err(), Some(Unknown::NotMapped));
        assert_eq!(strict.resolve(&OneUser, "U1").await.err(), Some(Unknown::NoRights));
        let open = people(|config| {
            config.auth.enabled = false;
            config.chat.slack.users.insert("U1".into(), "una".into());
        });
        let person = open.resolve(&OneUser, "U1").await.expect("mapped");
        assert!(person.caller.is_admin());
    }

    #[tokio::test]
    async fn by_email_the_auth_users_entry_gives_role_name_and_rights() {
        let people = people(|config| {
            config.chat.slack.map_users_by_email = true;
            let entry = UserEntry {
                role: "admin".into(),
                permissions: vec!["*".into()],
                email: "UNA@example.com".into(),
                name: "Una Example".into(),
            };
            config.auth.users.insert("una".into(), entry);
        });
        let person = people.resolve(&OneUser, "U1").await.expect("mapped by email");
        assert_eq!(&*person.caller.user_id, "una");
        assert!(person.caller.is_admin());
        assert_eq!(person.name, "Una Example");
        assert_eq!(people.resolve(&OneUser, "U9").await.err(), Some(Unknown::NotMapped));
    }
}
