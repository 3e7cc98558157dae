//! A session's [`AgentSpec`] as a [`LaunchRequest`]: the shared command builder's argv and
//! environment with the image's paths in place of this host's.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::{BUILTIN_ECHO_AGENT, KubernetesConfig};
use crate::sessions::agent_command::{AgentCommand, Placement};
use crate::sessions::backend::AgentSpec;
use crate::sessions::kubernetes::{LaunchRequest, WORKSPACE};

/// Variables of the shared environment that name this host's paths; the image has its own.
const HOST_ONLY_ENV: &[&str] = &["PATH", "HOME", "TMPDIR"];
/// The agent's token (sessions.md), when the shared environment carries one.
const SESSION_TOKEN: &str = "APX_SESSION_TOKEN";

/// Argv and environment from the shared builder, with the image's paths instead of this
/// host's: the workspace, the server binary in the image, no `PATH`/`HOME`/`TMPDIR`.
pub(super) fn launch_request(
    command: &AgentCommand,
    agent_server: &str,
    config: &KubernetesConfig,
    spec: &AgentSpec,
    script: String,
) -> LaunchRequest {
    let place = Placement {
        port: config.agent_port,
        session_dir: Path::new(WORKSPACE),
        proxy_bin: Path::new(&config.proxy_bin),
        path: "",
        lang: "C.UTF-8",
    };
    let mut argv = command.argv(spec, &place);
    if agent_server == BUILTIN_ECHO_AGENT {
        // The echo agent binds loopback by default; in a Pod it must bind the Pod's IP.
        argv.splice(3..3, ["--bind".to_string(), "$(POD_IP)".to_string()]);
    }
    let mut environment: BTreeMap<String, String> = command
        .environment(spec, &place)
        .into_iter()
        .filter(|(name, _)| !HOST_ONLY_ENV.contains(&name.as_str()))
        .collect();
    // The engine writes the agent's token into the Secret itself (a backend variable).
    let session_token = environment.remove(SESSION_TOKEN).unwrap_or_default();
    LaunchRequest {
        session_id: spec.session_id.clone(),
        user_id: spec.user_id.clone(),
        environment,
        session_token,
        argv,
        script,
        tags: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::AgentConfig;

    fn spec() -> AgentSpec {
        AgentSpec {
            session_id: "s-1".into(),
            user_id: "alice".into(),
            environment: BTreeMap::from([("GREETING".into(), "hi".into())]),
            repository: None,
            system_prompt: None,
            access: None,
        }
    }

    #[test]
    fn the_echo_agent_binds_the_pod_ip_and_host_paths_stay_on_the_host() {
        let agent = AgentConfig { server: BUILTIN_ECHO_AGENT.into(), ..AgentConfig::default() };
        let command = AgentCommand::with_environment(&agent, |_| None);
        let config = KubernetesConfig::default();
        let request =
            launch_request(&command, &agent.server, &config, &spec(), "exec \"$@\"".into());
        assert_eq!(
            request.argv[..7],
            [
                "/usr/local/bin/agentapi-proxy",
                "echo-agent",
                "server",
                "--bind",
                "$(POD_IP)",
                "--port",
                "3284"
            ]
        );
        let env = &request.environment;
        for host_only in HOST_ONLY_ENV {
            assert!(!env.contains_key(*host_only), "{host_only} is the image's");
        }
        assert_eq!(env.get("APX_SESSION_DIR").map(String::as_str), Some(WORKSPACE));
        assert_eq!(
            env.get("APX_PROXY_BIN").map(String::as_str),
            Some("/usr/local/bin/agentapi-proxy")
        );
        assert_eq!(env.get("APX_PORT").map(String::as_str), Some("3284"));
        assert_eq!(env.get("GREETING").map(String::as_str), Some("hi"));
    }

    #[test]
    fn a_session_token_in_the_environment_becomes_the_requests_token() {
        let agent = AgentConfig {
            environment: BTreeMap::from([(SESSION_TOKEN.into(), "apxs_t".into())]),
            ..AgentConfig::default()
        };
        let command = AgentCommand::with_environment(&agent, |_| None);
        let config = KubernetesConfig::default();
        let request = launch_request(&command, &agent.server, &config, &spec(), String::new());
        assert_eq!(request.session_token, "apxs_t");
        assert!(!request.environment.contains_key(SESSION_TOKEN), "the engine sets it");
    }

    #[test]
    fn the_sessions_own_access_token_becomes_the_requests_token() {
        let agent = AgentConfig::default();
        let command = AgentCommand::with_environment(&agent, |_| None);
        let mut spec = spec();
        spec.access = Some(crate::sessions::agent_token::AgentAccess {
            token: "apxs_own".into(),
            proxy_url: "http://proxy.agents.svc:8080".into(),
        });
        let config = KubernetesConfig::default();
        let request = launch_request(&command, &agent.server, &config, &spec, String::new());
        assert_eq!(request.session_token, "apxs_own");
        assert_eq!(
            request.environment.get("APX_PROXY_URL").map(String::as_str),
            Some("http://proxy.agents.svc:8080")
        );
    }

    #[test]
    fn agentapi_gets_no_bind_argument() {
        let agent = AgentConfig { server: "agentapi".into(), ..AgentConfig::default() };
        let command = AgentCommand::with_environment(&agent, |_| None);
        let request = launch_request(
            &command,
            &agent.server,
            &KubernetesConfig::default(),
            &spec(),
            String::new(),
        );
        assert_eq!(request.argv[..4], ["agentapi", "server", "--port", "3284"]);
        assert!(!request.argv.iter().any(|arg| arg.contains("POD_IP")));
    }
}
