//! Leader health (`LeaderElectionService::health_check`), in the spirit of client-go's
//! `HealthzAdaptor`: a leader whose term ran out without being revoked (a wedged
//! process) reads unhealthy once the tolerance has passed; a standby that still
//! contends reads healthy; a service that left the election reads unhealthy.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ha_core::embedded::EmbeddedCluster;
use ha_core::{ClusterId, ComponentId, HaBackend, LeaderElectionService, LeaderHealth};

const LEASE: Duration = Duration::from_secs(1);
const TOLERANCE: Duration = Duration::from_secs(2);

async fn contender(backend: Arc<dyn HaBackend>) -> (LeaderElectionService, ha_core::LeaderElection) {
    let service = LeaderElectionService::start(backend, "g").await.unwrap();
    let election = service.register(ComponentId::new("dispatcher").unwrap()).unwrap();
    (service, election)
}

#[tokio::test(start_paused = true)]
async fn paused_leader_reads_unhealthy_after_the_tolerance() {
    let cluster = EmbeddedCluster::new(ClusterId::random("health"), LEASE);
    let a = cluster.connect();
    let (service, mut election) = contender(Arc::new(a.clone())).await;
    let grant = election.granted().await.unwrap();
    let check = service.health_check(TOLERANCE);
    match check.status() {
        LeaderHealth::Leading { epoch, .. } => assert_eq!(epoch, grant.epoch),
        other => panic!("expected Leading, got {other:?}"),
    }
    assert!(check.status().is_healthy());
    // Frozen: no renewal, and alone, nobody revokes the term.
    a.pause();
    tokio::time::sleep(LEASE + TOLERANCE / 2).await;
    assert!(!grant.is_valid(), "the term ran out");
    let within = check.status();
    assert!(within.is_healthy(), "within the tolerance: {within:?}");
    tokio::time::sleep(TOLERANCE).await;
    let wedged = check.status();
    assert!(
        matches!(wedged, LeaderHealth::Wedged { .. }) && !wedged.is_healthy(),
        "a leader past its lease and the tolerance is wedged: {wedged:?}"
    );
    assert!(wedged.to_string().contains("not renewed"), "{wedged}");
    assert!(!check.check().await.is_healthy(), "the async check agrees");
    // Running again, it re-enters the election and is healthy again.
    a.resume();
    tokio::time::sleep(LEASE).await;
    let back = check.check().await;
    assert!(back.is_healthy(), "{back:?}");
}

#[tokio::test(start_paused = true)]
async fn standby_is_healthy_while_contending_and_closed_is_not() {
    let cluster = EmbeddedCluster::new(ClusterId::random("health"), LEASE);
    let (sa, mut ea) = contender(Arc::new(cluster.connect())).await;
    ea.granted().await.unwrap();
    let (sb, _eb) = contender(Arc::new(cluster.connect())).await;
    tokio::time::sleep(LEASE / 4).await;
    let standby = sb.health_check(TOLERANCE);
    assert!(
        matches!(standby.check().await, LeaderHealth::Standby),
        "{:?}",
        standby.status()
    );
    assert!(standby.check().await.is_healthy());
    sb.close().await.unwrap();
    let closed = standby.check().await;
    assert!(
        matches!(closed, LeaderHealth::NotContending { .. }) && !closed.is_healthy(),
        "{closed:?}"
    );
    // A check whose service is gone altogether is not healthy either.
    let leader = sa.health_check(TOLERANCE);
    drop((sa, ea));
    assert!(!leader.status().is_healthy(), "{:?}", leader.status());
}
