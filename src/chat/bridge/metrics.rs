//! The chat bridge's metrics (chat.md "Operations"): events by outcome, messages by
//! outcome, posts by outcome, queue depth and the event connection's state.

use metrics::{counter, describe_counter, describe_gauge, gauge};

pub const CHAT_EVENTS: &str = "agentapi_proxy_chat_events_total";
pub const CHAT_MESSAGES: &str = "agentapi_proxy_chat_messages_total";
pub const CHAT_POSTS: &str = "agentapi_proxy_chat_posts_total";
pub const CHAT_QUEUE_DEPTH: &str = "agentapi_proxy_chat_queue_depth";
pub const CHAT_CONNECTED: &str = "agentapi_proxy_chat_connected";

/// The `# HELP` lines.
pub fn describe() {
    describe_counter!(
        CHAT_EVENTS,
        "Chat events by platform and outcome (received, duplicate, refused reasons, session_started)."
    );
    describe_counter!(
        CHAT_MESSAGES,
        "Chat messages for agents by outcome (accepted, queued, delivered)."
    );
    describe_counter!(CHAT_POSTS, "Posts into chat threads by outcome (ok, failed).");
    describe_gauge!(CHAT_QUEUE_DEPTH, "Follow-ups waiting for their agent.");
    describe_gauge!(CHAT_CONNECTED, "1 while the platform's event connection is up.");
}

pub fn event(platform: &'static str, outcome: &'static str) {
    counter!(CHAT_EVENTS, "platform" => platform, "outcome" => outcome).increment(1);
}

pub fn message(platform: &'static str, outcome: &'static str) {
    counter!(CHAT_MESSAGES, "platform" => platform, "outcome" => outcome).increment(1);
}

pub fn post(platform: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    counter!(CHAT_POSTS, "platform" => platform, "outcome" => outcome).increment(1);
}

pub fn queue_depth(platform: &'static str, depth: u64) {
    gauge!(CHAT_QUEUE_DEPTH, "platform" => platform).set(depth as f64);
}

pub fn connected(platform: &'static str, up: bool) {
    gauge!(CHAT_CONNECTED, "platform" => platform).set(if up { 1.0 } else { 0.0 });
}
