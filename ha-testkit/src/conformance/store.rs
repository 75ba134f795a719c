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
