//! The generic services on the embedded backend, on Tokio's paused clock: election
//! (validity, drift repair), retrieval, checkpoints, counter, job graphs, job results
//! and job cleanup. Deterministic and fast; the conformance suite in `ha-testkit`
//! runs the same rules on every backend with real time.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ha_core::driver::StateHandleStore;
use ha_core::embedded::{EmbeddedBackend, EmbeddedCluster};
use ha_core::storage::StateStorage;
use ha_core::{
    ClusterId, CompletedCheckpoint, CompletedCheckpointStore, ComponentId, Error, Fence, HaBackend, HaServices,
    JobGraph, JobId, JobResult, JobStatus, LeaderElection, LeaderElectionService, PayloadCleaner, StoreNamespace,
    Version, Versioned, DEFAULT_ELECTION_GROUP,
};
use tokio::sync::{Notify, Semaphore};

const LEASE: Duration = Duration::from_secs(2);

struct Process {
    backend: EmbeddedBackend,
    ha: HaServices,
}

fn cluster() -> EmbeddedCluster {
    EmbeddedCluster::new(ClusterId::random("svc"), LEASE)
}

fn process(cluster: &EmbeddedCluster) -> Process {
    let backend = cluster.connect();
    let storage = StateStorage::open(
        &format!("memory://services-{}", cluster.cluster_id()),
        cluster.cluster_id(),
        &Default::default(),
    )
    .unwrap();
    let ha = HaServices::new(Arc::new(backend.clone()), storage, 2);
    Process { backend, ha }
}

async fn contend(p: &Process) -> (LeaderElectionService, LeaderElection) {
    let svc = p.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await.unwrap();
    let e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    (svc, e)
}

#[tokio::test(start_paused = true)]
async fn leadership_ends_at_valid_until_and_renewals_extend_it() {
    let c = cluster();
    let a = process(&c);
    let (_s, mut e) = contend(&a).await;
    let g = e.granted().await.unwrap();
    let first = g
        .valid_until()
        .expect("embedded terms are bounded by the session lease");
    tokio::time::sleep(LEASE * 3).await;
    assert!(e.has_leadership(&g), "renewals keep the term");
    assert!(g.valid_until().unwrap() > first, "renewals move valid_until");
    a.backend.pause();
    let until = g.valid_until().unwrap();
    tokio::time::sleep_until(until - Duration::from_millis(1)).await;
    assert!(e.has_leadership(&g));
    tokio::time::sleep_until(until).await;
    assert!(!e.has_leadership(&g), "not leading at valid_until");
    let counter = a.ha.checkpoint_id_counter(&JobId::random()).await.unwrap();
    assert!(counter.get_and_increment(&g.fence).await.unwrap_err().is_not_leader());
}

#[tokio::test(start_paused = true)]
async fn retrieval_follows_confirmed_leaders_and_the_leader_repairs_its_record() {
    let c = cluster();
    let a = process(&c);
    let observer = process(&c);
    let component = ComponentId::new("dispatcher").unwrap();
    let r = observer.ha.leader_retrieval_service(&component).await.unwrap();
    assert_eq!(r.current(), None);
    let (_s, mut e) = contend(&a).await;
    let g = e.granted().await.unwrap();
    e.confirm(&g, "http://a").await.unwrap();
    let info = r.wait_for(|v| v.is_some()).await.unwrap().unwrap();
    assert_eq!((info.address.as_str(), info.session_id), ("http://a", g.session_id));
    c.write_leader_record(&component, Some(Bytes::from_static(b"garbage")));
    let corrupt = observer.ha.leader_retrieval_service(&component).await.unwrap();
    assert_eq!(corrupt.current(), None, "a corrupt record reads as no leader");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let fresh = observer.ha.leader_retrieval_service(&component).await.unwrap();
    assert_eq!(
        fresh.current().map(|i| i.address),
        Some("http://a".to_string()),
        "the leader wrote its record back"
    );
    assert_eq!(r.current().map(|i| i.session_id), Some(g.session_id));
}

#[tokio::test(start_paused = true)]
async fn checkpoints_counter_graphs_and_results_through_a_failover() {
    let c = cluster();
    let a = process(&c);
    let (sa, mut ea) = contend(&a).await;
    let fa = ea.granted().await.unwrap().fence;
    let job = JobId::random();
    let graph = JobGraph {
        job_id: job.clone(),
        data: Bytes::from_static(b"graph"),
    };
    a.ha.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(&fa, &graph)
        .await
        .unwrap();
    let counter = a.ha.checkpoint_id_counter(&job).await.unwrap();
    let store = a.ha.completed_checkpoint_store(&job).await.unwrap();
    for _ in 0..3 {
        let id = counter.get_and_increment(&fa).await.unwrap();
        let cp = CompletedCheckpoint {
            job_id: job.clone(),
            checkpoint_id: id,
            data: Bytes::from(format!("cp-{id}")),
        };
        store.add_checkpoint(&fa, cp).await.unwrap();
    }
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![2, 3]);
    assert!(matches!(
        counter.set_count(&fa, 2).await,
        Err(Error::InvalidRequest { .. })
    ));

    let b = process(&c);
    let (_sb, mut eb) = contend(&b).await;
    drop((sa, ea, store, counter));
    drop(a);
    let fb = eb.granted().await.unwrap().fence;
    assert!(fb.epoch > fa.epoch);
    let graphs = b.ha.job_graph_store().await.unwrap();
    assert_eq!(graphs.recover_job_graph(&job).await.unwrap(), Some(graph));
    let recovered =
        b.ha.completed_checkpoint_store(&job)
            .await
            .unwrap()
            .recover(&fb)
            .await
            .unwrap();
    assert_eq!(recovered.latest().map(|c| c.checkpoint_id), Some(3));
    let next =
        b.ha.checkpoint_id_counter(&job)
            .await
            .unwrap()
            .get_and_increment(&fb)
            .await
            .unwrap();
    assert_eq!(next, 4);

    let results = b.ha.job_result_store().await.unwrap();
    let result = JobResult {
        job_id: job.clone(),
        status: JobStatus::Finished,
        data: Bytes::from_static(b"done"),
    };
    results.create_dirty(&fb, &result).await.unwrap();
    let cleanup = b.ha.cleanup_job(&fb, &job, JobStatus::Finished).await.unwrap();
    assert!(cleanup.is_complete(), "{cleanup:?}");
    assert_eq!(
        results.state(&job).await.unwrap(),
        None,
        "a clean result is deleted on commit (the default)"
    );
    assert!(graphs.job_ids().await.unwrap().is_empty());
    assert!(b
        .ha
        .completed_checkpoint_store(&job)
        .await
        .unwrap()
        .checkpoint_ids()
        .await
        .unwrap()
        .is_empty());
}

/// A state-handle store that stops at its first `get_and_lock` until released: a
/// recovery that has listed the entries and is about to read them.
struct GatedStore {
    inner: Arc<dyn StateHandleStore>,
    first: AtomicBool,
    reached: Notify,
    gate: Semaphore,
}

#[async_trait::async_trait]
impl StateHandleStore for GatedStore {
    async fn add_and_lock(&self, fence: &Fence, name: &str, value: Bytes) -> ha_core::Result<Version> {
        self.inner.add_and_lock(fence, name, value).await
    }
    async fn replace(&self, fence: &Fence, name: &str, expected: Version, value: Bytes) -> ha_core::Result<Version> {
        self.inner.replace(fence, name, expected, value).await
    }
    async fn get(&self, name: &str) -> ha_core::Result<Option<Versioned<Bytes>>> {
        self.inner.get(name).await
    }
    async fn get_and_lock(&self, name: &str) -> ha_core::Result<Versioned<Bytes>> {
        if self.first.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.gate.acquire().await.unwrap().forget();
        }
        self.inner.get_and_lock(name).await
    }
    async fn list(&self) -> ha_core::Result<Vec<String>> {
        self.inner.list().await
    }
    async fn release(&self, name: &str) -> ha_core::Result<()> {
        self.inner.release(name).await
    }
    async fn release_and_try_remove(&self, fence: &Fence, name: &str) -> ha_core::Result<bool> {
        self.inner.release_and_try_remove(fence, name).await
    }
    async fn lock_owners(&self, name: &str) -> ha_core::Result<Vec<String>> {
        self.inner.lock_owners(name).await
    }
}

fn checkpoint(job: &JobId, id: u64) -> CompletedCheckpoint {
    CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: id,
        data: Bytes::from(format!("checkpoint {id}")),
    }
}

/// A recovery that lists the checkpoints, is paused past its term while a newer
/// leader subsumes them, and then reads on, must not report what it read as the
/// job's state: it is refused as `NotLeader`, like any act after the term.
#[tokio::test(start_paused = true)]
async fn a_recovery_that_outlives_its_term_is_refused() {
    let c = cluster();
    let a = process(&c);
    let b = process(&c);
    let job = JobId::random();
    let (_sa, mut ea) = contend(&a).await;
    let ga = ea.granted().await.unwrap();
    let store_a = a.ha.completed_checkpoint_store(&job).await.unwrap();
    for id in 1..=2 {
        store_a.add_checkpoint(&ga.fence, checkpoint(&job, id)).await.unwrap();
    }
    let inner = a
        .backend
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    let gated = Arc::new(GatedStore {
        inner,
        first: AtomicBool::new(true),
        reached: Notify::new(),
        gate: Semaphore::new(0),
    });
    let storage = StateStorage::open(
        &format!("memory://services-{}", c.cluster_id()),
        c.cluster_id(),
        &Default::default(),
    )
    .unwrap();
    let recovering = CompletedCheckpointStore::new(
        job.clone(),
        gated.clone(),
        storage.clone(),
        PayloadCleaner::start(storage),
        2,
    );
    let fence = ga.fence.clone();
    let recovery = tokio::spawn(async move { recovering.recover(&fence).await });
    gated.reached.notified().await;

    // A stops renewing (a pause); B is granted and subsumes both checkpoints.
    a.backend.pause();
    let (_sb, mut eb) = contend(&b).await;
    let gb = eb.granted().await.unwrap();
    let store_b = b.ha.completed_checkpoint_store(&job).await.unwrap();
    assert_eq!(
        store_b
            .recover(&gb.fence)
            .await
            .unwrap()
            .latest()
            .unwrap()
            .checkpoint_id,
        2
    );
    for id in 3..=4 {
        store_b.add_checkpoint(&gb.fence, checkpoint(&job, id)).await.unwrap();
    }
    assert_eq!(store_b.checkpoint_ids().await.unwrap(), vec![3, 4]);

    // A resumes (with a new session, as a ZooKeeper client after its session expired)
    // and reads on: what it listed is not the job's state any more.
    a.backend.resume();
    gated.gate.add_permits(1);
    match recovery.await.unwrap() {
        Err(e) if e.is_not_leader() => {}
        other => panic!("a recovery that outlived its term must be refused, got {other:?}"),
    }
}
