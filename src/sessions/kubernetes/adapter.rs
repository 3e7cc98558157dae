//! The Kubernetes engine behind `SessionBackend`: a session's spec becomes a
//! [`LaunchRequest`] through the shared [`AgentCommand`] (what the image provides replaces
//! this host's paths), readiness is the Pod's and then the agent's own `/status`, the Pod's
//! end (exit, eviction, deletion) reaches the supervisor through the `exited` channel, and
//! recovery re-adopts Pods by their stored [`PodRef`]. None of the local backend's host
//! machinery (containment, port range, uid pool, reaper) exists here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;

mod request;

use super::{KubeError, KubernetesBackend, LaunchRequest, ListedSession, PodFailure, PodRef};
use super::{PodPhase, names};
use crate::config::Config;
use crate::sessions::agent_command::{AgentCommand, DEFAULT_SCRIPT, Script};
use crate::sessions::backend::{
    AgentHandle, AgentSpec, BackendRef, Endpoint, Exit, Host, LaunchError, LaunchObserver,
    Launched, SessionBackend,
};
use request::launch_request;

/// How long an adopted agent may take to answer `/status` at recovery.
const ADOPT_WAIT: Duration = Duration::from_secs(2);
/// How long recovery, all sessions together, waits for an unreachable API server before it
/// counts the stored sessions' Pods as lost (they may still run: a blip of the API server
/// during a restart must not end every session).
const ADOPT_API_WAIT: Duration = Duration::from_secs(30);
/// How long past its grace a stop may take (scale-out.md §4), the API server's absence
/// included.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// Sessions as Pods, behind the backend-neutral trait.
#[derive(Debug)]
pub struct KubernetesSessions {
    engine: KubernetesBackend,
    command: AgentCommand,
    agent_server: String,
    /// The grace a Pod gets when it is deleted as an orphan or after a failed start.
    stop_grace: Duration,
    /// When adopting first found the API server unreachable (the start of the one
    /// [`ADOPT_API_WAIT`] all adoptions share).
    api_down_since: Mutex<Option<Instant>>,
    /// The cluster's reason for each session's last end, until the supervisor takes it.
    ends: EndDetails,
}

/// Per session, the cluster's account of how its Pod last ended or failed to start.
type EndDetails = Arc<Mutex<HashMap<String, Value>>>;

fn record_end(ends: &EndDetails, session_id: &str, failure: &PodFailure) {
    let mut ends = ends.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    ends.insert(session_id.to_string(), failure_details(failure));
}

impl KubernetesSessions {
    pub fn new(engine: KubernetesBackend, config: &Config) -> Self {
        Self {
            engine,
            command: AgentCommand::from_config(&config.agent),
            agent_server: config.agent.server.clone(),
            stop_grace: Duration::from_secs(config.session.stop_grace_seconds),
            api_down_since: Mutex::new(None),
            ends: EndDetails::default(),
        }
    }

    /// The launch request for `spec`, with the startup script's text.
    async fn request(&self, spec: &AgentSpec) -> Result<LaunchRequest, LaunchError> {
        let script = match self.command.script() {
            Script::Embedded => DEFAULT_SCRIPT.to_string(),
            Script::Operator(path) => tokio::fs::read_to_string(path).await.map_err(|error| {
                LaunchError::Internal(anyhow::anyhow!("while reading agent.script {path}: {error}"))
            })?,
        };
        let config = self.engine.config();
        Ok(launch_request(&self.command, &self.agent_server, config, spec, script))
    }

    /// The phase of a stored session's Pod; an unreachable API server is retried within
    /// what is left of [`ADOPT_API_WAIT`].
    async fn stored_pod_phase(&self, pod: &PodRef) -> Result<Option<PodPhase>, KubeError> {
        loop {
            match self.engine.adopt(pod).await {
                Err(error) if error.is_unavailable() => {
                    let since = *self
                        .api_down_since
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .get_or_insert_with(Instant::now);
                    if since.elapsed() >= ADOPT_API_WAIT {
                        return Err(error);
                    }
                    tracing::warn!(%error, pod = %pod.pod, "waiting for the API server to re-adopt a session");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// Deletes what a failed start left (best effort; orphan clean-up catches the rest).
    async fn clean_up(&self, pod: &PodRef) {
        if let Err(error) = self.stop_pod(pod, Duration::ZERO).await {
            tracing::warn!(%error, pod = %pod.pod, "could not delete a failed session's objects");
        }
    }

    /// Stops the session's objects, retrying while the API server is unreachable for as long
    /// as a stop may take (`grace` + [`STOP_SLACK`]).
    async fn stop_pod(&self, pod: &PodRef, grace: Duration) -> Result<(), KubeError> {
        let give_up = Instant::now() + grace + STOP_SLACK;
        loop {
            match self.engine.stop(pod, grace).await {
                Err(error) if error.is_unavailable() && Instant::now() < give_up => {
                    tracing::warn!(%error, pod = %pod.pod, "retrying the stop of a session's Pod");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// Resolves with how the Pod ended; the cluster's reason is logged and kept for
    /// [`SessionBackend::take_end_details`].
    fn watch_exit(&self, session_id: &str, pod: PodRef) -> oneshot::Receiver<Exit> {
        let (sender, receiver) = oneshot::channel();
        let engine = self.engine.clone();
        let ends = self.ends.clone();
        let session_id = session_id.to_string();
        tokio::spawn(async move {
            let failure = engine.watch_exit(&pod).await;
            tracing::warn!(session_id, reason = %failure.reason, message = %failure.message, exit_code = failure.exit_code, "the session's Pod ended");
            if !sender.is_closed() {
                record_end(&ends, &session_id, &failure);
            }
            let _ = sender.send(exit_of(&failure));
        });
        receiver
    }
}

/// The exit the supervisor records for a Pod's end.
fn exit_of(failure: &PodFailure) -> Exit {
    match failure.exit_code {
        Some(code) => Exit::Code(code),
        None => Exit::Unknown,
    }
}

/// What a failed start tells its owner (`details` of the `/start` error).
fn failure_details(failure: &PodFailure) -> Value {
    json!({"reason": failure.reason, "message": failure.message, "exit_code": failure.exit_code})
}

/// The handle of a launched or adopted Pod.
fn handle_of(pod: &PodRef) -> AgentHandle {
    let host = match pod.endpoint() {
        Some((address, _)) => Host::Ip(address),
        None => Host::Name(format!("{}.{}.svc", pod.service, pod.namespace).into()),
    };
    let reference = BackendRef::new(pod.to_backend_ref().to_string());
    AgentHandle { endpoint: Endpoint::new(host, pod.port), reference }
}

/// The Pod a handle or stored reference names; `None` (logged) for anything else.
fn pod_of(reference: &BackendRef) -> Option<PodRef> {
    let value: Value = serde_json::from_str(reference.as_str()).ok()?;
    let pod = PodRef::from_backend_ref(&value);
    if pod.is_none() {
        tracing::warn!("the Kubernetes backend was handed a reference it did not write");
    }
    pod
}

fn launch_error(error: KubeError) -> LaunchError {
    match error {
        KubeError::Unavailable(message) => LaunchError::Unavailable(message),
        other => LaunchError::Internal(anyhow::Error::new(other)),
    }
}

#[async_trait::async_trait]
impl SessionBackend for KubernetesSessions {
    async fn launch(
        &self,
        spec: &AgentSpec,
        _port_hint: Option<u16>,
        observer: &dyn LaunchObserver,
    ) -> Result<Launched, LaunchError> {
        let request = self.request(spec).await?;
        let deadline =
            Instant::now() + Duration::from_secs(self.engine.config().ready_timeout_seconds);
        let pod = self.engine.launch(&request).await.map_err(launch_error)?;
        let agent = handle_of(&pod);
        observer.spawned(&agent).await;
        match self.engine.wait_ready(&pod, deadline).await {
            Ok(()) => Ok(Launched { agent, exited: self.watch_exit(&spec.session_id, pod) }),
            Err(KubeError::PodFailed(failure)) => {
                tracing::warn!(session_id = %spec.session_id, %failure, "the session's Pod failed to start");
                self.clean_up(&pod).await;
                record_end(&self.ends, &spec.session_id, &failure);
                let details = failure_details(&failure);
                Err(LaunchError::Exited { exit: exit_of(&failure), details })
            }
            Err(KubeError::Timeout { seconds }) => {
                self.clean_up(&pod).await;
                Err(LaunchError::Timeout { details: json!({"ready_timeout_seconds": seconds}) })
            }
            Err(other) => {
                self.clean_up(&pod).await;
                Err(launch_error(other))
            }
        }
    }

    async fn wait_ready(&self, agent: &AgentHandle, within: Duration) -> bool {
        let Some(pod) = pod_of(&agent.reference) else { return false };
        let give_up = Instant::now() + within;
        loop {
            if self.engine.answers_status(&pod).await {
                return true;
            }
            if Instant::now() >= give_up {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn handle_of(&self, reference: &BackendRef) -> Option<AgentHandle> {
        pod_of(reference).map(|pod| handle_of(&pod))
    }

    async fn adopt(&self, reference: &BackendRef) -> Option<Launched> {
        let pod = pod_of(reference)?;
        match self.stored_pod_phase(&pod).await {
            Ok(Some(PodPhase::Ready)) => {}
            Ok(phase) => {
                tracing::info!(pod = %pod.pod, ?phase, "a stored session's Pod is not ready or gone");
                return None;
            }
            Err(error) => {
                tracing::warn!(%error, pod = %pod.pod, "could not look up a stored session's Pod");
                return None;
            }
        }
        let agent = handle_of(&pod);
        if !self.wait_ready(&agent, ADOPT_WAIT).await {
            return None;
        }
        let session_id = names::session_of(&pod.pod)?.to_string();
        Some(Launched { agent, exited: self.watch_exit(&session_id, pod) })
    }

    async fn discard(&self, reference: &BackendRef) {
        if let Some(pod) = pod_of(reference) {
            self.clean_up(&pod).await;
        }
    }

    async fn stop(&self, agent: &AgentHandle, grace: Duration) -> bool {
        let Some(pod) = pod_of(&agent.reference) else { return true };
        match self.stop_pod(&pod, grace).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, pod = %pod.pod, "could not stop the session's Pod in time");
                false
            }
        }
    }

    fn release(&self, _agent: &AgentHandle) {
        // Nothing on this host is held for a Pod.
    }

    async fn logs(&self, session_id: &str, lines: usize) -> String {
        let name = names::object_name(session_id);
        let pod = PodRef {
            namespace: self.engine.config().namespace.clone(),
            pod: name.clone(),
            service: name.clone(),
            secret: name,
            service_uid: String::new(),
            pod_uid: String::new(),
            cluster_ip: String::new(),
            port: self.engine.config().agent_port,
        };
        match self.engine.logs(&pod, lines).await {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(%error, session_id, "could not read the agent's log");
                String::new()
            }
        }
    }

    async fn list(&self) -> Vec<String> {
        match self.engine.list().await {
            Ok(sessions) => sessions.into_iter().map(|listed| listed.session_id).collect(),
            Err(error) => {
                tracing::warn!(%error, "could not list the sessions' objects in the cluster");
                Vec::new()
            }
        }
    }

    async fn end_orphan(&self, session_id: &str) {
        let orphan = ListedSession {
            session_id: session_id.to_string(),
            service: None,
            pod: None,
            pod_uid: None,
            phase: None,
        };
        tracing::info!(session_id, "deleting a session's objects that no stored session owns");
        if let Err(error) = self.engine.delete_orphan(&orphan, self.stop_grace).await {
            tracing::warn!(%error, session_id, "could not delete an orphaned session's objects");
        }
    }

    fn reserved_env_names(&self) -> Vec<String> {
        let mut names = self.engine.reserved_env_names();
        names.extend(self.command.reserved_env_names());
        names
    }

    async fn remove_files(&self, session_id: &str) {
        // The workspace went with the Pod (or its PVC, owned by the Service).
        self.ends.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(session_id);
    }

    fn take_end_details(&self, session_id: &str) -> Option<Value> {
        self.ends.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(session_id)
    }

    fn maintain(&self, _session_id: &str) {
        // The kubelet keeps and rotates the container's log.
    }
}
