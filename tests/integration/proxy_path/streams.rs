//! Event streams and long-lived connections through the proxy: frames pass one by one, idle
//! streams get `: ping` heartbeats, a leaving client closes the agent connection, a dying
//! agent ends the stream (then 502), draining ends streams, upgrades are tunnelled.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{
    Counts, Harness, ID, Proxy, RawEvents, dead_port, error_code, established_to, event_data,
};
use crate::echo_agent::DEADLINE;
use crate::support::wait_until;

fn is_stable(frame: &str) -> bool {
    event_data(frame, "status_change").is_some_and(|data| data["status"] == "stable")
}

#[tokio::test]
async fn event_frames_arrive_one_by_one_and_idle_streams_get_pings() {
    let harness = Harness::with_agent_env(&[("ECHO_AGENT_REPLY_MS", "600")], |_| {}).await;
    let proxy = &harness.proxy;
    let response = proxy.get("/events").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers().get("content-type").expect("content type");
    assert!(content_type.to_str().expect("ASCII").starts_with("text/event-stream"));
    assert!(response.headers().get("content-length").is_none());
    let mut events = RawEvents::new(response);
    events.until(is_stable).await;
    assert_eq!(Counts::get(&proxy.activity.opened), 1);

    let content = "the quick brown fox jumps over the lazy dog ".repeat(4).trim_end().to_string();
    let sent = proxy.post_message(&content, "user").await;
    assert_eq!(sent.status(), 200);
    // Agent updates grow over ~600 ms; each must arrive on its own, as it is written.
    let mut updates: Vec<(Instant, usize)> = Vec::new();
    loop {
        let frame = events.next().await.expect("the stream stays open");
        let arrived = Instant::now();
        if is_stable(&frame) {
            break;
        }
        if let Some(data) = event_data(&frame, "message_update")
            && data["role"] == "agent"
        {
            updates.push((arrived, data["message"].as_str().expect("text").len()));
        }
    }
    assert!(updates.len() >= 3, "several growing updates: {updates:?}");
    assert!(updates.windows(2).all(|w| w[0].1 <= w[1].1), "updates grow: {updates:?}");
    let spread = updates[updates.len() - 1].0 - updates[0].0;
    assert!(spread >= Duration::from_millis(200), "frames were held back and bunched: {spread:?}");

    // Now idle: a heartbeat comment arrives (heartbeat is 1 s in the test settings).
    let frame = events.next().await.expect("stream open");
    assert_eq!(frame, ": ping\n\n");
    let frame = events.next().await.expect("stream open");
    assert_eq!(frame, ": ping\n\n", "pings repeat while idle");
}

#[tokio::test]
async fn a_leaving_client_closes_the_agent_connection_within_a_second() {
    let harness = Harness::start(|config| config.proxy.sse_heartbeat_seconds = 0).await;
    let port = harness.agent.port;
    let before = established_to(port);
    let client = crate::echo_agent::client();
    let response = client.get(harness.proxy.url("/events")).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    let mut events = RawEvents::new(response);
    events.until(is_stable).await;
    wait_until("the stream's agent connection", DEADLINE, || async {
        (established_to(port) == before + 1).then_some(())
    })
    .await;

    drop(events);
    drop(client);
    wait_until("the agent connection to close", Duration::from_secs(1), || async {
        (established_to(port) == before).then_some(())
    })
    .await;
    let activity = &harness.proxy.activity;
    wait_until("stream_closed", DEADLINE, || async {
        (Counts::get(&activity.closed) == 1).then_some(())
    })
    .await;
    assert_eq!(Counts::get(&activity.opened), 1);
}

#[tokio::test]
async fn an_agent_dying_mid_stream_ends_the_stream_and_then_502() {
    let harness = Harness::start(|_| {}).await;
    let proxy = &harness.proxy;
    let mut events = RawEvents::new(proxy.get("/events").await);
    events.until(is_stable).await;
    let exit = proxy.post_message("/fake exit 0", "user").await;
    assert_eq!(exit.status(), 200);
    // Frames may still come (the user message, status), then the stream must end.
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(frame) = events.next().await {
            assert!(!frame.is_empty());
        }
    })
    .await;
    assert!(ended.is_ok(), "the client stream ended with the agent");
    let code = wait_until("502 once the agent is gone", DEADLINE, || async {
        let response = proxy.get("/status").await;
        (response.status() == 502).then_some(response)
    })
    .await;
    assert_eq!(error_code(code).await, "agent_unavailable");
    assert!(Counts::get(&proxy.activity.refused) >= 1, "the session layer was told");
    wait_until("stream_closed after the agent died", DEADLINE, || async {
        (Counts::get(&proxy.activity.closed) == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn nothing_listening_is_502_agent_unavailable() {
    let proxy = Proxy::start(dead_port().await, |_| {}).await;
    let response = proxy.get("/status").await;
    assert_eq!(response.status(), 502);
    assert_eq!(error_code(response).await, "agent_unavailable");
    assert_eq!(Counts::get(&proxy.activity.refused), 1);
    assert_eq!(Counts::get(&proxy.activity.requests), 1);
}

#[tokio::test]
async fn streams_end_when_the_server_starts_draining() {
    let harness = Harness::start(|_| {}).await;
    let proxy = &harness.proxy;
    let mut events = RawEvents::new(proxy.get("/events").await);
    events.until(is_stable).await;
    proxy.shutdown.escalate();
    let rest = tokio::time::timeout(DEADLINE, async {
        let mut frames = Vec::new();
        while let Some(frame) = events.next().await {
            frames.push(frame);
        }
        frames
    })
    .await
    .expect("the stream ended on drain");
    assert!(rest.is_empty(), "nothing after drain: {rest:?}");
    wait_until("stream_closed on drain", DEADLINE, || async {
        (Counts::get(&proxy.activity.closed) == 1).then_some(())
    })
    .await;
}

/// An upstream that accepts one upgrade to protocol `echo` and echoes bytes back.
async fn upgrading_upstream() -> (u16, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let head = read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nSet-Cookie: x=1\r\n\r\n")
            .await
            .expect("switch");
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => stream.write_all(&buffer[..n]).await.expect("echo"),
            }
        }
        head
    });
    (port, task)
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("read a head");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("ASCII head")
}

#[tokio::test]
async fn upgrades_are_tunnelled_both_ways() {
    let (port, upstream) = upgrading_upstream().await;
    let proxy = Proxy::start(port, |_| {}).await;
    let work = async {
        let mut stream = TcpStream::connect(proxy.address).await.expect("connect");
        let request = format!(
            "GET /{ID}/ws?x=1 HTTP/1.1\r\nHost: proxy.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-API-Key: secret\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("upgrade: echo"), "{head}");
        assert!(!lower.contains("set-cookie"), "{head}");
        for message in ["hello", "through the tunnel"] {
            stream.write_all(message.as_bytes()).await.expect("write");
            let mut echoed = vec![0u8; message.len()];
            stream.read_exact(&mut echoed).await.expect("read echo");
            assert_eq!(echoed, message.as_bytes());
        }
        assert_eq!(Counts::get(&proxy.activity.opened), 1);
        drop(stream);
        upstream.await.expect("upstream task")
    };
    let head = tokio::time::timeout(DEADLINE, work).await.expect("tunnel in time");
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("GET /ws?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(lower.contains("upgrade: echo"), "{head}");
    assert!(lower.contains("connection: upgrade"), "{head}");
    assert!(!lower.contains("secret"), "{head}");
    wait_until("the tunnel's stream_closed", DEADLINE, || async {
        (Counts::get(&proxy.activity.closed) == 1).then_some(())
    })
    .await;
}
