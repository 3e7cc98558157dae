//! The fake API server's object store: the resource kinds we serve, objects as JSON with
//! the metadata the real server keeps (uid, resourceVersion, creationTimestamp,
//! deletionTimestamp), one cluster-wide resourceVersion counter, the event history watches
//! resume from, and compaction (resourceVersions older than the history give 410 Gone).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

/// The resources the fake serves (what the Kubernetes backend uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Pods,
    Services,
    Secrets,
    PersistentVolumeClaims,
    NetworkPolicies,
}

impl Resource {
    pub fn parse(group: &str, plural: &str) -> Option<Self> {
        match (group, plural) {
            ("", "pods") => Some(Self::Pods),
            ("", "services") => Some(Self::Services),
            ("", "secrets") => Some(Self::Secrets),
            ("", "persistentvolumeclaims") => Some(Self::PersistentVolumeClaims),
            ("networking.k8s.io", "networkpolicies") => Some(Self::NetworkPolicies),
            _ => None,
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Self::Pods => "pods",
            Self::Services => "services",
            Self::Secrets => "secrets",
            Self::PersistentVolumeClaims => "persistentvolumeclaims",
            Self::NetworkPolicies => "networkpolicies",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Self::Pods => "Pod",
            Self::Services => "Service",
            Self::Secrets => "Secret",
            Self::PersistentVolumeClaims => "PersistentVolumeClaim",
            Self::NetworkPolicies => "NetworkPolicy",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Self::NetworkPolicies => "networking.k8s.io/v1",
            _ => "v1",
        }
    }

    pub const ALL: [Resource; 5] = [
        Self::Pods,
        Self::Services,
        Self::Secrets,
        Self::PersistentVolumeClaims,
        Self::NetworkPolicies,
    ];
}

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: Resource,
    pub namespace: String,
    pub name: String,
}

/// A change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Event {
    pub resource_version: u64,
    pub resource: Resource,
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub object: Value,
}

/// How many events watches can resume from before they get 410 Gone.
const HISTORY: usize = 10_000;

#[derive(Debug, Default)]
pub struct Objects {
    resource_version: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Event>,
    /// Watches from a resourceVersion below this one get 410 Gone.
    oldest_resumable: u64,
    next_uid: u64,
}

/// A refusal in the API server's words (a `Status` object).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }

    pub fn not_found(key: &Key) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{}\" not found", key.resource.plural(), key.name),
        }
    }

    pub fn gone(from: u64, oldest: u64) -> Self {
        Self {
            code: 410,
            reason: "Expired",
            message: format!("too old resource version: {from} ({oldest})"),
        }
    }
}

impl Objects {
    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of `resource` in `namespace` (every namespace when `None`).
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|(key, _)| {
                key.resource == resource && namespace.is_none_or(|ns| ns == key.namespace)
            })
            .map(|(_, object)| object)
            .collect()
    }

    /// Adds a new object: fills in the metadata the server owns. 409 when it exists.
    pub fn create(
        &mut self,
        resource: Resource,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, Refusal> {
        let metadata = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| invalid("metadata: Required value"))?;
        let name = match metadata.get("name").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) => format!("{prefix}{:05x}", self.next_uid + 1),
                None => return Err(invalid("metadata.name: Required value: name is required")),
            },
        };
        if !is_dns_label(&name) {
            return Err(invalid(&format!("metadata.name: Invalid value: \"{name}\"")));
        }
        let key = Key { resource, namespace: namespace.to_string(), name: name.clone() };
        if self.objects.contains_key(&key) {
            return Err(Refusal {
                code: 409,
                reason: "AlreadyExists",
                message: format!("{} \"{name}\" already exists", resource.plural()),
            });
        }
        self.next_uid += 1;
        metadata.insert("name".into(), name.into());
        metadata.insert("namespace".into(), namespace.into());
        metadata
            .insert("uid".into(), format!("00000000-0000-4000-8000-{:012x}", self.next_uid).into());
        metadata.insert("creationTimestamp".into(), now_rfc3339().into());
        object["kind"] = resource.kind().into();
        object["apiVersion"] = resource.api_version().into();
        self.commit(key.clone(), "ADDED", object);
        Ok(self.objects.get(&key).cloned().unwrap_or_default())
    }

    /// Replaces a stored object with `change` applied to it (a new resourceVersion).
    pub fn update(&mut self, key: &Key, change: impl FnOnce(&mut Value)) -> Option<Value> {
        let mut object = self.objects.get(key)?.clone();
        change(&mut object);
        self.commit(key.clone(), "MODIFIED", object);
        self.objects.get(key).cloned()
    }

    /// Removes an object for good.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let object = self.objects.get(key)?.clone();
        self.commit(key.clone(), "DELETED", object.clone());
        self.objects.remove(key);
        self.history.back().map(|event| event.object.clone())
    }

    fn commit(&mut self, key: Key, kind: &'static str, mut object: Value) {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = self.resource_version.to_string().into();
        if kind != "DELETED" {
            self.objects.insert(key.clone(), object.clone());
        }
        self.history.push_back(Event {
            resource_version: self.resource_version,
            resource: key.resource,
            namespace: key.namespace,
            kind,
            object,
        });
        while self.history.len() > HISTORY {
            if let Some(dropped) = self.history.pop_front() {
                self.oldest_resumable = dropped.resource_version + 1;
            }
        }
    }

    /// Events after `from` for `resource` in `namespace`; 410 when `from` is older than the
    /// history.
    pub fn since(
        &self,
        resource: Resource,
        namespace: Option<&str>,
        from: u64,
    ) -> Result<Vec<Event>, Refusal> {
        if from + 1 < self.oldest_resumable {
            return Err(Refusal::gone(from, self.oldest_resumable));
        }
        Ok(self
            .history
            .iter()
            .filter(|event| event.resource_version > from)
            .filter(|event| {
                event.resource == resource && namespace.is_none_or(|ns| ns == event.namespace)
            })
            .cloned()
            .collect())
    }

    /// Forgets the history (as etcd compaction does): every watch from an older
    /// resourceVersion gets 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest_resumable = self.resource_version + 1;
    }

    /// The objects owned (`ownerReferences`) by the object with `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|(_, object)| {
                object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|owners| owners.iter().any(|owner| owner["uid"] == uid))
            })
            .map(|(key, _)| key.clone())
            .collect()
    }
}

fn invalid(message: &str) -> Refusal {
    Refusal { code: 422, reason: "Invalid", message: message.to_string() }
}

/// RFC 1123 label: what pod, service and secret names must be (the stricter of the rules).
fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|now| now.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
