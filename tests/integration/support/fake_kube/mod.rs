//! A fake Kubernetes API server on loopback for the Kubernetes backend's tests: the subset
//! the backend uses (create, get, list, watch and delete of Pods, Services, Secrets,
//! PersistentVolumeClaims and NetworkPolicies; Pod logs), with the wire behaviour of the
//! real one: `Status` errors, resourceVersions, label and field selectors, watches as JSON
//! lines that resume from a resourceVersion and end with a 410 `ERROR` event when it is too
//! old, graceful Pod deletion, garbage collection through ownerReferences (background and
//! foreground propagation). Its kubelet (`kubelet.rs`) runs Pods as local processes on
//! loopback addresses of their own and its kube-proxy (`kube_proxy.rs`) forwards Service
//! cluster IPs to Ready Pods, so the proxy path in the tests is real.
//!
//! Knobs for failure modes: image pull back-off, unschedulable Pods, eviction, compaction
//! (410 Gone), dropped watches, the API server answering 503, and the API server going down
//! (connections refused) and coming back on the same address.

mod api;
pub mod kube_proxy;
pub mod kubelet;
pub mod selector;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::task::JoinSet;

use store::{Key, Objects, Resource};

/// What the failure knobs are set to.
#[derive(Debug, Default)]
pub struct Knobs {
    pub unschedulable: bool,
    /// Every request is answered `503 ServiceUnavailable` (an API server that is up but
    /// cannot serve, e.g. while its storage is away).
    pub unavailable: bool,
    pub failing_images: HashSet<String>,
}

/// The fake cluster's state, shared by the API handlers, the kubelet and the kube-proxy.
#[derive(Debug)]
pub struct Cluster {
    objects: Mutex<Objects>,
    /// The latest resourceVersion, for watches to wait on.
    latest: tokio::sync::watch::Sender<u64>,
    /// Bumped to end every open watch.
    watch_generation: tokio::sync::watch::Sender<u64>,
    knobs: Mutex<Knobs>,
    containers: Mutex<HashMap<Key, kubelet::Container>>,
    services: Mutex<HashMap<Key, JoinSet<()>>>,
    evicted: Mutex<HashSet<Key>>,
    requests: Mutex<Vec<String>>,
    /// The /24 on loopback this fake hands out addresses from (unique while it runs: built
    /// from its own port) and the next host number.
    network: [u8; 3],
    next_host: AtomicU32,
    scratch: tempfile::TempDir,
}

impl Cluster {
    pub fn objects(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn containers(&self) -> MutexGuard<'_, HashMap<Key, kubelet::Container>> {
        self.containers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn services(&self) -> MutexGuard<'_, HashMap<Key, JoinSet<()>>> {
        self.services.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_evicted(&self, key: &Key) -> bool {
        self.evicted.lock().unwrap_or_else(|p| p.into_inner()).contains(key)
    }

    /// Tells watches that something changed.
    fn changed(&self, objects: &Objects) {
        self.latest.send_replace(objects.resource_version());
    }

    /// Applies `change` to a Pod's `status` (a MODIFIED event); nothing if it is gone.
    pub fn update_status(&self, key: &Key, change: impl FnOnce(&mut Value)) {
        let mut objects = self.objects();
        objects.update(key, |pod| {
            if !pod["status"].is_object() {
                pod["status"] = serde_json::json!({});
            }
            change(&mut pod["status"]);
        });
        self.changed(&objects);
    }

    /// A fresh loopback address of this fake's network.
    pub fn next_address(&self) -> Ipv4Addr {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed).clamp(2, 254) as u8;
        let [a, b, c] = self.network;
        Ipv4Addr::new(a, b, c, host)
    }

    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }
}

/// A running fake API server; everything it started ends when it is dropped.
pub struct FakeKube {
    cluster: Arc<Cluster>,
    address: SocketAddr,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FakeKube {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let port = address.port();
        let (latest, _) = tokio::sync::watch::channel(0);
        let (watch_generation, _) = tokio::sync::watch::channel(0);
        let cluster = Arc::new(Cluster {
            objects: Mutex::default(),
            latest,
            watch_generation,
            knobs: Mutex::default(),
            containers: Mutex::default(),
            services: Mutex::default(),
            evicted: Mutex::default(),
            requests: Mutex::default(),
            network: [127, (port >> 8) as u8, (port & 0xff) as u8],
            next_host: AtomicU32::new(2),
            scratch: tempfile::tempdir().expect("scratch dir"),
        });
        let server = tokio::spawn(api::serve(cluster.clone(), listener));
        Self { cluster, address, server: Mutex::new(Some(server)) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig pointing at this fake (no credentials: the fake checks none).
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The stored objects of `resource` in `namespace`.
    pub fn objects(&self, resource: Resource, namespace: &str) -> Vec<Value> {
        self.cluster.objects().list(resource, Some(namespace)).into_iter().cloned().collect()
    }

    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        let key = Key { resource, namespace: namespace.into(), name: name.into() };
        self.cluster.objects().get(&key).cloned()
    }

    /// Every request so far as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.cluster.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Pods of this image stay Pending in `ImagePullBackOff`.
    pub fn fail_image_pull(&self, image: &str) {
        self.cluster.knobs().failing_images.insert(image.to_string());
    }

    /// Every request gets `503 ServiceUnavailable` while `unavailable` is true.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.cluster.knobs().unavailable = unavailable;
    }

    /// New Pods stay Pending, `Unschedulable`.
    pub fn set_unschedulable(&self, unschedulable: bool) {
        self.cluster.knobs().unschedulable = unschedulable;
    }

    /// Evicts a running Pod as the kubelet does under node pressure: its container is
    /// killed and it becomes `Failed` with reason `Evicted`.
    pub async fn evict(&self, namespace: &str, pod: &str) {
        let key = Key { resource: Resource::Pods, namespace: namespace.into(), name: pod.into() };
        self.cluster.evicted.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone());
        kubelet::stop_container(&self.cluster, &key, std::time::Duration::ZERO).await;
        self.cluster.update_status(&key, |status| {
            status["phase"] = "Failed".into();
            status["reason"] = "Evicted".into();
            status["message"] = "The node was low on resource: memory.".into();
            status["conditions"] = serde_json::json!([{"type": "Ready", "status": "False"}]);
        });
    }

    /// Forgets the event history: watches resuming from an older version get 410 Gone.
    pub fn compact(&self) {
        self.cluster.objects().compact();
    }

    /// Ends every open watch (as a load balancer or API server restart does).
    pub fn drop_watches(&self) {
        self.cluster.watch_generation.send_modify(|generation| *generation += 1);
    }

    /// Stops answering: the listener closes and open connections are cut.
    pub fn go_down(&self) {
        if let Some(server) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            server.abort();
        }
        self.drop_watches();
    }

    /// Answers again, on the same address.
    pub async fn come_back(&self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.expect("rebind");
        let server = tokio::spawn(api::serve(self.cluster.clone(), listener));
        *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.go_down();
        for container in self.cluster.containers().values() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(container.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        self.cluster.services().clear();
    }
}
