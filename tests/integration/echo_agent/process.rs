//! The echo agent as a process: reading piped stdin before listening (like agentapi), the
//! initial prompt, exit codes, signals, and the grandchild in its process group.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{DEADLINE, EchoAgent, IntoLines, command, read_line};
use crate::support::wait_until;

async fn exit_code(agent: &mut EchoAgent) -> std::process::ExitStatus {
    tokio::time::timeout(DEADLINE, agent.child.wait())
        .await
        .expect("the agent exits in time")
        .expect("wait works")
}

#[tokio::test]
async fn open_stdin_keeps_it_from_listening_until_eof() {
    let mut cmd = command(&[], &[]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("spawns");
    let mut stdin = child.stdin.take().expect("stdin piped");
    let mut stdout = child.stdout.take().expect("stdout piped").into_lines();
    assert_eq!(
        read_line(&mut stdout, Duration::from_secs(1)).await,
        None,
        "no listening line while stdin is open"
    );
    stdin.write_all(b"prompt from stdin").await.expect("writes");
    drop(stdin);
    let agent = EchoAgent::listening(child, stdout).await;
    // Like agentapi, what was piped in becomes the initial prompt.
    agent.wait_message("user", "prompt from stdin").await;
    agent.wait_message("agent", "echo: prompt from stdin").await;
}

#[tokio::test]
async fn dev_null_stdin_starts_at_once_and_initial_prompt_is_sent() {
    let agent = EchoAgent::start(&["-I", "hello there"], &[]).await;
    agent.wait_message("user", "hello there").await;
    agent.wait_message("agent", "echo: hello there").await;
}

#[tokio::test]
async fn fake_exit_answers_then_exits_with_the_code() {
    let mut agent = EchoAgent::start(&[], &[]).await;
    agent.say("/fake exit 3").await;
    let status = exit_code(&mut agent).await;
    assert_eq!(status.code(), Some(3));
}

#[tokio::test]
async fn sigterm_exits_zero_even_with_an_open_event_stream() {
    let mut agent = EchoAgent::start(&[], &[]).await;
    let events = agent.client.get(agent.url("/events")).send().await.expect("events");
    assert_eq!(events.status(), 200);
    kill(Pid::from_raw(agent.pid), Signal::SIGTERM).expect("signal sent");
    let status = exit_code(&mut agent).await;
    assert_eq!(status.code(), Some(0));
    drop(events);
}

#[tokio::test]
async fn ignore_sigterm_survives_sigterm_but_not_sigkill() {
    let mut cmd = command(&[], &[("ECHO_AGENT_IGNORE_SIGTERM", "1")]);
    cmd.stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawns");
    let stderr = child.stderr.take().expect("stderr piped");
    let stdout = child.stdout.take().expect("stdout piped").into_lines();
    let mut agent = EchoAgent::listening(child, stdout).await;
    let mut stderr = BufReader::new(stderr).lines();

    kill(Pid::from_raw(agent.pid), Signal::SIGTERM).expect("signal sent");
    // The agent says when it has handled (and ignored) the signal.
    let noticed = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("ignoring SIGTERM") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(noticed, Ok(true));
    assert_eq!(agent.status().await, "stable", "still answering after SIGTERM");
    assert!(agent.child.try_wait().expect("try_wait").is_none());

    kill(Pid::from_raw(agent.pid), Signal::SIGKILL).expect("signal sent");
    let status = exit_code(&mut agent).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

/// Live (non-zombie) `sleep` processes whose process group is `pgrp`.
fn sleepers_in_group(pgrp: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after ')'.
            let Some((head, tail)) = stat.rsplit_once(')') else {
                return false;
            };
            let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
            let fields: Vec<&str> = tail.split_whitespace().collect();
            comm == "sleep"
                && fields.first() != Some(&"Z")
                && fields.get(2) == Some(&pgrp.to_string().as_str())
        })
        .collect()
}

#[tokio::test]
async fn spawn_grandchild_leaves_a_sleep_in_the_agent_group() {
    let mut agent = EchoAgent::start(&[], &[("ECHO_AGENT_SPAWN_GRANDCHILD", "1")]).await;
    let group = agent.pid;
    wait_until("a sleep grandchild in the group", DEADLINE, || async {
        (!sleepers_in_group(group).is_empty()).then_some(())
    })
    .await;
    // Killing only the agent leaves the grandchild behind: that is what group kills are for.
    kill(Pid::from_raw(group), Signal::SIGKILL).expect("signal sent");
    exit_code(&mut agent).await;
    assert!(!sleepers_in_group(group).is_empty(), "the grandchild outlives the agent");
    killpg(Pid::from_raw(group), Signal::SIGKILL).expect("group signal sent");
    wait_until("the grandchild to die", DEADLINE, || async {
        sleepers_in_group(group).is_empty().then_some(())
    })
    .await;
}
