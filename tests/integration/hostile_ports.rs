//! Hostile agents against the agent's port and the server's own calls (security.md rules
//! 16–17, hostile-input rows 29–30): a stranger planted on the agent's port, a stranger
//! taking the port once the agent let go of it, an agent squatting the port range, and an
//! agent answering `/status` with gigabytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::server::{BinaryServer, TestServer};
use crate::support::sessions::{get_json, start, start_ok};
use crate::support::wait_until;

/// The real python3 (a pyenv shim would need `HOME`, which agents get as their own dir).
fn python() -> String {
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed (the hostile agents of these tests are python)");
    String::from_utf8(output.stdout).expect("utf-8").trim().to_string()
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// `len` consecutive free ports above the ephemeral range, where no other test's range lies.
fn free_range(len: u16) -> (u16, u16) {
    use agentapi_proxy::sessions::local::ports::is_free;
    loop {
        let start = 61_000 + (uuid::Uuid::new_v4().as_u128() % 4_000) as u16;
        if (start..start + len).all(is_free) {
            return (start, start + len - 1);
        }
    }
}

/// Listeners the test plants on agents' ports: strangers to every session. Each answers
/// like agentapi and counts the requests it was sent (a bare connect is not a request).
#[derive(Clone, Default)]
struct Strangers {
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    ports: Arc<Mutex<Vec<u16>>>,
}

impl Strangers {
    async fn plant(&self, port: u16) -> bool {
        let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await else { return false };
        self.ports.lock().expect("ports").push(port);
        let (requests, connections) = (self.requests.clone(), self.connections.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let requests = requests.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        requests.fetch_add(1, Ordering::SeqCst);
                        let body = r#"{"status":"stable","messages":[]}"#;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        true
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn ports(&self) -> Vec<u16> {
        self.ports.lock().expect("ports").clone()
    }
}

/// The control socket agents of [`PLANTING_SCRIPT`] ask: the test plants a stranger on the
/// port they name while `plants_left` lasts, and answers `planted` or `no`.
async fn plant_on_request(strangers: Strangers, plants_left: Arc<AtomicUsize>) -> u16 {
    let control = TcpListener::bind("127.0.0.1:0").await.expect("bind control");
    let port = control.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = control.accept().await {
            let (strangers, plants_left) = (strangers.clone(), plants_left.clone());
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut line = String::new();
                let _ = BufReader::new(reader).read_line(&mut line).await;
                let Ok(agent_port) = line.trim().parse::<u16>() else { return };
                let plant = plants_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
                    .is_ok();
                let planted = plant && strangers.plant(agent_port).await;
                let answer: &[u8] = if planted { b"planted\n" } else { b"no\n" };
                let _ = writer.write_all(answer).await;
            });
        }
    });
    port
}

/// An agent that has a stranger planted on its port first, then binds where connections to
/// `127.0.0.1` do not land (`127.0.0.2`), so its own bind succeeds beside the stranger.
const PLANTING_SCRIPT: &str = r#"#!/usr/bin/env bash
exec 3<>"/dev/tcp/127.0.0.1/$PLANT_CONTROL" || exit 90
echo "$APX_PORT" >&3
read -r answer <&3
exec 3>&-
if [ "$answer" = planted ]; then
  exec "$1" "$2" "$3" --bind 127.0.0.2 "${@:4}"
fi
exec "$@"
"#;

#[tokio::test]
async fn a_stranger_planted_on_the_agents_port_never_gets_a_request() {
    let scripts = tempfile::tempdir().expect("dir");
    let script = write_file(scripts.path(), "plant.sh", PLANTING_SCRIPT);
    let strangers = Strangers::default();
    let plants_left = Arc::new(AtomicUsize::new(usize::MAX));
    let control = plant_on_request(strangers.clone(), plants_left.clone()).await;
    let server = TestServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.agent.environment.insert("PLANT_CONTROL".into(), control.to_string());
    })
    .await;
    let client = reqwest::Client::new();

    // A stranger on every port tried: the start gives up cleanly after three ports.
    let (status, answer) = start(&client, &server.base(), json!({})).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["code"], "at_capacity", "{answer}");
    assert!(answer["message"].as_str().unwrap_or_default().contains("another process"));
    let tried = strangers.ports();
    assert_eq!(tried.len(), 3, "three different ports: {tried:?}");
    let (_, search) = get_json(&client, &server.url("/search?status=failed")).await;
    assert_eq!(search["total"], 1, "{search}");
    assert_eq!(search["sessions"][0]["exit_reason"], "start_failed");

    // A stranger on the first port only: the session moves to another port.
    plants_left.store(1, Ordering::SeqCst);
    let boot_at_once = json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}});
    let (id, port) = start_ok(&client, &server.base(), boot_at_once).await;
    let planted = strangers.ports();
    assert_eq!(planted.len(), 4);
    assert!(!planted.contains(&port), "the agent ended up on a port of its own: {port}");
    let sent = client
        .post(server.url(&format!("/{id}/message")))
        .json(&json!({"content": "for the agent only", "type": "user"}))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), 200);
    let (code, messages) = get_json(&client, &server.url(&format!("/{id}/messages"))).await;
    assert_eq!(code, 200);
    assert!(messages.to_string().contains("for the agent only"), "{messages}");
    assert_eq!(strangers.requests(), 0, "no request of anyone ever reached a stranger");
}

/// An agentapi look-alike on port `argv[1]` that stops listening (but keeps running) when
/// asked `/let-go`; every answer closes its connection. It also listens on any further
/// ports named, without ever answering there.
const LETTING_GO_AGENT: &str = r#"
import socket, sys, threading
def listen(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(16)
    return listener
server = listen(sys.argv[1])
others = [listen(port) for port in sys.argv[2:]]
while True:
    connection, _ = server.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = connection.recv(65536)
        if not chunk:
            break
        request += chunk
    parts = request.split(b" ")
    if len(parts) < 3:
        connection.close()
        continue
    path = parts[1]
    body = b'{"status":"stable","messages":[]}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
    try:
        connection.sendall(head + b"content-length: %d\r\n\r\n" % len(body) + body)
    except OSError:
        pass
    connection.close()
    if path == b"/let-go":
        server.close()
        threading.Event().wait()
"#;

#[tokio::test]
async fn a_stranger_taking_the_port_after_the_agent_let_go_gets_no_request() {
    let scripts = tempfile::tempdir().expect("dir");
    let agent = write_file(scripts.path(), "agent.py", LETTING_GO_AGENT);
    let script = write_file(
        scripts.path(),
        "agent.sh",
        "#!/usr/bin/env bash\nexec \"$PYTHON\" \"$AGENT\" \"$APX_PORT\"\n",
    );
    let server = TestServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.agent.environment.insert("PYTHON".into(), python());
        config.agent.environment.insert("AGENT".into(), agent.display().to_string());
    })
    .await;
    let client = reqwest::Client::new();
    let (id, port) = start_ok(&client, &server.base(), json!({})).await;
    let (code, _) = get_json(&client, &server.url(&format!("/{id}/let-go"))).await;
    assert_eq!(code, 200, "the agent answered before letting go");
    let strangers = Strangers::default();
    wait_until("the stranger to get the agent's port", Duration::from_secs(10), || {
        let strangers = strangers.clone();
        async move { strangers.plant(port).await.then_some(()) }
    })
    .await;
    for path in ["messages", "status"] {
        let response = client.get(server.url(&format!("/{id}/{path}"))).send().await.expect("send");
        assert_eq!(response.status(), 502, "/{path}");
    }
    let sent = client
        .post(server.url(&format!("/{id}/message")))
        .json(&json!({"content": "secret", "type": "user"}))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), 502);
    assert_eq!(strangers.requests(), 0, "the stranger was never sent a request");
}

/// Binds every port named on its command line (those it can), then waits forever.
const SQUATTER: &str = r#"
import socket, sys, threading
held = []
for port in sys.argv[1:]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(1)
        held.append(listener)
    except OSError:
        pass
threading.Event().wait()
"#;

/// With `SQUAT=leader` the agent itself listens on every other port of the range as well
/// as its own; with `SQUAT=child` a child of the agent does.
const SQUATTING_SCRIPT: &str = r#"#!/usr/bin/env bash
others=()
for port in $(seq "$RANGE_START" "$RANGE_END"); do
  [ "$port" != "$APX_PORT" ] && others+=("$port")
done
if [ "$SQUAT" = leader ]; then
  exec "$PYTHON" "$AGENT" "$APX_PORT" "${others[@]}"
fi
if [ "$SQUAT" = child ]; then
  "$PYTHON" "$SQUATTER" "${others[@]}" &
fi
exec "$@"
"#;

#[tokio::test]
async fn an_agent_squatting_the_port_range_is_stopped_and_the_ports_come_free() {
    let scripts = tempfile::tempdir().expect("dir");
    let squatter = write_file(scripts.path(), "squatter.py", SQUATTER);
    let agent = write_file(scripts.path(), "agent.py", LETTING_GO_AGENT);
    let script = write_file(scripts.path(), "agent.sh", SQUATTING_SCRIPT);
    let (first, last) = free_range(4);
    let server = TestServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.start_port = first;
        config.end_port = last;
        let environment = &mut config.agent.environment;
        environment.insert("PYTHON".into(), python());
        environment.insert("SQUATTER".into(), squatter.display().to_string());
        environment.insert("AGENT".into(), agent.display().to_string());
        environment.insert("RANGE_START".into(), first.to_string());
        environment.insert("RANGE_END".into(), last.to_string());
    })
    .await;
    let client = reqwest::Client::new();

    // Squatting before it answers: the start fails.
    let (status, answer) =
        start(&client, &server.base(), json!({"environment": {"SQUAT": "leader"}})).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["code"], "agent_failed_to_start");
    let others: Vec<u16> = (first + 1..=last).collect();
    assert_eq!(answer["details"]["squatted_ports"], json!(others), "{answer}");
    let (_, failed) = get_json(&client, &server.url("/search?status=failed")).await;
    assert_eq!(failed["sessions"][0]["exit_reason"], "port_squatting", "{failed}");

    // Squatting once running (a child of the agent): the agent is stopped.
    let (status, answer) =
        start(&client, &server.base(), json!({"environment": {"SQUAT": "child"}})).await;
    let id = answer["session_id"].as_str().expect("a session either way").to_string();
    let detail_url = server.url(&format!("/sessions/{id}"));
    let detail = wait_until("the squatter to be stopped", Duration::from_secs(15), || {
        let (client, url) = (client.clone(), detail_url.clone());
        async move {
            let (_, detail) = get_json(&client, &url).await;
            let over = matches!(detail["status"].as_str(), Some("exited" | "failed"));
            over.then_some(detail)
        }
    })
    .await;
    assert_eq!(detail["exit_reason"], "port_squatting", "start answered {status}: {detail}");
    let mut ports: Vec<u16> = Vec::new();
    for _ in first..=last {
        ports.push(start_ok(&client, &server.base(), json!({})).await.1);
    }
    ports.sort_unstable();
    assert_eq!(ports, (first..=last).collect::<Vec<_>>(), "every port of the range is usable");
}

/// An agentapi look-alike whose `/status` answers, after the first `argv[2]` ordinary ones,
/// are a chunked stream of zeros of up to 4 GiB; each such answer is counted in
/// `huge-answers` in its working directory.
const HUGE_ANSWER_AGENT: &str = r#"
import socket, sys, threading
normal_left = [int(sys.argv[2])]
huge = [0]
lock = threading.Lock()
def serve(connection):
    with connection:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = connection.recv(65536)
            if not chunk:
                return
            request += chunk
        path = request.split(b" ")[1]
        with lock:
            normal = path != b"/status" or normal_left[0] > 0
            if path == b"/status" and normal:
                normal_left[0] -= 1
        if normal:
            body = b'{"status":"stable"}'
            connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            return
        with lock:
            huge[0] += 1
            with open("huge-answers", "w") as counter:
                counter.write(str(huge[0]))
        connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + bytes(1 << 20) + b"\r\n"
        try:
            for _ in range(4096):
                connection.sendall(chunk)
        except OSError:
            pass
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(64)
while True:
    connection, _ = server.accept()
    threading.Thread(target=serve, args=(connection,), daemon=True).start()
"#;

/// `VmHWM` (peak resident set) of `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).expect("value").parse().expect("number");
    kib * 1024
}

#[tokio::test]
async fn an_agent_answering_status_with_gigabytes_costs_the_server_no_memory() {
    let scripts = tempfile::tempdir().expect("dir");
    let agent = write_file(scripts.path(), "agent.py", HUGE_ANSWER_AGENT);
    let script = write_file(
        scripts.path(),
        "agent.sh",
        "#!/usr/bin/env bash\nexec \"$PYTHON\" \"$AGENT\" \"$APX_PORT\" \"$NORMAL_ANSWERS\"\n",
    );
    let server = BinaryServer::start(|config| {
        config.agent.script = script.display().to_string();
        config.session.ready_timeout_seconds = 3;
        config.agent.environment.insert("PYTHON".into(), python());
        config.agent.environment.insert("AGENT".into(), agent.display().to_string());
    })
    .await;
    let pid = server.child.id().expect("running");
    let before = peak_rss(pid);
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");

    // Meanwhile the server keeps answering promptly.
    let stop = Arc::new(AtomicBool::new(false));
    let health = tokio::spawn({
        let (client, url, stop) = (client.clone(), server.url("/healthz"), stop.clone());
        async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = std::time::Instant::now();
                let answer = client.get(&url).timeout(Duration::from_secs(2)).send().await;
                if !answer.is_ok_and(|response| response.status() == 200) {
                    failures.push(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        }
    });

    // Every readiness check gets a huge answer: the start fails at the ready timeout.
    let (status, answer) =
        start(&client, &server.url(""), json!({"environment": {"NORMAL_ANSWERS": "0"}})).await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["code"], "agent_timeout");

    // Ready at the first answer, then huge ones for the first prompt and the status refresh.
    let (id, _) = start_ok(
        &client,
        &server.url(""),
        json!({"environment": {"NORMAL_ANSWERS": "1"}, "message": "hello"}),
    )
    .await;
    let data_dir = server.config_path.parent().expect("dir").join("data");
    let counter = data_dir.join("sessions").join(&id).join("huge-answers");
    wait_until("three huge answers to the active session", Duration::from_secs(20), || {
        let counter = counter.clone();
        async move {
            let count: u32 = std::fs::read_to_string(&counter).ok()?.trim().parse().ok()?;
            (count >= 3).then_some(())
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let failures = health.await.expect("health poller");
    let grown = peak_rss(pid).saturating_sub(before);
    println!("peak RSS grew by {} KiB (from {} KiB)", grown / 1024, before / 1024);
    assert!(grown < 200 * 1024 * 1024, "the server's peak RSS grew by {grown} bytes");
    assert!(failures.is_empty(), "/healthz failed while the agent answered: {failures:?}");
    let (code, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(code, 200);
    assert_eq!(detail["status"], "active", "{detail}");
}
