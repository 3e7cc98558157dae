//! One server per data directory: a second server started on the same directory refuses to
//! run (exit 2, naming the directory and the holder's pid) and leaves the first one's agents
//! alone; after a `kill -9` the lock is gone with the process and recovery works as before.

use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::support::binary;
use crate::support::server::BinaryServer;
use crate::support::sessions::{get_json, start_ok};

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_exits_2_and_the_first_keeps_its_agents() {
    let first = BinaryServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", first.address);
    let env = json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}});
    let (id, _) = start_ok(&client, &base, env).await;
    let first_pid = first.child.id().expect("running");

    let second = Command::new(binary())
        .args(["server", "--log-format", "json", "-p", "0", "-c"])
        .arg(&first.config_path)
        .current_dir(first.dir_path())
        .kill_on_drop(true)
        .output();
    let second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second server gives up in time")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("pid {first_pid}")), "{stderr}");
    assert!(stderr.contains("data"), "names the directory: {stderr}");
    assert!(!stderr.contains("re-adopted"), "touched the first server's agents: {stderr}");

    let (code, detail) = get_json(&client, &first.url(&format!("/sessions/{id}"))).await;
    assert_eq!((code, detail["status"].as_str()), (200, Some("active")), "{detail}");
    let (code, status) = get_json(&client, &format!("{base}/{id}/status")).await;
    assert_eq!((code, status["status"].as_str()), (200, Some("stable")), "through the proxy");

    // The lock dies with the process: a server started after kill -9 recovers the session.
    let (dir, config_path) = first.kill9().await;
    let next = BinaryServer::launch(dir, config_path, &[]).await;
    let base = format!("http://{}", next.address);
    let (code, detail) = get_json(&client, &format!("{base}/sessions/{id}")).await;
    assert_eq!((code, detail["status"].as_str()), (200, Some("active")), "{detail}");
    let _ = next.stop().await;
}
