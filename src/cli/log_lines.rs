//! The shape of one log line, JSON or human, with the id of the request being served (if
//! any) as a top-level `request_id`. The id comes from [`crate::observe::current_request_id`]
//! rather than a tracing span, so serving a request costs the logger nothing unless a line
//! is actually written.

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
                writeln!(writer, "{}", Value::Object(fields))
            }
            Self::Human => {
                let message = match fields.remove("message") {
                    Some(Value::String(text)) => text,
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let (level, target) = (metadata.level(), metadata.target());
                write!(writer, "{} {level:>5} {target}: {message}", timestamp())?;
                for (name, value) in &fields {
                    match value {
                        Value::String(text) => write!(writer, " {name}={text}")?,
                        other => write!(writer, " {name}={other}")?,
                    }
                }
                if let Some(id) = request_id {
                    write!(writer, " request_id={id}")?;
                }
                writeln!(writer)
            }
        }
    }
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
