//! Fenced writes (fence checked by the backend in the same operation): a checkpoint
//! pointer added (`add_and_lock`) and replaced (`StateHandleStore::replace`, compared
//! with a raw client write of the same bytes), and the leader information published
//! (`confirm`).

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

/// Latencies of fenced writes through ha-core, `ops` of each kind.
pub(crate) struct Fenced {
    /// A new pointer: `add_and_lock` (entry plus this owner's lock).
    pub(crate) add: Vec<Duration>,
    /// An existing pointer replaced: `replace` (the checkpoint-pointer write).
    pub(crate) replace: Vec<Duration>,
    /// The leader's address published: `confirm` (the leader-information write).
    pub(crate) confirm: Vec<Duration>,
}

/// Measures [`Fenced`] on one leader.
pub(crate) async fn fenced(endpoints: &Endpoints, kind: Kind, ops: usize, budget: Budget) -> BoxResult<Fenced> {
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
    let value = pointer_bytes();
    let mut out = Fenced {
        add: Vec::with_capacity(ops),
        replace: Vec::with_capacity(ops),
        confirm: Vec::with_capacity(ops),
    };

    for id in 2..ops as u64 + 2 {
        if budget.exhausted() && !out.add.is_empty() {
            break;
        }
        let start = Instant::now();
        store
            .add_and_lock(&grant.fence, &checkpoint_key(id), value.clone())
            .await?;
        out.add.push(start.elapsed());
    }
    for id in 2..out.add.len() as u64 + 2 {
        store.release_and_try_remove(&grant.fence, &checkpoint_key(id)).await?;
    }

    let name = checkpoint_key(1);
    let mut version = store.add_and_lock(&grant.fence, &name, value.clone()).await?;
    for _ in 0..ops {
        if budget.exhausted() && !out.replace.is_empty() {
            break;
        }
        let start = Instant::now();
        version = store.replace(&grant.fence, &name, version, value.clone()).await?;
        out.replace.push(start.elapsed());
    }
    store.release_and_try_remove(&grant.fence, &name).await?;

    for i in 0..ops {
        if budget.exhausted() && !out.confirm.is_empty() {
            break;
        }
        let start = Instant::now();
        e.confirm(&grant, &format!("http://10.0.0.1:{}", 8000 + i % 1000))
            .await?;
        out.confirm.push(start.elapsed());
    }
    drop(e);
    svc.close().await?;
    p.cleanup().await;
    Ok(out)
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
