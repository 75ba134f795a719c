//! The Lease lock (`high-availability.kubernetes.lock: lease`): renewals write only
//! the Lease, never an HA ConfigMap; the cluster ConfigMap carries the term's stamp
//! instead of the lock record. With the ConfigMap lock, the same check fails (every
//! renewal rewrites the cluster ConfigMap), which shows the check can fail.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, CompletedCheckpoint, ComponentId, HaServices, JobGraph, JobId, DEFAULT_ELECTION_GROUP};
use ha_kubernetes::LockKind;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::Api;

use common::KubeHarness;

/// The resourceVersion of every HA ConfigMap of the cluster, by name.
async fn config_map_versions(h: &KubeHarness, cluster_id: &ClusterId) -> BTreeMap<String, String> {
    let selector = format!("app={cluster_id},configmap-type=high-availability");
    let list = h
        .config_maps()
        .await
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    list.items
        .into_iter()
        .map(|c| (c.metadata.name.unwrap(), c.metadata.resource_version.unwrap()))
        .collect()
}

/// A confirmed leader with one job (graph and checkpoint: a per-job ConfigMap), then
/// idle for five retry periods: the HA ConfigMaps' versions before and after, and
/// whether the term held throughout.
async fn idle_leader(
    lock: LockKind,
) -> (
    KubeHarness,
    ClusterId,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
) {
    let h = KubeHarness::emulator().with_lock(lock);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let cluster_id = ClusterId::random("lease-lock");
    let backend = h.backend(&cluster_id).await.unwrap();
    let storage = StateStorage::open(&url, &cluster_id, &Default::default()).unwrap();
    let ha = HaServices::new(Arc::new(backend), storage, 1);
    let service = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut election = service.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let grant = election.granted().await.unwrap();
    election.confirm(&grant, "http://leader:8081").await.unwrap();
    let job = JobId::random();
    let graph = JobGraph {
        job_id: job.clone(),
        data: Bytes::from_static(b"graph"),
    };
    ha.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(&grant.fence, &graph)
        .await
        .unwrap();
    let checkpoints = ha.completed_checkpoint_store(&job).await.unwrap();
    let checkpoint = CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: 1,
        data: Bytes::from_static(b"checkpoint"),
    };
    checkpoints.add_checkpoint(&grant.fence, checkpoint).await.unwrap();
    // Let the writes' follow-ups (registration clean-up, leader-record checks) settle.
    tokio::time::sleep(h.timings.retry_period).await;
    let before = config_map_versions(&h, &cluster_id).await;
    tokio::time::sleep(h.timings.retry_period * 5).await;
    let after = config_map_versions(&h, &cluster_id).await;
    assert!(
        grant.is_valid() && election.current().is_some_and(|g| g.epoch == grant.epoch),
        "the term must hold while idle"
    );
    ha.close().await.unwrap();
    (h, cluster_id, before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_renewals_leave_config_maps_unchanged() {
    let (h, cluster_id, before, after) = idle_leader(LockKind::Lease).await;
    assert!(before.len() >= 2, "cluster and per-job ConfigMaps expected: {before:?}");
    assert_eq!(before, after, "a renewal of the Lease lock changed an HA ConfigMap");
    drop(h);
    // The ConfigMap lock rewrites the cluster ConfigMap on every renewal.
    let (_h, cluster_id_cm, before, after) = idle_leader(LockKind::ConfigMap).await;
    let cluster = format!("{cluster_id_cm}-cluster-config-map");
    assert_ne!(before.get(&cluster), after.get(&cluster));
    let _ = cluster_id;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_holds_the_record_and_the_cluster_config_map_the_stamp() {
    let h = KubeHarness::emulator().with_lock(LockKind::Lease);
    let cluster_id = ClusterId::random("lease-lock");
    let backend = h.backend(&cluster_id).await.unwrap();
    let storage = StateStorage::open("memory://lease-lock", &cluster_id, &Default::default()).unwrap();
    let ha = HaServices::new(Arc::new(backend), storage, 1);
    let service = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let mut election = service.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    let grant = election.granted().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(h.client().await, h.namespace());
    let lease = leases.get(&format!("{cluster_id}-leader")).await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(
        spec.lease_transitions.map(|t| t as u64),
        Some(grant.epoch.0),
        "the Lease's leaseTransitions is the term's epoch"
    );
    assert!(spec.holder_identity.is_some_and(|h| !h.is_empty()));
    let cm = h
        .config_maps()
        .await
        .get(&format!("{cluster_id}-cluster-config-map"))
        .await
        .unwrap();
    assert!(
        cm.metadata.annotations.unwrap_or_default().is_empty(),
        "no lock annotation with the Lease lock"
    );
    let stamp = cm.data.unwrap_or_default().remove("epoch.cluster").expect("term stamp");
    let stamp: serde_json::Value = serde_json::from_str(&stamp).unwrap();
    assert_eq!(stamp["epoch"].as_u64(), Some(grant.epoch.0), "{stamp}");
    ha.close().await.unwrap();
}
