//! The fake's kube-proxy: each Service gets a cluster IP of its own on loopback, and a
//! listener per port there that forwards every connection to a Ready Pod its selector
//! matches (`targetPort`, else `port`). With no Ready Pod the connection is refused
//! (closed at once), as kube-proxy's REJECT rule does.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::Cluster;
use super::selector::Selector;
use super::store::{Key, Resource};

/// Starts forwarding for the Service `key` at `cluster_ip`; returns the listener tasks.
pub async fn serve(
    cluster: Arc<Cluster>,
    key: Key,
    service: &Value,
    cluster_ip: Ipv4Addr,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let selector = service["spec"]["selector"].clone();
    for port in service["spec"]["ports"].as_array().into_iter().flatten() {
        let Some(listen) = port["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        let target =
            port["targetPort"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(listen);
        let Ok(listener) = TcpListener::bind((cluster_ip, listen)).await else { continue };
        let (cluster, key, selector) = (cluster.clone(), key.clone(), selector.clone());
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let Some(pod_ip) = ready_endpoint(&cluster, &key.namespace, &selector) else {
                    drop(inbound);
                    continue;
                };
                connections.spawn(forward(inbound, SocketAddr::from((pod_ip, target))));
            }
        });
    }
    tasks
}

fn ready_endpoint(cluster: &Cluster, namespace: &str, selector: &Value) -> Option<Ipv4Addr> {
    let wanted: Vec<String> = selector
        .as_object()?
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    let selector = Selector::parse(&wanted.join(",")).ok()?;
    let objects = cluster.objects();
    objects
        .list(Resource::Pods, Some(namespace))
        .into_iter()
        .filter(|pod| selector.matches_object(pod))
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter(|pod| {
            pod["status"]["conditions"].as_array().is_some_and(|conditions| {
                conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .find_map(|pod| pod["status"]["podIP"].as_str()?.parse().ok())
}

async fn forward(mut inbound: TcpStream, to: SocketAddr) {
    let Ok(mut outbound) = TcpStream::connect(to).await else { return };
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}
