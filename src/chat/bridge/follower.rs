//! One follower per live session (chat.md "Flow" 2, 3, 5): it announces the start (link or
//! failure), follows the agent's event stream, and each time the agent is `stable` posts the
//! turn's reply (once: recorded by turn id, and looked up on the chat service after a
//! restart) and then delivers the next queued message (files uploaded first). When the
//! session ends, the thread is told why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentapi_proxy_client::SessionStatus;
use futures_util::StreamExt;
use std::sync::atomic::Ordering;

use super::agent::{AgentCalls, AgentEvent, AgentMessage, Sent};
use super::text::{clean, split};
use super::{Bridge, FollowerLink, Queued, metrics};
use crate::chat::platform::ThreadRef;
use crate::shutdown::Stage;

/// `reply: "stream"`: the least time between two edits of the placeholder.
const STREAM_EDIT_EVERY: Duration = Duration::from_secs(2);

/// The placeholder of the turn in progress (`reply: "stream"`).
#[derive(Debug, Default)]
struct Streamed {
    placeholder: Option<String>,
    last_edit: Option<Instant>,
}

/// Most earlier turns whose replies are looked for after a restart.
const MAX_CATCH_UP_TURNS: usize = 20;

/// The largest file handed to an agent (agentapi's own upload limit).
const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

impl Bridge {
    /// Starts the follower of `session_id` unless one runs.
    pub(super) fn follow(&self, session_id: String, thread: ThreadRef, announce: bool) {
        let link = Arc::new(FollowerLink::default());
        {
            let mut followers =
                self.0.followers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if followers.contains_key(&session_id) {
                return;
            }
            followers.insert(session_id.clone(), link.clone());
        }
        let bridge = self.clone();
        tokio::spawn(async move {
            bridge.run_follower(&session_id, &thread, announce, &link).await;
            let mut followers =
                bridge.0.followers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            followers.remove(&session_id);
        });
    }

    async fn run_follower(
        &self,
        session_id: &str,
        thread: &ThreadRef,
        announce: bool,
        link: &FollowerLink,
    ) {
        let inner = &self.0;
        if let Some(session) = inner.sessions.get(session_id) {
            let state = session.wait_while_starting().await;
            if announce {
                let text = match (&state.failure, state.status) {
                    (None, SessionStatus::Active) => {
                        format!("Session started: {}", self.session_link(session_id))
                    }
                    (Some(failure), _) => {
                        format!("The session could not start: {}", failure.clone().into_api_error())
                    }
                    (None, status) => {
                        format!("The session could not start: it is {}.", status.as_str())
                    }
                };
                self.say(thread, &text).await;
                if state.status != SessionStatus::Active {
                    // Told already; a later mention starts a new session.
                    if let Err(error) = inner.store.end_thread(session_id.to_string()).await {
                        tracing::error!(error = format!("{error:#}"), "cannot end a chat thread");
                    }
                    return;
                }
            }
        }
        let mut pause = Duration::from_millis(50);
        let mut first_settle = true;
        loop {
            if inner.shutdown.stage() != Stage::Running {
                return;
            }
            let Some(session) = inner.sessions.get(session_id) else { break };
            if !session.status().is_live() {
                break;
            }
            let Some(endpoint) = inner.sessions.agent_endpoint(&session) else {
                self.pause(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            };
            let agent = AgentCalls::new(inner.http.clone(), &endpoint);
            let mut events = match agent.events().await {
                Ok(events) => Box::pin(events),
                Err(error) => {
                    tracing::debug!(%session_id, %error, "agent event stream not open yet");
                    self.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            pause = Duration::from_millis(50);
            let mut stable = false;
            let mut stream = Streamed::default();
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(AgentEvent::Status(status)) => {
                            stable = status == "stable";
                            if stable {
                                session.touch();
                                stable = self.settle(session_id, thread, &agent, first_settle, &mut stream).await;
                                first_settle = false;
                            }
                        }
                        Some(AgentEvent::AgentMessage(text)) => self.stream_edit(thread, &mut stream, &text).await,
                        Some(AgentEvent::Other) => {}
                        None => break,
                    },
                    _ = link.wake.notified() => {
                        if stable {
                            // No turn ended: only the queue has news.
                            stable = !self.deliver_next(session_id, thread, &agent).await;
                            if !stable {
                                self.stream_start(thread, &mut stream).await;
                            }
                        }
                    }
                    _ = inner.shutdown.reached(Stage::Draining) => return,
                }
                link.stable.store(stable, Ordering::SeqCst);
            }
            link.stable.store(false, Ordering::SeqCst);
        }
        self.tell_end(session_id, thread).await;
    }

    /// The agent is stable: the turn's reply is taken, the next queued message sent (so the
    /// agent works while the reply is posted), then the reply posted. Returns whether the
    /// agent is still stable (nothing was sent).
    async fn settle(
        &self,
        session_id: &str,
        thread: &ThreadRef,
        agent: &AgentCalls,
        look_up: bool,
        stream: &mut Streamed,
    ) -> bool {
        let replies = match agent.messages().await {
            Ok(messages) => self.unposted_turns(session_id, &messages, look_up).await,
            Err(error) => {
                tracing::warn!(%session_id, %error, "cannot read the agent's messages");
                Vec::new()
            }
        };
        let sent = self.deliver_next(session_id, thread, agent).await;
        let mut placeholder = stream.placeholder.take();
        let count = replies.len();
        for (index, (turn, content)) in replies.into_iter().enumerate() {
            let placeholder = if index + 1 == count { placeholder.take() } else { None };
            self.post_turn(session_id, thread, &turn, &content, look_up, placeholder).await;
        }
        if sent {
            self.stream_start(thread, stream).await;
        }
        !sent
    }

    /// The replies not posted yet, oldest first: the last turn's only, or after a restart
    /// (`all`) every turn's (the last agent message before each next user message).
    async fn unposted_turns(
        &self,
        session_id: &str,
        messages: &[AgentMessage],
        all: bool,
    ) -> Vec<(String, String)> {
        // The last agent message after each user message, with that user message's id.
        let mut replies: Vec<(u64, &AgentMessage)> = Vec::new();
        let mut last_user = None;
        for message in messages {
            match (message.role.as_str(), last_user) {
                ("user", _) => last_user = Some(message.id),
                ("agent", Some(user)) => {
                    if replies.last().is_some_and(|(turn, _)| *turn == user) {
                        replies.pop();
                    }
                    replies.push((user, message));
                }
                _ => {}
            }
        }
        let keep = if all { MAX_CATCH_UP_TURNS } else { 1 };
        let skip = replies.len().saturating_sub(keep);
        let mut unposted = Vec::new();
        for (_, reply) in replies.into_iter().skip(skip) {
            let turn = format!("{session_id}:{}", reply.id);
            match self.0.store.posted_turn(session_id.to_string(), turn.clone()).await {
                Ok(None) => unposted.push((turn, reply.content.clone())),
                Ok(Some(_)) => {}
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "cannot read posted turns")
                }
            }
        }
        unposted
    }

    /// Posts one turn's reply (finishing the placeholder when streaming) and records it.
    async fn post_turn(
        &self,
        session_id: &str,
        thread: &ThreadRef,
        turn: &str,
        content: &str,
        look_up: bool,
        placeholder: Option<String>,
    ) {
        let inner = &self.0;
        if look_up && let Ok(Some(found)) = inner.platform.find_turn(thread, turn).await {
            self.record_turn(session_id, turn, &found).await;
            return;
        }
        let text = clean(content);
        let text =
            if text.is_empty() { "(the agent answered without text)".to_string() } else { text };
        let parts = split(&text, inner.platform.max_message_chars());
        let count = parts.len();
        let mut last_id = None;
        let mut parts = parts.iter().enumerate().peekable();
        if let Some(placeholder) = placeholder
            && let Some((_, first)) = parts.next_if(|_| true)
        {
            let updated = inner.platform.update(thread, &placeholder, first).await;
            metrics::post(inner.platform.name(), updated.is_ok());
            if let Err(error) = updated {
                return tracing::warn!(%session_id, %error, "could not finish a streamed reply");
            }
            last_id = Some(placeholder);
        }
        for (index, part) in parts {
            let carries_turn = (index + 1 == count).then_some(turn);
            let posted = inner.platform.post(thread, part, carries_turn).await;
            metrics::post(inner.platform.name(), posted.is_ok());
            match posted {
                Ok(id) => last_id = Some(id),
                Err(error) => return tracing::warn!(%session_id, %error, "could not post a reply"),
            }
        }
        if let Some(id) = last_id {
            self.record_turn(session_id, turn, &id).await;
        }
    }

    /// `reply: "stream"`: a placeholder as the agent starts working on a message.
    async fn stream_start(&self, thread: &ThreadRef, stream: &mut Streamed) {
        if self.0.settings.reply != "stream" {
            return;
        }
        let posted = self.0.platform.post(thread, "_working…_", None).await;
        metrics::post(self.0.platform.name(), posted.is_ok());
        stream.placeholder = posted.ok();
        stream.last_edit = Some(Instant::now());
    }

    /// `reply: "stream"`: the placeholder shows the agent's text so far, edited at most
    /// every [`STREAM_EDIT_EVERY`].
    async fn stream_edit(&self, thread: &ThreadRef, stream: &mut Streamed, text: &str) {
        let Some(placeholder) = &stream.placeholder else { return };
        if stream.last_edit.is_some_and(|last| last.elapsed() < STREAM_EDIT_EVERY) {
            return;
        }
        let limit = self.0.platform.max_message_chars().saturating_sub(2);
        let shown: String = clean(text).chars().take(limit).collect();
        if shown.is_empty() {
            return;
        }
        let updated = self.0.platform.update(thread, placeholder, &format!("{shown} …")).await;
        metrics::post(self.0.platform.name(), updated.is_ok());
        stream.last_edit = Some(Instant::now());
    }

    async fn record_turn(&self, session_id: &str, turn: &str, message_id: &str) {
        let recorded = self
            .0
            .store
            .record_turn(session_id.into(), turn.into(), message_id.into(), crate::clock::now_ms())
            .await;
        if let Err(error) = recorded {
            tracing::error!(error = format!("{error:#}"), "cannot record a posted reply");
        }
    }

    /// Sends the oldest queued message; true when the agent took it.
    async fn deliver_next(&self, session_id: &str, thread: &ThreadRef, agent: &AgentCalls) -> bool {
        let inner = &self.0;
        let queued = match inner.store.queued(session_id.to_string()).await {
            Ok(queued) => queued,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot read queued follow-ups");
                return false;
            }
        };
        let Some(head) = queued.into_iter().next() else { return false };
        let Ok(item) = serde_json::from_str::<Queued>(&head.message) else {
            let _ = inner.store.dequeue(head.seq).await;
            return false;
        };
        let mut content = item.text.clone();
        let mut uploaded = Vec::new();
        for file in &item.files {
            let bytes = match inner.platform.download(file, MAX_FILE_BYTES).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(%error, "could not download an attached file");
                    self.say(thread, &format!("Could not fetch {} for the agent.", file.name))
                        .await;
                    continue;
                }
            };
            match agent.upload(&file.name, bytes).await {
                Ok(path) => uploaded.push(path),
                Err(error) => tracing::warn!(%error, "the agent did not take an upload"),
            }
        }
        if !uploaded.is_empty() {
            content
                .push_str(&format!("\n\n(attached files, uploaded to: {})", uploaded.join(", ")));
        }
        match agent.send(&content).await {
            Ok(Sent::Accepted) => {
                if let Err(error) = inner.store.dequeue(head.seq).await {
                    tracing::error!(error = format!("{error:#}"), "cannot remove a sent follow-up");
                }
                metrics::message(inner.platform.name(), "delivered");
                if item.marked {
                    let _ = inner.platform.mark(thread, &item.message_id, "hourglass", false).await;
                }
                true
            }
            Ok(Sent::Busy) => false,
            Err(error) => {
                tracing::warn!(%session_id, %error, "the agent refused a chat message; dropped");
                let _ = inner.store.dequeue(head.seq).await;
                false
            }
        }
    }

    /// Tells the thread its session ended (once) and forgets the mapping.
    async fn tell_end(&self, session_id: &str, thread: &ThreadRef) {
        let inner = &self.0;
        let row = inner.store.thread_of_session(session_id.to_string()).await.ok().flatten();
        if row.is_none_or(|row| row.ended) {
            return;
        }
        let reason = match inner.sessions.get(session_id) {
            Some(session) => {
                let state = session.state();
                state
                    .exit_reason
                    .map_or(state.status.as_str(), |reason| reason.as_str())
                    .to_string()
            }
            None => "deleted".to_string(),
        };
        if let Err(error) = inner.store.end_thread(session_id.to_string()).await {
            tracing::error!(error = format!("{error:#}"), "cannot end a chat thread");
        }
        let text = format!(
            "The session ended ({}). Mention me to start a new one.",
            reason.replace('_', " ")
        );
        self.say(thread, &text).await;
    }
}
