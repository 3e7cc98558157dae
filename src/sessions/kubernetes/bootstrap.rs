//! How a session Pod runs the startup script contract (sessions.md) without request data in
//! its spec: the Secret carries the script (`APX_SCRIPT`) and the agent's argv as counted
//! variables (`APX_ARGC`, `APX_ARG_0`, ...); the Pod's fixed command is a short bash program
//! that rebuilds the argv array by indirect expansion (no `eval`, no word splitting), removes
//! those variables, and execs `bash --noprofile --norc -c "$script" apx-agent "${argv[@]}"`
//! — the script then does its setup and `exec "$@"` as on the local backend.
//!
//! The one substitution: an argv element's `$(POD_IP)` becomes the Pod's IP (the downward
//! API's `status.podIP`), for agents that must bind one address (the built-in echo agent
//! binds loopback by default; agentapi binds every interface and needs none).

use std::collections::BTreeMap;

/// Variables the backend itself sets in the Pod; a request may not name them.
pub const BACKEND_ENV: &[&str] =
    &["APX_SCRIPT", "APX_ARGC", "APX_SESSION_TOKEN", "POD_IP", "POD_NAME", "POD_NAMESPACE"];
/// Prefix of the counted argv variables.
pub const ARG_PREFIX: &str = "APX_ARG_";

/// The container's command. It contains no `$(`: the kubelet expands `$(NAME)` in
/// `command` and `args`, and nothing here is meant for it.
pub const BOOTSTRAP: &str = r#"set -euo pipefail
pod_ip_reference='$''(POD_IP)'
argv=()
for ((index = 0; index < APX_ARGC; index++)); do
  name="APX_ARG_$index"
  value="${!name}"
  argv+=("${value//"$pod_ip_reference"/"${POD_IP:-}"}")
  unset "$name"
done
script="$APX_SCRIPT"
unset APX_SCRIPT APX_ARGC name value index pod_ip_reference
exec bash --noprofile --norc -c "$script" apx-agent "${argv[@]}"
"#;

/// The container's `command`.
pub fn command() -> Vec<String> {
    ["bash", "--noprofile", "--norc", "-c", BOOTSTRAP, "apx-bootstrap"].map(String::from).to_vec()
}

/// Whether a request may set `name` (it is not one the backend sets).
pub fn is_backend_env(name: &str) -> bool {
    BACKEND_ENV.contains(&name) || name.starts_with(ARG_PREFIX)
}

/// The Secret's data: the environment, then the token, script and counted argv.
pub fn secret_data(
    environment: &BTreeMap<String, String>,
    session_token: &str,
    script: &str,
    argv: &[String],
) -> BTreeMap<String, String> {
    let mut data = environment.clone();
    data.insert("APX_SESSION_TOKEN".into(), session_token.into());
    data.insert("APX_SCRIPT".into(), script.into());
    data.insert("APX_ARGC".into(), argv.len().to_string());
    for (index, arg) in argv.iter().enumerate() {
        data.insert(format!("{ARG_PREFIX}{index}"), arg.clone());
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_holds_nothing_the_kubelet_would_expand() {
        assert!(!BOOTSTRAP.contains("$("), "{BOOTSTRAP}");
        assert!(!BOOTSTRAP.contains("eval"));
    }

    #[test]
    fn the_bootstrap_rebuilds_argv_exactly_and_hides_its_variables() {
        let argv: Vec<String> = ["printf", "[%s]", "a b", "$(HOME)", "--bind=$(POD_IP)", "", "*"]
            .map(String::from)
            .to_vec();
        let data = secret_data(
            &BTreeMap::new(),
            "apxs_t",
            "env | grep -c APX_ARG_ || true; exec \"$@\"",
            &argv,
        );
        let output = std::process::Command::new("bash")
            .args(&command()[1..])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("POD_IP", "10.1.2.3")
            .envs(&data)
            .output()
            .expect("bash runs");
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(text, "0\n[a b][$(HOME)][--bind=10.1.2.3][][*]", "{output:?}");
    }

    #[test]
    fn backend_variables_are_recognised() {
        assert!(is_backend_env("APX_ARG_7") && is_backend_env("POD_IP"));
        assert!(!is_backend_env("APX_SESSION_ID") && !is_backend_env("GREETING"));
    }
}
