//! Measurements at scale on the emulator, printed as JSON lines, no timed assertions:
//! failover time (crash → granted, crash → every job recovered) by number of jobs and
//! API latency, and the bytes one watcher of the cluster ConfigMap receives per
//! renewal with many running jobs, with either lock kind. Run on demand:
//! `HA_SCALE_JOBS=1,100,1000 HA_SCALE_LATENCY_MS=0,10 cargo test -p ha-kubernetes --test scale -- --ignored --nocapture --test-threads 1`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use ha_core::storage::StateStorage;
use ha_core::{ClusterId, CompletedCheckpoint, HaServices, JobGraph, JobId, LeaderElection, DEFAULT_ELECTION_GROUP};
use ha_kubernetes::LockKind;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::watcher;
use kube::Api;
use tokio::time::Instant;

use common::KubeHarness;

/// How long a contender may take before the measurement gives up on it.
const GIVE_UP: Duration = Duration::from_secs(20);

fn list_env(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

async fn process(h: &KubeHarness, cluster_id: &ClusterId, url: &str) -> HaServices {
    let backend = h.backend(cluster_id).await.unwrap();
    let storage = StateStorage::open(url, cluster_id, &Default::default()).unwrap();
    HaServices::new(Arc::new(backend), storage, 1)
}

async fn contend(ha: &HaServices) -> (ha_core::LeaderElectionService, LeaderElection) {
    let s = ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let e = s.register(ha_core::ComponentId::new("dispatcher").unwrap()).unwrap();
    (s, e)
}

fn checkpoint(job: &JobId) -> CompletedCheckpoint {
    CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: 1,
        data: Bytes::from_static(b"checkpoint"),
    }
}

/// `jobs` running jobs, each with one checkpoint (so a per-job ConfigMap) and, with
/// `graphs`, a job graph; `HA_SCALE_SETUP_TASKS` (default 8) at a time.
async fn running_jobs(ha: &HaServices, fence: &ha_core::Fence, jobs: usize, graphs: bool) -> Vec<JobId> {
    let tasks = list_env("HA_SCALE_SETUP_TASKS", "8")[0] as usize;
    let ids: Vec<JobId> = (0..jobs).map(|_| JobId::random()).collect();
    let store = ha.job_graph_store().await.unwrap();
    futures::stream::iter(ids.iter())
        .map(|job| {
            let store = &store;
            async move {
                if graphs {
                    let graph = JobGraph {
                        job_id: job.clone(),
                        data: Bytes::from_static(b"graph"),
                    };
                    store.put_job_graph(fence, &graph).await.unwrap();
                }
                let store = ha.completed_checkpoint_store(job).await.unwrap();
                store.add_checkpoint(fence, checkpoint(job)).await.unwrap();
            }
        })
        .buffer_unordered(tasks)
        .collect::<Vec<()>>()
        .await;
    ids
}

/// The lock kind of `HA_SCALE_LOCK` (`configmap`, the default, or `lease`).
fn lock_from_env() -> LockKind {
    match std::env::var("HA_SCALE_LOCK").as_deref() {
        Ok("lease") => LockKind::Lease,
        _ => LockKind::ConfigMap,
    }
}

/// Crash → granted and crash → every job's checkpoint recovered (16 recoveries at a
/// time), for each job count and latency; each job has a per-job ConfigMap with one
/// checkpoint, set up without latency; the lock kind from `HA_SCALE_LOCK`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn measure_failover() {
    let lock = lock_from_env();
    for jobs in list_env("HA_SCALE_JOBS", "1,100,1000") {
        for latency in list_env("HA_SCALE_LATENCY_MS", "0,10") {
            let h = KubeHarness::emulator().with_lock(lock);
            let dir = tempfile::tempdir().unwrap();
            let url = format!("file://{}", dir.path().display());
            let cluster_id = ClusterId::random("scale");
            let a = process(&h, &cluster_id, &url).await;
            let (sa, mut ea) = contend(&a).await;
            let ga = ea.granted().await.unwrap();
            let setup = Instant::now();
            let ids = running_jobs(&a, &ga.fence, jobs as usize, false).await;
            let setup = setup.elapsed();
            let b = process(&h, &cluster_id, &url).await;
            let (_sb, mut eb) = contend(&b).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let emulator = h.emulator_ref().unwrap();
            emulator.faults().set_latency(Duration::from_millis(latency));
            let crashed = Instant::now();
            drop((sa, ea));
            drop(a);
            let granted = tokio::time::timeout(GIVE_UP, eb.granted()).await;
            let to_grant = crashed.elapsed();
            let (to_recovered, failures) = match granted {
                Ok(Ok(gb)) => {
                    let failures: Vec<String> = futures::stream::iter(ids.iter())
                        .map(|job| {
                            let (b, fence) = (&b, &gb.fence);
                            async move {
                                let store = b.completed_checkpoint_store(job).await.unwrap();
                                match store.recover(fence).await {
                                    Ok(r) if r.checkpoints.len() == 1 => None,
                                    Ok(r) => Some(format!("{} checkpoints", r.checkpoints.len())),
                                    Err(e) => Some(e.to_string()),
                                }
                            }
                        })
                        .buffer_unordered(16)
                        .filter_map(|f| async move { f })
                        .collect()
                        .await;
                    if let Some(first) = failures.first() {
                        println!("first recovery failure of {}: {first}", failures.len());
                    }
                    (Some(crashed.elapsed()), failures.len())
                }
                _ => (None, jobs as usize),
            };
            println!(
                "{}",
                serde_json::json!({
                    "measure": "failover",
                    "lock": lock.as_str(),
                    "jobs": jobs,
                    "latency_ms": latency,
                    "setup_ms": setup.as_millis() as u64,
                    "crash_to_granted_ms": if to_recovered.is_some() { Some(to_grant.as_millis() as u64) } else { None },
                    "crash_to_all_recovered_ms": to_recovered.map(|d| d.as_millis() as u64),
                    "recovery_failures": failures,
                    "timings": "lease 2 s, renew deadline 1.4 s, retry 0.3 s",
                })
            );
            emulator.faults().set_latency(Duration::ZERO);
            b.close().await.ok();
        }
    }
}

/// Bytes one watcher of the cluster's HA ConfigMaps (all of them, by label) receives
/// per renewal of the leader, with `HA_SCALE_JOBS` (default 1,000) running jobs, each
/// with a job graph and a checkpoint, for each lock kind in `HA_SCALE_LOCKS`
/// (default `configmap,lease`). Renewals are counted as the changes of the lock
/// object (the cluster ConfigMap's annotation, or the Lease) seen by a watcher of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn measure_bytes_per_renewal() {
    let jobs = list_env("HA_SCALE_JOBS", "1000")[0] as usize;
    let locks = std::env::var("HA_SCALE_LOCKS").unwrap_or_else(|_| "configmap,lease".into());
    for lock in locks.split(',').map(str::trim) {
        let kind = match lock {
            "lease" => LockKind::Lease,
            _ => LockKind::ConfigMap,
        };
        let h = KubeHarness::emulator().with_lock(kind);
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let cluster_id = ClusterId::random("scale");
        let a = process(&h, &cluster_id, &url).await;
        let (_sa, mut ea) = contend(&a).await;
        let ga = ea.granted().await.unwrap();
        running_jobs(&a, &ga.fence, jobs, true).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let selector = format!("app={cluster_id},configmap-type=high-availability");
        let cms = watcher::watcher(h.config_maps().await, watcher::Config::default().labels(&selector));
        let leases: Api<Lease> = Api::namespaced(h.client().await, h.namespace());
        let lock_leases = watcher::watcher(leases, watcher::Config::default().labels(&selector));
        let cluster = format!("{cluster_id}-cluster-config-map");
        let lease = format!("{cluster_id}-leader");
        let mut cms = std::pin::pin!(cms);
        let mut lock_leases = std::pin::pin!(lock_leases);
        let (mut renewals, mut cm_events, mut cm_bytes, mut lease_bytes) = (0u64, 0u64, 0u64, 0u64);
        let until = Instant::now() + Duration::from_secs(3);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                Some(event) = cms.next() => {
                    if let Ok(watcher::Event::Apply(cm)) = event {
                        cm_events += 1;
                        cm_bytes += serde_json::to_vec(&cm).unwrap().len() as u64;
                        if kind == LockKind::ConfigMap && cm.metadata.name.as_deref() == Some(cluster.as_str()) {
                            renewals += 1;
                        }
                    }
                }
                Some(event) = lock_leases.next() => {
                    if let Ok(watcher::Event::Apply(l)) = event {
                        if l.metadata.name.as_deref() == Some(lease.as_str()) {
                            renewals += 1;
                            lease_bytes += serde_json::to_vec(&l).unwrap().len() as u64;
                        }
                    }
                }
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "measure": "bytes_per_renewal",
                "lock": lock,
                "jobs": jobs,
                "renewals": renewals,
                "config_map_events": cm_events,
                "config_map_bytes_per_renewal": cm_bytes.checked_div(renewals),
                "lease_bytes_per_renewal": lease_bytes.checked_div(renewals),
                "window_s": 3,
                "timings": "lease 2 s, renew deadline 1.4 s, retry 0.3 s",
            })
        );
        a.close().await.ok();
    }
}
