//! Starting a session from a chat message (chat.md "Flow" 1): the author mapped and allowed,
//! `:eyes:` at once, the profile (`profile:<name>`, the channel's, the default), the
//! thread's earlier messages, the tags and the author's git identity; the first message is
//! queued like a follow-up, so files reach the agent before it.

use std::collections::{BTreeMap, HashMap};

use agentapi_proxy_client::{Profile, StartWithProfile};

use super::handle::NOT_MAPPED;
use super::people::{Person, Unknown};
use super::text::{initial_message, options};
use super::{Bridge, metrics};
use crate::auth::Permission;
use crate::chat::platform::{HistoryMessage, IncomingMessage};
use crate::error::ApiError;
use crate::sessions::StartInput;
use crate::store::chat::ThreadRow;

impl Bridge {
    pub(super) async fn start_for(&self, message: &IncomingMessage, earlier_session: bool) {
        let inner = &self.0;
        let person = match inner.people.resolve(&*inner.platform, &message.user).await {
            Ok(person) => person,
            Err(Unknown::NotMapped) => return self.refuse(message, "not_mapped", NOT_MAPPED).await,
            Err(Unknown::NoRights) => {
                return self
                    .refuse(message, "not_allowed", "Sorry, you may not start sessions.")
                    .await;
            }
        };
        if !person.caller.has(Permission::SessionCreate) {
            return self.refuse(message, "not_allowed", "Sorry, you may not start sessions.").await;
        }
        if let Err(error) =
            inner.platform.mark(&message.thread, &message.message_id, "eyes", true).await
        {
            tracing::warn!(%error, "could not mark a chat message as seen");
        }
        let options = options(&message.text);
        let profile = match self.profile_for(message, &person, options.profile.as_deref()).await {
            Ok(profile) => profile,
            Err(text) => return self.refuse(message, "bad_profile", &text).await,
        };
        let history = self.earlier_messages(message).await;
        let initial =
            initial_message(&options.text, &history.0, |earlier| {
                earlier.user.as_ref().and_then(|user| history.1.get(user).cloned()).unwrap_or_else(
                    || if earlier.from_bot { "bot".into() } else { "someone".into() },
                )
            });
        let input = match self.start_input(message, &person, profile, options.repository) {
            Ok(input) => input,
            Err(error) => {
                return self.say(&message.thread, &format!("Could not start: {error}")).await;
            }
        };
        let session = match inner.sessions.start_session(&person.caller.user_id, input, false).await
        {
            Ok(session) => session,
            Err(error @ (ApiError::QuotaExceeded { .. } | ApiError::AtCapacity { .. })) => {
                return self.refuse(message, "quota", &format!("Sorry: {error}")).await;
            }
            Err(error) => {
                return self
                    .say(&message.thread, &format!("Could not start a session: {error}"))
                    .await;
            }
        };
        let thread = &message.thread;
        let row = ThreadRow {
            platform: inner.platform.name().into(),
            team: thread.team.clone(),
            channel: thread.channel.clone(),
            root: thread.root.clone(),
            session_id: session.id.clone(),
            owner: session.user_id.clone(),
            started_at_ms: session.started_at_ms,
            started_by: message.message_id.clone(),
            ended: false,
        };
        if let Err(error) = inner.store.set_thread(row).await {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot map a chat thread to its session"
            );
        }
        metrics::event(inner.platform.name(), "session_started");
        if earlier_session {
            self.say(thread, "The earlier session of this thread ended; starting a new one.").await;
        }
        self.enqueue(&session.id, message, initial, false).await;
        self.follow(session.id.clone(), thread.clone(), true);
    }

    /// The profile the message names (`profile:<name or id>`), else the channel's, else the
    /// default; `Err` is the refusal to show.
    async fn profile_for(
        &self,
        message: &IncomingMessage,
        person: &Person,
        named: Option<&str>,
    ) -> Result<Option<Profile>, String> {
        let settings = &self.0.settings;
        let wanted = named
            .map(str::to_string)
            .or_else(|| settings.channel_profiles.get(&message.thread.channel).cloned())
            .or_else(|| Some(settings.default_profile.clone()).filter(|name| !name.is_empty()));
        let Some(wanted) = wanted else { return Ok(None) };
        let unreadable = |error: anyhow::Error| {
            tracing::error!(error = format!("{error:#}"), "cannot read profiles");
            "Sorry, profiles cannot be read right now.".to_string()
        };
        // By id: any profile the person may see (admins: every profile).
        if uuid::Uuid::parse_str(&wanted).is_ok()
            && let Some(found) = self.0.profiles.get(wanted.clone()).await.map_err(unreadable)?
            && person.caller.can_see(&found.profile.user_id)
        {
            return Ok(Some(found.profile));
        }
        // By name: the person's own profiles.
        let owner = person.caller.user_id.to_string();
        let profiles = self.0.profiles.list(Some(owner)).await.map_err(unreadable)?;
        let mut named: Vec<&Profile> = profiles.iter().filter(|p| p.name == wanted).collect();
        match named.len() {
            0 => Err(format!("You have no profile named {wanted:?}.")),
            1 => Ok(named.pop().cloned()),
            _ => Err(format!("Several of your profiles are named {wanted:?}: name one by its id.")),
        }
    }

    /// The thread's messages before this one (up to `history_messages`) and the names of
    /// their authors.
    async fn earlier_messages(
        &self,
        message: &IncomingMessage,
    ) -> (Vec<HistoryMessage>, HashMap<String, String>) {
        let limit = usize::try_from(self.0.settings.history_messages).unwrap_or(0);
        if limit == 0 || message.thread.root == message.message_id {
            return (Vec::new(), HashMap::new());
        }
        let platform = &self.0.platform;
        let history =
            match platform.history(&message.thread, Some(&message.message_id), limit).await {
                Ok(history) => history,
                Err(error) => {
                    tracing::warn!(%error, "could not read a chat thread's history");
                    Vec::new()
                }
            };
        let mut names = HashMap::new();
        for user in history.iter().filter_map(|earlier| earlier.user.clone()) {
            if names.contains_key(&user) {
                continue;
            }
            let name = self
                .0
                .people
                .profile(&**platform, &user)
                .await
                .and_then(|found| found.display_name)
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| user.clone());
            names.insert(user, name);
        }
        (history, names)
    }

    fn start_input(
        &self,
        message: &IncomingMessage,
        person: &Person,
        profile: Option<Profile>,
        repository: Option<String>,
    ) -> Result<StartInput, ApiError> {
        let thread = &message.thread;
        let platform = self.0.platform.name();
        let mut tags = BTreeMap::from([
            (format!("{platform}_team"), thread.team.clone()),
            (format!("{platform}_channel"), thread.channel.clone()),
            (format!("{platform}_thread"), thread.root.clone()),
            (format!("{platform}_user"), message.user.clone()),
        ]);
        if let Some(repository) = repository {
            tags.insert("repository".into(), repository);
        }
        let mut environment =
            BTreeMap::from([("GIT_AUTHOR_NAME".to_string(), person.name.clone())]);
        if let Some(email) = &person.email {
            environment.insert("GIT_AUTHOR_EMAIL".into(), email.clone());
        }
        // An operator who sets these for every agent keeps them.
        let reserved = self.0.sessions.reserved_env();
        environment.retain(|name, _| !reserved.contains(&name.as_str()));
        let mut input = match profile {
            Some(profile) => {
                let request = StartWithProfile {
                    profile_id: profile.id.clone(),
                    environment,
                    tags,
                    ..StartWithProfile::default()
                };
                crate::profiles::start_input(&profile, request)?
            }
            None => StartInput { environment, tags, ..StartInput::default() },
        };
        // The first message goes through the thread's queue (after any files).
        input.first_prompt = None;
        Ok(input)
    }
}
