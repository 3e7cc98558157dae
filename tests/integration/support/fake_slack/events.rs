//! Building what a person or a bot does in Slack: the message is stored in its channel (so
//! `conversations.replies` shows it) and wrapped in an `event_callback` payload, which a test
//! sends over Socket Mode ([`FakeSlack::send`]) or signs for the Events API.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::{ALICE, APP_ID, BOT_USER_ID, DM_CHANNEL, FakeSlack, Injected, StoredMessage, TEAM_ID};

impl FakeSlack {
    /// A user's message as a person writes it: stored in the channel, not yet delivered.
    pub fn user_message(
        &self,
        event_type: &str,
        user: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
        files: Vec<Value>,
    ) -> Injected {
        let ts = self.shared.store_message(
            channel,
            StoredMessage {
                ts: String::new(),
                thread_ts: thread_ts.map(str::to_string),
                user: Some(user.into()),
                bot_id: None,
                text: text.into(),
                metadata: None,
                reactions: Vec::new(),
                edited: false,
                files: files.clone(),
            },
        );
        let is_im = self.shared.state().ims.iter().any(|im| im == channel);
        let mut event = json!({
            "type": event_type, "user": user, "text": text, "ts": ts, "channel": channel,
            "event_ts": ts, "team": TEAM_ID,
            "channel_type": if is_im { "im" } else { "channel" },
        });
        if event_type == "app_mention" {
            event.as_object_mut().expect("object").remove("channel_type");
        }
        if let Some(thread_ts) = thread_ts {
            event["thread_ts"] = json!(thread_ts);
        }
        if !files.is_empty() {
            event["files"] = json!(files);
            if event_type == "message" {
                event["subtype"] = json!("file_share");
            }
        }
        self.event(event, ts)
    }

    /// `<@bot> text` in `channel` (a new thread, or in `thread_ts`).
    pub fn mention(
        &self,
        user: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Injected {
        let text = format!("<@{BOT_USER_ID}> {text}");
        self.user_message("app_mention", user, channel, &text, thread_ts, Vec::new())
    }

    /// The `message` event Slack also sends for a mention (to an app subscribed to
    /// `message.channels`): same message, another `event_id`.
    pub fn message_twin(&self, mention: &Injected) -> Injected {
        let mut event = mention.payload["event"].clone();
        event["type"] = json!("message");
        event["channel_type"] = json!("channel");
        self.event(event, mention.ts.clone())
    }

    /// A plain reply in a thread.
    pub fn thread_message(
        &self,
        user: &str,
        channel: &str,
        thread_ts: &str,
        text: &str,
    ) -> Injected {
        self.user_message("message", user, channel, text, Some(thread_ts), Vec::new())
    }

    /// A direct message from Alice to the bot.
    pub fn direct_message(&self, text: &str) -> Injected {
        self.user_message("message", ALICE, DM_CHANNEL, text, None, Vec::new())
    }

    /// The file object Slack puts in a message event for a hosted file.
    pub fn file_object(&self, id: &str, name: &str, size: usize, download_url: &str) -> Value {
        json!({
            "id": id, "name": name, "title": name, "mimetype": "application/octet-stream",
            "filetype": "binary", "size": size, "mode": "hosted", "is_external": false,
            "url_private": download_url.replace("/download/", "/"),
            "url_private_download": download_url,
        })
    }

    /// Another bot's (or our own) message in a channel.
    pub fn bot_message(
        &self,
        channel: &str,
        bot_id: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Injected {
        let ts = self.shared.store_message(
            channel,
            StoredMessage {
                ts: String::new(),
                thread_ts: thread_ts.map(str::to_string),
                user: None,
                bot_id: Some(bot_id.into()),
                text: text.into(),
                metadata: None,
                reactions: Vec::new(),
                edited: false,
                files: Vec::new(),
            },
        );
        let mut event = json!({
            "type": "message", "subtype": "bot_message", "bot_id": bot_id, "text": text,
            "ts": ts, "channel": channel, "event_ts": ts, "channel_type": "channel",
        });
        if let Some(thread_ts) = thread_ts {
            event["thread_ts"] = json!(thread_ts);
        }
        self.event(event, ts)
    }

    /// A user edits message `ts` (a `message_changed` event).
    pub fn edit(&self, channel: &str, ts: &str, text: &str) -> Injected {
        let mut state = self.shared.state();
        let message = state
            .channels
            .get_mut(channel)
            .and_then(|messages| messages.iter_mut().find(|message| message.ts == ts))
            .expect("the edited message exists");
        let previous = message.to_json(false);
        message.text = text.into();
        message.edited = true;
        let current = message.to_json(false);
        drop(state);
        let event_ts = self.shared.next_ts();
        let event = json!({
            "type": "message", "subtype": "message_changed", "hidden": true,
            "channel": channel, "ts": event_ts, "event_ts": event_ts, "channel_type": "channel",
            "message": current, "previous_message": previous,
        });
        self.event(event, ts.into())
    }

    /// Wraps `event` in an `event_callback` payload with a fresh `event_id`.
    pub fn event(&self, event: Value, ts: String) -> Injected {
        let number = self.shared.next_event.fetch_add(1, Ordering::SeqCst);
        let event_id = format!("Ev0FAKE{number:06}");
        let payload = json!({
            "token": "deprecated-verification-token", "team_id": TEAM_ID, "api_app_id": APP_ID,
            "event": event, "type": "event_callback", "event_id": event_id,
            "event_time": 1_733_140_000 + number, "authorizations": [{
                "enterprise_id": null, "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                "is_bot": true, "is_enterprise_install": false,
            }],
            "is_ext_shared_channel": false,
        });
        Injected { event_id, ts, payload }
    }

    /// Sends `injected` to the Socket Mode client (now, or when one connects).
    pub fn send(&self, injected: &Injected) {
        self.shared.socket.deliver(&injected.event_id, injected.payload.clone());
    }

    /// `mention` + `send`.
    pub fn inject_mention(
        &self,
        user: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Injected {
        let injected = self.mention(user, channel, text, thread_ts);
        self.send(&injected);
        injected
    }
}
