//! The session routes with real echo-agent children: start (waiting for readiness, or not),
//! search, detail, logs, delete, caps, and the validation of everything a caller sends.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::server::TestServer;
use crate::support::sessions::{
    agent_debug_env, get_json, group_gone, live_group_members, session_status, start, start_ok,
};
use crate::support::wait_until;

#[tokio::test]
async fn start_answers_once_the_agent_answers_and_the_session_is_listed() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let body = json!({"tags": {"project": "owner/repo", "team": "web"}});
    let (status, answer) = start(&client, &server.base(), body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "active");
    let id = answer["session_id"].as_str().expect("id");
    assert!(agentapi_proxy::sessions::validate::is_session_id(id), "{id}");
    assert!(answer["started_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('.')));
    let port = answer["port"].as_u64().expect("port") as u16;
    // The very first call after 200 reaches the agent: no 502 window.
    let (code, agent) = get_json(&client, &format!("http://127.0.0.1:{port}/status")).await;
    assert_eq!(code, 200);
    assert!(matches!(agent["status"].as_str(), Some("running" | "stable")), "{agent}");

    let (code, search) = get_json(&client, &server.url("/search")).await;
    assert_eq!(code, 200);
    assert_eq!(search["total"], 1);
    let item = &search["sessions"][0];
    assert_eq!(item["session_id"], id);
    assert_eq!(item["user_id"], "anonymous");
    assert_eq!(item["status"], "active");
    assert_eq!(item["port"], port);
    assert_eq!(item["tags"], json!({"project": "owner/repo", "team": "web"}));

    let (code, detail) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(code, 200);
    assert_eq!(detail["session_id"], id);
    assert_eq!(detail["restarts"], 0);
    for always in ["exit_code", "exit_reason", "ended_at", "agent_status", "initial_message"] {
        assert!(detail.get(always).is_some(), "{always} missing from a live detail: {detail}");
    }
    assert_eq!((&detail["exit_code"], &detail["ended_at"]), (&Value::Null, &Value::Null));
    assert!(item.get("exit_code").is_none(), "a live search item shows no exit fields");

    // The log keeper writes the agent's output as it comes: on a loaded machine the line
    // may reach the file a moment after the agent answered.
    let logs_url = server.url(&format!("/sessions/{id}/logs?tail=5"));
    wait_until("the agent's first line in its log", Duration::from_secs(10), || {
        let (client, url) = (client.clone(), logs_url.clone());
        async move {
            let logs = client.get(url).send().await.expect("logs");
            assert_eq!(logs.status(), 200);
            let text_plain =
                logs.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain");
            assert!(text_plain, "logs are plain text");
            logs.text().await.expect("text").contains("echo-agent listening").then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn wait_false_answers_at_once_with_starting_and_the_session_becomes_active() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let response =
        client.post(server.url("/start?wait=false")).json(&json!({})).send().await.expect("start");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["status"], "starting");
    let id = answer["session_id"].as_str().expect("id").to_string();
    let base = server.base();
    wait_until("the session to become active", Duration::from_secs(20), || {
        let (client, base, id) = (client.clone(), base.clone(), id.clone());
        async move {
            (session_status(&client, &base, &id).await.as_deref() == Some("active")).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn search_filters_by_status_user_and_tags_and_pages_newest_first() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let base = server.base();
    let mut ids = Vec::new();
    for team in ["web", "web", "data"] {
        ids.push(start_ok(&client, &base, json!({"tags": {"team": team}})).await.0);
    }
    let ids_of = |body: &Value| -> Vec<String> {
        body["sessions"]
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s["session_id"].as_str().expect("id").to_string())
            .collect()
    };
    let (_, all) = get_json(&client, &server.url("/search")).await;
    assert_eq!(ids_of(&all), vec![ids[2].clone(), ids[1].clone(), ids[0].clone()], "newest first");
    let (_, web) = get_json(&client, &server.url("/search?tag.team=web")).await;
    assert_eq!(
        (ids_of(&web), web["total"].clone()),
        (vec![ids[1].clone(), ids[0].clone()], json!(2))
    );
    let (_, page) = get_json(&client, &server.url("/search?limit=1&offset=1")).await;
    assert_eq!((ids_of(&page), page["total"].clone()), (vec![ids[1].clone()], json!(3)));
    let (_, nobody) = get_json(&client, &server.url("/search?user_id=someone-else")).await;
    assert_eq!(nobody, json!({"sessions": [], "total": 0}));
    let (_, exited) = get_json(&client, &server.url("/search?status=exited")).await;
    assert_eq!(exited["total"], 0);
    let (code, bad) = get_json(&client, &server.url("/search?status=sleeping")).await;
    assert_eq!((code, bad["code"].as_str()), (400, Some("invalid_request")));
    let (code, _) = get_json(&client, &server.url("/search?limit=99999")).await;
    assert_eq!(code, 200, "a huge limit is clamped, not refused");
}

#[tokio::test]
async fn delete_stops_the_agent_group_and_removes_the_session() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let (id, port) = start_ok(&client, &server.base(), json!({})).await;
    let pid = agent_debug_env(&client, port).await["pid"].as_i64().expect("pid") as i32;
    assert!(!group_gone(pid));
    let url = server.url(&format!("/sessions/{id}"));
    // Concurrent deletes share one stop and all succeed.
    let (first, second) = tokio::join!(client.delete(&url).send(), client.delete(&url).send());
    for response in [first.expect("first"), second.expect("second")] {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            body,
            json!({"message": "Session terminated successfully", "session_id": id, "status": "terminated"})
        );
    }
    assert!(group_gone(pid), "the group is gone when DELETE answers");
    let again = client.delete(&url).send().await.expect("third");
    assert_eq!(again.status(), 404);
    let (_, search) = get_json(&client, &server.url("/search")).await;
    assert_eq!(search["total"], 0);
    assert!(!server.dir.path().join("data/sessions").join(&id).exists(), "session dir removed");
}

#[tokio::test]
async fn an_agent_that_ignores_sigterm_and_has_a_child_is_killed_after_the_grace_period() {
    let server = TestServer::start(|config| config.session.stop_grace_seconds = 1).await;
    let client = reqwest::Client::new();
    let env = json!({"ECHO_AGENT_IGNORE_SIGTERM": "1", "ECHO_AGENT_SPAWN_GRANDCHILD": "1"});
    let (id, port) = start_ok(&client, &server.base(), json!({"environment": env})).await;
    let pid = agent_debug_env(&client, port).await["pid"].as_i64().expect("pid") as i32;
    let members = wait_until("the grandchild to exist", Duration::from_secs(10), || async {
        let members = live_group_members(pid);
        (members.len() >= 2).then_some(members)
    })
    .await;
    let started = Instant::now();
    let response =
        client.delete(server.url(&format!("/sessions/{id}"))).send().await.expect("delete");
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    assert!(took >= Duration::from_millis(900), "waited the grace period: {took:?}");
    // The spec's deadline (grace + ε), with a generous margin.
    assert!(took < Duration::from_secs(1 + 10), "then forced: {took:?}");
    for member in members {
        assert!(!crate::support::sessions::process_alive(member), "{member} survived");
    }
}

#[tokio::test]
async fn strangers_ids_and_malformed_ids_are_404_before_any_lookup() {
    let server = TestServer::start(|_| {}).await;
    let client = reqwest::Client::new();
    let unknown = uuid::Uuid::new_v4().to_string();
    let upper = unknown.to_uppercase();
    let long = "a".repeat(10_000);
    for id in [unknown.as_str(), upper.as_str(), "..%2Fadmin", "not-a-uuid", long.as_str()] {
        for path in [format!("/sessions/{id}"), format!("/sessions/{id}/logs")] {
            let (code, body) = get_json(&client, &server.url(&path)).await;
            assert_eq!(code, 404, "{path}");
            assert_eq!(body, json!({"message": "no such session", "code": "not_found"}), "{path}");
        }
    }
}

#[tokio::test]
async fn capacity_and_per_user_quota_refuse_with_retry_after() {
    let server = TestServer::start(|config| {
        config.session.max_sessions = 2;
        config.session.max_sessions_per_user = 1;
    })
    .await;
    let client = reqwest::Client::new();
    start_ok(&client, &server.base(), json!({})).await;
    let response = client.post(server.url("/start")).json(&json!({})).send().await.expect("second");
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.json::<Value>().await.expect("json")["code"], "quota_exceeded");

    let server = TestServer::start(|config| config.session.max_sessions = 1).await;
    start_ok(&client, &server.base(), json!({})).await;
    let response = client.post(server.url("/start")).json(&json!({})).send().await.expect("second");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.json::<Value>().await.expect("json")["code"], "at_capacity");
}

#[tokio::test]
async fn a_port_taken_by_someone_else_is_skipped() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("occupy a port");
    let first = taken.local_addr().expect("addr").port();
    let next_free = std::net::TcpListener::bind(("127.0.0.1", first + 1)).is_ok();
    if !next_free || first >= 65_000 {
        return; // the neighbour port is in use on this host; nothing to prove here
    }
    let server = TestServer::start(|config| {
        config.start_port = first;
        config.end_port = first + 1;
    })
    .await;
    let client = reqwest::Client::new();
    let (_, port) = start_ok(&client, &server.base(), json!({})).await;
    assert_eq!(port, first + 1);
    drop(taken);
}

#[tokio::test]
async fn a_repository_that_cannot_be_cloned_fails_the_start_with_gits_message() {
    // Nothing listens on 127.0.0.1:1, so the clone fails at once without any network.
    let server =
        TestServer::start(|config| config.agent.repository_hosts = vec!["127.0.0.1:1".into()])
            .await;
    let client = reqwest::Client::new();
    let (status, answer) =
        start(&client, &server.base(), json!({"tags": {"repository": "owner/repo"}})).await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["code"], "agent_failed_to_start");
    let tail = answer["details"]["log_tail"].as_str().expect("log tail");
    assert!(tail.contains("owner/repo"), "{tail}");
    assert_ne!(answer["details"]["exit_code"], 0);
}

#[tokio::test]
async fn parallel_starts_never_exceed_the_cap_or_share_a_port() {
    const CAP: usize = 20;
    const ATTEMPTS: usize = 500;
    // Client and server share this process: make room for 2 × 500 sockets.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < 4096
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(4096), hard);
    }
    let server = TestServer::start(|config| config.session.max_sessions = CAP as u64).await;
    let client = reqwest::Client::new();
    let base = server.base();
    let attempts = (0..ATTEMPTS).map(|_| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let response = client
                .post(format!("{base}/start"))
                .json(&json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}}))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let ok: Vec<&Value> = results.iter().filter(|(code, _)| *code == 200).map(|(_, v)| v).collect();
    let refused =
        results.iter().filter(|(code, body)| *code == 503 && body["code"] == "at_capacity").count();
    assert_eq!(ok.len(), CAP, "{:?}", results.iter().map(|(c, _)| c).collect::<Vec<_>>());
    assert_eq!(refused, ATTEMPTS - CAP);
    let mut ports: Vec<u64> = ok.iter().map(|v| v["port"].as_u64().expect("port")).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), CAP, "no port handed out twice");
}
