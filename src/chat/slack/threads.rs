//! Reading a thread back (`conversations.replies`, cursor-paginated, metadata included): the
//! agent's history and the search for a reply that carries a turn id.

use serde_json::Value;

use super::{SlackPlatform, TURN_EVENT_TYPE, events};
use crate::chat::platform::{HistoryMessage, PlatformError, ThreadRef};

/// Messages per `conversations.replies` page (Slack recommends at most 200).
const PAGE_SIZE: &str = "200";
/// Pages read at most for one question (10,000 messages): a bound, not a wish.
const MAX_PAGES: usize = 50;

/// Walks the thread oldest first, page by page, until `visit` returns `false`.
async fn walk(
    platform: &SlackPlatform,
    thread: &ThreadRef,
    before: Option<&str>,
    mut visit: impl FnMut(&Value) -> bool,
) -> Result<(), PlatformError> {
    let mut cursor = String::new();
    let mut last_seen = String::new();
    for _ in 0..MAX_PAGES {
        let mut args = vec![
            ("channel", thread.channel.as_str()),
            ("ts", thread.root.as_str()),
            ("limit", PAGE_SIZE),
            ("include_all_metadata", "true"),
        ];
        if let Some(before) = before {
            args.push(("latest", before));
        }
        if !cursor.is_empty() {
            args.push(("cursor", cursor.as_str()));
        }
        let token = &platform.settings.bot_token;
        let page = platform.api.call_form("conversations.replies", token, &args).await?;
        for message in page["messages"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let ts = message["ts"].as_str().unwrap_or_default();
            // A page may repeat the thread's root; keep only what is newer than the last seen.
            if !last_seen.is_empty() && ts_order(ts) <= ts_order(&last_seen) {
                continue;
            }
            last_seen = ts.to_string();
            if !visit(message) {
                return Ok(());
            }
        }
        cursor = page["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_string();
        if cursor.is_empty() {
            return Ok(());
        }
    }
    Ok(())
}

/// `"1733140000.000100"` as comparable numbers (unparsable sorts first).
fn ts_order(ts: &str) -> (u64, u64) {
    let (seconds, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    (seconds.parse().unwrap_or(0), micros.parse().unwrap_or(0))
}

/// The newest `limit` messages before `before`, oldest first.
pub(super) async fn history(
    platform: &SlackPlatform,
    thread: &ThreadRef,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<HistoryMessage>, PlatformError> {
    let mut kept = std::collections::VecDeque::with_capacity(limit.min(1000));
    if limit == 0 {
        return Ok(Vec::new());
    }
    walk(platform, thread, before, |message| {
        if kept.len() == limit {
            kept.pop_front();
        }
        kept.push_back(history_message(message));
        true
    })
    .await?;
    Ok(kept.into())
}

fn history_message(message: &Value) -> HistoryMessage {
    let from_bot = message.get("bot_id").is_some_and(|bot_id| !bot_id.is_null())
        || message["subtype"] == "bot_message";
    HistoryMessage {
        message_id: message["ts"].as_str().unwrap_or_default().to_string(),
        user: message["user"].as_str().map(str::to_string),
        text: events::unescape(message["text"].as_str().unwrap_or_default()),
        from_bot,
    }
}

/// The `ts` of our own message whose metadata carries `turn`.
pub(super) async fn find_turn(
    platform: &SlackPlatform,
    thread: &ThreadRef,
    turn: &str,
) -> Result<Option<String>, PlatformError> {
    let identity = &platform.identity;
    let mut found = None;
    walk(platform, thread, None, |message| {
        let ours = message["user"].as_str() == Some(identity.user_id.as_str())
            || (identity.bot_id.is_some()
                && message["bot_id"].as_str() == identity.bot_id.as_deref());
        let metadata = &message["metadata"];
        if ours
            && metadata["event_type"] == TURN_EVENT_TYPE
            && metadata["event_payload"]["turn"] == turn
        {
            found = message["ts"].as_str().map(str::to_string);
            return false;
        }
        true
    })
    .await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_order_numerically() {
        assert!(ts_order("1733140000.000100") < ts_order("1733140000.000200"));
        assert!(ts_order("999.9") < ts_order("1000.0"));
    }
}
