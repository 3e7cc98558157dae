//! Hostile agents against their logs (security.md rule 15, row 31; sessions.md step 5's log
//! keeper): links planted in the session directory are never followed, the cap holds on
//! disk whatever the agent writes, and the keeper outlives the server.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::server::BinaryServer;
use crate::support::sessions::{agent_debug_env, get_json, process_alive, start_ok};
use crate::support::wait_until;

const SECRET: &str = "ROOT-ONLY-SECRET-0600";

/// An agent script (mode 0755 in its own 0755 directory, so another user can run it):
/// `body`, then `exec "$@"`.
fn agent_script(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().join("agent.sh");
    std::fs::write(&path, format!("#!/usr/bin/env bash\n{body}\nexec \"$@\"\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, path)
}

/// `<data_dir>/logs/<id>` of a binary server.
fn log_dir(server_config: &Path, id: &str) -> PathBuf {
    server_config.parent().expect("dir").join("data/logs").join(id)
}

/// Bytes the log files in `dirs` take, counted both ways (length and allocated blocks).
fn log_bytes_on_disk(dirs: &[&Path]) -> u64 {
    dirs.iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("agent.log"))
        .filter_map(|entry| entry.metadata().ok())
        .map(|meta| meta.len().max(meta.blocks() * 512))
        .sum()
}

/// `<data_dir>/sessions/<id>` of a binary server.
fn session_dir(server_config: &Path, id: &str) -> PathBuf {
    server_config.parent().expect("dir").join("data/sessions").join(id)
}

/// The number `n` of the last `tick-n` line in the session's log, through the API.
async fn last_tick(client: &reqwest::Client, server: &BinaryServer, id: &str) -> Option<u64> {
    let text = logs(client, server, id, 3).await;
    text.lines().rev().find_map(|line| line.strip_prefix("tick-")?.split(' ').next()?.parse().ok())
}

async fn logs(client: &reqwest::Client, server: &BinaryServer, id: &str, tail: usize) -> String {
    let url = server.url(&format!("/sessions/{id}/logs?tail={tail}"));
    let response = client.get(url).send().await.expect("GET logs");
    assert_eq!(response.status(), 200);
    response.text().await.expect("text")
}

/// Waits until the log shows a tick later than `after`.
async fn log_grows(client: &reqwest::Client, server: &BinaryServer, id: &str, after: u64) -> u64 {
    wait_until("the log to grow", Duration::from_secs(20), || async move {
        last_tick(client, server, id).await.filter(|tick| *tick > after)
    })
    .await
}

/// Writes `tick-N <padding>` every 10 ms in the background, in the agent's group.
const TICKER: &str = r#"(n=0; pad=$(printf '%0500d' 0); while :; do echo "tick-$n $pad"; n=$((n+1)); sleep 0.01; done) &"#;

/// The agents' user for `run_as_user` tests, or `None` (with the reason printed) when this
/// host cannot run them; under CI that is a failure, not a skip.
fn agent_user() -> Option<nix::unistd::User> {
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten();
    let lacking = if !nix::unistd::geteuid().is_root() {
        Some("running agents as another user needs the tests to run as root")
    } else {
        nobody.is_none().then_some("no user `nobody` on this host")
    };
    if crate::support::host_can_run(lacking) { nobody } else { None }
}

struct RootOnly {
    _dir: tempfile::TempDir,
    file: PathBuf,
    dir: PathBuf,
}

impl RootOnly {
    /// A root-only file (0600) and directory (0750, with a file) in a root-only place.
    fn create() -> Self {
        let holder = tempfile::tempdir().expect("dir");
        let file = holder.path().join("secret");
        std::fs::write(&file, SECRET).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let dir = holder.path().join("secret-dir");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("inside"), SECRET).expect("write");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        Self { _dir: holder, file, dir }
    }

    fn assert_untouched(&self, when: &str) {
        let file = std::fs::metadata(&self.file).expect("secret");
        assert_eq!(std::fs::read_to_string(&self.file).expect("read"), SECRET, "{when}: written");
        assert_eq!((file.uid(), file.mode() & 0o7777), (0, 0o600), "{when}: re-owned or chmod-ed");
        let dir = std::fs::metadata(&self.dir).expect("secret dir");
        assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o750), "{when}: directory re-owned");
        let inside = std::fs::read_to_string(self.dir.join("inside")).expect("read");
        assert_eq!(inside, SECRET, "{when}: file in the directory written");
    }
}

#[tokio::test]
async fn links_an_agent_plants_are_never_followed_served_or_re_owned() {
    let Some(_nobody) = agent_user() else { return };
    let secret = RootOnly::create();
    // Replace every name the server once wrote or chown-ed with a link to root-only things,
    // then write a lot (64 KiB cap: many rotations).
    let (_script_dir, script) = agent_script(&format!(
        "cd \"$APX_SESSION_DIR\" || exit 1\n\
         ln -sfn {file} agent.log\nln -sfn {file} agent.log.1\n\
         rm -rf tmp && ln -sfn {dir} tmp\n{TICKER}",
        file = secret.file.display(),
        dir = secret.dir.display(),
    ));
    let server = BinaryServer::start(|config| {
        config.agent.run_as_user = "nobody".into();
        config.agent.script = script.display().to_string();
        config.agent.log_max_bytes = 64 * 1024;
        config.session.restart = agentapi_proxy::config::RestartPolicy::OnFailure;
        config.session.stop_grace_seconds = 1;
    })
    .await;
    let data_parent = server.config_path.parent().expect("dir").to_path_buf();
    // The agent user must pass through the test's own temporary directory.
    std::fs::set_permissions(&data_parent, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let body = json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}});
    let (kept, _) = start_ok(&client, &base, body.clone()).await;
    let (restarted, restarted_port) = start_ok(&client, &base, body).await;
    let logs_of_kept = log_dir(&server.config_path, &kept);
    // The links were planted before the agent answered.
    let served = logs(&client, &server, &kept, 10_000).await;
    assert!(!served.contains(SECRET), "the logs served a root-only file");
    // 300 lines of ~510 bytes: a few rotations at 64 KiB.
    let tick = log_grows(&client, &server, &kept, 300).await;
    let served = logs(&client, &server, &kept, 10_000).await;
    assert!(!served.contains(SECRET), "the logs served a root-only file");
    assert!(served.contains("tick-"), "the logs hold the agent's output");
    secret.assert_untouched("while the agent writes");
    let mode = std::fs::metadata(&logs_of_kept).expect("logs").mode();
    assert_eq!(mode & 0o777, 0o700, "the log directory is the server's alone");

    // `restart: on-failure` prepares the directory again: its `tmp` is a link now.
    let pid = agent_debug_env(&client, restarted_port).await["pid"].as_i64().expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the agent");
    let url = format!("{base}/sessions/{restarted}");
    let status = wait_until("the restart to be tried", Duration::from_secs(30), || async {
        let (_, session) = get_json(&client, &url).await;
        let status = session["status"].as_str().unwrap_or_default().to_string();
        (session["restarts"].as_u64() >= Some(1) && status != "starting").then_some(status)
    })
    .await;
    secret.assert_untouched("after a restart on failure");
    assert_eq!(status, "failed", "a restart into a linked tmp is refused");

    // The server goes away and comes back: the session is recovered, its log still grows.
    let (dir, config_path) = server.kill9().await;
    let server = BinaryServer::launch(dir, config_path, &[]).await;
    log_grows(&client, &server, &kept, tick).await;
    let served = logs(&client, &server, &kept, 10_000).await;
    assert!(!served.contains(SECRET), "the logs served a root-only file after recovery");
    secret.assert_untouched("after recovery");

    for id in [&kept, &restarted] {
        let response = client.delete(server.url(&format!("/sessions/{id}"))).send().await;
        assert_eq!(response.expect("delete").status(), 200);
        assert!(!log_dir(&server.config_path, id).exists(), "the log directory is removed");
    }
    secret.assert_untouched("after DELETE");
}

#[tokio::test]
async fn a_gigabyte_burst_stays_within_twice_the_cap_on_disk() {
    const CAP: u64 = 1024 * 1024;
    // Through a pipe the agent cannot seek, so a sparse burst (`dd seek=3G`) is no longer
    // possible: what reaches the log is what the keeper read, and it writes no holes.
    let (_script_dir, script) =
        agent_script("(head -c 1G /dev/zero; echo; echo burst-done) &\nsleep 0.2");
    let server = BinaryServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.agent.log_max_bytes = CAP;
    })
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let (id, _) =
        start_ok(&client, &base, json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}})).await;
    let (logs_dir, work_dir) =
        (log_dir(&server.config_path, &id), session_dir(&server.config_path, &id));
    let dirs = [logs_dir.as_path(), work_dir.as_path()];
    let mut most = 0;
    wait_until("the burst to be written", Duration::from_secs(180), || {
        most = most.max(log_bytes_on_disk(&dirs));
        let (client, server, id) = (&client, &server, &id);
        async move { logs(client, server, id, 1).await.contains("burst-done").then_some(()) }
    })
    .await;
    most = most.max(log_bytes_on_disk(&dirs));
    assert!(most <= 2 * CAP, "{most} bytes on disk against a cap of {CAP}");
    // One line of a gigabyte: the tail is cut to its bound.
    let tail = logs(&client, &server, &id, 5).await;
    assert!(tail.len() as u64 <= 1024 * 1024 + 16, "a tail of {} bytes", tail.len());
    assert!(tail.ends_with("burst-done\n"));
    assert!(!work_dir.join("agent.log").exists(), "no log in the agent's directory");
}

#[tokio::test]
async fn the_keeper_keeps_the_agent_and_its_log_going_while_the_server_is_away() {
    let (_script_dir, script) = agent_script(TICKER);
    let server = BinaryServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.session.stop_grace_seconds = 1;
    })
    .await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let (id, port) =
        start_ok(&client, &base, json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}})).await;
    let tick = log_grows(&client, &server, &id, 0).await;
    let dir = log_dir(&server.config_path, &id);
    let keeper: i32 = wait_until("the keeper's record", Duration::from_secs(10), || async {
        let record = std::fs::read_to_string(dir.join("keeper.pid")).ok()?;
        record.split(' ').next()?.parse().ok()
    })
    .await;
    assert!(process_alive(keeper));
    let agent = nix::unistd::Pid::from_raw(
        agent_debug_env(&client, port).await["pid"].as_i64().expect("pid") as i32,
    );
    assert_ne!(nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(keeper))).ok(), Some(agent));

    let (server_dir, config_path) = server.kill9().await;
    // With nobody reading its pipe the agent's writes would block or kill it (SIGPIPE).
    let size_then = log_bytes_on_disk(&[&dir]);
    wait_until("the log to grow without the server", Duration::from_secs(20), || async {
        (log_bytes_on_disk(&[&dir]) > size_then + 4096).then_some(())
    })
    .await;
    assert_eq!(agent_debug_env(&client, port).await["pid"].as_i64(), Some(agent.as_raw().into()));

    let server = BinaryServer::launch(server_dir, config_path, &[]).await;
    log_grows(&client, &server, &id, tick).await;
    let response = client.delete(server.url(&format!("/sessions/{id}"))).send().await;
    assert_eq!(response.expect("delete").status(), 200);
    assert!(!process_alive(keeper), "the keeper ends with its session");
    assert!(!dir.exists(), "the log directory is removed");
}
