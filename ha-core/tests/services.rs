//! The generic services on the embedded backend, on Tokio's paused clock: election
//! (validity, drift repair), retrieval, checkpoints, counter, job graphs, job results
//! and job cleanup. Deterministic and fast; the conformance suite in `ha-testkit`
//! runs the same rules on every backend with real time.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ha_core::embedded::{EmbeddedBackend, EmbeddedCluster};
use ha_core::storage::StateStorage;
use ha_core::{
    ClusterId, CompletedCheckpoint, ComponentId, Error, HaServices, JobGraph, JobId, JobResult, JobStatus,
    LeaderElection, LeaderElectionService, DEFAULT_ELECTION_GROUP,
};

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
