//! Helpers shared by the cases.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use ha_core::{ComponentId, HaServices, LeaderElection, LeaderElectionService, LeaderGrant, DEFAULT_ELECTION_GROUP};

/// Polls `cond` every 10 ms until it holds; panics with `what` after `timeout`.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A contender for `component` in the default group of `ha`.
pub(crate) async fn contend(ha: &HaServices, component: &str) -> (LeaderElectionService, LeaderElection) {
    let service = ha
        .leader_election_service(DEFAULT_ELECTION_GROUP)
        .await
        .expect("start election service");
    let election = service.register(component_id(component)).expect("register contender");
    (service, election)
}

pub(crate) fn component_id(name: &str) -> ComponentId {
    ComponentId::new(name).expect("valid component id")
}

/// Waits until exactly one of `elections` holds a grant and returns its index and grant.
pub(crate) async fn single_leader(elections: &[&LeaderElection], timeout: Duration) -> (usize, LeaderGrant) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let granted: Vec<(usize, LeaderGrant)> = elections
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.current().map(|g| (i, g)))
            .collect();
        assert!(
            granted.len() <= 1,
            "more than one contender granted at once: {granted:?}"
        );
        if let Some(first) = granted.into_iter().next() {
            return first;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no contender was granted within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A recognisable payload.
pub(crate) fn payload(tag: &str, n: u64) -> Bytes {
    Bytes::from(format!("{tag}-{n}-{}", "x".repeat(64)))
}

/// Generous bound for non-crash waits.
pub(crate) fn quick(ctx: &crate::Ctx) -> Duration {
    ctx.crash_timeout() + Duration::from_secs(5)
}
