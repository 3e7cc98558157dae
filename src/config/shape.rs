//! The typed outline of `config.json`, derived from the defaults, used to check a file or an
//! environment override key by key before it is deserialized, so every problem is reported
//! at once and unknown keys can be named.

use std::collections::BTreeMap;

use serde_json::Value;

use super::chat::UserEntry;
use super::schema::{ApiKeyEntry, Config, KubernetesToleration, OAuthConfig, TeamRole};

/// Longest supervision lease (`server.lease_ttl_seconds`): a dead replica's sessions wait
/// this long for another to take them.
const MAX_LEASE_TTL_SECONDS: u64 = 600;
/// Most listener threads `server.workers` may ask for.
const MAX_WORKERS: u64 = 1024;

/// What a configuration key accepts.
#[derive(Debug, Clone)]
pub enum Shape {
    Bool,
    /// A whole number from 0 to `max`.
    Int {
        max: u64,
    },
    /// A string, optionally limited to a set of words.
    Str {
        choices: Option<&'static [&'static str]>,
    },
    List(Box<Shape>),
    /// An object with fixed keys.
    Record(BTreeMap<String, Shape>),
    /// An object whose keys are free (names chosen by the operator).
    Map(Box<Shape>),
}

impl Shape {
    /// A short description for error messages: "a whole number", "a list", ...
    pub fn describe(&self) -> String {
        match self {
            Shape::Bool => "true or false".into(),
            Shape::Int { max } => format!("a whole number from 0 to {max}"),
            Shape::Str { choices: Some(words) } => format!("one of {}", words.join(", ")),
            Shape::Str { choices: None } => "a string".into(),
            Shape::List(_) => "a JSON array".into(),
            Shape::Record(_) | Shape::Map(_) => "a JSON object".into(),
        }
    }

    /// The field of a record whose name matches `name` ignoring ASCII case.
    pub fn field_ignoring_case(&self, name: &str) -> Option<(&str, &Shape)> {
        match self {
            Shape::Record(fields) => fields
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(key, shape)| (key.as_str(), shape)),
            _ => None,
        }
    }

    fn from_default(value: &Value) -> Shape {
        match value {
            Value::Bool(_) => Shape::Bool,
            Value::Number(_) => Shape::Int { max: u64::MAX },
            Value::Array(_) => Shape::List(Box::new(Shape::Str { choices: None })),
            Value::Object(map) => Shape::Record(
                map.iter().map(|(key, value)| (key.clone(), Shape::from_default(value))).collect(),
            ),
            Value::String(_) | Value::Null => Shape::Str { choices: None },
        }
    }

    fn at_mut(&mut self, path: &[&str]) -> &mut Shape {
        let mut shape = self;
        for segment in path {
            shape = match shape {
                Shape::Record(fields) => fields
                    .get_mut(*segment)
                    .unwrap_or_else(|| panic!("config shape has no key {segment}")),
                _ => panic!("config shape: {segment} is not inside an object"),
            };
        }
        shape
    }
}

fn record_of<T: serde::Serialize + Default>() -> Shape {
    Shape::from_default(&serde_json::to_value(T::default()).unwrap_or(Value::Null))
}

/// The outline of the whole configuration file.
pub fn config_shape() -> Shape {
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let mut shape = Shape::from_default(&defaults);
    const PORT: Shape = Shape::Int { max: 65_535 };
    *shape.at_mut(&["start_port"]) = PORT;
    *shape.at_mut(&["end_port"]) = PORT;
    *shape.at_mut(&["server", "port"]) = PORT;
    *shape.at_mut(&["server", "workers"]) = Shape::Int { max: MAX_WORKERS };
    *shape.at_mut(&["server", "lease_ttl_seconds"]) = Shape::Int { max: MAX_LEASE_TTL_SECONDS };
    *shape.at_mut(&["session", "on_shutdown"]) =
        Shape::Str { choices: Some(&["terminate", "keep"]) };
    *shape.at_mut(&["session", "restart"]) = Shape::Str { choices: Some(&["never", "on-failure"]) };
    *shape.at_mut(&["auth", "static", "api_keys"]) = Shape::List(Box::new(api_key_shape()));
    *shape.at_mut(&["agent", "uid_range"]) =
        Shape::List(Box::new(Shape::Int { max: u32::MAX as u64 }));
    *shape.at_mut(&["agent", "containment"]) =
        Shape::Str { choices: Some(&["auto", "cgroup", "descendants"]) };
    *shape.at_mut(&["agent", "backend"]) = Shape::Str { choices: Some(&["local", "kubernetes"]) };
    *shape.at_mut(&["kubernetes", "agent_port"]) = PORT;
    *shape.at_mut(&["kubernetes", "tolerations"]) =
        Shape::List(Box::new(record_of::<KubernetesToleration>()));
    for free in ["node_selector", "labels", "annotations", "proxy_pod_labels"] {
        *shape.at_mut(&["kubernetes", free]) = Shape::Map(Box::new(Shape::Str { choices: None }));
    }
    *shape.at_mut(&["agent", "environment"]) = Shape::Map(Box::new(Shape::Str { choices: None }));
    *shape.at_mut(&["auth", "github", "user_mapping", "team_role_mapping"]) =
        Shape::Map(Box::new(record_of::<TeamRole>()));
    *shape.at_mut(&["auth", "users"]) = Shape::Map(Box::new(record_of::<UserEntry>()));
    *shape.at_mut(&["chat", "slack", "mode"]) = Shape::Str { choices: Some(&["socket", "events"]) };
    *shape.at_mut(&["chat", "slack", "reply"]) = Shape::Str { choices: Some(&["final", "stream"]) };
    *shape.at_mut(&["chat", "slack", "history_messages"]) =
        Shape::Int { max: super::chat::MAX_HISTORY_MESSAGES };
    for free in ["users", "channel_profiles"] {
        *shape.at_mut(&["chat", "slack", free]) =
            Shape::Map(Box::new(Shape::Str { choices: None }));
    }
    if let Shape::Record(github) = shape.at_mut(&["auth", "github"]) {
        github.insert("oauth".into(), record_of::<OAuthConfig>());
    }
    shape
}

/// The outline of one API-key entry (inline or in the keys file).
pub fn api_key_shape() -> Shape {
    let mut value = serde_json::to_value(ApiKeyEntry::default()).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        // Unset optional fields are not serialized; all of them are strings.
        for optional in ["key", "key_hash", "key_prefix", "created_at", "expires_at"] {
            map.insert(optional.into(), Value::String(String::new()));
        }
    }
    Shape::from_default(&value)
}

/// Problems and warnings found while reading configuration.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// An unknown key is a warning, except inside `auth` and `chat`, where a typo (`enabeld`,
/// `chanels`) could leave the server open: there it is a problem, with the nearest known
/// key suggested.
pub fn unknown_key<'k>(
    path: &str,
    key: &str,
    known: impl Iterator<Item = &'k String>,
    findings: &mut Findings,
) {
    let full = join(path, key);
    let suggestion = nearest(key, known)
        .map(|near| format!("; did you mean `{}`?", join(path, near)))
        .unwrap_or_default();
    let guarded =
        ["auth", "chat"].iter().any(|top| full == *top || full.starts_with(&format!("{top}.")));
    if !guarded {
        findings.warnings.push(format!("unknown configuration key `{full}` (ignored){suggestion}"));
        return;
    }
    findings.problems.push(format!(
        "unknown configuration key `{full}`: inside `auth` and `chat` a misspelt key could \
         leave the server open{suggestion}"
    ));
}

/// The known key closest to `key` by edit distance, if it is close enough to be a typo.
fn nearest<'k>(key: &str, known: impl Iterator<Item = &'k String>) -> Option<&'k str> {
    let key = key.to_ascii_lowercase();
    known
        .map(|candidate| (edit_distance(&key, &candidate.to_ascii_lowercase()), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let width = b.len() + 1;
    let mut table: Vec<usize> = (0..(a.len() + 1) * width).collect();
    for i in 0..=a.len() {
        table[i * width] = i;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (table[(i - 1) * width + j] + 1)
                .min(table[i * width + j - 1] + 1)
                .min(table[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[(i - 2) * width + j - 2] + 1);
            }
            table[i * width + j] = best;
        }
    }
    table[a.len() * width + b.len()]
}

/// Checks `value` against `shape`: type mismatches become problems, unknown keys warnings
/// (problems inside `auth`, see [`unknown_key`]).
/// `null` anywhere means "not set" and is accepted.
pub fn check(value: &Value, shape: &Shape, path: &str, findings: &mut Findings) {
    let mismatch = |findings: &mut Findings| {
        findings.problems.push(format!(
            "`{path}`: expected {}, got {}",
            shape.describe(),
            kind_of(value)
        ));
    };
    match (shape, value) {
        (_, Value::Null) | (Shape::Bool, Value::Bool(_)) => {}
        (Shape::Int { max }, Value::Number(number)) => match number.as_u64() {
            Some(n) if n <= *max => {}
            _ => findings
                .problems
                .push(format!("`{path}`: expected {}, got {number}", shape.describe())),
        },
        (Shape::Str { choices }, Value::String(text)) => {
            if let Some(words) = choices
                && !words.contains(&text.as_str())
            {
                findings
                    .problems
                    .push(format!("`{path}`: expected {}, got {text:?}", shape.describe()));
            }
        }
        (Shape::List(item), Value::Array(items)) => {
            for (index, element) in items.iter().enumerate() {
                check(element, item, &format!("{path}[{index}]"), findings);
            }
        }
        (Shape::Record(fields), Value::Object(map)) => {
            for (key, element) in map {
                match fields.get(key) {
                    Some(field) => check(element, field, &join(path, key), findings),
                    None => unknown_key(path, key, fields.keys(), findings),
                }
            }
        }
        (Shape::Map(item), Value::Object(map)) => {
            for (key, element) in map {
                check(element, item, &join(path, key), findings);
            }
        }
        _ => mismatch(findings),
    }
}
