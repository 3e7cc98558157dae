//! Two real proxy processes on one PostgreSQL with the Kubernetes backend (the fake API
//! server, whose kubelet runs echo agents both replicas reach): a session started on one is
//! found, proxied (SSE included) and deleted through the other, each sees the other's
//! changes within a second, a replica killed with SIGKILL hands its sessions to the other,
//! parallel starts over both never exceed `max_sessions` or a user's quota, and one replica
//! at a time runs the Slack bridge.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agentapi_proxy::config::Config;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::dashboard_events::Events;
use crate::dashboard_login::{cookie_client, cookie_for};
use crate::kubernetes::{NS, nothing_left, settings};
use crate::slack::{PATIENCE, count_posts, sessions_of_thread, slack_config, wait_for_post};
use crate::support::fake_kube::FakeKube;
use crate::support::fake_slack::{ALICE, CHANNEL, FakeSlack};
use crate::support::postgres::{self as test_postgres, TestDatabase};
use crate::support::server::BinaryServer;
use crate::support::sessions::{get_json, send_message, start};
use crate::support::{binary, key, wait_until};

/// Each replica must see the other's changes within this (scale-out.md §3).
const STALENESS: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(30);
/// Short leases, so a takeover is quick to test.
const LEASE_TTL_SECONDS: u64 = 3;

/// A fake cluster, one database, and the configuration both replicas share.
struct Shared {
    fake: FakeKube,
    database: TestDatabase,
    kubeconfig: String,
    _dir: tempfile::TempDir,
}

async fn shared() -> Option<Shared> {
    let database = test_postgres::database().await?;
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = fake.write_kubeconfig(dir.path(), NS).display().to_string();
    Some(Shared { fake, database, kubeconfig, _dir: dir })
}

impl Shared {
    async fn replica(&self, name: &str, adjust: impl FnOnce(&mut Config)) -> BinaryServer {
        let url = self.database.url.clone();
        let name = name.to_string();
        BinaryServer::start_with_env(
            move |config| {
                config.persistence.backend = "postgres".into();
                config.persistence.postgres_url = url;
                config.agent.backend = "kubernetes".into();
                config.kubernetes = settings();
                config.kubernetes.proxy_bin = binary().into();
                config.kubernetes.ready_timeout_seconds = 20;
                config.session.stop_grace_seconds = 1;
                config.server.replica_id = name;
                config.server.lease_ttl_seconds = LEASE_TTL_SECONDS;
                adjust(config);
            },
            &[("KUBECONFIG", &self.kubeconfig)],
        )
        .await
    }

    /// Who supervises the session, as its row says.
    async fn supervisor(&self, id: &str) -> Option<String> {
        self.database
            .connect()
            .await
            .query_opt("SELECT supervisor FROM sessions WHERE id = $1", &[&id])
            .await
            .expect("query")
            .and_then(|row| row.get(0))
    }
}

fn start_body() -> Value {
    json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}, "tags": {"team": "replicas"}})
}

async fn start_on(client: &reqwest::Client, server: &BinaryServer) -> String {
    let (code, answer) = start(client, &server.url(""), start_body()).await;
    assert_eq!(code, 200, "{answer}");
    answer["session_id"].as_str().expect("session_id").to_string()
}

/// Waits (at most `within`) until `server` answers `GET /sessions/{id}` with `code`; how long.
async fn until_code(
    client: &reqwest::Client,
    server: &BinaryServer,
    id: &str,
    code: u16,
    within: Duration,
) -> Duration {
    let began = Instant::now();
    let url = server.url(&format!("/sessions/{id}"));
    wait_until(&format!("GET {url} answers {code}"), within, || {
        let url = url.clone();
        let client = client.clone();
        async move { (get_json(&client, &url).await.0 == code).then_some(()) }
    })
    .await;
    began.elapsed()
}

async fn message(client: &reqwest::Client, server: &BinaryServer, id: &str, text: &str) -> u16 {
    send_message(client, &server.url(""), id, text).await
}

#[tokio::test]
async fn a_session_started_on_one_replica_is_found_proxied_and_deleted_through_the_other() {
    let Some(shared) = shared().await else { return };
    let a = shared.replica("replica-a", |_| {}).await;
    let b = shared.replica("replica-b", |_| {}).await;
    let client = reqwest::Client::new();

    let id = start_on(&client, &a).await;
    let began = Instant::now();
    let url = b.url(&format!("/sessions/{id}"));
    wait_until("B sees the session active", STALENESS, || async {
        let (_, detail) = get_json(&client, &url).await;
        (detail["status"] == "active").then_some(())
    })
    .await;
    eprintln!("B saw A's new session active after {:?}", began.elapsed());
    let (code, page) = get_json(&client, &b.url("/search?tag.team=replicas")).await;
    assert_eq!((code, page["total"].as_u64()), (200, Some(1)), "{page}");
    assert_eq!(shared.supervisor(&id).await.as_deref(), Some("replica-a"));

    // Through B: the event stream flows, and a message reaches the agent.
    let events = client.get(b.url(&format!("/{id}/events"))).send().await.expect("events");
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();
    assert!(stream.next().await.is_some_and(|chunk| chunk.is_ok()), "the stream flows via B");
    assert_eq!(message(&client, &b, &id, "hello from b").await, 200);
    let (code, messages) = get_json(&client, &b.url(&format!("/{id}/messages"))).await;
    assert_eq!(code, 200);
    assert!(messages.to_string().contains("hello from b"), "{messages}");
    // The message is visible through A too: the same agent.
    let (_, through_a) = get_json(&client, &a.url(&format!("/{id}/messages"))).await;
    assert!(through_a.to_string().contains("hello from b"), "{through_a}");

    // DELETE through B, which does not supervise it: the Pod goes, A forgets the session.
    let deleted = client.delete(b.url(&format!("/sessions/{id}"))).send().await.expect("DELETE");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let (code, _) = get_json(&client, &b.url(&format!("/sessions/{id}"))).await;
    assert_eq!(code, 404, "gone on B at once");
    let forgotten = until_code(&client, &a, &id, 404, STALENESS).await;
    eprintln!("A saw B's delete after {forgotten:?}");
    wait_until("nothing of the session is left in the cluster", WAIT, || async {
        nothing_left(&shared.fake).then_some(())
    })
    .await;
    assert!(a.logged("another replica"), "A let the session go");
    let (code, page) = get_json(&client, &a.url("/search?tag.team=replicas")).await;
    assert_eq!((code, page["total"].as_u64()), (200, Some(0)), "{page}");

    // How a session ended shows on every replica, the cluster's reason included.
    let evicted = start_on(&client, &a).await;
    shared.fake.evict(NS, &format!("apx-{evicted}")).await;
    let url = b.url(&format!("/sessions/{evicted}"));
    let detail = wait_until("B shows the eviction A recorded", WAIT, || async {
        let (_, detail) = get_json(&client, &url).await;
        (detail["status"] == "exited").then_some(detail)
    })
    .await;
    assert_eq!(detail["exit_details"]["reason"], "Evicted", "{detail}");
}

#[tokio::test]
async fn a_replica_killed_with_sigkill_hands_its_sessions_to_the_other() {
    let Some(shared) = shared().await else { return };
    let a = shared.replica("replica-a", |_| {}).await;
    let b = shared.replica("replica-b", |_| {}).await;
    let client = reqwest::Client::new();
    let id = start_on(&client, &a).await;
    assert_eq!(shared.supervisor(&id).await.as_deref(), Some("replica-a"));
    until_code(&client, &b, &id, 200, STALENESS).await;

    let killed = Instant::now();
    let _ = a.kill9().await;
    let limit = Duration::from_secs(LEASE_TTL_SECONDS * 3);
    wait_until("B takes the lease", limit, || async {
        (shared.supervisor(&id).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    eprintln!("B took the session {:?} after A died", killed.elapsed());
    let (_, detail) = get_json(&client, &b.url(&format!("/sessions/{id}"))).await;
    assert_eq!(detail["status"], "active", "re-adopted, not ended: {detail}");
    assert_eq!(message(&client, &b, &id, "still here").await, 200);

    // B supervises it now: the Pod's eviction is noticed and recorded by B.
    shared.fake.evict(NS, &format!("apx-{id}")).await;
    wait_until("B records the eviction", WAIT, || async {
        let (_, detail) = get_json(&client, &b.url(&format!("/sessions/{id}"))).await;
        (detail["status"] == "exited").then_some(detail)
    })
    .await;
}

#[tokio::test]
async fn fifty_parallel_starts_over_two_replicas_never_exceed_the_limits() {
    let Some(shared) = shared().await else { return };
    let users = ["ap_ann_0123456789abcdef", "ap_ben_0123456789abcdef", "ap_cat_0123456789abcdef"];
    let keys = |config: &mut Config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.api_keys = users
            .iter()
            .zip(["ann", "ben", "cat"])
            .map(|(secret, user)| key(secret, user, "user", &["session:create", "session:list"]))
            .collect();
        config.session.max_sessions = 10;
        config.session.max_sessions_per_user = 4;
    };
    let a = shared.replica("replica-a", keys).await;
    let b = shared.replica("replica-b", keys).await;
    let client = reqwest::Client::new();
    let starts = (0..50).map(|n| {
        let server = if n % 2 == 0 { a.url("/start") } else { b.url("/start") };
        let secret = users[n % users.len()];
        let client = client.clone();
        async move {
            let response = client
                .post(server)
                .header("X-API-Key", secret)
                .json(&json!({"environment": {"ECHO_AGENT_BOOT_MS": "0"}}))
                .query(&[("wait", "false")])
                .send()
                .await
                .expect("POST /start");
            response.status().as_u16()
        }
    });
    let codes = futures_util::future::join_all(starts).await;
    let accepted = codes.iter().filter(|code| **code == 200 || **code == 202).count();
    let refused = codes.iter().filter(|code| **code == 429 || **code == 503).count();
    assert_eq!(accepted + refused, 50, "only admissions and refusals: {codes:?}");
    let rows = shared
        .database
        .connect()
        .await
        .query("SELECT user_id, status FROM sessions", &[])
        .await
        .expect("rows");
    let mut per_user: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        *per_user.entry(row.get::<_, String>(0)).or_default() += 1;
    }
    assert_eq!(rows.len(), accepted, "every admitted start has a row, no other");
    assert_eq!(accepted, 10, "exactly max_sessions admitted (3 users × 4 ≥ 10): {per_user:?}");
    assert!(per_user.values().all(|count| *count <= 4), "nobody over quota: {per_user:?}");
}

#[tokio::test]
async fn one_replica_runs_the_slack_bridge_and_the_other_takes_it_over_after_sigkill() {
    let Some(shared) = shared().await else { return };
    let slack = FakeSlack::start(PATIENCE).await;
    let a = shared.replica("replica-a", |config| slack_config(config, &slack)).await;
    let b = shared.replica("replica-b", |config| slack_config(config, &slack)).await;
    const LEADS: &str = "this replica leads the Slack bridge";
    wait_until("a replica leads the bridge", PATIENCE, || async {
        (a.logged(LEADS) || b.logged(LEADS)).then_some(())
    })
    .await;
    let mention = slack.inject_mention(ALICE, CHANNEL, "hello", None);
    let root = mention.ts.clone();
    wait_for_post(&slack, CHANNEL, &root, "the echo", |post| post.text == "echo: hello").await;
    assert_eq!(slack.open_connections(), 1, "only the leader holds a Socket Mode connection");
    assert!(a.logged(LEADS) != b.logged(LEADS), "exactly one replica leads");

    let (leader, follower) = if a.logged(LEADS) { (a, b) } else { (b, a) };
    let _ = leader.kill9().await;
    wait_until("the other replica leads the bridge", PATIENCE, || async {
        (follower.logged(LEADS) && slack.open_connections() == 1).then_some(())
    })
    .await;
    let next = slack.thread_message(ALICE, CHANNEL, &root, "after the failover");
    slack.send(&next);
    wait_for_post(&slack, CHANNEL, &root, "the echo after the failover", |post| {
        post.text == "echo: alice: after the failover"
    })
    .await;
    assert_eq!(count_posts(&slack, CHANNEL, &root, "echo: hello"), 1, "answered once");
    let base = follower.url("");
    assert_eq!(sessions_of_thread(&base, &root).await.len(), 1, "the thread kept its session");
}

#[tokio::test]
async fn the_dashboard_stream_and_sign_outs_reach_across_replicas() {
    let Some(shared) = shared().await else { return };
    const ALICE_KEY: &str = "ap_alice_replicas_0123456789";
    let keys = |config: &mut Config| {
        config.auth.enabled = true;
        config.auth.static_keys.enabled = true;
        config.auth.static_keys.api_keys = vec![key(ALICE_KEY, "alice", "user", &["*"])];
    };
    let a = shared.replica("replica-a", keys).await;
    let b = shared.replica("replica-b", keys).await;
    let cookie = cookie_for(&a.url(""), ALICE_KEY).await;
    let browser = cookie_client(&cookie);
    let mut events = Events::open(&browser, &a.url("")).await;
    events.replay().await;

    // A session started through B shows on A's stream.
    let started = reqwest::Client::new()
        .post(b.url("/start"))
        .header("X-API-Key", ALICE_KEY)
        .json(&start_body())
        .send()
        .await
        .expect("POST /start");
    assert_eq!(started.status().as_u16(), 200);
    let started: Value = started.json().await.expect("JSON");
    let id = started["session_id"].as_str().expect("id").to_string();
    let (_, change) = tokio::time::timeout(WAIT, events.next_of(&id)).await.expect("in time");
    assert_eq!(change["user_id"], "alice", "{change}");

    // Signing out through B ends the stream open on A.
    let began = Instant::now();
    let response = browser
        .post(b.url("/auth/logout"))
        .header("X-Requested-With", "fetch")
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status().as_u16(), 204);
    assert!(events.ends_within(Duration::from_secs(2)).await, "A's stream outlived the sign-out");
    eprintln!("A's stream ended {:?} after the sign-out on B", began.elapsed());
}

#[tokio::test]
async fn traffic_through_the_other_replica_keeps_a_session_from_its_idle_timeout() {
    let Some(shared) = shared().await else { return };
    let idle = Duration::from_secs(2);
    let with_idle = |config: &mut Config| config.session.idle_timeout_seconds = idle.as_secs();
    let a = shared.replica("replica-a", with_idle).await;
    let b = shared.replica("replica-b", with_idle).await;
    let client = reqwest::Client::new();
    let id = start_on(&client, &a).await;
    let on_b = b.url(&format!("/sessions/{id}"));
    wait_until("B sees the session active", STALENESS, || async {
        (get_json(&client, &on_b).await.1["status"] == "active").then_some(())
    })
    .await;
    let on_a = a.url(&format!("/sessions/{id}"));
    let status_on_a = |wanted: fn(&Value) -> bool| {
        let (url, client) = (on_a.clone(), client.clone());
        async move {
            let (_, detail) = get_json(&client, &url).await;
            wanted(&detail["status"]).then_some(detail)
        }
    };

    // A stream held open through B for three idle timeouts: A, which supervises the session
    // and sees no traffic itself, keeps it.
    let events = client.get(b.url(&format!("/{id}/events"))).send().await.expect("events");
    assert_eq!(events.status(), 200);
    let ended = tokio::time::timeout(idle * 3, async {
        loop {
            if let Some(detail) = status_on_a(|status| status != "active").await {
                return detail;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(ended.is_err(), "ended while a stream was open through B: {ended:?}");

    // Once the stream closes, the idle timeout ends it.
    drop(events);
    let detail =
        wait_until("the idle timeout", WAIT, || status_on_a(|status| status == "exited")).await;
    assert_eq!(detail["exit_reason"], "idle_timeout", "{detail}");
}
