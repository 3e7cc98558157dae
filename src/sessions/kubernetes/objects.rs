//! The cluster objects of one session, built from the configuration and the launch request:
//! Service (the owner), Secret, Pod, optional PVC and NetworkPolicy. Pure functions; the
//! Pod spec never holds an environment value (those are in the Secret, read by `envFrom`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, HTTPHeader, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec,
    Probe, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource, SecurityContext, Service,
    ServicePort, ServiceSpec, Toleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::LaunchRequest;
use super::bootstrap;
use super::names::{
    MANAGED_BY, SESSION_LABEL, TAGS_ANNOTATION, USER_ANNOTATION, object_name, session_labels,
    user_label,
};
use crate::config::KubernetesConfig;

/// The uid and gid session containers run as: non-root, the `agentapi` user of the
/// repository's `Dockerfile`.
pub const AGENT_UID: i64 = 10001;
/// Where the workspace volume (emptyDir, or the PVC) is mounted.
pub const WORKSPACE: &str = "/workspace";
/// The container's name.
pub const CONTAINER: &str = "agent";

/// Builds a session's objects for one configuration.
pub struct Blueprint<'a> {
    pub config: &'a KubernetesConfig,
    pub request: &'a LaunchRequest,
}

impl Blueprint<'_> {
    fn name(&self) -> String {
        object_name(&self.request.session_id)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        session_labels(&self.config.labels, &self.request.session_id, &self.request.user_id)
    }

    fn metadata(&self, owner: Option<&OwnerReference>) -> ObjectMeta {
        let mut annotations = self.config.annotations.clone();
        if user_label(&self.request.user_id) != self.request.user_id {
            annotations.insert(USER_ANNOTATION.into(), self.request.user_id.clone());
        }
        if !self.request.tags.is_empty() {
            let tags = serde_json::to_string(&self.request.tags).unwrap_or_default();
            annotations.insert(TAGS_ANNOTATION.into(), tags);
        }
        ObjectMeta {
            name: Some(self.name()),
            namespace: Some(self.config.namespace.clone()),
            labels: Some(self.labels()),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: owner.map(|owner| vec![owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            (SESSION_LABEL.to_string(), self.request.session_id.clone()),
        ])
    }

    /// The ClusterIP Service selecting the session's Pod; it owns everything else.
    pub fn service(&self) -> Service {
        let port = i32::from(self.config.agent_port);
        Service {
            metadata: self.metadata(None),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                selector: Some(self.selector()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    protocol: Some("TCP".into()),
                    port,
                    target_port: Some(IntOrString::Int(port)),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// The Secret: environment values, token, script and argv.
    pub fn secret(&self, owner: &OwnerReference) -> Secret {
        let request = self.request;
        Secret {
            metadata: self.metadata(Some(owner)),
            type_: Some("Opaque".into()),
            string_data: Some(bootstrap::secret_data(
                &request.environment,
                &request.session_token,
                &request.script,
                &request.argv,
            )),
            ..Secret::default()
        }
    }

    /// The workspace claim, when `storage.size` is set.
    pub fn claim(&self, owner: &OwnerReference) -> Option<PersistentVolumeClaim> {
        let storage = &self.config.storage;
        if storage.size.is_empty() {
            return None;
        }
        Some(PersistentVolumeClaim {
            metadata: self.metadata(Some(owner)),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: (!storage.storage_class.is_empty())
                    .then(|| storage.storage_class.clone()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(storage.size.clone()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        })
    }

    /// Admits only the proxy's Pods to the agent port, when `network_policy` is on.
    pub fn network_policy(&self, owner: &OwnerReference) -> Option<NetworkPolicy> {
        if !self.config.network_policy {
            return None;
        }
        let namespace_selector = (!self.config.proxy_namespace.is_empty()).then(|| LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                self.config.proxy_namespace.clone(),
            )])),
            ..LabelSelector::default()
        });
        Some(NetworkPolicy {
            metadata: self.metadata(Some(owner)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(self.selector()),
                    ..LabelSelector::default()
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(self.config.proxy_pod_labels.clone()),
                            ..LabelSelector::default()
                        }),
                        namespace_selector,
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![NetworkPolicyPort {
                        protocol: Some("TCP".into()),
                        port: Some(IntOrString::Int(i32::from(self.config.agent_port))),
                        ..NetworkPolicyPort::default()
                    }]),
                }]),
                ..NetworkPolicySpec::default()
            }),
        })
    }

    /// The Pod: the fixed bootstrap command, `envFrom` the Secret, non-root, resources,
    /// readiness on `/status` with `Host: localhost`, never restarted.
    pub fn pod(&self, owner: &OwnerReference) -> Pod {
        let config = self.config;
        let name = self.name();
        let workspace = match self.claim(owner) {
            Some(_) => Volume {
                name: "workspace".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: name.clone(),
                    read_only: None,
                }),
                ..Volume::default()
            },
            None => Volume {
                name: "workspace".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        };
        let service_account = !config.service_account.is_empty();
        Pod {
            metadata: self.metadata(Some(owner)),
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                automount_service_account_token: Some(service_account),
                service_account_name: service_account.then(|| config.service_account.clone()),
                enable_service_links: Some(false),
                // The pause container becomes PID 1: it reaps orphans, and the agent gets
                // SIGTERM's default action (PID 1 ignores signals it does not handle).
                share_process_namespace: Some(true),
                node_selector: (!config.node_selector.is_empty())
                    .then(|| config.node_selector.clone()),
                tolerations: (!config.tolerations.is_empty())
                    .then(|| config.tolerations.iter().map(toleration).collect()),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(AGENT_UID),
                    run_as_group: Some(AGENT_UID),
                    fs_group: Some(AGENT_UID),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    ..PodSecurityContext::default()
                }),
                volumes: Some(vec![workspace]),
                containers: vec![self.container(&name)],
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn container(&self, secret: &str) -> Container {
        let config = self.config;
        let port = i32::from(config.agent_port);
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..EnvVarSource::default()
        };
        let downward = [
            ("POD_IP", "status.podIP"),
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
        ];
        let mut quantities = BTreeMap::new();
        for (resource, value) in
            [("cpu", &config.resources.cpu), ("memory", &config.resources.memory)]
        {
            if !value.is_empty() {
                quantities.insert(resource.to_string(), Quantity(value.clone()));
            }
        }
        Container {
            name: CONTAINER.into(),
            image: Some(config.image.clone()),
            image_pull_policy: Some(config.image_pull_policy.clone()),
            command: Some(bootstrap::command()),
            env: Some(
                downward
                    .iter()
                    .map(|(name, path)| EnvVar {
                        name: (*name).into(),
                        value: None,
                        value_from: Some(field(path)),
                    })
                    .collect(),
            ),
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: secret.into(), optional: Some(false) }),
                ..EnvFromSource::default()
            }]),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/status".into()),
                    port: IntOrString::Int(port),
                    http_headers: Some(vec![HTTPHeader {
                        name: "Host".into(),
                        value: "localhost".into(),
                    }]),
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(2),
                failure_threshold: Some(3),
                ..Probe::default()
            }),
            resources: (!quantities.is_empty()).then(|| ResourceRequirements {
                requests: Some(quantities.clone()),
                limits: Some(quantities),
                ..ResourceRequirements::default()
            }),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(vec![VolumeMount {
                name: "workspace".into(),
                mount_path: WORKSPACE.into(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        }
    }
}

fn toleration(from: &crate::config::KubernetesToleration) -> Toleration {
    let text = |value: &str| (!value.is_empty()).then(|| value.to_string());
    Toleration {
        key: text(&from.key),
        operator: text(&from.operator),
        value: text(&from.value),
        effect: text(&from.effect),
        toleration_seconds: (from.toleration_seconds > 0)
            .then(|| i64::try_from(from.toleration_seconds).unwrap_or(i64::MAX)),
    }
}

/// The reference making `service` the owner (and garbage-collection parent) of an object.
pub fn owned_by(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KubernetesResources, KubernetesToleration};

    fn request() -> LaunchRequest {
        LaunchRequest {
            session_id: "0f4c5e3a-1b2c-4d5e-8f90-a1b2c3d4e5f6".into(),
            user_id: "octocat".into(),
            environment: BTreeMap::from([("TOKEN".into(), "value-1".into())]),
            session_token: "apxs_x".into(),
            argv: vec!["agentapi".into(), "server".into()],
            script: "exec \"$@\"".into(),
            tags: BTreeMap::new(),
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference { name: "apx-x".into(), uid: "u1".into(), ..OwnerReference::default() }
    }

    #[test]
    fn the_pod_follows_the_configuration() {
        let config = KubernetesConfig {
            image: "example/agent:1".into(),
            service_account: "agents".into(),
            node_selector: BTreeMap::from([("pool".into(), "agents".into())]),
            tolerations: vec![KubernetesToleration {
                key: "dedicated".into(),
                operator: "Equal".into(),
                value: "agents".into(),
                effect: "NoSchedule".into(),
                toleration_seconds: 0,
            }],
            resources: KubernetesResources { cpu: "500m".into(), memory: String::new() },
            ..KubernetesConfig::default()
        };
        let request = request();
        let pod = Blueprint { config: &config, request: &request }.pod(&owner());
        let spec = pod.spec.expect("a spec");
        assert_eq!(spec.service_account_name.as_deref(), Some("agents"));
        assert_eq!(spec.automount_service_account_token, Some(true));
        assert_eq!(spec.node_selector.expect("selector")["pool"], "agents");
        let toleration = &spec.tolerations.expect("tolerations")[0];
        assert_eq!(toleration.toleration_seconds, None);
        assert_eq!(toleration.effect.as_deref(), Some("NoSchedule"));
        let container = &spec.containers[0];
        let resources = container.resources.as_ref().expect("resources");
        let limits = resources.limits.as_ref().expect("limits");
        assert_eq!(limits.get("cpu"), Some(&Quantity("500m".into())));
        assert!(!limits.contains_key("memory"), "an empty quantity is unset");
        assert!(spec.volumes.expect("volumes")[0].empty_dir.is_some(), "no PVC: emptyDir");
        let text = serde_json::to_string(container).expect("json");
        assert!(!text.contains("value-1") && !text.contains("apxs_x"), "{text}");
    }

    #[test]
    fn the_policy_admits_the_proxy_from_its_namespace_and_can_be_off() {
        let mut config = KubernetesConfig {
            image: "example/agent:1".into(),
            proxy_namespace: "agentapi-proxy".into(),
            ..KubernetesConfig::default()
        };
        let request = request();
        let policy = Blueprint { config: &config, request: &request }
            .network_policy(&owner())
            .expect("a policy");
        let peer =
            &policy.spec.expect("spec").ingress.expect("ingress")[0].from.clone().expect("from")[0];
        let namespaces = peer.namespace_selector.clone().and_then(|s| s.match_labels);
        assert_eq!(namespaces.expect("namespace")["kubernetes.io/metadata.name"], "agentapi-proxy");
        config.network_policy = false;
        assert!(
            Blueprint { config: &config, request: &request }.network_policy(&owner()).is_none()
        );
        assert!(Blueprint { config: &config, request: &request }.claim(&owner()).is_none());
    }
}
