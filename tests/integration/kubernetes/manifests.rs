//! `deploy/kubernetes/` is what operators apply: every document parses into its
//! `k8s-openapi` type without a key the type does not know (a typo would be silently
//! dropped by the API server), and the Role grants exactly the verbs the backend sends.

use std::collections::BTreeSet;
use std::path::PathBuf;

use agentapi_proxy::sessions::kubernetes::RBAC_VERBS;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn documents() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("deploy/kubernetes").flatten().collect();
    files.sort_by_key(|entry| entry.file_name());
    for entry in files {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        for value in values {
            found.push((path.display().to_string(), value));
        }
    }
    found
}

/// Parses `value` as `T` and checks nothing was lost on the way (unknown or misplaced keys).
fn typed<T: DeserializeOwned + Serialize>(file: &str, value: &Value) -> T {
    let parsed: T =
        serde_json::from_value(value.clone()).unwrap_or_else(|error| panic!("{file}: {error}"));
    let back = serde_json::to_value(&parsed).expect("serialisable");
    assert_eq!(&back, value, "{file}: keys the type does not know, or wrong types");
    parsed
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type() {
    let mut kinds = BTreeSet::new();
    for (file, value) in documents() {
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "Namespace" => drop(typed::<Namespace>(&file, &value)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(&file, &value)),
            "Role" => drop(typed::<Role>(&file, &value)),
            "RoleBinding" => drop(typed::<RoleBinding>(&file, &value)),
            "ConfigMap" => {
                let map = typed::<ConfigMap>(&file, &value);
                for (name, text) in map.data.unwrap_or_default() {
                    if name.ends_with(".json") {
                        let _: Value = serde_json::from_str(&text)
                            .unwrap_or_else(|error| panic!("{file}: {name}: {error}"));
                    }
                }
            }
            "Deployment" => {
                let deployment = typed::<Deployment>(&file, &value);
                let spec = deployment.spec.as_ref().expect("a spec");
                // Replicas share the database (leases): two, updated one at a time with
                // one always serving.
                assert_eq!(spec.replicas, Some(2), "{file}: two proxy replicas");
                let strategy = spec.strategy.as_ref().expect("a strategy");
                assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"), "{file}");
                let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate");
                assert_eq!(
                    rolling.max_unavailable,
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(0)),
                    "{file}: one replica always serves"
                );
            }
            "Service" => drop(typed::<Service>(&file, &value)),
            "NetworkPolicy" => drop(typed::<NetworkPolicy>(&file, &value)),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
        kinds.insert(kind);
    }
    for needed in
        ["Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"]
    {
        assert!(kinds.contains(needed), "deploy/kubernetes has no {needed}");
    }
}

#[test]
fn the_role_grants_exactly_the_verbs_the_backend_uses() {
    let roles: Vec<Role> = documents()
        .into_iter()
        .filter(|(_, value)| value["kind"] == "Role")
        .map(|(file, value)| typed(&file, &value))
        .collect();
    assert_eq!(roles.len(), 1);
    let mut granted = BTreeSet::new();
    for rule in roles[0].rules.clone().unwrap_or_default() {
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    let used: BTreeSet<(String, String, String)> = RBAC_VERBS
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs.iter().map(|verb| (group.to_string(), resource.to_string(), verb.to_string()))
        })
        .collect();
    assert_eq!(granted, used);
}

#[test]
fn the_deployment_reads_the_database_url_from_a_secret() {
    let (file, value) = documents()
        .into_iter()
        .find(|(_, value)| value["kind"] == "Deployment")
        .expect("a Deployment");
    let deployment: Deployment = typed(&file, &value);
    let text = serde_json::to_string(&deployment).expect("json");
    assert!(
        text.contains(r#""secretKeyRef":{"key":"url","name":"agentapi-proxy-postgres"}"#),
        "{text}"
    );
}
