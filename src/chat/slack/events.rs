//! Slack's event JSON in the bridge's words: an `event_callback` payload becomes an
//! [`IncomingMessage`], or nothing when it never concerns the bridge (bots, ourselves, edits,
//! deletions, joins, other event types). Also Slack's text escaping and user profiles.

use serde_json::Value;

use super::BotIdentity;
use crate::chat::platform::{AttachedFile, ChatUser, IncomingMessage, ThreadRef};

/// Message subtypes that are still a person's message (with files, or also sent to the
/// channel); every other subtype is an edit, deletion, join, bot message, ...
const PERSON_SUBTYPES: &[&str] = &["file_share", "thread_broadcast"];

/// The message an `event_callback` payload carries, if the bridge wants it.
///
/// Slack can send one message twice, as `app_mention` and as `message` (the bot subscribes to
/// both): in a channel the `app_mention` is kept and a `message` that mentions the bot is
/// dropped; in a direct message (channel id `D...`) the `message` (`message.im`) is kept
/// and an `app_mention` dropped.
pub(super) fn incoming(payload: &Value, bot: &BotIdentity) -> Option<IncomingMessage> {
    if payload["type"] != "event_callback" {
        return None;
    }
    let event = &payload["event"];
    let event_type = event["type"].as_str()?;
    let subtype = event["subtype"].as_str();
    if event_type != "app_mention" && event_type != "message" {
        return None;
    }
    if subtype.is_some_and(|subtype| !PERSON_SUBTYPES.contains(&subtype)) {
        return None;
    }
    if event.get("bot_id").is_some_and(|bot_id| !bot_id.is_null())
        || event.get("bot_profile").is_some_and(|profile| !profile.is_null())
    {
        return None;
    }
    let user = event["user"].as_str().filter(|user| !user.is_empty())?;
    if user == bot.user_id {
        return None;
    }
    let raw_text = event["text"].as_str().unwrap_or_default();
    let mentions_bot = event_type == "app_mention";
    let direct = event["channel_type"] == "im";
    if event_type == "message" && !direct && mentions(raw_text, &bot.user_id) {
        return None;
    }
    let channel = event["channel"].as_str()?;
    if event_type == "app_mention" && channel.starts_with('D') {
        return None;
    }
    let ts = event["ts"].as_str()?;
    let team = payload["team_id"].as_str().or_else(|| event["team"].as_str())?;
    let thread = ThreadRef {
        team: team.to_string(),
        channel: channel.to_string(),
        root: event["thread_ts"].as_str().unwrap_or(ts).to_string(),
    };
    Some(IncomingMessage {
        event_id: payload["event_id"].as_str()?.to_string(),
        thread,
        message_id: ts.to_string(),
        user: user.to_string(),
        text: unescape(&strip_mentions(raw_text, &bot.user_id)).trim().to_string(),
        mentions_bot,
        direct,
        files: files(&event["files"]),
    })
}

fn mentions(text: &str, bot_user: &str) -> bool {
    text.contains(&format!("<@{bot_user}>")) || text.contains(&format!("<@{bot_user}|"))
}

/// Removes `<@BOT>` and `<@BOT|name>`.
fn strip_mentions(text: &str, bot_user: &str) -> String {
    let opening = format!("<@{bot_user}");
    let mut rest = text;
    let mut kept = String::with_capacity(text.len());
    while let Some(start) = rest.find(&opening) {
        let after = &rest[start + opening.len()..];
        let close = match after.chars().next() {
            Some('>') => Some(0),
            Some('|') => after.find('>'),
            _ => None,
        };
        match close {
            Some(close) => {
                kept.push_str(&rest[..start]);
                rest = &after[close + 1..];
            }
            None => {
                kept.push_str(&rest[..start + opening.len()]);
                rest = after;
            }
        }
    }
    kept.push_str(rest);
    kept
}

fn files(files: &Value) -> Vec<AttachedFile> {
    let Some(files) = files.as_array() else { return Vec::new() };
    files
        .iter()
        .filter_map(|file| {
            let download_url =
                file["url_private_download"].as_str().or_else(|| file["url_private"].as_str())?;
            Some(AttachedFile {
                id: file["id"].as_str()?.to_string(),
                name: file["name"].as_str().unwrap_or("file").to_string(),
                size: file["size"].as_u64().unwrap_or(0),
                download_url: download_url.to_string(),
            })
        })
        .collect()
}

/// Slack's message text escaping: `&`, `<`, `>` are control characters in `text`.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The reverse of [`escape`], for text read from Slack.
pub(super) fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// A `users.info` `user` object: the display name (else the real name, else the handle) and
/// the email when the token may read it.
pub(super) fn chat_user(user: &Value) -> ChatUser {
    let profile = &user["profile"];
    let candidates =
        [&profile["display_name"], &profile["real_name"], &user["real_name"], &user["name"]];
    let display_name =
        candidates.into_iter().filter_map(Value::as_str).find(|text| !text.trim().is_empty());
    let email = profile["email"].as_str().filter(|email| !email.is_empty());
    ChatUser { display_name: display_name.map(str::to_string), email: email.map(str::to_string) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bot() -> BotIdentity {
        BotIdentity { team_id: "T1".into(), user_id: "UBOT".into(), bot_id: Some("BBOT".into()) }
    }

    fn callback(event: Value) -> Value {
        json!({"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": event})
    }

    #[test]
    fn a_mention_in_a_thread_names_the_thread_root_and_loses_the_mention() {
        let event = json!({"type": "app_mention", "user": "U1", "channel": "C1",
            "text": "<@UBOT> fix &lt;main&gt; &amp; test", "ts": "2.0", "thread_ts": "1.0"});
        let message = incoming(&callback(event), &bot()).expect("kept");
        assert_eq!(
            message.thread,
            ThreadRef { team: "T1".into(), channel: "C1".into(), root: "1.0".into() }
        );
        assert_eq!(message.text, "fix <main> & test");
        assert_eq!(message.message_id, "2.0");
        assert!(message.mentions_bot && !message.direct);
    }

    #[test]
    fn a_direct_message_starts_its_own_thread_with_its_files() {
        let event = json!({"type": "message", "subtype": "file_share", "user": "U1", "channel": "D1",
            "channel_type": "im", "text": "look <@UBOT|agentbot>", "ts": "3.0",
            "files": [{"id": "F1", "name": "a.txt", "size": 12, "url_private_download": "https://files.slack.com/a"},
                      {"id": "F2", "mode": "tombstone"}]});
        let message = incoming(&callback(event), &bot()).expect("kept");
        assert!(message.direct && !message.mentions_bot);
        assert_eq!(message.thread.root, "3.0");
        assert_eq!(message.text, "look");
        assert_eq!(message.files.len(), 1);
        assert_eq!(message.files[0].size, 12);
    }

    #[test]
    fn bots_edits_joins_and_mention_twins_are_dropped() {
        let dropped = [
            json!({"type": "message", "subtype": "bot_message", "bot_id": "B2", "channel": "C1", "text": "x", "ts": "1.0"}),
            json!({"type": "message", "user": "U2", "bot_id": "B2", "channel": "C1", "text": "x", "ts": "1.0"}),
            json!({"type": "message", "user": "UBOT", "channel": "C1", "text": "x", "ts": "1.0"}),
            json!({"type": "message", "subtype": "message_changed", "channel": "C1", "ts": "1.0",
                   "message": {"user": "U1", "text": "y"}}),
            json!({"type": "message", "subtype": "message_deleted", "channel": "C1", "ts": "1.0"}),
            json!({"type": "message", "subtype": "channel_join", "user": "U1", "channel": "C1", "text": "joined", "ts": "1.0"}),
            json!({"type": "message", "user": "U1", "channel": "C1", "channel_type": "channel",
                   "text": "<@UBOT> hi", "ts": "1.0"}),
            json!({"type": "reaction_added", "user": "U1", "item": {}}),
            json!({"type": "app_mention", "user": "U1", "channel": "D1", "text": "<@UBOT> hi", "ts": "1.0"}),
        ];
        for event in dropped {
            assert_eq!(incoming(&callback(event.clone()), &bot()), None, "{event}");
        }
        let plain = json!({"type": "message", "user": "U1", "channel": "C1", "channel_type": "channel",
            "text": "more", "ts": "2.0", "thread_ts": "1.0"});
        assert!(incoming(&callback(plain), &bot()).is_some());
        assert_eq!(incoming(&json!({"type": "url_verification"}), &bot()), None);
    }

    #[test]
    fn mention_stripping_leaves_other_people_alone() {
        assert_eq!(
            strip_mentions("<@UBOT> ask <@UBOTX> and <@U2>", "UBOT"),
            " ask <@UBOTX> and <@U2>"
        );
        assert_eq!(strip_mentions("<@UBOT|bot>hi<@UBOT", "UBOT"), "hi<@UBOT");
    }

    #[test]
    fn escaping_round_trips() {
        let text = "a < b && c > d &amp;";
        assert_eq!(escape(text), "a &lt; b &amp;&amp; c &gt; d &amp;amp;");
        assert_eq!(unescape(&escape(text)), text);
    }

    #[test]
    fn user_names_fall_back_from_display_to_real_to_handle() {
        let user = json!({"name": "alice", "real_name": "Alice A", "profile": {"display_name": "", "email": "a@x"}});
        assert_eq!(
            chat_user(&user),
            ChatUser { display_name: Some("Alice A".into()), email: Some("a@x".into()) }
        );
        assert_eq!(
            chat_user(&json!({"name": "bob", "profile": {}})).display_name.as_deref(),
            Some("bob")
        );
    }
}
