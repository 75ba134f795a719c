//! Requests per fenced write on the emulator: a leader's fenced write to a ConfigMap
//! it wrote last is one guarded replace (no read first), with either lock kind; when
//! someone else changed the ConfigMap in between, the write re-reads once (409) and
//! keeps the other change.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use ha_core::{
    ClusterId, ComponentId, HaBackend, JobId, LeaderElectionService, StoreNamespace, DEFAULT_ELECTION_GROUP,
};
use ha_kubernetes::LockKind;
use kube::api::PostParams;

use common::KubeHarness;

/// ConfigMap requests of one verb the emulator has served so far.
fn config_map_requests(harness: &KubeHarness, verb: &str) -> u64 {
    harness
        .emulator_ref()
        .expect("emulator")
        .accesses()
        .iter()
        .filter(|(a, _)| a.verb == verb && a.resource == "configmaps")
        .map(|(_, n)| n)
        .sum()
}

async fn fenced_replace_needs_no_read_first(lock: LockKind) {
    let harness = KubeHarness::emulator().with_lock(lock);
    let cluster = ClusterId::random("round-trips");
    let backend = std::sync::Arc::new(harness.backend(&cluster).await.unwrap());
    let svc = LeaderElectionService::start(backend.clone(), DEFAULT_ELECTION_GROUP)
        .await
        .unwrap();
    let mut e = svc.register(ComponentId::new("job-master").unwrap()).unwrap();
    let grant = tokio::time::timeout(Duration::from_secs(10), e.granted())
        .await
        .expect("granted")
        .unwrap();
    let job = JobId::random();
    let store = backend
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    let name = "checkpoint-0000000000000000001";
    let mut version = store
        .add_and_lock(&grant.fence, name, Bytes::from_static(b"v0"))
        .await
        .unwrap();

    let (gets, updates) = (
        config_map_requests(&harness, "get"),
        config_map_requests(&harness, "update"),
    );
    for i in 1..=10 {
        version = store
            .replace(&grant.fence, name, version, Bytes::from(format!("v{i}")))
            .await
            .unwrap();
    }
    let gets = config_map_requests(&harness, "get") - gets;
    let updates = config_map_requests(&harness, "update") - updates;
    assert_eq!(
        (gets, updates),
        (0, 10),
        "10 fenced replaces ({lock:?} lock): ConfigMap (gets, updates)"
    );

    // Someone else changes the ConfigMap: the next write re-reads and keeps that change.
    let api = harness.config_maps().await;
    let cm_name = format!("{cluster}-{job}-config-map");
    let mut cm = api.get(&cm_name).await.unwrap();
    cm.data
        .get_or_insert_with(Default::default)
        .insert("outside".into(), "kept".into());
    api.replace(&cm_name, &PostParams::default(), &cm).await.unwrap();
    store
        .replace(&grant.fence, name, version, Bytes::from_static(b"after"))
        .await
        .unwrap();
    assert_eq!(&store.get(name).await.unwrap().unwrap().value[..], b"after");
    let cm = api.get(&cm_name).await.unwrap();
    assert_eq!(cm.data.unwrap().get("outside").map(String::as_str), Some("kept"));
    drop(e);
    svc.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_replace_needs_no_read_first_with_configmap_lock() {
    fenced_replace_needs_no_read_first(LockKind::ConfigMap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_replace_needs_no_read_first_with_lease_lock() {
    fenced_replace_needs_no_read_first(LockKind::Lease).await;
}
