//! A session's life on the cluster: create its objects (Service first, as the owner),
//! wait until the Pod is Ready and the agent answers `/status`, report how it ended, and
//! stop it (the Pod deleted with the stop grace, the Service with foreground propagation;
//! done when both are gone).

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio::time::Instant;

use super::error::{KubeError, PodFailure};
use super::objects::{Blueprint, owned_by};
use super::status::PodPhase;
use super::watch::{Seen, follow, gone};
use super::{KubernetesBackend, LaunchRequest, ListedSession, PodRef, bootstrap, names};
use crate::config::is_dns_label;

/// How long past the grace a stop may wait for the Pod to be gone (scale-out.md §4).
const STOP_SLACK: Duration = Duration::from_secs(30);
/// The API server refuses Secrets over 1 MiB; this leaves room for the metadata.
const MAX_SECRET_BYTES: usize = 1000 * 1000;

impl KubernetesBackend {
    /// Creates the session's Service, Secret, PVC, NetworkPolicy and Pod. Returns once they
    /// exist (not once the agent is ready: see [`Self::wait_ready`]). If a step fails, what
    /// was created is deleted again (best effort; orphan clean-up catches the rest).
    pub async fn launch(&self, request: &LaunchRequest) -> Result<PodRef, KubeError> {
        let name = names::object_name(&request.session_id);
        if !is_dns_label(&name) || names::session_of(&name) != Some(&request.session_id) {
            return Err(KubeError::Invalid(format!(
                "session id {:?} cannot name cluster objects",
                request.session_id
            )));
        }
        if let Some(reserved) = request.environment.keys().find(|n| bootstrap::is_backend_env(n)) {
            return Err(KubeError::Invalid(format!(
                "{reserved} is set by the Kubernetes backend and cannot be requested"
            )));
        }
        if request.argv.is_empty() {
            return Err(KubeError::Invalid("the agent command line is empty".into()));
        }
        let secret_bytes: usize = bootstrap::secret_data(
            &request.environment,
            &request.session_token,
            &request.script,
            &request.argv,
        )
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
        if secret_bytes > MAX_SECRET_BYTES {
            return Err(KubeError::Invalid(format!(
                "the session's environment, script and command line take {secret_bytes} bytes; \
                 a Secret holds at most {MAX_SECRET_BYTES}"
            )));
        }
        let blueprint = Blueprint { config: &self.config, request };
        let post = PostParams::default();
        let service = self
            .services()
            .create(&post, &blueprint.service())
            .await
            .map_err(|error| KubeError::from_client("creating the session's Service", error))?;
        let owner = owned_by(&service);
        let created = self.create_owned(&blueprint, &owner).await;
        let pod = match created {
            Ok(pod) => pod,
            Err(error) => {
                let _ = self.services().delete(&name, &DeleteParams::background()).await;
                return Err(error);
            }
        };
        let cluster_ip = service
            .spec
            .as_ref()
            .and_then(|spec| spec.cluster_ip.clone())
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
            .unwrap_or_default();
        Ok(PodRef {
            namespace: self.config.namespace.clone(),
            pod: name.clone(),
            service: name.clone(),
            secret: name,
            service_uid: owner.uid,
            pod_uid: pod.metadata.uid.unwrap_or_default(),
            cluster_ip,
            port: self.config.agent_port,
        })
    }

    async fn create_owned(
        &self,
        blueprint: &Blueprint<'_>,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<Pod, KubeError> {
        let namespace = &self.config.namespace;
        let post = PostParams::default();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        secrets
            .create(&post, &blueprint.secret(owner))
            .await
            .map_err(|error| KubeError::from_client("creating the session's Secret", error))?;
        if let Some(claim) = blueprint.claim(owner) {
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(self.client.clone(), namespace);
            claims
                .create(&post, &claim)
                .await
                .map_err(|error| KubeError::from_client("creating the session's PVC", error))?;
        }
        if let Some(policy) = blueprint.network_policy(owner) {
            let policies: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
            policies.create(&post, &policy).await.map_err(|error| {
                KubeError::from_client("creating the session's NetworkPolicy", error)
            })?;
        }
        self.pods()
            .create(&post, &blueprint.pod(owner))
            .await
            .map_err(|error| KubeError::from_client("creating the session's Pod", error))
    }

    /// Waits until the Pod is Ready and then until the agent answers `GET /status` through
    /// the endpoint, before `deadline`. A Pod that cannot start or ends first fails with the
    /// cluster's reason. Nothing is deleted here; the caller stops a failed session.
    pub async fn wait_ready(&self, pod: &PodRef, deadline: Instant) -> Result<(), KubeError> {
        let timeout = || KubeError::Timeout { seconds: self.config.ready_timeout_seconds };
        let ready = follow(self.watched_pods(), &pod.pod, |seen| match seen {
            Seen::Phase(PodPhase::Ready) => Some(Ok(())),
            Seen::Phase(PodPhase::Ended(failure)) => Some(Err(failure.clone())),
            Seen::Gone => Some(Err(gone())),
            Seen::Phase(PodPhase::Starting | PodPhase::NotReady) => None,
        });
        match tokio::time::timeout_at(deadline, ready).await {
            Err(_) => return Err(timeout()),
            Ok(Err(failure)) => return Err(KubeError::PodFailed(failure)),
            Ok(Ok(())) => {}
        }
        let answers = async {
            let mut delay = Duration::from_millis(5);
            loop {
                if self.answers_status(pod).await {
                    return Ok(());
                }
                if Instant::now() + delay >= deadline {
                    return Err(timeout());
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
        };
        // A Pod that ends while its agent is being asked fails with its reason, not a timeout.
        tokio::select! {
            answered = answers => answered,
            failure = self.watch_exit(pod) => Err(KubeError::PodFailed(failure)),
        }
    }

    /// Whether the agent answers `GET /status` at the endpoint with agentapi's JSON.
    pub async fn answers_status(&self, pod: &PodRef) -> bool {
        let Some((host, port)) = pod.endpoint() else { return false };
        let url = format!("http://{}/status", std::net::SocketAddr::new(host, port));
        let Ok(answer) = self.http.get(url).header("Host", "localhost").send().await else {
            return false;
        };
        if !answer.status().is_success() {
            return false;
        }
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        matches!(body["status"].as_str(), Some("running" | "stable"))
    }

    /// Resolves with why the Pod ended (exited, evicted, deleted) once it has. Survives
    /// dropped watches, `410 Gone` and an API server that goes away and comes back.
    pub async fn watch_exit(&self, pod: &PodRef) -> PodFailure {
        follow(self.watched_pods(), &pod.pod, |seen| match seen {
            Seen::Phase(PodPhase::Ended(failure)) => Some(failure.clone()),
            Seen::Gone => Some(gone()),
            Seen::Phase(_) => None,
        })
        .await
    }

    /// Stops the session: deletes the Pod with `gracePeriodSeconds = grace`, then the
    /// Service with foreground propagation (which removes the Secret, PVC and
    /// NetworkPolicy). Returns once the Pod and the Service are gone, or
    /// [`KubeError::Timeout`] after `grace` + 30 s.
    pub async fn stop(&self, pod: &PodRef, grace: Duration) -> Result<(), KubeError> {
        let seconds = u32::try_from(grace.as_secs()).unwrap_or(u32::MAX);
        let deadline = Instant::now() + grace + STOP_SLACK;
        let pod_params = DeleteParams::default().grace_period(seconds);
        ignore_not_found(
            self.pods().delete(&pod.pod, &pod_params).await.map(|_| ()),
            "deleting the session's Pod",
        )?;
        let service_params = DeleteParams::foreground().grace_period(seconds);
        ignore_not_found(
            self.services().delete(&pod.service, &service_params).await.map(|_| ()),
            "deleting the session's Service",
        )?;
        let timeout = KubeError::Timeout { seconds: grace.as_secs() + STOP_SLACK.as_secs() };
        let pod_gone =
            follow(self.watched_pods(), &pod.pod, |seen| (*seen == Seen::Gone).then_some(()));
        tokio::time::timeout_at(deadline, pod_gone).await.map_err(|_| timeout)?;
        self.wait_service_gone(&pod.service, deadline).await
    }

    async fn wait_service_gone(&self, name: &str, deadline: Instant) -> Result<(), KubeError> {
        let mut delay = Duration::from_millis(10);
        loop {
            match self.services().get_opt(name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => {}
                Err(error) => {
                    return Err(KubeError::from_client("waiting for the Service to go", error));
                }
            }
            if Instant::now() + delay >= deadline {
                let seconds = STOP_SLACK.as_secs();
                return Err(KubeError::Timeout { seconds });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// Where a recorded session's Pod is, for re-adopting it (after a restart, or when this
    /// replica takes over the lease): `None` when it is gone or is another Pod of that name
    /// (its uid differs).
    pub async fn adopt(&self, pod: &PodRef) -> Result<Option<PodPhase>, KubeError> {
        let found = self
            .pods()
            .get_opt(&pod.pod)
            .await
            .map_err(|error| KubeError::from_client("looking up the session's Pod", error))?;
        Ok(found
            .filter(|found| found.metadata.uid.as_deref() == Some(pod.pod_uid.as_str()))
            .map(|found| super::status::phase_of(&found)))
    }

    /// Deletes what the cluster holds of a session that has no row (found by
    /// [`Self::list`]), with `grace` for its Pod; returns once it is gone.
    pub async fn delete_orphan(
        &self,
        orphan: &ListedSession,
        grace: Duration,
    ) -> Result<(), KubeError> {
        let name = names::object_name(&orphan.session_id);
        let pod = PodRef {
            namespace: self.config.namespace.clone(),
            pod: orphan.pod.clone().unwrap_or_else(|| name.clone()),
            service: orphan.service.clone().unwrap_or_else(|| name.clone()),
            secret: name,
            service_uid: String::new(),
            pod_uid: orphan.pod_uid.clone().unwrap_or_default(),
            cluster_ip: String::new(),
            port: self.config.agent_port,
        };
        self.stop(&pod, grace).await
    }
}

fn ignore_not_found(result: Result<(), kube::Error>, action: &str) -> Result<(), KubeError> {
    match result.map_err(|error| KubeError::from_client(action, error)) {
        Err(error) if error.is_not_found() => Ok(()),
        other => other,
    }
}
