//! The completed-checkpoint store: retention, subsume order, recovery order,
//! quarantine, failover, shutdown, idempotent retries, retention on cancel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ha_core::storage::StateHandle;
use ha_core::{
    checkpoint_key, CheckpointRetention, CompletedCheckpoint, CompletedCheckpointStore, Error, Fence, HaServices,
    JobGraph, JobId, JobResult, JobStatus, LeaderElectionService, StoreNamespace,
};

use super::util::{contend, payload, quick};
use crate::Ctx;

fn cp(job: &JobId, id: u64) -> CompletedCheckpoint {
    CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: id,
        data: payload("cp", id),
    }
}

/// A granted leader of a fresh job that added checkpoints `ids`.
struct Leader {
    ha: HaServices,
    _election: LeaderElectionService,
    fence: Fence,
    job: JobId,
    store: CompletedCheckpointStore,
}

async fn leader_with(ctx: &Ctx, retain: usize, ids: std::ops::RangeInclusive<u64>) -> Leader {
    let ha = ctx.process_retaining(retain).await;
    let (election, mut e) = contend(&ha, "dispatcher").await;
    let fence = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let store = ha.completed_checkpoint_store(&job).await.unwrap();
    for id in ids {
        store.add_checkpoint(&fence, cp(&job, id)).await.unwrap();
    }
    Leader {
        ha,
        _election: election,
        fence,
        job,
        store,
    }
}

/// The stored pointer of checkpoint `id` of `job`.
async fn stored_handle(ha: &HaServices, job: &JobId, id: u64) -> StateHandle {
    let raw = ha
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    let v = raw.get(&checkpoint_key(id)).await.unwrap().unwrap();
    StateHandle::from_bytes(&checkpoint_key(id), &v.value).unwrap()
}

async fn checkpoint_payloads(ctx: &Ctx, job: &JobId) -> usize {
    let prefix = format!("checkpoints/{job}/");
    ctx.storage()
        .list_all()
        .await
        .unwrap()
        .iter()
        .filter(|p| p.contains(&prefix))
        .count()
}

/// With `num-retained = 3`, adding 1..=6 keeps 4, 5, 6; each add subsumes exactly the
/// oldest, the new entry is written before the old one goes (an observer never sees
/// fewer than 3), and subsumed payloads are discarded.
pub async fn retention_and_subsume_order(ctx: Ctx) {
    let ha = ctx.process_retaining(3).await;
    let observer = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let store = ha.completed_checkpoint_store(&job).await.unwrap();
    let watched = observer.completed_checkpoint_store(&job).await.unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (full, stop) = (full.clone(), stop.clone());
        tokio::spawn(async move {
            let mut min_after_full = usize::MAX;
            while !stop.load(Ordering::SeqCst) {
                // Read the flag first: a count read before the third add landed must not count.
                let was_full = full.load(Ordering::SeqCst);
                let n = watched.checkpoint_ids().await.unwrap().len();
                if was_full {
                    min_after_full = min_after_full.min(n);
                }
                tokio::task::yield_now().await;
            }
            min_after_full
        })
    };
    for id in 1..=6u64 {
        let subsumed = store.add_checkpoint(&f, cp(&job, id)).await.unwrap();
        let want: Vec<u64> = if id > 3 { vec![id - 3] } else { vec![] };
        assert_eq!(subsumed, want, "subsumed by adding {id}");
        if id == 3 {
            full.store(true, Ordering::SeqCst);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let min_seen = watcher.await.unwrap();
    assert!(
        min_seen >= 3,
        "an observer saw only {min_seen} retained checkpoints: subsumed before writing"
    );
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![4, 5, 6]);
    ha.cleaner().flush().await;
    assert_eq!(
        checkpoint_payloads(&ctx, &job).await,
        3,
        "subsumed payloads are discarded"
    );
    ha.close().await.unwrap();
    observer.close().await.unwrap();
}

/// Recovery returns checkpoints in id order whatever the order their entries were
/// written in (here by a tool writing pointers directly, out of order).
pub async fn recovery_in_id_order(ctx: Ctx) {
    let ha = ctx.process_retaining(10).await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let raw = ha
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    for id in [3u64, 1, 12, 2] {
        let handle = ctx
            .storage()
            .store(&format!("checkpoints/{job}"), &checkpoint_key(id), cp(&job, id).data)
            .await
            .unwrap();
        raw.add_and_lock(&f, &checkpoint_key(id), handle.to_bytes())
            .await
            .unwrap();
    }
    let other = ctx.process_retaining(10).await;
    let recovered = other
        .completed_checkpoint_store(&job)
        .await
        .unwrap()
        .recover(&f)
        .await
        .unwrap();
    let ids: Vec<u64> = recovered.checkpoints.iter().map(|c| c.checkpoint_id).collect();
    assert_eq!(ids, vec![1, 2, 3, 12]);
    for c in &recovered.checkpoints {
        assert_eq!(c, &cp(&job, c.checkpoint_id));
    }
    assert!(recovered.quarantined.is_empty());
    ha.close().await.unwrap();
    other.close().await.unwrap();
}

/// A corrupt payload, a missing payload and a corrupt pointer are each reported and
/// quarantined; recovery falls back to the newest readable checkpoint and does not
/// report them again.
pub async fn quarantine_corrupt_and_missing(ctx: Ctx) {
    let Leader {
        ha,
        _election,
        fence: f,
        job,
        store,
    } = leader_with(&ctx, 10, 1..=4).await;
    let raw = ha
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    ctx.storage_faults()
        .delete_payload(&stored_handle(&ha, &job, 3).await.path);
    ctx.storage_faults()
        .truncate_payload(&stored_handle(&ha, &job, 4).await.path);
    raw.add_and_lock(&f, &checkpoint_key(5), Bytes::from_static(b"\x00not a pointer"))
        .await
        .unwrap();

    let recovered = store.recover(&f).await.expect("recovery must not fail on bad entries");
    let ids: Vec<u64> = recovered.checkpoints.iter().map(|c| c.checkpoint_id).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(recovered.latest().map(|c| c.checkpoint_id), Some(2));
    let mut q: Vec<u64> = recovered.quarantined.iter().map(|q| q.checkpoint_id).collect();
    q.sort_unstable();
    assert_eq!(q, vec![3, 4, 5]);
    for entry in &recovered.quarantined {
        assert!(
            entry.error.contains(&entry.key),
            "error must name the key: {}",
            entry.error
        );
    }
    let missing = recovered.quarantined.iter().find(|q| q.checkpoint_id == 3).unwrap();
    assert!(missing.error.contains("does not exist"), "{}", missing.error);
    let corrupt = recovered.quarantined.iter().find(|q| q.checkpoint_id == 4).unwrap();
    assert!(corrupt.error.contains("pointer says"), "{}", corrupt.error);
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![1, 2]);
    assert_eq!(store.quarantined_keys().await.unwrap().len(), 3);
    let again = store.recover(&f).await.unwrap();
    assert!(again.quarantined.is_empty());
    assert_eq!(again.checkpoints.len(), 2);
    ha.close().await.unwrap();
}

/// Every checkpoint the crashed leader had acknowledged is recovered by the next
/// leader, with its data.
pub async fn acknowledged_checkpoint_survives_failover(ctx: Ctx) {
    let a = ctx.process_retaining(2).await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let fa = ea.granted().await.unwrap().fence;
    let job = JobId::random();
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let store = a.completed_checkpoint_store(&job).await.unwrap();
    let mut last = 0;
    for _ in 0..5 {
        let id = counter.get_and_increment(&fa).await.unwrap();
        store.add_checkpoint(&fa, cp(&job, id)).await.unwrap();
        last = id;
    }
    let b = ctx.process_retaining(2).await;
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    drop((sa, ea, store, counter));
    ctx.crash(a).await;
    let fb = tokio::time::timeout(ctx.crash_timeout() * 3, eb.granted())
        .await
        .expect("b granted")
        .unwrap()
        .fence;
    let recovered = b
        .completed_checkpoint_store(&job)
        .await
        .unwrap()
        .recover(&fb)
        .await
        .unwrap();
    assert_eq!(recovered.latest(), Some(&cp(&job, last)));
    assert_eq!(recovered.checkpoints.len(), 2);
    let next = b
        .checkpoint_id_counter(&job)
        .await
        .unwrap()
        .get_and_increment(&fb)
        .await
        .unwrap();
    assert_eq!(next, last + 1, "the counter continues after the last acknowledged id");
    b.close().await.unwrap();
}

/// Suspension keeps every checkpoint (and releases this process's locks); a globally
/// terminal status deletes every entry and payload.
pub async fn shutdown_semantics(ctx: Ctx) {
    let ha = ctx.process_retaining(3).await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let store = ha.completed_checkpoint_store(&job).await.unwrap();
    for id in 1..=2u64 {
        store.add_checkpoint(&f, cp(&job, id)).await.unwrap();
    }
    store.shutdown(&f, JobStatus::Suspended).await.unwrap();
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![1, 2]);
    let raw = ha
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    assert!(
        raw.lock_owners(&checkpoint_key(1)).await.unwrap().is_empty(),
        "suspension releases our locks"
    );
    let recovered = store.recover(&f).await.unwrap();
    assert_eq!(recovered.checkpoints.len(), 2);
    store.shutdown(&f, JobStatus::Finished).await.unwrap();
    assert!(store.checkpoint_ids().await.unwrap().is_empty());
    assert!(raw.list().await.unwrap().is_empty());
    ha.cleaner().flush().await;
    assert_eq!(checkpoint_payloads(&ctx, &job).await, 0);
    ha.close().await.unwrap();
}

/// Re-adding a checkpoint that already landed (a retry after an unknown outcome)
/// succeeds; adding different content under the same id is `AlreadyExists`.
pub async fn retry_of_landed_add_is_idempotent(ctx: Ctx) {
    let ha = ctx.process_retaining(3).await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let store = ha.completed_checkpoint_store(&job).await.unwrap();
    store.add_checkpoint(&f, cp(&job, 1)).await.unwrap();
    store
        .add_checkpoint(&f, cp(&job, 1))
        .await
        .expect("identical retry succeeds");
    let mut different = cp(&job, 1);
    different.data = payload("other", 1);
    match store.add_checkpoint(&f, different).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![1]);
    ha.cleaner().flush().await;
    assert_eq!(
        checkpoint_payloads(&ctx, &job).await,
        1,
        "payloads of refused adds are discarded"
    );
    // Subsuming the retried checkpoint later discards the payload that is really stored.
    for id in 2..=4u64 {
        store.add_checkpoint(&f, cp(&job, id)).await.unwrap();
    }
    ha.cleaner().flush().await;
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![2, 3, 4]);
    assert_eq!(checkpoint_payloads(&ctx, &job).await, 3, "no payload orphaned");
    ha.close().await.unwrap();
}

/// A new leader that adds without an explicit recovery still subsumes the checkpoints
/// its predecessor added: retention holds across terms.
pub async fn retention_holds_across_leaders(ctx: Ctx) {
    let a = ctx.process_retaining(2).await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let fa = ea.granted().await.unwrap().fence;
    let job = JobId::random();
    let b = ctx.process_retaining(2).await;
    let store_b = b.completed_checkpoint_store(&job).await.unwrap();
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    let store_a = a.completed_checkpoint_store(&job).await.unwrap();
    for id in 1..=2u64 {
        store_a.add_checkpoint(&fa, cp(&job, id)).await.unwrap();
    }
    // A steps down as a job master does: suspend (release its locks), then resign.
    store_a.shutdown(&fa, JobStatus::Suspended).await.unwrap();
    sa.close().await.unwrap();
    let fb = tokio::time::timeout(quick(&ctx), eb.granted())
        .await
        .expect("b granted")
        .unwrap()
        .fence;
    assert_eq!(store_b.add_checkpoint(&fb, cp(&job, 3)).await.unwrap(), vec![1]);
    assert_eq!(store_b.checkpoint_ids().await.unwrap(), vec![2, 3]);
    b.cleaner().flush().await;
    assert_eq!(checkpoint_payloads(&ctx, &job).await, 2);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A subsumed checkpoint that a crashed process still had locked is removed once that
/// process's session is over: retention recovers by itself, no entry leaks.
pub async fn subsumed_entry_locked_by_crashed_process_is_removed_later(ctx: Ctx) {
    let a = ctx.process_retaining(1).await;
    let (_sa, mut ea) = contend(&a, "dispatcher").await;
    let f = ea.granted().await.unwrap().fence;
    let job = JobId::random();
    let store = a.completed_checkpoint_store(&job).await.unwrap();
    store.add_checkpoint(&f, cp(&job, 1)).await.unwrap();
    let b = ctx.process().await;
    let raw_b = b
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    raw_b.get_and_lock(&checkpoint_key(1)).await.unwrap();
    drop(raw_b);
    ctx.crash(b).await;
    assert_eq!(store.add_checkpoint(&f, cp(&job, 2)).await.unwrap(), vec![1]);
    // Still locked by the crashed process for now, so it may remain for a while …
    let mut next = 3;
    let deadline = tokio::time::Instant::now() + ctx.crash_timeout() * 4 + std::time::Duration::from_secs(5);
    loop {
        if store.checkpoint_ids().await.unwrap() == vec![next - 1] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint 1 still present long after its locker crashed: {:?}",
            store.checkpoint_ids().await.unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        store.add_checkpoint(&f, cp(&job, next)).await.unwrap();
        next += 1;
    }
    // … and its payload is discarded once it is gone.
    a.cleaner().flush().await;
    assert_eq!(checkpoint_payloads(&ctx, &job).await, 1);
    a.close().await.unwrap();
}

fn ids(recovered: &ha_core::RecoveredCheckpoints) -> Vec<u64> {
    recovered.checkpoints.iter().map(|c| c.checkpoint_id).collect()
}

/// The payload storage is not mounted (every payload of the job is missing, the
/// cluster's storage root is absent): recovery fails with an error naming the storage
/// URL and leaves every pointer as it was; once the storage is back, everything is
/// recovered. Missing storage is an environment error, not corruption.
pub async fn missing_storage_is_an_error_not_quarantine(ctx: Ctx) {
    let Leader {
        ha: a,
        _election,
        fence: f,
        job,
        ..
    } = leader_with(&ctx, 3, 1..=3).await;
    ctx.storage_faults().unmount();
    let b = ctx.process_retaining(3).await;
    let store_b = b.completed_checkpoint_store(&job).await.unwrap();
    match store_b.recover(&f).await {
        Err(err @ Error::RecoveryRefused { .. }) => {
            let msg = err.to_string();
            assert!(
                msg.contains(ctx.storage().url()),
                "error must name the storage URL: {msg}"
            );
        }
        other => panic!("recovery with every payload missing must be refused, got {other:?}"),
    }
    assert_eq!(
        store_b.checkpoint_ids().await.unwrap(),
        vec![1, 2, 3],
        "pointers untouched"
    );
    assert!(
        store_b.quarantined_keys().await.unwrap().is_empty(),
        "nothing quarantined"
    );
    ctx.storage_faults().remount();
    let recovered = store_b.recover(&f).await.unwrap();
    assert_eq!(ids(&recovered), vec![1, 2, 3]);
    assert_eq!(recovered.latest(), Some(&cp(&job, 3)));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// An acknowledged checkpoint is never deleted by its own add: an add whose id is
/// below the newest retained checkpoint is refused before anything is written, and
/// after any sequence of adds recovery returns the newest acknowledged checkpoint.
pub async fn never_subsumes_the_checkpoint_just_added(ctx: Ctx) {
    let ha = ctx.process_retaining(1).await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let job = JobId::random();
    let store = ha.completed_checkpoint_store(&job).await.unwrap();
    store.add_checkpoint(&f, cp(&job, 10)).await.unwrap();
    match store.add_checkpoint(&f, cp(&job, 5)).await {
        Err(Error::InvalidRequest { .. }) => {}
        other => panic!("adding checkpoint 5 below retained 10 must be refused, got {other:?}"),
    }
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![10]);
    for id in 11..=13u64 {
        let subsumed = store.add_checkpoint(&f, cp(&job, id)).await.unwrap();
        assert!(!subsumed.contains(&id), "add of {id} subsumed itself: {subsumed:?}");
        assert_eq!(store.checkpoint_ids().await.unwrap(), vec![id]);
    }
    // Two handles of the same job in one process share one retained view: neither
    // subsumes from a stale one (which would leave 14 behind here).
    let second = ha.completed_checkpoint_store(&job).await.unwrap();
    assert_eq!(second.add_checkpoint(&f, cp(&job, 14)).await.unwrap(), vec![13]);
    assert_eq!(store.add_checkpoint(&f, cp(&job, 15)).await.unwrap(), vec![14]);
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![15]);
    let recovered = ctx
        .process()
        .await
        .completed_checkpoint_store(&job)
        .await
        .unwrap()
        .recover(&f)
        .await
        .unwrap();
    assert_eq!(recovered.latest(), Some(&cp(&job, 15)));
    ha.cleaner().flush().await;
    assert_eq!(
        checkpoint_payloads(&ctx, &job).await,
        1,
        "refused adds leave no payload"
    );
    ha.close().await.unwrap();
}

/// A terminal shutdown that cannot remove an entry because another live process
/// still locks it says so; the next attempt after that process let go removes it,
/// payload included.
pub async fn terminal_shutdown_reports_entries_still_locked(ctx: Ctx) {
    let Leader {
        ha: a,
        _election,
        fence: f,
        job,
        store,
    } = leader_with(&ctx, 2, 1..=2).await;
    let b = ctx.process().await;
    let raw_b = b
        .backend()
        .state_handle_store(&StoreNamespace::Checkpoints(job.clone()))
        .await
        .unwrap();
    raw_b.get_and_lock(&checkpoint_key(1)).await.unwrap();
    let left = store.shutdown(&f, JobStatus::Finished).await.unwrap();
    assert_eq!(left, vec![checkpoint_key(1)], "the entry still locked by b is reported");
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![1]);
    raw_b.release(&checkpoint_key(1)).await.unwrap();
    let left = store.shutdown(&f, JobStatus::Finished).await.unwrap();
    assert!(left.is_empty(), "nothing left after the locker let go: {left:?}");
    assert!(store.checkpoint_ids().await.unwrap().is_empty());
    a.cleaner().flush().await;
    assert_eq!(
        checkpoint_payloads(&ctx, &job).await,
        0,
        "payloads removed with their entries"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// With `high-availability.checkpoints.on-unreadable: fail`, recovery refuses to fall
/// back to an older checkpoint: it fails naming the policy key and the unreadable
/// payload, and changes nothing.
pub async fn fail_policy_refuses_fallback(ctx: Ctx) {
    let Leader {
        ha: a,
        _election,
        fence: f,
        job,
        store,
    } = leader_with(&ctx, 3, 1..=3).await;
    let h3 = stored_handle(&a, &job, 3).await;
    ctx.storage_faults().truncate_payload(&h3.path);
    let strict = ctx
        .process_retaining(3)
        .await
        .with_on_unreadable(ha_core::OnUnreadable::Fail);
    let strict_store = strict.completed_checkpoint_store(&job).await.unwrap();
    match strict_store.recover(&f).await {
        Err(err @ Error::RecoveryRefused { .. }) => {
            let msg = err.to_string();
            assert!(
                msg.contains(ha_core::OnUnreadable::KEY) && msg.contains(&h3.path),
                "error must name the policy key and the payload path: {msg}"
            );
        }
        other => panic!("the fail policy must refuse to fall back, got {other:?}"),
    }
    assert_eq!(strict_store.checkpoint_ids().await.unwrap(), vec![1, 2, 3]);
    assert!(strict_store.quarantined_keys().await.unwrap().is_empty());
    // The default policy falls back.
    let recovered = store.recover(&f).await.unwrap();
    assert_eq!(ids(&recovered), vec![1, 2]);
    a.close().await.unwrap();
    strict.close().await.unwrap();
}

/// With `execution.checkpointing.externalized-checkpoint-retention:
/// RETAIN_ON_CANCELLATION`, cancelling a job keeps its latest checkpoint (pointer and
/// payload) and its counter, so the job can be resumed from it, also by the next
/// leader; older retained checkpoints, the job graph and the result go as usual. A
/// finished job is still removed entirely, and the default policy removes a cancelled
/// job's checkpoints too.
pub async fn retained_on_cancel_when_configured(ctx: Ctx) {
    let a = ctx
        .process_retaining(2)
        .await
        .with_checkpoint_retention(CheckpointRetention::RetainOnCancellation);
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let fa = ea.granted().await.unwrap().fence;
    let job = JobId::random();
    a.job_graph_store()
        .await
        .unwrap()
        .put_job_graph(
            &fa,
            &JobGraph {
                job_id: job.clone(),
                data: payload("graph", 1),
            },
        )
        .await
        .unwrap();
    let counter = a.checkpoint_id_counter(&job).await.unwrap();
    let store = a.completed_checkpoint_store(&job).await.unwrap();
    for _ in 0..3 {
        let id = counter.get_and_increment(&fa).await.unwrap();
        store.add_checkpoint(&fa, cp(&job, id)).await.unwrap();
    }
    assert_eq!(store.checkpoint_ids().await.unwrap(), vec![2, 3]);
    let result = JobResult {
        job_id: job.clone(),
        status: JobStatus::Cancelled,
        data: payload("res", 1),
    };
    a.job_result_store()
        .await
        .unwrap()
        .create_dirty(&fa, &result)
        .await
        .unwrap();
    let done = a.cleanup_job(&fa, &job, JobStatus::Cancelled).await.unwrap();
    assert!(done.is_complete(), "{done:?}");
    assert_eq!(
        store.checkpoint_ids().await.unwrap(),
        vec![3],
        "the latest checkpoint is retained on cancel"
    );
    a.cleaner().flush().await;
    assert_eq!(checkpoint_payloads(&ctx, &job).await, 1, "with its payload");
    assert_eq!(
        counter.get().await.unwrap(),
        4,
        "the counter is kept for the resumed job"
    );
    assert!(a.job_graph_store().await.unwrap().job_ids().await.unwrap().is_empty());

    // The next leader resumes from it.
    let b = ctx.process().await;
    let (_sb, mut eb) = contend(&b, "dispatcher").await;
    sa.close().await.unwrap();
    let fb = tokio::time::timeout(quick(&ctx), eb.granted())
        .await
        .expect("b granted")
        .unwrap()
        .fence;
    let recovered = b
        .completed_checkpoint_store(&job)
        .await
        .unwrap()
        .recover(&fb)
        .await
        .unwrap();
    assert_eq!(recovered.latest(), Some(&cp(&job, 3)));
    assert_eq!(b.checkpoint_id_counter(&job).await.unwrap().get().await.unwrap(), 4);

    // A finished job goes entirely, whatever the policy.
    let retaining_b = b
        .clone()
        .with_checkpoint_retention(CheckpointRetention::RetainOnCancellation);
    let store_b = retaining_b.completed_checkpoint_store(&job).await.unwrap();
    let left = store_b.shutdown(&fb, JobStatus::Finished).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(store_b.checkpoint_ids().await.unwrap().is_empty());
    b.cleaner().flush().await;
    assert_eq!(checkpoint_payloads(&ctx, &job).await, 0);

    // The default policy deletes a cancelled job's checkpoints.
    let other = JobId::random();
    let default_store = b.completed_checkpoint_store(&other).await.unwrap();
    default_store.add_checkpoint(&fb, cp(&other, 1)).await.unwrap();
    let left = default_store.shutdown(&fb, JobStatus::Cancelled).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(default_store.checkpoint_ids().await.unwrap().is_empty());
    a.close().await.unwrap();
    b.close().await.unwrap();
}
