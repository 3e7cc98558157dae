//! The command line of `echo-agent server`: agentapi's flags (with their `AGENTAPI_*`
//! environment fallbacks) plus `--bind`, and the checks agentapi applies to them.

/// Flags of `echo-agent server`: agentapi's own, accepted so the proxy can pass them unchanged.
///
/// Like agentapi, every flag falls back to `AGENTAPI_<FLAG>` in the environment. Lists accept
/// commas (flags) or whitespace (environment) as separators.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Port to listen on (0 = let the system pick; the bound address is printed).
    #[arg(short = 'p', long, env = "AGENTAPI_PORT", default_value_t = 3284)]
    pub port: u16,

    /// Address to bind (the echo agent's own flag; agentapi binds every interface).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,

    /// Agent type reported by `/status`: one of agentapi's names (`claude`, `goose`, ...) or
    /// `echo`, the default (the program after `--` is not run, so it is not used to guess).
    #[arg(short = 't', long = "type", env = "AGENTAPI_TYPE")]
    pub agent_type: Option<String>,

    /// Allowed `Host` names (no ports); `*` allows every host.
    #[arg(short = 'a', long, env = "AGENTAPI_ALLOWED_HOSTS")]
    pub allowed_hosts: Vec<String>,

    /// Allowed CORS origins; `*` allows every origin.
    #[arg(short = 'o', long, env = "AGENTAPI_ALLOWED_ORIGINS")]
    pub allowed_origins: Vec<String>,

    /// Base path of the chat UI (`GET /` redirects to `<path>/embed`).
    #[arg(short = 'c', long, env = "AGENTAPI_CHAT_BASE_PATH", default_value = "/chat")]
    pub chat_base_path: String,

    /// Sent as the first user message once the agent is stable (else read from piped stdin).
    #[arg(short = 'I', long, env = "AGENTAPI_INITIAL_PROMPT")]
    pub initial_prompt: Option<String>,

    /// Accepted for compatibility; the echo agent keeps no state across runs.
    #[arg(long, env = "AGENTAPI_STATE_FILE")]
    pub state_file: Option<std::path::PathBuf>,

    /// Width of the emulated terminal (at least 10, like agentapi).
    #[arg(short = 'W', long, env = "AGENTAPI_TERM_WIDTH", default_value_t = 80)]
    pub term_width: u16,

    /// Height of the emulated terminal (at least 10, like agentapi).
    #[arg(short = 'H', long, env = "AGENTAPI_TERM_HEIGHT", default_value_t = 1000)]
    pub term_height: u16,

    /// Print the OpenAPI schema to stdout and exit.
    #[arg(short = 'P', long, env = "AGENTAPI_PRINT_OPENAPI", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub print_openapi: bool,

    /// Report the `acp` transport instead of `pty`.
    #[arg(long, env = "AGENTAPI_EXPERIMENTAL_ACP", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub experimental_acp: bool,

    /// Verbose logging (accepted; the echo agent logs little either way).
    #[arg(short = 'v', long, env = "AGENTAPI_VERBOSE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub verbose: bool,

    /// Exit right after parsing the arguments (agentapi's hidden test flag).
    #[arg(long, hide = true, env = "AGENTAPI_EXIT", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    pub exit: bool,

    /// The wrapped program and its arguments (after `--`): accepted like agentapi's, not run.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM")]
    pub program: Vec<String>,
}

/// Names `--type` accepts: agentapi's (with its aliases), and `echo`.
const AGENT_TYPES: &[(&str, &str)] = &[
    ("claude", "claude"),
    ("goose", "goose"),
    ("aider", "aider"),
    ("codex", "codex"),
    ("gemini", "gemini"),
    ("copilot", "copilot"),
    ("amp", "amp"),
    ("auggie", "auggie"),
    ("cursor", "cursor"),
    ("cursor-agent", "cursor"),
    ("q", "amazonq"),
    ("amazonq", "amazonq"),
    ("opencode", "opencode"),
    ("custom", "custom"),
    (ECHO_TYPE, ECHO_TYPE),
];

/// What the echo agent reports as its `agent_type` unless `--type` says otherwise.
const ECHO_TYPE: &str = "echo";

/// The validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub agent_type: String,
    pub transport: &'static str,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub chat_base_path: String,
}

impl ServerArgs {
    /// Checks the flags like agentapi does; the error is printed before exiting 1.
    pub fn settings(&self) -> Result<Settings, String> {
        let agent_type = agent_type(self.agent_type.as_deref())?;
        if self.term_width < 10 {
            return Err("term width must be at least 10".into());
        }
        if self.term_height < 10 {
            return Err("term height must be at least 10".into());
        }
        let allowed_hosts =
            parse_hosts(&split_list(&self.allowed_hosts, &["localhost", "127.0.0.1", "[::1]"]))?;
        let allowed_origins = split_list(
            &self.allowed_origins,
            &["http://localhost:3284", "http://localhost:3000", "http://localhost:3001"],
        );
        let allowed_origins = if allowed_origins.iter().any(|o| o == "*") {
            vec!["*".to_string()]
        } else {
            allowed_origins
        };
        Ok(Settings {
            agent_type,
            transport: if self.experimental_acp { "acp" } else { "pty" },
            allowed_hosts,
            allowed_origins,
            chat_base_path: self.chat_base_path.trim_end_matches('/').to_string(),
        })
    }
}

/// `--type` when given (agentapi's names, plus `echo`), else `echo`: unlike agentapi, the
/// echo agent never runs the program named after `--`, so guessing the type from that name
/// (`claude` under the proxy's default `agent.command`) would name an agent that is not there.
fn agent_type(flag: Option<&str>) -> Result<String, String> {
    match flag.filter(|f| !f.is_empty()) {
        Some(name) => AGENT_TYPES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map(|(_, canonical)| canonical.to_string())
            .ok_or_else(|| format!("invalid agent type: {name}")),
        None => Ok(ECHO_TYPE.to_string()),
    }
}

/// Splits repeated list flags on commas and whitespace; empty → the defaults.
fn split_list(values: &[String], defaults: &[&str]) -> Vec<String> {
    let items: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if items.is_empty() { defaults.iter().map(|s| s.to_string()).collect() } else { items }
}

/// Host names as agentapi keeps them: lower-case, no scheme, no port; `[::1]` keeps brackets
/// off so it compares with a parsed `Host` header.
fn parse_hosts(items: &[String]) -> Result<Vec<String>, String> {
    if items.iter().any(|h| h == "*") {
        return Ok(vec!["*".to_string()]);
    }
    items
        .iter()
        .map(|item| {
            if item.contains("://") {
                return Err(format!("'{item}' must not include http:// or https://"));
            }
            let (host, port) = split_host_port(item);
            if port.is_some() {
                return Err(format!("'{item}' must not include a port"));
            }
            Ok(host.to_ascii_lowercase())
        })
        .collect()
}

/// Splits `host[:port]`, `[v6]` or `[v6]:port` into the bare host and the port text.
pub fn split_host_port(value: &str) -> (&str, Option<&str>) {
    if let Some(rest) = value.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (value, None),
        };
    }
    match value.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address, no port.
        Some((host, _)) if host.contains(':') => (value, None),
        Some((host, port)) => (host, Some(port)),
        None => (value, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("localhost:80"), ("localhost", Some("80")));
        assert_eq!(split_host_port("[::1]:3284"), ("::1", Some("3284")));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("127.0.0.1"), ("127.0.0.1", None));
    }

    #[test]
    fn lists_split_on_commas_and_spaces() {
        let got = split_list(&["a,b".into(), "c d".into()], &["x"]);
        assert_eq!(got, vec!["a", "b", "c", "d"]);
        assert_eq!(split_list(&[], &["x"]), vec!["x"]);
        assert_eq!(
            parse_hosts(&["LocalHost".into(), "[::1]".into()]),
            Ok(vec!["localhost".to_string(), "::1".to_string()])
        );
        assert!(parse_hosts(&["localhost:80".into()]).is_err());
    }

    #[test]
    fn agent_type_from_the_flag_else_echo() {
        assert_eq!(agent_type(None), Ok("echo".into()));
        assert_eq!(agent_type(Some("")), Ok("echo".into()));
        assert_eq!(agent_type(Some("q")), Ok("amazonq".into()));
        assert_eq!(agent_type(Some("claude")), Ok("claude".into()));
        assert!(agent_type(Some("nope")).is_err());
    }
}
