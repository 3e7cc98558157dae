//! Process-level behaviour: reading piped stdin like agentapi, the optional `sleep`
//! grandchild (`ECHO_AGENT_SPAWN_GRANDCHILD=1`), and signals (SIGTERM/SIGINT/SIGHUP stop the
//! agent with exit 0; `ECHO_AGENT_IGNORE_SIGTERM=1` makes it shrug SIGTERM off).

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use super::state::Agent;

/// Reads stdin to EOF when it is not a terminal; the text, if any, is the initial prompt.
/// A parent that leaves stdin open (instead of `/dev/null`) blocks the agent here, exactly
/// like agentapi.
pub fn read_piped_stdin() -> std::io::Result<Option<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut data = Vec::new();
    stdin.lock().read_to_end(&mut data)?;
    if data.is_empty() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

/// Starts `sleep 100000` in our process group (stdin `/dev/null`) and leaves it running: it
/// is never killed or reaped by us, so the proxy's group kill is what ends it.
pub fn spawn_grandchild() -> std::io::Result<()> {
    let child = std::process::Command::new("sleep")
        .arg("100000")
        .stdin(std::process::Stdio::null())
        .spawn()?;
    // Dropping the handle neither kills nor waits for it.
    drop(child);
    Ok(())
}

/// Installs the signal handlers; each stop signal asks for exit code 0.
pub fn watch_signals(agent: Arc<Agent>) -> std::io::Result<()> {
    let ignore_term = std::env::var("ECHO_AGENT_IGNORE_SIGTERM").as_deref() == Ok("1");
    for kind in [SignalKind::terminate(), SignalKind::interrupt(), SignalKind::hangup()] {
        // Registering a handler also replaces the default action, so an ignored SIGTERM
        // neither kills us nor is inherited by children as "ignored".
        let mut stream = signal(kind)?;
        let ignore = ignore_term && kind == SignalKind::terminate();
        let agent = agent.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if ignore {
                    eprintln!("echo-agent: ignoring SIGTERM (ECHO_AGENT_IGNORE_SIGTERM=1)");
                    continue;
                }
                agent.request_exit(0);
            }
        });
    }
    Ok(())
}
