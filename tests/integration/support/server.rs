//! Starting the proxy for a test: in-process through the library's `run`, or as the real
//! binary (for signals and exit codes). Always on 127.0.0.1 with a port the system picks
//! and a temporary data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use agentapi_proxy::config::Config;
use agentapi_proxy::sessions::local::HostOptions;
use agentapi_proxy::shutdown::{Shutdown, Stage};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A configuration for tests: data in `dir`, the built-in echo agent, short timeouts.
pub fn test_config(dir: &Path) -> Config {
    let mut config =
        Config { data_dir: dir.join("data").display().to_string(), ..Config::default() };
    config.agent.server = agentapi_proxy::config::BUILTIN_ECHO_AGENT.into();
    // Tests run in parallel, each with its own server: give each its own port range.
    // Below Linux's ephemeral range (32768–60999), so client sockets never sit in it.
    config.start_port = 10_000 + (uuid::Uuid::new_v4().as_u128() % 22_000) as u16;
    config.end_port = config.start_port + 200;
    config.server.drain_timeout_seconds = 5;
    config.session.stop_grace_seconds = 2;
    config.session.ready_timeout_seconds = 20;
    config
}

/// The proxy running inside the test process.
pub struct TestServer {
    pub address: SocketAddr,
    pub shutdown: Shutdown,
    pub dir: tempfile::TempDir,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts the server with the test defaults changed by `adjust`.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(listener, adjust).await
    }

    /// Like [`Self::start`], on a listener the test bound first (so that the configuration
    /// can name the server's own address, e.g. as `server.public_url`).
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let address = listener.local_addr().expect("address");
        let shutdown = Shutdown::new();
        let host =
            HostOptions { proxy_bin: Some(super::binary().into()), reap_all_children: false };
        let task = tokio::spawn(agentapi_proxy::run_with(config, listener, shutdown.clone(), host));
        Self { address, shutdown, dir, task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `http://127.0.0.1:PORT`, to put paths behind.
    pub fn base(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Drains, then waits for `run` to return, within `deadline`.
    pub async fn stop(mut self, deadline: Duration) -> anyhow::Result<()> {
        self.shutdown.advance_to(Stage::Draining);
        let task = self.task.take().expect("started");
        tokio::time::timeout(deadline, task).await.expect("server stops in time").expect("joins")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.advance_to(Stage::Immediate);
        // The runtime ends with the test, before any graceful stop could run.
        kill_agents_under(self.dir.path());
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        // `kill_on_drop` ends the server; its agents would outlive it.
        if let Some(dir) = &self.dir {
            kill_agents_under(dir.path());
        }
    }
}

/// Kills the process group of every process whose working directory lies under `dir`: the
/// agents of a test's server (they run in `<data_dir>/sessions/<id>`), and removes the
/// session cgroups the server left.
pub fn kill_agents_under(dir: &Path) {
    let Ok(dir) = std::fs::canonicalize(dir) else { return };
    if let Ok(data) = std::fs::canonicalize(dir.join("data")) {
        agentapi_proxy::sessions::local::containment::remove_leftover_cgroups(
            &data.join("sessions"),
        );
    }
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else { continue };
        if pid as u32 != std::process::id() && cwd.starts_with(&dir) {
            let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)));
            if let Ok(group) = group
                && group.as_raw() > 1
                && group != nix::unistd::getpgrp()
            {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// The real `agentapi-proxy server` binary as a child process.
pub struct BinaryServer {
    pub child: Child,
    /// Every line the server wrote to stderr so far (JSON log lines).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub address: SocketAddr,
    /// Taken when the directory is handed to the next server.
    dir: Option<tempfile::TempDir>,
    pub config_path: PathBuf,
}

impl BinaryServer {
    /// Writes `config` into a temp dir and starts `server -c <it> -p 0`; waits until it
    /// reports its address.
    pub async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_env(adjust, &[]).await
    }

    /// Like [`Self::start`], with extra environment variables for the server process.
    pub async fn start_with_env(adjust: impl FnOnce(&mut Config), env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_string(&config).expect("json")).expect("write");
        Self::launch(dir, config_path, env).await
    }

    /// Starts `server -c <config_path> -p 0` in `dir`; waits until it reports its address.
    pub async fn launch(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(super::binary())
            .args(["server", "--log-format", "json", "-p", "0", "-c"])
            .arg(&config_path)
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn server");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                logs.lock().expect("logs").push(line.clone());
                if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
                    && entry["message"] == "agentapi-proxy listening"
                {
                    let address = entry["address"].as_str().expect("address field");
                    return address.parse::<SocketAddr>().expect("socket address");
                }
            }
            panic!("server exited before listening");
        })
        .await
        .expect("server listens in time");
        // Keep reading stderr so the child never blocks on a full pipe.
        let collected = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().expect("logs").push(line);
            }
        });
        Self { child, logs, address, dir: Some(dir), config_path }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The directory the server runs in (its configuration and `data/`).
    pub fn dir_path(&self) -> &Path {
        self.dir.as_ref().expect("present until handed back").path()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal");
    }
}

impl BinaryServer {
    /// True once a log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.lock().expect("logs").iter().any(|line| line.contains(needle))
    }
}

impl BinaryServer {
    /// Kills the server with SIGKILL (agents stay behind) and hands back its directory and
    /// configuration so another server can be started on them.
    pub async fn kill9(mut self) -> (tempfile::TempDir, PathBuf) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait().await;
        (self.dir.take().expect("present until handed back"), self.config_path.clone())
    }

    /// SIGTERM, then waits for the exit status (within 30 s).
    pub async fn stop(mut self) -> (std::process::ExitStatus, tempfile::TempDir, PathBuf) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server exits in time")
            .expect("wait");
        (status, self.dir.take().expect("present until handed back"), self.config_path.clone())
    }
}
