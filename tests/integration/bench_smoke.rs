//! The benchmark scripts, in their quick mode (one short repetition, no targets), so they
//! cannot rot: every path (direct, nginx, proxy with and without auth) must answer.

use std::time::Duration;

fn installed(tool: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join(tool).exists())
}

#[tokio::test]
async fn the_quick_benchmark_runs_every_path() {
    let lacking = (!installed("nginx") || !installed("wrk"))
        .then_some("nginx and wrk are not installed (.ci/run installs them)");
    if !crate::support::host_can_run(lacking) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/run.sh");
    let run = tokio::process::Command::new("bash")
        .arg(script)
        .arg("--quick")
        .env("AGENTAPI_PROXY_BIN", crate::support::binary())
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(120), run).await.expect("finishes").expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for path in ["direct", "nginx", "proxy"] {
        assert!(
            stdout.contains(path) || stderr.contains(path),
            "{path} missing:\n{stdout}\n{stderr}"
        );
    }
}
