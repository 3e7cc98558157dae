//! The backend against a real cluster, when `AGENTAPI_PROXY_TEST_KUBECONFIG` names a
//! kubeconfig (its current context; the namespace from `AGENTAPI_PROXY_TEST_NAMESPACE`,
//! default `agents`, and the image from `AGENTAPI_PROXY_TEST_IMAGE`, which must contain
//! bash and this server's binary as `agentapi-proxy` on its `PATH`). It must run where
//! Service cluster IPs are routable (inside the cluster), as the proxy does. Skipped loudly
//! without.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agentapi_proxy::config::KubernetesConfig;
use agentapi_proxy::sessions::kubernetes::{KubernetesBackend, LaunchRequest};

#[tokio::test]
async fn a_session_runs_and_stops_on_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("AGENTAPI_PROXY_TEST_KUBECONFIG") else {
        eprintln!(
            "SKIPPED a_session_runs_and_stops_on_a_real_cluster: set \
             AGENTAPI_PROXY_TEST_KUBECONFIG (and AGENTAPI_PROXY_TEST_IMAGE) to run it"
        );
        return;
    };
    let config = KubernetesConfig {
        namespace: std::env::var("AGENTAPI_PROXY_TEST_NAMESPACE").unwrap_or("agents".into()),
        image: std::env::var("AGENTAPI_PROXY_TEST_IMAGE")
            .expect("AGENTAPI_PROXY_TEST_IMAGE names an image with bash and agentapi-proxy"),
        network_policy: false,
        ..KubernetesConfig::default()
    };
    let backend = KubernetesBackend::connect_with_kubeconfig(&config, &PathBuf::from(kubeconfig))
        .await
        .expect("connect");
    let id = uuid::Uuid::new_v4().to_string();
    let request = LaunchRequest {
        session_id: id.clone(),
        user_id: "real-cluster-test".into(),
        environment: BTreeMap::from([("APX_SESSION_DIR".into(), "/workspace".into())]),
        session_token: "apxs_real-cluster-test".into(),
        argv: ["agentapi-proxy", "echo-agent", "server", "--bind", "0.0.0.0", "--port", "3284"]
            .map(String::from)
            .to_vec(),
        script: agentapi_proxy::sessions::agent_command::DEFAULT_SCRIPT.into(),
        tags: BTreeMap::new(),
    };
    let pod = backend.launch(&request).await.expect("launch");
    let ready =
        backend.wait_ready(&pod, tokio::time::Instant::now() + Duration::from_secs(300)).await;
    let logs = backend.logs(&pod, 50).await.unwrap_or_default();
    backend.stop(&pod, Duration::from_secs(10)).await.expect("stop");
    ready.unwrap_or_else(|error| panic!("not ready: {error}\n{logs}"));
    let left = backend.list().await.expect("list");
    assert!(left.iter().all(|session| session.session_id != id), "{left:?}");
}
