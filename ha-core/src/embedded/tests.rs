//! Lease behaviour of the embedded backend, on Tokio's paused clock (deterministic).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::EmbeddedCluster;
use crate::driver::{HaBackend, StoreNamespace};
use crate::error::Error;
use crate::ids::{ClusterId, ComponentId};
use crate::services::LeaderElectionService;

const LEASE: Duration = Duration::from_secs(1);

fn cluster() -> EmbeddedCluster {
    EmbeddedCluster::new(ClusterId::random("emb"), LEASE)
}

async fn contender(backend: &super::EmbeddedBackend) -> (LeaderElectionService, crate::LeaderElection) {
    let backend: Arc<dyn HaBackend> = Arc::new(backend.clone());
    let svc = LeaderElectionService::start(backend, "g").await.unwrap();
    let e = svc.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    (svc, e)
}

#[tokio::test(start_paused = true)]
async fn crashed_leader_keeps_the_term_until_its_lease_runs_out() {
    let c = cluster();
    let a = c.connect();
    let (sa, mut ea) = contender(&a).await;
    ea.granted().await.unwrap();
    let b = c.connect();
    let (_sb, mut eb) = contender(&b).await;
    drop((sa, ea, a));
    tokio::time::sleep(LEASE / 2).await;
    assert!(
        eb.current().is_none(),
        "granted before the crashed leader's lease ran out"
    );
    tokio::time::sleep(LEASE).await;
    assert!(eb.current().is_some(), "not granted after the lease ran out");
    let _ = eb.granted().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn paused_leader_is_revoked_fenced_and_rejoins_on_resume() {
    let c = cluster();
    let a = c.connect();
    let (_sa, mut ea) = contender(&a).await;
    let ga = ea.granted().await.unwrap();
    let b = c.connect();
    let (sb, mut eb) = contender(&b).await;
    a.pause();
    let gb = tokio::time::timeout(LEASE * 3, eb.granted())
        .await
        .expect("b granted")
        .unwrap();
    assert!(gb.epoch > ga.epoch);
    ea.revoked(&ga).await.unwrap();
    // The paused leader's fence no longer works, even once it runs again.
    a.resume();
    let store = a.state_handle_store(&StoreNamespace::JobGraphs).await.unwrap();
    match store
        .add_and_lock(&ga.fence, "jobGraph-x", Bytes::from_static(b"x"))
        .await
    {
        Err(Error::NotLeader { .. }) => {}
        other => panic!("expected NotLeader, got {other:?}"),
    }
    // It re-entered the election with a new session: it leads again after b resigns.
    sb.close().await.unwrap();
    let again = tokio::time::timeout(LEASE * 3, ea.granted())
        .await
        .expect("a granted again")
        .unwrap();
    assert!(again.epoch > gb.epoch);
    store
        .add_and_lock(&again.fence, "jobGraph-x", Bytes::from_static(b"x"))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn live_instances_keep_their_session_indefinitely() {
    let c = cluster();
    let a = c.connect();
    let (_sa, mut ea) = contender(&a).await;
    let ga = ea.granted().await.unwrap();
    tokio::time::sleep(LEASE * 10).await;
    assert!(ea.has_leadership(&ga));
    let store = a.state_handle_store(&StoreNamespace::JobGraphs).await.unwrap();
    store
        .add_and_lock(&ga.fence, "jobGraph-y", Bytes::from_static(b"y"))
        .await
        .unwrap();
}

#[tokio::test]
async fn closed_instance_refuses_work() {
    let c = cluster();
    let a: Arc<dyn HaBackend> = Arc::new(c.connect());
    a.close().await.unwrap();
    let err = a
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .err()
        .expect("closed");
    assert!(matches!(err, Error::Closed { .. }), "{err}");
    assert!(c.list_records().is_empty());
}
