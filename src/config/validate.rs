//! Startup validation of a deserialized `Config`: every problem is collected, none stops the
//! search for the next, so an operator fixes a file in one round.

use std::net::IpAddr;
use std::path::Path;

use http::Uri;
use http::header::HeaderName;

use super::schema::{ApiKeyEntry, ApiKeysFile, BUILTIN_ECHO_AGENT, Config};
use super::shape::{Findings, api_key_shape, check};
use crate::auth::PERMISSIONS;

/// Variables the proxy itself sets for every agent; the operator cannot set them.
pub const PROXY_SET_ENV: &[&str] = &["PATH", "HOME", "TMPDIR", "LANG", "TERM"];

/// Checks every value a type cannot express; returns problems (fatal) and warnings.
pub fn validate(config: &Config) -> Findings {
    let mut out = Findings::default();
    ports(config, &mut out);
    auth(config, &mut out);
    durations_and_limits(config, &mut out);
    agent(config, &mut out);
    network(config, &mut out);
    super::chat::validate_chat(config, &mut out);
    if config.data_dir.trim().is_empty() {
        out.problems.push("`data_dir` must not be empty".into());
    }
    if config.agent.backend == super::kubernetes::KUBERNETES_BACKEND {
        super::kubernetes::validate_kubernetes(&config.kubernetes, &mut out);
        if config.server.public_url.trim().is_empty() {
            out.warnings.push(
                "`agent.backend` \"kubernetes\" without `server.public_url`: agents get \
                 APX_PROXY_URL pointing at this server's loopback address, which a Pod cannot \
                 reach; set it to the proxy Service's URL"
                    .into(),
            );
        }
    }
    persistence(config, &mut out);
    out
}

fn persistence(config: &Config, out: &mut Findings) {
    let persistence = &config.persistence;
    match persistence.backend.as_str() {
        "sqlite" => {}
        "file" => out.warnings.push(
            "`persistence.backend` \"file\" (Go proxy) is stored in SQLite by this server".into(),
        ),
        "postgres" => {
            if !persistence.enabled {
                out.warnings.push(
                    "`persistence.enabled` is false: the store is in memory and \
                     `persistence.postgres_url` is not used"
                        .into(),
                );
            }
            // The parser's message may quote the URL, password included: never repeat it.
            if persistence.postgres_url.trim().is_empty() {
                out.problems.push(
                    "`persistence.postgres_url` is required with `persistence.backend` \"postgres\""
                        .into(),
                );
            } else if let Err(problem) = parse_postgres_url(&persistence.postgres_url) {
                out.problems.push(format!("`persistence.postgres_url`: {problem}"));
            }
            if persistence.pool_size == 0 {
                out.problems.push("`persistence.pool_size` must be at least 1".into());
            }
            if persistence.connect_timeout_seconds == 0 {
                out.problems.push("`persistence.connect_timeout_seconds` must be above 0".into());
            }
        }
        other => out.problems.push(format!(
            "`persistence.backend`: expected \"sqlite\", \"postgres\" or \"file\", got {other:?}"
        )),
    }
}

/// Parses a PostgreSQL connection string (URL or `key=value` form); the error never quotes
/// it, since it may hold a password.
pub fn parse_postgres_url(url: &str) -> Result<tokio_postgres::Config, String> {
    let parsed: tokio_postgres::Config = url.parse().map_err(|error: tokio_postgres::Error| {
        let reason = error.to_string();
        // The parser names the option at fault; refuse to echo anything that could be a value.
        if url.len() > 3 && reason.contains(url) {
            "not a valid PostgreSQL connection URL".to_string()
        } else {
            format!("not a valid PostgreSQL connection URL ({reason})")
        }
    })?;
    if parsed.get_hosts().is_empty() {
        return Err("the PostgreSQL connection URL names no host".into());
    }
    if parsed.get_dbname().is_none_or(str::is_empty) {
        return Err("the PostgreSQL connection URL names no database".into());
    }
    Ok(parsed)
}

fn ports(config: &Config, out: &mut Findings) {
    if config.start_port == 0 {
        out.problems.push("`start_port` must be between 1 and 65535".into());
    }
    if config.end_port < config.start_port {
        out.problems.push(format!(
            "`end_port` ({}) must not be below `start_port` ({})",
            config.end_port, config.start_port
        ));
    }
}

fn auth(config: &Config, out: &mut Findings) {
    let auth = &config.auth;
    let statics = &auth.static_keys;
    if HeaderName::from_bytes(statics.header_name.as_bytes()).is_err() {
        out.problems.push(format!(
            "`auth.static.header_name`: {:?} is not a valid HTTP header name",
            statics.header_name
        ));
    }
    for (index, entry) in statics.api_keys.iter().enumerate() {
        for problem in api_key_problems(entry) {
            out.problems.push(format!("`auth.static.api_keys[{index}]`: {problem}"));
        }
    }
    if !statics.keys_file.is_empty()
        && let Err(problem) = read_keys_file(Path::new(&statics.keys_file))
    {
        out.problems.push(format!("`auth.static.keys_file`: {problem}"));
    }
    let github = &auth.github;
    check_url(&github.base_url, "auth.github.base_url", out);
    if HeaderName::from_bytes(github.token_header.as_bytes()).is_err() {
        out.problems.push(format!(
            "`auth.github.token_header`: {:?} is not a valid HTTP header name",
            github.token_header
        ));
    }
    let mapping = &github.user_mapping;
    check_role(&mapping.default_role, "auth.github.user_mapping.default_role", out);
    check_permissions(
        &mapping.default_permissions,
        "auth.github.user_mapping.default_permissions",
        out,
    );
    for (team, role) in &mapping.team_role_mapping {
        let path = format!("auth.github.user_mapping.team_role_mapping.{team}");
        if !team.contains('/') {
            out.problems.push(format!("`{path}`: a team is written \"org/team-slug\""));
        }
        check_role(&role.role, &format!("{path}.role"), out);
        check_permissions(&role.permissions, &format!("{path}.permissions"), out);
    }
    if let Some(oauth) = &github.oauth {
        for (value, key) in
            [(&oauth.client_id, "client_id"), (&oauth.client_secret, "client_secret")]
        {
            if value.trim().is_empty() {
                out.problems
                    .push(format!("`auth.github.oauth.{key}` is required when `oauth` is present"));
            }
        }
        check_url(&oauth.base_url, "auth.github.oauth.base_url", out);
        for (index, uri) in oauth.allowed_redirect_uris.iter().enumerate() {
            check_url(uri, &format!("auth.github.oauth.allowed_redirect_uris[{index}]"), out);
        }
        if oauth.allowed_redirect_uris.is_empty() {
            out.warnings.push(
                "`auth.github.oauth.allowed_redirect_uris` is empty: POST /oauth/authorize will answer 400".into(),
            );
        }
        if oauth.session_ttl_seconds == 0 {
            out.problems.push("`auth.github.oauth.session_ttl_seconds` must be above 0".into());
        }
        if config.server.public_url.is_empty() {
            out.warnings
                .push("`server.public_url` is empty: the OAuth browser login needs it".into());
        }
    }
    let keys = statics.enabled && (!statics.api_keys.is_empty() || !statics.keys_file.is_empty());
    let github_sign_in = github.enabled || github.oauth.is_some();
    if auth.enabled && !keys && !github_sign_in {
        out.problems.push(
            "`auth.enabled` is true but nothing lets anyone in, so every request would be \
             refused: add keys (`auth.static.enabled: true` with `api_keys` or a `keys_file`; \
             `agentapi-proxy helpers generate-token --output-path api_keys.json --user-id NAME` \
             makes one), or enable `auth.github`"
                .into(),
        );
    }
}

/// What is wrong with one API-key entry (empty when nothing).
pub fn api_key_problems(entry: &ApiKeyEntry) -> Vec<String> {
    let mut problems = Vec::new();
    match (&entry.key, &entry.key_hash) {
        (Some(_), Some(_)) => problems.push("has both `key` and `key_hash`; keep one".into()),
        (None, None) => problems.push("needs `key` or `key_hash`".into()),
        (Some(key), None) if key.trim().is_empty() => problems.push("`key` is empty".into()),
        (None, Some(hash)) if !is_key_hash(hash) => problems.push(
            "`key_hash` must be an Argon2id PHC string ($argon2id$...) or sha256:<64 hex>".into(),
        ),
        _ => {}
    }
    if let Some(prefix) = &entry.key_prefix
        && (prefix.is_empty() || prefix.chars().count() > 8)
    {
        problems.push("`key_prefix` must be the key's first 1 to 8 characters".into());
    }
    if entry.user_id.trim().is_empty() {
        problems.push("`user_id` is required".into());
    }
    if !entry.role.is_empty() && !is_role_name(&entry.role) {
        problems.push(format!("`role` {:?} is not a valid role name", entry.role));
    }
    for permission in &entry.permissions {
        if !PERMISSIONS.contains(&permission.as_str()) {
            problems.push(format!("unknown permission {permission:?}"));
        }
    }
    for (value, key) in [(&entry.created_at, "created_at"), (&entry.expires_at, "expires_at")] {
        if let Some(text) = value
            && parse_timestamp(text).is_none()
        {
            problems.push(format!("`{key}` {text:?} is not an RFC 3339 time"));
        }
    }
    problems
}

/// Parses an RFC 3339 timestamp (`2026-06-23T00:00:00Z`).
pub fn parse_timestamp(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

fn is_key_hash(hash: &str) -> bool {
    if let Some(hex) = hash.strip_prefix("sha256:") {
        return hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit());
    }
    hash.starts_with("$argon2id$") && hash.split('$').count() >= 5
}

/// Reads and checks a keys file: `{"api_keys": [...]}`. The error names the entry.
pub fn read_keys_file(path: &Path) -> Result<Vec<ApiKeyEntry>, String> {
    let value = super::load::read_json_file(path).map_err(|error| error.to_string())?;
    let mut findings = Findings::default();
    if let Some(entries) = value.get("api_keys") {
        check(
            entries,
            &super::shape::Shape::List(Box::new(api_key_shape())),
            "api_keys",
            &mut findings,
        );
    }
    if let Some(problem) = findings.problems.first() {
        return Err(format!("{}: {problem}", path.display()));
    }
    let file: ApiKeysFile =
        serde_json::from_value(value).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut problems = Vec::new();
    for (index, entry) in file.api_keys.iter().enumerate() {
        for problem in api_key_problems(entry) {
            problems.push(format!("{}: api_keys[{index}]: {problem}", path.display()));
        }
    }
    if problems.is_empty() { Ok(file.api_keys) } else { Err(problems.join("; ")) }
}

fn is_role_name(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 64
        && role.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

fn check_role(role: &str, path: &str, out: &mut Findings) {
    if !is_role_name(role) {
        out.problems.push(format!("`{path}`: {role:?} is not a valid role name"));
    }
}

pub(super) fn check_permissions(permissions: &[String], path: &str, out: &mut Findings) {
    for permission in permissions {
        if !PERMISSIONS.contains(&permission.as_str()) {
            out.problems.push(format!(
                "`{path}`: unknown permission {permission:?} (known: {})",
                PERMISSIONS.join(", ")
            ));
        }
    }
}

fn check_url(text: &str, path: &str, out: &mut Findings) {
    if !is_http_url(text) {
        out.problems.push(format!("`{path}`: {text:?} is not an http(s) URL"));
    }
}

fn is_http_url(text: &str) -> bool {
    match text.parse::<Uri>() {
        Ok(uri) => {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|host| !host.is_empty())
        }
        Err(_) => false,
    }
}

fn durations_and_limits(config: &Config, out: &mut Findings) {
    let must_be_positive = [
        (config.session.ready_timeout_seconds, "session.ready_timeout_seconds"),
        (config.session.stop_grace_seconds, "session.stop_grace_seconds"),
        (config.session.max_sessions, "session.max_sessions"),
        (config.proxy.connect_timeout_seconds, "proxy.connect_timeout_seconds"),
        (config.proxy.header_timeout_seconds, "proxy.header_timeout_seconds"),
        (config.proxy.max_body_bytes, "proxy.max_body_bytes"),
        (config.server.header_read_timeout_seconds, "server.header_read_timeout_seconds"),
        (config.agent.log_max_bytes, "agent.log_max_bytes"),
        (config.auth.github.cache_seconds, "auth.github.cache_seconds"),
    ];
    for (value, path) in must_be_positive {
        if value == 0 {
            out.problems.push(format!("`{path}` must be above 0"));
        }
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]{0,127}$` (security.md rule 2).
pub fn is_env_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0] == b'_' || bytes[0].is_ascii_alphabetic())
        && bytes.iter().all(|byte| *byte == b'_' || byte.is_ascii_alphanumeric())
}

fn agent(config: &Config, out: &mut Findings) {
    let agent = &config.agent;
    if agent.server.trim().is_empty() {
        out.problems.push("`agent.server` must name an agentapi-compatible program".into());
    }
    if agent.command.is_empty() && agent.server != BUILTIN_ECHO_AGENT {
        out.problems.push("`agent.command` must name the agent program".into());
    }
    if !agent.script.is_empty() && !Path::new(&agent.script).is_file() {
        out.problems.push(format!("`agent.script`: {} is not a readable file", agent.script));
    }
    let operator_names = agent.environment.keys().map(|name| (name, "agent.environment"));
    let passed_names = agent.pass_env.iter().map(|name| (name, "agent.pass_env"));
    for (name, path) in operator_names.chain(passed_names) {
        if !is_env_name(name) {
            out.problems
                .push(format!("`{path}`: {name:?} is not a valid environment variable name"));
        } else if PROXY_SET_ENV.contains(&name.as_str()) || name.starts_with("APX_") {
            out.problems.push(format!("`{path}`: {name} is set by the proxy itself"));
        }
    }
    if !agent.run_as_user.is_empty() {
        if !nix::unistd::geteuid().is_root() {
            out.problems.push("`agent.run_as_user` needs the proxy to run as root".into());
        }
        match nix::unistd::User::from_name(&agent.run_as_user) {
            Ok(Some(user)) if user.uid.is_root() => {
                out.problems.push("`agent.run_as_user` must not be root".into())
            }
            Ok(Some(_)) => {}
            _ => out.problems.push(format!("`agent.run_as_user`: no user {:?}", agent.run_as_user)),
        }
    }
    uid_range(agent, out);
    if agent.repository_hosts.is_empty() {
        out.warnings
            .push("`agent.repository_hosts` is empty: no `repository` tag can be used".into());
    }
    for (index, host) in agent.repository_hosts.iter().enumerate() {
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-:".contains(&byte));
        if !valid {
            out.problems
                .push(format!("`agent.repository_hosts[{index}]`: {host:?} is not a host name"));
        }
    }
}

/// `agent.uid_range`: `[first, last]`, only with `run_as_user`, never root nor the proxy's
/// own uid (an agent must never share the server's identity).
fn uid_range(agent: &crate::config::AgentConfig, out: &mut Findings) {
    let range = &agent.uid_range;
    if range.is_empty() {
        return;
    }
    let [first, last] = range[..] else {
        out.problems.push("`agent.uid_range` must be `[first, last]`".into());
        return;
    };
    if agent.run_as_user.is_empty() {
        out.problems.push("`agent.uid_range` needs `agent.run_as_user` (its group is kept)".into());
    }
    if first == 0 || first > last {
        out.problems
            .push(format!("`agent.uid_range`: [{first}, {last}] must have 0 < first <= last"));
    }
    let own = nix::unistd::geteuid().as_raw();
    if (first..=last).contains(&own) {
        out.problems.push(format!("`agent.uid_range` contains the proxy's own uid {own}"));
    }
}

fn network(config: &Config, out: &mut Findings) {
    if config.server.bind.parse::<IpAddr>().is_err() {
        out.problems.push(format!("`server.bind`: {:?} is not an IP address", config.server.bind));
    }
    if !config.server.public_url.is_empty() && origin_of(&config.server.public_url).is_none() {
        out.problems.push(format!(
            "`server.public_url`: {:?} is not an http(s) URL",
            config.server.public_url
        ));
    }
    if !config.server.advertise_url.is_empty() && origin_of(&config.server.advertise_url).is_none()
    {
        out.problems.push(format!(
            "`server.advertise_url`: {:?} is not an http(s) URL",
            config.server.advertise_url
        ));
    }
    if !config.server.replica_id.is_empty()
        && !crate::replica::is_valid_id(&config.server.replica_id)
    {
        out.problems.push(format!(
            "`server.replica_id`: {:?} must be 1 to 63 letters, digits, `.`, `_` or `-`",
            config.server.replica_id
        ));
    }
    if config.server.lease_ttl_seconds < 3 {
        out.problems.push("`server.lease_ttl_seconds` must be at least 3".into());
    }
    for (index, cidr) in config.proxy.trusted_proxies.iter().enumerate() {
        if parse_cidr(cidr).is_none() {
            out.problems.push(format!("`proxy.trusted_proxies[{index}]`: {cidr:?} is not a CIDR"));
        }
    }
    let origins = &config.cors.allowed_origins;
    for (index, origin) in origins.iter().enumerate() {
        let exact = origin_of(origin).is_some_and(|canonical| &canonical == origin);
        if origin != "*" && !exact {
            out.problems.push(format!(
                "`cors.allowed_origins[{index}]`: {origin:?} is not an origin (scheme://host[:port], no path)"
            ));
        }
    }
}

/// `scheme://host[:port]` of an http(s) URL.
pub fn origin_of(url: &str) -> Option<String> {
    let uri: Uri = url.parse().ok()?;
    let scheme = uri.scheme_str().filter(|scheme| matches!(*scheme, "http" | "https"))?;
    let authority = uri.authority()?;
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

/// Parses `10.0.0.0/8`, `::1/128` or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => prefix.parse::<u8>().ok().filter(|bits| *bits <= max)?,
        None => max,
    };
    Some((address, prefix))
}
