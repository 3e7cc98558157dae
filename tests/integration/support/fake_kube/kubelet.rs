//! The fake's kubelet: runs a Pod's first container as a local process (its command and
//! args with `$(VAR)` expanded, its `env`/`envFrom` resolved from Secrets and the downward
//! API's `status.podIP`, `metadata.name`, `metadata.namespace`), gives each Pod its own
//! loopback address, probes `readinessProbe.httpGet` with its headers, and reports what a
//! kubelet reports: phase, conditions, container states, exit codes, and the failure modes
//! the tests ask for (image pull back-off, unschedulable, eviction). Time runs fast: probes
//! every 20 ms whatever `periodSeconds` says. Volume mounts are directories under the Pod's
//! scratch directory (`mount_volumes`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::Cluster;
use super::store::{Key, Resource, now_rfc3339};

const PROBE_PERIOD: Duration = Duration::from_millis(20);

/// A Pod's running container.
#[derive(Debug)]
pub struct Container {
    pub pid: i32,
    pub ip: Ipv4Addr,
    pub log: PathBuf,
}

/// Starts the Pod `key` as a kubelet would, unless a failure mode applies.
pub async fn run_pod(cluster: Arc<Cluster>, key: Key) {
    let Some(pod) = cluster.objects().get(&key).cloned() else { return };
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string();
    if cluster.knobs().unschedulable {
        cluster.update_status(&key, |status| {
            status["phase"] = "Pending".into();
            status["conditions"] = json!([{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu."}]);
        });
        return;
    }
    let container_name =
        pod["spec"]["containers"][0]["name"].as_str().unwrap_or("agent").to_string();
    if cluster.knobs().failing_images.contains(&image) {
        cluster.update_status(&key, |status| {
            status["phase"] = "Pending".into();
            status["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
            status["containerStatuses"] = json!([{"name": container_name, "ready": false,
                "restartCount": 0, "image": image, "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\"")}}}]);
        });
        return;
    }
    let ip = cluster.next_address();
    match start_container(&cluster, &key, &pod, ip) {
        Ok(mut child) => {
            let pid = child.id().map_or(0, |pid| pid as i32);
            let log = cluster.scratch_path(&format!("{}-{}.log", key.namespace, key.name));
            cluster.containers().insert(key.clone(), Container { pid, ip, log });
            cluster.update_status(&key, |status| {
                status["phase"] = "Running".into();
                status["podIP"] = ip.to_string().into();
                status["podIPs"] = json!([{"ip": ip.to_string()}]);
                status["hostIP"] = "127.0.0.1".into();
                status["startTime"] = now_rfc3339().into();
                status["conditions"] = conditions(false);
                status["containerStatuses"] = json!([{"name": container_name, "ready": false,
                    "restartCount": 0, "image": image, "imageID": "", "started": true,
                    "state": {"running": {"startedAt": now_rfc3339()}}}]);
            });
            let probing = tokio::spawn(probe_until_ready(cluster.clone(), key.clone(), pod, ip));
            let status = child.wait().await;
            probing.abort();
            cluster.containers().remove(&key);
            let code = status.ok().and_then(|status| {
                use std::os::unix::process::ExitStatusExt;
                status.code().or_else(|| status.signal().map(|signal| 128 + signal))
            });
            let code = code.unwrap_or(137);
            if cluster.is_evicted(&key) {
                return;
            }
            cluster.update_status(&key, |status| {
                status["phase"] = if code == 0 { "Succeeded" } else { "Failed" }.into();
                status["conditions"] = conditions(false);
                status["containerStatuses"][0]["ready"] = false.into();
                status["containerStatuses"][0]["state"] = json!({"terminated": {
                    "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                    "finishedAt": now_rfc3339()}});
            });
        }
        Err(message) => cluster.update_status(&key, |status| {
            status["phase"] = "Failed".into();
            status["containerStatuses"] = json!([{"name": container_name, "ready": false,
                "restartCount": 0, "image": image, "imageID": "",
                "state": {"terminated": {"exitCode": 128, "reason": "StartError",
                    "message": message}}}]);
        }),
    }
}

fn conditions(ready: bool) -> Value {
    let ready = if ready { "True" } else { "False" };
    json!([
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "ContainersReady", "status": ready},
        {"type": "Ready", "status": ready},
    ])
}

fn start_container(
    cluster: &Cluster,
    key: &Key,
    pod: &Value,
    ip: Ipv4Addr,
) -> Result<tokio::process::Child, String> {
    let container = &pod["spec"]["containers"][0];
    let workdir = cluster.scratch_path(&format!("{}-{}", key.namespace, key.name));
    let mut environment = environment(cluster, key, container, ip)?;
    mount_volumes(container, &workdir, &mut environment)?;
    let words = |field: &str| -> Vec<String> {
        container[field]
            .as_array()
            .map(|items| {
                items.iter().filter_map(Value::as_str).map(|w| expand(w, &environment)).collect()
            })
            .unwrap_or_default()
    };
    let mut argv = words("command");
    argv.extend(words("args"));
    let Some((program, args)) = argv.split_first() else {
        return Err(
            "the fake kubelet needs an explicit command (images have no entrypoint here)".into()
        );
    };
    std::fs::create_dir_all(&workdir).map_err(|error| error.to_string())?;
    let log_path = cluster.scratch_path(&format!("{}-{}.log", key.namespace, key.name));
    let log = std::fs::File::create(&log_path).map_err(|error| error.to_string())?;
    let errors = log.try_clone().map_err(|error| error.to_string())?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &workdir)
        .env("HOSTNAME", &key.name)
        .envs(&environment)
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(errors)
        .process_group(0)
        .kill_on_drop(true);
    command.spawn().map_err(|error| format!("failed to start {program}: {error}"))
}

/// Stands in for the container's volume mounts, which a local process cannot have: each
/// `volumeMounts[].mountPath` becomes a directory under the Pod's scratch directory, and
/// environment values naming a path inside a mount are pointed there (the agent then finds
/// its workspace where the Pod spec put it).
fn mount_volumes(
    container: &Value,
    workdir: &std::path::Path,
    environment: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let Some(path) = mount["mountPath"].as_str() else { continue };
        let local = workdir.join("mounts").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&local).map_err(|error| error.to_string())?;
        for value in environment.values_mut() {
            if let Some(rest) = value.strip_prefix(path)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                *value = format!("{}{rest}", local.display());
            }
        }
    }
    Ok(())
}

/// The container's environment: `env` (values, Secret keys, downward API), then `envFrom`
/// Secrets for names not set yet, as the kubelet resolves them.
fn environment(
    cluster: &Cluster,
    key: &Key,
    container: &Value,
    ip: Ipv4Addr,
) -> Result<BTreeMap<String, String>, String> {
    let mut environment = BTreeMap::new();
    let secret = |name: &str| -> Result<BTreeMap<String, String>, String> {
        let secret_key = Key {
            resource: Resource::Secrets,
            namespace: key.namespace.clone(),
            name: name.into(),
        };
        let object = cluster
            .objects()
            .get(&secret_key)
            .cloned()
            .ok_or_else(|| format!("secret \"{name}\" not found"))?;
        let mut values = BTreeMap::new();
        if let Some(data) = object["data"].as_object() {
            for (k, v) in data {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap_or_default())
                    .map_err(|_| format!("secret \"{name}\" has invalid base64 in {k}"))?;
                values.insert(k.clone(), String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        if let Some(data) = object["stringData"].as_object() {
            for (k, v) in data {
                values.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        Ok(values)
    };
    for item in container["env"].as_array().into_iter().flatten() {
        let Some(name) = item["name"].as_str() else { continue };
        let value = if let Some(value) = item["value"].as_str() {
            expand(value, &environment)
        } else if let Some(reference) = item["valueFrom"]["secretKeyRef"].as_object() {
            let secret_name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
            let wanted = reference.get("key").and_then(Value::as_str).unwrap_or_default();
            secret(secret_name)?
                .remove(wanted)
                .ok_or_else(|| format!("couldn't find key {wanted} in Secret {secret_name}"))?
        } else if let Some(path) = item["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "status.podIP" => ip.to_string(),
                "metadata.name" => key.name.clone(),
                "metadata.namespace" => key.namespace.clone(),
                other => return Err(format!("unsupported fieldPath {other}")),
            }
        } else {
            String::new()
        };
        environment.insert(name.to_string(), value);
    }
    for source in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(name) = source["secretRef"]["name"].as_str() {
            for (k, v) in secret(name)? {
                environment.entry(k).or_insert(v);
            }
        }
    }
    Ok(environment)
}

/// `$(NAME)` replaced by a defined variable, `$$` by `$`; anything else kept as written.
pub fn expand(text: &str, environment: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(index) = rest.find('$') {
        out.push_str(&rest[..index]);
        let after = &rest[index + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
            && let Some(value) = environment.get(&body[..end])
        {
            out.push_str(value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

async fn probe_until_ready(cluster: Arc<Cluster>, key: Key, pod: Value, ip: Ipv4Addr) {
    let probe = &pod["spec"]["containers"][0]["readinessProbe"]["httpGet"];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("a reqwest client");
    loop {
        let ready = if probe.is_object() {
            let port = probe["port"].as_u64().unwrap_or(0);
            let path = probe["path"].as_str().unwrap_or("/");
            let mut request = client.get(format!("http://{ip}:{port}{path}"));
            for header in probe["httpHeaders"].as_array().into_iter().flatten() {
                if let (Some(name), Some(value)) =
                    (header["name"].as_str(), header["value"].as_str())
                {
                    request = request.header(name, value);
                }
            }
            request.send().await.is_ok_and(|answer| (200..400).contains(&answer.status().as_u16()))
        } else {
            true
        };
        if ready {
            cluster.update_status(&key, |status| {
                status["conditions"] = conditions(true);
                status["containerStatuses"][0]["ready"] = true.into();
            });
            return;
        }
        tokio::time::sleep(PROBE_PERIOD).await;
    }
}

/// Stops a Pod's container: SIGTERM to its process group, SIGKILL after `grace`.
pub async fn stop_container(cluster: &Cluster, key: &Key, grace: Duration) {
    let Some(pid) = cluster.containers().get(key).map(|container| container.pid) else { return };
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while cluster.containers().contains_key(key) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
    while cluster.containers().contains_key(key) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
