//! The fake's HTTP surface: `/api/v1/...` and `/apis/networking.k8s.io/v1/...` paths,
//! create/get/list/watch/delete, Pod logs and `/version`, answered in the API server's
//! shapes. Connections are served by hand so that `go_down` cuts them all.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode, header};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::selector::Selector;
use super::store::{Key, Refusal, Resource, now_rfc3339};
use super::{Cluster, kube_proxy, kubelet};

pub async fn serve(cluster: Arc<Cluster>, listener: TcpListener) {
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new());
    while let Ok((stream, _)) = listener.accept().await {
        let cluster = cluster.clone();
        let http = http.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let cluster = cluster.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(cluster, request).await) }
                });
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(cluster: Arc<Cluster>, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    cluster
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{} {target}", parts.method));
    if cluster.knobs().unavailable {
        return refuse(&Refusal {
            code: 503,
            reason: "ServiceUnavailable",
            message: "the server is currently unable to handle the request".into(),
        });
    }
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default()).unwrap_or_default();
    let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
    let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["version"] => {
            return answer(
                StatusCode::OK,
                json!({"major": "1", "minor": "30", "gitVersion": "v1.30.0"}),
            );
        }
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, "v1", rest @ ..] => (*group, rest),
        _ => {
            return refuse(&Refusal {
                code: 404,
                reason: "NotFound",
                message: "the server could not find the requested resource".into(),
            });
        }
    };
    let route = match rest {
        ["namespaces", ns, plural] => {
            Resource::parse(group, plural).map(|r| (r, Some(*ns), None, false))
        }
        ["namespaces", ns, plural, name] => {
            Resource::parse(group, plural).map(|r| (r, Some(*ns), Some(*name), false))
        }
        ["namespaces", ns, "pods", name, "log"] if group.is_empty() => {
            Some((Resource::Pods, Some(*ns), Some(*name), true))
        }
        [plural] => Resource::parse(group, plural).map(|r| (r, None, None, false)),
        _ => None,
    };
    let Some((resource, namespace, name, log)) = route else {
        return refuse(&Refusal {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
        });
    };
    let key = |name: &str| Key {
        resource,
        namespace: namespace.unwrap_or_default().to_string(),
        name: name.to_string(),
    };
    let result = match (&parts.method, namespace, name) {
        (&Method::GET, _, Some(name)) if log => logs(&cluster, &key(name), &query),
        (&Method::GET, _, Some(name)) => get(&cluster, &key(name)),
        (&Method::GET, namespace, None) if is_true(query.get("watch")) => {
            return watch(cluster, resource, namespace.map(str::to_string), &query);
        }
        (&Method::GET, namespace, None) => list(&cluster, resource, namespace, &query),
        (&Method::POST, Some(namespace), None) => {
            create(&cluster, resource, namespace, &body).await
        }
        (&Method::DELETE, Some(_), Some(name)) => delete(&cluster, key(name), &query, &body).await,
        _ => Err(Refusal {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("{} is not supported here", parts.method),
        }),
    };
    match result {
        Ok((status, Value::String(text))) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(text))
            .unwrap_or_default(),
        Ok((status, value)) => answer(status, value),
        Err(refusal) => refuse(&refusal),
    }
}

type Answer = Result<(StatusCode, Value), Refusal>;

fn is_true(value: Option<&String>) -> bool {
    matches!(value.map(String::as_str), Some("true" | "1"))
}

fn answer(status: StatusCode, value: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

fn refuse(refusal: &Refusal) -> Response<Body> {
    answer(
        StatusCode::from_u16(refusal.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        refusal.status(),
    )
}

fn selectors(query: &BTreeMap<String, String>) -> Result<(Selector, Selector), Refusal> {
    let parse = |name: &str| {
        Selector::parse(query.get(name).map_or("", String::as_str)).map_err(|message| Refusal {
            code: 400,
            reason: "BadRequest",
            message,
        })
    };
    Ok((parse("labelSelector")?, parse("fieldSelector")?))
}

fn get(cluster: &Cluster, key: &Key) -> Answer {
    let objects = cluster.objects();
    let object = objects.get(key).cloned().ok_or_else(|| Refusal::not_found(key))?;
    Ok((StatusCode::OK, object))
}

fn list(
    cluster: &Cluster,
    resource: Resource,
    namespace: Option<&str>,
    query: &BTreeMap<String, String>,
) -> Answer {
    let (labels, fields) = selectors(query)?;
    let objects = cluster.objects();
    let items: Vec<Value> = objects
        .list(resource, namespace)
        .into_iter()
        .filter(|object| labels.matches_object(object) && fields.matches_fields(object))
        .cloned()
        .collect();
    Ok((
        StatusCode::OK,
        json!({
            "kind": format!("{}List", resource.kind()), "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": objects.resource_version().to_string()},
            "items": items,
        }),
    ))
}

async fn create(
    cluster: &Arc<Cluster>,
    resource: Resource,
    namespace: &str,
    body: &Bytes,
) -> Answer {
    let mut object: Value = serde_json::from_slice(body).map_err(|error| Refusal {
        code: 400,
        reason: "BadRequest",
        message: format!("the object provided is unrecognized: {error}"),
    })?;
    if let Some(given) = object["metadata"]["namespace"].as_str()
        && given != namespace
    {
        return Err(Refusal {
            code: 400,
            reason: "BadRequest",
            message: "the namespace of the provided object does not match the namespace sent on the request".into(),
        });
    }
    let cluster_ip = (resource == Resource::Services
        && object["spec"]["clusterIP"].as_str() != Some("None"))
    .then(|| cluster.next_address());
    if let Some(ip) = cluster_ip {
        object["spec"]["clusterIP"] = ip.to_string().into();
        object["spec"]["clusterIPs"] = json!([ip.to_string()]);
    }
    if resource == Resource::Pods {
        object["status"] = json!({"phase": "Pending"});
    }
    if resource == Resource::Secrets
        && let Some(Value::Object(plain)) =
            object.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        use base64::Engine;
        for (name, value) in plain {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(value.as_str().unwrap_or_default());
            object["data"][name] = encoded.into();
        }
    }
    let created = {
        let mut objects = cluster.objects();
        let created = objects.create(resource, namespace, object)?;
        cluster.changed(&objects);
        created
    };
    let name = created["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let key = Key { resource, namespace: namespace.into(), name };
    if resource == Resource::Pods {
        tokio::spawn(kubelet::run_pod(cluster.clone(), key));
    } else if let Some(ip) = cluster_ip {
        let tasks = kube_proxy::serve(cluster.clone(), key.clone(), &created, ip).await;
        cluster.services().insert(key, tasks);
    }
    Ok((StatusCode::CREATED, created))
}

fn option(query: &BTreeMap<String, String>, body: &Value, name: &str) -> Option<String> {
    query.get(name).cloned().or_else(|| match &body[name] {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    })
}

async fn delete(
    cluster: &Arc<Cluster>,
    key: Key,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Answer {
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let propagation =
        option(query, &options, "propagationPolicy").unwrap_or_else(|| "Background".into());
    let grace = option(query, &options, "gracePeriodSeconds").and_then(|g| g.parse::<u64>().ok());
    let object = cluster.objects().get(&key).cloned().ok_or_else(|| Refusal::not_found(&key))?;
    if !object["metadata"]["deletionTimestamp"].is_null() {
        return Ok((StatusCode::OK, object));
    }
    if key.resource == Resource::Pods {
        let grace = grace
            .or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_u64())
            .unwrap_or(30);
        let marked = mark_deleting(cluster, &key, Some(grace), false);
        let cluster = cluster.clone();
        tokio::spawn(async move {
            kubelet::stop_container(&cluster, &key, Duration::from_secs(grace)).await;
            remove(&cluster, &key);
        });
        return Ok((StatusCode::OK, marked));
    }
    let uid = object["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    match propagation.as_str() {
        "Foreground" => {
            let marked = mark_deleting(cluster, &key, None, true);
            let cluster = cluster.clone();
            tokio::spawn(async move {
                collect_dependents(cluster.clone(), uid.clone()).await;
                let mut latest = cluster.latest.subscribe();
                while !cluster.objects().dependents(&uid).is_empty() {
                    let _ = latest.changed().await;
                }
                remove(&cluster, &key);
            });
            Ok((StatusCode::OK, marked))
        }
        "Orphan" => Ok((StatusCode::OK, remove(cluster, &key).unwrap_or(object))),
        _ => {
            let removed = remove(cluster, &key).unwrap_or(object);
            let cluster = cluster.clone();
            tokio::spawn(collect_dependents(cluster, uid));
            Ok((StatusCode::OK, removed))
        }
    }
}

/// The garbage collector's part: deletes every object owned by `uid` (in the background).
/// Boxed as `Send` because it and `delete` call each other.
fn collect_dependents(
    cluster: Arc<Cluster>,
    uid: String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move {
        let dependents = cluster.objects().dependents(&uid);
        for dependent in dependents {
            let _ = delete(&cluster, dependent, &BTreeMap::new(), &Bytes::new()).await;
        }
    })
}

fn mark_deleting(cluster: &Cluster, key: &Key, grace: Option<u64>, foreground: bool) -> Value {
    let mut objects = cluster.objects();
    let marked = objects.update(key, |object| {
        object["metadata"]["deletionTimestamp"] = now_rfc3339().into();
        if let Some(grace) = grace {
            object["metadata"]["deletionGracePeriodSeconds"] = grace.into();
        }
        if foreground {
            object["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        }
    });
    cluster.changed(&objects);
    marked.unwrap_or_default()
}

fn remove(cluster: &Cluster, key: &Key) -> Option<Value> {
    let removed = {
        let mut objects = cluster.objects();
        let removed = objects.remove(key);
        cluster.changed(&objects);
        removed
    };
    if key.resource == Resource::Services {
        cluster.services().remove(key);
    }
    removed
}

fn logs(cluster: &Cluster, key: &Key, query: &BTreeMap<String, String>) -> Answer {
    let pod = cluster.objects().get(key).cloned().ok_or_else(|| Refusal::not_found(key))?;
    let path = cluster.scratch_path(&format!("{}-{}.log", key.namespace, key.name));
    let Ok(text) = std::fs::read_to_string(&path) else {
        let container = pod["spec"]["containers"][0]["name"].as_str().unwrap_or_default();
        return Err(Refusal {
            code: 400,
            reason: "BadRequest",
            message: format!(
                "container \"{container}\" in pod \"{}\" is waiting to start: ContainerCreating",
                key.name
            ),
        });
    };
    let tail = query.get("tailLines").and_then(|n| n.parse::<usize>().ok());
    let lines: Vec<&str> = text.lines().collect();
    let start = tail.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = lines[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    // `limitBytes`: the first N bytes of what would be returned, as the kubelet serves it.
    if let Some(limit) = query.get("limitBytes").and_then(|n| n.parse::<usize>().ok()) {
        let mut cut = limit.min(out.len());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    Ok((StatusCode::OK, Value::String(out)))
}

/// A watch: JSON lines of `{"type", "object"}` from `resourceVersion` on (the current
/// objects as `ADDED` first when none is given), until `timeoutSeconds`, a dropped watch,
/// or a 410 `ERROR` event when the version is older than the history.
fn watch(
    cluster: Arc<Cluster>,
    resource: Resource,
    namespace: Option<String>,
    query: &BTreeMap<String, String>,
) -> Response<Body> {
    let (labels, fields) = match selectors(query) {
        Ok(selectors) => selectors,
        Err(refusal) => return refuse(&refusal),
    };
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut latest = cluster.latest.subscribe();
    let mut generation = cluster.watch_generation.subscribe();
    generation.borrow_and_update();
    let matches =
        move |object: &Value| labels.matches_object(object) && fields.matches_fields(object);
    let mut pending = VecDeque::new();
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => {
            latest.borrow_and_update();
            let objects = cluster.objects();
            for object in objects.list(resource, namespace.as_deref()) {
                if matches(object) {
                    pending.push_back(line("ADDED", object));
                }
            }
            objects.resource_version()
        }
        Some(version) => version.parse().unwrap_or(0),
    };
    struct Watch<F> {
        cluster: Arc<Cluster>,
        from: u64,
        pending: VecDeque<Bytes>,
        done: bool,
        latest: tokio::sync::watch::Receiver<u64>,
        generation: tokio::sync::watch::Receiver<u64>,
        matches: F,
    }
    let state = Watch { cluster, from, pending, done: false, latest, generation, matches };
    let stream = futures_util::stream::unfold(state, move |mut state| {
        let namespace = namespace.clone();
        async move {
            loop {
                if let Some(next) = state.pending.pop_front() {
                    return Some((Ok::<_, std::convert::Infallible>(next), state));
                }
                if state.done {
                    return None;
                }
                state.latest.borrow_and_update();
                {
                    let objects = state.cluster.objects();
                    match objects.since(resource, namespace.as_deref(), state.from) {
                        Ok(events) => {
                            for event in events {
                                if (state.matches)(&event.object) {
                                    state.pending.push_back(line(event.kind, &event.object));
                                }
                            }
                            state.from = objects.resource_version();
                        }
                        Err(refusal) => {
                            state.pending.push_back(line("ERROR", &refusal.status()));
                            state.done = true;
                        }
                    }
                }
                if !state.pending.is_empty() {
                    continue;
                }
                tokio::select! {
                    _ = state.latest.changed() => {}
                    _ = state.generation.changed() => state.done = true,
                    () = tokio::time::sleep_until(deadline) => state.done = true,
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream.boxed()))
        .unwrap_or_default()
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}
