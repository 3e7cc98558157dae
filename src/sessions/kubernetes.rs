//! The Kubernetes backend (scale-out.md §4): each session is a ClusterIP Service that owns
//! a Secret (environment values, token, script, argv), a Pod running the startup script
//! contract, and optionally a PVC and a NetworkPolicy. Deleting the Service with foreground
//! propagation removes everything. The proxy reaches the agent at the Service's cluster IP.
//!
//! This is the engine with its own async API; `adapter` puts it behind `SessionBackend`.
//! Watches use kube-rs's `runtime::watcher` (resume from the resourceVersion, relist on 410).

mod adapter;
mod bootstrap;
mod error;
mod lifecycle;
pub mod names;
mod objects;
mod status;
mod watch;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};

use crate::config::KubernetesConfig;
pub use adapter::KubernetesSessions;
pub use bootstrap::{BACKEND_ENV, is_backend_env};
pub use error::{KubeError, PodFailure};
pub use names::{MANAGED_BY, SESSION_LABEL, USER_LABEL, object_name};
pub use objects::{AGENT_UID, WORKSPACE};
pub use status::PodPhase;

/// Every verb the backend sends, per resource (the Role in `deploy/kubernetes/` grants
/// exactly these; a test compares them).
pub const RBAC_VERBS: &[(&str, &str, &[&str])] = &[
    ("", "services", &["create", "get", "list", "delete"]),
    ("", "pods", &["create", "get", "list", "watch", "delete"]),
    ("", "pods/log", &["get"]),
    ("", "secrets", &["create"]),
    ("", "persistentvolumeclaims", &["create"]),
    ("networking.k8s.io", "networkpolicies", &["create"]),
];

/// What starting one session's agent needs.
#[derive(Debug, Clone, Default)]
pub struct LaunchRequest {
    pub session_id: String,
    pub user_id: String,
    /// Every variable the agent gets (values go into the Secret only). `envFrom` overrides
    /// the image's own variables, so host-specific ones (`PATH`, `HOME`, `TMPDIR`) should be
    /// left out; `APX_SESSION_DIR` is normally [`WORKSPACE`].
    pub environment: BTreeMap<String, String>,
    pub session_token: String,
    /// The complete agent-server command line; `$(POD_IP)` in an element is the Pod's IP.
    pub argv: Vec<String>,
    /// The startup script's text (bash); it ends in `exec "$@"`.
    pub script: String,
    pub tags: BTreeMap<String, String>,
}

/// Where a session's objects are: what the session row keeps as its `backend_ref`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub pod: String,
    pub service: String,
    pub secret: String,
    pub service_uid: String,
    pub pod_uid: String,
    pub cluster_ip: String,
    pub port: u16,
}

/// The `backend_ref` envelope: `{"v":1,"kind":"kubernetes",...}`.
#[derive(Serialize, Deserialize)]
struct Versioned {
    v: u32,
    kind: String,
    #[serde(flatten)]
    pod: PodRef,
}

impl PodRef {
    /// The session row's `backend_ref`.
    pub fn to_backend_ref(&self) -> serde_json::Value {
        let versioned = Versioned { v: 1, kind: "kubernetes".into(), pod: self.clone() };
        serde_json::to_value(versioned).unwrap_or(serde_json::Value::Null)
    }

    /// Reads a `backend_ref` written by [`Self::to_backend_ref`]; `None` for anything else.
    pub fn from_backend_ref(value: &serde_json::Value) -> Option<Self> {
        let versioned: Versioned = serde_json::from_value(value.clone()).ok()?;
        (versioned.v == 1 && versioned.kind == "kubernetes").then_some(versioned.pod)
    }

    /// Where the agent answers: the Service's cluster IP and the agent port.
    pub fn endpoint(&self) -> Option<(IpAddr, u16)> {
        Some((self.cluster_ip.parse().ok()?, self.port))
    }
}

/// A session found in the cluster by its labels (for recovery and orphan clean-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSession {
    pub session_id: String,
    pub service: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    /// The Pod's phase; `None` without a Pod.
    pub phase: Option<PodPhase>,
}

/// A connection to the cluster and the settings of the objects it makes.
#[derive(Clone)]
pub struct KubernetesBackend {
    /// For single requests: a hung API server fails them after [`REQUEST_TIMEOUT`].
    client: kube::Client,
    /// For watches, which the server holds open for up to 290 s.
    watch_client: kube::Client,
    config: KubernetesConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend").field("namespace", &self.config.namespace).finish()
    }
}

/// The most of an agent's log read at once, as the local backend's tails
/// (`local::agent_log::MAX_TAIL_BYTES`).
pub const MAX_LOG_BYTES: i64 = 1024 * 1024;
/// How long connecting to the API server may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one API request (not a watch) may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A watch connection silent for this long is dead (kube-rs asks for 290 s watches).
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

impl KubernetesBackend {
    /// Connects with the in-cluster service account when running in a Pod, else with
    /// `KUBECONFIG` / `~/.kube/config`.
    pub async fn connect(config: &KubernetesConfig) -> Result<Self, KubeError> {
        let client_config = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            kube::Config::incluster().map_err(|error| KubeError::Config(error.to_string()))?
        } else {
            kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
                .await
                .map_err(|error| KubeError::Config(error.to_string()))?
        };
        Self::with_client_config(config, client_config)
    }

    /// Connects with the kubeconfig file at `path` (its current context).
    pub async fn connect_with_kubeconfig(
        config: &KubernetesConfig,
        path: &Path,
    ) -> Result<Self, KubeError> {
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|error| KubeError::Config(format!("{}: {error}", path.display())))?;
        let client_config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|error| KubeError::Config(error.to_string()))?;
        Self::with_client_config(config, client_config)
    }

    fn with_client_config(
        config: &KubernetesConfig,
        mut client_config: kube::Config,
    ) -> Result<Self, KubeError> {
        client_config.connect_timeout = Some(CONNECT_TIMEOUT);
        client_config.default_namespace = config.namespace.clone();
        let client_with = |read_timeout: Duration| {
            let mut client_config = client_config.clone();
            client_config.read_timeout = Some(read_timeout);
            kube::Client::try_from(client_config)
                .map_err(|error| KubeError::Config(error.to_string()))
        };
        let client = client_with(REQUEST_TIMEOUT)?;
        let watch_client = client_with(WATCH_READ_TIMEOUT)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|error| KubeError::Config(error.to_string()))?;
        Ok(Self { client, watch_client, config: config.clone(), http })
    }

    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Pods through the watch client (for [`watch::follow`]).
    fn watched_pods(&self) -> Api<Pod> {
        Api::namespaced(self.watch_client.clone(), &self.config.namespace)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    /// Variables a request may not set: the backend sets them in the Pod.
    pub fn reserved_env_names(&self) -> Vec<String> {
        BACKEND_ENV.iter().map(|name| (*name).to_string()).collect()
    }

    /// The last `tail_lines` lines of the agent container's log, at most [`MAX_LOG_BYTES`].
    pub async fn logs(&self, pod: &PodRef, tail_lines: usize) -> Result<String, KubeError> {
        let params = kube::api::LogParams {
            container: Some(objects::CONTAINER.into()),
            tail_lines: Some(i64::try_from(tail_lines).unwrap_or(i64::MAX)),
            // The agent writes its log: a line without end must not be read without end.
            limit_bytes: Some(MAX_LOG_BYTES),
            ..kube::api::LogParams::default()
        };
        self.pods()
            .logs(&pod.pod, &params)
            .await
            .map_err(|error| KubeError::from_client("reading the agent's log", error))
    }

    /// Every session the cluster holds objects of (by our labels): its Service and Pod.
    pub async fn list(&self) -> Result<Vec<ListedSession>, KubeError> {
        let params = ListParams::default().labels(&names::managed_selector());
        let services = self
            .services()
            .list(&params)
            .await
            .map_err(|error| KubeError::from_client("listing session Services", error))?;
        let pods = self
            .pods()
            .list(&params)
            .await
            .map_err(|error| KubeError::from_client("listing session Pods", error))?;
        let ours = self.config.labels.get(names::INSTALLATION_LABEL);
        let of_this_installation = |labels: Option<&BTreeMap<String, String>>| {
            let theirs = labels.and_then(|labels| labels.get(names::INSTALLATION_LABEL));
            theirs.is_none() || theirs == ours
        };
        let mut sessions: BTreeMap<String, ListedSession> = BTreeMap::new();
        for service in services.items {
            if !of_this_installation(service.metadata.labels.as_ref()) {
                continue;
            }
            if let Some(listed) = listed_entry(&mut sessions, service.metadata.labels.as_ref()) {
                listed.service = service.metadata.name.clone();
            }
        }
        for pod in pods.items {
            if !of_this_installation(pod.metadata.labels.as_ref()) {
                continue;
            }
            if let Some(listed) = listed_entry(&mut sessions, pod.metadata.labels.as_ref()) {
                listed.pod = pod.metadata.name.clone();
                listed.pod_uid = pod.metadata.uid.clone();
                listed.phase = Some(status::phase_of(&pod));
            }
        }
        Ok(sessions.into_values().collect())
    }
}

/// The listed session an object's labels name, made on first sight; `None` without the label.
fn listed_entry<'a>(
    sessions: &'a mut BTreeMap<String, ListedSession>,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<&'a mut ListedSession> {
    let id = labels.and_then(|labels| labels.get(SESSION_LABEL))?;
    Some(sessions.entry(id.clone()).or_insert_with(|| ListedSession {
        session_id: id.clone(),
        service: None,
        pod: None,
        pod_uid: None,
        phase: None,
    }))
}
