//! The Kubernetes backend against the fake API server (support/fake_kube): objects, labels
//! and owner references, readiness that means ready, stops that end everything, failure
//! reasons, recovery listing and orphan clean-up, watches that survive drops and 410, and
//! an API server that goes away. Agents are real echo-agent processes run by the fake's
//! kubelet; the endpoint is the Service's cluster IP through the fake's kube-proxy.

mod failures;
mod manifests;
mod real_cluster;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agentapi_proxy::config::KubernetesConfig;
use agentapi_proxy::sessions::kubernetes::{KubernetesBackend, LaunchRequest, PodPhase, PodRef};
use serde_json::Value;

use crate::support::fake_kube::FakeKube;
use crate::support::fake_kube::store::Resource;
use crate::support::{binary, wait_until};

pub const NS: &str = "agents";
pub const IMAGE: &str = "example/agent:1";
pub const WAIT: Duration = Duration::from_secs(20);
pub const GRACE: Duration = Duration::from_secs(5);

/// A fake API server, a kubeconfig for it, and a backend connected through it.
pub struct Cluster {
    pub fake: FakeKube,
    pub backend: KubernetesBackend,
    pub _dir: tempfile::TempDir,
}

pub fn settings() -> KubernetesConfig {
    KubernetesConfig { namespace: NS.into(), image: IMAGE.into(), ..KubernetesConfig::default() }
}

pub async fn cluster_with(config: KubernetesConfig) -> Cluster {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = fake.write_kubeconfig(dir.path(), NS);
    let backend = KubernetesBackend::connect_with_kubeconfig(&config, &kubeconfig)
        .await
        .expect("a backend for the fake");
    Cluster { fake, backend, _dir: dir }
}

/// A launch of the echo agent bound to the Pod's own address, through the real default
/// startup script.
pub fn request(session_id: &str) -> LaunchRequest {
    let session_dir = std::env::temp_dir();
    LaunchRequest {
        session_id: session_id.into(),
        user_id: "user@example.com".into(),
        environment: BTreeMap::from([
            ("APX_SESSION_ID".into(), session_id.into()),
            ("APX_SESSION_DIR".into(), session_dir.display().to_string()),
            ("APX_PROXY_BIN".into(), binary().into()),
            ("GREETING".into(), "a-secret-value-0xC0FFEE".into()),
            ("ECHO_AGENT_BOOT_MS".into(), "0".into()),
        ]),
        session_token: "apxs_token-value-0xBEEF".into(),
        argv: [binary(), "echo-agent", "server", "--bind", "$(POD_IP)", "--port", "3284"]
            .map(String::from)
            .to_vec(),
        script: agentapi_proxy::sessions::agent_command::DEFAULT_SCRIPT.into(),
        tags: BTreeMap::from([("team/Repo".into(), "a value".into())]),
    }
}

pub fn session_id(n: u32) -> String {
    format!("0f4c5e3a-1b2c-4d5e-8f90-{n:012x}")
}

pub fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + WAIT
}

pub async fn status_through(pod: &PodRef) -> Value {
    let (host, port) = pod.endpoint().expect("an endpoint");
    reqwest::Client::new()
        .get(format!("http://{host}:{port}/status"))
        .header("host", "localhost")
        .send()
        .await
        .expect("the agent answers through the Service")
        .json()
        .await
        .expect("json")
}

pub fn names_of(fake: &FakeKube, resource: Resource) -> Vec<String> {
    fake.objects(resource, NS)
        .iter()
        .filter_map(|object| object["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

pub fn nothing_left(fake: &FakeKube) -> bool {
    [
        Resource::Pods,
        Resource::Services,
        Resource::Secrets,
        Resource::PersistentVolumeClaims,
        Resource::NetworkPolicies,
    ]
    .into_iter()
    .all(|resource| fake.objects(resource, NS).is_empty())
}

#[tokio::test]
async fn a_session_is_a_service_owning_its_secret_pod_claim_and_policy_ready_when_it_answers() {
    let config = KubernetesConfig {
        storage: agentapi_proxy::config::KubernetesStorage {
            size: "1Gi".into(),
            storage_class: "fast".into(),
        },
        ..settings()
    };
    let Cluster { fake, backend, _dir } = cluster_with(config).await;
    let id = session_id(1);
    let pod = backend.launch(&request(&id)).await.expect("launch");
    let name = format!("apx-{id}");
    assert_eq!((pod.pod.as_str(), pod.service.as_str()), (name.as_str(), name.as_str()));

    let service = fake.get(Resource::Services, NS, &name).expect("a Service");
    let service_uid = service["metadata"]["uid"].as_str().expect("uid");
    for resource in [
        Resource::Pods,
        Resource::Secrets,
        Resource::PersistentVolumeClaims,
        Resource::NetworkPolicies,
        Resource::Services,
    ] {
        let object = fake.get(resource, NS, &name).unwrap_or_else(|| panic!("{resource:?}"));
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "agentapi-proxy", "{resource:?}");
        assert_eq!(labels["agentapi-proxy/session-id"], id.as_str(), "{resource:?}");
        let user = labels["agentapi-proxy/user"].as_str().expect("a user label");
        assert!(user.starts_with("u-") && user.len() <= 63, "hashed: {user}");
        assert_eq!(
            object["metadata"]["annotations"]["agentapi-proxy/tags"],
            r#"{"team/Repo":"a value"}"#
        );
        if resource != Resource::Services {
            let owner = &object["metadata"]["ownerReferences"][0];
            assert_eq!(
                (owner["kind"].as_str(), owner["uid"].as_str()),
                (Some("Service"), Some(service_uid))
            );
        }
    }
    let pod_object = fake.get(Resource::Pods, NS, &name).expect("a Pod");
    let spec_text = pod_object["spec"].to_string();
    for secret in ["a-secret-value-0xC0FFEE", "apxs_token-value-0xBEEF", "echo-agent"] {
        assert!(!spec_text.contains(secret), "{secret} is in the Pod spec: {spec_text}");
    }
    assert_eq!(pod_object["spec"]["restartPolicy"], "Never");
    assert_eq!(pod_object["spec"]["automountServiceAccountToken"], false);
    assert_eq!(pod_object["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod_object["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        name.as_str()
    );
    let claim = fake.get(Resource::PersistentVolumeClaims, NS, &name).expect("a PVC");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    let policy = fake.get(Resource::NetworkPolicies, NS, &name).expect("a policy");
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 3284);
    let probe = &pod_object["spec"]["containers"][0]["readinessProbe"]["httpGet"];
    assert_eq!(
        (probe["path"].as_str(), probe["httpHeaders"][0]["value"].as_str()),
        (Some("/status"), Some("localhost"))
    );

    backend.wait_ready(&pod, deadline()).await.expect("ready");
    let pod_now = fake.get(Resource::Pods, NS, &name).expect("the Pod");
    assert!(
        pod_now["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")),
        "ready before the Pod was: {pod_now}"
    );
    let status = status_through(&pod).await;
    assert_eq!(status["agent_type"], "echo", "{status}");
    let (host, port) = pod.endpoint().expect("an endpoint");
    let sent = reqwest::Client::new()
        .post(format!("http://{host}:{port}/message"))
        .header("host", "localhost")
        .json(&serde_json::json!({"content": "hello through the Service", "type": "user"}))
        .send()
        .await
        .expect("a message through the Service");
    assert_eq!(sent.status(), 200);
    let messages: Value = wait_until("the echo", WAIT, || async {
        let answer = reqwest::Client::new()
            .get(format!("http://{host}:{port}/messages"))
            .header("host", "localhost")
            .send()
            .await
            .ok()?;
        let messages: Value = answer.json().await.ok()?;
        (messages.to_string().matches("hello through the Service").count() >= 2).then_some(messages)
    })
    .await;
    assert!(messages.to_string().contains("hello through the Service"), "{messages}");

    // The agent got the Secret's values and none of the bootstrap's own variables.
    let pid = fake.cluster().containers().values().next().expect("a container").pid;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    let environ = String::from_utf8_lossy(&environ);
    let pairs: Vec<&str> = environ.split('\0').collect();
    assert!(pairs.contains(&"GREETING=a-secret-value-0xC0FFEE"), "{pairs:?}");
    assert!(pairs.contains(&"APX_SESSION_TOKEN=apxs_token-value-0xBEEF"));
    assert!(!pairs.iter().any(|p| p.starts_with("APX_SCRIPT=") || p.starts_with("APX_ARG")));

    let started = Instant::now();
    backend.stop(&pod, GRACE).await.expect("stop");
    assert!(started.elapsed() < GRACE + Duration::from_secs(30));
    assert!(nothing_left(&fake), "left behind: {:?}", names_of(&fake, Resource::Secrets));
    assert!(fake.cluster().containers().is_empty(), "the agent still runs");
    backend.stop(&pod, GRACE).await.expect("stopping a stopped session is fine");
}

#[tokio::test]
async fn list_finds_live_sessions_and_orphans_are_deleted() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    let kept = backend.launch(&request(&session_id(6))).await.expect("launch");
    let orphan = backend.launch(&request(&session_id(7))).await.expect("launch");
    backend.wait_ready(&kept, deadline()).await.expect("ready");
    backend.wait_ready(&orphan, deadline()).await.expect("ready");
    let listed = backend.list().await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.session_id.clone()).collect::<Vec<_>>(),
        vec![session_id(6), session_id(7)]
    );
    assert!(
        listed
            .iter()
            .all(|s| s.phase == Some(agentapi_proxy::sessions::kubernetes::PodPhase::Ready)
                && s.service.is_some())
    );
    let found_orphan = listed.iter().find(|s| s.session_id == session_id(7)).expect("listed");
    backend.delete_orphan(found_orphan, GRACE).await.expect("deleted");
    let listed = backend.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(status_through(&kept).await["agent_type"], "echo");
    assert!(fake.get(Resource::Secrets, NS, &orphan.secret).is_none());
    let restored = PodRef::from_backend_ref(&kept.to_backend_ref()).expect("round trip");
    assert_eq!(restored, kept);
    assert_eq!(backend.adopt(&restored).await.expect("adopt"), Some(PodPhase::Ready));
    assert_eq!(backend.adopt(&orphan).await.expect("adopt"), None, "deleted");
    let impostor = PodRef { pod_uid: "another-uid".into(), ..kept.clone() };
    assert_eq!(backend.adopt(&impostor).await.expect("adopt"), None, "another Pod");
    assert_eq!(kept.to_backend_ref()["kind"], "kubernetes");
}

/// Launch→ready against the fake, for the report beside the local backend's `/start`.
#[tokio::test]
async fn launch_to_ready_p50_against_the_fake() {
    let Cluster { fake: _fake, backend, _dir } = cluster_with(settings()).await;
    let mut took = Vec::new();
    for n in 0..7 {
        let started = Instant::now();
        let pod = backend.launch(&request(&session_id(100 + n))).await.expect("launch");
        backend.wait_ready(&pod, deadline()).await.expect("ready");
        took.push(started.elapsed());
        backend.stop(&pod, GRACE).await.expect("stop");
    }
    took.sort();
    eprintln!(
        "kubernetes launch→ready against the fake: p50 {:?}, all {took:?}",
        took[took.len() / 2]
    );
    assert!(took[took.len() / 2] < WAIT);
}
