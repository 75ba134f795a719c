//! Checkpoint-id counter throughput with concurrent tasks: ha-core's
//! `CheckpointIdCounter` (read + fenced CAS loop) vs a raw client CAS loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ha_core::{ClusterId, ComponentId, JobId, DEFAULT_ELECTION_GROUP};
use tokio::task::JoinSet;

use crate::raw::Raw;
use crate::systems::{Endpoints, Kind};
use crate::{BoxResult, Budget};

/// Concurrent incrementing tasks.
pub(crate) const TASKS: usize = 16;

/// Increments/s of `rounds` rounds of `ops` increments each through ha-core.
pub(crate) async fn ours(
    endpoints: &Endpoints,
    kind: Kind,
    ops: usize,
    rounds: usize,
    budget: Budget,
) -> BoxResult<Vec<f64>> {
    let cluster = ClusterId::random("bench-counter");
    let p = endpoints.connect(kind, &cluster).await?;
    let svc = p.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut e = svc.register(ComponentId::new("job-master")?)?;
    let grant = tokio::time::timeout(endpoints.ttl() * 10 + Duration::from_secs(10), e.granted()).await??;
    let counter = p.ha.checkpoint_id_counter(&JobId::random()).await?;
    let fence = Arc::new(grant.fence);
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        if budget.exhausted() && !rates.is_empty() {
            break;
        }
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for t in 0..TASKS {
            let (counter, fence) = (counter.clone(), fence.clone());
            tasks.spawn(async move {
                for _ in 0..share(ops, t) {
                    counter.get_and_increment(&fence).await?;
                }
                Ok::<_, ha_core::Error>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        rates.push(ops as f64 / start.elapsed().as_secs_f64());
    }
    drop(e);
    svc.close().await?;
    p.cleanup().await;
    Ok(rates)
}

/// Increments/s of the raw client CAS loop; `None` without a raw client.
pub(crate) async fn raw(
    endpoints: &Endpoints,
    kind: Kind,
    ops: usize,
    rounds: usize,
    budget: Budget,
) -> BoxResult<Option<Vec<f64>>> {
    let Some(raw) = Raw::create(endpoints, kind, b"1").await? else {
        return Ok(None);
    };
    let mut rates = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        if budget.exhausted() && !rates.is_empty() {
            break;
        }
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for t in 0..TASKS {
            let mut raw = raw.clone();
            tasks.spawn(async move {
                for _ in 0..share(ops, t) {
                    raw.increment().await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        rates.push(ops as f64 / start.elapsed().as_secs_f64());
    }
    raw.remove().await;
    Ok(Some(rates))
}

/// Task `t`'s share of `ops`.
fn share(ops: usize, t: usize) -> usize {
    ops / TASKS + usize::from(t < ops % TASKS)
}
