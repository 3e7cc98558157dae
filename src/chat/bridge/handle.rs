//! One stored message, processed: refused (channel not allowed, unknown user), a command
//! (`stop`, `status`), a follow-up queued for the thread's live session, or the start of a
//! new session.

use std::sync::Arc;

use super::text::{Command, command};
use super::{Bridge, Queued, metrics};
use crate::chat::platform::IncomingMessage;
use crate::sessions::Session;

/// What people are told when the bot does not know them.
pub(super) const NOT_MAPPED: &str =
    "Sorry, I don't know who you are here: ask an administrator to map your chat user.";

impl Bridge {
    pub(super) async fn handle(&self, message: IncomingMessage) {
        let inner = &self.0;
        let channels = &inner.settings.channels;
        if !channels.is_empty() && !channels.contains(&message.thread.channel) {
            if message.mentions_bot || message.direct {
                self.refuse(
                    &message,
                    "channel_not_allowed",
                    "Sorry, I don't work in this channel.",
                )
                .await;
            }
            return;
        }
        let thread = &message.thread;
        let mapping = inner
            .store
            .thread(
                inner.platform.name().into(),
                thread.team.clone(),
                thread.channel.clone(),
                thread.root.clone(),
            )
            .await;
        let mapping = match mapping {
            Ok(mapping) => mapping,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read a chat thread mapping");
                return;
            }
        };
        let addressed = message.mentions_bot || message.direct;
        if mapping.as_ref().is_some_and(|row| row.started_by == message.message_id) {
            // Processed before a crash: its session exists (or existed) already.
            return;
        }
        let live = mapping.as_ref().filter(|row| !row.ended).and_then(|row| {
            inner.sessions.get(&row.session_id).filter(|session| session.status().is_live())
        });
        match live {
            Some(session) => {
                if addressed && let Some(command) = command(&message.text) {
                    return self.command(&message, &session, command).await;
                }
                if addressed || inner.settings.follow_up_without_mention {
                    self.follow_up(&message, &session).await;
                }
            }
            None if addressed => {
                if command(&message.text).is_some() {
                    self.say(thread, "No session runs in this thread.").await;
                    return;
                }
                self.start_for(&message, mapping.is_some()).await;
            }
            None => {}
        }
    }

    async fn command(&self, message: &IncomingMessage, session: &Arc<Session>, which: Command) {
        let Ok(person) = self.0.people.resolve(&*self.0.platform, &message.user).await else {
            return self.refuse(message, "not_mapped", NOT_MAPPED).await;
        };
        match which {
            Command::Stop => {
                if !person.caller.can_see(&session.user_id) {
                    return self
                        .refuse(
                            message,
                            "not_allowed",
                            "Only the session's owner or an admin may stop it.",
                        )
                        .await;
                }
                if let Err(error) = self.0.store.end_thread(session.id.clone()).await {
                    tracing::error!(error = format!("{error:#}"), "cannot end a chat thread");
                }
                let text = match self.0.sessions.delete(session).await {
                    Ok(()) => format!(
                        "Stopped {} at {}'s request.",
                        self.session_link(&session.id),
                        person.name
                    ),
                    Err(error) => format!("Could not stop the session: {}", error),
                };
                self.say(&message.thread, &text).await;
            }
            Command::Status => {
                let state = session.state();
                let uptime_s = (crate::clock::now_ms() - session.started_at_ms).max(0) / 1000;
                let text = format!(
                    "{}: {}, agent {}, up {}m {}s.",
                    self.session_link(&session.id),
                    state.status.as_str(),
                    state.agent_status.as_deref().unwrap_or("unknown"),
                    uptime_s / 60,
                    uptime_s % 60
                );
                self.say(&message.thread, &text).await;
            }
        }
    }

    /// A later message of the thread, from anyone mapped: queued for the agent (marked when
    /// it must wait).
    async fn follow_up(&self, message: &IncomingMessage, session: &Arc<Session>) {
        let person = match self.0.people.resolve(&*self.0.platform, &message.user).await {
            Ok(person) => person,
            Err(_) => return self.refuse(message, "not_mapped", NOT_MAPPED).await,
        };
        let text = format!("{}: {}", person.name, message.text);
        let idle = self.follower_stable(&session.id);
        let waits = !idle || self.has_queue(&session.id).await;
        self.enqueue(&session.id, message, text, waits).await;
    }

    async fn has_queue(&self, session_id: &str) -> bool {
        self.0.store.queued(session_id.to_string()).await.is_ok_and(|queued| !queued.is_empty())
    }

    /// Puts a message in the session's queue and wakes its follower.
    pub(super) async fn enqueue(
        &self,
        session_id: &str,
        message: &IncomingMessage,
        text: String,
        mark: bool,
    ) {
        let inner = &self.0;
        let marked = mark
            && inner
                .platform
                .mark(&message.thread, &message.message_id, "hourglass", true)
                .await
                .is_ok();
        let queued = Queued {
            text,
            files: message.files.clone(),
            message_id: message.message_id.clone(),
            marked,
        };
        let document = match serde_json::to_string(&queued) {
            Ok(document) => document,
            Err(error) => return tracing::error!(%error, "cannot encode a follow-up"),
        };
        let stored = inner
            .store
            .enqueue(
                session_id.to_string(),
                message.message_id.clone(),
                document,
                crate::clock::now_ms(),
            )
            .await;
        match stored {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot queue a follow-up");
                return;
            }
        }
        metrics::message(inner.platform.name(), if mark { "queued" } else { "accepted" });
        self.wake_follower(session_id);
    }

    fn wake_follower(&self, session_id: &str) {
        let followers = self.0.followers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(link) = followers.get(session_id) {
            link.wake.notify_one();
        }
    }

    /// Whether the session's agent waits for input, as its follower last saw.
    fn follower_stable(&self, session_id: &str) -> bool {
        let followers = self.0.followers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        followers
            .get(session_id)
            .is_some_and(|link| link.stable.load(std::sync::atomic::Ordering::SeqCst))
    }
}
