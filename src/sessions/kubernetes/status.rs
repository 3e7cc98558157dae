//! What a Pod's status means for its session: still coming up, ready, or ended/failed with
//! the reason the cluster gives (`ImagePullBackOff`, `Unschedulable`, `Evicted`, the agent
//! container's exit code). Pure functions over `k8s-openapi` types.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

use super::error::PodFailure;

/// Waiting reasons that do not fix themselves: the session fails at once.
const HOPELESS_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "RunContainerError",
];

/// Where a session's Pod is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodPhase {
    /// Scheduled or starting; not ready yet.
    Starting,
    /// The `Ready` condition is true and the Pod is not being deleted.
    Ready,
    /// Running but not (or no longer) ready.
    NotReady,
    /// It cannot start, or it ended: why.
    Ended(PodFailure),
}

/// Reads `pod`'s status. A Pod being deleted counts as ended (`Deleted`).
pub fn phase_of(pod: &Pod) -> PodPhase {
    if let Some(failure) = failure_of(pod) {
        return PodPhase::Ended(failure);
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return PodPhase::Ended(PodFailure {
            reason: "Deleted".into(),
            message: "the Pod is being deleted".into(),
            exit_code: None,
        });
    }
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True");
    let running = status.and_then(|status| status.phase.as_deref()) == Some("Running");
    match (ready, running) {
        (true, _) => PodPhase::Ready,
        (false, true) => PodPhase::NotReady,
        (false, false) => PodPhase::Starting,
    }
}

/// The failure a Pod reports, if any: an ended phase, a terminated container, a hopeless
/// waiting reason, or an unschedulable condition.
pub fn failure_of(pod: &Pod) -> Option<PodFailure> {
    let status = pod.status.as_ref()?;
    let container = status.container_statuses.as_ref().and_then(|all| all.first());
    let state = container.and_then(|container| container.state.as_ref());
    if let Some(terminated) = state.and_then(|state| state.terminated.as_ref()) {
        return Some(terminated_failure(terminated, status.reason.as_deref()));
    }
    if let Some(phase @ ("Failed" | "Succeeded")) = status.phase.as_deref() {
        return Some(PodFailure {
            reason: status.reason.clone().unwrap_or_else(|| phase.to_string()),
            message: bounded(status.message.as_deref()),
            exit_code: None,
        });
    }
    if let Some(waiting) = state.and_then(|state| state.waiting.as_ref())
        && let Some(reason) = waiting.reason.as_deref()
        && HOPELESS_WAITING.contains(&reason)
    {
        return Some(PodFailure {
            reason: reason.to_string(),
            message: bounded(waiting.message.as_deref()),
            exit_code: None,
        });
    }
    let unschedulable = status.conditions.iter().flatten().find(|condition| {
        condition.type_ == "PodScheduled"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
    })?;
    Some(PodFailure {
        reason: "Unschedulable".into(),
        message: bounded(unschedulable.message.as_deref()),
        exit_code: None,
    })
}

/// Most bytes of a failure's message kept: a terminated container's message is what the
/// agent wrote to its termination log (Kubernetes caps it at 4096 bytes; this holds
/// whatever the cluster sends), and it is stored with the session.
const MAX_MESSAGE_BYTES: usize = 4096;

/// `text`, cut at a character boundary to [`MAX_MESSAGE_BYTES`].
fn bounded(text: Option<&str>) -> String {
    let text = text.unwrap_or_default();
    let mut end = text.len().min(MAX_MESSAGE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn terminated_failure(
    terminated: &ContainerStateTerminated,
    pod_reason: Option<&str>,
) -> PodFailure {
    // An evicted Pod's container is killed; the Pod's own reason says why.
    let reason = pod_reason
        .or(terminated.reason.as_deref())
        .unwrap_or(if terminated.exit_code == 0 { "Completed" } else { "Error" });
    PodFailure {
        reason: reason.to_string(),
        message: bounded(terminated.message.as_deref()),
        exit_code: Some(terminated.exit_code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_kept_whole_up_to_its_cap_and_cut_at_a_character_boundary() {
        assert_eq!(bounded(None), "");
        assert_eq!(bounded(Some("evicted")), "evicted");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(Some(&long));
        assert_eq!(cut.len(), MAX_MESSAGE_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).expect("a Pod")
    }

    #[test]
    fn ready_only_when_the_ready_condition_is_true() {
        assert_eq!(phase_of(&pod(json!({"phase": "Pending"}))), PodPhase::Starting);
        let running = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}]});
        assert_eq!(phase_of(&pod(running)), PodPhase::NotReady);
        let ready = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(phase_of(&pod(ready)), PodPhase::Ready);
    }

    #[test]
    fn failures_carry_the_clusters_reason() {
        let pull = pod(json!({"phase": "Pending", "containerStatuses": [{"name": "agent",
            "ready": false, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}]}));
        assert_eq!(failure_of(&pull).map(|f| f.reason), Some("ImagePullBackOff".into()));
        let unschedulable = pod(json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]}));
        let failure = failure_of(&unschedulable).expect("a failure");
        assert_eq!(
            (failure.reason.as_str(), failure.message.as_str()),
            ("Unschedulable", "0/1 nodes")
        );
        let exited = pod(json!({"phase": "Failed", "containerStatuses": [{"name": "agent",
            "ready": false, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}));
        assert_eq!(failure_of(&exited).and_then(|f| f.exit_code), Some(3));
        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted", "message": "low memory"}));
        assert_eq!(failure_of(&evicted).map(|f| f.reason), Some("Evicted".into()));
        let creating = pod(json!({"phase": "Pending", "containerStatuses": [{"name": "agent",
            "ready": false, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(failure_of(&creating), None);
    }
}
