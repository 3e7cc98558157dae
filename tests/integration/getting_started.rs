//! `docs/getting-started.md` run as written: every command of its ```sh blocks runs in bash
//! against a real server, must exit 0, and must print the `# ` lines shown under it.
//!
//! What the test changes, and only that: `cargo run -q --` is the built binary; the server the
//! guide starts with `make run` is started here (`server -c config.demo.json`) and stopped
//! before the block that starts its own server, as the guide tells the reader; port 8080 and
//! the agents' ports are free ones (through `AGENTAPI_PROXY_*` variables, which every server
//! and client of the guide reads).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::support::server::kill_agents_under;
use crate::support::{binary, wait_until};

/// One command of a block: its shell text (continuation lines and heredocs included) and the
/// lines the guide shows it printing.
#[derive(Debug)]
struct DocCommand {
    text: String,
    shows: Vec<String>,
}

/// The ```sh blocks of `markdown`, each as its commands.
fn sh_blocks(markdown: &str) -> Vec<Vec<DocCommand>> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|line| line.trim() != "```").collect();
        blocks.push(commands(&body));
    }
    blocks
}

fn commands(body: &[&str]) -> Vec<DocCommand> {
    let mut commands: Vec<DocCommand> = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let line = body[at];
        at += 1;
        if let Some(shown) = line.strip_prefix('#') {
            let command = commands.last_mut().expect("an output line follows a command");
            command.shows.push(shown.strip_prefix(' ').unwrap_or(shown).to_string());
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let mut text = line.to_string();
        let mut last = line;
        while last.trim_end().ends_with('\\') && at < body.len() {
            last = body[at];
            at += 1;
            text.push('\n');
            text.push_str(last);
        }
        if let Some(word) = heredoc_word(&text) {
            while at < body.len() {
                let next = body[at];
                at += 1;
                text.push('\n');
                text.push_str(next);
                if next == word {
                    break;
                }
            }
        }
        commands.push(DocCommand { text, shows: Vec::new() });
    }
    commands
}

/// `WORD` of a `<<'WORD'` or `<<WORD` in `text`.
fn heredoc_word(text: &str) -> Option<String> {
    let rest = &text[text.find("<<")? + 2..];
    let word: String = rest
        .trim_start_matches(['\'', '"', '-'])
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// Whether `line` is what the guide shows: `…` (or `...`) stands for any text, and runs of
/// whitespace compare equal to one space (columns line up differently with other ids).
fn shows(expected: &str, line: &str) -> bool {
    let squeeze = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let (expected, line) = (squeeze(&expected.replace("...", "…")), squeeze(line));
    let parts: Vec<&str> = expected.split('…').map(str::trim).collect();
    let mut rest = line.as_str();
    for (index, part) in parts.iter().enumerate() {
        if index == 0 {
            match rest.strip_prefix(part) {
                Some(after) => rest = after,
                None => return false,
            }
        } else if index == parts.len() - 1 {
            return rest.trim_end().ends_with(part);
        } else {
            match rest.find(part) {
                Some(found) => rest = &rest[found + part.len()..],
                None => return false,
            }
        }
    }
    rest.trim().is_empty()
}

/// The shown lines that `output` lacks, in order (a lone `…` skips any lines).
fn missing<'a>(shown: &'a [String], output: &str) -> Vec<&'a str> {
    let mut lines = output.lines();
    let mut absent = Vec::new();
    for expected in shown.iter().filter(|line| line.trim() != "…") {
        if !lines.by_ref().any(|line| shows(expected, line)) {
            absent.push(expected.as_str());
            lines = output.lines();
        }
    }
    absent
}

/// The shell variables the guide sets (`ID=…`, `export NAME=…`), carried from block to block.
fn assigned(commands: &[DocCommand]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|command| {
            let text = command.text.trim_start();
            let text = text.strip_prefix("export ").unwrap_or(text);
            let (name, _) = text.split_once('=')?;
            let plain =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            plain.then(|| name.to_string())
        })
        .collect()
}

/// A bash script that runs `commands` in order in one shell (so `ID=…` and `export` carry
/// over), each with its output in `out.N`/`err.N` and its exit status in `rc.N`; it starts
/// from the variables `state` holds and leaves `carried` there for the next block.
fn script(commands: &[DocCommand], port: u16, state: &Path, carried: &[String]) -> String {
    let state = state.display();
    let mut script = format!("set +e\n[ -f {state} ] && . {state}\n");
    for (index, command) in commands.iter().enumerate() {
        let text = command
            .text
            .replace("cargo run -q --", binary())
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
        script.push_str(&format!(
            "{{ {text}\n}} > out.{index} 2> err.{index} < /dev/null; echo $? > rc.{index}\n"
        ));
    }
    if !carried.is_empty() {
        script.push_str(&format!("declare -p {} > {state} 2> /dev/null\n", carried.join(" ")));
    }
    script
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// What every process of the guide gets: its port, and agent ports no other test uses.
fn guide_env(port: u16) -> Vec<(String, String)> {
    let agents = 33_000 + (uuid::Uuid::new_v4().as_u128() % 20_000) as u16;
    [
        ("AGENTAPI_PROXY_SERVER__PORT", port.to_string()),
        ("AGENTAPI_PROXY_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("AGENTAPI_PROXY_START_PORT", agents.to_string()),
        ("AGENTAPI_PROXY_END_PORT", (agents + 100).to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// `make run`, as the test starts it: the demo configuration, in `dir`.
async fn make_run(dir: &Path, env: &[(String, String)], port: u16) -> Child {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(repo.join("config.demo.json"), dir.join("config.demo.json")).expect("copy");
    let child = Command::new(binary())
        .args(["server", "-c", "config.demo.json"])
        .current_dir(dir)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env_remove("AGENTAPI_PROXY_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server");
    let health = format!("http://127.0.0.1:{port}/healthz");
    wait_until("the demo server answers", Duration::from_secs(30), || async {
        reqwest::get(&health).await.ok().filter(|r| r.status().is_success())
    })
    .await;
    child
}

/// Runs one block in bash (its own process group, ended afterwards) and checks every
/// command's exit status and output.
async fn run_block(
    number: usize,
    commands: &[DocCommand],
    dir: &Path,
    env: &[(String, String)],
    port: u16,
    carried: &[String],
) {
    let scratch = dir.join(format!(".block{number}"));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let script_path = scratch.join("block.sh");
    let mut text = script(commands, port, &dir.join(".guide-variables"), carried);
    text = text.replace("> out.", &format!("> {}/out.", scratch.display()));
    text = text.replace("2> err.", &format!("2> {}/err.", scratch.display()));
    text = text.replace("> rc.", &format!("> {}/rc.", scratch.display()));
    std::fs::write(&script_path, text).expect("write script");
    let mut shell = Command::new("bash");
    shell
        .arg(&script_path)
        .current_dir(dir)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env_remove("AGENTAPI_PROXY_API_KEY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = shell.spawn().expect("bash");
    let group = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
    let finished = tokio::time::timeout(Duration::from_secs(90), child.wait()).await;
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let read = |name: String| std::fs::read_to_string(scratch.join(name)).unwrap_or_default();
    let mut failures = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        let (rc, out, err) = (
            read(format!("rc.{index}")),
            read(format!("out.{index}")),
            read(format!("err.{index}")),
        );
        let shown: Vec<String> = command
            .shows
            .iter()
            .map(|line| line.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")))
            .collect();
        let absent = missing(&shown, &out);
        if rc.trim() != "0" || !absent.is_empty() {
            failures.push(format!(
                "block {number}, `{}`: exit {:?}, missing {absent:?}\n--- stdout\n{out}--- stderr\n{err}",
                command.text,
                rc.trim()
            ));
        }
    }
    assert!(finished.is_ok(), "block {number} did not finish in 90 s:\n{}", failures.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_command_of_the_getting_started_guide_runs_as_written() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(repo.join("docs/getting-started.md")).expect("read");
    let blocks = sh_blocks(&guide);
    assert!(blocks.len() >= 4, "the guide's shell blocks: {blocks:#?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let env = guide_env(port);
    let mut demo = Some(make_run(dir.path(), &env, port).await);
    let carried: Vec<String> = blocks.iter().flat_map(|block| assigned(block)).collect();
    for (number, commands) in blocks.iter().enumerate() {
        if commands.iter().any(|command| command.text.contains(" server -c ")) {
            // "Stop `make run` first."
            if let Some(mut server) = demo.take() {
                let pid = nix::unistd::Pid::from_raw(server.id().expect("pid") as i32);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
                tokio::time::timeout(Duration::from_secs(30), server.wait())
                    .await
                    .expect("the demo server stops")
                    .expect("wait");
            }
        }
        run_block(number, commands, dir.path(), &env, port, &carried).await;
    }
    drop(demo);
    kill_agents_under(dir.path());
}

#[test]
fn shown_lines_match_with_wildcards_and_any_spacing() {
    assert!(shows("deleted …", "deleted 1e1a-ff"));
    assert!(shows("# a  b", "# a b"));
    assert!(shows("{\"x\":…,\"y\":2}", "{\"x\":\"1\",\"y\":2}"));
    assert!(!shows("echo: hi", "echo: hello"));
    assert!(!shows("… team=web", "x team=api"));
    let shown = vec!["a".to_string(), "…".to_string(), "c".to_string()];
    assert!(missing(&shown, "a\nb\nc\n").is_empty());
    assert_eq!(missing(&shown, "c\na\n"), vec!["c"], "in order");
}

#[test]
fn commands_keep_continuations_and_heredocs_and_take_the_lines_shown_under_them() {
    let body = ["a \\", "  b", "# out", "cat > f <<'JSON'", "{}", "JSON", "c   # note"];
    let parsed = commands(&body);
    assert_eq!(parsed.len(), 3, "{parsed:?}");
    assert_eq!(parsed[0].text, "a \\\n  b");
    assert_eq!(parsed[0].shows, vec!["out"]);
    assert_eq!(parsed[1].text, "cat > f <<'JSON'\n{}\nJSON");
    assert_eq!(parsed[2].text, "c   # note");
}
