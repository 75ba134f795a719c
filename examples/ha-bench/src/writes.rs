//! Fenced checkpoint-pointer write (`StateHandleStore::replace`, fence checked by the
//! backend in the same operation) vs a raw client write of the same bytes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ha_core::{checkpoint_key, ClusterId, ComponentId, JobId, StoreNamespace, DEFAULT_ELECTION_GROUP};

use crate::raw::Raw;
use crate::systems::{Endpoints, Kind};
use crate::{BoxResult, Budget};

/// Bytes of the size of a real pointer (`file://…` path, size, checksum).
pub(crate) fn pointer_bytes() -> Bytes {
    let pointer = format!(
        "{{\"path\":\"file:///var/lib/flink/ha/bench/checkpoints/{}\",\"size\":1048576,\"sha256\":\"{}\"}}",
        "0".repeat(19),
        "ab".repeat(32)
    );
    Bytes::from(pointer)
}

/// Latencies of `ops` fenced pointer writes through ha-core.
pub(crate) async fn fenced(endpoints: &Endpoints, kind: Kind, ops: usize, budget: Budget) -> BoxResult<Vec<Duration>> {
    let cluster = ClusterId::random("bench-write");
    let p = endpoints.connect(kind, &cluster).await?;
    let svc = p.ha.leader_election_service(DEFAULT_ELECTION_GROUP).await?;
    let mut e = svc.register(ComponentId::new("job-master")?)?;
    let grant = tokio::time::timeout(endpoints.ttl() * 10 + Duration::from_secs(10), e.granted()).await??;
    let job = JobId::random();
    let store =
        p.ha.backend()
            .state_handle_store(&StoreNamespace::Checkpoints(job))
            .await?;
    let name = checkpoint_key(1);
    let value = pointer_bytes();
    let mut version = store.add_and_lock(&grant.fence, &name, value.clone()).await?;
    let mut samples = Vec::with_capacity(ops);
    for _ in 0..ops {
        if budget.exhausted() && !samples.is_empty() {
            break;
        }
        let start = Instant::now();
        version = store.replace(&grant.fence, &name, version, value.clone()).await?;
        samples.push(start.elapsed());
    }
    store.release_and_try_remove(&grant.fence, &name).await?;
    drop(e);
    svc.close().await?;
    p.cleanup().await;
    Ok(samples)
}

/// Latencies of `ops` raw writes of the same bytes; `None` without a raw client.
pub(crate) async fn raw(
    endpoints: &Endpoints,
    kind: Kind,
    ops: usize,
    budget: Budget,
) -> BoxResult<Option<Vec<Duration>>> {
    let value = pointer_bytes();
    let Some(mut raw) = Raw::create(endpoints, kind, &value).await? else {
        return Ok(None);
    };
    let mut samples = Vec::with_capacity(ops);
    for _ in 0..ops {
        if budget.exhausted() && !samples.is_empty() {
            break;
        }
        let start = Instant::now();
        raw.write(&value).await?;
        samples.push(start.elapsed());
    }
    raw.remove().await;
    Ok(Some(samples))
}
