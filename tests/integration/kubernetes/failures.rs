//! How the Kubernetes backend fails: the cluster's reasons (image pulls, scheduling, exit
//! codes, eviction), timeouts, watches that drop or expire, an API server that goes away,
//! and launches refused before anything is created.

use std::time::Duration;

use agentapi_proxy::sessions::kubernetes::KubeError;

use super::{
    Cluster, GRACE, IMAGE, NS, WAIT, cluster_with, deadline, nothing_left, request, session_id,
    settings, status_through,
};
use crate::support::fake_kube::store::Resource;
use crate::support::wait_until;

#[tokio::test]
async fn image_pull_back_off_and_unschedulable_pods_fail_with_the_clusters_reason() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    fake.fail_image_pull(IMAGE);
    let pod = backend.launch(&request(&session_id(2))).await.expect("launch");
    let failure = backend.wait_ready(&pod, deadline()).await.expect_err("cannot pull");
    let KubeError::PodFailed(failure) = failure else { panic!("{failure}") };
    assert_eq!(failure.reason, "ImagePullBackOff");
    assert!(failure.message.contains(IMAGE), "{failure}");
    backend.stop(&pod, GRACE).await.expect("stop");

    fake.cluster().knobs().failing_images.clear();
    fake.set_unschedulable(true);
    let pod = backend.launch(&request(&session_id(3))).await.expect("launch");
    let failure = backend.wait_ready(&pod, deadline()).await.expect_err("cannot schedule");
    let KubeError::PodFailed(failure) = failure else { panic!("{failure}") };
    assert_eq!(failure.reason, "Unschedulable");
    backend.stop(&pod, GRACE).await.expect("stop");
    assert!(nothing_left(&fake));
}

#[tokio::test]
async fn a_log_line_without_end_is_read_only_up_to_the_cap() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    let mut floods = request(&session_id(11));
    floods.script = "head -c 3000000 /dev/zero | tr '\\0' a; exit 3".into();
    let pod = backend.launch(&floods).await.expect("launch");
    backend.wait_ready(&pod, deadline()).await.expect_err("it exits");
    let logs = backend.logs(&pod, 10).await.expect("the container's log");
    let cap = usize::try_from(agentapi_proxy::sessions::kubernetes::MAX_LOG_BYTES).expect("cap");
    assert_eq!(logs.len(), cap, "one 3 MB line, read up to the cap");
    backend.stop(&pod, GRACE).await.expect("stop");
    assert!(nothing_left(&fake));
}

#[tokio::test]
async fn an_agent_that_exits_before_it_is_ready_fails_with_its_exit_code() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    let mut exits = request(&session_id(4));
    exits.script = "echo no-agent-today >&2; exit 7".into();
    let pod = backend.launch(&exits).await.expect("launch");
    let failure = backend.wait_ready(&pod, deadline()).await.expect_err("it exits");
    let KubeError::PodFailed(failure) = failure else { panic!("{failure}") };
    assert_eq!(failure.exit_code, Some(7), "{failure}");
    let logs = backend.logs(&pod, 10).await.expect("the container's log");
    assert_eq!(logs, "no-agent-today\n");
    backend.stop(&pod, GRACE).await.expect("stop");
    assert!(nothing_left(&fake));
}

#[tokio::test]
async fn a_pod_that_is_not_ready_by_the_deadline_times_out() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    let mut stuck = request(&session_id(11));
    let never = tempfile::tempdir().expect("dir");
    stuck.environment.insert("GATE".into(), never.path().join("never").display().to_string());
    stuck.script = r#"until [[ -e "$GATE" ]]; do sleep 0.02; done; exec "$@""#.into();
    let pod = backend.launch(&stuck).await.expect("launch");
    let soon = tokio::time::Instant::now() + Duration::from_millis(300);
    let error = backend.wait_ready(&pod, soon).await.expect_err("never ready");
    assert!(matches!(error, KubeError::Timeout { .. }), "{error:?}");
    let running = fake.get(Resource::Pods, NS, &pod.pod).expect("the Pod");
    assert_eq!(running["status"]["phase"], "Running", "timed out while the Pod ran");
    backend.stop(&pod, GRACE).await.expect("stop");
    assert!(nothing_left(&fake));
}

#[tokio::test]
async fn an_eviction_mid_session_is_reported_with_its_reason() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    let pod = backend.launch(&request(&session_id(5))).await.expect("launch");
    backend.wait_ready(&pod, deadline()).await.expect("ready");
    let watching = tokio::spawn({
        let (backend, pod) = (backend.clone(), pod.clone());
        async move { backend.watch_exit(&pod).await }
    });
    fake.evict(NS, &pod.pod).await;
    let failure = tokio::time::timeout(WAIT, watching).await.expect("in time").expect("task");
    assert_eq!(failure.reason, "Evicted");
    assert!(failure.message.contains("memory"), "{failure}");
}

#[tokio::test]
async fn dropped_watches_and_410_gone_do_not_hide_readiness_or_the_end() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    let gate = tempfile::tempdir().expect("gate dir");
    let gate_file = gate.path().join("open");
    let mut gated = request(&session_id(8));
    gated.environment.insert("GATE".into(), gate_file.display().to_string());
    // The agent starts only once the test opens the gate (polling a file, not sleeping).
    gated.script = r#"until [[ -e "$GATE" ]]; do sleep 0.02; done; exec "$@""#.into();
    let pod = backend.launch(&gated).await.expect("launch");
    let waiting = tokio::spawn({
        let (backend, pod) = (backend.clone(), pod.clone());
        async move { backend.wait_ready(&pod, deadline()).await }
    });
    let count = |watching: bool| {
        let pods = format!("GET /api/v1/namespaces/{NS}/pods?");
        let requests = fake.requests();
        requests
            .iter()
            .filter(|r| r.starts_with(&pods) && r.contains("watch=true") == watching)
            .count()
    };
    wait_until("a watch", WAIT, || async { (count(true) >= 1).then_some(()) }).await;
    // A dropped watch resumes from the version it had seen, without a new list.
    fake.drop_watches();
    wait_until("a resumed watch", WAIT, || async { (count(true) >= 2).then_some(()) }).await;
    assert_eq!(count(false), 1, "resumed without listing: {:#?}", fake.requests());
    // Changes the watch does not see, then compaction: its version is too old → 410 → relist.
    reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces/{NS}/secrets", fake.url()))
        .json(&serde_json::json!({"metadata": {"name": "unrelated"}}))
        .send()
        .await
        .expect("an unrelated change");
    fake.compact();
    fake.drop_watches();
    wait_until("a relist after 410", WAIT, || async { (count(false) >= 2).then_some(()) }).await;
    std::fs::write(&gate_file, b"").expect("open the gate");
    tokio::time::timeout(WAIT, waiting).await.expect("in time").expect("task").expect("ready");

    let exit = tokio::spawn({
        let (backend, pod) = (backend.clone(), pod.clone());
        async move { backend.watch_exit(&pod).await }
    });
    let before = count(true);
    wait_until("the exit watch", WAIT, || async { (count(true) > before).then_some(()) }).await;
    fake.compact();
    fake.drop_watches();
    fake.evict(NS, &pod.pod).await;
    let failure = tokio::time::timeout(WAIT, exit).await.expect("in time").expect("task");
    assert_eq!(failure.reason, "Evicted");
}

#[tokio::test]
async fn an_unreachable_api_server_fails_launches_as_unavailable_while_agents_keep_answering() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    let pod = backend.launch(&request(&session_id(9))).await.expect("launch");
    backend.wait_ready(&pod, deadline()).await.expect("ready");
    fake.go_down();
    let error = backend.launch(&request(&session_id(10))).await.expect_err("down");
    assert!(error.is_unavailable(), "{error:?}");
    assert_eq!(status_through(&pod).await["agent_type"], "echo");
    let listed = backend.list().await.expect_err("down");
    assert!(listed.is_unavailable(), "{listed:?}");
    let exit = tokio::spawn({
        let (backend, pod) = (backend.clone(), pod.clone());
        async move { backend.watch_exit(&pod).await }
    });
    fake.come_back().await;
    assert_eq!(backend.list().await.expect("back").len(), 1);
    let logs = backend.logs(&pod, 50).await.expect("logs");
    assert!(logs.len() < 1_000_000);
    // A watch started while the API server was away sees the end once it is back.
    fake.evict(NS, &pod.pod).await;
    let failure = tokio::time::timeout(WAIT, exit).await.expect("in time").expect("task");
    assert_eq!(failure.reason, "Evicted");
}

#[tokio::test]
async fn unusable_launches_are_refused_before_anything_is_created() {
    let Cluster { fake, backend, _dir } = cluster_with(settings()).await;
    let mut bad_ids = Vec::new();
    for id in ["../x", "0F4C5E3A-1B2C-4D5E-8F90-A1B2C3D4E5F6", "", &"a".repeat(70), "a b"] {
        bad_ids.push(backend.launch(&request(id)).await.expect_err(id));
    }
    let mut reserved = request(&session_id(12));
    reserved.environment.insert("POD_IP".into(), "10.0.0.1".into());
    let mut counted = request(&session_id(13));
    counted.environment.insert("APX_ARG_0".into(), "rm".into());
    let mut huge = request(&session_id(14));
    huge.script = "#".repeat(1_100_000);
    let mut empty = request(&session_id(15));
    empty.argv.clear();
    for (what, launch) in
        [("reserved", reserved), ("counted", counted), ("huge", huge), ("empty", empty)]
    {
        let error = backend.launch(&launch).await.expect_err(what);
        assert!(matches!(error, KubeError::Invalid(_)), "{what}: {error:?}");
    }
    assert!(bad_ids.iter().all(|e| matches!(e, KubeError::Invalid(_))), "{bad_ids:?}");
    let writes: Vec<String> =
        fake.requests().into_iter().filter(|r| !r.starts_with("GET")).collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(nothing_left(&fake));
}
