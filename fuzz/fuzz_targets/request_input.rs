//! Fuzzes everything the proxy reads from a caller before deciding anything: the session
//! path split, session ids, environment and tag validation, repository names, and JSON
//! bodies. None of it may panic, whatever the bytes.

#![no_main]

use std::collections::BTreeMap;

use agentapi_proxy::proxy::split_session_path;
use agentapi_proxy::sessions::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = split_session_path(&text);
    let _ = validate::is_session_id(&text);
    let middle = (0..=text.len() / 2).rev().find(|at| text.is_char_boundary(*at)).unwrap_or(0);
    let (left, right) = text.split_at(middle);
    let pair: BTreeMap<String, String> = [(left.to_string(), right.to_string())].into();
    let _ = validate::environment(&pair, &["RESERVED"]);
    let _ = validate::tags(&pair);
    let _ = validate::repository(&text, &["github.com".to_string()]);
    let _ = serde_json::from_slice::<serde_json::Value>(data);
});
