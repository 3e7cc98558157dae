//! The fake Kubernetes API the Kubernetes backend is tested against must behave like the
//! real one where the backend depends on it: these tests drive it over HTTP with the real
//! wire shapes (as kube-rs sends them) and a real echo agent as the Pod's container.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::fake_kube::FakeKube;
use crate::support::fake_kube::store::Resource;
use crate::support::{binary, wait_until};

const NS: &str = "agents";
const WAIT: Duration = Duration::from_secs(20);

fn pod(name: &str, session: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "agentapi-proxy",
                                               "agentapi-proxy/session-id": session}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "agent", "image": "example/agent:1",
                "command": [binary(), "echo-agent", "server"],
                "args": ["--bind", "$(POD_IP)", "--port", "3284"],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": session, "key": "GREETING"}}}
                ],
                "readinessProbe": {"httpGet": {"path": "/status", "port": 3284,
                    "httpHeaders": [{"name": "Host", "value": "localhost"}]}}
            }]
        }
    })
}

fn owned_by(mut object: Value, owner: &Value) -> Value {
    object["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1", "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true
    }]);
    object
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(fake: &FakeKube) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/api/v1/namespaces/{NS}", fake.url()),
        }
    }

    async fn create(&self, plural: &str, object: &Value) -> (u16, Value) {
        let answer = self
            .http
            .post(format!("{}/{plural}", self.base))
            .json(object)
            .send()
            .await
            .expect("create");
        (answer.status().as_u16(), answer.json().await.expect("json"))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let answer = self.http.get(format!("{}/{path}", self.base)).send().await.expect("get");
        (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null))
    }

    async fn delete(&self, path: &str, options: Value) -> (u16, Value) {
        let answer = self
            .http
            .delete(format!("{}/{path}", self.base))
            .json(&options)
            .send()
            .await
            .expect("delete");
        (answer.status().as_u16(), answer.json().await.unwrap_or(Value::Null))
    }
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Reads watch lines until one satisfies `done`; returns every event read.
async fn read_watch(answer: reqwest::Response, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    use futures_util::StreamExt;
    let mut events = Vec::new();
    let mut buffer = Vec::new();
    let mut body = answer.bytes_stream();
    let read = async {
        while let Some(chunk) = body.next().await {
            buffer.extend_from_slice(&chunk.expect("chunk"));
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let event: Value = serde_json::from_slice(&line).expect("a JSON line");
                let finished = done(&event);
                events.push(event);
                if finished {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("the watch said nothing in time");
    events
}

#[tokio::test]
async fn a_pod_runs_the_echo_agent_with_its_secret_and_answers_through_its_service() {
    let fake = FakeKube::start().await;
    let api = Api::new(&fake);
    let (code, service) = api
        .create(
            "services",
            &json!({"metadata": {"name": "s1"}, "spec": {
            "selector": {"agentapi-proxy/session-id": "s1"},
            "ports": [{"port": 3284, "targetPort": 3284}]}}),
        )
        .await;
    assert_eq!(code, 201, "{service}");
    let secret = owned_by(
        json!({"metadata": {"name": "s1"}, "stringData": {"GREETING": "hello"}}),
        &service,
    );
    assert_eq!(api.create("secrets", &secret).await.0, 201);
    let (code, created) = api.create("pods", &owned_by(pod("s1", "s1"), &service)).await;
    assert_eq!(code, 201, "{created}");
    let version = created["metadata"]["resourceVersion"].as_str().expect("version").to_string();

    let watch = api
        .http
        .get(format!("{}/pods?watch=true&resourceVersion={version}&labelSelector=agentapi-proxy%2Fsession-id%3Ds1", api.base))
        .send()
        .await
        .expect("watch");
    let events = read_watch(watch, |event| is_ready(&event["object"])).await;
    assert!(events.iter().all(|e| e["type"] == "MODIFIED"), "{events:?}");
    let ready = &events.last().expect("an event")["object"];
    let pod_ip = ready["status"]["podIP"].as_str().expect("a pod IP");
    assert_ne!(pod_ip, "127.0.0.1");

    let cluster_ip = service["spec"]["clusterIP"].as_str().expect("a cluster IP");
    let status: Value = reqwest::Client::new()
        .get(format!("http://{cluster_ip}:3284/status"))
        .header("host", "localhost")
        .send()
        .await
        .expect("through the service")
        .json()
        .await
        .expect("json");
    assert_eq!(status["agent_type"], "echo", "{status}");
    assert!(
        ["running", "stable"].contains(&status["status"].as_str().unwrap_or_default()),
        "{status}"
    );

    let pid = fake.cluster().containers().values().next().expect("a container").pid;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.split('\0').any(|pair| pair == "GREETING=hello"),
        "the Secret's value is missing"
    );
    assert!(environ.split('\0').any(|pair| pair == format!("POD_IP={pod_ip}")), "no downward API");

    let (code, missing) = api.get("pods/nope").await;
    assert_eq!((code, missing["reason"].as_str()), (404, Some("NotFound")));
    let (code, again) = api.create("pods", &pod("s1", "s1")).await;
    assert_eq!((code, again["reason"].as_str()), (409, Some("AlreadyExists")));

    let (code, list) = api.get("pods?labelSelector=agentapi-proxy%2Fsession-id%3Dother").await;
    assert_eq!((code, list["items"].as_array().map(Vec::len)), (200, Some(0)));
    let logs =
        api.http.get(format!("{}/pods/s1/log?tailLines=5", api.base)).send().await.expect("logs");
    assert_eq!(logs.status(), 200);

    // Foreground deletion of the owner: the Pod (graceful), then the Secret, then the Service.
    let (code, marked) = api
        .delete("services/s1", json!({"propagationPolicy": "Foreground", "gracePeriodSeconds": 5}))
        .await;
    assert_eq!(code, 200);
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    wait_until("everything of the session gone", WAIT, || async {
        (fake.objects(Resource::Pods, NS).is_empty()
            && fake.objects(Resource::Secrets, NS).is_empty()
            && fake.objects(Resource::Services, NS).is_empty())
        .then_some(())
    })
    .await;
    assert!(fake.cluster().containers().is_empty(), "the container still runs");
}

#[tokio::test]
async fn a_watch_resumes_from_its_version_and_gets_410_once_the_history_is_compacted() {
    let fake = FakeKube::start().await;
    let api = Api::new(&fake);
    let (_, first) =
        api.create("secrets", &json!({"metadata": {"name": "a"}, "stringData": {"k": "v"}})).await;
    let from = first["metadata"]["resourceVersion"].as_str().expect("version").to_string();
    api.create("secrets", &json!({"metadata": {"name": "b"}})).await;
    let watch = api
        .http
        .get(format!("{}/secrets?watch=1&resourceVersion={from}", api.base))
        .send()
        .await
        .expect("watch");
    let events = read_watch(watch, |event| event["object"]["metadata"]["name"] == "b").await;
    assert_eq!(events.len(), 1, "only what came after {from}: {events:?}");
    assert_eq!(events[0]["type"], "ADDED");

    fake.compact();
    let watch = api
        .http
        .get(format!("{}/secrets?watch=1&resourceVersion={from}", api.base))
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), 200, "the real server reports 410 inside the stream");
    let events = read_watch(watch, |event| event["type"] == "ERROR").await;
    assert_eq!(events.last().expect("an event")["object"]["code"], 410);

    let watch = api.http.get(format!("{}/secrets?watch=1", api.base)).send().await.expect("watch");
    let listing = tokio::spawn(read_watch(watch, |_| false));
    fake.drop_watches();
    let ended = tokio::time::timeout(WAIT, listing).await;
    assert!(ended.is_ok(), "a dropped watch must end its stream");
}

#[tokio::test]
async fn image_pull_failures_unschedulable_pods_and_evictions_are_reported_like_a_kubelet() {
    let fake = FakeKube::start().await;
    let api = Api::new(&fake);
    fake.fail_image_pull("example/agent:1");
    api.create("secrets", &json!({"metadata": {"name": "p1"}, "stringData": {"GREETING": "x"}}))
        .await;
    api.create("pods", &pod("p1", "p1")).await;
    let waiting = wait_until("ImagePullBackOff", WAIT, || async {
        let pod = fake.get(Resource::Pods, NS, "p1")?;
        pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    assert_eq!(waiting, "ImagePullBackOff");

    fake.cluster().knobs().failing_images.clear();
    fake.set_unschedulable(true);
    api.create("secrets", &json!({"metadata": {"name": "p2"}, "stringData": {"GREETING": "x"}}))
        .await;
    api.create("pods", &pod("p2", "p2")).await;
    let reason = wait_until("Unschedulable", WAIT, || async {
        let pod = fake.get(Resource::Pods, NS, "p2")?;
        pod["status"]["conditions"][0]["reason"].as_str().map(str::to_string)
    })
    .await;
    assert_eq!(reason, "Unschedulable");

    fake.set_unschedulable(false);
    api.create("secrets", &json!({"metadata": {"name": "p3"}, "stringData": {"GREETING": "x"}}))
        .await;
    api.create("pods", &pod("p3", "p3")).await;
    wait_until("p3 ready", WAIT, || async { fake.get(Resource::Pods, NS, "p3").filter(is_ready) })
        .await;
    fake.evict(NS, "p3").await;
    let pod = fake.get(Resource::Pods, NS, "p3").expect("an evicted pod stays");
    assert_eq!(
        (pod["status"]["phase"].as_str(), pod["status"]["reason"].as_str()),
        (Some("Failed"), Some("Evicted"))
    );
}

#[tokio::test]
async fn an_api_server_that_goes_down_refuses_connections_and_comes_back_on_the_same_address() {
    let fake = FakeKube::start().await;
    let api = Api::new(&fake);
    assert_eq!(api.get("pods").await.0, 200);
    fake.go_down();
    let refused = reqwest::Client::new().get(format!("{}/version", fake.url())).send().await;
    assert!(refused.is_err(), "a down API server must refuse connections");
    fake.come_back().await;
    assert_eq!(api.get("pods").await.0, 200);
    assert!(fake.requests().iter().any(|r| r.starts_with("GET /api/v1/namespaces/agents/pods")));
}
