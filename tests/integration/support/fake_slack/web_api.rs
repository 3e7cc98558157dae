//! The fake's Web API (`/api/{method}`) and file hosting (`/files/...`). As Slack does: a
//! refusal is HTTP 200 with `{"ok": false, "error": code}`; the token comes as
//! `Authorization: Bearer` (or a `token` form field); read methods take query or form
//! arguments only, write methods also JSON bodies; rate limits are 429 with `Retry-After`.

// A refusal is a whole response, built once per request; boxing it buys nothing here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};

use super::{
    APP_ID, APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER_ID, Ephemeral, Failure, Shared, StoredMessage,
    TEAM_ID, Update,
};

type Args = Map<String, Value>;

/// Methods that accept a JSON body (Slack's "write" methods).
const JSON_METHODS: &[&str] =
    &["chat.postMessage", "chat.update", "chat.postEphemeral", "reactions.add", "reactions.remove"];

/// Slack truncates longer texts; the fake refuses them so a test notices.
const MAX_TEXT_CHARS: usize = 40_000;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/{method}", any(method))
        .route("/files/{id}/download/{name}", get(file))
        .route("/files/{id}/{name}", get(file))
        .with_state(shared)
}

#[derive(PartialEq)]
enum Caller {
    Bot,
    App,
}

fn refuse(code: &str) -> Response {
    axum::Json(json!({"ok": false, "error": code})).into_response()
}

fn ok(mut body: Value) -> Response {
    body["ok"] = json!(true);
    axum::Json(body).into_response()
}

fn failure_response(failure: Failure) -> Response {
    match failure {
        Failure::RateLimited { retry_after_secs } => {
            let body = axum::Json(json!({"ok": false, "error": "ratelimited"}));
            let retry_after = [(header::RETRY_AFTER, retry_after_secs.to_string())];
            (StatusCode::TOO_MANY_REQUESTS, retry_after, body).into_response()
        }
        Failure::Status(status) => {
            let status = StatusCode::from_u16(status).expect("a valid status in the test");
            (status, [(header::CONTENT_TYPE, "text/html")], "<html>upstream error</html>")
                .into_response()
        }
    }
}

fn parse_args(
    method: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Bytes,
) -> Result<Args, Response> {
    let mut args = Args::new();
    let mut add_form = |text: &str| {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text).unwrap_or_default();
        for (key, value) in pairs {
            args.insert(key, Value::String(value));
        }
    };
    add_form(query.unwrap_or_default());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        add_form(std::str::from_utf8(body).unwrap_or_default());
    } else if content_type.starts_with("application/json") && JSON_METHODS.contains(&method) {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => args.extend(object),
            _ => return Err(refuse("invalid_json")),
        }
    }
    Ok(args)
}

fn caller(headers: &HeaderMap, args: &Args) -> Result<Caller, Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let token = bearer.or_else(|| args.get("token").and_then(Value::as_str));
    match token {
        None | Some("") => Err(refuse("not_authed")),
        Some(BOT_TOKEN) => Ok(Caller::Bot),
        Some(APP_TOKEN) => Ok(Caller::App),
        Some(_) => Err(refuse("invalid_auth")),
    }
}

fn text_arg(args: &Args, name: &str) -> Option<String> {
    match args.get(name)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn flag_arg(args: &Args, name: &str) -> bool {
    matches!(text_arg(args, name).as_deref(), Some("true" | "1"))
}

async fn method(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let failure = {
        let mut state = shared.state();
        *state.calls.entry(method.clone()).or_default() += 1;
        state.failures.get_mut(&method).and_then(|queue| queue.pop_front())
    };
    if let Some(failure) = failure {
        return failure_response(failure);
    }
    let args = match parse_args(&method, &headers, query.as_deref(), &body) {
        Ok(args) => args,
        Err(refusal) => return refusal,
    };
    let caller = match caller(&headers, &args) {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let wants_app = method == "apps.connections.open";
    if (caller == Caller::App) != wants_app {
        return refuse("not_allowed_token_type");
    }
    match method.as_str() {
        "auth.test" => ok(json!({
            "url": "https://fake-team.slack.com/", "team": "Fake Team", "user": "agentbot",
            "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
            "is_enterprise_install": false,
        })),
        "apps.connections.open" => ok(json!({"url": shared.socket.new_url(APP_ID)})),
        "chat.postMessage" => post_message(&shared, &args),
        "chat.update" => update(&shared, &args),
        "chat.postEphemeral" => post_ephemeral(&shared, &args),
        "reactions.add" => react(&shared, &args, true),
        "reactions.remove" => react(&shared, &args, false),
        "conversations.replies" => replies(&shared, &args),
        "users.info" => user_info(&shared, &args),
        _ => refuse("unknown_method"),
    }
}

fn metadata_arg(args: &Args) -> Result<Option<Value>, Response> {
    let metadata = match args.get("metadata") {
        None => return Ok(None),
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|_| refuse("invalid_metadata_format"))?
        }
        Some(value) => value.clone(),
    };
    if !metadata["event_type"].is_string() || !metadata["event_payload"].is_object() {
        return Err(refuse("invalid_metadata_format"));
    }
    Ok(Some(metadata))
}

fn post_message(shared: &Shared, args: &Args) -> Response {
    let Some(channel) = text_arg(args, "channel") else { return refuse("channel_not_found") };
    if !shared.state().channels.contains_key(&channel) {
        return refuse("channel_not_found");
    }
    let Some(text) = text_arg(args, "text") else { return refuse("no_text") };
    if text.chars().count() > MAX_TEXT_CHARS {
        return refuse("msg_too_long");
    }
    let metadata = match metadata_arg(args) {
        Ok(metadata) => metadata,
        Err(refusal) => return refusal,
    };
    let message = StoredMessage {
        ts: String::new(),
        thread_ts: text_arg(args, "thread_ts"),
        user: Some(BOT_USER_ID.into()),
        bot_id: Some(BOT_ID.into()),
        text,
        metadata,
        reactions: Vec::new(),
        edited: false,
        files: Vec::new(),
    };
    let ts = shared.store_message(&channel, message);
    let stored = shared.state().channels[&channel].iter().find(|m| m.ts == ts).cloned();
    let message = stored.map(|message| message.to_json(true)).unwrap_or_default();
    ok(json!({"channel": channel, "ts": ts, "message": message}))
}

fn with_message<T>(
    shared: &Shared,
    args: &Args,
    ts_name: &str,
    act: impl FnOnce(&mut StoredMessage) -> Result<T, Response>,
) -> Result<T, Response> {
    let channel = text_arg(args, "channel").ok_or_else(|| refuse("channel_not_found"))?;
    let ts = text_arg(args, ts_name).ok_or_else(|| refuse("message_not_found"))?;
    let mut state = shared.state();
    let messages = state.channels.get_mut(&channel).ok_or_else(|| refuse("channel_not_found"))?;
    let message = messages.iter_mut().find(|message| message.ts == ts);
    act(message.ok_or_else(|| refuse("message_not_found"))?)
}

fn update(shared: &Shared, args: &Args) -> Response {
    let Some(text) = text_arg(args, "text") else { return refuse("no_text") };
    if text.chars().count() > MAX_TEXT_CHARS {
        return refuse("msg_too_long");
    }
    let done = with_message(shared, args, "ts", |message| {
        if message.bot_id.as_deref() != Some(BOT_ID) {
            return Err(refuse("cant_update_message"));
        }
        message.text = text.clone();
        message.edited = true;
        Ok(message.ts.clone())
    });
    match done {
        Ok(ts) => {
            let channel = text_arg(args, "channel").unwrap_or_default();
            let update = Update { channel: channel.clone(), ts: ts.clone(), text: text.clone() };
            shared.state().updates.push(update);
            ok(json!({"channel": channel, "ts": ts, "text": text}))
        }
        Err(refusal) => refusal,
    }
}

fn post_ephemeral(shared: &Shared, args: &Args) -> Response {
    let Some(channel) = text_arg(args, "channel") else { return refuse("channel_not_found") };
    let Some(text) = text_arg(args, "text") else { return refuse("no_text") };
    let message_ts = shared.next_ts();
    let mut state = shared.state();
    if !state.channels.contains_key(&channel) {
        return refuse("channel_not_found");
    }
    let user = text_arg(args, "user").unwrap_or_default();
    if !state.users.contains_key(&user) {
        return refuse("user_not_in_channel");
    }
    let thread_ts = text_arg(args, "thread_ts");
    state.ephemerals.push(Ephemeral { channel, user, thread_ts, text });
    ok(json!({"message_ts": message_ts}))
}

fn react(shared: &Shared, args: &Args, add: bool) -> Response {
    let Some(name) = text_arg(args, "name") else { return refuse("invalid_name") };
    let done = with_message(shared, args, "timestamp", |message| {
        let position = message.reactions.iter().position(|(existing, _)| *existing == name);
        match (add, position) {
            (true, Some(at)) if message.reactions[at].1.iter().any(|user| user == BOT_USER_ID) => {
                Err(refuse("already_reacted"))
            }
            (true, Some(at)) => {
                message.reactions[at].1.push(BOT_USER_ID.into());
                Ok(())
            }
            (true, None) => {
                message.reactions.push((name.clone(), vec![BOT_USER_ID.into()]));
                Ok(())
            }
            (false, Some(at)) if message.reactions[at].1.iter().any(|user| user == BOT_USER_ID) => {
                message.reactions[at].1.retain(|user| user != BOT_USER_ID);
                if message.reactions[at].1.is_empty() {
                    message.reactions.remove(at);
                }
                Ok(())
            }
            (false, _) => Err(refuse("no_reaction")),
        }
    });
    match done {
        Ok(()) => ok(json!({})),
        Err(refusal) => refusal,
    }
}

/// `"1733140000.000100"` → comparable parts.
fn ts_key(ts: &str) -> Option<(u64, u64)> {
    let (seconds, micros) = ts.split_once('.')?;
    Some((seconds.parse().ok()?, micros.parse().ok()?))
}

fn replies(shared: &Shared, args: &Args) -> Response {
    let Some(channel) = text_arg(args, "channel") else { return refuse("channel_not_found") };
    let Some(root) = text_arg(args, "ts") else { return refuse("thread_not_found") };
    let inclusive = flag_arg(args, "inclusive");
    let bound = |name: &str| match text_arg(args, name) {
        None => Ok(None),
        Some(ts) => ts_key(&ts).map(Some).ok_or_else(|| refuse(&format!("invalid_ts_{name}"))),
    };
    let (latest, oldest) = match (bound("latest"), bound("oldest")) {
        (Ok(latest), Ok(oldest)) => (latest, oldest),
        (Err(refusal), _) | (_, Err(refusal)) => return refusal,
    };
    let limit = text_arg(args, "limit").and_then(|limit| limit.parse::<usize>().ok());
    let limit = limit.filter(|limit| *limit > 0).unwrap_or(1000).min(1000);
    let start = match text_arg(args, "cursor") {
        None => 0,
        Some(cursor) => match cursor.strip_prefix("bmV4dF9pbmRleDo").and_then(|n| n.parse().ok()) {
            Some(start) => start,
            None => return refuse("invalid_cursor"),
        },
    };
    let with_metadata = flag_arg(args, "include_all_metadata");
    let state = shared.state();
    let Some(messages) = state.channels.get(&channel) else { return refuse("channel_not_found") };
    if !messages.iter().any(|message| message.ts == root) {
        return refuse("thread_not_found");
    }
    let within = |message: &&StoredMessage| {
        let Some(key) = ts_key(&message.ts) else { return false };
        let below = latest.is_none_or(|latest| key < latest || (inclusive && key == latest));
        let above = oldest.is_none_or(|oldest| key > oldest || (inclusive && key == oldest));
        below && above
    };
    let thread: Vec<&StoredMessage> =
        messages.iter().filter(|message| message.root() == root).filter(within).collect();
    let page: Vec<Value> = thread
        .iter()
        .skip(start)
        .take(limit)
        .map(|message| message.to_json(with_metadata))
        .collect();
    let has_more = start + limit < thread.len();
    let next_cursor =
        if has_more { format!("bmV4dF9pbmRleDo{}", start + limit) } else { String::new() };
    ok(
        json!({"messages": page, "has_more": has_more, "response_metadata": {"next_cursor": next_cursor}}),
    )
}

fn user_info(shared: &Shared, args: &Args) -> Response {
    let id = text_arg(args, "user").unwrap_or_default();
    let state = shared.state();
    let Some(user) = state.users.get(&id) else { return refuse("user_not_found") };
    let mut profile = json!({
        "display_name": user.display_name, "real_name": user.real_name,
        "display_name_normalized": user.display_name, "real_name_normalized": user.real_name,
    });
    if let Some(email) = &user.email {
        profile["email"] = json!(email);
    }
    ok(json!({"user": {
        "id": id, "team_id": TEAM_ID, "name": user.name, "real_name": user.real_name,
        "deleted": false, "is_bot": false, "profile": profile,
    }}))
}

async fn file(
    State(shared): State<Arc<Shared>>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    *shared.state().calls.entry("files.download".into()).or_default() += 1;
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == format!("Bearer {BOT_TOKEN}"));
    if !authorized {
        return (StatusCode::FORBIDDEN, "not authorized").into_response();
    }
    let id = params.get("id").cloned().unwrap_or_default();
    let Some(hosted) = shared.state().files.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    if hosted.announce_length {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            hosted.bytes,
        )
            .into_response();
    }
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        hosted.bytes.chunks(16 * 1024).map(|chunk| Ok(Bytes::copy_from_slice(chunk))).collect();
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], body).into_response()
}
