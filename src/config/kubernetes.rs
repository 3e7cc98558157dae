//! The `kubernetes` block of `config.json` (scale-out.md §4): where and how session Pods run
//! when `agent.backend` is `"kubernetes"`, and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::shape::Findings;

/// `agent.backend` value that runs sessions as Pods.
pub const KUBERNETES_BACKEND: &str = "kubernetes";

/// `kubernetes`: the cluster objects made for every session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesConfig {
    pub namespace: String,
    pub image: String,
    pub image_pull_policy: String,
    pub agent_port: u16,
    /// A service account for session Pods; empty = none, and no token is mounted.
    pub service_account: String,
    /// Requests and limits of the agent container (equal: Guaranteed QoS).
    pub resources: KubernetesResources,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<KubernetesToleration>,
    pub storage: KubernetesStorage,
    /// Extra labels on every object (ours win on a clash).
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on every object.
    pub annotations: BTreeMap<String, String>,
    /// A NetworkPolicy per session admitting only the proxy's Pods to the agent port.
    pub network_policy: bool,
    pub ready_timeout_seconds: u64,
    /// Labels of the proxy's own Pods (what the NetworkPolicy admits).
    pub proxy_pod_labels: BTreeMap<String, String>,
    /// The proxy's namespace when it differs from `namespace` (the NetworkPolicy then
    /// admits the proxy's Pods from there); empty = the same namespace.
    pub proxy_namespace: String,
    /// This server's binary inside the image (runs `builtin:echo` and the startup script's
    /// helpers); the `Dockerfile` installs it here.
    pub proxy_bin: String,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespace: "agents".into(),
            image: String::new(),
            image_pull_policy: "IfNotPresent".into(),
            agent_port: 3284,
            service_account: String::new(),
            resources: KubernetesResources::default(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            storage: KubernetesStorage::default(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            network_policy: true,
            ready_timeout_seconds: 300,
            proxy_pod_labels: BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "agentapi-proxy".to_string(),
            )]),
            proxy_namespace: String::new(),
            proxy_bin: "/usr/local/bin/agentapi-proxy".into(),
        }
    }
}

/// `kubernetes.resources`: Kubernetes quantities (`"500m"`, `"2Gi"`); empty = unset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesResources {
    pub cpu: String,
    pub memory: String,
}

impl Default for KubernetesResources {
    fn default() -> Self {
        Self { cpu: "1".into(), memory: "2Gi".into() }
    }
}

/// `kubernetes.storage`: a PersistentVolumeClaim for the workspace when `size` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesStorage {
    pub size: String,
    pub storage_class: String,
}

/// One entry of `kubernetes.tolerations`, as in a Pod spec (snake_case keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubernetesToleration {
    pub key: String,
    pub operator: String,
    pub value: String,
    pub effect: String,
    /// Only for `NoExecute`; 0 = not set.
    pub toleration_seconds: u64,
}

const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const EFFECTS: [&str; 4] = ["", "NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Problems of the `kubernetes` block; only checked when the backend is selected.
pub fn validate_kubernetes(config: &KubernetesConfig, out: &mut Findings) {
    if !is_dns_label(&config.namespace) {
        out.problems.push(format!(
            "`kubernetes.namespace`: {:?} is not a DNS-1123 label",
            config.namespace
        ));
    }
    if config.image.trim().is_empty() {
        out.problems.push("`kubernetes.image` must name the agent image".into());
    }
    if !PULL_POLICIES.contains(&config.image_pull_policy.as_str()) {
        out.problems.push(format!(
            "`kubernetes.image_pull_policy`: expected one of {}, got {:?}",
            PULL_POLICIES.join(", "),
            config.image_pull_policy
        ));
    }
    if config.agent_port == 0 {
        out.problems.push("`kubernetes.agent_port` must be between 1 and 65535".into());
    }
    if !config.proxy_namespace.is_empty() && !is_dns_label(&config.proxy_namespace) {
        out.problems.push(format!(
            "`kubernetes.proxy_namespace`: {:?} is not a DNS-1123 label",
            config.proxy_namespace
        ));
    }
    if !config.service_account.is_empty() && !is_dns_subdomain(&config.service_account) {
        out.problems.push(format!(
            "`kubernetes.service_account`: {:?} is not a valid name",
            config.service_account
        ));
    }
    for (value, key) in [
        (&config.resources.cpu, "kubernetes.resources.cpu"),
        (&config.resources.memory, "kubernetes.resources.memory"),
        (&config.storage.size, "kubernetes.storage.size"),
    ] {
        if !value.is_empty() && !is_quantity(value) {
            out.problems.push(format!("`{key}`: {value:?} is not a Kubernetes quantity"));
        }
    }
    for (index, toleration) in config.tolerations.iter().enumerate() {
        if !["", "Exists", "Equal"].contains(&toleration.operator.as_str()) {
            out.problems.push(format!(
                "`kubernetes.tolerations[{index}].operator`: expected Exists or Equal"
            ));
        }
        if !EFFECTS.contains(&toleration.effect.as_str()) {
            out.problems.push(format!(
                "`kubernetes.tolerations[{index}].effect`: expected one of {}",
                EFFECTS[1..].join(", ")
            ));
        }
    }
    for (map, key) in [
        (&config.labels, "kubernetes.labels"),
        (&config.node_selector, "kubernetes.node_selector"),
        (&config.proxy_pod_labels, "kubernetes.proxy_pod_labels"),
    ] {
        for (name, value) in map {
            if !is_qualified_name(name) || !is_label_value(value) {
                out.problems.push(format!("`{key}`: {name:?}={value:?} is not a valid label"));
            }
        }
    }
    for name in config.annotations.keys() {
        if !is_qualified_name(name) {
            out.problems.push(format!("`kubernetes.annotations`: {name:?} is not a valid key"));
        }
    }
    if config.network_policy && config.proxy_pod_labels.is_empty() {
        out.problems.push(
            "`kubernetes.proxy_pod_labels` must not be empty while `network_policy` is on".into(),
        );
    }
    if config.ready_timeout_seconds == 0 {
        out.problems.push("`kubernetes.ready_timeout_seconds` must be at least 1".into());
    }
}

/// A DNS-1123 label: lowercase alphanumerics and `-`, 1–63, alphanumeric at both ends.
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// A label value: empty, or 1–63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn is_label_value(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.is_empty()
        || (bytes.len() <= 63
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric))
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name that
/// is a non-empty label value.
pub fn is_qualified_name(text: &str) -> bool {
    let (prefix, name) = match text.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, text),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// A Kubernetes quantity: a decimal number with an optional binary or decimal suffix.
pub fn is_quantity(text: &str) -> bool {
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let digits_ok = !number.is_empty()
        && number != "."
        && number.matches('.').count() <= 1
        && number.len() <= 20;
    let suffix_ok = ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
        .contains(&suffix);
    digits_ok && suffix_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quantities_follow_the_api_server_rules() {
        assert!(is_dns_label("apx-0f4c"));
        assert!(!is_dns_label("-apx") && !is_dns_label("Apx") && !is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_qualified_name("agentapi-proxy/session-id"));
        assert!(is_qualified_name("team"));
        assert!(!is_qualified_name("bad key") && !is_qualified_name("a/"));
        assert!(is_quantity("500m") && is_quantity("2Gi") && is_quantity("1.5"));
        assert!(!is_quantity("2 GiB") && !is_quantity("Gi") && !is_quantity("1..5"));
    }

    #[test]
    fn the_defaults_are_valid_once_an_image_is_named() {
        let mut config = KubernetesConfig::default();
        let mut out = Findings::default();
        validate_kubernetes(&config, &mut out);
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        config.image = "example/agent:1".into();
        let mut out = Findings::default();
        validate_kubernetes(&config, &mut out);
        assert!(out.problems.is_empty(), "{:?}", out.problems);
    }

    #[test]
    fn bad_values_are_each_reported() {
        let config = KubernetesConfig {
            namespace: "Agents".into(),
            image: "x".into(),
            image_pull_policy: "Sometimes".into(),
            agent_port: 0,
            resources: KubernetesResources { cpu: "lots".into(), memory: "2Gi".into() },
            labels: BTreeMap::from([("ok".into(), "not ok!".into())]),
            ..KubernetesConfig::default()
        };
        let mut out = Findings::default();
        validate_kubernetes(&config, &mut out);
        assert_eq!(out.problems.len(), 5, "{:?}", out.problems);
    }

    #[test]
    fn selecting_the_backend_validates_the_block() {
        let mut config = super::super::Config::default();
        config.agent.backend = KUBERNETES_BACKEND.into();
        let problems = super::super::validate::validate(&config).problems;
        assert!(problems.iter().any(|p| p.contains("`kubernetes.image`")), "{problems:?}");
        config.kubernetes.image = "example/agent:1".into();
        let findings = super::super::validate::validate(&config);
        assert!(!findings.problems.iter().any(|p| p.contains("kubernetes")), "{findings:?}");
        let unreachable =
            |warnings: &[String]| warnings.iter().any(|w| w.contains("APX_PROXY_URL"));
        assert!(unreachable(&findings.warnings), "no public_url: {findings:?}");
        config.server.public_url = "http://agentapi-proxy.agentapi-proxy.svc:8080".into();
        assert!(!unreachable(&super::super::validate::validate(&config).warnings));
        config.agent.backend = "local".into();
        let problems = super::super::validate::validate(&config).problems;
        assert!(!problems.iter().any(|p| p.contains("kubernetes")), "{problems:?}");
    }

    #[test]
    fn the_file_shape_types_every_key_and_warns_of_unknown_ones() {
        let shape = super::super::shape::config_shape();
        let file = serde_json::json!({
            "agent": {"backend": "kubernetes"},
            "kubernetes": {
                "agent_port": 3284, "labels": {"team": "red"}, "node_selector": {"pool": "a"},
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule",
                                 "toleration_seconds": 30}],
                "storage": {"size": "1Gi"}, "imagee": "typo"
            }
        });
        let mut out = Findings::default();
        super::super::shape::check(&file, &shape, "", &mut out);
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        assert!(out.warnings.iter().any(|w| w.contains("kubernetes.imagee")), "{:?}", out.warnings);
        let bad = serde_json::json!({
            "agent": {"backend": "mainframe"},
            "kubernetes": {"agent_port": 70000, "tolerations": ["x"], "labels": {"a": 1}}
        });
        let mut out = Findings::default();
        super::super::shape::check(&bad, &shape, "", &mut out);
        assert_eq!(out.problems.len(), 4, "{:?}", out.problems);
    }
}
