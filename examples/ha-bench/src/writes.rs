//! Fenced writes (fence checked by the backend in the same operation): a checkpoint
//! pointer added (`add_and_lock`) and replaced (`StateHandleStore::replace`, compared
//! with a raw client write of the same bytes), and the leader information published
//! (`confirm`).
//!
//! The replaces and the raw writes alternate, one of each per step and each first
//! every other step, so both see the same server state: measured one phase after the
//! other, the phase that followed the adds paid for what they left behind (on the
//! Kubernetes emulator, the eviction of their large objects from the watch history;
//! also JVM and allocator effects), which made the ratio depend on the order.

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
    /// Raw client writes of the same bytes, alternating with `replace`; `Ok(None)`
    /// without a raw client, `Err` if the raw client failed.
    pub(crate) raw: Result<Option<Vec<Duration>>, String>,
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
        raw: Ok(None),
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
    let mut raw = match Raw::create(endpoints, kind, &value).await {
        Ok(r) => r.map(|r| (r, Vec::with_capacity(ops))),
        Err(e) => {
            out.raw = Err(e.to_string());
            None
        }
    };
    for i in 0..ops {
        if budget.exhausted() && !out.replace.is_empty() {
            break;
        }
        if i % 2 == 1 {
            raw_write(&mut raw, &mut out.raw, &value).await;
        }
        let start = Instant::now();
        version = store.replace(&grant.fence, &name, version, value.clone()).await?;
        out.replace.push(start.elapsed());
        if i % 2 == 0 {
            raw_write(&mut raw, &mut out.raw, &value).await;
        }
    }
    if let Some((client, samples)) = raw {
        client.remove().await;
        out.raw = Ok(Some(samples));
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

/// One raw write, timed; a failure ends the raw writes and is kept in `failed`.
async fn raw_write(
    raw: &mut Option<(Raw, Vec<Duration>)>,
    failed: &mut Result<Option<Vec<Duration>>, String>,
    value: &[u8],
) {
    let Some((client, samples)) = raw.as_mut() else {
        return;
    };
    let start = Instant::now();
    match client.write(value).await {
        Ok(()) => samples.push(start.elapsed()),
        Err(e) => {
            *failed = Err(e.to_string());
            if let Some((client, _)) = raw.take() {
                client.remove().await;
            }
        }
    }
}
