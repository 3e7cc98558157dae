//! The shape of one log line, JSON or human, with the id of the request being served (if
//! any) as a top-level `request_id`. The id comes from [`crate::observe::current_request_id`]
//! rather than a tracing span, so serving a request costs the logger nothing unless a line
//! is actually written.
//!
//! Lines are inert (security.md rule 19): text from agents or callers can neither start a
//! line of its own nor drive a terminal. The human style writes control characters (C0, DEL,
//! C1, so CR, LF and ESC), line and paragraph separators and bidi overrides as `\n`, `\r`,
//! `\t` or `\u{..}`, and quotes field values that contain spaces, `=` or quotes; the JSON style
//! escapes the same characters as `\u00XX` (serde_json only escapes C0).

use std::fmt;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How a line looks: one JSON object (`timestamp`, `level`, `request_id`, `message`, the
/// event's fields, `target`), or `timestamp LEVEL target: message key=value ...
/// request_id=...` for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLines {
    Json,
    Human,
}

impl<S, N> FormatEvent<S, N> for LogLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut fields = Map::new();
        event.record(&mut JsonFields(&mut fields));
        let request_id = crate::observe::current_request_id();
        match self {
            Self::Json => {
                fields.insert("timestamp".into(), Value::String(timestamp()));
                fields.insert("level".into(), Value::String(metadata.level().as_str().into()));
                if let Some(id) = request_id {
                    fields.insert("request_id".into(), Value::String(id));
                }
                fields.insert("target".into(), Value::String(metadata.target().into()));
                writeln!(writer, "{}", json_inert(Value::Object(fields).to_string()))
            }
            Self::Human => {
                let (level, target) = (metadata.level(), metadata.target());
                write!(writer, "{} {level:>5} {target}: ", timestamp())?;
                match fields.remove("message") {
                    Some(Value::String(text)) => write_inert(&mut writer, &text)?,
                    Some(other) => write_inert(&mut writer, &other.to_string())?,
                    None => {}
                }
                for (name, value) in &fields {
                    write!(writer, " ")?;
                    write_inert(&mut writer, name)?;
                    write!(writer, "=")?;
                    match value {
                        Value::String(text) => write_field_value(&mut writer, text)?,
                        other => write_field_value(&mut writer, &other.to_string())?,
                    }
                }
                if let Some(id) = request_id {
                    write!(writer, " request_id=")?;
                    write_field_value(&mut writer, &id)?;
                }
                writeln!(writer)
            }
        }
    }
}

/// Characters that must never reach a log line as they are: every control character (C0 with
/// CR, LF and ESC; DEL; C1), the Unicode line and paragraph separators, and the bidi
/// embeddings, overrides and isolates that reorder what a reader sees.
fn is_unsafe_in_logs(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `text` with every [`is_unsafe_in_logs`] character escaped.
fn write_inert(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(index) = rest.find(is_unsafe_in_logs) {
        writer.write_str(&rest[..index])?;
        let c = rest[index..].chars().next().unwrap_or_default();
        match c {
            '\n' => writer.write_str("\\n")?,
            '\r' => writer.write_str("\\r")?,
            '\t' => writer.write_str("\\t")?,
            other => write!(writer, "\\u{{{:x}}}", u32::from(other))?,
        }
        rest = &rest[index + c.len_utf8()..];
    }
    writer.write_str(rest)
}

/// A field value: as is when it is one plain word, else quoted (`"`, `\\` escaped) so it
/// cannot pass for more fields.
fn write_field_value(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    let plain = !text.is_empty()
        && !text.contains(|c: char| c.is_whitespace() || c == '=' || c == '"' || c == '\\');
    if plain {
        return write_inert(writer, text);
    }
    writer.write_char('"')?;
    let mut rest = text;
    while let Some(index) = rest.find(['"', '\\']) {
        write_inert(writer, &rest[..index])?;
        writer.write_char('\\')?;
        writer.write_str(&rest[index..=index])?;
        rest = &rest[index + 1..];
    }
    write_inert(writer, rest)?;
    writer.write_char('"')
}

/// A serialized JSON line with the characters serde_json leaves raw (DEL, C1, separators,
/// bidi controls) escaped as `\uXXXX`. They only occur inside strings, where that escape
/// means the same character.
fn json_inert(line: String) -> String {
    if line.bytes().all(|byte| byte < 0x7f) {
        return line;
    }
    let mut escaped = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if is_unsafe_in_logs(c) {
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

fn timestamp() -> String {
    time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

/// Collects an event's fields as JSON values.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::String(value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn human(text: &str) -> String {
        let mut out = String::new();
        write_inert(&mut Writer::new(&mut out), text).expect("written");
        out
    }

    fn field(text: &str) -> String {
        let mut out = String::new();
        write_field_value(&mut Writer::new(&mut out), text).expect("written");
        out
    }

    #[test]
    fn control_characters_never_reach_a_human_line() {
        let forged = "refused\r\n2024-01-01T00:00:00Z ERROR agentapi_proxy::auth: \u{1b}[2Jforged";
        let written = human(forged);
        assert_eq!(
            written,
            "refused\\r\\n2024-01-01T00:00:00Z ERROR agentapi_proxy::auth: \\u{1b}[2Jforged"
        );
        for c in
            ['\u{0}', '\u{7}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}', '\u{202e}', '\u{2066}']
        {
            let written = human(&format!("a{c}b"));
            assert!(!written.contains(c), "{c:?} escaped: {written}");
            assert!(written.starts_with("a\\u{") && written.ends_with('b'), "{written}");
        }
        assert_eq!(human("tab\there"), "tab\\there");
        assert_eq!(human("plain é ✓ text"), "plain é ✓ text");
    }

    #[test]
    fn field_values_cannot_pass_for_more_fields() {
        assert_eq!(field("abc"), "abc");
        assert_eq!(field("a b user_id=admin"), "\"a b user_id=admin\"");
        assert_eq!(field("say \"hi\" \\ bye"), "\"say \\\"hi\\\" \\\\ bye\"");
        assert_eq!(field(""), "\"\"");
        assert_eq!(field("x\ny"), "\"x\\ny\"");
    }

    #[test]
    fn json_lines_escape_what_serde_json_leaves_raw() {
        let value = serde_json::json!({ "body": "a\u{1b}[31m\r\nb\u{7f}\u{9b}\u{2028}\u{202e}é" });
        let line = json_inert(value.to_string());
        assert_eq!(line, r#"{"body":"a\u001b[31m\r\nb\u007f\u009b\u2028\u202eé"}"#);
        assert!(line.chars().all(|c| !is_unsafe_in_logs(c)));
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("still JSON");
        assert_eq!(parsed, value, "the same text once decoded");
        let ascii = r#"{"a":"b"}"#.to_string();
        assert_eq!(json_inert(ascii.clone()), ascii);
    }
}
