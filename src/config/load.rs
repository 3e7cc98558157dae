//! Reading configuration: built-in defaults < `config.json` (with `${VAR}` expansion) <
//! `AGENTAPI_PROXY_*` environment variables < command-line flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::shape::{Findings, Shape, check, config_shape};
use super::{Config, ConfigError};

/// Prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "AGENTAPI_PROXY_";
/// Environment variables with the prefix that belong to other commands, not to the server.
const FOREIGN_ENV: &[&str] = &["AGENTAPI_PROXY_API_KEY", "AGENTAPI_PROXY_ENDPOINT"];
/// Read when no `-c` is given and the file exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config.json";

/// Values given as command-line flags; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub port: Option<u16>,
    pub bind: Option<String>,
}

/// Everything configuration is read from, passed in so tests need not touch the process.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-c/--config`: must exist when given.
    pub config_path: Option<PathBuf>,
    /// The environment, for `AGENTAPI_PROXY_*` overrides and `${VAR}` expansion.
    pub env: Vec<(String, String)>,
    pub flags: FlagOverrides,
    /// Directory searched for `config.json` when no path is given.
    pub working_dir: PathBuf,
}

impl LoadOptions {
    /// Options reading this process's environment and working directory.
    pub fn from_process(config_path: Option<PathBuf>, flags: FlagOverrides) -> Self {
        Self {
            config_path,
            env: std::env::vars().collect(),
            flags,
            working_dir: PathBuf::from("."),
        }
    }
}

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Defaults,
}

/// A validated configuration and what is worth telling the operator about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub source: ConfigSource,
    pub warnings: Vec<String>,
}

/// Reads, merges, checks and validates the configuration.
pub fn load(options: &LoadOptions) -> Result<Loaded, ConfigError> {
    let shape = config_shape();
    let env: HashMap<&str, &str> =
        options.env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let mut findings = Findings::default();
    let mut merged = serde_json::to_value(Config::default()).unwrap_or(Value::Null);

    let source = match file_to_read(options) {
        Some(path) => {
            let mut file = read_json_file(&path)?;
            expand_variables(&mut file, "", &env, &mut findings.problems);
            check(&file, &shape, "", &mut findings);
            merge(&mut merged, file);
            ConfigSource::File(path)
        }
        None => ConfigSource::Defaults,
    };
    apply_environment(&mut merged, &shape, &options.env, &mut findings);
    apply_flags(&mut merged, &options.flags);

    if !findings.problems.is_empty() {
        return Err(ConfigError::Invalid { problems: findings.problems });
    }
    let config: Config = serde_json::from_value(merged)
        .map_err(|error| ConfigError::Invalid { problems: vec![error.to_string()] })?;
    let report = super::validate::validate(&config);
    findings.warnings.extend(report.warnings);
    if !report.problems.is_empty() {
        return Err(ConfigError::Invalid { problems: report.problems });
    }
    Ok(Loaded { config, source, warnings: findings.warnings })
}

fn file_to_read(options: &LoadOptions) -> Option<PathBuf> {
    if let Some(path) = &options.config_path {
        return Some(path.clone());
    }
    let default = options.working_dir.join(DEFAULT_CONFIG_FILE);
    default.is_file().then_some(default)
}

/// Reads a JSON object from `path`; syntax errors carry line and column.
pub fn read_json_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| ConfigError::Unreadable { path: path.to_path_buf(), error })?;
    let value: Value = serde_json::from_str(&text).map_err(|error| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: error.line(),
        column: error.column(),
        message: error.to_string(),
    })?;
    if !value.is_object() {
        return Err(ConfigError::Invalid {
            problems: vec![format!("{}: the top level must be a JSON object", path.display())],
        });
    }
    Ok(value)
}

/// Replaces `${NAME}` in every string of `value` by that environment variable.
fn expand_variables(
    value: &mut Value,
    path: &str,
    env: &HashMap<&str, &str>,
    problems: &mut Vec<String>,
) {
    match value {
        Value::String(text) => match expand_string(text, env) {
            Ok(expanded) => *text = expanded,
            Err(name) => problems.push(format!(
                "`{path}`: environment variable {name} is not set (referenced as ${{{name}}})"
            )),
        },
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_variables(item, &format!("{path}[{index}]"), env, problems);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                expand_variables(item, &child, env, problems);
            }
        }
        _ => {}
    }
}

/// Expands `${NAME}` references; returns the first unset name as the error.
pub fn expand_string(text: &str, env: &HashMap<&str, &str>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        if is_variable_name(name) {
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => return Err(name.to_string()),
            }
        } else {
            out.push_str(&rest[start..start + 2 + end + 1]);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Deep-merges `overlay` into `base`: objects key by key, everything else replaced;
/// `null` in the overlay keeps the base value.
fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (_, Value::Null) => {}
        (Value::Object(base_map), Value::Object(overlay_map)) => {
            for (key, value) in overlay_map {
                match base_map.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        if !value.is_null() {
                            base_map.insert(key, value);
                        }
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

fn apply_environment(
    merged: &mut Value,
    shape: &Shape,
    env: &[(String, String)],
    findings: &mut Findings,
) {
    let mut overrides: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| {
            name.len() > ENV_PREFIX.len()
                && name[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX)
                && !FOREIGN_ENV.iter().any(|foreign| foreign.eq_ignore_ascii_case(name))
        })
        .collect();
    overrides.sort();
    for (name, raw) in overrides {
        let rest = &name[ENV_PREFIX.len()..];
        let Some((path, leaf)) = resolve_env_path(shape, rest) else {
            let unknown = format!("environment variable {name} names no configuration key");
            // As in the file, a misspelt `auth` key could leave the server open.
            if rest.get(..6).is_some_and(|head| head.eq_ignore_ascii_case("AUTH__")) {
                findings.problems.push(unknown);
            } else {
                findings.warnings.push(format!("{unknown} (ignored)"));
            }
            continue;
        };
        match parse_env_value(raw, leaf) {
            Ok(value) => {
                let mut local = Findings::default();
                check(&value, leaf, &path.join("."), &mut local);
                if local.problems.is_empty() {
                    set_at(merged, &path, value);
                } else {
                    findings.problems.extend(
                        local.problems.into_iter().map(|problem| format!("{name}: {problem}")),
                    );
                }
                findings.warnings.extend(local.warnings);
            }
            Err(expected) => {
                findings.problems.push(format!("{name}: expected {expected}, got {raw:?}"))
            }
        }
    }
}

/// Maps `AUTH__GITHUB__BASE_URL` to `["auth","github","base_url"]`, ignoring case.
fn resolve_env_path<'s>(shape: &'s Shape, rest: &str) -> Option<(Vec<String>, &'s Shape)> {
    let mut path = Vec::new();
    let mut current = shape;
    let segments: Vec<&str> = rest.split("__").collect();
    for (index, segment) in segments.iter().enumerate() {
        match current {
            Shape::Record(_) => {
                let (key, field) = current.field_ignoring_case(segment)?;
                path.push(key.to_string());
                current = field;
            }
            Shape::Map(item) if index == segments.len() - 1 && !segment.is_empty() => {
                path.push(segment.to_string());
                current = item;
            }
            _ => return None,
        }
    }
    Some((path, current))
}

fn parse_env_value(raw: &str, shape: &Shape) -> Result<Value, String> {
    let trimmed = raw.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        return serde_json::from_str(raw).map_err(|error| format!("valid JSON ({error})"));
    }
    match shape {
        Shape::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err(shape.describe()),
        },
        Shape::Int { .. } => {
            raw.trim().parse::<u64>().map(Value::from).map_err(|_| shape.describe())
        }
        Shape::Str { .. } => Ok(Value::String(raw.to_string())),
        Shape::List(_) | Shape::Record(_) | Shape::Map(_) => Err(shape.describe()),
    }
}

fn set_at(root: &mut Value, path: &[String], value: Value) {
    let mut current = root;
    for segment in path {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else { return };
        current = map.entry(segment.clone()).or_insert(Value::Null);
    }
    *current = value;
}

fn apply_flags(merged: &mut Value, flags: &FlagOverrides) {
    if let Some(port) = flags.port {
        set_at(merged, &["server".into(), "port".into()], Value::from(port));
    }
    if let Some(bind) = &flags.bind {
        set_at(merged, &["server".into(), "bind".into()], Value::from(bind.clone()));
    }
}
