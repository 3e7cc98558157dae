//! The built-in echo agent, driven as a real process over loopback: its agentapi-compatible
//! API (`api`), its event stream (`events`), and its process behaviour (`process`). This
//! file holds the harness: spawn `echo-agent server --port 0`, learn the port from the
//! listening line, kill the process (group) on drop.

mod api;
mod events;
mod process;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::{binary, wait_until};

/// Generous deadline for anything on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A `Command` for `echo-agent server --port 0 <args>` in its own process group, with a
/// zero boot time and a quick reply unless `env` says otherwise; stdin `/dev/null`.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(["echo-agent", "server", "--port", "0"])
        .args(args)
        .env("ECHO_AGENT_BOOT_MS", "0")
        .env("ECHO_AGENT_REPLY_MS", "40")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// A running echo agent; killed (with its whole process group) when dropped.
pub struct EchoAgent {
    pub child: Child,
    pub pid: i32,
    pub port: u16,
    pub client: reqwest::Client,
    /// Kept open so the agent's stdout never breaks.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl Drop for EchoAgent {
    fn drop(&mut self) {
        // The agent leads its own group: take any children it made along with it.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Reads the next stdout line within `deadline`; `None` on timeout or EOF.
pub async fn read_line(
    lines: &mut Lines<BufReader<ChildStdout>>,
    deadline: Duration,
) -> Option<String> {
    tokio::time::timeout(deadline, lines.next_line())
        .await
        .ok()
        .and_then(|line| line.ok().flatten())
}

/// Parses `echo-agent listening on 127.0.0.1:PORT`.
pub fn port_of(line: &str) -> u16 {
    let address = line
        .strip_prefix("echo-agent listening on ")
        .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
    let (host, port) = address.rsplit_once(':').expect("address has a port");
    assert_eq!(host, "127.0.0.1", "binds loopback by default");
    port.parse().expect("numeric port")
}

/// A client that never uses an environment proxy and never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
}

impl EchoAgent {
    /// Spawns the agent and waits for its listening line.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(command(args, env)).await
    }

    /// Spawns a prepared command and waits for its listening line.
    pub async fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("echo agent spawns");
        let stdout = child.stdout.take().expect("stdout is piped");
        Self::listening(child, stdout.into_lines()).await
    }

    /// Wraps a spawned child once its listening line arrives.
    pub async fn listening(child: Child, mut stdout: Lines<BufReader<ChildStdout>>) -> Self {
        let pid = child.id().expect("child is running") as i32;
        let line =
            read_line(&mut stdout, DEADLINE).await.expect("echo agent prints its listening line");
        EchoAgent { child, pid, port: port_of(&line), client: client(), _stdout: stdout }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.expect("GET answers");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    pub async fn status(&self) -> String {
        self.get_json("/status").await["status"].as_str().expect("status is a string").to_string()
    }

    /// `POST /message` with a JSON body; returns the response.
    pub async fn post_message(&self, content: &str, kind: &str) -> reqwest::Response {
        self.client
            .post(self.url("/message"))
            .json(&serde_json::json!({"content": content, "type": kind}))
            .send()
            .await
            .expect("POST /message answers")
    }

    /// Sends a user message and checks it was accepted.
    pub async fn say(&self, content: &str) {
        let response = self.post_message(content, "user").await;
        assert_eq!(response.status(), 200, "user message {content:?} accepted");
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(body["ok"], true);
    }

    pub async fn wait_stable(&self) {
        wait_until("agent stable", DEADLINE, || async {
            (self.status().await == "stable").then_some(())
        })
        .await;
    }

    /// Waits until `/messages` holds a message with this role and content.
    pub async fn wait_message(&self, role: &str, content: &str) -> Value {
        wait_until(&format!("{role} message {content:?}"), DEADLINE, || async {
            let messages = self.get_json("/messages").await;
            messages["messages"]
                .as_array()?
                .iter()
                .find(|m| m["role"] == role && m["content"] == content)
                .cloned()
        })
        .await
    }
}

/// A line-reading helper for stdout pipes.
pub trait IntoLines {
    fn into_lines(self) -> Lines<BufReader<ChildStdout>>;
}

impl IntoLines for ChildStdout {
    fn into_lines(self) -> Lines<BufReader<ChildStdout>> {
        BufReader::new(self).lines()
    }
}
