//! Turning a session's [`AgentSpec`] into the agent's command line and environment, the
//! same for every backend: the startup script (the embedded default or `agent.script`), the
//! argv for agentapi or `builtin:echo`, the `APX_*` variables, the operator's environment
//! (`agent.environment`, then `agent.pass_env`), the request's, and the names a request may
//! not set. A backend supplies only where things are on its host ([`Placement`]) and runs
//! the result (the local backend spawns it; a Kubernetes backend fills a Pod and Secret).

use std::path::Path;

use super::backend::AgentSpec;
use crate::config::{AgentConfig, BUILTIN_ECHO_AGENT};

/// The embedded default startup script (sessions.md step 5).
pub const DEFAULT_SCRIPT: &str = include_str!("../../scripts/agentapi_default.sh");

/// Which startup script agents run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// [`DEFAULT_SCRIPT`], placed by the backend where the agent can read it.
    Embedded,
    /// `agent.script`, as configured.
    Operator(String),
}

/// Where the agent's things are, as the backend placed them.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The port the agent listens on.
    pub port: u16,
    /// The session's directory (home and working directory).
    pub session_dir: &'a Path,
    /// The executable whose `echo-agent` and `helpers` commands agents run.
    pub proxy_bin: &'a Path,
    /// `PATH` and `LANG` as the agent gets them.
    pub path: &'a str,
    pub lang: &'a str,
}

/// The agent command of the configuration, prepared once.
#[derive(Debug, Clone)]
pub struct AgentCommand {
    server: String,
    server_args: Vec<String>,
    command: Vec<String>,
    script: Script,
    /// Variables every agent gets from the operator: `agent.environment`, then `pass_env`.
    operator_env: Vec<(String, String)>,
}

impl AgentCommand {
    /// Reads `agent.pass_env` from this process's environment now (a name that is not set
    /// is logged and left out).
    pub fn from_config(agent: &AgentConfig) -> Self {
        Self::with_environment(agent, |name| std::env::var(name).ok())
    }

    /// As [`Self::from_config`], taking `pass_env` values from `lookup`.
    pub fn with_environment(agent: &AgentConfig, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut operator_env: Vec<(String, String)> =
            agent.environment.iter().map(|(name, value)| (name.clone(), value.clone())).collect();
        for name in &agent.pass_env {
            match lookup(name) {
                Some(value) => operator_env.push((name.clone(), value)),
                None => tracing::warn!(name, "agent.pass_env names a variable that is not set"),
            }
        }
        let script = if agent.script.is_empty() {
            Script::Embedded
        } else {
            Script::Operator(agent.script.clone())
        };
        Self {
            server: agent.server.clone(),
            server_args: agent.server_args.clone(),
            command: agent.command.clone(),
            script,
            operator_env,
        }
    }

    pub fn script(&self) -> &Script {
        &self.script
    }

    /// Whether the agent must start through the startup script. The embedded default only
    /// `cd`s into the session directory (already the working directory) and `exec`s the
    /// agent unless it has a repository to clone; then the agent can be started directly,
    /// which saves starting bash (~2.5 ms, a third of a whole local start). `agent.script`
    /// always runs.
    pub fn needs_script(&self, spec: &AgentSpec) -> bool {
        self.script != Script::Embedded || spec.repository.is_some()
    }

    /// Names an agent's environment already has before the request's: a request may not
    /// set them (`reserved_env_name`).
    pub fn reserved_env_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["LANG", "TERM"].iter().map(|n| n.to_string()).collect();
        names.extend(self.operator_env.iter().map(|(name, _)| name.clone()));
        names
    }

    /// The agent-server command line as separate arguments (never a shell string).
    pub fn argv(&self, spec: &AgentSpec, place: &Placement<'_>) -> Vec<String> {
        let mut argv: Vec<String> = if self.server == BUILTIN_ECHO_AGENT {
            vec![place.proxy_bin.display().to_string(), "echo-agent".into(), "server".into()]
        } else {
            vec![self.server.clone(), "server".into()]
        };
        argv.extend([
            "--port".into(),
            place.port.to_string(),
            "--chat-base-path".into(),
            format!("/{}/chat", spec.session_id),
        ]);
        argv.extend(self.server_args.iter().cloned());
        argv.push("--".into());
        argv.extend(self.command.iter().cloned());
        let program_is_claude = self
            .command
            .first()
            .and_then(|program| Path::new(program).file_name())
            .is_some_and(|name| name == "claude");
        if let Some(prompt) = &spec.system_prompt
            && program_is_claude
        {
            argv.extend(["--append-system-prompt".into(), prompt.clone()]);
        }
        argv
    }

    /// The agent's whole environment, in precedence order; a later entry never replaces an
    /// earlier one.
    pub fn environment(&self, spec: &AgentSpec, place: &Placement<'_>) -> Vec<(String, String)> {
        let dir = place.session_dir;
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), place.path.to_string()),
            ("HOME".into(), dir.display().to_string()),
            ("TMPDIR".into(), dir.join("tmp").display().to_string()),
            ("LANG".into(), place.lang.to_string()),
            ("TERM".into(), "xterm-256color".into()),
            ("APX_SESSION_ID".into(), spec.session_id.clone()),
            ("APX_USER_ID".into(), spec.user_id.clone()),
            ("APX_PORT".into(), place.port.to_string()),
            ("APX_SESSION_DIR".into(), dir.display().to_string()),
            ("APX_PROXY_BIN".into(), place.proxy_bin.display().to_string()),
        ];
        if let Some(repository) = &spec.repository {
            env.push(("APX_REPO_FULLNAME".into(), repository.full_name.clone()));
            env.push(("APX_REPO_HOST".into(), repository.host.clone()));
        }
        if let Some(prompt) = &spec.system_prompt {
            env.push(("APX_SYSTEM_PROMPT".into(), prompt.clone()));
        }
        if let Some(access) = &spec.access {
            env.push(("APX_SESSION_TOKEN".into(), access.token.clone()));
            env.push(("APX_PROXY_URL".into(), access.proxy_url.clone()));
        }
        let operator = self.operator_env.iter().map(|(name, value)| (name, value));
        for (name, value) in operator.chain(spec.environment.iter()) {
            if !env.iter().any(|(existing, _)| existing == name) {
                env.push((name.clone(), value.clone()));
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::path::PathBuf;

    use super::*;
    use crate::sessions::validate::Repository;

    fn spec() -> AgentSpec {
        AgentSpec {
            session_id: "s-1".into(),
            user_id: "alice".into(),
            environment: BTreeMap::from([
                ("FROM_REQUEST".into(), "r".into()),
                ("SHARED".into(), "request".into()),
                ("PATH".into(), "/evil".into()),
            ]),
            repository: None,
            system_prompt: None,
            access: None,
        }
    }

    fn config() -> AgentConfig {
        AgentConfig {
            server: "agentapi".into(),
            server_args: vec!["--type".into(), "claude".into()],
            command: vec!["/usr/local/bin/claude".into(), "--verbose".into()],
            environment: BTreeMap::from([("SHARED".into(), "operator".into())]),
            pass_env: vec!["PASSED".into(), "UNSET".into()],
            ..AgentConfig::default()
        }
    }

    fn command(agent: &AgentConfig) -> AgentCommand {
        let host = HashMap::from([("PASSED", "from the host")]);
        AgentCommand::with_environment(agent, |name| host.get(name).map(|v| v.to_string()))
    }

    fn place<'a>(dir: &'a Path, bin: &'a Path) -> Placement<'a> {
        Placement {
            port: 9001,
            session_dir: dir,
            proxy_bin: bin,
            path: "/usr/bin:/bin",
            lang: "C.UTF-8",
        }
    }

    #[test]
    fn argv_runs_agentapi_with_the_port_the_chat_path_and_the_agent_command() {
        let (dir, bin) = (PathBuf::from("/data/sessions/s-1"), PathBuf::from("/opt/apx"));
        let mut spec = spec();
        spec.system_prompt = Some("be brief".into());
        let argv = command(&config()).argv(&spec, &place(&dir, &bin));
        let expected = [
            "agentapi",
            "server",
            "--port",
            "9001",
            "--chat-base-path",
            "/s-1/chat",
            "--type",
            "claude",
            "--",
            "/usr/local/bin/claude",
            "--verbose",
            "--append-system-prompt",
            "be brief",
        ];
        assert_eq!(argv, expected);
        let mut other = config();
        other.command = vec!["aider".into()];
        let argv = command(&other).argv(&spec, &place(&dir, &bin));
        assert_eq!(argv.last().map(String::as_str), Some("aider"), "only claude gets the prompt");
    }

    #[test]
    fn the_builtin_echo_agent_runs_this_server_binary() {
        let (dir, bin) = (PathBuf::from("/d"), PathBuf::from("/opt/apx"));
        let mut agent = config();
        agent.server = BUILTIN_ECHO_AGENT.into();
        let argv = command(&agent).argv(&spec(), &place(&dir, &bin));
        assert_eq!(argv[..5], ["/opt/apx", "echo-agent", "server", "--port", "9001"]);
    }

    #[test]
    fn the_environment_puts_ours_first_then_the_operators_then_the_requests() {
        let (dir, bin) = (PathBuf::from("/data/sessions/s-1"), PathBuf::from("/opt/apx"));
        let mut spec = spec();
        spec.repository = Some(Repository { host: "github.com".into(), full_name: "o/r".into() });
        let env = command(&config()).environment(&spec, &place(&dir, &bin));
        let get = |name: &str| {
            let found: Vec<&str> =
                env.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
            assert!(found.len() <= 1, "{name} set twice");
            found.first().map(|v| v.to_string())
        };
        assert_eq!(get("PATH").as_deref(), Some("/usr/bin:/bin"), "a request cannot replace it");
        assert_eq!(get("HOME").as_deref(), Some("/data/sessions/s-1"));
        assert_eq!(get("TMPDIR").as_deref(), Some("/data/sessions/s-1/tmp"));
        assert_eq!(get("APX_PORT").as_deref(), Some("9001"));
        assert_eq!(get("APX_SESSION_ID").as_deref(), Some("s-1"));
        assert_eq!(get("APX_USER_ID").as_deref(), Some("alice"));
        assert_eq!(get("APX_PROXY_BIN").as_deref(), Some("/opt/apx"));
        assert_eq!(get("APX_REPO_FULLNAME").as_deref(), Some("o/r"));
        assert_eq!(get("APX_REPO_HOST").as_deref(), Some("github.com"));
        assert_eq!(get("APX_SYSTEM_PROMPT"), None);
        assert_eq!(get("SHARED").as_deref(), Some("operator"), "the operator's wins");
        assert_eq!(get("PASSED").as_deref(), Some("from the host"));
        assert_eq!(get("UNSET"), None, "an unset pass_env name is left out");
        assert_eq!(get("FROM_REQUEST").as_deref(), Some("r"));
    }

    #[test]
    fn reserved_names_are_ours_and_the_operators() {
        let names = command(&config()).reserved_env_names();
        assert_eq!(names, ["LANG", "TERM", "SHARED", "PASSED"]);
    }

    #[test]
    fn the_embedded_script_is_skipped_unless_there_is_a_repository_to_clone() {
        let mut spec = spec();
        let embedded = command(&AgentConfig::default());
        assert_eq!(embedded.script(), &Script::Embedded);
        assert!(!embedded.needs_script(&spec));
        spec.repository = Some(Repository { host: "github.com".into(), full_name: "o/r".into() });
        assert!(embedded.needs_script(&spec));
        let agent = AgentConfig { script: "/etc/agents/start.sh".into(), ..AgentConfig::default() };
        let operator = command(&agent);
        assert_eq!(operator.script(), &Script::Operator("/etc/agents/start.sh".into()));
        spec.repository = None;
        assert!(operator.needs_script(&spec), "agent.script always runs");
    }
}
