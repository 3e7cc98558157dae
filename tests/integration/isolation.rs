//! `agent.run_as_user` and `agent.limits`: with the proxy running as root, agents run as an
//! unprivileged user without supplementary groups, under resource limits, and cannot read
//! the proxy's database.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use serde_json::json;

use crate::support::host_can_run;
use crate::support::server::TestServer;
use crate::support::sessions::{agent_debug_env, group_gone, start_ok};

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[tokio::test]
async fn agents_run_as_the_configured_user_with_limits_and_cannot_read_the_database() {
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten();
    let lacking = if !nix::unistd::geteuid().is_root() {
        Some("running agents as another user needs the tests to run as root")
    } else {
        nobody.is_none().then_some("no user `nobody` on this host")
    };
    if !host_can_run(lacking) {
        return;
    }
    let nobody = nobody.expect("checked above");
    let server = TestServer::start(|config| {
        config.agent.run_as_user = "nobody".into();
        config.agent.limits.open_files = 256;
        config.agent.limits.max_processes = 4096;
    })
    .await;
    // The agent user must pass through the test's own temporary directory too.
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod");
    let client = reqwest::Client::new();
    let (id, port) =
        start_ok(&client, &server.base(), json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}}))
            .await;
    let pid = agent_debug_env(&client, port).await["pid"].as_i64().expect("pid") as i32;
    let uid = nobody.uid.as_raw().to_string();
    assert_eq!(status_field(pid, "Uid"), format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(status_field(pid, "Groups"), "", "no supplementary groups");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let open_files = limits.lines().find(|line| line.starts_with("Max open files")).expect("line");
    assert!(open_files.contains(" 256 "), "{open_files}");

    let database = server.dir.path().join("data/agentapi-proxy.db");
    let read_as_agent = std::process::Command::new("cat")
        .arg(&database)
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .output()
        .expect("cat runs");
    assert!(!read_as_agent.status.success(), "the agent user can read the database");

    let response =
        client.delete(server.url(&format!("/sessions/{id}"))).send().await.expect("delete");
    assert_eq!(response.status(), 200);
    assert!(group_gone(pid));
}
