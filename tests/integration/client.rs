//! The Rust client crate against a real server with echo agents: every method, the event
//! stream, send-and-wait, and typed errors.

use std::time::Duration;

use agentapi_proxy::config::{ApiKeyEntry, Config};
use agentapi_proxy_client::{
    AgentEvent, Client, Error, MessageType, SearchQuery, SessionStatus, StartRequest,
    StartWithProfile,
};
use futures_util::StreamExt;
use serde_json::json;

use crate::support::server::TestServer;

const KEY: &str = "ap_client_test_key";

fn with_key(config: &mut Config) {
    config.auth.enabled = true;
    config.auth.static_keys.enabled = true;
    config.auth.static_keys.api_keys = vec![ApiKeyEntry {
        key: Some(KEY.into()),
        user_id: "carol".into(),
        role: "user".into(),
        permissions: vec!["*".into()],
        ..ApiKeyEntry::default()
    }];
    config.session.max_sessions_per_user = 2;
}

fn client(server: &TestServer) -> Client {
    Client::builder(server.base()).api_key(KEY).build().expect("client")
}

fn quick_agent() -> StartRequest {
    StartRequest {
        environment: [("ECHO_AGENT_BOOT_MS".to_string(), "0".to_string())].into(),
        tags: [("team".to_string(), "web".to_string())].into(),
        message: None,
    }
}

#[tokio::test]
async fn sessions_can_be_started_found_read_and_deleted() {
    let server = TestServer::start(with_key).await;
    let client = client(&server);
    assert_eq!(client.auth_status().await.expect("whoami").user_id, "carol");
    let bearer = Client::builder(server.base()).bearer_token(KEY).build().expect("client");
    assert_eq!(bearer.auth_status().await.expect("whoami").auth_type, "api_key");

    let started = client.start(&quick_agent(), true).await.expect("start");
    assert_eq!(started.status, SessionStatus::Active);
    let later = client.start(&StartRequest::default(), false).await.expect("start without waiting");
    assert_eq!(later.status, SessionStatus::Starting);

    let found = client
        .search(&SearchQuery {
            tags: vec![("team".into(), "web".into())],
            ..SearchQuery::default()
        })
        .await
        .expect("search");
    assert_eq!(found.total, 1);
    assert_eq!(found.sessions[0].session_id, started.session_id);
    let all = client
        .search(&SearchQuery { limit: Some(1), ..SearchQuery::default() })
        .await
        .expect("search");
    assert_eq!((all.total, all.sessions.len()), (2, 1));

    let detail = client.session(&started.session_id).await.expect("detail");
    assert_eq!(detail.summary.user_id, "carol");
    assert!(client.logs(&started.session_id, Some(10)).await.expect("logs").contains("listening"));
    let deleted = client.delete(&started.session_id).await.expect("delete");
    assert_eq!(deleted.status, "terminated");
    client.delete(&later.session_id).await.expect("delete the other");
}

#[tokio::test]
async fn the_agent_api_works_through_the_proxy_including_events_and_send_and_wait() {
    let server = TestServer::start(with_key).await;
    let client = client(&server);
    let started = client.start(&quick_agent(), true).await.expect("start");
    let agent = client.agent(&started.session_id);
    agent.wait_until_stable().await.expect("stable");
    assert!(agent.status().await.expect("status").is_stable());

    let mut events = agent.events().await.expect("events");
    let reply = agent.send_and_wait("hello there", Duration::from_secs(20)).await.expect("reply");
    assert_eq!((reply.role.as_str(), reply.content.as_str()), ("agent", "echo: hello there"));

    // The stream opened earlier saw the replay, then the live exchange.
    let mut saw_reply = false;
    let mut saw_stable_after = false;
    while let Some(event) =
        tokio::time::timeout(Duration::from_secs(10), events.next()).await.expect("event")
    {
        match event.expect("typed event") {
            AgentEvent::MessageUpdate { message, .. } if message == "echo: hello there" => {
                saw_reply = true
            }
            AgentEvent::StatusChange { status, .. } if saw_reply && status == "stable" => {
                saw_stable_after = true;
                break;
            }
            _ => {}
        }
    }
    assert!(saw_reply && saw_stable_after);

    let messages = agent.messages().await.expect("messages");
    assert!(messages.iter().any(|m| m.role == "user" && m.content == "hello there"));
    agent.send_message("keys", MessageType::Raw).await.expect("raw message");
    let uploaded = agent.upload("notes.txt", b"hello file".to_vec()).await.expect("upload");
    assert_eq!(std::fs::read(&uploaded.file_path).expect("uploaded file"), b"hello file");

    // The agent exits: the open stream reports the disconnect.
    let mut events = agent.events().await.expect("events");
    agent.send_message("/fake exit 0", MessageType::User).await.expect("exit");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if let Err(Error::Disconnected) = event {
                return true;
            }
        }
        false
    })
    .await
    .expect("stream ends");
    assert!(ended);
}

#[tokio::test]
async fn errors_carry_the_servers_status_code_and_message() {
    let server = TestServer::start(with_key).await;
    let anonymous = Client::builder(server.base()).build().expect("client");
    let error = anonymous.search(&SearchQuery::default()).await.expect_err("401");
    assert_eq!((error.status(), error.code()), (Some(401), Some("unauthenticated")));

    let client = client(&server);
    let error = client.session(&uuid_v4()).await.expect_err("404");
    assert_eq!((error.status(), error.code()), (Some(404), Some("not_found")));

    let first = client.start(&quick_agent(), true).await.expect("first");
    client.start(&quick_agent(), true).await.expect("second");
    let error = client.start(&quick_agent(), true).await.expect_err("429");
    assert_eq!((error.status(), error.code()), (Some(429), Some("quota_exceeded")));

    let agent = client.agent(&first.session_id);
    agent.wait_until_stable().await.expect("stable");
    agent.send_message("/fake exit 0", MessageType::User).await.expect("exit");
    let error = crate::support::wait_until(
        "the exited agent to be refused",
        Duration::from_secs(10),
        || async { agent.status().await.err() },
    )
    .await;
    assert_eq!((error.status(), error.code()), (Some(502), Some("agent_unavailable")));

    let agent = client.agent(uuid_v4());
    assert_eq!(agent.messages().await.expect_err("404").status(), Some(404));
}

#[tokio::test]
async fn profiles_are_managed_and_used_to_start_sessions() {
    let server = TestServer::start(with_key).await;
    let client = client(&server);
    let created = client
        .create_profile(
            &json!({"name": "Base", "environment": {"ECHO_AGENT_BOOT_MS": "0", "API_TOKEN": "s"}}),
        )
        .await
        .expect("create");
    let id = created.profile.id.clone();
    assert_eq!(created.profile.environment["API_TOKEN"], "<redacted>");
    client.update_profile(&id, &json!({"description": "updated"})).await.expect("update");
    client.add_profile_repository(&id, &json!({"url": "owner/repo"})).await.expect("repository");
    client
        .add_profile_template(&id, &json!({"name": "Hi", "content": "Hello {{who}}"}))
        .await
        .expect("template");
    let read = client.profile(&id).await.expect("read").profile;
    assert_eq!(read.description, "updated");
    assert_eq!(read.repository_history.len(), 1);
    assert_eq!(client.profiles().await.expect("list").total, 1);

    let request = StartWithProfile {
        profile_id: id.clone(),
        template_id: Some("Hi".into()),
        template_variables: [("who".to_string(), "world".to_string())].into(),
        ..StartWithProfile::default()
    };
    let started = client.start_with_profile(&request).await.expect("start with profile");
    assert_eq!(started.status, SessionStatus::Active);
    client.delete(&started.session_id).await.expect("delete session");
    client.delete_profile(&id).await.expect("delete profile");
    assert_eq!(client.profile(&id).await.expect_err("gone").status(), Some(404));
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}
