//! The state-handle store: add, compare-and-set replace, multi-owner locks, removal.

use bytes::Bytes;
use ha_core::{Error, StoreNamespace};

use super::util::{contend, eventually, quick};
use crate::Ctx;

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Added entries can be read and are listed in ascending order.
pub async fn add_get_list(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let store = ha
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.get("jobGraph-b").await.unwrap(), None);
    let vb = store.add_and_lock(&f, "jobGraph-b", b("B")).await.unwrap();
    store.add_and_lock(&f, "jobGraph-a", b("A")).await.unwrap();
    assert_eq!(store.list().await.unwrap(), vec!["jobGraph-a", "jobGraph-b"]);
    let got = store.get("jobGraph-b").await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (b("B"), vb));
    assert_eq!(
        store.lock_owners("jobGraph-b").await.unwrap(),
        vec![ha.backend().instance_id().to_string()]
    );
    // Namespaces are separate.
    let other = ha
        .backend()
        .state_handle_store(&StoreNamespace::JobResults)
        .await
        .unwrap();
    assert!(other.list().await.unwrap().is_empty());
    ha.close().await.unwrap();
}

/// A name that is not one key segment (empty, `.`, `..`, or with `/`) is refused by
/// every operation on every backend, and nothing is written.
pub async fn refuses_names_that_are_not_one_segment(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let store = ha
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    for bad in ["", ".", "..", "jobGraph-a/b", "../jobGraph-x"] {
        let added = store.add_and_lock(&f, bad, b("1")).await;
        assert!(
            matches!(added, Err(Error::Other { .. })),
            "add of {bad:?}: expected a refusal naming the rule, got {added:?}"
        );
        assert!(store.get(bad).await.is_err(), "get of {bad:?} was not refused");
    }
    assert!(store.list().await.unwrap().is_empty());
    ha.close().await.unwrap();
}

/// Adding an existing name fails with `AlreadyExists` and keeps the old value.
pub async fn add_existing_is_already_exists(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let store = ha
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    store.add_and_lock(&f, "jobGraph-x", b("1")).await.unwrap();
    match store.add_and_lock(&f, "jobGraph-x", b("2")).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get("jobGraph-x").await.unwrap().unwrap().value, b("1"));
    ha.close().await.unwrap();
}

/// `replace` succeeds only at the current version; stale versions conflict, absent
/// entries are `NotFound`.
pub async fn replace_is_compare_and_set(ctx: Ctx) {
    let ha = ctx.process().await;
    let (_s, mut e) = contend(&ha, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let store = ha
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    let v1 = store.add_and_lock(&f, "jobGraph-x", b("1")).await.unwrap();
    let v2 = store.replace(&f, "jobGraph-x", v1, b("2")).await.unwrap();
    assert_ne!(v1, v2);
    match store.replace(&f, "jobGraph-x", v1, b("3")).await {
        Err(Error::VersionConflict { .. }) => {}
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    match store.replace(&f, "jobGraph-missing", v2, b("3")).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    let cur = store.get("jobGraph-x").await.unwrap().unwrap();
    assert_eq!((cur.value, cur.version), (b("2"), v2));
    ha.close().await.unwrap();
}

/// An entry locked by two owners survives one owner's `release_and_try_remove` and is
/// removed by the last one.
pub async fn multi_owner_locks(ctx: Ctx) {
    let leader = ctx.process().await;
    let other = ctx.process().await;
    let (_s, mut e) = contend(&leader, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let ls = leader
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    let os = other
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    ls.add_and_lock(&f, "jobGraph-x", b("1")).await.unwrap();
    os.get_and_lock("jobGraph-x").await.unwrap();
    os.get_and_lock("jobGraph-x").await.unwrap(); // idempotent
    let mut owners = ls.lock_owners("jobGraph-x").await.unwrap();
    owners.sort();
    let mut want = vec![
        leader.backend().instance_id().to_string(),
        other.backend().instance_id().to_string(),
    ];
    want.sort();
    assert_eq!(owners, want);
    assert!(
        !ls.release_and_try_remove(&f, "jobGraph-x").await.unwrap(),
        "still locked by the other owner"
    );
    assert!(ls.get("jobGraph-x").await.unwrap().is_some());
    os.release("jobGraph-x").await.unwrap();
    assert!(ls.release_and_try_remove(&f, "jobGraph-x").await.unwrap());
    assert!(ls.get("jobGraph-x").await.unwrap().is_none());
    assert!(
        ls.release_and_try_remove(&f, "jobGraph-x").await.unwrap(),
        "removing an absent entry is done"
    );
    match os.get_and_lock("jobGraph-x").await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    leader.close().await.unwrap();
    other.close().await.unwrap();
}

/// Locks live only as long as their owner's session: when the owner closes, the entry
/// can be removed.
pub async fn locks_end_with_owner_session(ctx: Ctx) {
    let leader = ctx.process().await;
    let other = ctx.process().await;
    let (_s, mut e) = contend(&leader, "dispatcher").await;
    let f = e.granted().await.unwrap().fence;
    let ls = leader
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    let os = other
        .backend()
        .state_handle_store(&StoreNamespace::JobGraphs)
        .await
        .unwrap();
    ls.add_and_lock(&f, "jobGraph-x", b("1")).await.unwrap();
    os.get_and_lock("jobGraph-x").await.unwrap();
    ls.release("jobGraph-x").await.unwrap();
    other.close().await.unwrap();
    eventually(quick(&ctx), "closed owner's lock gone", || {
        let ls = ls.clone();
        async move { ls.lock_owners("jobGraph-x").await.unwrap().is_empty() }
    })
    .await;
    assert!(ls.release_and_try_remove(&f, "jobGraph-x").await.unwrap());
    leader.close().await.unwrap();
}

/// The backend's raw record of one checkpoint is overwritten with garbage (a torn
/// write, a buggy tool): the next leader's recovery quarantines it and returns the
/// others, and the new term can still add checkpoints.
pub async fn garbage_entry_is_quarantined_not_fatal(ctx: Ctx) {
    use ha_core::{checkpoint_key, CompletedCheckpoint, JobId};
    let cp = |job: &JobId, id: u64| CompletedCheckpoint {
        job_id: job.clone(),
        checkpoint_id: id,
        data: super::util::payload("cp", id),
    };
    let a = ctx.process_retaining(3).await;
    let (sa, mut ea) = contend(&a, "dispatcher").await;
    let fa = ea.granted().await.unwrap().fence;
    let job = JobId::random();
    let store_a = a.completed_checkpoint_store(&job).await.unwrap();
    for id in 1..=3u64 {
        store_a.add_checkpoint(&fa, cp(&job, id)).await.unwrap();
    }
    ctx.harness()
        .overwrite_raw_entry(
            &a,
            &fa,
            &StoreNamespace::Checkpoints(job.clone()),
            &checkpoint_key(2),
            b("\u{0}garbage{not json"),
        )
        .await
        .unwrap();
    let b_ = ctx.process_retaining(3).await;
    let (_sb, mut eb) = contend(&b_, "dispatcher").await;
    store_a.shutdown(&fa, ha_core::JobStatus::Suspended).await.unwrap();
    sa.close().await.unwrap();
    let fb = tokio::time::timeout(quick(&ctx), eb.granted())
        .await
        .expect("b granted")
        .unwrap()
        .fence;
    let store_b = b_.completed_checkpoint_store(&job).await.unwrap();
    let recovered = store_b
        .recover(&fb)
        .await
        .expect("a garbage entry must not fail recovery");
    let ids: Vec<u64> = recovered.checkpoints.iter().map(|c| c.checkpoint_id).collect();
    assert_eq!(ids, vec![1, 3]);
    let q: Vec<u64> = recovered.quarantined.iter().map(|q| q.checkpoint_id).collect();
    assert_eq!(q, vec![2]);
    store_b
        .add_checkpoint(&fb, cp(&job, 4))
        .await
        .expect("the new term can add checkpoints");
    assert_eq!(store_b.checkpoint_ids().await.unwrap(), vec![1, 3, 4]);
    a.close().await.unwrap();
    b_.close().await.unwrap();
}
