//! The real proxy binary with `agent.backend: "kubernetes"` against the fake API server
//! (support/fake_kube): sessions are Pods whose echo agents the fake's kubelet runs, reached
//! through the Service's cluster IP, so starting, proxying (messages and SSE), stopping,
//! failures, recovery and an unreachable API server are all exercised end to end.

use std::time::{Duration, Instant};

use agentapi_proxy::config::Config;
use agentapi_proxy::sessions::kubernetes::KubernetesBackend;
use agentapi_proxy::sessions::kubernetes::names::INSTALLATION_LABEL;
use serde_json::{Value, json};

use crate::kubernetes::{IMAGE, NS, names_of, nothing_left, request, session_id, settings};
use crate::support::fake_kube::FakeKube;
use crate::support::fake_kube::store::Resource;
use crate::support::server::BinaryServer;
use crate::support::sessions::{get_json, send_message, start};
use crate::support::{binary, wait_until};

const WAIT: Duration = Duration::from_secs(20);
const SECRET_VALUE: &str = "a-secret-value-0xC0FFEE";

/// A fake cluster and the kubeconfig a proxy process reaches it with.
struct Cluster {
    fake: FakeKube,
    kubeconfig: String,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = fake.write_kubeconfig(dir.path(), NS).display().to_string();
    Cluster { fake, kubeconfig, _dir: dir }
}

fn use_kubernetes(config: &mut Config) {
    config.agent.backend = "kubernetes".into();
    config.kubernetes = settings();
    config.kubernetes.proxy_bin = binary().into();
    config.kubernetes.ready_timeout_seconds = 20;
    config.session.stop_grace_seconds = 1;
}

async fn proxy_on(cluster: &Cluster) -> BinaryServer {
    BinaryServer::start_with_env(use_kubernetes, &[("KUBECONFIG", &cluster.kubeconfig)]).await
}

fn start_body() -> Value {
    json!({"environment": {"GREETING": SECRET_VALUE, "ECHO_AGENT_BOOT_MS": "0"}})
}

/// Starts a session that must become active; its id.
async fn started(client: &reqwest::Client, base: &str) -> String {
    let (code, answer) = start(client, base, start_body()).await;
    assert_eq!(code, 200, "{answer}");
    answer["session_id"].as_str().expect("session_id").to_string()
}

async fn session(client: &reqwest::Client, server: &BinaryServer, id: &str) -> Value {
    get_json(client, &server.url(&format!("/sessions/{id}"))).await.1
}

async fn message(client: &reqwest::Client, server: &BinaryServer, id: &str, text: &str) -> u16 {
    send_message(client, &server.url(""), id, text).await
}

fn pod_name(id: &str) -> String {
    format!("apx-{id}")
}

fn pod_ready(fake: &FakeKube, id: &str) -> bool {
    fake.get(Resource::Pods, NS, &pod_name(id)).is_some_and(|pod| {
        pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
    })
}

#[tokio::test]
async fn a_session_is_a_pod_reached_through_the_proxy_and_delete_leaves_nothing() {
    let cluster = cluster().await;
    let server = proxy_on(&cluster).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let (code, answer) = start(&client, &base, start_body()).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["port"], 3284, "the endpoint's port: the agent port");
    let id = answer["session_id"].as_str().expect("session_id").to_string();
    assert!(pod_ready(&cluster.fake, &id), "active only once the Pod is Ready");
    let detail = session(&client, &server, &id).await;
    assert_eq!(detail["status"], "active");
    assert!(detail["exit_details"].is_null(), "{detail}");
    let name = pod_name(&id);
    for resource in [Resource::Secrets, Resource::Pods, Resource::Services] {
        assert_eq!(names_of(&cluster.fake, resource), [name.as_str()], "{resource:?}");
    }
    let pod = cluster.fake.get(Resource::Pods, NS, &name).expect("the Pod");
    assert!(!pod.to_string().contains(SECRET_VALUE), "no environment value in the Pod spec");
    let secret = cluster.fake.get(Resource::Secrets, NS, &name).expect("the Secret");
    assert!(secret["data"]["GREETING"].is_string(), "the value is in the Secret: {secret}");
    assert!(secret["data"].get("PATH").is_none(), "no host PATH in the Pod: {secret}");

    // The event stream and messages pass through the proxy to the Pod.
    let events = client.get(server.url(&format!("/{id}/events"))).send().await.expect("events");
    assert_eq!(events.status(), 200);
    let mut stream = events.bytes_stream();
    use futures_util::StreamExt;
    assert!(stream.next().await.is_some_and(|chunk| chunk.is_ok()), "the stream flows");
    assert_eq!(message(&client, &server, &id, "hello pod").await, 200);
    let (code, messages) = get_json(&client, &server.url(&format!("/{id}/messages"))).await;
    assert_eq!(code, 200);
    assert!(messages.to_string().contains("hello pod"), "{messages}");
    let env = get_json(&client, &server.url(&format!("/{id}/debug/env"))).await.1;
    let seen = env.to_string();
    assert!(seen.contains(SECRET_VALUE), "the agent got the value from the Secret: {seen}");

    let logs = client.get(server.url(&format!("/sessions/{id}/logs?tail=5"))).send().await;
    let logs = logs.expect("logs");
    assert_eq!(logs.status(), 200);
    let text = logs.text().await.expect("text");
    assert!(text.contains("echo-agent listening on"), "the Pod's container log: {text}");

    let response =
        client.delete(server.url(&format!("/sessions/{id}"))).send().await.expect("delete");
    assert_eq!(response.status(), 200);
    assert!(names_of(&cluster.fake, Resource::Pods).is_empty(), "DELETE waited for the Pod");
    assert!(names_of(&cluster.fake, Resource::Services).is_empty());
    wait_until("every object of the session to be gone", WAIT, || async {
        nothing_left(&cluster.fake).then_some(())
    })
    .await;
    drop(stream);
    let (status, _, _) = server.stop().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn pods_that_cannot_start_fail_the_session_with_the_clusters_reason() {
    let cluster = cluster().await;
    let server = proxy_on(&cluster).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    cluster.fake.fail_image_pull(IMAGE);
    let (code, answer) = start(&client, &base, start_body()).await;
    assert_eq!((code, answer["code"].as_str()), (502, Some("agent_failed_to_start")), "{answer}");
    assert_eq!(answer["details"]["reason"], "ImagePullBackOff", "{answer}");
    wait_until("the failed Pod's objects to be deleted", WAIT, || async {
        nothing_left(&cluster.fake).then_some(())
    })
    .await;

    cluster.fake.cluster().knobs().failing_images.clear();
    cluster.fake.set_unschedulable(true);
    let (code, answer) = start(&client, &base, start_body()).await;
    assert_eq!(code, 502, "{answer}");
    assert_eq!(answer["details"]["reason"], "Unschedulable", "{answer}");
    let (_, search) = get_json(&client, &server.url("/search")).await;
    let sessions = search["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{search}");
    let mut reasons = Vec::new();
    for listed in sessions {
        let id = listed["session_id"].as_str().expect("id");
        let detail = session(&client, &server, id).await;
        reasons.push(detail["exit_details"]["reason"].as_str().unwrap_or_default().to_string());
        assert_eq!(
            (listed["status"].as_str(), listed["exit_reason"].as_str()),
            (Some("failed"), Some("start_failed")),
            "{listed}"
        );
    }
    reasons.sort();
    assert_eq!(reasons, ["ImagePullBackOff", "Unschedulable"], "shown in /sessions/{{id}}");
}

#[tokio::test]
async fn an_evicted_pod_ends_its_session_with_the_reason() {
    let cluster = cluster().await;
    let server = proxy_on(&cluster).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let id = started(&client, &base).await;
    cluster.fake.evict(NS, &pod_name(&id)).await;
    let ended = wait_until("the session to end", WAIT, || async {
        let detail = session(&client, &server, &id).await;
        (detail["status"] == "exited").then_some(detail)
    })
    .await;
    assert_eq!(ended["exit_reason"], "agent_exited", "{ended}");
    assert_eq!(ended["exit_details"]["reason"], "Evicted", "{ended}");
    wait_until("the reason in the log too", WAIT, || async {
        server.logged("Evicted").then_some(())
    })
    .await;
    wait_until("the evicted session's objects to be deleted", WAIT, || async {
        nothing_left(&cluster.fake).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_restarted_proxy_re_adopts_live_pods_ends_lost_ones_and_deletes_orphans() {
    let cluster = cluster().await;
    let server = proxy_on(&cluster).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (code, answer) = start(&client, &base, start_body()).await;
        assert_eq!(code, 200, "{answer}");
        ids.push(answer["session_id"].as_str().expect("id").to_string());
    }
    let (survivor, lost) = (ids[0].clone(), ids[1].clone());
    assert_eq!(message(&client, &server, &survivor, "remember me").await, 200);
    let survivor_uid =
        cluster.fake.get(Resource::Pods, NS, &pod_name(&survivor)).expect("pod")["metadata"]["uid"]
            .clone();
    let (dir, config_path) = server.kill9().await;

    // While the proxy is down: one Pod is evicted, and a Pod no row knows appears.
    cluster.fake.evict(NS, &pod_name(&lost)).await;
    let engine = KubernetesBackend::connect_with_kubeconfig(
        &settings(),
        std::path::Path::new(&cluster.kubeconfig),
    )
    .await
    .expect("engine");
    let orphan = session_id(77);
    engine.launch(&request(&orphan)).await.expect("an orphan's objects");
    // Another installation's session in the same namespace is none of this proxy's business.
    let mut other_installation = settings();
    other_installation.labels.insert(INSTALLATION_LABEL.into(), "another-installation".into());
    let other_engine = KubernetesBackend::connect_with_kubeconfig(
        &other_installation,
        std::path::Path::new(&cluster.kubeconfig),
    )
    .await
    .expect("engine");
    let foreign = session_id(78);
    other_engine.launch(&request(&foreign)).await.expect("another installation's objects");

    let server =
        BinaryServer::launch(dir, config_path, &[("KUBECONFIG", &cluster.kubeconfig)]).await;
    let kept = session(&client, &server, &survivor).await;
    assert_eq!(kept["status"], "active", "{kept}");
    let pod = cluster.fake.get(Resource::Pods, NS, &pod_name(&survivor)).expect("same pod");
    assert_eq!(pod["metadata"]["uid"], survivor_uid, "the same Pod, not a new one");
    let installation = pod["metadata"]["labels"][INSTALLATION_LABEL].as_str().unwrap_or_default();
    assert_eq!(installation.len(), 32, "the Pod names its installation: {pod}");
    let (_, messages) = get_json(&client, &server.url(&format!("/{survivor}/messages"))).await;
    assert!(messages.to_string().contains("remember me"), "{messages}");
    let gone = session(&client, &server, &lost).await;
    assert_eq!(
        (gone["status"].as_str(), gone["exit_reason"].as_str()),
        (Some("exited"), Some("lost_while_down")),
        "{gone}"
    );
    let mut left = vec![pod_name(&survivor), pod_name(&foreign)];
    left.sort();
    wait_until("the orphan's and the lost session's Pods to be deleted", WAIT, || async {
        let mut pods = names_of(&cluster.fake, Resource::Pods);
        pods.sort();
        (pods == left).then_some(())
    })
    .await;
    assert!(
        !names_of(&cluster.fake, Resource::Services).contains(&pod_name(&orphan)),
        "the orphan's Service went with it"
    );
    let response =
        client.delete(server.url(&format!("/sessions/{survivor}"))).send().await.expect("delete");
    assert_eq!(response.status(), 200, "the adopted session is under control again");
    assert_eq!(names_of(&cluster.fake, Resource::Pods), [pod_name(&foreign)], "never touched");
    let labels = cluster.fake.get(Resource::Pods, NS, &pod_name(&foreign)).expect("pod");
    assert_eq!(labels["metadata"]["labels"][INSTALLATION_LABEL], "another-installation");
}

#[tokio::test]
async fn an_unreachable_api_server_refuses_starts_while_sessions_keep_proxying_and_stopping() {
    let cluster = cluster().await;
    let server = proxy_on(&cluster).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let id = started(&client, &base).await;

    cluster.fake.go_down();
    let response = client.post(format!("{base}/start")).json(&start_body()).send().await;
    let response = response.expect("an answer");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "backend_unavailable", "{body}");
    assert_eq!(message(&client, &server, &id, "still here").await, 200);
    assert_eq!(session(&client, &server, &id).await["status"], "active");

    // A DELETE meanwhile waits for the API server (within grace + 30 s) instead of leaving
    // the Pod behind.
    let url = server.url(&format!("/sessions/{id}"));
    let deleting = tokio::spawn({
        let client = client.clone();
        async move { client.delete(url).send().await.map(|answer| answer.status().as_u16()) }
    });
    wait_until("the stop to wait for the API server", WAIT, || async {
        server.logged("retrying the stop of a session's Pod").then_some(())
    })
    .await;
    cluster.fake.come_back().await;
    assert_eq!(deleting.await.expect("joined").expect("an answer"), 200);
    assert!(names_of(&cluster.fake, Resource::Pods).is_empty(), "the Pod is gone");

    let (code, answer) = start(&client, &base, start_body()).await;
    assert_eq!(code, 200, "starts work again once the API server is back: {answer}");
}

#[tokio::test]
async fn a_stop_the_api_server_never_allows_answers_504_and_the_session_stays_stopping() {
    let cluster = cluster().await;
    let server = proxy_on(&cluster).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let id = started(&client, &base).await;

    cluster.fake.go_down();
    let began = std::time::Instant::now();
    let response = client
        .delete(server.url(&format!("/sessions/{id}")))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("an answer");
    let waited = began.elapsed();
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], "stop_timeout", "{body}");
    // Bounded by the grace (1 s) + 30 s, and not given up long before.
    assert!(waited >= Duration::from_secs(30) && waited < Duration::from_secs(40), "{waited:?}");
    assert_eq!(session(&client, &server, &id).await["status"], "stopping");
    assert!(pod_ready(&cluster.fake, &id), "the Pod was never deleted");

    cluster.fake.come_back().await;
    let again = client.delete(server.url(&format!("/sessions/{id}"))).send().await;
    assert_eq!(again.expect("an answer").status().as_u16(), 200, "a DELETE again completes");
    let (code, _) = get_json(&client, &server.url(&format!("/sessions/{id}"))).await;
    assert_eq!(code, 404);
    wait_until("nothing of the session is left", WAIT, || async {
        nothing_left(&cluster.fake).then_some(())
    })
    .await;
}

/// `/start` p50 with the fake cluster beside the local backend's, same harness and run.
#[tokio::test]
async fn start_p50_against_the_fake_beside_the_local_backend() {
    const STARTS: usize = 9;
    let cluster = cluster().await;
    let kube = proxy_on(&cluster).await;
    let local = BinaryServer::start(|config| config.session.stop_grace_seconds = 1).await;
    let client = reqwest::Client::new();
    let mut p50 = Vec::new();
    for server in [&kube, &local] {
        let base = format!("http://{}", server.address);
        let mut took = Vec::new();
        for _ in 0..STARTS {
            let begun = Instant::now();
            let (code, answer) = start(&client, &base, start_body()).await;
            took.push(begun.elapsed());
            assert_eq!(code, 200, "{answer}");
            let id = answer["session_id"].as_str().expect("id");
            let url = server.url(&format!("/sessions/{id}"));
            assert_eq!(client.delete(url).send().await.expect("delete").status(), 200);
        }
        took.sort();
        p50.push(took[STARTS / 2]);
    }
    eprintln!("/start p50: kubernetes (fake API) {:?}, local {:?}", p50[0], p50[1]);
    assert!(nothing_left(&cluster.fake));
}

#[tokio::test]
async fn a_proxy_restarting_while_the_api_server_cannot_serve_waits_and_re_adopts() {
    let cluster = cluster().await;
    let server = proxy_on(&cluster).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);
    let id = started(&client, &base).await;
    let (dir, config_path) = server.kill9().await;

    cluster.fake.set_unavailable(true);
    let asked_before = cluster.fake.requests().len();
    let kubeconfig = cluster.kubeconfig.clone();
    let relaunch = tokio::spawn(async move {
        BinaryServer::launch(dir, config_path, &[("KUBECONFIG", &kubeconfig)]).await
    });
    let pod_path = format!("GET /api/v1/namespaces/{NS}/pods/{}", pod_name(&id));
    wait_until("the new proxy to be refused its stored Pod twice", WAIT, || async {
        let asked = cluster.fake.requests()[asked_before..]
            .iter()
            .filter(|request| request.starts_with(&pod_path))
            .count();
        (asked >= 2).then_some(())
    })
    .await;
    cluster.fake.set_unavailable(false);
    let server = relaunch.await.expect("joined");
    let kept = session(&client, &server, &id).await;
    assert_eq!(kept["status"], "active", "not counted lost for an API server's blip: {kept}");
    assert_eq!(message(&client, &server, &id, "still mine").await, 200);
}
